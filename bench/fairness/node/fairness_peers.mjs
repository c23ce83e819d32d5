// The npm side of bench/run_fairness_bench.sh: the scenario of bench/fairness/fairness_bench.cpp
// (a heavy key floods the queue, a light key submits later; how soon do the light tasks start?)
// on p-queue and on bottleneck's Group, with tasks that wait on a timer.
//
//   node fairness_peers.mjs --library p-queue
//   node fairness_peers.mjs --library bottleneck --max-per-key 4
//   options: --heavy 2000 --light 10 --task-ms 1 --delay-ms 20 --concurrency 4
//
// p-queue: one PQueue({concurrency}), no keys (p-queue has none): the light tasks join the FIFO.
// bottleneck: a Bottleneck.Group, one limiter per key made on first use, each with maxConcurrent
// --max-per-key (default: --concurrency). A Group shares no bound across its limiters: with two
// keys the total may be twice --max-per-key.
// Prints one JSON object, the same fields as btq_bench_fairness.

import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { createRequire } from "node:module";
import PQueue from "p-queue";

const require = createRequire(import.meta.url);
const Bottleneck = require("bottleneck");

function parse(argv) {
  const out = {
    library: "", heavy: 2000, light: 10, taskMs: 1, delayMs: 20, concurrency: 4, maxPerKey: 0,
  };
  const numbers = {
    "--heavy": "heavy", "--light": "light", "--task-ms": "taskMs", "--delay-ms": "delayMs",
    "--concurrency": "concurrency", "--max-per-key": "maxPerKey",
  };
  for (let at = 0; at < argv.length; at += 2) {
    const [name, value] = [argv[at], argv[at + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === "--library") {
      out.library = value;
    } else if (name in numbers) {
      const number = Number(value);
      if (!Number.isFinite(number) || number < 0) throw new Error(`${name} wants a number`);
      out[numbers[name]] = number;
    } else {
      throw new Error(`unknown option ${name}`);
    }
  }
  if (out.library !== "p-queue" && out.library !== "bottleneck") {
    throw new Error("--library is p-queue or bottleneck");
  }
  if (out.maxPerKey === 0) out.maxPerKey = out.concurrency;
  return out;
}

/// submit(key, task) -> Promise for each library, and what it is called in the table.
function makeRunner(given) {
  if (given.library === "p-queue") {
    const queue = new PQueue({ concurrency: given.concurrency });
    return { mode: "fifo", submit: (_key, task) => queue.add(task) };
  }
  const group = new Bottleneck.Group({ maxConcurrent: given.maxPerKey });
  return {
    mode: `Group, maxConcurrent ${given.maxPerKey} per key (up to ${2 * given.maxPerKey} with two keys)`,
    submit: (key, task) => group.key(key).schedule(task),
  };
}

async function main() {
  const given = parse(process.argv.slice(2));
  const tasks = given.heavy + given.light;
  const started = new Float64Array(tasks);
  const ended = new Float64Array(tasks);
  let running = 0;
  let peakActive = 0;
  const runner = makeRunner(given);

  const origin = performance.now();
  const task = (index) => async () => {
    started[index] = performance.now() - origin;
    peakActive = Math.max(peakActive, ++running);
    await sleep(given.taskMs);
    --running;
    ended[index] = performance.now() - origin;
  };
  const done = [];
  for (let i = 0; i < given.heavy; ++i) done.push(runner.submit("heavy", task(i)));
  await sleep(Math.max(0, given.delayMs - (performance.now() - origin)));
  const lightSubmitted = performance.now() - origin;
  for (let i = given.heavy; i < tasks; ++i) done.push(runner.submit("light", task(i)));
  const outcomes = await Promise.allSettled(done);
  const total = performance.now() - origin;

  let lightFirst = Infinity;
  let lightLast = 0;
  let runSum = 0;
  for (let i = 0; i < tasks; ++i) {
    runSum += ended[i] - started[i];
    if (i >= given.heavy) {
      lightFirst = Math.min(lightFirst, started[i]);
      lightLast = Math.max(lightLast, started[i]);
    }
  }
  const failed = outcomes.filter((outcome) => outcome.status === "rejected").length;
  const round = (value, digits = 3) => Number(value.toFixed(digits));
  process.stdout.write(JSON.stringify({
    library: given.library,
    mode: runner.mode,
    concurrency: given.concurrency,
    heavy: given.heavy,
    light: given.light,
    task_ms: given.taskMs,
    delay_ms: given.delayMs,
    light_submitted_ms: round(lightSubmitted),
    light_first_start_ms: round(lightFirst - lightSubmitted),
    light_last_start_ms: round(lightLast - lightSubmitted),
    total_ms: round(total),
    task_run_ms_mean: round(runSum / tasks, 4),
    peak_active: peakActive,
    failed,
  }) + "\n");
  // Bottleneck's Group keeps a timer for idle limiters (unref'd); exit without waiting for it.
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((error) => {
  process.stderr.write(`fairness_peers.mjs: ${error.stack ?? error}\n`);
  process.exit(2);
});
