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
    if (name === "identify") return identify(a);
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

  // Identity links (see the README, "Identity beyond third-party cookies"). The first-party
  // id: 128 random bits the tag keeps in its own cookie on the shop's site (localStorage only
  // where the cookie is refused), refreshed on every page, sent as "fpid" with every batch, so
  // Kaeru finds the shopper where its own third-party cookie is blocked. None under Global
  // Privacy Control or Do Not Track.
  const FP_NAME = "_kaeru_fp", FP_MAX_AGE = 396 * 86400, FP_ID = /^[A-Za-z0-9_-]{22}$/;
  const FP_COOKIE = /(?:^|;\s*)_kaeru_fp=([A-Za-z0-9_-]{22})(?:;|$)/;
  let fpid = null;
  function declined() {
    const n = w.navigator || {};
    return n.globalPrivacyControl === true || n.doNotTrack === "1" || w.doNotTrack === "1";
  }
  function newFpid() {
    const c = w.crypto;
    if (!c || !c.getRandomValues || !w.btoa) return null;
    const bytes = c.getRandomValues(new Uint8Array(16));
    const text = String.fromCharCode.apply(null, Array.from(bytes));
    return w.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function fpCookie() {
    try { const m = FP_COOKIE.exec(d.cookie || ""); return m ? m[1] : null; } catch (err) { return null; }
  }
  function firstPartyId() {
    if (fpid || declined()) return fpid;
    const s = storage();
    let v = fpCookie();
    if (!v) { try { v = s && s.getItem(FP_NAME); } catch (err) { v = null; } }
    if (!v || !FP_ID.test(v)) v = newFpid();
    if (!v) return null;
    const secure = w.location && w.location.protocol === "https:" ? "; Secure" : "";
    try { d.cookie = FP_NAME + "=" + v + "; Max-Age=" + FP_MAX_AGE + "; Path=/; SameSite=Lax" + secure; } catch (err) { /* refused */ }
    try { if (s) fpCookie() === v ? s.removeItem(FP_NAME) : s.setItem(FP_NAME, v); } catch (err) { /* blocked */ }
    fpid = v;
    return v;
  }
  function identity(o) {
    const v = firstPartyId();
    if (v) o.fpid = v;
    return o;
  }
  // The opt-out link where Kaeru's own cookie is blocked names the first-party id, so the
  // opt-out reaches this browser's history and holds for it: a.href = kaeru.optoutUrl("shop1").
  q.optoutUrl = function (advertiser) {
    const adv = advertiser || defaults.advertiser, v = firstPartyId();
    const p = adv && v ? "?" + new URLSearchParams({ a: String(adv), fpid: v }) : "";
    return base + "/optout" + p;
  };
  // kaeru.push(["identify", {email}]) hashes in the page (trim, lowercase, SHA-256 hex, as
  // Google Enhanced Conversions and Meta's Conversions API do): the e-mail itself never leaves
  // the page, and without crypto.subtle (not a secure context) nothing is sent. Or
  // {email_sha256} (64 hex digits), or {customer_id} (the shop's own, 1-128 characters).
  // The shop's server signs the hash of its logged-in customer ({email_sig, sig_exp}, see the
  // README): passed on as given; only a signed e-mail joins the shop's e-mail audiences.
  const HEX64 = /^[0-9a-f]{64}$/;
  function identify(a) {
    const adv = a.advertiser || defaults.advertiser;
    if (!adv) return warn("no advertiser for identify");
    const e = { advertiser: String(adv), event: "identify" };
    if (a.email_sig != null) e.email_sig = String(a.email_sig);
    if (a.sig_exp != null) e.sig_exp = String(a.sig_exp);
    const queue = () => {
      batch.push(e);
      if (timer === null) timer = setTimeout(flush, 0);
    };
    if (a.email_sha256 != null) {
      const h = String(a.email_sha256).trim().toLowerCase();
      if (!HEX64.test(h)) return warn("identify: email_sha256 must be 64 hex digits");
      e.email_sha256 = h;
      return queue();
    }
    if (a.customer_id != null) {
      e.customer_id = String(a.customer_id);
      return queue();
    }
    if (a.email == null) return warn("identify needs email, email_sha256 or customer_id");
    const subtle = w.crypto && w.crypto.subtle;
    if (!subtle || !w.TextEncoder) return warn("identify: no crypto.subtle (not https): nothing sent");
    const email = String(a.email).trim().toLowerCase();
    if (!email) return warn("identify: empty e-mail");
    subtle.digest("SHA-256", new w.TextEncoder().encode(email)).then((digest) => {
      e.email_sha256 = Array.from(new Uint8Array(digest))
        .map((b) => (b < 16 ? "0" : "") + b.toString(16)).join("");
      queue();
    }, () => warn("identify: hashing failed: nothing sent"));
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
    try { body = JSON.stringify(identity(withClickId(privacy({ events: sent })))); } catch (err) { /* pixels */ }
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
  firstPartyId(); // refreshed on every page
  if (w.addEventListener) w.addEventListener("pagehide", flush);
  if (d.addEventListener) {
    d.addEventListener("visibilitychange", () => d.visibilityState === "hidden" && flush());
  }
})(window, document);
