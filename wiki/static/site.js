// headwiki client code: heatmap clicks open head pages; the search box filters heads. No network access.
(function () {
  "use strict";

  // Called by each Plotly heatmap right after it is drawn (plotly.io post_script).
  window.headwikiHeatmap = function (id) {
    var gd = document.getElementById(id);
    if (!gd || !gd.on) { return; }
    gd.on("plotly_click", function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (p && p.customdata) { window.location.href = p.customdata; }
    });
  };

  // Unit words a value may carry in the box, per unit of the index ("-5 pts", "-5points", "0.3 nats").
  var UNIT_WORDS = { points: ["pts", "pt", "points", "point"], percent: ["%", "percent"], nats: ["nats", "nat"],
                     bits: ["bits", "bit"] };
  var OPS = { ">": function (v, x) { return v > x; }, "<": function (v, x) { return v < x; },
              ">=": function (v, x) { return v >= x; }, "<=": function (v, x) { return v <= x; },
              "=": function (v, x) { return Math.abs(v - x) < 1e-9; } };

  // "induction > 0.5", "neg_acc_delta_zero < -5 pts", "L1H3", "all:" -> words, filters, all.
  function parseQuery(q) {
    var words = [], filters = [], all = false;
    var text = q.replace(/\u2212/g, "-")  // a typographic minus sign, as the pages print none but people paste one
      .replace(/\s*(>=|<=|>|<|=)\s*/g, "$1")
      .replace(/(\d)\s+(pts|pt|points|point|nats|nat|bits|bit|percent|%)(?![a-z_])/gi, "$1$2");
    text.trim().split(/\s+/).forEach(function (tok) {
      if (!tok) { return; }
      if (tok.toLowerCase() === "all:") { all = true; return; }
      var m = tok.match(/^([a-z_0-9]+)(>=|<=|>|<|=)(-?(?:\d+\.?\d*|\.\d+))([a-z%]*)$/i);
      if (m) { filters.push({ k: m[1].toLowerCase(), op: m[2], x: parseFloat(m[3]), unit: m[4].toLowerCase(), text: tok }); }
      else if (/^[a-z_0-9]*(>=|<=|>|<|=)/i.test(tok)) { filters.push({ bad: tok }); }
      else { words.push(tok.toLowerCase()); }
    });
    return { words: words, filters: filters, all: all };
  }

  function hay(e) {
    return (e.m + " " + e.l + " " + e.r.join(" ") + " " + e.r.join(" ").replace(/_/g, "-")).toLowerCase();
  }

  function passes(e, f) {
    var v = e.v[f.k];
    return v !== undefined && v !== null && OPS[f.op](v, f.x);
  }

  function matches(e, q) {
    var h = hay(e);
    for (var i = 0; i < q.words.length; i++) { if (h.indexOf(q.words[i]) < 0) { return false; } }
    for (var j = 0; j < q.filters.length; j++) { if (!passes(e, q.filters[j])) { return false; } }
    return true;
  }

  function fmtNum(x) { return String(Math.round(x * 1000) / 1000); }

  // Problems that make a filter unusable before any head is looked at: a typo'd metric, a unit that is not the
  // metric's, a malformed condition. -> [messages]
  function filterProblems(q, scope) {
    var out = [], units = window.HEADWIKI_UNITS || {};
    q.filters.forEach(function (f) {
      if (f.bad) { out.push("“" + f.bad + "” is not a condition: write metric > number, e.g. induction > 0.5"); return; }
      var known = {}, unitOf = null;
      scope.forEach(function (m) { Object.keys(units[m] || {}).forEach(function (k) { known[k] = true; }); if (units[m] && units[m][f.k]) { unitOf = units[m][f.k]; } });
      if (!known[f.k]) {
        var near = Object.keys(known).filter(function (k) { return k.indexOf(f.k) >= 0 || f.k.indexOf(k) >= 0; }).sort().slice(0, 6);
        out.push("no metric named “" + f.k + "” here" + (near.length ? "; did you mean " + near.join(", ") + "?" : "; metric names are the column names in the heatmap captions"));
        return;
      }
      if (f.unit) {
        var ok = (UNIT_WORDS[unitOf.unit] || [unitOf.short]).indexOf(f.unit) >= 0;
        if (!ok) { out.push(f.k + " is " + (unitOf.unit ? "in " + unitOf.unit : "a unitless score") + ", not “" + f.unit + "”"); }
      }
    });
    return out;
  }

  // Why no head matched: the first condition nothing passes (with the range the metric spans), or that each
  // condition matches some heads but none matches all.
  function whyNothing(q, pool, scope) {
    var units = window.HEADWIKI_UNITS || {};
    for (var i = 0; i < q.words.length; i++) {
      var w = q.words[i];
      if (!pool.some(function (e) { return hay(e).indexOf(w) >= 0; })) {
        return "no head label, role or model contains “" + w + "”";
      }
    }
    for (var j = 0; j < q.filters.length; j++) {
      var f = q.filters[j];
      var vals = pool.map(function (e) { return e.v[f.k]; }).filter(function (v) { return v !== undefined && v !== null; });
      if (!vals.length) { return "no head here has a value for " + f.k; }
      if (!pool.some(function (e) { return passes(e, f); })) {
        var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals), u = null;
        scope.forEach(function (m) { if (units[m] && units[m][f.k]) { u = units[m][f.k]; } });
        var inUnit = u && u.unit ? " " + (u.short || u.unit) : "";
        var msg = "no head has " + f.k + " " + f.op + " " + fmtNum(f.x) + inUnit + ": its values here run from " +
          fmtNum(lo) + " to " + fmtNum(hi) + inUnit;
        if (u && u.unit === "points") { msg += " (accuracy changes are in points: -5 means 5 points lower)"; }
        return msg;
      }
    }
    return "each condition matches some heads, but no head matches all of them";
  }

  function setupSearch() {
    var input = document.getElementById("head-search");
    var list = document.getElementById("search-results");
    var count = document.getElementById("search-count");
    if (!input || !list || !window.HEADWIKI_INDEX) { return; }
    var root = document.body.getAttribute("data-root") || "";
    var model = input.getAttribute("data-model") || "";
    function render() {
      var q = parseQuery(input.value);
      list.textContent = "";
      count.className = "hint";
      if (!q.words.length && !q.filters.length) { count.textContent = ""; return; }
      var pool = window.HEADWIKI_INDEX.filter(function (e) { return q.all || !model || e.m === model; });
      var scope = [];
      pool.forEach(function (e) { if (scope.indexOf(e.m) < 0) { scope.push(e.m); } });
      var problems = filterProblems(q, scope);
      if (problems.length) {
        count.className = "hint why";
        count.textContent = "Nothing matched: " + problems.join("; ") + ".";
        return;
      }
      var hits = pool.filter(function (e) { return matches(e, q); });
      if (!hits.length) {
        count.className = "hint why";
        count.textContent = "Nothing matched: " + whyNothing(q, pool, scope) + "." +
          (model && !q.all ? " Searching " + model + " only; prefix all: for every model." : "");
        return;
      }
      count.textContent = hits.length + " head" + (hits.length === 1 ? "" : "s");
      hits.slice(0, 300).forEach(function (e) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = root + e.u;
        a.textContent = (model && !q.all ? "" : e.m + " ") + e.l;
        li.appendChild(a);
        if (e.r.length) {
          var s = document.createElement("span");
          s.className = "muted";
          s.textContent = " " + e.r.join(", ").replace(/_/g, "-");
          li.appendChild(s);
        }
        list.appendChild(li);
      });
    }
    input.addEventListener("input", render);
    render();
  }

  // Heatmaps are inert JSON until they come near the viewport; plotly.js (4.6 MB) is loaded on the first one, so the
  // page paints and scrolls before the library is parsed (figures.lazy_plot_html writes the placeholders).
  var plotlyQueue = null;
  function withPlotly(src, fn) {
    if (window.Plotly) { fn(); return; }
    if (plotlyQueue) { plotlyQueue.push(fn); return; }
    plotlyQueue = [fn];
    var s = document.createElement("script");
    s.src = src;
    s.onload = function () { var q = plotlyQueue; plotlyQueue = []; q.forEach(function (f) { f(); }); };
    document.head.appendChild(s);
  }

  function drawPlot(el) {
    if (!el.classList.contains("lazy-plot")) { return; }
    el.classList.remove("lazy-plot");
    var spec = JSON.parse(document.getElementById(el.getAttribute("data-spec")).textContent);
    window.Plotly.newPlot(el, spec.data, spec.layout, spec.config).then(function () {
      el.style.height = "";
      window.headwikiHeatmap(el.id);
    });
  }

  function setupLazyPlots() {
    var host = document.querySelector("[data-plotly]");
    var plots = Array.prototype.slice.call(document.querySelectorAll(".lazy-plot"));
    if (!host || !plots.length) { return; }
    var src = host.getAttribute("data-plotly");
    var draw = function (el) { withPlotly(src, function () { drawPlot(el); }); };
    if (!("IntersectionObserver" in window)) { plots.forEach(draw); return; }
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (en) {
        if (en.isIntersecting) { io.unobserve(en.target); draw(en.target); }
      });
    }, { rootMargin: "400px 0px" });
    plots.forEach(function (el) { io.observe(el); });
  }

  // Plots drawn while the page was still loading may have measured a different width: refit once laid out.
  function refit() {
    if (!window.Plotly) { return; }
    Array.prototype.forEach.call(document.querySelectorAll(".js-plotly-plot"), function (gd) {
      window.Plotly.Plots.resize(gd);
    });
  }

  // The all-heads scatter (model page): the axes' select boxes rebuild the trace (the same trace as
  // figures.scatter_trace); before the plot is drawn they rewrite its lazy spec instead.
  function setupScatter() {
    var dataEl = document.getElementById("scatter-data");
    var sx = document.getElementById("scatter-x"), sy = document.getElementById("scatter-y");
    var el = document.getElementById("scatter-plot");
    if (!dataEl || !sx || !sy || !el) { return; }
    var d = JSON.parse(dataEl.textContent);
    function title(name) {
      var m = d.metrics.filter(function (x) { return x.name === name; })[0];
      return m.unit ? m.label + " (" + m.unit + ")" : m.label;
    }
    function update() {
      var x = sx.value, y = sy.value;
      var specEl = document.getElementById(el.getAttribute("data-spec"));
      var spec = JSON.parse(specEl.textContent);
      var tr = spec.data[0];
      tr.x = d.values[x]; tr.y = d.values[y];
      spec.layout.xaxis.title.text = title(x); spec.layout.yaxis.title.text = title(y);
      specEl.textContent = JSON.stringify(spec);
      if (window.Plotly && el.classList.contains("js-plotly-plot")) { window.Plotly.react(el, spec.data, spec.layout, spec.config); }
    }
    sx.addEventListener("change", update);
    sy.addEventListener("change", update);
  }

  document.addEventListener("DOMContentLoaded", setupSearch);
  document.addEventListener("DOMContentLoaded", setupScatter);
  document.addEventListener("DOMContentLoaded", setupLazyPlots);
  window.addEventListener("load", refit);
})();
