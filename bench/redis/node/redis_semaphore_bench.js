#!/usr/bin/env node
// The npm redis-semaphore package (with ioredis) measured as btq_bench_redis measures
// btq::redis_permits (bench/redis/redis_bench.cpp): the same scenarios, the same JSON fields.
// bench/redis/run_redis_bench.sh installs the packages (npm install in this folder) and runs it.
//
//   node redis_semaphore_bench.js --port P [--host 127.0.0.1] [--samples 2000] [--processes 4]
//       [--waiters 64] [--duration-ms 5000] [--wake-rounds 150] [--hold-ms 5] [--kills 5]
//       [--kill-ttl-ms 1000] [--retry-interval-ms 10]
//
// redis-semaphore's own defaults are kept (lockTimeout 10 s, refreshInterval 0.8 x lockTimeout,
// retryInterval 10 ms: a waiter polls), except acquireTimeout: 60 s instead of 10 s, so that no
// waiter of the contended runs gives up; --retry-interval-ms changes the polling period.
// Every Semaphore is a permit holder (one identifier); each waiter has its own, as the package
// is meant to be used. Times from process.hrtime.bigint() (CLOCK_MONOTONIC, the clock of the C++
// side too).
//
// Scenarios:
// - uncontended: one Semaphore, one acquire at a time. acquire = acquire() called -> resolved;
//   release = release() called -> resolved (its ZREM answered: the permit is off the server's
//   set); cycle = both.
// - contended: `processes` child processes, each one ioredis client and `waiters` async loops of
//   acquire, (empty task), release, for `duration-ms`; N = 1 and N = 16.
// - wake: two child processes, N = 1, strict alternation; the holder stamps t0 and calls release(),
//   the waiter (polling since hold-ms + a random 0-10 ms before) stamps t1 when acquire() resolves.
// - recovery: lockTimeout = kill-ttl-ms; a child holds the permit, the parent waits for it, the
//   child gets SIGKILL; recovery = kill -> the parent's acquire() resolves.
'use strict';

const { fork } = require('node:child_process');
const { setMaxListeners } = require('node:events');
const Redis = require('ioredis');
const { Semaphore } = require('redis-semaphore');

const now = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parse(argv) {
  const given = {};
  for (let at = 0; at + 1 < argv.length; at += 2) given[argv[at]] = argv[at + 1];
  const int = (name, fallback) => (name in given ? Number.parseInt(given[name], 10) : fallback);
  if (!('--port' in given)) {
    throw new Error('usage: redis_semaphore_bench.js --port P [--host H] [...]');
  }
  return {
    role: given['--role'] || 'main',
    host: given['--host'] || '127.0.0.1',
    port: int('--port', 0),
    samples: int('--samples', 2000),
    processes: int('--processes', 4),
    waiters: int('--waiters', 64),
    durationMs: int('--duration-ms', 5000),
    wakeRounds: int('--wake-rounds', 150),
    holdMs: int('--hold-ms', 5),
    kills: int('--kills', 5),
    killTtlMs: int('--kill-ttl-ms', 1000),
    retryIntervalMs: int('--retry-interval-ms', 10),
    limit: int('--limit', 1),
  };
}

const config = parse(process.argv.slice(2));
const ACQUIRE_TIMEOUT_MS = 60000;
let leaving = false;
/// A child's goodbye: closes its channel to the harness.
function leave() {
  leaving = true;
  process.disconnect();
}

function semaphoreOptions(extra = {}) {
  return { acquireTimeout: ACQUIRE_TIMEOUT_MS, retryInterval: config.retryIntervalMs, ...extra };
}

/// An ioredis client whose commands are counted (one command sent, one reply: a round trip).
function countedClient() {
  const client = new Redis({ host: config.host, port: config.port, lazyConnect: false });
  client.sentCommands = 0;
  const send = client.sendCommand.bind(client);
  client.sendCommand = (command, stream) => {
    client.sentCommands += 1;
    return send(command, stream);
  };
  return client;
}

/// Nearest-rank percentiles of nanosecond samples (BigInt or Number), in microseconds.
function summaryUs(samples) {
  if (samples.length === 0) return null;
  const sorted = samples.map(Number).sort((a, b) => a - b);
  const rank = (q) => sorted[Math.min(Math.floor(q * sorted.length), sorted.length - 1)] / 1000;
  const round = (value) => Math.round(value * 10) / 10;
  const mean = sorted.reduce((sum, value) => sum + value, 0) / sorted.length / 1000;
  return {
    n: sorted.length,
    p50: round(rank(0.5)),
    p99: round(rank(0.99)),
    p999: round(rank(0.999)),
    mean: round(mean),
    max: round(sorted[sorted.length - 1] / 1000),
  };
}

const round3 = (value) => Math.round(value * 1000) / 1000;

/// The server's command calls (INFO excluded; those run inside scripts included) and CPU time.
async function serverCounts(client) {
  const text = (await client.info('commandstats')) + (await client.info('cpu'));
  let commands = 0;
  let cpuSeconds = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('used_cpu_sys:') || line.startsWith('used_cpu_user:')) {
      cpuSeconds += Number.parseFloat(line.slice(line.indexOf(':') + 1));
    }
    if (!line.startsWith('cmdstat_') || line.startsWith('cmdstat_info:')) continue;
    const match = /calls=(\d+)/.exec(line);
    if (match) commands += Number.parseInt(match[1], 10);
  }
  return { commands, cpuSeconds };
}

function perGrant(before, after, grants) {
  return {
    server_commands_per_grant: round3((after.commands - before.commands) / grants),
    server_cpu_us_per_grant: Math.round(((after.cpuSeconds - before.cpuSeconds) * 1e8) / grants) / 100,
  };
}

/// A child process of this script in `role`; messages come back through `onMessage`.
function child(role, extra = []) {
  const args = process.argv.slice(2).filter((_, at, all) => all[at - (at % 2)] !== '--role');
  return fork(__filename, [...args, '--role', role, ...extra], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
}

function nextMessage(worker, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type === type) {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(message);
      }
    };
    const onExit = (code) => reject(new Error(`child exited (${code}) before sending ${type}`));
    worker.on('message', onMessage);
    worker.on('exit', onExit);
  });
}

// ---- uncontended ------------------------------------------------------------------------------

async function uncontended() {
  const client = countedClient();
  const probe = new Redis({ host: config.host, port: config.port });
  const semaphore = new Semaphore(client, 'bench-uncontended', 16, semaphoreOptions());
  const acquire = [];
  const release = [];
  const cycle = [];
  const warmUp = 50;
  let acquireTrips = 0;
  let releaseTrips = 0;
  let before = null;
  for (let round = 0; round < warmUp + config.samples; round += 1) {
    if (round === warmUp) before = await serverCounts(probe);
    const trips0 = client.sentCommands;
    const t0 = now();
    await semaphore.acquire();
    const t1 = now();
    const trips1 = client.sentCommands;
    await semaphore.release();
    const t2 = now();
    if (round >= warmUp) {
      acquire.push(t1 - t0);
      release.push(t2 - t1);
      cycle.push(t2 - t0);
      acquireTrips += trips1 - trips0;
      releaseTrips += client.sentCommands - trips1;
    }
  }
  const after = await serverCounts(probe);
  client.disconnect();
  probe.disconnect();
  return {
    samples: config.samples,
    acquire_us: summaryUs(acquire),
    release_us: summaryUs(release),
    cycle_us: summaryUs(cycle),
    round_trips_per_acquire: round3(acquireTrips / config.samples),
    round_trips_per_release: round3(releaseTrips / config.samples),
    ...perGrant(before, after, config.samples),
  };
}

// ---- contended and saturation -----------------------------------------------------------------

async function contendChild() {
  const client = countedClient();
  const key = `bench-contended-${config.limit}`;
  const warm = new Semaphore(client, key, config.limit, semaphoreOptions());
  await warm.acquire();
  await warm.release();
  process.send({ type: 'ready' });
  const { goAt } = await new Promise((resolve) => process.once('message', resolve));
  const start = BigInt(goAt);
  const end = start + BigInt(config.durationMs) * 1000000n;
  while (now() < start) await sleep(1);
  const stop = new AbortController();
  setMaxListeners(config.waiters + 10, stop.signal); // every waiter listens to it
  const trips0 = client.sentCommands;
  const acquire = [];
  const release = [];
  let grants = 0;
  let inWindow = 0;
  let timeouts = 0;
  const loop = async () => {
    const semaphore = new Semaphore(client, key, config.limit, semaphoreOptions());
    while (now() < end) {
      const t0 = now();
      try {
        await semaphore.acquire(stop.signal);
      } catch (error) {
        if (stop.signal.aborted) return;
        timeouts += 1;
        continue;
      }
      const t1 = now();
      grants += 1;
      if (t1 < end) {
        inWindow += 1;
        acquire.push(Number(t1 - t0));
      }
      const t2 = now(); // the task: empty
      await semaphore.release();
      if (t1 < end) release.push(Number(now() - t2));
    }
  };
  const loops = Array.from({ length: config.waiters }, loop);
  const timer = setTimeout(() => stop.abort(), Number(end - now()) / 1e6);
  await Promise.all(loops);
  clearTimeout(timer);
  process.send({
    type: 'done',
    acquire,
    release,
    grants,
    inWindow,
    timeouts,
    trips: client.sentCommands - trips0,
  }, leave);
  client.disconnect();
}

async function contended(limit) {
  const probe = new Redis({ host: config.host, port: config.port });
  const workers = Array.from({ length: config.processes }, () => child('contend', ['--limit', String(limit)]));
  const done = workers.map((worker) => nextMessage(worker, 'done'));
  await Promise.all(workers.map((worker) => nextMessage(worker, 'ready')));
  const before = await serverCounts(probe);
  const goAt = now() + 20000000n;
  for (const worker of workers) worker.send({ goAt: goAt.toString() });
  const results = await Promise.all(done);
  const after = await serverCounts(probe);
  await Promise.all(workers.map((worker) => new Promise((resolve) => (worker.exitCode !== null ? resolve() : worker.once('exit', resolve)))));
  probe.disconnect();
  const grants = results.reduce((sum, one) => sum + one.grants, 0);
  const inWindow = results.reduce((sum, one) => sum + one.inWindow, 0);
  return {
    limit,
    processes: config.processes,
    waiters_per_process: config.waiters,
    duration_s: config.durationMs / 1000,
    grants,
    grants_per_s: round3(inWindow / (config.durationMs / 1000)),
    acquire_us: summaryUs(results.flatMap((one) => one.acquire)),
    release_us: summaryUs(results.flatMap((one) => one.release)),
    ...perGrant(before, after, grants),
    client_round_trips_per_grant: round3(results.reduce((sum, one) => sum + one.trips, 0) / grants),
    grants_per_process: results.map((one) => one.inWindow),
    acquire_timeouts: results.reduce((sum, one) => sum + one.timeouts, 0),
  };
}

// ---- wake latency -----------------------------------------------------------------------------

async function wakeChild() {
  const client = countedClient();
  const semaphore = new Semaphore(client, 'bench-wake', 1, semaphoreOptions());
  process.on('message', async (message) => {
    if (message.type === 'acquire') {
      await semaphore.acquire();
      process.send({ type: 'acquired', at: now().toString() });
    } else if (message.type === 'release') {
      const at = now();
      await semaphore.release();
      process.send({ type: 'released', at: at.toString() });
    } else if (message.type === 'count') {
      client.disconnect();
      process.send({ type: 'count', trips: client.sentCommands }, leave);
    }
  });
  process.send({ type: 'ready' });
}

async function wakeLatency() {
  const probe = new Redis({ host: config.host, port: config.port });
  const workers = [child('wake'), child('wake')];
  await Promise.all(workers.map((worker) => nextMessage(worker, 'ready')));
  const before = await serverCounts(probe);
  const grants = 2 * config.wakeRounds;
  const wake = [];
  let random = 12345;
  const jitter = () => {
    random = (random * 1103515245 + 12345) % 2147483648;
    return (random / 2147483648) * 10;
  };
  let acquired = nextMessage(workers[0], 'acquired');
  workers[0].send({ type: 'acquire' });
  await acquired;
  for (let grant = 1; grant < grants; grant += 1) {
    const waiter = workers[grant % 2];
    const holder = workers[1 - (grant % 2)];
    acquired = nextMessage(waiter, 'acquired');
    waiter.send({ type: 'acquire' });
    await sleep(config.holdMs + jitter()); // the waiter polls meanwhile
    const released = nextMessage(holder, 'released');
    holder.send({ type: 'release' });
    const [granted, freed] = await Promise.all([acquired, released]);
    wake.push(BigInt(granted.at) - BigInt(freed.at));
  }
  const last = workers[(grants - 1) % 2];
  const freed = nextMessage(last, 'released');
  last.send({ type: 'release' });
  await freed;
  const after = await serverCounts(probe);
  let trips = 0;
  for (const worker of workers) {
    const counted = nextMessage(worker, 'count');
    worker.send({ type: 'count' });
    trips += (await counted).trips;
  }
  probe.disconnect();
  return {
    hold_ms: config.holdMs,
    wake_us: summaryUs(wake),
    ...perGrant(before, after, grants),
    client_round_trips_per_grant: round3(trips / grants),
  };
}

// ---- recovery after a holder's SIGKILL --------------------------------------------------------

async function holderChild() {
  const client = new Redis({ host: config.host, port: config.port });
  const semaphore = new Semaphore(client, 'bench-recovery', 1, semaphoreOptions({ lockTimeout: config.killTtlMs }));
  await semaphore.acquire();
  process.send({ type: 'acquired' });
  setInterval(() => {}, 1000); // holds (and refreshes) until SIGKILL
}

async function recovery() {
  const client = new Redis({ host: config.host, port: config.port });
  const recoveryMs = [];
  const leftMs = [];
  const afterExpiryMs = [];
  for (let round = 0; round < config.kills; round += 1) {
    const holder = child('holder');
    await nextMessage(holder, 'acquired');
    const semaphore = new Semaphore(client, 'bench-recovery', 1, semaphoreOptions({ lockTimeout: config.killTtlMs }));
    let grantedAt = null;
    const waiting = semaphore.acquire().then(() => {
      grantedAt = now();
    });
    await sleep(config.killTtlMs / 2 + (config.killTtlMs * round) / 7);
    // Its score is the holder's last acquire or refresh time (the client's clock, ms): the entry
    // expires lockTimeout after it.
    const first = await client.zrange('semaphore:bench-recovery', 0, 0, 'WITHSCORES') // the package's key;
    const left = first.length === 2 ? Number(first[1]) + config.killTtlMs - Date.now() : -1;
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    const killed = now();
    holder.kill('SIGKILL');
    await exited;
    await waiting;
    const took = Number(grantedAt - killed) / 1e6;
    recoveryMs.push(round3(took));
    leftMs.push(round3(left));
    afterExpiryMs.push(round3(took - left));
    await semaphore.release();
  }
  client.disconnect();
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  return {
    ttl_ms: config.killTtlMs,
    kills: config.kills,
    recovery_ms: recoveryMs,
    median_ms: median(recoveryMs),
    max_ms: Math.max(...recoveryMs),
    lease_left_at_kill_ms: leftMs,
    after_expiry_ms: afterExpiryMs,
    after_expiry_median_ms: median(afterExpiryMs),
  };
}

// ---- main -------------------------------------------------------------------------------------

async function main() {
  // A child whose harness died (the channel closed before it said goodbye) leaves at once.
  if (config.role !== 'main') process.on('disconnect', () => leaving || process.exit(1));
  if (config.role === 'contend') return contendChild();
  if (config.role === 'wake') return wakeChild();
  if (config.role === 'holder') return holderChild();
  const version = require('redis-semaphore/package.json').version;
  const out = {
    library: `redis-semaphore ${version}`,
    settings: {
      samples: config.samples,
      processes: config.processes,
      waiters_per_process: config.waiters,
      duration_ms: config.durationMs,
      lock_timeout_ms: 10000,
      refresh_interval_ms: 8000,
      retry_interval_ms: config.retryIntervalMs,
      acquire_timeout_ms: ACQUIRE_TIMEOUT_MS,
      kill_ttl_ms: config.killTtlMs,
    },
  };
  const log = (what) => process.stderr.write(`redis-semaphore (retryInterval ${config.retryIntervalMs} ms): ${what}\n`);
  log('uncontended');
  out.uncontended = await uncontended();
  log('contended, N = 1');
  out.contended = [await contended(1)];
  log('contended, N = 16');
  out.contended.push(await contended(16));
  log('wake latency');
  out.wake = await wakeLatency();
  log('recovery after SIGKILL');
  out.recovery = await recovery();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`redis_semaphore_bench: ${error.stack || error}\n`);
  process.exit(1);
});
