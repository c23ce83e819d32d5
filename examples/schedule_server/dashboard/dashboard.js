// The dashboard of schedule_server (GET /): live numbers and 5-minute charts of the queue, fed
// by the server-sent events of /api/queue-stats/stream, or by polling /api/queue-stats every
// 2 s while the stream fails. Plain JavaScript, no library; charts drawn on <canvas>.
"use strict";

(() => {
  const WINDOW_MS = 5 * 60 * 1000; // what the charts show
  const POLL_MS = 2000;            // the fallback's period
  const RECONNECT_MS = 10000;      // a stream the browser gave up on is tried again after this

  const COLORS = {
    running: "#2563eb",
    waiting: "#7c3aed",
    throughput: "#059669",
    limit: "#9ca3af",
    p50: "#2563eb",
    p99: "#ea580c",
    bad: "#dc2626",
    warn: "#d97706",
  };

  /** @type {{t: number, values: Object<string, number[]>}[]} one per snapshot, oldest first */
  const history = [];
  let previous = null; // the last snapshot: counters' rates come from the difference

  const byId = (id) => document.getElementById(id);

  function setText(id, value) {
    const element = byId(id);
    if (element !== null) {
      element.textContent = value;
    }
  }

  function fixed(value, digits) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
  }

  function whole(value) {
    return typeof value === "number" && Number.isFinite(value) ? String(Math.round(value)) : "–";
  }

  // --- Charts -------------------------------------------------------------------------------

  /** A chart: its canvas and its series (a colour key and a label each, from data-series). */
  function makeChart(id) {
    const canvas = byId(id);
    const series = canvas.dataset.series.split(",").map((entry) => {
      const space = entry.indexOf(" ");
      return { color: COLORS[entry.slice(0, space)], label: entry.slice(space + 1),
               dashed: entry.startsWith("limit") };
    });
    return { canvas, series };
  }

  const charts = {
    running: makeChart("chart-running"),
    waiting: makeChart("chart-waiting"),
    throughput: makeChart("chart-throughput"),
    wait: makeChart("chart-wait"),
    run: makeChart("chart-run"),
    rejected: makeChart("chart-rejected"),
    errors: makeChart("chart-errors"),
    timeouts: makeChart("chart-timeouts"),
    memory: makeChart("chart-memory"),
    workers: makeChart("chart-workers"),
  };

  /** A round upper bound for the y axis: 1, 2 or 5 times a power of ten. */
  function niceMaximum(value) {
    if (!(value > 0)) {
      return 1;
    }
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) {
        return step * power;
      }
    }
    return 10 * power;
  }

  function label(value) {
    if (value >= 1000) {
      return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + "k";
    }
    return value >= 10 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1);
  }

  function draw(name, now) {
    const { canvas, series } = charts[name];
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) {
      return;
    }
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const left = 34;
    const top = 14;
    const plotWidth = width - left - 4;
    const plotHeight = height - top - 14;
    const start = now - WINDOW_MS;
    const points = history.filter((sample) => sample.t >= start && sample.values[name]);
    let highest = 0;
    for (const sample of points) {
      for (const value of sample.values[name]) {
        if (Number.isFinite(value)) {
          highest = Math.max(highest, value);
        }
      }
    }
    const topValue = niceMaximum(highest);
    const x = (t) => left + ((t - start) / WINDOW_MS) * plotWidth;
    const y = (value) => top + plotHeight - (Math.min(value, topValue) / topValue) * plotHeight;

    // Axes: a line at 0, half and the top, and the time marks of the window.
    context.font = "10px system-ui, sans-serif";
    context.fillStyle = "#6b7280";
    context.strokeStyle = "#e5e7eb";
    context.lineWidth = 1;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (const fraction of [0, 0.5, 1]) {
      const lineY = Math.round(y(topValue * fraction)) + 0.5;
      context.beginPath();
      context.moveTo(left, lineY);
      context.lineTo(left + plotWidth, lineY);
      context.stroke();
      context.fillText(label(topValue * fraction), left - 4, lineY);
    }
    context.textAlign = "center";
    context.textBaseline = "top";
    for (const minutesAgo of [5, 4, 3, 2, 1, 0]) {
      const markX = x(now - minutesAgo * 60000);
      context.fillText(minutesAgo === 0 ? "now" : "-" + minutesAgo + "m",
                       Math.min(Math.max(markX, left + 8), left + plotWidth - 10), top + plotHeight + 2);
    }

    // Legend, top right.
    context.textAlign = "right";
    context.textBaseline = "alphabetic";
    let legendX = left + plotWidth;
    for (let index = series.length - 1; index >= 0; --index) {
      context.fillStyle = series[index].color;
      context.fillText(series[index].label, legendX, 10);
      legendX -= context.measureText(series[index].label).width + 10;
    }

    // The series.
    series.forEach((line, index) => {
      context.strokeStyle = line.color;
      context.lineWidth = line.dashed ? 1 : 1.6;
      context.setLineDash(line.dashed ? [4, 3] : []);
      context.beginPath();
      let drawing = false;
      for (const sample of points) {
        const value = sample.values[name][index];
        if (!Number.isFinite(value)) {
          drawing = false;
          continue;
        }
        if (drawing) {
          context.lineTo(x(sample.t), y(value));
        } else {
          context.moveTo(x(sample.t), y(value));
          drawing = true;
        }
      }
      context.stroke();
    });
    context.setLineDash([]);
  }

  function drawAll() {
    const now = history.length > 0 ? history[history.length - 1].t : Date.now();
    for (const name of Object.keys(charts)) {
      draw(name, now);
    }
  }

  // --- Snapshots ----------------------------------------------------------------------------

  /** Per second between two snapshots, of a counter found by `get`. */
  function rate(get, current, last, seconds) {
    if (last === null || !(seconds > 0)) {
      return NaN;
    }
    return Math.max(0, get(current) - get(last)) / seconds;
  }

  function showErrors(errors) {
    const body = byId("recent-errors");
    const rows = [];
    for (const error of errors) {
      const row = document.createElement("tr");
      for (const [text, name] of [[error.time, "time"], [error.method, "method"],
                                  [error.path, "path"], [String(error.status), "status"],
                                  [error.message, "message"]]) {
        const cell = document.createElement("td");
        cell.className = name;
        cell.textContent = text;
        row.appendChild(cell);
      }
      rows.push(row);
    }
    if (rows.length === 0) {
      const row = document.createElement("tr");
      const cell = document.createElement("td");
      cell.colSpan = 5;
      cell.className = "subtle";
      cell.textContent = "none";
      row.appendChild(cell);
      rows.push(row);
    }
    body.replaceChildren(...rows);
    setText("recent-error-count", String(errors.length));
  }

  /** Shows one /api/queue-stats answer and adds it to the charts. */
  function onSnapshot(stats) {
    if (stats === null || typeof stats !== "object" || typeof stats.processPool !== "object") {
      return;
    }
    const pool = stats.processPool;
    const queue = stats.queue || {};
    const wait = queue.waitTime || {};
    const run = queue.runTime || {};
    const workers = stats.workers || null;
    const parsed = Date.parse(stats.timestamp);
    const t = Number.isFinite(parsed) ? parsed : Date.now();
    if (previous !== null && t <= previous.t) {
      return; // the same snapshot twice (the stream and a poll crossing)
    }
    const last = previous === null ? null : previous.stats;
    const seconds = previous === null ? 0 : (t - previous.t) / 1000;
    const throughput = rate((s) => s.processPool.totalProcessed, stats, last, seconds);

    setText("running", whole(pool.activeProcesses));
    setText("max-concurrency", whole(pool.maxConcurrency));
    setText("utilization", fixed(pool.utilizationPercent, 1));
    setText("peak-active", whole(pool.peakActive));
    setText("waiting", whole(pool.queuedTasks));
    setText("capacity", whole(queue.capacity));
    setText("peak-queued", whole(pool.peakQueueSize));
    setText("submitted", whole(queue.submitted));
    setText("throughput", fixed(throughput, 1));
    setText("processed", whole(pool.totalProcessed));
    setText("wait-p50", fixed(wait.p50Ms, 1));
    setText("wait-p99", fixed(wait.p99Ms, 1));
    setText("wait-mean", fixed(wait.meanMs, 1));
    setText("wait-max", fixed(wait.maxMs, 1));
    setText("run-p50", fixed(run.p50Ms, 1));
    setText("run-p99", fixed(run.p99Ms, 1));
    setText("run-mean", fixed(run.meanMs, 1));
    setText("run-max", fixed(run.maxMs, 1));
    setText("rejected", whole(queue.rejected));
    setText("expired", whole(queue.expired));
    setText("cancelled", whole(queue.cancelled));
    setText("cleared", whole(queue.cleared));
    setText("errors", whole(pool.totalErrors));
    setText("timeouts", whole(queue.timedOut));
    setText("memory-limit-stops", whole(queue.stoppedAtMemoryLimit));
    setText("held-for-memory", whole(queue.heldForMemory));
    setText("memory-holds", whole(queue.heldForMemoryTotal));
    setText("workers-ready", workers === null ? "–" : whole(workers.ready));
    setText("worker-starts", workers === null ? "–" : whole(workers.starts));
    setText("worker-crashes", workers === null ? "–" : whole(workers.crashes));
    setText("worker-recycles", workers === null ? "–" : whole(workers.recycles));
    setText("mode", typeof queue.mode === "string" ? queue.mode : "–");
    setText("updated", new Date(t).toISOString().slice(11, 19) + " UTC");
    showErrors(Array.isArray(stats.recentErrors) ? stats.recentErrors : []);

    history.push({
      t,
      values: {
        running: [pool.activeProcesses, pool.maxConcurrency],
        waiting: [pool.queuedTasks, queue.capacity],
        throughput: [throughput],
        wait: [wait.p50Ms, wait.p99Ms],
        run: [run.p50Ms, run.p99Ms],
        rejected: [rate((s) => s.queue.rejected, stats, last, seconds),
                   rate((s) => s.queue.expired, stats, last, seconds)],
        errors: [rate((s) => s.processPool.totalErrors, stats, last, seconds)],
        timeouts: [rate((s) => s.queue.timedOut, stats, last, seconds)],
        memory: [queue.heldForMemory],
        workers: [workers === null ? NaN : workers.ready],
      },
    });
    while (history.length > 0 && history[0].t < t - WINDOW_MS) {
      history.shift();
    }
    previous = { t, stats };
    drawAll();
  }

  // --- The feed: the event stream, or polling while it fails ---------------------------------

  let source = null;
  let pollTimer = null;

  function setState(state) {
    const element = byId("connection-state");
    element.dataset.state = state;
    element.textContent = state;
  }

  async function poll() {
    try {
      const response = await fetch("/api/queue-stats", { cache: "no-store" });
      if (!response.ok) {
        throw new Error("status " + response.status);
      }
      onSnapshot(await response.json());
      if (pollTimer !== null) {
        setState("polling");
      }
    } catch (failure) {
      if (pollTimer !== null) {
        setState("offline");
      }
    }
  }

  function startPolling() {
    if (pollTimer !== null) {
      return;
    }
    pollTimer = window.setInterval(poll, POLL_MS);
    setState("polling");
    poll();
  }

  function stopPolling() {
    if (pollTimer !== null) {
      window.clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function connect() {
    source = new EventSource("/api/queue-stats/stream");
    source.addEventListener("open", () => {
      stopPolling();
      setState("live");
    });
    source.addEventListener("message", (event) => {
      let stats = null;
      try {
        stats = JSON.parse(event.data);
      } catch (failure) {
        return;
      }
      onSnapshot(stats);
    });
    // The stream ended (the server ends each after --event-stream-seconds) or failed: poll
    // until the browser's own reconnection opens it again. A stream refused outright (503:
    // too many streams) is closed for good by the browser: it is opened anew later.
    source.addEventListener("error", () => {
      startPolling();
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        window.setTimeout(connect, RECONNECT_MS);
      }
    });
  }

  window.addEventListener("resize", drawAll);
  if (typeof window.EventSource === "function") {
    connect();
  } else {
    startPolling();
  }
})();
