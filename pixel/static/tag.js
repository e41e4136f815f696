/* Kaeru shop tag. Usage: kaeru.push(["view", {advertiser: "shop1", item: "sku-1"}]) */
(function (w, d) {
  "use strict";
  const q = Array.isArray(w.kaeru) ? w.kaeru : [];
  if (q.kaeruLoaded) return;
  q.kaeruLoaded = true;
  w.kaeru = q;

  const lastTag = () => [].slice.call(d.getElementsByTagName("script")).reverse()
    .map((s) => s.src || "").find((src) => /\/tag\.js([?#]|$)/.test(src));
  const me = (d.currentScript && d.currentScript.src) || lastTag() || "";
  let base = "";
  try { base = new URL(me, w.location && w.location.href).origin; } catch (err) { /* page origin */ }

  const defaults = {}, consent = {}, warned = {};
  let batch = [], timer = null;
  const warn = (msg) => {
    if (warned[msg]) return;
    warned[msg] = true;
    if (w.console) w.console.warn("kaeru: " + msg);
  };
  const id = (x) => String(x !== null && typeof x === "object" ? x.id : x);
  const list = (a) => (Array.isArray(a.items) ? a.items : a.item != null ? [a.item] : [])
    .filter((x) => x != null);
  const line = (x) => {
    const o = { id: id(x) };
    if (x && x.price != null) o.price = Number(x.price);
    o.quantity = x && x.quantity != null ? Number(x.quantity) : 1;
    return o;
  };
  const EVENTS = { home: 0, list: 1, view: 1, cart: 1, purchase: 1 };

  function handle(cmd) {
    if (!Array.isArray(cmd)) return warn("a command must be an array");
    const name = cmd[0], a = cmd[1] || {};
    if (name === "set") return Object.assign(defaults, a);
    if (name === "consent") return Object.assign(consent, a);
    if (!Object.prototype.hasOwnProperty.call(EVENTS, name)) return warn("unknown command " + name);
    const adv = a.advertiser || defaults.advertiser;
    if (!adv) return warn("no advertiser for " + name);
    const e = { advertiser: String(adv), event: name };
    if (name === "purchase") {
      e.order = String(a.order != null ? a.order : "");
      e.items = list(a).map(line);
      const sum = e.items.reduce((s, x) => s + (x.price || 0) * x.quantity, 0);
      e.revenue = Number(a.revenue != null ? a.revenue : Math.round(sum * 100) / 100);
      if (a.currency) e.currency = String(a.currency);
    } else if (EVENTS[name]) {
      e.items = list(a).map(id).slice(0, name === "view" ? 1 : undefined);
    }
    batch.push(e);
    if (timer === null) timer = setTimeout(flush, 0);
  }

  function privacy(o) {
    if (consent.gdpr != null) o.gdpr = Number(consent.gdpr);
    if (consent.gdpr_consent != null) o.gdpr_consent = String(consent.gdpr_consent);
    return o;
  }
  // The click id Kaeru's click redirect put on this landing page's URL: sent with the first
  // batch of the page view. The name is set by the server (KAERU_CLICK_ID_PARAM).
  const CLICK_ID_PARAM = "kclid";
  let clickId = null;
  try { clickId = new URLSearchParams(w.location.search).get(CLICK_ID_PARAM); } catch (err) { /* */ }
  function withClickId(o) {
    if (clickId) o.kclid = String(clickId).slice(0, 512);
    clickId = null;
    return o;
  }
  function pixel(e) {
    const p = { a: e.advertiser, e: e.event }, items = e.items || [];
    if (items.length) p.i = items.map(id).join(",");
    if (e.event === "purchase") {
      Object.assign(p, { o: e.order, v: e.revenue }, e.currency ? { cur: e.currency } : {});
      p.p = items.map((x) => (x.price != null ? x.price : "")).join(",");
      p.q = items.map((x) => x.quantity).join(",");
    }
    new w.Image().src = base + "/px?" + new URLSearchParams(privacy(p));
  }
  // Batches go out with fetch(keepalive), which, unlike sendBeacon, lets the tag read the
  // answer: a 503 (Kaeru's buffer is full: nothing was stored) keeps the batch, in
  // localStorage too so that the next page can send it, and sends it again after Retry-After
  // (else a backoff), a few times at most. Without fetch: sendBeacon, then pixels.
  const STORE_KEY = "kaeru:retry", MAX_TRIES = 6, MAX_KEPT = 20, KEEPALIVE_MAX = 60000;
  let kept = [], retryTimer = null;
  const now = () => Date.now();
  const storage = () => { try { return w.localStorage || null; } catch (err) { return null; } };
  function save() {
    const s = storage();
    try { if (s) kept.length ? s.setItem(STORE_KEY, JSON.stringify(kept)) : s.removeItem(STORE_KEY); } catch (err) { /* full or blocked */ }
  }
  function restore() {
    const s = storage();
    try {
      const old = s && JSON.parse(s.getItem(STORE_KEY) || "[]");
      if (Array.isArray(old)) kept = old.filter((k) => k && typeof k.body === "string").slice(-MAX_KEPT);
    } catch (err) { kept = []; }
    schedule();
  }
  function schedule() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (!kept.length) return;
    const due = Math.min.apply(null, kept.map((k) => k.due || 0));
    retryTimer = setTimeout(retry, Math.max(0, due - now()));
  }
  function retry() {
    retryTimer = null;
    const ready = kept.filter((k) => (k.due || 0) <= now());
    kept = kept.filter((k) => (k.due || 0) > now());
    save();
    ready.forEach((k) => send(k.body, k.tries || 0, null));
    schedule();
  }
  function keep(body, tries, retryAfter) {
    if (tries + 1 >= MAX_TRIES) return; // never acknowledged: given up
    const seconds = Number(retryAfter);
    const wait = seconds > 0 ? Math.min(seconds, 300) * 1000 : Math.min(2000 * 2 ** tries, 60000);
    kept.push({ body: body, tries: tries + 1, due: now() + wait });
    kept = kept.slice(-MAX_KEPT);
    save();
    schedule();
  }
  function send(body, tries, events) {
    const n = w.navigator;
    if (w.fetch && body.length <= KEEPALIVE_MAX) {
      try {
        w.fetch(base + "/e", {
          method: "POST", body: body, keepalive: true, credentials: "include",
          headers: { "Content-Type": "text/plain" },
        }).then((r) => {
          if (r.status === 503 || r.status === 429) keep(body, tries, r.headers.get("Retry-After"));
        }, () => { /* no answer: it may have been stored, so never sent twice */ });
        return;
      } catch (err) { /* fall back */ }
    }
    try {
      if (n && n.sendBeacon && n.sendBeacon(base + "/e", new Blob([body], { type: "text/plain" }))) {
        return;
      }
    } catch (err) { /* fall back to pixels */ }
    (events || []).forEach((e) => { try { pixel(e); } catch (err) { /* never break the page */ } });
  }
  function flush() {
    clearTimeout(timer);
    timer = null;
    if (!batch.length) return;
    const sent = batch;
    batch = [];
    let body = null;
    try { body = JSON.stringify(withClickId(privacy({ events: sent }))); } catch (err) { /* pixels */ }
    if (body === null) return sent.forEach((e) => { try { pixel(e); } catch (err) { /* */ } });
    send(body, 0, sent);
  }

  const run = (cmd) => { try { handle(cmd); } catch (err) { warn("failed: " + err); } };
  const pending = q.splice(0, q.length);
  q.push = function () {
    [].forEach.call(arguments, run);
    return q.length;
  };
  pending.forEach(run);
  restore();
  if (w.addEventListener) w.addEventListener("pagehide", flush);
  if (d.addEventListener) {
    d.addEventListener("visibilitychange", () => d.visibilityState === "hidden" && flush());
  }
})(window, document);
