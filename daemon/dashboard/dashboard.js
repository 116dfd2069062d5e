// taskwald's web dashboard: one static page (index.html, dashboard.css,
// this file), served by the daemon under /ui/ and compiled into it; no
// framework, no build step, nothing fetched from elsewhere.
//
// Views (the location's hash):
//   #/                  counts by status, throughput and latency charts,
//                       counts by type with pause/resume, engine figures
//   #/tasks?status=S&type=T&limit=N&after=C
//                       the task list, filtered and paged (List's cursor)
//   #/task/ID           one task: fields, payload, result, history, and
//                       retry / cancel / delete
//
// Data comes from the JSON API under /v1/ (daemon/http_api.h), with the
// token the user typed (kept in sessionStorage, sent as a bearer token).
//
// Safety: text from tasks (keys, types, payloads, results, errors, worker
// ids) only ever reaches the page through textContent, after visible()
// below has written control characters, and characters that reorder or hide
// text, as escapes; nothing is put in innerHTML. The server sends a
// Content-Security-Policy that allows only these files' own script and
// style, so even a mistake here could not run injected script.
"use strict";

(function () {
  const TOKEN_KEY = "taskwal-token";
  const STATUSES = ["PENDING", "CLAIMED", "COMPLETED", "FAILED", "CANCELLED"];
  const REFRESH_MS = 2000;
  const SERIES_REFRESH_MS = 5000;
  const PAYLOAD_SHOWN_BYTES = 64 * 1024;

  const $ = (id) => document.getElementById(id);

  // ---- Text -------------------------------------------------------------

  // `text` with what a person cannot see, or what would mislead them, made
  // visible: C0 and C1 controls and DEL as \xNN / \u00NN; characters that
  // reorder or hide text (bidirectional controls, zero-width characters,
  // line and paragraph separators, the byte-order mark, fillers and tag
  // characters) as \uNNNN (\u{NNNNN} above U+FFFF); a
  // backslash as \\ so escapes cannot be forged. With `multiline`, \n and
  // \t stay as they are (for <pre>). The result is still only ever set as
  // textContent.
  function visible(text, multiline) {
    let out = "";
    for (const ch of String(text)) {
      const c = ch.codePointAt(0);
      if (ch === "\\") {
        out += "\\\\";
      } else if (multiline && (ch === "\n" || ch === "\t")) {
        out += ch;
      } else if (ch === "\n") {
        out += "\\n";
      } else if (ch === "\r") {
        out += "\\r";
      } else if (ch === "\t") {
        out += "\\t";
      } else if (c < 0x20 || c === 0x7f) {
        out += "\\x" + c.toString(16).padStart(2, "0");
      } else if ((c >= 0x80 && c <= 0x9f) || c === 0xad || c === 0x61c ||
                 c === 0x115f || c === 0x1160 || c === 0x180e ||
                 (c >= 0x200b && c <= 0x200f) ||
                 (c >= 0x2028 && c <= 0x202e) ||
                 (c >= 0x2060 && c <= 0x2069) || c === 0x3164 ||
                 c === 0xfeff || c === 0xffa0 ||
                 (c >= 0xfff9 && c <= 0xfffb) ||
                 (c >= 0xe0000 && c <= 0xe007f)) {
        out += c > 0xffff ? "\\u{" + c.toString(16) + "}"
                          : "\\u" + c.toString(16).padStart(4, "0");
      } else {
        out += ch;
      }
    }
    return out;
  }

  function setText(el, text, multiline) {
    el.textContent = visible(text, multiline);
  }

  // A new element with attributes (never event handlers) and text.
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, value);
    }
    if (text !== undefined) setText(node, text);
    return node;
  }

  // Bytes (protobuf JSON: base64) as text: UTF-8 shown as text, anything
  // else as hex; at most PAYLOAD_SHOWN_BYTES.
  function showBytes(node, base64) {
    let bytes;
    try {
      const raw = atob(base64 || "");
      bytes = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    } catch (e) {
      setText(node, "(not base64)");
      return;
    }
    if (bytes.length === 0) {
      node.textContent = "(empty)";
      node.classList.add("muted");
      return;
    }
    node.classList.remove("muted");
    const shown = bytes.subarray(0, PAYLOAD_SHOWN_BYTES);
    let text;
    try {
      // stream: a character cut at the limit is held back, not an error;
      // ignoreBOM: a leading U+FEFF stays (and visible() shows it).
      text = new TextDecoder("utf-8", {fatal: true, ignoreBOM: true})
                 .decode(shown, {stream: bytes.length > shown.length});
    } catch (e) {
      // Not UTF-8 (or cut inside a character): hex, 32 bytes a line.
      const lines = [];
      for (let i = 0; i < shown.length; i += 32) {
        lines.push(Array.from(shown.subarray(i, i + 32),
                              (b) => b.toString(16).padStart(2, "0"))
                       .join(" "));
      }
      text = lines.join("\n");
    }
    if (bytes.length > shown.length) {
      text += "\n… (" + bytes.length + " bytes; the first " + shown.length +
              " shown)";
    }
    setText(node, text, /*multiline=*/true);
  }

  function num(v) {
    return Number(v || 0);
  }
  function fmtCount(v) {
    return num(v).toLocaleString("en-US");
  }
  function fmtTime(micros) {
    const us = num(micros);
    if (us === 0) return "";
    return new Date(us / 1000).toISOString().replace("T", " ").slice(0, 19) +
           "Z";
  }
  function fmtSeconds(s) {
    if (!isFinite(s)) return "–";
    if (s === 0) return "0";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return +(s * 1e3).toPrecision(3) + " ms";
    if (s < 120) return +s.toPrecision(s < 10 ? 3 : 2) + " s";
    if (s < 7200) return (s / 60).toFixed(0) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  // ---- API --------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = {"Accept": "application/json"};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    const init = {method, headers, cache: "no-store"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "UNAVAILABLE", "the daemon cannot be reached");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      // Not JSON: handled below by the status.
    }
    if (!response.ok) {
      const code = data && data.code ? data.code : "HTTP_" + response.status;
      const message = data && data.message ? data.message : response.statusText;
      throw new ApiError(response.status, code, message);
    }
    return data;
  }

  // Shows an error (or nothing, with null); 401 asks for a token.
  function report(error) {
    const box = $("message");
    if (error === null) {
      box.hidden = true;
      return;
    }
    if (error instanceof ApiError && error.status === 401) {
      showLogin(sessionStorage.getItem(TOKEN_KEY) !== null);
      return;
    }
    let text = error instanceof ApiError
                   ? error.code + ": " + error.message
                   : String(error);
    if (error instanceof ApiError && error.status === 403) {
      text += " (this token may only read)";
    }
    setText(box, text);
    box.classList.remove("notice");
    box.hidden = false;
  }

  function notice(text) {
    const box = $("message");
    setText(box, text);
    box.hidden = false;
    box.classList.add("notice");
    setTimeout(() => {
      if (!box.classList.contains("notice")) return;  // An error since.
      box.classList.remove("notice");
      box.hidden = true;
    }, 4000);
  }

  // ---- Login ------------------------------------------------------------

  function showLogin(rejected) {
    for (const view of document.querySelectorAll("main")) view.hidden = true;
    $("login").hidden = false;
    if (rejected) {
      sessionStorage.removeItem(TOKEN_KEY);
      setText($("message"), "That token was not accepted.");
      $("message").hidden = false;
    }
    $("token").focus();
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token === "") return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login").hidden = true;
    report(null);
    route();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  // ---- Charts -----------------------------------------------------------

  const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c"];

  // Round steps for an axis up to `max`: 1, 2 or 5 times a power of ten.
  function niceStep(max, count) {
    const raw = max / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) {
      if (m * power >= raw) return m * power;
    }
    return 10 * power;
  }

  // Draws lines [{name, points: [[t, y], ...]}] on a canvas, with a time
  // axis over the samples' span and a y axis from 0 (linear) or, with
  // `log`, over the decades the positive values span (latencies, where one
  // slow minute would flatten every other point on a linear axis).
  function drawChart(canvas, legend, lines, formatY, log) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 64, right = 8, top = 8, bottom = 22;
    let tMin = Infinity, tMax = -Infinity, yMax = 0, yMinPositive = Infinity;
    for (const line of lines) {
      for (const [t, y] of line.points) {
        tMin = Math.min(tMin, t);
        tMax = Math.max(tMax, t);
        if (isFinite(y)) {
          yMax = Math.max(yMax, y);
          if (y > 0) yMinPositive = Math.min(yMinPositive, y);
        }
      }
    }
    g.font = "11px sans-serif";
    g.fillStyle = "#6b7280";
    if (!isFinite(tMin) || tMax <= tMin) {
      g.fillText("collecting samples…", left, top + 20);
      legend.textContent = "";
      return;
    }
    const x = (t) => left + (t - tMin) / (tMax - tMin) * (width - left - right);
    const ticks = [];
    let y;
    if (log && yMax > 0) {
      const lo = Math.floor(Math.log10(yMinPositive));
      const hi = Math.max(lo + 1, Math.ceil(Math.log10(yMax)));
      for (let e = lo; e <= hi; e++) ticks.push(Math.pow(10, e));
      // Zero (no wait at all) sits on the bottom line.
      y = (v) => top + (1 - (Math.log10(Math.max(v, ticks[0])) - lo) /
                               (hi - lo)) * (height - top - bottom);
    } else {
      const step = niceStep(yMax > 0 ? yMax : 1, 4);
      const axisMax = Math.max(step, Math.ceil((yMax > 0 ? yMax : 1) / step) *
                                         step);
      for (let v = 0; v <= axisMax + step / 2; v += step) ticks.push(v);
      y = (v) => top + (1 - v / axisMax) * (height - top - bottom);
    }
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    for (const v of ticks) {
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(width - right, y(v));
      g.stroke();
      g.fillText(formatY(v), 4, y(v) + 4);
    }
    const minutes = (tMax - tMin) / 60;
    g.fillText("-" + (minutes >= 1 ? minutes.toFixed(0) + " min" :
                      ((tMax - tMin).toFixed(0) + " s")),
               left, height - 6);
    g.fillText("now", width - right - 22, height - 6);
    legend.textContent = "";
    lines.forEach((line, i) => {
      g.strokeStyle = COLORS[i % COLORS.length];
      g.lineWidth = 1.5;
      g.beginPath();
      let pen = false;
      for (const [t, v] of line.points) {
        if (!isFinite(v)) {
          pen = false;
          continue;
        }
        if (pen) g.lineTo(x(t), y(v)); else g.moveTo(x(t), y(v));
        pen = true;
      }
      g.stroke();
      const item = el("span", {"class": "key"});
      const swatch = el("span", {"class": "swatch"});
      swatch.style.background = COLORS[i % COLORS.length];
      item.append(swatch, document.createTextNode(line.name));
      legend.append(item);
    });
  }

  // The q-quantile (0..1) of bucket counts `counts` (upper bounds `bounds`,
  // then +Inf), interpolating inside the bucket; NaN without observations.
  function quantile(bounds, counts, q) {
    let total = 0;
    for (const c of counts) total += c;
    if (total === 0) return NaN;
    const rank = q * total;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      if (seen + counts[i] >= rank && counts[i] > 0) {
        const lower = i === 0 ? 0 : bounds[i - 1];
        const upper = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
        return lower + (upper - lower) * (rank - seen) / counts[i];
      }
      seen += counts[i];
    }
    return bounds[bounds.length - 1];
  }

  function renderSeries(series) {
    const samples = series.samples || [];
    const bounds = (series.bucket_bounds_seconds || []).map(Number);
    const rates = {submitted: [], completions: [], failed_attempts: []};
    const lat = {qw50: [], qw99: [], rt50: [], rt99: []};
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      const t = num(b.time_micros) / 1e6;
      const dt = (num(b.time_micros) - num(a.time_micros)) / 1e6;
      if (dt <= 0) continue;
      for (const k of Object.keys(rates)) {
        rates[k].push([t, Math.max(0, num(b[k]) - num(a[k])) / dt]);
      }
      const delta = (key) => (b[key] || []).map(
          (v, j) => Math.max(0, num(v) - num((a[key] || [])[j])));
      const qw = delta("queue_wait_buckets"), rt = delta("run_time_buckets");
      lat.qw50.push([t, quantile(bounds, qw, 0.5)]);
      lat.qw99.push([t, quantile(bounds, qw, 0.99)]);
      lat.rt50.push([t, quantile(bounds, rt, 0.5)]);
      lat.rt99.push([t, quantile(bounds, rt, 0.99)]);
    }
    drawChart($("chart-throughput"), $("legend-throughput"), [
      {name: "submitted", points: rates.submitted},
      {name: "completed", points: rates.completions},
      {name: "failed attempts", points: rates.failed_attempts},
    ], (v) => v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1));
    drawChart($("chart-latency"), $("legend-latency"), [
      {name: "queue wait p50", points: lat.qw50},
      {name: "queue wait p99", points: lat.qw99},
      {name: "run time p50", points: lat.rt50},
      {name: "run time p99", points: lat.rt99},
    ], fmtSeconds, /*log=*/true);
  }

  // ---- Overview ---------------------------------------------------------

  function renderStats(stats, paused) {
    for (const s of STATUSES) {
      $("count-" + s.toLowerCase()).textContent = fmtCount(stats[s.toLowerCase()]);
    }
    $("count-tasks").textContent = fmtCount(stats.tasks);

    const pausedSet = new Set(paused.types || []);
    const rows = new Map();
    for (const t of stats.types || []) rows.set(t.type, t);
    for (const type of pausedSet) {
      if (!rows.has(type)) rows.set(type, {type});
    }
    const body = $("types").tBodies[0];
    body.textContent = "";
    const now = Date.now() * 1000;
    for (const type of Array.from(rows.keys()).sort()) {
      const t = rows.get(type);
      const tr = el("tr", {"data-type": type});
      const name = el("td");
      if (type === "") {
        // The API's type filter takes "" as every type: no link.
        name.append(el("span", {"class": "muted"}, "(no type)"));
      } else {
        name.append(el("a", {"href": "#/tasks?type=" +
                                      encodeURIComponent(type)}, type));
      }
      tr.append(name);
      for (const s of STATUSES) {
        const td = el("td", {"class": "num", "data-status": s},
                      fmtCount(t[s.toLowerCase()]));
        tr.append(td);
      }
      const oldest = num(t.oldest_ready_micros);
      tr.append(el("td", {"class": "num"},
                   oldest > 0 ? fmtSeconds(Math.max(0, now - oldest) / 1e6) : ""));
      const isPaused = pausedSet.has(type);
      tr.append(el("td", {"class": isPaused ? "paused" : ""},
                   isPaused ? "paused" : ""));
      const action = el("td");
      const button = el("button", {"type": "button",
                                   "data-action": isPaused ? "resume" : "pause"},
                        isPaused ? "Resume" : "Pause");
      button.addEventListener("click", () => act(button, async () => {
        await api("POST", isPaused ? "/v1/resume" : "/v1/pause", {type});
        return (isPaused ? "Resumed " : "Paused ") + type;
      }));
      action.append(button);
      tr.append(action);
      body.append(tr);
    }
    $("types-empty").hidden = rows.size > 0;

    const fields = $("engine-fields");
    fields.textContent = "";
    const add = (name, value) => {
      fields.append(el("dt", {}, name), el("dd", {}, value));
    };
    add("Partitions", fmtCount(stats.partitions));
    add("Submitted (all time)", fmtCount(stats.submitted));
    add("Completions", fmtCount(stats.completions));
    add("Failed attempts", fmtCount(stats.failed_attempts));
    add("Lease expiries", fmtCount(stats.lease_expiries));
    add("Deduplicated submits", fmtCount(stats.deduplicated));
    add("Schedules", fmtCount(stats.schedules));
    add("Log records", fmtCount(stats.last_lsn));
    add("Log bytes written", fmtCount(stats.wal_bytes));
    add("fsyncs", fmtCount(stats.fsyncs));
    add("Snapshots", fmtCount(stats.snapshots));
    add("Last snapshot", num(stats.last_snapshot_micros) > 0
                             ? fmtTime(stats.last_snapshot_micros) : "none");
  }

  let lastSeries = 0;
  async function refreshOverview(g) {
    const [stats, paused] = await Promise.all([
      api("GET", "/v1/stats"), api("GET", "/v1/paused")]);
    if (stale(g)) return;
    renderStats(stats, paused);
    if (Date.now() - lastSeries >= SERIES_REFRESH_MS) {
      const series = await api("GET", "/v1/series");
      if (stale(g)) return;
      renderSeries(series);
      lastSeries = Date.now();
    }
  }

  // ---- Task list --------------------------------------------------------

  function listQuery() {
    const query = new URLSearchParams(location.hash.split("?")[1] || "");
    return {
      status: (query.get("status") || "").toUpperCase(),
      type: query.get("type") || "",  // "": any type, as List takes it.
      limit: query.get("limit") || "50",
      after: query.get("after") || "",
    };
  }

  function listHash(q) {
    const query = new URLSearchParams();
    if (q.status) query.set("status", q.status);
    if (q.type) query.set("type", q.type);
    if (q.limit && q.limit !== "50") query.set("limit", q.limit);
    if (q.after) query.set("after", q.after);
    const s = query.toString();
    return "#/tasks" + (s ? "?" + s : "");
  }

  async function refreshTasks(g) {
    const q = listQuery();
    // The list shows no payloads or results: they are not sent.
    const params = new URLSearchParams({limit: q.limit, payloads: "false"});
    if (q.status) params.set("status", q.status);
    if (q.type) params.set("type", q.type);
    if (q.after) params.set("after_id", q.after);
    const page = await api("GET", "/v1/tasks?" + params.toString());
    if (stale(g)) return;
    const body = $("task-list").tBodies[0];
    body.textContent = "";
    for (const t of page.tasks || []) {
      const tr = el("tr", {"data-task-id": t.id, "class": "link"});
      const id = el("td", {"class": "num"});
      id.append(el("a", {"href": "#/task/" + encodeURIComponent(t.id)}, t.id));
      tr.append(id, el("td", {}, t.type), el("td", {}, t.idempotency_key),
                el("td", {"class": "status " + String(t.status).toLowerCase()},
                   t.status),
                el("td", {"class": "num"},
                   t.attempts + " / " + t.max_attempts),
                el("td", {}, fmtTime(t.created_micros)),
                el("td", {"class": "error"}, t.last_error));
      tr.addEventListener("click", (event) => {
        if (event.target.tagName !== "A") location.hash = "#/task/" + t.id;
      });
      body.append(tr);
    }
    $("task-list-empty").hidden = (page.tasks || []).length > 0;
    const next = page.next_cursor && page.next_cursor !== "0"
                     ? page.next_cursor : "";
    $("page-next").disabled = next === "";
    $("page-next").dataset.cursor = next;
    $("page-first").disabled = q.after === "";
    $("page-info").textContent =
        (page.tasks || []).length + " shown" + (q.after ? " (after id " +
        q.after + ")" : "");
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = listHash({status: $("filter-status").value,
                              type: $("filter-type").value,
                              limit: $("filter-limit").value});
  });
  $("page-next").addEventListener("click", () => {
    const q = listQuery();
    q.after = $("page-next").dataset.cursor;
    location.hash = listHash(q);
  });
  $("page-first").addEventListener("click", () => {
    const q = listQuery();
    q.after = "";
    location.hash = listHash(q);
  });

  // Bulk actions: a dry run counts the tasks, a second click does it, with
  // the request the dry run counted (captured then; tasks created since
  // are left out).
  for (const button of document.querySelectorAll("[data-bulk]")) {
    const verb = button.dataset.bulk;
    button.addEventListener("click", () => act(button, async () => {
      const confirmed = disarm(button);
      if (confirmed) return confirmed();
      const q = listQuery();
      const request = {type: q.type,
                       created_before_micros: String(Date.now() * 1000 + 1)};
      if (q.status) request.status = q.status;
      const dry = await api("POST", "/v1/bulk/" + verb,
                            Object.assign({dry_run: true}, request));
      const what = (q.status ? q.status + " " : "") + "tasks" +
                   (q.type ? " of type " + q.type : " of every type");
      arm(button, "Confirm: " + verb + " " + num(dry.changed) +
                      (dry.more ? "+" : "") + " " + what,
          async () => {
            const done = await api("POST", "/v1/bulk/" + verb, request);
            return verb + ": " + num(done.changed) + " " + what +
                   (done.more ? " (more remain: run it again)" : "");
          });
      return null;
    }));
  }

  // ---- Task page --------------------------------------------------------

  let shownTask = null;

  async function refreshTask(id, g) {
    let task;
    try {
      task = await api("GET", "/v1/tasks/" + encodeURIComponent(id));
    } catch (e) {
      if (stale(g)) return;
      if (e instanceof ApiError && e.status === 404) {
        shownTask = null;
        setText($("task-id"), id);
        setText($("task-status"), "not found");
        $("task-fields").textContent = "";
        $("task-payload").textContent = "";
        $("task-result").textContent = "";
        $("task-history").tBodies[0].textContent = "";
        return;
      }
      throw e;
    }
    const history = await api("GET", "/v1/tasks/" + encodeURIComponent(id) +
                                     "/history");
    if (stale(g)) return;
    shownTask = task;
    setText($("task-id"), task.id);
    const badge = $("task-status");
    setText(badge, task.status);
    badge.className = "badge status " + String(task.status).toLowerCase();
    $("task-retry").disabled =
        !(task.status === "FAILED" || task.status === "CANCELLED");
    $("task-cancel").disabled =
        !(task.status === "PENDING" || task.status === "CLAIMED");
    // The engine deletes finished tasks only.
    $("task-delete").disabled = !(task.status === "COMPLETED" ||
                                  task.status === "FAILED" ||
                                  task.status === "CANCELLED");
    const fields = $("task-fields");
    fields.textContent = "";
    const add = (name, value) => {
      if (value === "" || value === undefined || value === null) return;
      fields.append(el("dt", {}, name), el("dd", {}, value));
    };
    add("Type", task.type === "" ? "(no type)" : task.type);
    add("Idempotency key", task.idempotency_key);
    add("Priority", task.priority);
    add("Attempts", task.attempts + " of " + task.max_attempts);
    add("Created", fmtTime(task.created_micros));
    add("Not before", fmtTime(task.not_before_micros));
    add("Claimed by", task.claimed_by);
    add("Claimed", task.status === "CLAIMED" || num(task.finished_micros)
                       ? fmtTime(task.claimed_micros) : "");
    add("Lease until", task.status === "CLAIMED"
                           ? fmtTime(task.lease_deadline_micros) : "");
    add("Finished", fmtTime(task.finished_micros));
    add("Last error", task.last_error);
    add("Depends on", (task.depends_on || []).join(", "));
    add("Waiting for", (task.waiting_for || []).join(", "));
    showBytes($("task-payload"), task.payload);
    showBytes($("task-result"), task.result);
    const dropped = num(task.history_dropped);
    $("task-history-dropped").hidden = dropped === 0;
    $("task-history-dropped").textContent =
        dropped + " older entries are no longer kept.";
    const body = $("task-history").tBodies[0];
    body.textContent = "";
    for (const h of history.entries || []) {
      const tr = el("tr");
      body.append(tr);
      tr.append(el("td", {}, fmtTime(h.time_micros)), el("td", {}, h.event),
                el("td", {}, h.from === "TASK_STATUS_UNSPECIFIED" ? "" : h.from),
                el("td", {}, h.to), el("td", {}, h.worker_id),
                el("td", {"class": "num"}, h.attempt || ""),
                el("td", {"class": "error"}, h.error));
    }
  }

  // The task page's buttons act on the task shown when they were clicked
  // (cancel and delete: when first clicked).
  function taskAction(button, verb, method, confirmFirst) {
    const label = button.textContent;
    const run = async (id) => {
      const path = "/v1/tasks/" + encodeURIComponent(id) +
                   (method === "DELETE" ? "" : "/" + verb);
      await api(method, path, method === "DELETE" ? undefined : {});
      if (method === "DELETE") location.hash = "#/tasks";
      return label + ": task " + id;
    };
    button.addEventListener("click", () => act(button, async () => {
      const confirmed = disarm(button);
      if (confirmed) return confirmed();
      if (shownTask === null) return null;
      const id = shownTask.id;
      if (!confirmFirst) return run(id);
      arm(button, "Confirm " + label.toLowerCase() + " of task " + id,
          () => run(id));
      return null;
    }));
  }
  taskAction($("task-retry"), "retry", "POST", false);
  taskAction($("task-cancel"), "cancel", "POST", true);
  taskAction($("task-delete"), "delete", "DELETE", true);

  // ---- Routing and refresh ---------------------------------------------

  // Two-click buttons: the first click arms the button with what the second
  // will do; a timeout and every navigation disarm it.
  const armed = new Map();  // button -> {action, label, timer}
  function arm(button, text, action) {
    disarm(button);
    armed.set(button, {action, label: button.textContent,
                       timer: setTimeout(() => disarm(button), 8000)});
    button.dataset.armed = "yes";
    setText(button, text);
  }
  // The armed action (and disarms), or null.
  function disarm(button) {
    const a = armed.get(button);
    if (!a) return null;
    armed.delete(button);
    clearTimeout(a.timer);
    button.dataset.armed = "";
    button.textContent = a.label;
    return a.action;
  }
  function disarmAll() {
    for (const button of Array.from(armed.keys())) disarm(button);
  }

  // The last action's error is on show (act).
  let actionFailed = false;

  // Runs a button's action (the button disabled meanwhile, so a double
  // click does it once), shows its outcome, and refreshes the view. The
  // action returns the text to show, or null for none.
  async function act(button, action) {
    if (button.disabled) return;
    button.disabled = true;
    actionFailed = false;
    let text = null;
    try {
      text = await action();
    } catch (e) {
      // Stays up until the next action or navigation: no refresh clears
      // it, not even one that was under way when the button was clicked.
      report(e);
      actionFailed = true;
      return;
    } finally {
      button.disabled = false;
    }
    if (text !== null && text !== undefined) notice(text);
    await refresh();
  }

  function currentView() {
    const hash = location.hash || "#/";
    const task = hash.match(/^#\/task\/([0-9]+)$/);
    if (task) return {view: "task", id: task[1]};
    if (hash === "#/tasks" || hash.startsWith("#/tasks?")) {
      return {view: "tasks"};
    }
    return {view: "overview"};
  }

  // Each navigation starts a generation; what a refresh fetched for an
  // earlier one is dropped, not shown (nor acted on).
  let generation = 0;
  const stale = (g) => g !== generation;

  let refreshing = false;
  let again = false;
  async function refresh() {
    if (!$("login").hidden) return;
    if (refreshing) {
      again = true;  // Runs once the one in flight ends.
      return;
    }
    refreshing = true;
    try {
      do {
        again = false;
        const g = generation;
        const v = currentView();
        if (v.view === "overview") await refreshOverview(g);
        if (v.view === "tasks") await refreshTasks(g);
        if (v.view === "task") await refreshTask(v.id, g);
        if (stale(g)) continue;
        setText($("status-line"),
                "updated " + new Date().toLocaleTimeString());
        $("status-line").classList.remove("stale");
        if (!actionFailed && !$("message").classList.contains("notice")) {
          report(null);
        }
        document.body.dataset.loaded = "yes";
      } while (again);
    } catch (e) {
      $("status-line").classList.add("stale");
      report(e);
      document.body.dataset.loaded = "yes";
    } finally {
      refreshing = false;
    }
  }

  function route() {
    generation++;
    disarmAll();
    actionFailed = false;
    const v = currentView();
    for (const name of ["overview", "tasks", "task"]) {
      $("view-" + name).hidden = name !== v.view;
    }
    $("nav-overview").classList.toggle("current", v.view === "overview");
    $("nav-tasks").classList.toggle("current", v.view !== "overview");
    $("sign-out").hidden = sessionStorage.getItem(TOKEN_KEY) === null;
    // Nothing of the last task stays on the page or in reach of a button.
    shownTask = null;
    for (const id of ["task-id", "task-status", "task-fields", "task-payload",
                      "task-result"]) {
      $(id).textContent = "";
    }
    $("task-history").tBodies[0].textContent = "";
    for (const id of ["task-retry", "task-cancel", "task-delete"]) {
      $(id).disabled = true;
    }
    if (v.view === "tasks") {
      // The form shows the filter in effect; a refresh leaves it alone, so
      // what is being typed stays.
      const q = listQuery();
      $("filter-status").value = q.status;
      $("filter-type").value = q.type;
      $("filter-limit").value = q.limit;
    }
    lastSeries = 0;
    document.body.dataset.loaded = "";
    refresh();
  }

  window.addEventListener("hashchange", route);
  // The overview and a task page follow the engine; the list is fetched
  // when it is opened, changed or refreshed.
  setInterval(() => {
    if (!document.hidden && currentView().view !== "tasks") refresh();
  }, REFRESH_MS);
  $("list-refresh").addEventListener("click", () => refresh());
  route();
})();
