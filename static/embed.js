/* Patchwork survey embed. One tag on the shop's pages:
 *   <script async src="https://patchwork.example/embed.js" data-shop-key="..."></script>
 * Optional: data-order-id, data-email, data-customer-id, data-signature (order confirmation),
 * data-min-seconds (time on page before exit intent counts; default 3).
 * Rules: never throw into the host page, never block it, never restyle it (everything shown
 * lives in one element's Shadow DOM), no globals but window.PatchworkEmbed. README: "Embedding
 * surveys". The URL rules mirror surveys/triggers.py (url_matches). */
(function () {
  "use strict";
  var script = document.currentScript;
  try {
    if (window.PatchworkEmbed || !script || !script.src) return;
    var data = script.dataset;
    var key = data.shopKey;
    if (!key) return;
    window.PatchworkEmbed = { version: 1 };
    start(script.src.replace(/\/embed\.js(?:[?#].*)?$/, ""), key, data);
  } catch (e) { /* a broken survey must never break the shop */ }

  function start(base, key, data) {
    var origin = new URL(base).origin;
    var api = base + "/embed/" + encodeURIComponent(key);
    var minMs = 1000 * (isFinite(parseFloat(data.minSeconds)) ? parseFloat(data.minSeconds) : 3);
    var DAY = 864e5;
    var store = storage("patchwork:" + key);
    var visitor = store.v || (store.v = randomId());
    store.s = store.s || {};
    store.save();
    var device = observedDevice();
    var open = false; // one survey per page view

    fetch(api + "/config.json", { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (config) {
        if (!config || !config.surveys) return;
        var cooldown = (config.cooldown_days || 0) * DAY;
        if (store.last && Date.now() - store.last < cooldown) return;
        config.surveys.forEach(function (survey) {
          if (eligible(survey)) arm(survey);
        });
      })
      .catch(function () {});

    function eligible(s) {
      var seen = store.s[s.id];
      var path = decode(location.pathname).replace(/\/+$/, "") || "/";
      var full = location.protocol + "//" + location.host + path;
      var matches = function (p) {
        var g = glob(p);
        return p.charAt(0) === "/" ? g.test(path) : g.test(full) || g.test(full.replace(/\/$/, ""));
      };
      if ((s.exclude || []).some(matches)) return false;
      if (s.include && s.include.length && !s.include.some(matches)) return false;
      if (s.device === "desktop" && device !== "desktop") return false;
      if (s.device === "mobile" && device === "desktop") return false;
      if (hash(s.id + ":" + visitor) % 100 >= s.sample) return false;
      if (!seen) return true;
      if (s.freq === "until_answered") return !seen.a;
      if (s.freq === "every_n_days") return Date.now() - seen.t >= (s.days || 0) * DAY;
      return false; // "once"
    }

    function arm(s) {
      var fire = function () { show(s); };
      if (s.kind === "page_load") later(fire, 0);
      else if (s.kind === "after_seconds") later(fire, 1000 * s.delay);
      else if (s.kind === "post_purchase") { if (data.orderId) later(fire, 0); }
      else if (s.kind === "exit_intent") exitIntent(fire);
    }

    // Exit intent: on desktop the pointer leaves through the top edge while moving up; on a
    // touch device a fast scroll back up toward the address bar, or coming back to the tab.
    function exitIntent(fire) {
      var ready = function () { return performance.now() >= minMs; };
      if (device === "desktop") {
        var lastY = Infinity;
        on(document, "mousemove", function (e) { lastY = e.clientY; });
        on(document, "mouseout", function (e) {
          if (!e.relatedTarget && e.clientY <= 0 && e.clientY < lastY && ready()) fire();
          lastY = e.clientY;
        });
        return;
      }
      var y = scrollY, t = performance.now();
      on(window, "scroll", function () {
        var now = performance.now(), dy = y - scrollY, dt = now - t;
        // px per ms; a pause between two scrolls is a new gesture, not a fast one
        if (dt < 150 && dy >= 40 && dy / dt >= 1.5 && ready()) fire();
        y = scrollY; t = now;
      });
      var left = false;
      on(document, "visibilitychange", function () {
        if (document.visibilityState === "hidden") left = true;
        else if (left && ready()) fire();
      });
    }

    function show(s) {
      if (open) return;
      open = true;
      var body = { survey: s.id, visitor: visitor, page: location.href, device: device };
      [["order_id", "orderId"], ["email", "email"], ["customer_id", "customerId"],
        ["signature", "signature"]].forEach(function (f) {
        if (data[f[1]]) body[f[0]] = data[f[1]];
      });
      fetch(api + "/responses", {
        method: "POST",
        credentials: "omit",
        // JSON as text/plain is a "simple" request: no CORS preflight before the survey shows
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify(body)
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (res) {
          if (!res || !res.url) throw 0;
          store.last = Date.now();
          store.s[s.id] = { t: store.last, a: 0 };
          store.save();
          dialog(s, res);
        })
        .catch(function () { open = false; });
    }

    function dialog(s, res) {
      var back = document.activeElement;
      var done = false;
      var host = document.createElement("patchwork-survey");
      // Inline `all: initial` keeps the host page's CSS off our one element.
      host.setAttribute("style", "all:initial;position:fixed;top:0;left:0;right:0;bottom:0;" +
        "z-index:2147483647;display:block");
      var root = host.attachShadow({ mode: "open" });
      root.innerHTML = "<style>" +
        ".o{position:fixed;inset:0;display:flex;align-items:center;justify-content:center;" +
        "background:rgba(0,0,0,.45);font:16px/1.4 system-ui,sans-serif}" +
        ".d{position:relative;box-sizing:border-box;width:min(480px,calc(100vw - 16px));" +
        "max-height:calc(100vh - 16px);background:#fff;border-radius:10px;" +
        "box-shadow:0 8px 32px rgba(0,0,0,.3);padding:40px 0 0;overflow:auto}" +
        "iframe{display:block;width:100%;height:360px;border:0}" +
        "button{position:absolute;top:4px;right:4px;width:36px;height:36px;border:0;" +
        "border-radius:6px;background:transparent;color:#222;font-size:24px;cursor:pointer}" +
        "button:focus-visible{outline:3px solid #1a5fb4}" +
        "</style><div class=o><span tabindex=0></span><div class=d role=dialog " +
        "aria-modal=true><button type=button aria-label='Close survey'>\u00d7</button>" +
        "<iframe></iframe></div><span tabindex=0></span></div>";
      var box = root.querySelector(".d");
      var close = root.querySelector("button");
      var frame = root.querySelector("iframe");
      var guards = root.querySelectorAll("span");
      var title = s.title || "Survey";
      box.setAttribute("aria-label", title);
      frame.title = title;
      frame.src = new URL(res.url, base).href;
      (document.body || document.documentElement).appendChild(host);
      frame.focus();
      // The survey's page replacing about:blank drops that focus: give it back once.
      var loaded = function () { frame.removeEventListener("load", loaded); frame.focus(); };
      frame.addEventListener("load", loaded);

      // Focus stays in the dialog: the guards around it send Tab back round the cycle of
      // close button and iframe; focus landing anywhere else on the page comes back.
      on(guards[0], "focus", function () { frame.focus(); });
      on(guards[1], "focus", function () { close.focus(); });
      var onFocus = function (e) { if (e.target !== host) close.focus(); };
      var onKey = function (e) {
        if (e.key === "Escape") { e.stopPropagation(); dismiss(); }
      };
      var onMessage = function (e) {
        var m = e.data;
        if (e.origin !== origin || e.source !== frame.contentWindow || !m) return;
        if (m.patchwork === "close") dismiss();
        else if (m.patchwork === "completed") {
          done = true;
          store.s[s.id].a = 1;
          store.save();
        } else if (m.patchwork === "height" && m.value > 0) {
          frame.style.height = Math.min(m.value, innerHeight - 72) + "px";
        }
      };
      on(close, "click", dismiss);
      on(document, "focusin", onFocus);
      on(document, "keydown", onKey, true);
      on(window, "message", onMessage);

      function dismiss() {
        document.removeEventListener("focusin", onFocus);
        document.removeEventListener("keydown", onKey, true);
        window.removeEventListener("message", onMessage);
        // Hidden now, removed a moment later: the keyup of the Esc that closed it may still
        // be on its way to the survey's frame, and must find it there.
        host.style.display = "none";
        setTimeout(function () { host.remove(); }, 500);
        if (back && back.focus) back.focus();
        if (!done) {
          fetch(base + "/embed/r/" + encodeURIComponent(res.token) + "/dismiss", {
            method: "POST", credentials: "omit", keepalive: true
          }).catch(function () {});
        }
      }
    }
  }

  // --- helpers ---------------------------------------------------------------------------

  function on(target, type, fn, capture) {
    target.addEventListener(type, guard(fn), capture || { passive: true });
  }

  function guard(fn) {
    return function (e) { try { fn(e); } catch (x) { /* never into the host page */ } };
  }

  function later(fn, ms) { setTimeout(guard(fn), ms); }

  // The visitor's state in the host page's localStorage, or in memory where storage fails
  // (private mode, blocked cookies): {v: visitor id, last: ms of the last survey shown,
  // s: {survey id: {t: ms shown, a: 1 once answered}}}.
  function storage(name) {
    var state = {};
    try { state = JSON.parse(localStorage.getItem(name)) || {}; } catch (e) { /* memory */ }
    Object.defineProperty(state, "save", {
      value: function () {
        try { localStorage.setItem(name, JSON.stringify(state)); } catch (e) { /* memory */ }
      }
    });
    return state;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }

  // What the browser shows, not what its User-Agent claims: touch and the screen's short side.
  function observedDevice() {
    var touch = navigator.maxTouchPoints > 0 || "ontouchstart" in window;
    if (!touch || matchMedia("(pointer: fine)").matches) return "desktop";
    return Math.min(screen.width, screen.height) < 600 ? "mobile" : "tablet";
  }

  function decode(text) {
    try { return decodeURIComponent(text); } catch (e) { return text; }
  }

  // A URL pattern: * matches anything, / included; case and a trailing / are ignored.
  function glob(pattern) {
    var parts = (decode(pattern).replace(/\/+$/, "") || "/").split("*").map(function (p) {
      return p.replace(/[.*+?^${}()|[\]\\\/]/g, "\\$&");
    });
    return new RegExp("^" + parts.join("[\\s\\S]*") + "$", "i");
  }

  // FNV-1a: a stable bucket for the sample percentage, the same on every visit.
  function hash(text) {
    var h = 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
  }
})();
