namespace Millrace.Dashboard;

/// <summary>The dashboard's one page: HTML, CSS, JavaScript and SVG, nothing fetched from elsewhere.</summary>
internal static class DashboardPage
{
    public const string Html = """
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Millrace dashboard</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 16px 24px; color: #1d232a; background: #f7f8fa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #status { color: #555; margin-bottom: 12px; }
  #graph { background: #fff; border: 1px solid #d8dce1; border-radius: 6px; }
  .box { fill: #eef4ff; stroke: #4a78c2; stroke-width: 1.5; }
  .box.ended { fill: #f0f0f0; stroke: #999; }
  .box.bottleneck { fill: #fff1e6; stroke: #e0640b; stroke-width: 3; }
  .box.failed { fill: #ffecec; stroke: #c62828; stroke-width: 3; }
  .name { font-weight: 600; font-size: 13px; }
  .rate { font-size: 12px; fill: #333; }
  .edge { stroke: #7a8899; stroke-width: 1.5; fill: none; marker-end: url(#arrow); }
  .edge.full { stroke: #e0640b; stroke-width: 3; }
  .label { font-size: 11px; fill: #444; }
  .tag-svg { font-size: 12px; fill: #e0640b; font-weight: 600; }
  table { border-collapse: collapse; margin-top: 14px; background: #fff; }
  th, td { border: 1px solid #d8dce1; padding: 4px 10px; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  tr.bottleneck td { background: #fff1e6; }
  .bar { display: inline-block; height: 8px; background: #4a78c2; vertical-align: middle; }
  #errors li { color: #c62828; }
  .tag { font-size: 11px; color: #e0640b; font-weight: 600; }
  #charts { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 14px; }
  .chart { background: #fff; border: 1px solid #d8dce1; border-radius: 6px; padding: 8px 10px; }
  .chart h2 { font-size: 13px; margin: 0 0 4px; font-weight: 600; }
  .chart .axis { stroke: #c5ccd4; stroke-width: 1; }
  .chart .tick { font-size: 10px; fill: #666; }
  .chart polyline { fill: none; stroke-width: 1.8; }
  .legend { font-size: 11px; color: #333; max-width: 440px; }
  .legend span { display: inline-block; margin-right: 10px; white-space: nowrap; }
  .legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
  #status.ended { color: #1d232a; font-weight: 600; }
</style>
</head>
<body>
<h1>Millrace <span id="run"></span></h1>
<div id="status">connecting…</div>
<svg id="graph" width="900" height="300" role="img" aria-label="the graph of processes and streams">
  <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
    <path d="M 0 0 L 10 5 L 0 10 z" fill="#7a8899"/></marker></defs>
  <g id="edges"></g><g id="boxes"></g>
</svg>
<div id="charts">
  <div class="chart"><h2>throughput, items/s (last 5 minutes)</h2><svg id="throughput-chart" width="440" height="130" role="img" aria-label="items per second of each process over time"></svg><div class="legend" id="throughput-legend"></div></div>
  <div class="chart"><h2>queue fill, % (last 5 minutes)</h2><svg id="fill-chart" width="440" height="130" role="img" aria-label="how full each queue was over time"></svg><div class="legend" id="fill-legend"></div></div>
</div>
<table id="processes">
  <thead><tr><th>process</th><th>state</th><th>in/s</th><th>out/s</th><th>items in</th><th>items out</th><th>busy</th><th>errors</th><th>OS pid</th></tr></thead>
  <tbody></tbody>
</table>
<table id="queues">
  <thead><tr><th>stream → reader</th><th>queued</th><th>capacity</th><th>fill</th></tr></thead>
  <tbody></tbody>
</table>
<h2 style="font-size:16px">Errors</h2>
<ul id="errors"><li id="no-errors" style="color:#555">none</li></ul>
<script>
"use strict";
let W = 200;
const H = 54, GAPX = 150, GAPY = 50, WINDOW = 300, COLORS = ["#4a78c2", "#e0640b", "#2e9e5b", "#b8399b", "#8a6d1d", "#c62828", "#3c9dbd", "#666"];
let graph = null, layout = {}, previous = null, history = [], final = null;
const fmt = n => n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n));
const esc = s => String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

// Boxes as wide as their longest text: a process name, or the rate line at its widest ("999.9k in/s · ...").
function measureWidth() {
  const svg = document.getElementById("graph");
  const probe = document.createElementNS("http://www.w3.org/2000/svg", "g");
  svg.appendChild(probe);
  let widest = 0;
  const texts = graph.processes.map(p => ["name", p.name]).concat([["rate", "999.9k in/s · 999.9k out/s · 100% busy"]]);
  texts.forEach(([cls, text]) => {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("class", cls);
    t.textContent = text;
    probe.appendChild(t);
    widest = Math.max(widest, t.getComputedTextLength());
  });
  svg.removeChild(probe);
  W = Math.max(200, Math.ceil(widest) + 24);
}

function place() {
  // Layers: a process sits one column right of the furthest writer of its inputs (cycles ignored).
  const layer = {}, byName = {};
  graph.processes.forEach(p => { byName[p.name] = p; });
  const writersOf = {};
  graph.streams.forEach(s => { writersOf[s.name] = s.writers; });
  function depth(name, seen) {
    if (layer[name] !== undefined) return layer[name];
    if (seen.has(name)) return 0;
    seen.add(name);
    let d = 0;
    byName[name].inputs.forEach(i => (writersOf[i] || []).forEach(w => { d = Math.max(d, depth(w, seen) + 1); }));
    seen.delete(name);
    return layer[name] = d;
  }
  graph.processes.forEach(p => depth(p.name, new Set()));
  const rows = {};
  graph.processes.forEach(p => {
    const l = layer[p.name], r = rows[l] = (rows[l] || 0) + 1;
    layout[p.name] = { x: 20 + l * (W + GAPX), y: 20 + (r - 1) * (H + GAPY) };
  });
  const svg = document.getElementById("graph");
  svg.setAttribute("width", Math.max(...Object.values(layout).map(b => b.x)) + W + 40);
  svg.setAttribute("height", Math.max(...Object.values(layout).map(b => b.y)) + H + 40);
  let edges = "", boxes = "";
  graph.streams.forEach(s => s.writers.forEach(w => s.readers.forEach(r => {
    const a = layout[w], b = layout[r];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const back = x2 <= x1;
    const path = back
      ? `M ${a.x + W / 2} ${a.y + H} C ${a.x + W / 2} ${a.y + H + 60}, ${b.x + W / 2} ${b.y + H + 60}, ${b.x + W / 2} ${b.y + H}`
      : `M ${x1} ${y1} C ${x1 + 40} ${y1}, ${x2 - 40} ${y2}, ${x2} ${y2}`;
    const lx = back ? (a.x + b.x + W) / 2 : (x1 + x2) / 2, ly = back ? Math.max(a.y, b.y) + H + 40 : Math.min(y1, y2) - 8;
    edges += `<path class="edge" data-stream="${esc(s.name)}" data-reader="${esc(r)}" d="${path}"/>` +
      `<text class="label" data-stream-label="${esc(s.name)}" data-reader="${esc(r)}" x="${lx}" y="${ly}" text-anchor="middle">${esc(s.name)}</text>`;
  })));
  graph.processes.forEach(p => {
    const b = layout[p.name];
    boxes += `<g class="process" data-name="${esc(p.name)}"><rect class="box" x="${b.x}" y="${b.y}" width="${W}" height="${H}" rx="8"/>` +
      `<text class="name" x="${b.x + 10}" y="${b.y + 20}">${esc(p.name)}</text>` +
      `<text class="rate" x="${b.x + 10}" y="${b.y + 40}">…</text>` +
      `<text class="tag-svg" x="${b.x + W / 2}" y="${b.y + H + 16}" text-anchor="middle"></text></g>`;
  });
  document.getElementById("edges").innerHTML = edges;
  document.getElementById("boxes").innerHTML = boxes;
}

function show(s) {
  const dt = previous ? s.elapsed - previous.elapsed : 0;
  const before = {};
  (previous ? previous.processes : []).forEach(p => { before[p.name] = p; });
  // A queue is full when a writer's next batch does not fit (the server says so: items move in batches).
  const fill = {};
  s.queues.forEach(q => { fill[q.reader] = Math.max(fill[q.reader] || 0, q.full ? 1 : (q.capacity ? q.queued / q.capacity : 0)); });
  // The bottleneck: a process whose input queue is (nearly) full while it is not itself held up by a
  // full queue downstream; else the one busiest in its handlers (at least half the time).
  const writes = {};
  graph.streams.forEach(st => st.writers.forEach(w => { (writes[w] = writes[w] || []).push(st.name); }));
  const outFill = {};
  s.queues.forEach(q => {
    graph.streams.filter(st => st.name === q.stream).forEach(st => st.writers.forEach(w => {
      outFill[w] = Math.max(outFill[w] || 0, q.full ? 1 : (q.capacity ? q.queued / q.capacity : 0));
    }));
  });
  let worst = null, worstScore = 0;
  const rows = s.processes.map(p => {
    const b = before[p.name];
    const inRate = b && dt > 0 ? (p.itemsIn - b.itemsIn) / dt : 0;
    const outRate = b && dt > 0 ? (p.itemsOut - b.itemsOut) / dt : 0;
    const busy = b && dt > 0 ? Math.min(1, Math.max(0, (p.busy - b.busy) / dt)) : 0;
    const free = (outFill[p.name] || 0) < 0.8 && p.state !== "blocked" && p.state !== "ended";
    const score = !free ? 0 : (fill[p.name] || 0) >= 0.8 ? 1 + (fill[p.name] || 0) + busy : busy;
    if (score > worstScore) { worstScore = score; worst = p.name; }
    return { p, inRate, outRate, busy };
  });
  if (worstScore < 0.5) worst = null;
  const failed = new Set(s.errors.map(e => e.process));
  let html = "";
  rows.forEach(({ p, inRate, outRate, busy }) => {
    const g = document.querySelector(`g.process[data-name="${CSS.escape(p.name)}"]`);
    if (g) {
      g.querySelector("rect").setAttribute("class", "box" + (p.state === "ended" ? " ended" : "") + (p.name === worst ? " bottleneck" : "") + (failed.has(p.name) ? " failed" : ""));
      g.querySelector(".rate").textContent = `${fmt(inRate)} in/s · ${fmt(outRate)} out/s · ${Math.round(busy * 100)}% busy`;
      g.querySelector(".tag-svg").textContent = p.name === worst ? "▲ bottleneck" : failed.has(p.name) ? "▲ failed" : "";
    }
    html += `<tr data-process="${esc(p.name)}" class="${p.name === worst ? "bottleneck" : ""}"><td>${esc(p.name)}${p.name === worst ? ' <span class="tag">bottleneck</span>' : ""}</td>` +
      `<td class="state">${esc(p.state)}</td><td class="in-rate">${fmt(inRate)}</td><td class="out-rate">${fmt(outRate)}</td>` +
      `<td class="items-in">${p.itemsIn}</td><td class="items-out">${p.itemsOut}</td><td class="busy">${Math.round(busy * 100)}%</td>` +
      `<td class="errors">${p.errors}</td><td>${p.pid}</td></tr>`;
  });
  document.querySelector("#processes tbody").innerHTML = html;
  let qhtml = "";
  s.queues.forEach(q => {
    const f = q.capacity ? q.queued / q.capacity : 0;
    qhtml += `<tr data-queue="${esc(q.stream)}" data-reader="${esc(q.reader)}"><td>${esc(q.stream)} → ${esc(q.reader)}</td><td class="queued">${q.queued}</td>` +
      `<td>${q.capacity}</td><td><span class="bar" style="width:${Math.round(f * 100)}px"></span> ${Math.round(f * 100)}%</td></tr>`;
    const label = document.querySelector(`text[data-stream-label="${CSS.escape(q.stream)}"][data-reader="${CSS.escape(q.reader)}"]`);
    if (label) label.textContent = `${q.stream} (${fmt(q.queued)} queued)`;
    const edge = document.querySelector(`path[data-stream="${CSS.escape(q.stream)}"][data-reader="${CSS.escape(q.reader)}"]`);
    if (edge) edge.setAttribute("class", "edge" + (q.full ? " full" : ""));
  });
  document.querySelector("#queues tbody").innerHTML = qhtml;
  if (!history.length || s.elapsed > history[history.length - 1].elapsed) history.push(s);
  while (history.length > 2 && history[history.length - 1].elapsed - history[0].elapsed > WINDOW) history.shift();
  charts();
  const errors = document.getElementById("errors");
  if (s.errors.length) errors.innerHTML = s.errors.map(e => `<li data-error-process="${esc(e.process)}">${esc(e.message)}</li>`).join("");
  if (s.outcome) final = s;
  document.getElementById("status").className = s.outcome ? "ended" : "";
  document.getElementById("status").textContent =
    `${s.outcome ? "ended: " + s.outcome : "running"} · ${s.elapsed.toFixed(1)} s` + (worst ? ` · bottleneck: ${worst}` : "") +
    (s.checkpoints ? ` · checkpoints: ${s.checkpoints.completed}` + (s.checkpoints.completed > 0
      ? ` (last #${s.checkpoints.last}: ${s.checkpoints.durationMs.toFixed(0)} ms, ${(s.checkpoints.sizeBytes / 1024).toFixed(0)} KiB, ${s.checkpoints.ageSeconds.toFixed(1)} s ago)` : "") : "");
  previous = s;
}

// A small line chart: one polyline a series, time on x (the last WINDOW seconds), 0..max on y.
function drawChart(id, legendId, series, format, fixedMax) {
  const svg = document.getElementById(id), w = 440, h = 130, left = 44, right = 8, top = 8, bottom = 18;
  const points = series.flatMap(x => x.points);
  if (!points.length) return;
  const t1 = Math.max(...points.map(p => p[0])), t0 = Math.max(Math.min(...points.map(p => p[0])), t1 - WINDOW);
  const ymax = fixedMax ? fixedMax * 1.1 : Math.max(1e-9, ...points.map(p => p[1])) * 1.1;
  const X = t => left + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - left - right), Y = v => top + (1 - v / ymax) * (h - top - bottom);
  let out = `<line class="axis" x1="${left}" y1="${h - bottom}" x2="${w - right}" y2="${h - bottom}"/><line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${h - bottom}"/>` +
    `<text class="tick" x="${left - 4}" y="${top + 8}" text-anchor="end">${format(ymax / 1.1)}</text><text class="tick" x="${left - 4}" y="${h - bottom}" text-anchor="end">0</text>` +
    `<text class="tick" x="${left}" y="${h - 4}">${t0.toFixed(0)} s</text><text class="tick" x="${w - right}" y="${h - 4}" text-anchor="end">${t1.toFixed(0)} s</text>`;
  let legend = "";
  series.forEach((x, i) => {
    const color = COLORS[i % COLORS.length], shown = x.points.filter(p => p[0] >= t0), last = shown.length ? shown[shown.length - 1][1] : 0;
    out += `<polyline data-series="${esc(x.name)}" data-points="${shown.length}" data-last="${last}" stroke="${color}" points="${shown.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ")}"/>`;
    legend += `<span><i style="background:${color}"></i>${esc(x.name)} ${format(last)}</span>`;
  });
  svg.innerHTML = out;
  document.getElementById(legendId).innerHTML = legend;
}

function charts() {
  // Throughput: items into each process a second (out of it, for a source), between consecutive points.
  const sources = new Set(graph.processes.filter(p => !p.inputs.length).map(p => p.name));
  const rates = {}, fills = {};
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1], b = history[i], dt = b.elapsed - a.elapsed;
    if (dt <= 0) continue;
    const before = {};
    a.processes.forEach(p => { before[p.name] = p; });
    b.processes.forEach(p => {
      const q = before[p.name];
      if (!q) return;
      const count = sources.has(p.name) ? p.itemsOut - q.itemsOut : p.itemsIn - q.itemsIn;
      (rates[p.name] = rates[p.name] || []).push([b.elapsed, Math.max(0, count / dt)]);
    });
  }
  history.forEach(h => h.queues.forEach(q => {
    const name = `${q.stream} → ${q.reader}`;
    (fills[name] = fills[name] || []).push([h.elapsed, q.full ? 100 : (q.capacity ? 100 * q.queued / q.capacity : 0)]);
  }));
  drawChart("throughput-chart", "throughput-legend", graph.processes.map(p => ({ name: p.name, points: rates[p.name] || [] })), fmt);
  drawChart("fill-chart", "fill-legend", Object.keys(fills).map(name => ({ name, points: fills[name] })), v => Math.round(v) + "%", 100);
}

async function tick() {
  try {
    if (!graph) {
      graph = await (await fetch("/api/graph")).json();
      document.getElementById("run").textContent = `— run ${graph.run} (${graph.placement} placement)`;
      measureWidth();
      place();
      try {
        (await (await fetch("/api/history")).json()).points.forEach(point => history.push(point));
      } catch (e) { /* a page opened at the very end: the charts start from now */ }
    }
    show(await (await fetch("/api/sample")).json());
  } catch (e) {
    // The program has ended (or cannot be reached): what the page shows stays, with the last state it saw.
    const status = document.getElementById("status");
    if (final) {
      status.className = "ended";
      status.textContent = `ended: ${final.outcome} · ${final.elapsed.toFixed(1)} s · the program has exited; this is its final state`;
      return;
    }
    status.textContent = "the run is over or unreachable (" + e.message + ")" + (previous ? `; last seen at ${previous.elapsed.toFixed(1)} s` : "");
  }
  setTimeout(tick, 500);
}
tick();
</script>
</body>
</html>
""";
}
