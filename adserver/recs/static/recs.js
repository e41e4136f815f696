/* Kaeru recommendations widget. Usage, on the shop's page:
 *   <div data-kaeru-recs="product" data-advertiser="shop1" data-item="sku-1" data-n="4"></div>
 *   <script src="https://kaeru.example/recs.js" async></script>
 * Each placement is fetched from /recs.json when it is scrolled near (IntersectionObserver;
 * at once where unsupported) and rendered as a list with the shop's look: CSS variables
 * (--kaeru-recs-gap, --kaeru-recs-columns, --kaeru-recs-text, --kaeru-recs-muted,
 * --kaeru-recs-accent, --kaeru-recs-radius) and an optional <template id="kaeru-recs-template">
 * (or data-template="ID") whose [data-kaeru-field] elements are filled with textContent/attributes
 * only: server data is never parsed as HTML. Once half of a rendered list is in the viewport,
 * its impressions are counted by the answer's beacon (impression_url), fired once. */
(function (w, d) {
  "use strict";
  if (w.kaeruRecsLoaded) return;
  w.kaeruRecsLoaded = true;

  const lastScript = () => [].slice.call(d.getElementsByTagName("script")).reverse()
    .map((s) => s.src || "").find((src) => /\/recs\.js([?#]|$)/.test(src));
  const me = (d.currentScript && d.currentScript.src) || lastScript() || "";
  let base = "";
  try { base = new URL(me, w.location && w.location.href).origin; } catch (err) { /* page origin */ }

  const PLACEMENTS = /^[a-z_]{1,32}$/;
  // tag.js's first-party id: its cookie, else (where the cookie is refused) its localStorage
  // fallback, same name and same validation as tag.js reads them.
  const FP_NAME = "_kaeru_fp", FP_ID = /^[A-Za-z0-9_-]{22}$/;
  const FP_COOKIE = /(?:^|;\s*)_kaeru_fp=([A-Za-z0-9_-]{22})(?:;|$)/;
  const STYLE_ID = "kaeru-recs-style";
  const CSS =
    "[data-kaeru-recs] .kaeru-recs-list{list-style:none;margin:0;padding:0;display:grid;" +
    "gap:var(--kaeru-recs-gap,1rem);grid-template-columns:repeat(auto-fill," +
    "minmax(var(--kaeru-recs-min-width,10rem),1fr))}" +
    "[data-kaeru-recs] .kaeru-recs-item a{display:block;color:var(--kaeru-recs-text,inherit);" +
    "text-decoration:none}" +
    "[data-kaeru-recs] .kaeru-recs-item img{display:block;width:100%;height:auto;" +
    "aspect-ratio:1/1;object-fit:cover;border-radius:var(--kaeru-recs-radius,.25rem)}" +
    "[data-kaeru-recs] .kaeru-recs-title{display:block;margin-top:.4em}" +
    "[data-kaeru-recs] .kaeru-recs-price{display:block;font-weight:bold;" +
    "color:var(--kaeru-recs-accent,inherit)}" +
    "[data-kaeru-recs] .kaeru-recs-regular{text-decoration:line-through;" +
    "color:var(--kaeru-recs-muted,#666);margin-left:.4em;font-weight:normal}" +
    "[data-kaeru-recs] a:focus-visible{outline:2px solid var(--kaeru-recs-accent,currentColor)}";

  function addStyle() {
    if (d.getElementById(STYLE_ID) || !d.head) return;
    const style = d.createElement("style");
    style.id = STYLE_ID;
    style.textContent = CSS;
    d.head.insertBefore(style, d.head.firstChild); // the shop's own rules come later and win
  }

  function fpid() {
    let v = null;
    try {
      const m = FP_COOKIE.exec(d.cookie || "");
      v = m ? m[1] : null;
    } catch (err) { v = null; }
    if (!v) {
      try { v = w.localStorage ? w.localStorage.getItem(FP_NAME) : null; } catch (err) { v = null; }
    }
    return v && FP_ID.test(v) ? v : null;
  }

  function query(el) {
    const placement = el.getAttribute("data-kaeru-recs") || "";
    const adv = el.getAttribute("data-advertiser") || (w.kaeruRecs && w.kaeruRecs.advertiser);
    if (!PLACEMENTS.test(placement) || !adv) return null;
    const p = new URLSearchParams({ a: adv, placement: placement });
    const item = el.getAttribute("data-item");
    if (item) p.set("item", item);
    const n = el.getAttribute("data-n");
    if (n) p.set("n", n);
    const fp = fpid();
    if (fp) p.set("fpid", fp);
    return base + "/recs.json?" + p.toString();
  }

  // the default look: <li><a><img alt=title><span title><span price><s regular></a></li>
  function defaultItem(product) {
    const li = d.createElement("li");
    li.className = "kaeru-recs-item";
    const a = d.createElement("a");
    a.setAttribute("data-kaeru-field", "link");
    const img = d.createElement("img");
    img.setAttribute("data-kaeru-field", "image");
    img.loading = "lazy";
    img.decoding = "async";
    const title = d.createElement("span");
    title.className = "kaeru-recs-title";
    title.setAttribute("data-kaeru-field", "title");
    const price = d.createElement("span");
    price.className = "kaeru-recs-price";
    const now = d.createElement("span");
    now.setAttribute("data-kaeru-field", "price");
    const regular = d.createElement("s");
    regular.className = "kaeru-recs-regular";
    regular.setAttribute("data-kaeru-field", "regular_price");
    price.appendChild(now);
    price.appendChild(regular);
    a.appendChild(img);
    a.appendChild(title);
    a.appendChild(price);
    li.appendChild(a);
    return fill(li, product);
  }

  function safeUrl(url) {
    try {
      const u = new URL(String(url), w.location.href);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (err) { return null; }
  }

  function fill(root, product) {
    const fields = [].slice.call(root.querySelectorAll("[data-kaeru-field]"));
    if (root.hasAttribute && root.hasAttribute("data-kaeru-field")) fields.unshift(root);
    fields.forEach((node) => {
      const field = node.getAttribute("data-kaeru-field");
      if (field === "link") {
        const href = safeUrl(product.click_url);
        if (href) node.setAttribute("href", href);
      } else if (field === "image") {
        const src = safeUrl(product.image_url);
        if (src) node.setAttribute("src", src);
        node.setAttribute("alt", String(product.title || ""));
      } else if (field === "title") {
        node.textContent = String(product.title || "");
      } else if (field === "price") {
        node.textContent = String(product.price_text || "");
      } else if (field === "regular_price") {
        node.textContent = String(product.regular_price_text || "");
        node.hidden = !product.regular_price_text;
      }
    });
    return root;
  }

  function itemFrom(el, product) {
    const id = el.getAttribute("data-template") || "kaeru-recs-template";
    const tpl = d.getElementById(id);
    if (!tpl || !tpl.content) return defaultItem(product);
    const copy = tpl.content.cloneNode(true);
    const li = d.createElement("li");
    li.className = "kaeru-recs-item";
    li.appendChild(copy);
    return fill(li, product);
  }

  function render(el, answer) {
    const products = answer && Array.isArray(answer.products) ? answer.products : [];
    if (!products.length) {
      el.setAttribute("data-kaeru-state", "empty");
      return;
    }
    const ul = d.createElement("ul");
    ul.className = "kaeru-recs-list";
    const label = el.getAttribute("data-label");
    if (label) ul.setAttribute("aria-label", label);
    products.forEach((product) => ul.appendChild(itemFrom(el, product)));
    while (el.firstChild) el.removeChild(el.firstChild);
    el.appendChild(ul);
    el.setAttribute("data-kaeru-state", "rendered");
    whenSeen(ul, () => beacon(el, answer.impression_url));
  }

  // The list's impressions count once it is seen: half of it in the viewport (at once where
  // IntersectionObserver is missing), by the answer's sealed beacon, fired once.
  function whenSeen(ul, then) {
    if (!("IntersectionObserver" in w)) {
      then();
      return;
    }
    const seen = new w.IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      then();
    }, { threshold: 0.5 });
    seen.observe(ul);
  }

  function beacon(el, url) {
    const src = url && safeUrl(url);
    if (!src || el.getAttribute("data-kaeru-seen")) return;
    el.setAttribute("data-kaeru-seen", "true");
    const img = new w.Image(1, 1);
    img.referrerPolicy = "no-referrer";
    img.src = src;
  }

  function load(el) {
    if (el.getAttribute("data-kaeru-state")) return;
    const url = query(el);
    if (!url) {
      el.setAttribute("data-kaeru-state", "invalid");
      return;
    }
    el.setAttribute("data-kaeru-state", "loading");
    w.fetch(url, { credentials: "include" })
      .then((r) => (r.ok ? r.json() : null))
      .then((answer) => render(el, answer))
      .catch(() => el.setAttribute("data-kaeru-state", "failed"));
  }

  function start() {
    addStyle();
    const els = [].slice.call(d.querySelectorAll("[data-kaeru-recs]"));
    if (!w.fetch) return;
    if (!("IntersectionObserver" in w)) {
      els.forEach(load);
      return;
    }
    const seen = new w.IntersectionObserver((entries) => {
      entries.forEach((e) => {
        if (!e.isIntersecting) return;
        seen.unobserve(e.target);
        load(e.target);
      });
    }, { rootMargin: "200px 0px" });
    els.forEach((el) => seen.observe(el));
  }

  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start);
  else start();
})(window, document);
