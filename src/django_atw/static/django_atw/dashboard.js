// django-atw operations dashboard: renders the stats frames of /ws/atw/dashboard/ (see
// django_atw.realtime.dashboard). The first frame carries an hour of per-second throughput; each
// later one the last few seconds, merged here by second. No build step: uPlot is a static file.
// window.atwDashboard holds the state (frames received, totals) for tests and the console.
"use strict";

(() => {
  const REFUSED = new Set([4401, 4403]); // signed out or not staff: do not retry
  const BACKOFF_FIRST = 500;
  const BACKOFF_MAX = 15000;
  const root = document.getElementById("atw-dashboard");
  if (!root) return;
  const state = (window.atwDashboard = { frames: 0, completed: 0, failed: 0, connection: "connecting" });
  const buckets = new Map(); // unix second -> [completed, failed]
  let windowSeconds = 3600;
  let chart = null; // the uPlot instance, also window.atwDashboard.chart
  let backoff = BACKOFF_FIRST;

  const $ = (id) => document.getElementById(id);
  const fmtNumber = (n) => (n ?? 0).toLocaleString();
  const fmtSeconds = (s) => (s == null ? "–" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 0)} s`);
  const fmtPercent = (f) => `${(f * 100).toFixed(1)}%`;
  const fmtAgo = (iso) => {
    if (!iso) return "–";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return `${seconds} s ago`;
  };

  function setConnection(value) {
    state.connection = value;
    $("atw-dash-connection").textContent = value;
    document.body.dataset.atwDashboard = value;
  }

  function fillTable(id, rows, columns, empty) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow();
      const td = tr.insertCell();
      td.colSpan = columns.length;
      td.textContent = empty;
      return;
    }
    for (const row of rows) {
      const tr = body.insertRow();
      for (const column of columns) {
        const td = tr.insertCell();
        const [text, className] = [].concat(column(row));
        td.textContent = text;
        if (className) td.className = className;
      }
    }
  }

  function chartData(now) {
    const end = Math.floor(now);
    const xs = [];
    const done = [];
    const failed = [];
    for (let second = end - windowSeconds + 1; second <= end; second++) {
      const counts = buckets.get(second);
      xs.push(second);
      done.push(counts ? counts[0] : 0);
      failed.push(counts ? counts[1] : 0);
    }
    return [xs, done, failed];
  }

  function drawChart(now) {
    const data = chartData(now);
    if (typeof uPlot === "undefined") return; // the vendor file failed to load: numbers only
    if (chart === null) {
      const el = $("atw-dash-chart");
      chart = new uPlot(
        {
          width: Math.max(320, el.clientWidth || 800),
          height: 240,
          series: [
            {},
            { label: "completed/s", stroke: "#2e7d32", fill: "rgba(46,125,50,0.15)", paths: uPlot.paths.stepped({ align: 1 }) },
            { label: "failed/s", stroke: "#c62828", fill: "rgba(198,40,40,0.15)", paths: uPlot.paths.stepped({ align: 1 }) },
          ],
          axes: [{}, { label: "tasks/s" }],
          scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        },
        data,
        el,
      );
      state.chart = chart;
      window.addEventListener("resize", () => chart.setSize({ width: Math.max(320, el.clientWidth), height: 240 }));
    } else {
      chart.setData(data);
    }
  }

  function render(frame) {
    windowSeconds = frame.window || windowSeconds;
    if (frame.full) buckets.clear();
    for (const [second, done, failed] of frame.throughput) buckets.set(second, [done, failed]);
    const oldest = Math.floor(frame.at) - windowSeconds;
    let completed = 0;
    let failed = 0;
    let lastMinute = 0;
    for (const [second, counts] of buckets) {
      if (second <= oldest) {
        buckets.delete(second);
        continue;
      }
      completed += counts[0];
      failed += counts[1];
      if (second > frame.at - 60) lastMinute += counts[0] + counts[1];
    }
    Object.assign(state, { frames: state.frames + 1, completed, failed, last: frame });
    $("atw-dash-completed").textContent = fmtNumber(completed);
    $("atw-dash-failed").textContent = fmtNumber(failed);
    $("atw-dash-rate").textContent = (lastMinute / 60).toFixed(1);
    $("atw-dash-updated").textContent = new Date(frame.at * 1000).toLocaleTimeString();
    drawChart(frame.at);

    const num = (value) => [fmtNumber(value), "num"];
    fillTable(
      "atw-dash-queues",
      Object.entries(frame.queues),
      [([queue]) => queue, ([, d]) => num(d.ready), ([, d]) => num(d.delayed), ([, d]) => num(d.running)],
      "No unfinished tasks.",
    );
    $("atw-dash-sample").textContent = frame.sample ? `(newest ${fmtNumber(frame.sample)} finished in the last hour)` : "";
    fillTable(
      "atw-dash-types",
      frame.types,
      [
        (t) => t.task_type,
        (t) => num(t.completed),
        (t) => num(t.failed),
        (t) => num(t.cancelled),
        (t) => [fmtPercent(t.failure_rate), t.failure_rate > 0 ? "num atw-dash-bad" : "num"],
        (t) => [fmtSeconds(t.p50), "num"],
        (t) => [fmtSeconds(t.p95), "num"],
      ],
      "No task finished in the last hour.",
    );
    fillTable(
      "atw-dash-workers",
      frame.workers,
      [
        (w) => w.id,
        (w) => `${w.hostname}:${w.pid}`,
        (w) => (w.queues || []).join(", "),
        (w) => [fmtAgo(w.last_heartbeat), w.alive ? "" : "atw-dash-bad"],
        (w) => [`${w.tasks_running} / ${w.concurrency}`, "num"],
        (w) => num(w.in_flight),
        (w) => [w.alive ? (w.stopping ? "stopping" : "alive") : "missed its lease", w.alive ? "" : "atw-dash-bad"],
      ],
      "No worker running.",
    );
    fillTable(
      "atw-dash-stuck",
      frame.stuck,
      [
        (t) => t.id,
        (t) => t.task_type,
        (t) => t.queue,
        (t) => t.worker_id || "–",
        (t) => [fmtSeconds(t.running_for), "num"],
        (t) => [t.reason, "atw-dash-bad"],
      ],
      "None.",
    );
  }

  function connect() {
    const path = root.dataset.socket || "/ws/atw/dashboard/";
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${path}`);
    state.socket = socket;
    socket.addEventListener("open", () => {
      backoff = BACKOFF_FIRST;
      setConnection("open");
    });
    socket.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "stats") render(frame);
      else if (frame.type === "error") $("atw-dash-updated").textContent = frame.message;
    });
    socket.addEventListener("close", (event) => {
      if (REFUSED.has(event.code)) {
        setConnection(event.code === 4401 ? "signed out" : "not allowed");
        return;
      }
      setConnection("reconnecting");
      setTimeout(connect, backoff);
      backoff = Math.min(BACKOFF_MAX, backoff * 2);
    });
  }

  connect();
})();
