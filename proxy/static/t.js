/* Beacon Proxy tracker; see the README */
((w, d, n) => {
  const me = d.currentScript;
  if (!me || (w.bp && w.bp.l)) return; // loaded twice
  const at = me.dataset;
  const site = at.site;
  const api = at.api || new URL('/v1/events', me.src).href;
  const KEYS = 'analytics preferences marketing precise_location'.split(' ');
  let given, view = '', sent = 1, acc = 0, since = 0;

  const post = (url, body) => {
    n.sendBeacon(url, body) || fetch(url, {method: 'POST', body, keepalive: true, credentials: 'include',
      headers: {'Content-Type': 'text/plain'}}).catch(() => {});
  };

  // Consent cookies are read as proxy/consent.py reads them.
  const pairs = (s) => s.replace(/^\{|\}$/g, '').split(/[,;|&]/)
    .map((p) => p.split(/[:=]/).slice(-2).map((x) => x.trim()));
  const vote = (x) => (x = /^(?:(true|granted|yes|1)|false|denied|no|0)$/i.exec(String(x).trim())) && !!x[1];
  const theirs = {};
  pairs(at.consentKeys || '').forEach(([k, v]) => { theirs[k] = v; });

  const fromCookie = () => {
    const name = at.consentCookie, got = {}, c = {};
    const [hit, ...more] = name ? d.cookie.split(/; */).filter((s) => s.split('=')[0] === name) : [];
    if (!hit) return;
    if (more.some((s) => s !== hit)) return false; // differing copies: refused
    let v = hit.slice(name.length + 1), o;
    try {
      v = decodeURIComponent(v);
      o = at.consentFormat !== 'kv' && JSON.parse(v);
    } catch (e) {}
    (o instanceof Object ? Object.entries(o) : pairs(v)).forEach(([k, x]) => {
      x = vote(x);
      got[k] = k in got && got[k] !== x ? false : x; // said twice, differently: refused
    });
    KEYS.forEach((k) => { c[k] = got[theirs[k] || k]; });
    return KEYS.some((k) => c[k] != null) && c; // unreadable: refuses all
  };

  // A refusal wins, then a grant; undefined: site defaults apply.
  const consent = () => {
    const c = fromCookie(), out = {};
    if (c == null && !given) return;
    KEYS.forEach((k) => {
      const v = [c && c[k], given && given[k] === true]; // unnamed categories are refused
      out[k] = !v.includes(false) && v.includes(true) && !(k === 'marketing' && n.globalPrivacyControl);
    });
    return out;
  };

  const id = (s, k) => {
    try {
      let v = w[s].getItem(k);
      if (!v) w[s].setItem(k, (v = crypto.randomUUID()));
      return v;
    } catch (e) {}
  };
  // Consent refused: forget the ids; the server deletes their rows.
  const forget = () => {
    try {
      const cid = localStorage.getItem('bp_cid');
      localStorage.removeItem('bp_cid');
      sessionStorage.removeItem('bp_sid');
      if (cid && at.withdraw !== 'false') {
        post(new URL('consent/withdraw', api).href, JSON.stringify({site, client_id: cid}));
      }
    } catch (e) {}
  };

  const send = (ev) => {
    const c = consent();
    ev = Object.assign({site, url: location.href, title: d.title, language: n.language,
      screen: {width: screen.width, height: screen.height}, ts: Date.now(), consent: c}, ev);
    if (c && c.analytics) {
      ev.client_id = id('localStorage', 'bp_cid');
      ev.session_id = id('sessionStorage', 'bp_sid');
    } else if (c) forget();
    post(api, JSON.stringify(ev));
  };

  // Visible time, sent once per view: at its first hide or the next view.
  const tick = () => {
    acc += since && performance.now() - since;
    since = !d.hidden && performance.now();
  };
  const end = () => {
    tick();
    if (!sent && acc >= 1) send({type: 'event', name: 'engagement', url: view, engagement_ms: Math.round(acc)});
    sent = 1;
  };
  const pageview = (props) => {
    end();
    const referrer = view || d.referrer;
    view = location.href;
    sent = acc = 0;
    send({type: 'pageview', props, referrer});
  };

  const auto = at.auto !== 'false';
  const nav = () => auto && location.href.split('#')[0] !== view.split('#')[0] && pageview();
  ['pushState', 'replaceState'].forEach((m) => {
    const f = history[m];
    history[m] = function () {
      const r = f.apply(this, arguments);
      nav();
      return r;
    };
  });
  w.addEventListener('popstate', nav);
  d.addEventListener('visibilitychange', () => (d.hidden ? end : tick)());
  w.addEventListener('pagehide', end);

  const bp = (cmd, a, b) => {
    if (cmd === 'pageview') pageview(a);
    else if (cmd === 'event' && a) send({type: 'event', name: String(a), props: b});
    else if (cmd === 'consent' && a) {
      given = Object.assign({}, a);
      if (!consent().analytics) forget();
    }
  };
  bp.l = 1;
  const queued = w.bp && w.bp.q;
  w.bp = bp;
  (queued || []).forEach((args) => bp(...args));
  if (auto) pageview();
})(window, document, navigator);
