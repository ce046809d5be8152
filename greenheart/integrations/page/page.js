// greenheart's live page: polls /live.json and redraws in place. Every heart identity is
// arbitrary bytes from the network, so it is only ever set as text (textContent), never as HTML.
"use strict";

const STANDINGS = { f: "failed", s: "suspect", p: "on_probation", r: "returned", a: "answering" };
const COLOURS = { failed: "--failed", suspect: "--suspect", on_probation: "--probation",
                  returned: "--returned", answering: "--answering" };
const LABELS = { failed: "failed", suspect: "suspect", on_probation: "on probation",
                 returned: "returned", answering: "answering" };
const ROWS_SHOWN = 30;  // the attention table; the grid shows every heart
const CELL = 8;          // grid cell, px
const style = getComputedStyle(document.documentElement);
const colour = (standing) => style.getPropertyValue(COLOURS[standing]).trim();
const $ = (id) => document.getElementById(id);

// what the tests and the docs read: how big the last update was and how long it took to draw
window.greenheart = { updates: 0, lastBytes: 0, lastParseMs: 0, lastRenderMs: 0, failedFetches: 0 };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value, digits = 1) {
  if (value === null || value === undefined) return "-";
  return typeof value === "number" ? value.toFixed(digits) : String(value);
}

function setState(state, why) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = state;
  $("why").textContent = why || "";
}

function renderHealth(m) {
  const list = $("health-list");
  const refused = Object.entries(m.refused_peers || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  const items = [
    ["period", `${fmt(m.period_ms, 0)} ms`],
    ["beats made / asked", m.beats_asked === null ? `${m.beats}` : `${m.beats} / ${m.beats_asked}`],
    ["beat lag", `${fmt(m.lag_ms)} ms`],
    ["CPU", m.cpu_share === null ? "-" : `${(100 * m.cpu_share).toFixed(0)}%`],
    ["stalls", m.stalls, m.stalls > 0],
    ["busy beats", m.busy_beats],
    ["beats behind", m.behind_beats, m.behind_beats > 0],
    ["unjudged beats", m.unjudged_beats],
    ["held in a mass silence", m.suspects, m.suspects > 0],
    ["mass silences", m.mass_silences],
    ["refused peers", refused || "none"],
    ["refusing connections", m.refusing_connections ? "yes" : "no", m.refusing_connections],
    ["false failures", m.false_failures, m.false_failures > 0],
    ["hearts failed", m.failed_hearts],
    ["bad pongs", m.bad_pongs],
    ["handler errors", m.handler_errors, m.handler_errors > 0],
  ];
  const fragment = document.createDocumentFragment();
  for (const [name, value, bad] of items) {
    fragment.append(el("dt", name));
    const dd = el("dd", value);
    dd.dataset.name = name;
    if (bad) dd.classList.add("bad");
    fragment.append(dd);
  }
  list.replaceChildren(fragment);
}

function renderCounts(counts) {
  const fragment = document.createDocumentFragment();
  for (const standing of ["answering", "on_probation", "suspect", "failed", "returned"]) {
    const span = el("span", `${LABELS[standing]} ${counts[standing] || 0}`);
    span.dataset.standing = standing;
    span.style.setProperty("--c", colour(standing));
    fragment.append(span);
  }
  $("counts").replaceChildren(fragment);
}

let shown = null;  // the hearts last drawn, for the grid's tooltip

function renderGrid(hearts) {
  const canvas = $("grid");
  const perRow = Math.max(1, Math.floor(canvas.clientWidth / CELL) || 120);
  const count = hearts.standing.length;
  const rows = Math.max(1, Math.ceil(count / perRow));
  canvas.width = perRow * CELL;
  canvas.height = rows * CELL;
  const ctx = canvas.getContext("2d");
  const fills = {};
  for (const code in STANDINGS) fills[code] = colour(STANDINGS[code]);
  // one fillRect a heart, in runs of a colour: 10,000 hearts draw in a few ms
  for (let i = 0; i < count; i++) {
    ctx.fillStyle = fills[hearts.standing[i]];
    ctx.fillRect((i % perRow) * CELL, Math.floor(i / perRow) * CELL, CELL - 1, CELL - 1);
  }
  shown = { hearts, perRow };
}

function tooltip(event) {
  const tip = $("tip");
  if (!shown) return;
  const rect = $("grid").getBoundingClientRect();
  const i = Math.floor((event.clientY - rect.top) / CELL) * shown.perRow
          + Math.floor((event.clientX - rect.left) / CELL);
  const h = shown.hearts;
  if (i < 0 || i >= h.standing.length) { tip.hidden = true; return; }
  const name = h.name[i] ? ` (${h.name[i]})` : "";
  tip.textContent = `${h.id[i]}${name}\n${LABELS[STANDINGS[h.standing[i]]]}, ${h.misses[i]} missed`
                  + `\nround trip last ${fmt(h.last_ms[i], 2)} ms, mean ${fmt(h.mean_ms[i], 2)} ms`;
  tip.style.left = `${event.clientX + 12}px`;
  tip.style.top = `${event.clientY + 12}px`;
  tip.hidden = false;
}

function renderAttention(hearts) {
  const body = $("attention").tBodies[0];
  const fragment = document.createDocumentFragment();
  const count = Math.min(hearts.standing.length, ROWS_SHOWN);
  for (let i = 0; i < count; i++) {
    const standing = STANDINGS[hearts.standing[i]];
    const tr = document.createElement("tr");
    tr.dataset.heart = hearts.id[i];  // a data attribute holds text, whatever it says
    tr.dataset.standing = standing;
    tr.append(el("td", hearts.id[i], "id"), el("td", hearts.name[i] || ""), el("td", LABELS[standing]),
              el("td", hearts.misses[i], "n"), el("td", fmt(hearts.last_ms[i], 2), "n"),
              el("td", fmt(hearts.mean_ms[i], 2), "n"));
    fragment.append(tr);
  }
  body.replaceChildren(fragment);
  $("attention").caption.textContent = hearts.standing.length > ROWS_SHOWN
    ? `Needs attention first: the first ${ROWS_SHOWN} of ${hearts.standing.length}`
    : "Needs attention first";
}

function renderFailures(failures) {
  const fragment = document.createDocumentFragment();
  for (const f of failures.slice(0, 20)) {
    const li = document.createElement("li");
    li.dataset.heart = f.heart;
    li.dataset.cause = f.cause;
    li.dataset.diagnosis = f.diagnosis;
    li.append(el("span", f.heart, "heart"), el("span", f.cause, "cause"),
              el("span", f.diagnosis, "diagnosis"), el("span", f.why, "why"),
              el("span", ` ${fmt(f.ago_s, 0)} s ago`, "ago"));
    fragment.append(li);
  }
  if (!failures.length) fragment.append(el("li", "none yet", "none"));
  $("failure-list").replaceChildren(fragment);
}

function chart(id, history, series, max) {
  const canvas = $(id);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e5e7eb";
  ctx.strokeRect(pad, 4, w - pad - 4, h - pad);
  if (!history.length) return;
  const span = Math.max(60, -history[0][0]);
  const top = Math.max(max(history), 1e-9);
  ctx.fillStyle = "#6b7280";
  ctx.font = "10px system-ui";
  ctx.fillText(top.toFixed(top < 10 ? 1 : 0), 0, 12);
  ctx.fillText(`${Math.round(span / 60)} min ago`, pad, h - 6);
  ctx.fillText("now", w - 26, h - 6);
  for (const [index, cssVar] of series) {
    ctx.strokeStyle = style.getPropertyValue(cssVar).trim();
    ctx.beginPath();
    let started = false;
    for (const point of history) {
      const value = point[index];
      if (value === null) continue;
      const x = pad + (w - pad - 4) * (1 + point[0] / span);
      const y = 4 + (h - pad) * (1 - value / top);
      if (started) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      started = true;
    }
    ctx.stroke();
  }
}

function render(data) {
  const m = data.monitor;
  if (m.running) setState("running");
  else setState("stopped", m.stopped_by ? `stopped by ${m.stopped_by}` : "stopped");
  renderHealth(m);
  renderCounts(data.counts);
  renderGrid(data.hearts);
  renderAttention(data.hearts);
  renderFailures(data.failures);
  // history points: [seconds before now, hearts, answering, p50 ms, p99 ms]
  chart("rtt-chart", data.history, [[3, "--answering"], [4, "--probation"]],
        (hs) => Math.max(...hs.map((p) => p[4] || 0)));
  chart("answering-chart", data.history, [[1, "--muted"], [2, "--answering"]],
        (hs) => Math.max(...hs.map((p) => p[1])));
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function poll() {
  let period = 1000;
  try {
    const response = await fetch("live.json", { cache: "no-store" });
    const text = await response.text();
    const began = performance.now();
    const data = JSON.parse(text);
    const parsed = performance.now();
    render(data);
    const g = window.greenheart;
    g.updates += 1;
    g.lastBytes = text.length;
    g.lastParseMs = parsed - began;
    g.lastRenderMs = performance.now() - parsed;
    period = data.monitor.period_ms;
  } catch (error) {
    window.greenheart.failedFetches += 1;
    setState("unreachable", "the monitor's page does not answer");
  }
  // once a period, but at least every 2 s and at most every 0.5 s
  setTimeout(poll, Math.min(2000, Math.max(500, period)));
}

$("grid").addEventListener("mousemove", tooltip);
$("grid").addEventListener("mouseleave", () => { $("tip").hidden = true; });
poll();
