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
  if (m.page_connections !== undefined) {
    items.push(["page connections", m.page_connections],
               ["page connections refused", m.page_refused, m.page_refused > 0],
               ["page requests timed out", m.page_timed_out]);
  }
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

// What the page holds: every heart's row by key ([name, standing code, misses]), the latest
// failures and the history, kept up to date by applying what changed since `version`.
const page = { version: null, hearts: new Map(), order: [], failures: [], history: [], time: 0 };
const RANK = { f: 0, s: 1, p: 2, r: 3, a: 4 };
const FAILURES_KEPT = 50;
const HISTORY_SECONDS = 600;

function apply(data) {
  // an answer to a page that has moved on since it asked (two asked at once): its rows are
  // not from where the page is
  if (!data.full && data.since !== page.version) return false;
  if (data.full) { page.hearts.clear(); page.failures = []; page.history = []; }
  const set = Object.entries(data.hearts.set);
  for (const [key, row] of set) page.hearts.set(key, row);
  for (const key of data.hearts.drop) page.hearts.delete(key);
  if (data.full || set.length || data.hearts.drop.length) {
    // what needs attention first: by standing, then most misses, then by identity
    const keyed = [];
    for (const [key, row] of page.hearts) keyed.push([RANK[row[1]], -row[2], key]);
    keyed.sort((x, y) => x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0));
    page.order = keyed.map((k) => k[2]);
  }
  page.failures = data.failures.concat(page.failures).slice(0, FAILURES_KEPT);
  page.history = page.history.concat(data.history).filter((p) => p[0] > data.time - HISTORY_SECONDS);
  page.version = data.version;
  page.time = data.time;
  return true;
}

let perRow = 120;

function renderGrid() {
  const canvas = $("grid");
  perRow = Math.max(1, Math.floor(canvas.clientWidth / CELL) || 120);
  const count = page.order.length;
  canvas.width = perRow * CELL;
  canvas.height = Math.max(1, Math.ceil(count / perRow)) * CELL;
  const ctx = canvas.getContext("2d");
  const fills = {};
  for (const code in STANDINGS) fills[code] = colour(STANDINGS[code]);
  // one fillRect a heart: 10,000 hearts draw in a few ms
  for (let i = 0; i < count; i++) {
    ctx.fillStyle = fills[page.hearts.get(page.order[i])[1]];
    ctx.fillRect((i % perRow) * CELL, Math.floor(i / perRow) * CELL, CELL - 1, CELL - 1);
  }
}

function heartAt(event) {
  const rect = $("grid").getBoundingClientRect();
  const i = Math.floor((event.clientY - rect.top) / CELL) * perRow
          + Math.floor((event.clientX - rect.left) / CELL);
  return i >= 0 && i < page.order.length ? page.order[i] : null;
}

function tooltip(event) {
  const tip = $("tip");
  const key = heartAt(event);
  if (key === null) { tip.hidden = true; return; }
  const [name, code, misses] = page.hearts.get(key);
  tip.textContent = `${key}${name ? ` (${name})` : ""}\n${LABELS[STANDINGS[code]]}, ${misses} missed`
                  + "\nclick for its round trips";
  tip.style.left = `${event.clientX + 12}px`;
  tip.style.top = `${event.clientY + 12}px`;
  tip.hidden = false;
}

function renderAttention() {
  const body = $("attention").tBodies[0];
  const fragment = document.createDocumentFragment();
  for (const key of page.order.slice(0, ROWS_SHOWN)) {
    const [name, code, misses] = page.hearts.get(key);
    const tr = document.createElement("tr");
    tr.dataset.heart = key;  // a data attribute holds text, whatever it says
    tr.dataset.standing = STANDINGS[code];
    tr.append(el("td", key, "id"), el("td", name || ""), el("td", LABELS[STANDINGS[code]]),
              el("td", misses, "n"));
    fragment.append(tr);
  }
  body.replaceChildren(fragment);
  const count = page.order.length;
  $("attention").caption.textContent = count > ROWS_SHOWN
    ? `Needs attention first: the first ${ROWS_SHOWN} of ${count}` : "Needs attention first";
}

function renderFailures() {
  const fragment = document.createDocumentFragment();
  for (const f of page.failures.slice(0, 20)) {
    const li = document.createElement("li");
    li.dataset.heart = f.heart;
    li.dataset.cause = f.cause;
    li.dataset.diagnosis = f.diagnosis;
    li.append(el("span", f.heart, "heart"), el("span", f.cause, "cause"),
              el("span", f.diagnosis, "diagnosis"), el("span", f.why, "why"),
              el("span", ` ${fmt(page.time - f.time, 0)} s ago`, "ago"));
    fragment.append(li);
  }
  if (!page.failures.length) fragment.append(el("li", "none yet", "none"));
  $("failure-list").replaceChildren(fragment);
}

function chart(id, series, max) {
  const history = page.history;
  const canvas = $(id);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e5e7eb";
  ctx.strokeRect(pad, 4, w - pad - 4, h - pad);
  if (!history.length) return;
  const span = Math.max(60, page.time - history[0][0]);
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
      const x = pad + (w - pad - 4) * (1 - (page.time - point[0]) / span);
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
  renderGrid();
  renderAttention();
  renderFailures();
  // history points: [Unix time, hearts, answering, p50 ms, p99 ms]
  chart("rtt-chart", [[3, "--answering"], [4, "--probation"]],
        (hs) => Math.max(...hs.map((p) => p[4] || 0)));
  chart("answering-chart", [[1, "--muted"], [2, "--answering"]],
        (hs) => Math.max(...hs.map((p) => p[1])));
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Finding a heart: the monitor answers (/hearts?find=), with round trips and certificates.
let finding = null;

async function find() {
  const text = $("find").value.trim();
  const found = $("found");
  if (!text) { found.tBodies[0].replaceChildren(); found.hidden = true; return; }
  const response = await fetch(`hearts?find=${encodeURIComponent(text)}&limit=${ROWS_SHOWN}`,
                               { cache: "no-store" });
  const data = await response.json();
  const fragment = document.createDocumentFragment();
  for (const h of data.hearts) {
    const tr = document.createElement("tr");
    tr.dataset.heart = h.heart;
    tr.dataset.standing = h.state;
    tr.append(el("td", h.heart, "id"), el("td", h.name || ""), el("td", h.state.replace("_", " ")),
              el("td", h.misses, "n"), el("td", fmt(h.last_rtt_ms, 2), "n"),
              el("td", fmt(h.mean_rtt_ms, 2), "n"), el("td", h.why || ""));
    fragment.append(tr);
  }
  found.tBodies[0].replaceChildren(fragment);
  found.caption.textContent = data.next ? `The first ${data.hearts.length} found` : `${data.hearts.length} found`;
  found.hidden = false;
  window.greenheart.found += 1;
}

function handle(text) {
  const began = performance.now();
  const data = JSON.parse(text);
  const applied = apply(data);
  const parsed = performance.now();
  render(data);  // the monitor's health is news, even in an answer overtaken
  if (!applied) return data;
  const g = window.greenheart;
  g.updates += 1;
  g.deltas += data.full ? 0 : 1;
  g.lastBytes = text.length;
  g.lastFull = data.full;
  if (data.full) { g.fullBytes = text.length; g.fullApplyMs = parsed - began; }
  g.lastParseMs = parsed - began;
  g.lastRenderMs = performance.now() - parsed;
  return data;
}

async function update() {
  const url = page.version === null ? "live.json" : `live.json?since=${page.version}`;
  const response = await fetch(url, { cache: "no-store" });
  return handle(await response.text());
}

function unreachable() {
  window.greenheart.failedFetches += 1;
  setState("unreachable", "the monitor's page does not answer");
}

async function poll() {
  let period = 1000;
  try {
    period = (await update()).monitor.period_ms;
  } catch (error) {
    unreachable();
  }
  // once a period, but at least every 2 s and at most every 0.5 s
  setTimeout(poll, Math.min(2000, Math.max(500, period)));
}

// The monitor pushes an update after each beat (server-sent events, reconnecting by itself
// from the last version); ?poll polls instead, as a browser without them does.
function listen() {
  const source = new EventSource("live.events");
  source.onmessage = (event) => handle(event.data);
  source.onerror = unreachable;
}

// what a test compares: the rows this page holds, as the monitor would give them whole
window.greenheart.rows = () => JSON.stringify(Object.fromEntries([...page.hearts].sort()));
window.greenheart.found = 0;
window.greenheart.deltas = 0;
window.greenheart.next = update;

$("grid").addEventListener("mousemove", tooltip);
$("grid").addEventListener("mouseleave", () => { $("tip").hidden = true; });
$("grid").addEventListener("click", (event) => {
  const key = heartAt(event);
  if (key !== null) { $("find").value = key; find(); }
});
$("find").addEventListener("input", () => {
  clearTimeout(finding);
  finding = setTimeout(find, 200);
});
if (window.EventSource && !new URLSearchParams(location.search).has("poll")) listen(); else poll();
