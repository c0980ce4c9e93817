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

  function parseQuery(q) {
    var words = [], filters = [], all = false;
    q.trim().split(/\s+/).forEach(function (tok) {
      if (!tok) { return; }
      if (tok.toLowerCase() === "all:") { all = true; return; }
      var m = tok.match(/^([a-z_0-9]+)(>=|<=|>|<)(-?[0-9.]+)$/i);
      if (m) { filters.push({ k: m[1], op: m[2], x: parseFloat(m[3]) }); }
      else { words.push(tok.toLowerCase()); }
    });
    return { words: words, filters: filters, all: all };
  }

  function matches(e, q) {
    var hay = (e.m + " " + e.l + " " + e.r.join(" ") + " " + e.r.join(" ").replace(/_/g, "-")).toLowerCase();
    for (var i = 0; i < q.words.length; i++) { if (hay.indexOf(q.words[i]) < 0) { return false; } }
    for (var j = 0; j < q.filters.length; j++) {
      var f = q.filters[j], v = e.v[f.k];
      if (v === undefined || v === null) { return false; }
      if ((f.op === ">" && !(v > f.x)) || (f.op === "<" && !(v < f.x)) ||
          (f.op === ">=" && !(v >= f.x)) || (f.op === "<=" && !(v <= f.x))) { return false; }
    }
    return true;
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
      if (!q.words.length && !q.filters.length) { count.textContent = ""; return; }
      var hits = window.HEADWIKI_INDEX.filter(function (e) {
        return (q.all || !model || e.m === model) && matches(e, q);
      });
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

  // Plots drawn while the page was still loading may have measured a different width: refit once laid out.
  function refit() {
    if (!window.Plotly) { return; }
    Array.prototype.forEach.call(document.querySelectorAll(".js-plotly-plot"), function (gd) {
      window.Plotly.Plots.resize(gd);
    });
  }

  document.addEventListener("DOMContentLoaded", setupSearch);
  window.addEventListener("load", refit);
})();
