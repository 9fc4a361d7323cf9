/* Tiny dependency-free SVG charts.
 *
 *   <div data-histogram="bins-id" data-unit="tokens"></div>
 *   <script id="bins-id" type="application/json">[{"low": 0, "high": 50, "count": 3}, ...]</script>
 *
 * Elements are drawn on page load and whenever htmx swaps new content in. LogtuneCharts.histogram
 * can also be called directly with an element and the bins.
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

  function renderAll(root) {
    (root || document).querySelectorAll("[data-histogram]:not([data-rendered])").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-histogram"));
      if (!source) return;
      histogram(el, JSON.parse(source.textContent), { unit: el.getAttribute("data-unit") || "" });
    });
  }

  window.LogtuneCharts = { histogram: histogram, renderAll: renderAll };
  document.addEventListener("DOMContentLoaded", function () { renderAll(document); });
  document.addEventListener("htmx:load", function (event) { renderAll(event.target); });
})();
