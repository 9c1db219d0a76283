"""The analysts' dashboard: one page per site, built in the browser from the public stats API only.

``pages`` serves the sign-in form, the session endpoints and the page shell (strict Content-Security-Policy,
no inline script or style); ``assets`` serves the bundle the project's build makes from ``web/`` (plain
modern JavaScript and CSS, uPlot for the graph, bundled by esbuild into ``proxy/static/dashboard/``);
``session_cookie`` is the cookie and the same-origin rule. Sessions themselves live in the store
(proxy/stats/sessions.py), and the stats API accepts them in place of a bearer key.
"""
