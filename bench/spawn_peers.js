#!/usr/bin/env node
// Spawn throughput of Node's child_process, the peer of bench/spawn_bench.cpp.
//
//   node bench/spawn_peers.js                       # 400 spawns, 5 repetitions, C = 1 and 4
//   node bench/spawn_peers.js --spawns 200 --repetitions 3 --concurrency 1,2,4,8
//
// Each repetition runs `/bin/true` N times the way the seed service runs its tools:
// child_process.spawn(program) with the default stdio (three pipes, as btq::subprocess_executor
// uses), and a spawn counts as done on the child's 'close' event (exited and its pipes closed).
// Up to C spawns are in flight at once: C async workers each await one child at a time and take
// the next spawn from a shared counter.
//
// Prints one JSON line per concurrency, in the shape bench/summarize_spawn.py reads:
//
//   {"name": "BM_Spawn/node_child_process/1", "us_per_spawn": <median>, "spawns_per_second": ...,
//    "best_us_per_spawn": <min>, "reps": [<us_per_spawn of each repetition>], ...}
//
// Wall-clock microseconds per spawn, over the whole repetition. The repetitions of the different
// concurrencies alternate. No npm packages.
'use strict';

const { spawn } = require('child_process');

const PROGRAM = '/bin/true';
const NAME = 'node_child_process';

function usage(message) {
    process.stderr.write(`spawn_peers.js: ${message}\n` +
        'usage: node spawn_peers.js [--spawns N] [--repetitions R] [--concurrency 1,4]\n');
    process.exit(2);
}

function parseArguments(argv) {
    const options = { spawns: 400, repetitions: 5, concurrency: [1, 4] };
    for (let i = 0; i < argv.length; i += 1) {
        let [flag, value] = argv[i].split('=', 2);
        if (value === undefined) {
            i += 1;
            value = argv[i];
        }
        if (value === undefined) {
            usage(`${flag} needs a value`);
        }
        if (flag === '-n' || flag === '--spawns') {
            options.spawns = Number(value);
        } else if (flag === '-r' || flag === '--repetitions') {
            options.repetitions = Number(value);
        } else if (flag === '-c' || flag === '--concurrency') {
            options.concurrency = value.split(',').filter((s) => s.trim() !== '').map(Number);
        } else {
            usage(`unknown argument ${flag}`);
        }
    }
    const positive = (n) => Number.isInteger(n) && n >= 1;
    if (!positive(options.spawns) || !positive(options.repetitions) ||
        options.concurrency.length === 0 || !options.concurrency.every(positive)) {
        usage('--spawns, --repetitions and every --concurrency value must be positive integers');
    }
    return options;
}

/** Resolves once the child has exited and its stdio is closed; rejects unless it exited 0. */
function spawnOnce() {
    return new Promise((resolve, reject) => {
        const child = spawn(PROGRAM);
        child.on('error', reject);
        child.on('close', (code, signal) => {
            if (code === 0) {
                resolve();
            } else {
                reject(new Error(`${PROGRAM} ended with code ${code}, signal ${signal}`));
            }
        });
    });
}

/** Runs `spawns` children with at most `concurrency` in flight; returns wall nanoseconds. */
async function runBatch(spawns, concurrency) {
    let next = 0;
    const worker = async () => {
        while (next < spawns) {
            next += 1;
            await spawnOnce();
        }
    };
    const start = process.hrtime.bigint();
    await Promise.all(Array.from({ length: Math.min(concurrency, spawns) }, worker));
    return Number(process.hrtime.bigint() - start);
}

function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main() {
    const options = parseArguments(process.argv.slice(2));
    await runBatch(20, 1); // warm-up: page cache, the libuv spawn path, JIT
    // Repetitions outermost: a burst of load from elsewhere hits every concurrency alike.
    const reps = new Map(options.concurrency.map((concurrency) => [concurrency, []]));
    for (let rep = 0; rep < options.repetitions; rep += 1) {
        for (const concurrency of options.concurrency) {
            const ns = await runBatch(options.spawns, concurrency);
            reps.get(concurrency).push(ns / 1e3 / options.spawns);
        }
    }
    for (const concurrency of options.concurrency) {
        const us = median(reps.get(concurrency));
        process.stdout.write(JSON.stringify({
            name: `BM_Spawn/${NAME}/${concurrency}`,
            us_per_spawn: us,
            spawns_per_second: 1e6 / us,
            best_us_per_spawn: Math.min(...reps.get(concurrency)),
            reps: reps.get(concurrency),
            spawns: options.spawns,
            runtime: `Node ${process.version}`,
        }) + '\n');
    }
}

main().catch((error) => {
    process.stderr.write(`spawn_peers.js: ${error.stack || error}\n`);
    process.exit(1);
});
