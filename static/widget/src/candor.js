/*! Candor feedback widget */
(() => {
  'use strict';
  const W = window, D = document;
  if (W.candor?.version) return;
  const S = D.currentScript || D.querySelector('script[data-key][src*="candor"]');
  const cfg = S?.dataset || {}, KEY = cfg.key;
  if (!KEY) return console.warn('[candor] missing data-key');

  const URL_EV = (cfg.api || new URL(S.src, location).origin).replace(/\/+$/, '') + '/api/v1/widget/events';
  const OUT = '[data-candor-trace]', EDIT = '[data-candor-edit]', ACTS = ['retry', 'rephrase', 'accept'];
  const LSK = 'candor:q:' + KEY, MAX_Q = 500, MAX_AGE = 6048e5, BATCH = 50, BODY = 6e4;
  const FLUSH_MS = 1e3, SETTLE_MS = 2e3, MIN_DWELL = 500;

  let uid, warned, timer, busy, fails = 0, until = 0, errs = 0, oks = 0; // errs: 5xx in a row, oks: sends that worked
  const bad = {}; // event_id -> [500s, oks when it first failed]
  const log = (...a) => 'candorDebug' in cfg && console.log('[candor]', ...a);
  const warn = (...a) => warned || (warned = console.warn('[candor]', ...a) || 1);
  const safe = f => (...a) => { try { return f(...a) } catch (e) { log(e) } }; // never throw into the page
  const on = (t, n, f, c) => t.addEventListener(n, safe(f), c);
  const json = s => { try { return JSON.parse(s) } catch (e) {} };
  const list = s => s?.split(',').map(x => x.trim()).filter(Boolean);
  const store = (k, v) => { try { return v ? localStorage[k] = v : localStorage[k] } catch (e) {} };
  const uuid = () => crypto.randomUUID?.() ||
    '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, c => (c ^ Math.random() * 16 >> c / 4).toString(16));
  const trace = el => el.dataset.candorTrace;
  const stop = () => timer = clearTimeout(timer);

  const L = { up: 'Helpful', down: 'Not helpful', thanks: 'Thanks', comment: 'Comment', send: 'Send',
    star: 'star', stars: 'stars', ...json(cfg.labels) };
  const REASONS = list(cfg.reasons) || ['Wrong', 'Unhelpful', 'Too long', 'Unsafe'];
  let sid = uuid();
  try { sid = sessionStorage['candor:sid'] ||= sid } catch (e) {}

  // mine: this tab's ids (tabs share storage); held: in flight or beaconed
  const mine = new Set(), held = new Set();
  const fresh = a => [].concat(a || []).filter(e => Date.parse(e?.occurred_at) > Date.now() - MAX_AGE).slice(-MAX_Q);
  const stored = () => fresh(json(store(LSK)));
  const save = () => store(LSK, JSON.stringify(fresh(stored().filter(e => !mine.has(e.event_id)).concat(q))));
  const size = s => new Blob([s]).size;
  let q = stored();
  q.forEach(e => mine.add(e.event_id));
  // keep a pending timer: bursts must not delay sending nor cut a backoff short
  const schedule = ms => timer || (timer = setTimeout(flush, Math.max(ms, until - Date.now())));

  function next() {
    // after repeated 5xx, send one event at a time, least-failed first, so one poisoned event cannot block the rest
    let b = q.filter(e => !held.has(e));
    b = errs > 3 ? b.sort((x, y) => (bad[x.event_id]?.[0] | 0) - (bad[y.event_id]?.[0] | 0)).slice(0, 1) : b.slice(0, BATCH);
    for (;;) {
      const body = JSON.stringify({ key: KEY, events: b });
      if (b.length < 2 || size(body) <= BODY) return [b, body];
      b = b.slice(0, b.length / 2);
    }
  }

  async function post(b, body) {
    let r;
    b.forEach(e => held.add(e));
    try {
      r = await fetch(URL_EV, { method: 'POST', body, headers: { 'Content-Type': 'text/plain' },
        keepalive: size(body) <= BODY, credentials: 'omit' });
    } catch (e) {}
    b.forEach(e => held.delete(e));
    const s = r?.status;
    if (s == 500 && b.length == 1) {
      const k = b[0].event_id, f = bad[k] ||= [0, oks];
      // dropped only if it kept failing while other events went through: an outage drops nothing
      if (++f[0] > 4 && oks > f[1]) {
        warn('dropping an event the server keeps failing on', b[0]);
        q = q.filter(e => e != b[0]);
        save();
        delete bad[k];
        return 1;
      }
    }
    // past the organization's spend cap the server says so: these events will not be taken, do not retry
    if (s == 429 && (await r.clone().json().catch(() => 0))?.error?.code == 'quota_exceeded') {
      warn('quota exceeded: events dropped, not retried', b.length);
      q = q.filter(e => !b.includes(e));
      save();
      return 1;
    }
    if (!s || s == 429 || s > 499) {
      if (s > 499) errs++;
      const ra = s == 429 && r.headers.get('Retry-After');
      if (ra) until = Date.now() + (ra * 1e3 || Date.parse(ra) - Date.now() || 0);
      stop();
      schedule(Math.random() * Math.min(6e4, 1e3 * 2 ** fails++));
      return;
    }
    oks++;
    fails = 0;
    b.forEach(e => delete bad[e.event_id]);
    if (!Object.keys(bad).length) errs = 0;
    q = q.filter(e => !b.includes(e));
    save();
    const a = r.ok && await r.json().catch(() => 0);
    if (!r.ok || a?.errors?.length) warn('events rejected', s, a?.errors);
    return 1;
  }

  function flush() {
    stop();
    return busy || (busy = (async () => {
      for (let n; Date.now() >= until && (n = next())[0].length && await post(...n););
    })().catch(log).finally(() => { busy = 0; if (Date.now() < until && q.length) schedule(0) }));
  }

  // no ack for beacons: keep stored, resend next load (deduped)
  function beacon() {
    if (Date.now() < until) return;
    stop();
    for (let b, body; ([b, body] = next())[0].length;) {
      if (navigator.sendBeacon?.(URL_EV, new Blob([body], { type: 'text/plain' }))) b.forEach(e => held.add(e));
      else post(b, body);
    }
  }

  const touched = new Set(), seen = new Map();

  function track(t, x, el) {
    t = String(t ?? '');
    if (!t) return;
    const d = { ...D.querySelector(`[data-candor-trace="${CSS.escape(t)}"]`)?.dataset, ...el?.dataset };
    const e = { event_id: uuid(), prompt_version: d.candorPromptVersion, feature: d.candorFeature, token: d.candorToken,
      user_id: uid, session_id: sid, occurred_at: new Date().toISOString(), ...x, trace_id: t };
    if (!/dwell|abandon/.test(e.kind)) touched.add(t);
    q = fresh(q.concat(e));
    mine.add(e.event_id);
    save();
    log(e);
    schedule(FLUSH_MS);
    return e.event_id;
  }

  // adopted sheets pass CSP; :host !important beats page !important
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`:host{all:initial!important;display:block!important;
font:13px/1.5 var(--candor-font,system-ui,sans-serif)!important;color:var(--candor-fg,#555)!important;--a:var(--candor-accent,#4f46e5)}
div:not([hidden]){display:flex;flex-wrap:wrap;align-items:center;gap:4px;margin-top:4px}
button,textarea{font:inherit;color:inherit;border:1px solid #ccc;border-radius:var(--candor-radius,6px);background:var(--candor-bg,#fff)}
button{cursor:pointer;padding:2px 8px}[aria-pressed=true]{background:var(--a);color:#fff}
svg{width:16px;height:16px;fill:currentColor;vertical-align:-3px}.down svg{transform:scaleY(-1)}
.star{border:0;background:none!important;font-size:1.4em;color:#bbb}.on{color:var(--a)}textarea{flex-basis:100%}`);

  const hosts = new WeakMap();
  const mk = (tag, cls, parent, text, attrs) => {
    const n = D.createElement(tag);
    if (cls) n.className = cls;
    if (text) n.textContent = text;
    for (const k in attrs) n.setAttribute(k, attrs[k]);
    parent.append(n);
    return n;
  };
  const btn = (cls, parent, text, label, value = '') =>
    Object.assign(mk('button', cls, parent, text, { 'aria-label': label }), { type: 'button', value });
  const press = (bs, f) => bs.forEach(b => b.setAttribute('aria-pressed', !!f(b)));
  // drawn, not an emoji: looks the same everywhere, needs no emoji font
  const icon = b => {
    const NS = 'http://www.w3.org/2000/svg', svg = D.createElementNS(NS, 'svg'), p = D.createElementNS(NS, 'path');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    p.setAttribute('d', 'M2 10h4v11H2zM8 21h9.3a2 2 0 0 0 2-1.6l1.6-7.2A2 2 0 0 0 19 10h-5.2l.9-4.4a1.7 1.7 0 0 0-3-1.4L8 9z');
    svg.append(p);
    b.append(svg);
    return b;
  };

  function attach(o) {
    const t = trace(o);
    let h = hosts.get(o);
    if (h?.getAttribute('trace') == t) {
      // stay last as content streams in (capped per task: no ping-pong)
      if (o.lastChild != h && h.moves++ < 9) o.append(h), setTimeout(() => h.moves = 0);
      return;
    }
    h?.remove();
    if (!t) return;
    hosts.set(o, h = mk('candor-feedback', '', o, '', { trace: t }));
    h.moves = 0;
    const r = h.attachShadow({ mode: 'open' });
    r.adoptedStyleSheets = [sheet];
    const stars = (o.dataset.candorMode || cfg.mode) == 'stars', kind = stars ? 'rating' : 'thumb';
    const bar = mk('div', 'bar', r);
    const btns = (stars ? [1, 2, 3, 4, 5] : [1, -1]).map(v => stars
      ? btn('star', bar, '\u2605', v + ' ' + (v > 1 ? L.stars : L.star), v)
      : icon(btn(v > 0 ? 'up' : 'down', bar, '', v > 0 ? L.up : L.down, v)));
    const thanks = mk('span', 'thanks', bar, '', { role: 'status' });
    const more = mk('div', 'more', r);
    const chips = (list(o.dataset.candorReasons) || REASONS).map(x => btn('reason', more, x, x));
    const ta = mk('textarea', 'comment', more, '', { rows: 2, placeholder: L.comment, 'aria-label': L.comment });
    btn('send', more, L.send, L.send);
    let cur;
    more.hidden = true;
    press(btns.concat(chips), () => 0);

    on(r, 'click', e => {
      const b = e.target.closest('button');
      if (b?.className == 'reason') {
        track(t, { kind, value: cur, comment: b.textContent }, o);
        press(chips, x => x == b);
      } else if (b?.className == 'send') {
        if (!ta.value.trim()) return ta.focus();
        track(t, { kind: 'comment', comment: ta.value.trim() }, o);
        ta.value = '';
      } else {
        if (!b || b.value == cur) return;
        track(t, { kind, value: (cur = +b.value) }, o);
        press(btns, x => x == b);
        btns.forEach(x => x.classList.toggle('on', stars && x.value <= cur));
        press(chips, () => 0);
        more.hidden = cur > (stars ? 2 : 0);
      }
      thanks.textContent = L.thanks;
    });
    on(ta, 'keydown', e => e.stopPropagation()); // not a page shortcut
    if (!dwell.has(o)) dwell.set(o, { ms: 0 }), io.observe(o);
  }

  // el -> {t: trace, o: original, s: last sent, u: typed}; until typing, text set by JS is the original
  const eds = new Map();
  const text = el => el.value ?? el.innerText;
  const edEl = e => { const el = e.target.closest?.(EDIT); return eds.has(el) && el };

  function attachEdit(el) {
    const t = el.dataset.candorEdit, st = eds.get(el);
    if (st?.t == t) return;
    if (st) settle(el);
    eds.set(el, { t, o: text(el) });
  }
  function settle(el) {
    const st = eds.get(el), v = text(el), o = el.dataset.candorOriginal ?? st.o;
    clearTimeout(st.tm);
    if (st.u && v != o && v != st.s) track(st.t, { kind: 'edit', original_text: o, edited_text: (st.s = v) }, el);
  }
  on(D, 'focusin', e => { const el = edEl(e), st = eds.get(el); if (st && !st.u) st.o = text(el) }, true);
  on(D, 'input', e => {
    const el = edEl(e), st = eds.get(el);
    if (st) st.u = 1, clearTimeout(st.tm), st.tm = setTimeout(safe(() => settle(el)), SETTLE_MS);
  }, true);
  on(D, 'focusout', e => { const el = edEl(e); if (el) settle(el) }, true);
  on(D, 'submit', e => eds.forEach((st, el) => (e.target.contains(el) || el.form == e.target) && settle(el)), true);

  on(D, 'click', e => {
    const el = e.target.closest?.('[data-candor-retry],[data-candor-rephrase],[data-candor-accept]');
    if (el) ACTS.forEach(k => el.hasAttribute('data-candor-' + k) && track(el.getAttribute('data-candor-' + k), { kind: k }, el));
  }, true);

  on(D, 'copy', e => {
    const s = getSelection(), n = s.rangeCount ? s.getRangeAt(0).commonAncestorContainer : e.target;
    const o = (n.nodeType == 1 ? n : n.parentElement)?.closest(OUT);
    if (o) track(trace(o), { kind: 'copy', value: String(s).length }, o);
  }, true);

  // dwell: >= 50% of output or viewport shown, tab visible
  const dwell = new Map();
  const tick = (o, st, off) => {
    const now = performance.now();
    if (st.t0) st.ms += now - st.t0;
    st.t0 = !off && st.in && D.visibilityState == 'visible' && now;
    if (st.t0) seen.set(trace(o), o);
  };
  const io = new IntersectionObserver(safe(es => es.forEach(e => {
    const st = dwell.get(e.target);
    if (st) st.in = e.isIntersecting && (e.intersectionRatio >= .5 || e.intersectionRect.height * 2 >= innerHeight), tick(e.target, st);
  })), { threshold: [0, .25, .5, .75, 1] });

  function hide(final) {
    eds.forEach((st, el) => { settle(el); el.isConnected || eds.delete(el) });
    dwell.forEach((st, o) => {
      tick(o, st, 1);
      if (st.ms > MIN_DWELL) track(trace(o), { kind: 'dwell', value: Math.round(st.ms) }, o);
      st.ms = 0;
      if (!o.isConnected) dwell.delete(o), io.unobserve(o);
    });
    if (final) seen.forEach((o, t) => { if (!touched.has(t)) touched.add(t), track(t, { kind: 'abandon' }, o) });
    beacon();
  }
  const resume = () => dwell.forEach((st, o) => tick(o, st));
  on(D, 'visibilitychange', () => D.visibilityState == 'hidden' ? hide() : resume());
  on(W, 'pagehide', () => hide(1));
  on(W, 'online', flush);

  function scan(root) {
    const els = [...root.querySelectorAll?.(OUT + ',' + EDIT) || []];
    if (root.matches?.(OUT + ',' + EDIT)) els.push(root);
    els.forEach(safe(el => { el.matches(OUT) && attach(el); el.matches(EDIT) && attachEdit(el) }));
  }
  new MutationObserver(safe(rs => rs.forEach(r => {
    const o = r.target.closest?.(OUT);
    if (o) attach(o);
    if (r.type == 'attributes') scan(r.target);
    r.addedNodes.forEach(scan);
  }))).observe(D.documentElement, { childList: true, subtree: true, attributes: true,
    attributeFilter: ['data-candor-trace', 'data-candor-edit'] });

  const api = {
    feedback: (t, o) => track(t, { kind: 'thumb', ...o }),
    signal: (t, kind, o) => track(t, { ...o, kind }),
    edit: (t, original_text, edited_text) => track(t, { kind: 'edit', original_text, edited_text }),
    identify: u => { uid = u == null ? undefined : String(u) },
    flush,
    scan: () => scan(D),
  };
  for (const k in api) api[k] = safe(api[k]);
  const call = safe(c => api[c[0]](...c.slice(1)));
  const pre = W.candor?.q;
  api.version = '1.0.0';
  api.q = { push: (...cs) => cs.forEach(call) };
  W.candor = api;
  if (Array.isArray(pre)) pre.forEach(call);
  scan(D);
  if (q.length) schedule(FLUSH_MS);
})();
