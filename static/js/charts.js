/* Tiny dependency-free SVG charts.
 *
 *   <div data-histogram="bins-id" data-unit="tokens"></div>
 *   <script id="bins-id" type="application/json">[{"low": 0, "high": 50, "count": 3}, ...]</script>
 *
 * Elements are drawn on page load and whenever htmx swaps new content in. LogtuneCharts.histogram
 * can also be called directly with an element and the bins.
 *
 * Line charts (loss curves): LogtuneCharts.lines(element, series, options), where series is
 * [{name: "train loss", points: [[x, y], ...]}, ...] and options {xLabel, yLabel, label}. Each series
 * gets the class s0, s1, ... for its colour; every point has a hover title.
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 240, H = 96, LEFT = 26, BOTTOM = 13, TOP = 5;

  function node(name, attrs, parent, text) {
    var el = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }

  function range(bin) {
    return bin.high - bin.low === 1 ? String(bin.low) : bin.low + "–" + (bin.high - 1);
  }

  function histogram(container, bins, options) {
    options = options || {};
    var unit = options.unit ? " " + options.unit : "";
    var max = Math.max.apply(null, bins.map(function (b) { return b.count; }).concat([1]));
    var svg = node("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": options.label || "histogram" });
    var plotW = W - LEFT - 2, plotH = H - TOP - BOTTOM;
    var step = plotW / Math.max(bins.length, 1);
    bins.forEach(function (bin, i) {
      var h = bin.count ? Math.max(1, (bin.count / max) * plotH) : 0;
      var bar = node("rect", {
        class: "bar", x: (LEFT + i * step + 0.5).toFixed(1), y: (TOP + plotH - h).toFixed(1),
        width: Math.max(step - 1, 1).toFixed(1), height: h.toFixed(1),
      }, svg);
      node("title", {}, bar, range(bin) + unit + ": " + bin.count);
    });
    node("line", { class: "baseline", x1: LEFT, x2: W - 2, y1: TOP + plotH + 0.5, y2: TOP + plotH + 0.5 }, svg);
    node("text", { class: "axis", x: LEFT - 4, y: TOP + 7, "text-anchor": "end" }, svg, String(max));
    node("text", { class: "axis", x: LEFT - 4, y: TOP + plotH, "text-anchor": "end" }, svg, "0");
    if (bins.length) {
      node("text", { class: "axis", x: LEFT, y: H - 3 }, svg, String(bins[0].low));
      node("text", { class: "axis", x: W - 2, y: H - 3, "text-anchor": "end" }, svg, range(bins[bins.length - 1]) + unit);
    }
    container.replaceChildren(svg);
    container.setAttribute("data-rendered", "");
  }

  // --- line charts --------------------------------------------------------------------------------
  var LW = 480, LH = 190, LL = 46, LR = 10, LT = 8, LB = 30, MAX_MARKERS = 300;

  function fmt(value) {
    if (value === 0) return "0";
    var abs = Math.abs(value);
    if (abs < 1e-3 || abs >= 1e5) return value.toExponential(1);
    return String(+value.toPrecision(3));
  }

  // About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high].
  function ticks(low, high, count) {
    if (high <= low) return [low];
    var raw = (high - low) / count, magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * magnitude; }).filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function lines(container, series, options) {
    options = options || {};
    var all = [];
    series.forEach(function (s) { s.points.forEach(function (p) { if (p[1] !== null && isFinite(p[1])) all.push(p); }); });
    var svg = node("svg", { viewBox: "0 0 " + LW + " " + LH, role: "img", "aria-label": options.label || "line chart", class: "lines" });
    var plotW = LW - LL - LR, plotH = LH - LT - LB;
    if (!all.length) {
      node("text", { class: "axis empty", x: LW / 2, y: LH / 2, "text-anchor": "middle" }, svg, options.empty || "No points yet");
      container.replaceChildren(svg);
      container.setAttribute("data-rendered", "");
      return;
    }
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    var pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    if (Math.min.apply(null, ys) >= 0 && y0 < 0) y0 = 0;
    function px(x) { return LL + ((x - x0) / (x1 - x0)) * plotW; }
    function py(y) { return LT + plotH - ((y - y0) / (y1 - y0)) * plotH; }

    ticks(y0, y1, 4).forEach(function (t) {
      node("line", { class: "grid", x1: LL, x2: LW - LR, y1: py(t).toFixed(1), y2: py(t).toFixed(1) }, svg);
      node("text", { class: "axis", x: LL - 4, y: (py(t) + 3).toFixed(1), "text-anchor": "end" }, svg, fmt(t));
    });
    ticks(x0, x1, 5).filter(function (t) { return Number.isInteger(t); }).forEach(function (t) {
      node("text", { class: "axis", x: px(t).toFixed(1), y: LT + plotH + 12, "text-anchor": "middle" }, svg, String(t));
    });
    node("line", { class: "baseline", x1: LL, x2: LW - LR, y1: LT + plotH + 0.5, y2: LT + plotH + 0.5 }, svg);
    if (options.xLabel) node("text", { class: "axis", x: LW - LR, y: LH - 3, "text-anchor": "end" }, svg, options.xLabel);
    if (options.yLabel) node("text", { class: "axis", x: LL, y: LH - 3 }, svg, options.yLabel);

    var legendX = LL + 8;
    series.forEach(function (s, i) {
      var points = s.points.filter(function (p) { return p[1] !== null && isFinite(p[1]); });
      if (!points.length) return;
      var group = node("g", { class: "series s" + i }, svg);
      var d = points.map(function (p, j) { return (j ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); }).join("");
      node("path", { class: "line", d: d }, group);
      var every = Math.ceil(points.length / MAX_MARKERS);
      points.forEach(function (p, j) {
        if (j % every && j !== points.length - 1) return;
        var dot = node("circle", { class: "dot", cx: px(p[0]).toFixed(1), cy: py(p[1]).toFixed(1), r: points.length > 60 ? 1.6 : 2.4 }, group);
        node("title", {}, dot, s.name + " at step " + p[0] + ": " + fmt(p[1]));
      });
      node("rect", { class: "key", x: legendX, y: LT + 2, width: 10, height: 3 }, group);
      var label = node("text", { class: "legend", x: legendX + 13, y: LT + 6 }, group, s.name);
      legendX += 20 + s.name.length * 5.6;
      label.setAttribute("data-series", s.name);
    });
    container.replaceChildren(svg);
    container.setAttribute("data-rendered", "");
  }

  function renderAll(root) {
    (root || document).querySelectorAll("[data-histogram]:not([data-rendered])").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-histogram"));
      if (!source) return;
      histogram(el, JSON.parse(source.textContent), { unit: el.getAttribute("data-unit") || "" });
    });
  }

  window.LogtuneCharts = { histogram: histogram, lines: lines, renderAll: renderAll };
  document.addEventListener("DOMContentLoaded", function () { renderAll(document); });
  document.addEventListener("htmx:load", function (event) { renderAll(event.target); });
})();
