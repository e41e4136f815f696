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
  function flush() {
    clearTimeout(timer);
    timer = null;
    if (!batch.length) return;
    const sent = batch, n = w.navigator;
    batch = [];
    try {
      const body = JSON.stringify(privacy({ events: sent }));
      if (n && n.sendBeacon && n.sendBeacon(base + "/e", new Blob([body], { type: "text/plain" }))) {
        return;
      }
    } catch (err) { /* fall back to pixels */ }
    sent.forEach((e) => { try { pixel(e); } catch (err) { /* never break the page */ } });
  }

  const run = (cmd) => { try { handle(cmd); } catch (err) { warn("failed: " + err); } };
  const pending = q.splice(0, q.length);
  q.push = function () {
    [].forEach.call(arguments, run);
    return q.length;
  };
  pending.forEach(run);
  if (w.addEventListener) w.addEventListener("pagehide", flush);
  if (d.addEventListener) {
    d.addEventListener("visibilitychange", () => d.visibilityState === "hidden" && flush());
  }
})(window, document);
