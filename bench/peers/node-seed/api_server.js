'use strict';

// The seed's API server: Express, eight endpoints that each run the worker program once per
// request, all through one TaskQueue(4). Re-created for bench/http/ and bench/memory/ (see
// README.md). --no-queue (or --pool-size 0) is the seed's "before": a process per request at once.
//
//   node api_server.js --port 5000 --worker /path/to/schedule_worker --data-dir ./data
//   PORT=5000 WORKER=/path/to/schedule_worker DATA_DIR=./data node api_server.js
//   node api_server.js --no-queue --enable-memory-probe ...

const express = require('express');
const os = require('os');
const path = require('path');
const TaskQueue = require('./task_queue');

function argValue(name) {
  const index = process.argv.indexOf(`--${name}`);
  return index !== -1 && index + 1 < process.argv.length ? process.argv[index + 1] : undefined;
}

const PORT = Number(argValue('port') || process.env.PORT || 5000);
const HOST = argValue('host') || process.env.HOST || '127.0.0.1';
const WORKER = path.resolve(argValue('worker') || process.env.WORKER || 'schedule_worker');
const DATA_DIR = path.resolve(argValue('data-dir') || process.env.DATA_DIR || 'data');
function argFlag(name) {
  return process.argv.includes(`--${name}`);
}

// 0 (or --no-queue): no bound, every request starts its process at once.
const POOL_SIZE = argFlag('no-queue')
  ? 0
  : Number(argValue('pool-size') || process.env.POOL_SIZE || 4);
// GET /api/memory-probe runs the worker's memory_probe (bench/memory/); off unless asked for.
const ENABLE_MEMORY_PROBE = argFlag('enable-memory-probe') || process.env.ENABLE_MEMORY_PROBE === '1';

const app = express();
app.use(express.json({ limit: '10mb' }));

if (!Number.isInteger(POOL_SIZE) || POOL_SIZE < 0) {
  console.error(`[Server] --pool-size must be a whole number, 0 for no limit (got ${POOL_SIZE})`);
  process.exit(2);
}

// Create queue (max 4 processes; 0: no limit)
const pythonQueue = new TaskQueue(POOL_SIZE, { command: WORKER });

// Runs one worker operation through the queue and answers with its JSON.
async function runWorker(operation, request) {
  const output = await pythonQueue.execute(
    ['--data-dir', DATA_DIR, operation],
    JSON.stringify(request)
  );
  return JSON.parse(output);
}

// The worker's exit status says what went wrong: 2 invalid input, 3 not found.
function sendError(res, error) {
  let status = 500;
  if (error.exitCode === 2) status = 400;
  else if (error.exitCode === 3) status = 404;
  else if (error.message === 'Server shutting down') status = 503;

  let body;
  try {
    body = JSON.parse(error.stdout);
  } catch (parseError) {
    body = { status: 'error', message: error.message };
  }
  res.status(status).json(body);
}

function queryNumber(value) {
  return value === undefined ? undefined : Number(value);
}

// --- Schedules -----------------------------------------------------------------------------

app.post('/api/import-schedule', async (req, res) => {
  try {
    const result = await runWorker('import-schedule', req.body || {});
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

app.post('/api/schedule-playlist', async (req, res) => {
  try {
    const result = await runWorker('schedule-playlist', req.body || {});
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/schedules', async (req, res) => {
  try {
    const result = await runWorker('schedules', {});
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/playlists', async (req, res) => {
  try {
    const result = await runWorker('playlists', {});
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/export-schedule-xml', async (req, res) => {
  try {
    const result = await runWorker('export-schedule-xml', { id: queryNumber(req.query.id) });
    res.type('application/xml').send(result.xml);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/export-schedule-json', async (req, res) => {
  try {
    const result = await runWorker('export-schedule-json', { id: queryNumber(req.query.id) });
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/export-all-schedules-xml', async (req, res) => {
  try {
    const result = await runWorker('export-all-schedules-xml', {});
    res.type('application/xml').send(result.xml);
  } catch (error) {
    sendError(res, error);
  }
});

app.get('/api/infowars-videos', async (req, res) => {
  try {
    const result = await runWorker('infowars-videos', {
      offset: queryNumber(req.query.offset),
      limit: queryNumber(req.query.limit),
    });
    res.json(result);
  } catch (error) {
    sendError(res, error);
  }
});

// --- Memory probe (bench/memory/) -----------------------------------------------------------

if (ENABLE_MEMORY_PROBE) {
  app.get('/api/memory-probe', async (req, res) => {
    try {
      const result = await runWorker('memory_probe', {
        megabytes: queryNumber(req.query.mb),
        hold_ms: queryNumber(req.query.hold_ms),
        step_megabytes: queryNumber(req.query.step_mb),
        step_ms: queryNumber(req.query.step_ms),
      });
      res.json(result);
    } catch (error) {
      sendError(res, error);
    }
  });
}

// --- Monitoring ----------------------------------------------------------------------------

app.get('/api/queue-stats', (req, res) => {
  res.json({
    status: 'success',
    processPool: pythonQueue.getStats(),
    timestamp: new Date().toISOString(),
  });
});

app.get('/api/system-info', (req, res) => {
  const memory = process.memoryUsage();
  res.json({
    status: 'success',
    system: {
      hostname: os.hostname(),
      platform: os.platform(),
      release: os.release(),
      arch: os.arch(),
      cpus: os.cpus().length,
      totalMemory: os.totalmem(),
      freeMemory: os.freemem(),
      uptimeSeconds: Math.round(os.uptime()),
      loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100),
    },
    server: {
      node: process.version,
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      poolSize: pythonQueue.maxConcurrency,
      residentKiB: Math.round(memory.rss / 1024),
      heapUsedKiB: Math.round(memory.heapUsed / 1024),
    },
    timestamp: new Date().toISOString(),
  });
});

// --- Startup and shutdown ------------------------------------------------------------------

const server = app.listen(PORT, HOST, () => {
  const address = server.address();
  console.log(`[Server] API server listening on http://${address.address}:${address.port}`);
  console.log(`[Server] Worker: ${WORKER}`);
  console.log(`[Server] Data folder: ${DATA_DIR}`);
  if (pythonQueue.maxConcurrency === 0) {
    console.log('[Server] No process queue: one process per request, no limit');
  } else {
    console.log(`[Server] Process queue: max ${pythonQueue.maxConcurrency} concurrent processes`);
  }
  if (ENABLE_MEMORY_PROBE) console.log('[Server] GET /api/memory-probe enabled');
});

process.on('SIGTERM', () => {
  const cleared = pythonQueue.clearQueue('Server shutting down');
  console.log(`[Server] Cleared ${cleared} pending tasks`);
  // Running tasks are allowed to finish; then the server exits.
  server.close(() => {
    console.log('[Server] Stopped');
    process.exit(0);
  });
  setTimeout(() => process.exit(0), 10000).unref();
});
