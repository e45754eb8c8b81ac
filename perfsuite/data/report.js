// perfsuite report: tables, SVG plots and the cost calculator, from the JSON in #perfsuite-data.
// No libraries and no network. `calculate` is perfsuite/calculator.py's arithmetic, operation by
// operation, so the page and `perfsuite calc` agree to the cent (tests/browser checks it).
"use strict";

const DATA = JSON.parse(document.getElementById("perfsuite-data").textContent);
const HOURS_PER_MONTH = 730;
const SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2457a6", "#d1495b", "#2e933c", "#edae49", "#7b4fa0", "#00798c", "#6b4e16", "#8a92a3"];

// ---------------------------------------------------------------- arithmetic (mirrors calculator.py)

function roundHalfAway(x, scale) {
  if (x === null || !Number.isFinite(x)) return x;
  const r = Math.floor(Math.abs(x) * scale + 0.5) / scale;
  return x < 0 ? -r : r;
}
const cents = (x) => roundHalfAway(x, 100);

function traffic(requestsPerMonth, peakRps, inputTokens, outputTokens) {
  if (!(inputTokens >= 0) || !(outputTokens >= 0)) throw new Error("tokens per request must be numbers >= 0");
  if (inputTokens + outputTokens <= 0) throw new Error("input and output tokens per request are both 0: give at least one");
  if (requestsPerMonth !== null && !(requestsPerMonth > 0)) throw new Error("requests per month must be > 0");
  if (peakRps !== null && !(peakRps > 0)) throw new Error("peak requests/s must be > 0");
  if (requestsPerMonth === null && peakRps === null) throw new Error("give requests per month or a peak rate");
  if (requestsPerMonth === null) requestsPerMonth = peakRps * SECONDS_PER_MONTH;
  const average = requestsPerMonth / SECONDS_PER_MONTH;
  if (peakRps === null) peakRps = average;
  else if (peakRps < average) throw new Error(`peak ${peakRps} requests/s is below the month's average ${average.toPrecision(4)} requests/s: raise the peak or lower the traffic`);
  return { requests_per_month: requestsPerMonth, peak_rps: peakRps, input_tokens: inputTokens, output_tokens: outputTokens, average_rps: average };
}

function meetsSlo(point, slo) {
  const ttft = point[`ttft_p${slo.percentile}_ms`], tpot = point[`tpot_p${slo.percentile}_ms`];
  if (ttft === null || ttft === undefined || tpot === null || tpot === undefined) return false;
  return (point.error_rate || 0) === 0 && ttft <= slo.ttft_ms && tpot <= slo.tpot_ms;
}

function sustainablePoint(points, slo) {
  let best = null;
  for (const p of [...points].sort((a, b) => a.rate - b.rate)) {
    if (!meetsSlo(p, slo)) break;
    best = p;
  }
  return best;
}

function calculate(t, throughputRps, pricePerHour, apiModels, devices) {
  if (!(throughputRps > 0)) throw new Error(`capacity ${throughputRps} requests/s per replica must be > 0`);
  if (!(pricePerHour >= 0)) throw new Error(`price ${pricePerHour} per hour must be >= 0`);
  if (!(devices >= 1) || Math.floor(devices) !== devices) throw new Error(`devices per replica ${devices}: a whole number >= 1`);
  const replicas = Math.max(1, Math.ceil(t.peak_rps / throughputRps));
  const replicaMonthly = devices * pricePerHour * HOURS_PER_MONTH;
  const monthly = replicas * replicaMonthly;
  const tokens = t.input_tokens + t.output_tokens;
  const fullUtil = devices * pricePerHour / (throughputRps * 3600) * 1e6;
  const self = {
    replicas, devices, price_per_hour: pricePerHour, throughput_rps: throughputRps,
    utilization: t.peak_rps / (replicas * throughputRps),
    monthly_cost: cents(monthly),
    cost_per_1m_requests: cents(monthly / t.requests_per_month * 1e6),
    cost_per_1m_tokens: roundHalfAway(monthly / (t.requests_per_month * tokens) * 1e6, 10000),
    full_utilization_cost_per_1m_requests: cents(fullUtil),
  };
  const peakRatio = t.peak_rps / t.average_rps;
  const api = {};
  for (const m of apiModels) {
    const perRequest = (t.input_tokens * m.input_per_1m + t.output_tokens * m.output_per_1m) / 1e6;
    const apiMonthly = t.requests_per_month * perRequest;
    const delta = (Math.round(self.monthly_cost * 100) - Math.round(cents(apiMonthly) * 100)) / 100;
    let breakEven = null;
    if (perRequest > 0 && replicaMonthly / perRequest <= throughputRps * SECONDS_PER_MONTH / peakRatio) {
      breakEven = Math.ceil(replicaMonthly / perRequest);
    }
    api[m.key] = {
      provider: m.provider, model: m.model, tier: m.tier,
      monthly_cost: cents(apiMonthly),
      cost_per_1m_requests: cents(perRequest * 1e6),
      delta,
      delta_pct: cents(apiMonthly) ? roundHalfAway(delta / cents(apiMonthly) * 100, 10) : null,
      cheaper: delta < 0 ? "self-hosted" : (delta > 0 ? "api" : "same"),
      break_even_requests_per_month: breakEven,
    };
  }
  return { traffic: t, hours_per_month: HOURS_PER_MONTH, self_hosted: self, api };
}

// ---------------------------------------------------------------- formatting and DOM helpers

const money = (v, digits = 2) => v === null || v === undefined ? "-" :
  (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const num = (v, digits = 2) => v === null || v === undefined || !Number.isFinite(v) ? "-" :
  v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function table(headers, rows, attrs = {}) {
  const t = el("table", attrs);
  t.append(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
  for (const r of rows) {
    const tr = el("tr", r.attrs || {});
    for (const c of (r.cells || r)) tr.append(c instanceof Node ? c : el("td", {}, c));
    t.append(tr);
  }
  return t;
}

function setText(id, text, value) {
  const e = $(id);
  e.textContent = text;
  if (value !== undefined) e.dataset.value = value === null ? "" : String(value);
}

// ---------------------------------------------------------------- SVG plots

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= step0);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

// A chart frame: linear or log axes, grid, labels; returns {root, x, y} with scale functions.
function frame(container, { xMin, xMax, yMin, yMax, xLabel, yLabel, logX = false, width = 520, height = 300 }) {
  const m = { l: 58, r: 16, t: 12, b: 42 };
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const fx = logX ? Math.log10 : (v) => v;
  const [a, b] = [fx(xMin), fx(xMax) > fx(xMin) ? fx(xMax) : fx(xMin) + 1];
  const yHi = yMax > yMin ? yMax : yMin + 1;
  const x = (v) => m.l + (fx(v) - a) / (b - a) * (width - m.l - m.r);
  const y = (v) => height - m.b - (v - yMin) / (yHi - yMin) * (height - m.t - m.b);
  const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
  const xt = logX ? niceTicks(a, b, 5).map((e) => Math.pow(10, e)) : niceTicks(xMin, xMax);
  for (const v of xt) {
    if (x(v) < m.l - 1 || x(v) > width - m.r + 1) continue;
    grid.append(svg("line", { x1: x(v), x2: x(v), y1: m.t, y2: height - m.b }));
    axis.append(svg("text", { x: x(v), y: height - m.b + 14, "text-anchor": "middle" }, +v.toPrecision(3)));
  }
  for (const v of niceTicks(yMin, yHi)) {
    if (y(v) < m.t - 1) continue;
    grid.append(svg("line", { x1: m.l, x2: width - m.r, y1: y(v), y2: y(v) }));
    axis.append(svg("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, +v.toPrecision(4)));
  }
  axis.append(svg("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
  axis.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }));
  axis.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  axis.append(svg("text", { x: 12, y: (m.t + height - m.b) / 2, transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})`, "text-anchor": "middle" }, yLabel));
  root.append(grid, axis);
  container.replaceChildren(root);
  return { root, x, y, width, height, m };
}

function lineChart(container, series, { xLabel, yLabel, hline = null, rings = [], yMin = 0 }) {
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (!pts.length) { container.textContent = "no data"; return; }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]).concat(hline ? [hline.y] : []);
  const f = frame(container, { xMin: Math.min(0, ...xs), xMax: Math.max(...xs) * 1.05, yMin, yMax: Math.max(...ys) * 1.1, xLabel, yLabel });
  if (hline) {
    f.root.append(svg("line", { x1: f.m.l, x2: f.width - f.m.r, y1: f.y(hline.y), y2: f.y(hline.y), stroke: "#b3261e", "stroke-dasharray": "5 4" }));
    f.root.append(svg("text", { x: f.width - f.m.r - 4, y: f.y(hline.y) - 4, "text-anchor": "end" }, hline.label));
  }
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const ok = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    f.root.append(svg("polyline", { points: ok.map((p) => `${f.x(p[0])},${f.y(p[1])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of ok) {
      const c = svg("circle", { cx: f.x(p[0]), cy: f.y(p[1]), r: 3.5, fill: color });
      c.append(svg("title", {}, `${s.name}: ${num(p[0])}, ${num(p[1])}${p[2] ? " (" + p[2] + ")" : ""}`));
      f.root.append(c);
    }
    f.root.append(svg("text", { x: f.m.l + 8, y: f.m.t + 14 + 14 * i, fill: color, class: "legend" }, s.name));
  });
  for (const r of rings) f.root.append(svg("circle", { cx: f.x(r[0]), cy: f.y(r[1]), r: 8, fill: "none", stroke: "#1d2330", "stroke-width": 1.5 }));
}

function histogramChart(container, hist, xLabel) {
  if (!hist || !hist.counts || !hist.counts.length) { container.textContent = "no data in the results"; return; }
  const e = hist.edges, lo = e[0], hi = e[e.length - 1] > lo ? e[e.length - 1] : lo * 1.01;
  const f = frame(container, { xMin: lo, xMax: hi, yMin: 0, yMax: Math.max(...hist.counts) * 1.1, xLabel, yLabel: "requests / gaps", logX: hi / lo > 10 });
  hist.counts.forEach((c, i) => {
    const x0 = f.x(e[i]), x1 = f.x(Math.min(e[i + 1], hi));
    const r = svg("rect", { x: x0, y: f.y(c), width: Math.max(1, x1 - x0 - 1), height: f.y(0) - f.y(c), fill: COLORS[0] });
    r.append(svg("title", {}, `${num(e[i], 2)}-${num(e[i + 1], 2)} ms: ${c}`));
    f.root.append(r);
  });
  f.root.append(svg("text", { x: f.width - f.m.r - 4, y: f.m.t + 14, "text-anchor": "end" }, `n = ${hist.n}`));
}

// ---------------------------------------------------------------- sections

function sweepFor(fw, hw) { return DATA.sweeps.filter((s) => s.framework === fw && s.profile === hw); }

function renderMatrix() {
  const rows = DATA.matrix.map((r) => {
    const sw = sweepFor(r.framework, r.profile).map((s) => sustainablePoint(s.points, s.slo)).filter(Boolean);
    const atSlo = sw.length ? Math.max(...sw.map((p) => p.request_throughput)) : null;
    const price = (DATA.catalogs.hardware[r.profile] || {}).price_per_hour;
    const costAtSlo = atSlo && price !== undefined ? cents(price / (atSlo * 3600) * 1e6) : null;
    return [r.framework, r.profile, num(r.request_throughput), num(r.output_throughput, 0), num(atSlo),
      num(r.ttft_p50_ms, 1), num(r.ttft_p99_ms, 1),
      r.memory_utilization === null || r.memory_utilization === undefined ? "-" : (r.memory_utilization * 100).toFixed(1) + "%",
      money(r.cost_per_1m_requests), money(costAtSlo),
      r.not_measured ? `not measured: ${r.not_measured}` : ((r.best_for || []).join("; ") || "-")];
  });
  $("matrix").replaceChildren(table(["framework", "gpu", "req/s", "out tok/s", "req/s at SLO", "TTFT p50 ms", "TTFT p99 ms",
    "mem util", "$/1M req", "$/1M req at SLO", "best for"], rows, { id: "matrix-table" }));
}

function renderVerdicts() {
  $("verdicts").replaceChildren(table(["test", "framework", "gpu", "verdict", "req/s", "TTFT p50 ms", "TPOT p50 ms", "errors"],
    DATA.measurements.map((m) => [m.test_id, m.framework, m.profile, m.verdict, num(m.metrics.request_throughput),
      num(m.metrics.ttft_p50_ms, 1), num(m.metrics.tpot_p50_ms, 2), num(m.metrics.error_rate)])));
  if (DATA.claims.length) {
    $("claims").replaceChildren(el("h3", {}, "The source article's claims"),
      table(["claim", "verdict", "evidence"], DATA.claims.map((c) => [c.claim, c.verdict, c.evidence])));
  }
}

function currentSlo() {
  return { ttft_ms: parseFloat($("slo-ttft").value), tpot_ms: parseFloat($("slo-tpot").value), percentile: parseInt($("slo-pct").value, 10) };
}

function renderSweeps() {
  if (!DATA.sweeps.length) { $("sweep-plot").textContent = "No load sweep in these results (tests/perf/test_sweep.py draws it)."; return; }
  const slo = currentSlo(), p = slo.percentile;
  const series = DATA.sweeps.map((s) => ({ name: `${s.framework} on ${s.profile}`, points: s.points.map((q) => [q.request_throughput, q[`ttft_p${p}_ms`], `${q.rate} req/s offered`]) }));
  const rings = DATA.sweeps.map((s) => sustainablePoint(s.points, slo)).filter(Boolean).map((q) => [q.request_throughput, q[`ttft_p${p}_ms`]]);
  lineChart($("sweep-plot"), series, { xLabel: "achieved throughput (req/s)", yLabel: `TTFT p${p} (ms)`, hline: { y: slo.ttft_ms, label: `SLO ${slo.ttft_ms} ms` }, rings });
  const rows = DATA.sweeps.flatMap((s) => s.points.map((q) => [s.framework, s.profile, num(q.rate, 1), num(q.request_throughput),
    num(q[`ttft_p${p}_ms`], 1), num(q[`tpot_p${p}_ms`], 2), num(q.error_rate), meetsSlo(q, slo) ? "yes" : "no"]));
  $("sweep-table").replaceChildren(table(["framework", "gpu", "offered req/s", "achieved req/s", `TTFT p${p} ms`, `TPOT p${p} ms`, "errors", "meets SLO"], rows));
}

function renderMeasurement() {
  const m = DATA.measurements[parseInt($("measurement").value, 10)];
  if (!m) return;
  histogramChart($("ttft-plot"), (m.distributions || {}).ttft_ms, "TTFT (ms)");
  histogramChart($("itl-plot"), (m.distributions || {}).itl_ms, "inter-token latency (ms)");
  let offset = 0;
  const series = (m.memory_series || []).map((rep, i) => {
    const pts = rep.map((s) => [s.t + offset, s.mem_used_gb]);
    offset += rep.length ? rep[rep.length - 1].t + 0.5 : 0;
    return { name: `repetition ${i + 1}`, points: pts };
  });
  if (series.length) {
    const ys = series.flatMap((s) => s.points.map((q) => q[1]));
    lineChart($("mem-plot"), series, { xLabel: "seconds into the run", yLabel: "memory used (GB)", yMin: Math.min(...ys) * 0.98 });
  } else $("mem-plot").textContent = "no memory samples in the results";
}

function renderTrend() {
  const key = $("trend-test").value, metric = $("trend-metric").value, points = DATA.trends[key] || [];
  if (!points.length) { $("trend-plot").textContent = "No stored baselines for these tests."; return; }
  lineChart($("trend-plot"), [{ name: key, points: points.map((p, i) => [i + 1, p[metric], `${p.date} ${p.commit}${p.current ? " (current)" : ""}`]) }],
    { xLabel: "baseline (1 = oldest; hover a point for its date and commit)", yLabel: metric });
}

// ---------------------------------------------------------------- the calculator

const FIELDS = { hw: "hw", fw: "fw", dev: "dev", tput: "tput", rpm: "rpm", peak: "peak", in: "in", out: "out", api: "api", ttft: "slo-ttft", tpot: "slo-tpot", pct: "slo-pct" };

function option(select, value, text) { select.append(el("option", { value }, text)); }

// Capacity per replica of `fw` on `hw`: the sweep rate meeting the SLO, else the peak; when `fw` was not
// measured on `hw`, the figure from the profile it was measured on, flagged.
function capacity(fw, hw, slo) {
  const onProfile = (profile) => {
    const pts = sweepFor(fw, profile).map((s) => sustainablePoint(s.points, slo)).filter(Boolean);
    if (pts.length) {
      const best = pts.reduce((a, b) => (b.request_throughput > a.request_throughput ? b : a));
      return { rps: best.request_throughput, basis: `highest swept rate meeting the SLO (${best.rate} req/s offered) on ${profile}` };
    }
    if (sweepFor(fw, profile).length) return { rps: null, basis: `no swept rate met this SLO on ${profile}: loosen it or type a capacity` };
    const row = DATA.matrix.find((r) => r.framework === fw && r.profile === profile && r.not_measured);
    if (row) return { rps: null, basis: `${fw} was not measured on ${profile} (${row.not_measured}): type a capacity` };
    const peak = (DATA.peak_rps[fw] || {})[profile];
    return peak ? { rps: peak, basis: `peak throughput on ${profile} (no load sweep: no rate known to meet an SLO)` } : null;
  };
  const here = onProfile(hw);
  if (here) return here;
  const profiles = Object.keys(DATA.peak_rps[fw] || {}).concat(DATA.sweeps.filter((s) => s.framework === fw).map((s) => s.profile));
  for (const p of profiles) {
    const c = onProfile(p);
    if (c) return { rps: c.rps, basis: `${fw} was not measured on ${hw}: using its ${c.basis}. Type your own capacity for ${hw}.`, foreign: true };
  }
  return { rps: null, basis: `no measurement of ${fw}: type a capacity` };
}

function numberOrNull(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }

function compute() {
  const hwKey = $("hw").value, hw = DATA.catalogs.hardware[hwKey];
  const slo = currentSlo();
  renderSweeps();
  const cap = capacity($("fw").value, hwKey, slo);
  const typed = numberOrNull("tput");
  const tput = typed !== null ? typed : cap.rps;
  $("tput").placeholder = cap.rps === null ? "type one" : String(+cap.rps.toFixed(4));
  setText("capacity-basis", typed !== null ? "Capacity typed in by you." : cap.basis);
  try {
    if (tput === null) throw new Error(`no capacity to cost: ${cap.basis}`);
    const t = traffic(numberOrNull("rpm"), numberOrNull("peak"), Number($("in").value), Number($("out").value));
    const models = Object.values(DATA.catalogs.api_models);
    const r = calculate(t, tput, hw.price_per_hour, models, Number($("dev").value));
    const s = r.self_hosted, a = r.api[$("api").value];
    setText("calc-error", "");
    setText("out-tput", num(tput, 4), tput);
    setText("out-replicas", String(s.replicas), s.replicas);
    setText("out-monthly", money(s.monthly_cost), s.monthly_cost);
    setText("out-per1m", money(s.cost_per_1m_requests), s.cost_per_1m_requests);
    setText("out-per1mtok", money(s.cost_per_1m_tokens, 4), s.cost_per_1m_tokens);
    setText("out-fullutil", money(s.full_utilization_cost_per_1m_requests), s.full_utilization_cost_per_1m_requests);
    setText("api-name-cell", `${a.provider} ${a.model} (${a.tier}) monthly cost`);
    setText("out-api-monthly", money(a.monthly_cost), a.monthly_cost);
    setText("out-delta", money(a.delta), a.delta);
    $("out-delta").className = "money " + (a.delta < 0 ? "cheaper-self" : "cheaper-api");
    setText("out-delta-pct", a.delta_pct === null ? "-" : `${a.delta_pct > 0 ? "+" : ""}${a.delta_pct.toFixed(1)}%`, a.delta_pct);
    setText("out-breakeven", a.break_even_requests_per_month === null ? `never: at this capacity ${a.model} is cheaper at any traffic`
      : `${a.break_even_requests_per_month.toLocaleString("en-US")} requests per month`, a.break_even_requests_per_month);
    const rows = Object.entries(r.api).map(([k, x]) => ({ attrs: { "data-api": k }, cells: [
      el("td", {}, `${x.provider} ${x.model}`), el("td", {}, x.tier),
      el("td", { class: "api-monthly", "data-value": x.monthly_cost }, money(x.monthly_cost)),
      el("td", { class: "api-delta", "data-value": x.delta }, money(x.delta)),
      el("td", { class: "api-delta-pct" }, x.delta_pct === null ? "-" : x.delta_pct.toFixed(1) + "%"),
      el("td", { class: "api-breakeven", "data-value": x.break_even_requests_per_month ?? "" }, x.break_even_requests_per_month === null ? "never" : x.break_even_requests_per_month.toLocaleString("en-US")),
      el("td", {}, x.cheaper)] }));
    $("api-table").replaceChildren(table(["model", "tier", "API monthly", "delta (self − API)", "delta %", "break-even req/month", "cheaper"], rows, { id: "api-compare" }));
    const am = DATA.catalogs.api_models[$("api").value];
    setText("price-sources", `${hwKey}: $${hw.price_per_hour}/h per device (${hw.price_source}, ${hw.price_date}). ${am.model}: $${am.input_per_1m} / $${am.output_per_1m} per 1M input / output tokens (${am.source || am.provider}, ${am.refreshed}).` + (DATA.catalogs.prices_file ? ` Prices file: ${DATA.catalogs.prices_file}.` : ""));
    // What the article's widget records: the selections, the monthly cost, the comparison delta.
    window.perfsuiteCalculator = { user_selections: selections(), calculated_monthly_cost: s.monthly_cost, comparison_delta: a.delta, result: r };
  } catch (err) {
    setText("calc-error", err.message);
    for (const id of ["out-tput", "out-replicas", "out-monthly", "out-per1m", "out-per1mtok", "out-fullutil", "out-api-monthly", "out-delta", "out-delta-pct", "out-breakeven"]) setText(id, "-", null);
    $("api-table").replaceChildren();
    window.perfsuiteCalculator = { user_selections: selections(), calculated_monthly_cost: null, comparison_delta: null, error: err.message };
  }
}

function selections() {
  const out = {};
  for (const [k, id] of Object.entries(FIELDS)) out[k] = $(id).value;
  return out;
}

function writeHash() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(selections())) q.set(k, v);  // empty too: "rpm=" means none
  history.replaceState(null, "", "#" + q.toString());
}

function readHash() {
  const q = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (![...q.keys()].some((k) => k in FIELDS)) return;  // a plain section link such as #calculator
  for (const [k, id] of Object.entries(FIELDS)) {
    if (!q.has(k)) continue;
    const e = $(id), v = q.get(k);
    if (e.tagName === "SELECT" && ![...e.options].some((o) => o.value === v)) continue;  // a stale link
    e.value = v;
  }
}

function init() {
  const meas = DATA.measurements;
  $("meta").textContent = `model ${DATA.model || "-"}; profile ${DATA.profile || "-"}; ${meas.length} measurements; generated ${DATA.generated}`;
  for (const [k, h] of Object.entries(DATA.catalogs.hardware)) option($("hw"), k, `${k}: ${h.description} ($${h.price_per_hour}/h)`);
  const frameworks = [...new Set(DATA.matrix.map((r) => r.framework).concat(DATA.sweeps.map((s) => s.framework)))];
  for (const f of frameworks) option($("fw"), f, f);
  for (const [k, m] of Object.entries(DATA.catalogs.api_models)) option($("api"), k, `${m.provider} ${m.model} (${m.tier})`);
  meas.forEach((m, i) => option($("measurement"), String(i), `${m.test_id} (${m.framework}, ${m.profile})`));
  for (const k of Object.keys(DATA.trends)) option($("trend-test"), k, k);
  // Defaults: the sweep's SLO; the measured (framework, profile) with the most capacity under it; a
  // million requests a month of 512 in / 256 out.
  $("slo-ttft").value = DATA.default_slo.ttft_ms; $("slo-tpot").value = DATA.default_slo.tpot_ms; $("slo-pct").value = String(DATA.default_slo.percentile);
  let bestRps = -1;
  for (const r of DATA.matrix.concat(DATA.sweeps)) {
    const c = capacity(r.framework, r.profile, DATA.default_slo);
    if (c && !c.foreign && c.rps !== null && c.rps > bestRps) { bestRps = c.rps; $("hw").value = r.profile; $("fw").value = r.framework; }
  }
  $("rpm").value = "1000000"; $("in").value = "512"; $("out").value = "256";
  $("api").value = "gpt-4o-mini" in DATA.catalogs.api_models ? "gpt-4o-mini" : Object.keys(DATA.catalogs.api_models)[0];
  readHash();
  renderMatrix(); renderVerdicts(); renderMeasurement(); renderTrend(); compute();
  $("calc-form").addEventListener("input", () => { compute(); writeHash(); });
  $("calc-form").addEventListener("change", () => { compute(); writeHash(); });
  $("calc-form").addEventListener("submit", (e) => e.preventDefault());
  $("measurement").addEventListener("change", renderMeasurement);
  $("trend-test").addEventListener("change", renderTrend);
  $("trend-metric").addEventListener("change", renderTrend);
  window.addEventListener("hashchange", () => { readHash(); compute(); });
}

init();
