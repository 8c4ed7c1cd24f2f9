"""The status page: one self-contained HTML document (inline CSS and JS, nothing fetched from elsewhere).

Risk desks keep it on a wall screen, so it must read at a glance and from across the room: one cell per
(exchange, chain), its colour *and* an icon *and* a word for the state (colour alone fails colour-blind
readers and greyscale screenshots), the time since the last withdrawal, and a 24-hour sparkline of
withdrawals per hour. It loads ``/api/status`` once, then follows ``/api/events`` (server-sent events):
no reload, and the browser reconnects by itself if the worker restarts. Text colours meet WCAG AA
contrast on their backgrounds. Kept in a Python module so a non-editable install ships it.
"""

from __future__ import annotations

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>haltwatch status</title>
<style>
:root {
  --fg: #1f2328; --muted: #57606a; --bg: #f6f8fa; --card: #ffffff; --line: #d0d7de;
  --ok-bg: #dafbe1; --ok-fg: #0f5323; --ok-bd: #1a7f37;
  --degraded-bg: #fff1e5; --degraded-fg: #762c00; --degraded-bd: #bc4c00;
  --suspected-bg: #fff8c5; --suspected-fg: #5c4400; --suspected-bd: #9a6700;
  --open-bg: #ffebe9; --open-fg: #82071e; --open-bd: #cf222e;
  --chain_stalled-bg: #ddf4ff; --chain_stalled-fg: #0a3069; --chain_stalled-bd: #0969da;
  --no_data-bg: #eaeef2; --no_data-fg: #24292f; --no_data-bd: #6e7781;
  --warming_up-bg: #fbefff; --warming_up-fg: #512a97; --warming_up-bd: #8250df;
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 24px; padding: 12px 20px;
         background: #24292f; color: #fff; }
header h1 { font-size: 20px; margin: 0; font-weight: 600; }
#conn { font-weight: 600; padding: 2px 10px; border-radius: 12px; background: #2da44e; color: #fff; }
#conn[data-live="false"] { background: #bf8700; color: #1f2328; }
#updated { color: #d0d7de; }
#summary { display: flex; gap: 8px; flex-wrap: wrap; margin-left: auto; }
.chip { border-radius: 12px; padding: 2px 10px; border: 2px solid; font-weight: 600; font-size: 13px; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(300px, 2fr); gap: 20px; padding: 20px; }
@media (max-width: 1000px) { main { grid-template-columns: 1fr; } }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
h2 { font-size: 16px; margin: 0 0 10px; }
table.grid { border-collapse: separate; border-spacing: 6px; width: 100%; }
table.grid th { text-align: left; font-weight: 600; color: var(--muted); padding: 2px 4px; }
table.grid th[scope=row] { color: var(--fg); white-space: nowrap; }
td.cell { border: 2px solid; border-radius: 6px; padding: 6px 8px; vertical-align: top; min-width: 170px; }
td.empty { color: var(--muted); text-align: center; border: 1px dashed var(--line); border-radius: 6px; }
.state { font-weight: 700; display: flex; align-items: center; gap: 6px; }
.icon { display: inline-block; width: 1.3em; height: 1.3em; line-height: 1.3em; text-align: center; border-radius: 50%;
        font-size: 13px; color: #fff; }
.detail { font-size: 13px; }
.spark { display: block; margin-top: 4px; }
.note { font-size: 12px; font-style: italic; }
td.cell[data-state="no_data"] { background-image: repeating-linear-gradient(135deg, transparent 0 8px,
  rgba(110,119,129,.15) 8px 16px); }
td.cell[data-state="open"] { box-shadow: 0 0 0 2px var(--open-bd); }
.legend { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 0; padding: 0; list-style: none; font-size: 13px; }
.legend li { border: 2px solid; border-radius: 6px; padding: 1px 8px; display: flex; gap: 6px; align-items: center; }
#chains { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 10px; font-size: 13px; }
#chains > span { border: 2px solid; border-radius: 6px; padding: 2px 8px; display: inline-flex; gap: 6px;
                 align-items: center; }
ol.incidents { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 8px; }
li.incident { border-left: 6px solid; border-radius: 4px; padding: 6px 10px; }
li.incident .top { display: flex; justify-content: space-between; gap: 8px; font-weight: 600; }
li.incident dl { display: grid; grid-template-columns: auto 1fr; gap: 0 10px; margin: 4px 0 0; font-size: 13px; }
li.incident dt { color: inherit; opacity: .85; }
li.incident dd { margin: 0; overflow-wrap: anywhere; }
.group { border: 2px dashed var(--open-bd); border-radius: 8px; padding: 8px; }
.group > .title { font-weight: 700; margin-bottom: 6px; }
.muted { color: var(--muted); }
code { font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>haltwatch &middot; withdrawal status</h1>
  <span id="conn" data-live="false" role="status" aria-live="polite">Connecting&hellip;</span>
  <span id="updated">&nbsp;</span>
  <div id="summary" aria-label="Summary of cell states"></div>
</header>
<main>
  <section aria-labelledby="grid-title">
    <h2 id="grid-title">Exchanges &times; chains</h2>
    <div id="chains" aria-label="Chain states"></div>
    <div id="grid"><p class="muted">Waiting for the first withdrawal or block&hellip;</p></div>
    <ul class="legend" id="legend" aria-label="Legend"></ul>
    <p class="muted detail">Times are chain time: the gap between the newest block and the last withdrawal.
      Bars: withdrawals per hour over the last 24 hours of chain time.</p>
  </section>
  <section aria-labelledby="inc-title">
    <h2 id="inc-title">Open and recent incidents</h2>
    <div id="incidents" aria-live="polite"><p class="muted">No incident.</p></div>
  </section>
</main>
<script>
"use strict";
const ICONS = {ok: "\u2713", degraded: "\u2198", suspected: "?", open: "\u2715", chain_stalled: "\u2016",
               no_data: "\u2205", warming_up: "\u2026", resolved: "\u2713"};
const LABELS = {ok: "OK", degraded: "Degraded", suspected: "Suspected", open: "Outage open",
                chain_stalled: "Chain stalled", no_data: "No data", warming_up: "Warming up", resolved: "Resolved"};
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                   "'": "&#39;"}[c]));
const colours = st => { const k = st === "resolved" ? "ok" : st;
  return `background:var(--${k}-bg);color:var(--${k}-fg);border-color:var(--${k}-bd)`; };
function dur(s) {
  if (s === null || s === undefined) return "\u2013";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}
const utc = t => t === null || t === undefined ? "\u2013"
  : new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
function icon(st) {
  const k = st === "resolved" ? "ok" : st;
  return `<span class="icon" aria-hidden="true" style="background:var(--${k}-bd)">${ICONS[st]}</span>`;
}
function spark(values) {
  const w = 144, h = 26, n = values.length || 1, max = Math.max(1, ...values), bw = w / n;
  const bars = values.map((v, i) => {
    const bh = v ? Math.max(2, Math.round(v / max * (h - 2))) : 1;
    return `<rect x="${(i * bw).toFixed(1)}" y="${h - bh}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${bh}"/>`;
  }).join("");
  const total = values.reduce((a, b) => a + b, 0);
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" fill="currentColor"
    aria-label="${total} withdrawals in the last 24 hours, at most ${max} in one hour">${bars}</svg>`;
}
function renderLegend(states) {
  document.getElementById("legend").innerHTML = states.map(s =>
    `<li style="${colours(s.state)}">${icon(s.state)}${esc(s.label)}</li>`).join("");
}
function renderGrid(data) {
  const chains = [...new Set(data.cells.map(c => c.chain))].sort();
  const byKey = new Map(data.cells.map(c => [c.exchange + "\u0000" + c.chain, c]));
  document.getElementById("chains").innerHTML = data.chains.map(c =>
    `<span style="${colours(c.state)}" data-chain="${esc(c.chain)}" data-chain-state="${esc(c.state)}">` +
    `${icon(c.state)}<span><b>${esc(c.chain)}</b>: ${esc(LABELS[c.state] || c.state)} &middot; ` +
    `block ${c.head_number}</span></span>`).join("");
  if (!data.cells.length) return;
  let html = `<table class="grid"><thead><tr><th scope="col">Exchange</th>` +
    chains.map(c => `<th scope="col">${esc(c)}</th>`).join("") + `</tr></thead><tbody>`;
  const budgets = new Map((data.budgets || []).map(b => [b.exchange, b]));
  for (const ex of data.exchanges) {
    html += `<tr><th scope="row">${esc(ex)}${budgetNote(budgets.get(ex))}</th>`;
    for (const ch of chains) {
      const c = byKey.get(ex + "\u0000" + ch);
      if (!c) { html += `<td class="empty">not tracked</td>`; continue; }
      const since = c.since_last_withdrawal_s === null ? "no withdrawal yet"
        : `last withdrawal ${dur(c.since_last_withdrawal_s)} ago`;
      const note = c.chain_state && c.chain_state !== "ok" && c.state !== c.chain_state ?
        `<div class="note">chain: ${esc(LABELS[c.chain_state] || c.chain_state)}</div>` : "";
      html += `<td class="cell" data-exchange="${esc(ex)}" data-chain="${esc(ch)}" data-state="${esc(c.state)}" ` +
        `style="${colours(c.state)}" aria-label="${esc(ex)} on ${esc(ch)}: ${esc(c.label)}, ${esc(since)}">` +
        `<div class="state">${icon(c.state)}<span class="label">${esc(c.label)}</span></div>` +
        `<div class="detail">${esc(since)}</div>` +
        `<div class="detail">${c.withdrawals_seen} seen &middot; ` +
        `~${c.expected_rate_per_hour.toFixed(0)}/h expected</div>` +
        spark(c.hourly) + note + `</td>`;
    }
    html += `</tr>`;
  }
  document.getElementById("grid").innerHTML = html + `</tbody></table>`;
}
function budgetNote(b) {
  if (!b) return "";
  const text = b.estimated === null ? "false alarms: still learning"
    : `false alarms: ~${b.estimated.toFixed(b.estimated < 10 ? 2 : 0)} per ${b.budget_days} days ` +
      `(budget ${b.budget})` + (b.state === "kept" ? "" : ` \u2014 ${b.state === "erratic" ?
      "traffic too erratic to keep it" : "over budget"}`);
  return `<div class="detail" data-budget-state="${esc(b.state)}">${esc(text)}</div>`;
}
function incidentItem(i) {
  return `<li class="incident" data-outage-id="${esc(i.outage_id)}" data-state="${esc(i.state)}"
    style="${colours(i.state)}">
    <div class="top"><span>${icon(i.state)} ${esc(LABELS[i.state] || i.state)} &middot; ${esc(i.exchange)}</span>
    <span>${esc(i.scope.join(", "))}</span></div>
    <dl><dt>Started</dt><dd>${utc(i.started_at)}</dd>
    ${i.resolved_at ? `<dt>Resolved</dt><dd>${utc(i.resolved_at)}</dd>` : ""}
    <dt>Duration</dt><dd>${dur(i.duration_s)}${i.state === "resolved" ? "" : " so far"}</dd>
    <dt>Confidence</dt><dd>${(i.confidence * 100).toFixed(i.confidence > 0.999 ? 4 : 1)}%</dd>
    <dt>Why</dt><dd>${esc(i.reason)}</dd></dl></li>`;
}
function renderIncidents(data) {
  const box = document.getElementById("incidents");
  if (!data.incidents.length) { box.innerHTML = `<p class="muted">No incident.</p>`; return; }
  const byId = new Map(data.incidents.map(i => [i.outage_id, i]));
  const used = new Set();
  let html = "";
  for (const g of data.correlated) {
    const members = g.outage_ids.map(id => byId.get(id)).filter(Boolean);
    if (!members.length) continue;
    members.forEach(m => used.add(m.outage_id));
    html += `<div class="group" data-incident-id="${esc(g.incident_id)}"><div class="title">Correlated: ` +
      `${esc(g.exchanges.join(", "))}${g.likely_cause ? " \u2014 likely cause: " + esc(g.likely_cause) : ""}</div>` +
      `<ol class="incidents">${members.map(incidentItem).join("")}</ol></div>`;
  }
  const rest = data.incidents.filter(i => !used.has(i.outage_id));
  html += `<ol class="incidents">${rest.map(incidentItem).join("")}</ol>`;
  box.innerHTML = html;
}
function renderSummary(data) {
  document.getElementById("summary").innerHTML = data.states.filter(s => data.counts[s.state]).map(s =>
    `<span class="chip" style="${colours(s.state)}">${esc(s.label)}: ${data.counts[s.state]}</span>`).join("");
}
function render(data) {
  renderLegend(data.states);
  renderSummary(data);
  renderGrid(data);
  renderIncidents(data);
  document.getElementById("updated").textContent = "updated " + new Date(data.generated_at * 1000).toLocaleTimeString();
  document.body.dataset.version = data.version;
}
function live(on, text) {
  const el = document.getElementById("conn");
  el.dataset.live = on ? "true" : "false";
  el.textContent = text;
}
fetch("/api/status").then(r => r.json()).then(render).catch(() => {});
const source = new EventSource("/api/events");
source.addEventListener("status", e => { live(true, "\u25CF Live"); render(JSON.parse(e.data)); });
source.addEventListener("open", () => live(true, "\u25CF Live"));
source.addEventListener("error", () => live(false, "Reconnecting\u2026"));
</script>
</body>
</html>
"""
