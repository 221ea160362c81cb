// Operations-centre wall screen. Reads GET /v1/stream (server-sent events) with the operator's
// bearer token in a header (fetch, not EventSource, so the token never goes into a URL), and
// redraws in place: no reload, no hovering needed, numbers always written out.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const state = { flows: null, indicators: null, history: new Map(), controller: null };

// --- credentials ----------------------------------------------------------------------------
function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("ops-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname); // keep it off the screen
  }
  return sessionStorage.getItem("ops-token");
}

function askToken(message) {
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login").onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem("ops-token", $("token").value.trim());
    $("login").hidden = true;
    connect();
  };
}

// --- the stream -----------------------------------------------------------------------------
function setStatus(kind, text) {
  const el = $("status");
  el.dataset.state = kind;
  el.textContent = text;
}

async function connect() {
  const token = takeToken();
  if (!token) return askToken();
  if (state.controller) state.controller.abort();
  state.controller = new AbortController();
  try {
    const res = await fetch("/v1/stream", {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      signal: state.controller.signal,
      cache: "no-store",
    });
    if (res.status === 401 || res.status === 403) {
      setStatus("denied", "✗ not allowed");
      sessionStorage.removeItem("ops-token");
      return askToken("The token was refused (an operator token with ops:read is needed).");
    }
    if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
    setStatus("live", "● LIVE");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        handleBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  setStatus("reconnecting", "◌ reconnecting…");
  setTimeout(connect, 2000);
}

function handleBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (event === "snapshot" && data.length) render(JSON.parse(data.join("\n")));
}

// --- rendering --------------------------------------------------------------------------------
function age(s) {
  if (s == null) return "–";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function pct(v) {
  return v == null ? "n/a" : (v * 100).toFixed(1) + "\u00a0%";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function tile(id, value, level) {
  $(id).textContent = value;
  $(id).parentElement.dataset.level = level || "";
}

function render(s) {
  $("updated").textContent = new Date(s.at).toLocaleTimeString();
  const ops = s.operations;
  const n = ops.notifications;
  const maxLag = Math.max(0, ...s.lag.map((l) => l.lag || 0));
  const stuck = s.lag.filter((l) => l.state === "stalled" || l.state === "absent").length;
  tile("t-rate", fmt.format(Math.round(s.rates.total * 10) / 10));
  $("t-applied").textContent = fmt.format(s.rates.applied);
  tile("t-pending", fmt.format(n.pending));
  tile("t-overdue", fmt.format(n.overdue), n.overdue > 0 ? "alert" : "");
  $("t-overdue-age").textContent = n.overdue ? age(n.oldest_overdue_seconds) : "–";
  tile("t-oldest", n.pending + n.overdue ? age(n.oldest_open_seconds) : "–");
  const dead = ops.all_dead_letters || { total: 0, counts: [] };
  tile("t-dlq", fmt.format(dead.total), dead.total || ops.dead_letters.open ? "warning" : "");
  $("t-dlq-own").textContent = fmt.format(ops.dead_letters.open);
  tile("t-disc", ops.discrepancies ? fmt.format(ops.discrepancies.open) : "n/a",
       ops.discrepancies && ops.discrepancies.open ? "warning" : "");
  tile("t-outbox", fmt.format(s.outbox.backlog), s.outbox.oldest_age_seconds > 30 ? "alert" : "");
  $("t-outbox-age").textContent = s.outbox.backlog ? age(s.outbox.oldest_age_seconds) : "–";
  tile("t-lag", stuck ? `${stuck} stalled` : fmt.format(maxLag), stuck ? "alert" : maxLag >= 1000 ? "warning" : "");
  renderAlerts(s.alerts);
  renderRates(s.rates.by_type);
  renderLag(s.lag, s.lag_source);
  renderCases(ops);
  if (s.flows) renderFlows(s.flows);
  if (s.indicators) renderIndicators(s.indicators);
}

function renderAlerts(alerts) {
  const list = $("alerts");
  list.replaceChildren(
    ...(alerts.length
      ? alerts.map((a) => el("li", { class: a.level }, (a.level === "alert" ? "✖ ALERT " : "▲ WARNING ") + a.text))
      : [el("li", { class: "ok" }, "✓ no threshold crossed")])
  );
}

function renderRates(byType) {
  const entries = Object.entries(byType).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  $("rates").replaceChildren(
    ...(entries.length ? entries : [["no events yet", 0]]).map(([type, rate]) =>
      el("tr", {}, el("td", {}, type), el("td", { class: "num" }, rate.toFixed(1)),
         el("td", { class: "barcell" }, el("div", { class: "bar", style: `width:${(100 * rate) / max}%` }))))
  );
}

function renderLag(lag, source) {
  $("lag-source").textContent = source === "broker" ? "every group, from the broker" : "this service's groups";
  // Stalled and vanished groups first, then the furthest behind.
  const weight = (l) => (l.state === "stalled" || l.state === "absent" ? 1e15 : 0) + (l.lag || 0);
  const sorted = [...lag].sort((a, b) => weight(b) - weight(a) || a.group.localeCompare(b.group));
  $("lag").dataset.groups = [...new Set(lag.map((l) => l.group))].sort().join(" ");
  $("lag").dataset.topics = [...new Set(lag.map((l) => l.topic))].sort().join(" ");
  const rows = sorted.slice(0, 5); // the worst first; the rest summed up in words below
  const rest = sorted.slice(5);
  const tail = rest.length
    ? [el("tr", {}, el("td", { class: "sub", colspan: "3" },
        `+ ${rest.length} more, ${fmt.format(rest.reduce((n, l) => n + (l.lag || 0), 0))} behind in all`))]
    : [];
  $("lag").replaceChildren(
    el("tr", {}, el("th", {}, "group"), el("th", {}, "topic"), el("th", {}, "behind")),
    ...rows.map((l) =>
      el("tr", { "data-state": l.state || "ok" }, el("td", {}, l.group), el("td", {}, l.topic),
         l.state === "stalled" || l.state === "absent"
           ? el("td", { class: "num bad" }, `■ ${l.state === "absent" ? "gone" : "stalled"}` + (l.lag ? ` ${fmt.format(l.lag)}` : ""))
           : el("td", { class: "num " + (l.lag >= 1000 ? "warn" : "ok") }, (l.lag >= 1000 ? "▲ " : "") + fmt.format(l.lag)))),
    ...tail
  );
}

function renderCases(ops) {
  // Every service's dead letters by service, topic and reason (the census of the .dlq topics) ...
  const counts = (ops.all_dead_letters || { counts: [] }).counts;
  $("dlq-counts").replaceChildren(
    ...counts.slice(0, 6).map((c) =>
      el("tr", {}, el("td", {}, c.service), el("td", {}, c.topic), el("td", {}, c.reason),
         el("td", { class: "num warn" }, fmt.format(c.count)), el("td", { class: "num sub" }, age(c.latest_age_s)))),
    ...(counts.length > 6 ? [el("tr", {}, el("td", { class: "sub", colspan: "5" }, `+ ${counts.length - 6} more (GET /v1/dead-letters)`))] : []));
  // ... and the exchange's own, each openable.
  const items = ops.dead_letters.latest.map((d) =>
    el("li", {}, "✉ ", el("button", { "data-href": `/v1/dead-letters/${d.id}`, class: "case" }, `dead letter #${d.id}`),
       ` ${d.topic} · ${age(d.age_s)} · ${d.reason}`));
  if (ops.discrepancies) {
    for (const c of ops.discrepancies.oldest) {
      items.push(el("li", {}, "⚑ ", el("button", { "data-href": "/v1/discrepancies?state=open&limit=50", class: "case" },
                    `case ${c.id.slice(0, 8)}`), ` open for ${age(c.age_s)}`));
    }
  } else {
    items.push(el("li", { class: "sub" }, "discrepancy cases: n/a (reconciliation not deployed)"));
  }
  $("cases").replaceChildren(...(items.length ? items : [el("li", { class: "ok" }, "✓ nothing waiting")]));
}

// Viridis: perceptually uniform and readable with the common colour-vision deficiencies.
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37]];
const LUT = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * (VIRIDIS.length - 1);
  const lo = Math.floor(x), hi = Math.min(lo + 1, VIRIDIS.length - 1), f = x - lo;
  return VIRIDIS[lo].map((c, k) => Math.round(c + (VIRIDIS[hi][k] - c) * f));
});

function renderFlows(f) {
  const t0 = performance.now();
  state.flows = f;
  const canvas = $("heat");
  const n = f.divisions.length;
  // cells: [origin index, destination index, count], largest first
  let max = 1;
  for (const c of f.cells) if (c[2] > max) max = c[2];
  const labelled = n > 0 && n <= 24;
  const margin = labelled ? 96 : 0;
  const size = 640;
  const cell = n ? (size - margin) / n : 0;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, size, size);
  const scale = Math.log(max + 1);
  for (const [o, d, count] of f.cells) {
    const [r, g, b] = LUT[Math.round((255 * Math.log(count + 1)) / scale)];
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(margin + d * cell, margin + o * cell,
                 Math.max(cell - (cell > 4 ? 1 : 0), 1), Math.max(cell - (cell > 4 ? 1 : 0), 1));
    if (labelled && cell >= 34) {
      const light = Math.log(count + 1) / scale > 0.6;
      ctx.fillStyle = light ? "#000" : "#fff";
      ctx.font = `bold ${Math.min(44, cell / 3)}px sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(fmt.format(count), margin + (d + 0.5) * cell, margin + (o + 0.5) * cell);
    }
  }
  if (labelled) {
    ctx.fillStyle = "#a9b3bf";
    ctx.font = `${Math.min(24, cell / 2.2)}px sans-serif`;
    f.divisions.forEach((d, i) => {
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(d, margin - 4, margin + (i + 0.5) * cell);
      ctx.save();
      ctx.translate(margin + (i + 0.5) * cell, margin - 4);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(d, 0, 0);
      ctx.restore();
    });
  }
  canvas.dataset.version = String(Number(canvas.dataset.version) + 1);
  canvas.dataset.cells = String(f.cells.length);
  canvas.dataset.total = String(f.total);
  $("flow-total").textContent = fmt.format(f.total);
  $("flow-dims").textContent = `${n} jurisdictions · ${fmt.format(f.cells.length)} pairs · log colour scale`;
  $("legend-max").textContent = fmt.format(max);
  const lg = $("legend").getContext("2d");
  for (let x = 0; x < 300; x++) {
    const [r, g, b] = LUT[Math.round((255 * x) / 299)];
    lg.fillStyle = `rgb(${r},${g},${b})`;
    lg.fillRect(x, 0, 1, 28);
  }
  // The busiest pairs by place name (GB/T 2260), readable from across the room; codes below.
  const name = (i) => (f.names && f.names[i]) || f.divisions[i];
  $("top-flows").replaceChildren(
    ...f.cells.slice(0, 8).map(([o, d, count]) =>
      el("li", {},
        el("span", { class: "pair" }, `${name(o)} → ${name(d)}`),
        el("b", {}, fmt.format(count)),
        el("span", { class: "codes" }, `${f.divisions[o]} → ${f.divisions[d]}`)))
  );
  canvas.dataset.renderMs = (performance.now() - t0).toFixed(1);
}

function rateCell(value, trend, good, key, jurisdiction) {
  // good == null: a rate with no target (the verification rate), shown without a verdict.
  const level = value == null || good == null ? "" : value >= good ? "ok" : value >= good - 0.1 ? "warn" : "bad";
  const mark = value == null ? "" : level === "ok" ? "✓\u00a0" : level === "warn" ? "!\u00a0" : "✗\u00a0";
  const td = el("td", { class: "num " + level, "data-key": key }, mark + pct(value));
  if (trend != null && Math.abs(trend) >= 0.0005) { // an unchanged rate needs no arrow
    const arrow = trend > 0 ? "▲" : "▼";
    td.append(el("span", { class: "trend" }, `${arrow}${trend > 0 ? "+" : ""}${(trend * 100).toFixed(1)}`));
  }
  const series = state.history.get(jurisdiction + key);
  if (series && series.length > 1) td.append(sparkline(series));
  return td;
}

function sparkline(series) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "40");
  svg.setAttribute("height", "18");
  svg.setAttribute("class", "spark");
  const line = document.createElementNS(ns, "polyline");
  const pts = series.map((v, i) => `${(i * 38) / (series.length - 1) + 1},${17 - v * 16}`).join(" ");
  line.setAttribute("points", pts);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#56b4e9");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  return svg;
}

function renderIndicators(data) {
  state.indicators = data;
  const start = new Date(data.period.start), end = new Date(data.period.end);
  $("period").textContent = `${Math.round((end - start) / 3600000)} h to ${end.toLocaleTimeString()}`;
  for (const j of data.jurisdictions) {
    for (const key of ["certificate_issuance_rate", "verification_rate", "timely_feedback_rate", "reconciliation_accuracy"]) {
      if (j[key] == null) continue;
      const series = state.history.get(j.jurisdiction + key) || [];
      series.push(j[key]);
      if (series.length > 30) series.shift();
      state.history.set(j.jurisdiction + key, series);
    }
  }
  // The busiest and the worst first; a wall screen shows what fits, and says how many more.
  const rows = [...data.jurisdictions].sort((a, b) =>
    (a.timely_feedback_rate ?? 2) - (b.timely_feedback_rate ?? 2) ||
    (b.in_migrants + b.out_migrants) - (a.in_migrants + a.out_migrants));
  const shown = rows.slice(0, 12);
  // Place names come with the flow matrix (GB/T 2260); a code not in it shows alone.
  const f = state.flows;
  const names = new Map(f && f.names ? f.divisions.map((d, i) => [d, f.names[i]]) : []);
  $("indicators").tBodies[0].replaceChildren(
    ...shown.map((j) =>
      el("tr", {},
        el("td", {}, el("b", {}, j.jurisdiction),
          names.has(j.jurisdiction) ? el("span", { class: "place" }, names.get(j.jurisdiction)) : ""),
        el("td", { class: "num" }, `${fmt.format(j.in_migrants)} / ${fmt.format(j.out_migrants)}`),
        rateCell(j.certificate_issuance_rate, j.trend.certificate_issuance_rate, 0.9, "certificate_issuance_rate", j.jurisdiction),
        rateCell(j.verification_rate, j.trend.verification_rate, null, "verification_rate", j.jurisdiction),
        rateCell(j.timely_feedback_rate, j.trend.timely_feedback_rate, 0.95, "timely_feedback_rate", j.jurisdiction),
        rateCell(j.reconciliation_accuracy, null, 0.99, "reconciliation_accuracy", j.jurisdiction),
        el("td", { class: "num" }, `${age(j.feedback_median_seconds)} / ${age(j.feedback_p99_seconds)}`),
        el("td", { class: "num" }, j.open_discrepancies == null ? "n/a" : fmt.format(j.open_discrepancies))))
  );
  $("ind-more").textContent =
    (rows.length > shown.length ? `+ ${rows.length - shown.length} more jurisdictions (GET /v1/indicators). ` : "") +
    "Verification rate: in-migrants' certificates in force, verified there at least once in the period." +
    (!data.discrepancies_available ? " Accuracy n/a: reconciliation not deployed."
      : data.jurisdictions.some((j) => j.reconciliation_accuracy == null)
        ? " Accuracy n/a where no reconciliation has finished." : "");
}

// Case links are buttons: the API wants the bearer token, so the case opens here, on the page.
document.addEventListener("click", async (e) => {
  const link = e.target.closest("button.case");
  if (!link) return;
  const res = await fetch(link.dataset.href, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem("ops-token") },
  });
  $("detail-title").textContent = link.textContent;
  $("detail-body").textContent = res.ok ? JSON.stringify(await res.json(), null, 2) : `HTTP ${res.status}`;
  $("detail").showModal();
});

connect();
