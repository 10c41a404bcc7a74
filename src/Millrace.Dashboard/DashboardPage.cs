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
const W = 200, H = 54, GAPX = 150, GAPY = 50;
let graph = null, layout = {}, previous = null;
const fmt = n => n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n));
const esc = s => String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

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
  const errors = document.getElementById("errors");
  if (s.errors.length) errors.innerHTML = s.errors.map(e => `<li data-error-process="${esc(e.process)}">${esc(e.message)}</li>`).join("");
  document.getElementById("status").textContent =
    `${s.outcome ? s.outcome : "running"} · ${s.elapsed.toFixed(1)} s` + (worst ? ` · bottleneck: ${worst}` : "") +
    (s.checkpoints ? ` · checkpoints: ${s.checkpoints.completed}` + (s.checkpoints.completed > 0
      ? ` (last #${s.checkpoints.last}: ${s.checkpoints.durationMs.toFixed(0)} ms, ${(s.checkpoints.sizeBytes / 1024).toFixed(0)} KiB, ${s.checkpoints.ageSeconds.toFixed(1)} s ago)` : "") : "");
  previous = s;
}

async function tick() {
  try {
    if (!graph) {
      graph = await (await fetch("/api/graph")).json();
      document.getElementById("run").textContent = `— run ${graph.run} (${graph.placement} placement)`;
      place();
    }
    show(await (await fetch("/api/sample")).json());
  } catch (e) {
    document.getElementById("status").textContent = "the run is over or unreachable (" + e.message + ")";
  }
  setTimeout(tick, 500);
}
tick();
</script>
</body>
</html>
""";
}
