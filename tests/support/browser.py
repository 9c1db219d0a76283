"""A real browser for tests: Debian's headless Chromium driven by Playwright, and a tiny static web
server for the test pages.

    from tests.support.browser import chromium, desktop_page, static_site

    with static_site({"/": "<!doctype html><script src='http://127.0.0.1:PORT/t.js'></script>"}) as site:
        with chromium() as browser, desktop_page(browser) as page:
            page.goto(site.url("/"))

* :func:`chromium` launches ``/usr/bin/chromium`` (``make browser`` installs it from Debian) through the
  ``playwright`` Python package; Playwright's own browser downloads (``playwright install``) are never
  used. It **fails** the test, never skips it, when the browser or the package is missing. Each launch
  gets a fresh temporary profile (Playwright creates and removes the user-data directory).
* :func:`desktop_page` opens a page in a new browser context (its own cookies, localStorage and
  sessionStorage) that presents a desktop Chrome User-Agent: HeadlessChrome's own UA is a bot to the
  proxy, whose events would be dropped. ``init_script`` runs before any page script (e.g. to set
  ``navigator.globalPrivacyControl``). :func:`collect_errors` gathers a page's JavaScript errors.
* :func:`static_site` serves a dict of pages from its own port on ``localhost``, so a page talking to a
  proxy on ``127.0.0.1:<other port>`` is cross-origin *and* cross-site, as a site and its analytics
  endpoint are in production (cookies of the page's host are not sent to the proxy either).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
# What works on this machine, as root, without a display. (--headless is added by Playwright.)
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# A plain desktop Chrome: the proxy classifies "HeadlessChrome" as a bot and drops its events.
DESKTOP_CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def require_chromium() -> str:
    """The browser's path; fails the calling test with what to do when it is not installed."""
    path = os.environ.get("BEACONPROXY_TEST_CHROMIUM", CHROMIUM)
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {path}: run `make browser` (apt-get install chromium), "
            "or `make test`, which does it",
            pytrace=False,
        )
    return path


@contextlib.contextmanager
def chromium(*, headless: bool = True) -> Iterator[Browser]:
    """A Playwright ``Browser`` on Debian's Chromium, closed afterwards."""
    path = require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `make install-dev` installs it", pytrace=False)
    with sync_playwright() as pw:
        # The UA flag too, not only the context's override: beacons sent while a page unloads (pagehide
        # on navigation) leave after the page's override is gone and would say HeadlessChrome.
        args = [*LAUNCH_ARGS, f"--user-agent={DESKTOP_CHROME_UA}"]
        browser = pw.chromium.launch(executable_path=path, headless=headless, args=args)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def desktop_page(
    browser: Browser, *, init_script: str | None = None, **context_options: Any
) -> Iterator[Page]:
    """A page in a fresh context with a desktop Chrome User-Agent; ``context_options`` go to
    ``browser.new_context`` (e.g. ``locale="de-DE"``, ``extra_http_headers={...}``)."""
    context_options.setdefault("user_agent", DESKTOP_CHROME_UA)
    context = browser.new_context(**context_options)
    try:
        if init_script:
            context.add_init_script(init_script)
        yield context.new_page()
    finally:
        context.close()


def collect_errors(page: Page) -> list[str]:
    """A list that fills with the page's uncaught exceptions and ``console.error`` messages."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text} at {msg.location.get('url')}")
            if msg.type == "error"
            else None
        ),
    )
    return errors


@dataclass
class StaticSite:
    """The running static server: ``origin``, ``url(path)``, and ``pages`` (path -> bytes) to change."""

    port: int
    host: str
    pages: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # request paths, in order

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def add(self, path: str, body: str | bytes) -> None:
        self.pages[path] = body.encode() if isinstance(body, str) else body


@contextlib.contextmanager
def static_site(
    pages: Mapping[str, str | bytes] | None = None, host: str = "localhost"
) -> Iterator[StaticSite]:
    """Serve ``pages`` (path without query -> HTML or bytes; type from the extension, else HTML) on a free
    port of 127.0.0.1, named ``host`` in URLs. Unknown paths are 404 (``/favicon.ico``: 204). Nothing is
    cached."""
    site = StaticSite(port=0, host=host)
    for path, body in (pages or {}).items():
        site.add(path, body)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            site.requests.append(self.path)
            body = site.pages.get(path)
            if body is None and path == "/favicon.ico":  # browsers ask; a 404 would be a console error
                self.send_response(204)
                self.end_headers()
                return
            if body is None:
                self.send_error(404)
                return
            ctype = mimetypes.guess_type(path)[0] if "." in path.rsplit("/", 1)[-1] else None
            self.send_response(200)
            self.send_header("Content-Type", ctype or "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
