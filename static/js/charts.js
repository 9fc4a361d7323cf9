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
 * gets the class s0, s1, ... for its colour, or s<colour> when it names one (two series of one run share
 * it); `dashed: true` draws it dashed, `key: false` leaves it out of the legend, which wraps onto more
 * rows when it is long. Every point has a hover title. Drawn from the page like a histogram:
 *
 *   <div data-lines="series-id" data-x-label="step"></div>
 *   <script id="series-id" type="application/json">[{"name": "#3 train", "colour": 0, "points": [[1, 2.1]]}]</script>
 *
 * Bars over time (the explorer's dashboard): LogtuneCharts.timeBars(element, points, options), points
 * [{label: "Dec 7 10:00", value: 12, second: 3}, ...], one bar per bucket of time, `second` (optional) drawn as a
 * line over the bars (p50 over p95 latency); a null value leaves a gap. Drawn from the page like the others:
 *
 *   <div data-time-bars="points-id" data-unit="ms" data-label="Latency per hour"></div>
 *
 * Loaded as a module (strict, scoped, deferred). The charts are offered on window rather than exported:
 * an import names a file, and in production the static files have hashed names that only {% static %} knows.
 */

const SVG_NS = "http://www.w3.org/2000/svg";
const W = 240;
const H = 96;
const LEFT = 26;
const BOTTOM = 13;
const TOP = 5;

function node(name, attrs, parent, text) {
  const el = document.createElementNS(SVG_NS, name);
  Object.entries(attrs).forEach(([key, value]) => el.setAttribute(key, value));
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function range(bin) {
  return bin.high - bin.low === 1 ? String(bin.low) : `${bin.low}–${bin.high - 1}`;
}

function histogram(container, bins, options = {}) {
  const unit = options.unit ? ` ${options.unit}` : "";
  const max = Math.max(...bins.map((bin) => bin.count), 1);
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": options.label || "histogram" });
  const plotW = W - LEFT - 2;
  const plotH = H - TOP - BOTTOM;
  const step = plotW / Math.max(bins.length, 1);
  bins.forEach((bin, i) => {
    const h = bin.count ? Math.max(1, (bin.count / max) * plotH) : 0;
    const bar = node("rect", {
      class: "bar", x: (LEFT + i * step + 0.5).toFixed(1), y: (TOP + plotH - h).toFixed(1),
      width: Math.max(step - 1, 1).toFixed(1), height: h.toFixed(1),
    }, svg);
    node("title", {}, bar, `${range(bin)}${unit}: ${bin.count}`);
  });
  node("line", { class: "baseline", x1: LEFT, x2: W - 2, y1: TOP + plotH + 0.5, y2: TOP + plotH + 0.5 }, svg);
  node("text", { class: "axis", x: LEFT - 4, y: TOP + 7, "text-anchor": "end" }, svg, String(max));
  node("text", { class: "axis", x: LEFT - 4, y: TOP + plotH, "text-anchor": "end" }, svg, "0");
  if (bins.length) {
    node("text", { class: "axis", x: LEFT, y: H - 3 }, svg, String(bins[0].low));
    node("text", { class: "axis", x: W - 2, y: H - 3, "text-anchor": "end" }, svg, range(bins[bins.length - 1]) + unit);
  }
  container.replaceChildren(svg);
  container.dataset.rendered = "";
}

// --- line charts --------------------------------------------------------------------------------
const LW = 480;
const LH = 190;
const LL = 46;
const LR = 10;
const LT = 8;
const LB = 30;
const MAX_MARKERS = 300;

function fmt(value) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs < 1e-3 || abs >= 1e5) return value.toExponential(1);
  return String(+value.toPrecision(3));
}

// About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high].
function ticks(low, high, count) {
  if (high <= low) return [low];
  const raw = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

const plotted = (point) => point[1] !== null && isFinite(point[1]);

function lines(container, series, options = {}) {
  const all = series.flatMap((s) => s.points.filter(plotted));
  const svg = node("svg", { viewBox: `0 0 ${LW} ${LH}`, role: "img", "aria-label": options.label || "line chart", class: "lines" });
  const plotW = LW - LL - LR;
  const plotH = LH - LT - LB;
  if (!all.length) {
    node("text", { class: "axis empty", x: LW / 2, y: LH / 2, "text-anchor": "middle" }, svg, options.empty || "No points yet");
    container.replaceChildren(svg);
    container.dataset.rendered = "";
    return;
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1;
  y0 -= pad; y1 += pad;
  if (Math.min(...ys) >= 0 && y0 < 0) y0 = 0;
  const px = (x) => LL + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y) => LT + plotH - ((y - y0) / (y1 - y0)) * plotH;

  ticks(y0, y1, 4).forEach((t) => {
    node("line", { class: "grid", x1: LL, x2: LW - LR, y1: py(t).toFixed(1), y2: py(t).toFixed(1) }, svg);
    node("text", { class: "axis", x: LL - 4, y: (py(t) + 3).toFixed(1), "text-anchor": "end" }, svg, fmt(t));
  });
  ticks(x0, x1, 5).filter((t) => Number.isInteger(t)).forEach((t) => {
    node("text", { class: "axis", x: px(t).toFixed(1), y: LT + plotH + 12, "text-anchor": "middle" }, svg, String(t));
  });
  node("line", { class: "baseline", x1: LL, x2: LW - LR, y1: LT + plotH + 0.5, y2: LT + plotH + 0.5 }, svg);
  if (options.xLabel) node("text", { class: "axis", x: LW - LR, y: LH - 3, "text-anchor": "end" }, svg, options.xLabel);
  if (options.yLabel) node("text", { class: "axis", x: LL, y: LH - 3 }, svg, options.yLabel);

  let legendX = LL + 8;
  let legendY = LT + 6;
  series.forEach((s, i) => {
    const points = s.points.filter(plotted);
    if (!points.length) return;
    const group = node("g", { class: `series s${s.colour ?? i}${s.dashed ? " dashed" : ""}` }, svg);
    const d = points.map((p, j) => `${j ? "L" : "M"}${px(p[0]).toFixed(1)} ${py(p[1]).toFixed(1)}`).join("");
    node("path", { class: "line", d }, group);
    const every = Math.ceil(points.length / MAX_MARKERS);
    points.forEach((p, j) => {
      if (j % every && j !== points.length - 1) return;
      const dot = node("circle", { class: "dot", cx: px(p[0]).toFixed(1), cy: py(p[1]).toFixed(1), r: points.length > 60 ? 1.6 : 2.4 }, group);
      node("title", {}, dot, `${s.name} at step ${p[0]}: ${fmt(p[1])}`);
    });
    if (s.key === false) return;
    const width = 20 + s.name.length * 5.6;
    if (legendX > LL + 8 && legendX + width > LW - LR) {
      legendX = LL + 8;
      legendY += 10;
    }
    node("rect", { class: "key", x: legendX, y: legendY - 4, width: 10, height: 3 }, group);
    const label = node("text", { class: "legend", x: legendX + 13, y: legendY }, group, s.name);
    legendX += width;
    label.dataset.series = s.name;
  });
  // Marks: a step singled out (the best checkpoint), a dotted rule across the plot with a dot on its point.
  (options.marks || []).forEach((m) => {
    const mark = node("g", { class: "mark" }, svg);
    const x = px(m.x).toFixed(1);
    node("line", { class: "mark-rule", x1: x, x2: x, y1: LT, y2: LT + plotH }, mark);
    node("circle", { class: "mark-dot", cx: x, cy: py(m.y).toFixed(1), r: 3.6 }, mark);
    const right = px(m.x) > LL + plotW * 0.7;
    node("text", { class: "mark-label", x: (px(m.x) + (right ? -4 : 4)).toFixed(1), y: LT + plotH - 4,
      "text-anchor": right ? "end" : "start" }, mark, m.label);
    mark.dataset.mark = m.name || m.label;
  });
  container.replaceChildren(svg);
  container.dataset.rendered = "";
}

// --- bars over time -----------------------------------------------------------------------------
function timeBars(container, points, options = {}) {
  const unit = options.unit || "";
  const show = (v) => (unit === "$" ? `$${fmt(v)}` : `${fmt(v)}${unit ? ` ${unit}` : ""}`);
  const values = points.flatMap((p) => [p.value, p.second]).filter((v) => v !== null && v !== undefined && isFinite(v));
  const max = Math.max(...values, 0) || 1;
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": options.label || "bars over time", class: "time-bars" });
  const plotW = W - LEFT - 2;
  const plotH = H - TOP - BOTTOM;
  const step = plotW / Math.max(points.length, 1);
  const y = (v) => TOP + plotH - (v / max) * plotH;
  points.forEach((p, i) => {
    if (p.value === null || p.value === undefined) return;
    const h = p.value ? Math.max(1, (p.value / max) * plotH) : 0;
    const bar = node("rect", {
      class: "bar", x: (LEFT + i * step + 0.25).toFixed(2), y: (TOP + plotH - h).toFixed(2),
      width: Math.max(step - 0.5, 0.5).toFixed(2), height: h.toFixed(2),
    }, svg);
    const second = p.second === null || p.second === undefined ? "" : ` (line: ${show(p.second)})`;
    node("title", {}, bar, `${p.label}: ${show(p.value)}${second}`);
  });
  const line = points.map((p, i) => (p.second === null || p.second === undefined ? null : [LEFT + (i + 0.5) * step, y(p.second)]));
  const d = line.map((pt, i) => (pt ? `${i && line[i - 1] ? "L" : "M"}${pt[0].toFixed(1)} ${pt[1].toFixed(1)}` : "")).join("");
  if (d) node("path", { class: "second", d }, svg);
  node("line", { class: "baseline", x1: LEFT, x2: W - 2, y1: TOP + plotH + 0.5, y2: TOP + plotH + 0.5 }, svg);
  node("text", { class: "axis", x: LEFT - 3, y: TOP + 7, "text-anchor": "end" }, svg, fmt(max));
  node("text", { class: "axis", x: LEFT - 3, y: TOP + plotH, "text-anchor": "end" }, svg, "0");
  if (points.length) {
    node("text", { class: "axis", x: LEFT, y: H - 3 }, svg, points[0].label);
    node("text", { class: "axis", x: W - 2, y: H - 3, "text-anchor": "end" }, svg, points[points.length - 1].label);
  }
  container.replaceChildren(svg);
  container.dataset.rendered = "";
}

function renderAll(root = document) {
  root.querySelectorAll("[data-histogram]:not([data-rendered])").forEach((el) => {
    const source = document.getElementById(el.dataset.histogram);
    if (!source) return;
    histogram(el, JSON.parse(source.textContent), { unit: el.dataset.unit || "" });
  });
  root.querySelectorAll("[data-lines]:not([data-rendered])").forEach((el) => {
    const source = document.getElementById(el.dataset.lines);
    if (!source) return;
    lines(el, JSON.parse(source.textContent), { xLabel: el.dataset.xLabel || "", label: el.dataset.label || "" });
  });
  root.querySelectorAll("[data-time-bars]:not([data-rendered])").forEach((el) => {
    const source = document.getElementById(el.dataset.timeBars);
    if (!source) return;
    timeBars(el, JSON.parse(source.textContent), { unit: el.dataset.unit || "", label: el.dataset.label || "" });
  });
}

window.LogtuneCharts = { histogram, lines, timeBars, renderAll };
document.addEventListener("DOMContentLoaded", () => renderAll(document));
document.addEventListener("htmx:load", (event) => renderAll(event.target));
