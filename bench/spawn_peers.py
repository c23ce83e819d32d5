#!/usr/bin/env python3
"""Spawn throughput of Python's subprocess module, the peer of bench/spawn_bench.cpp.

    python3 bench/spawn_peers.py                      # 400 spawns, 5 repetitions, C = 1 and 4
    python3 bench/spawn_peers.py --spawns 200 --repetitions 3 --concurrency 1,2,4,8

Each repetition runs `/bin/true` N times with `subprocess.run(["/bin/true"], ...)`, the way a
Python service runs a tool: the call blocks until the child has exited, and its output is
captured through pipes (capture_output=True, stdin from /dev/null), which is also what
btq::subprocess_executor does. With C > 1, C threads run that loop side by side and share the N
spawns (subprocess releases the GIL while it waits), so at most C children are alive at once.

Prints one JSON line per concurrency, in the shape bench/summarize_spawn.py reads:

    {"name": "BM_Spawn/python_subprocess/1", "us_per_spawn": <median>, "spawns_per_second": ...,
     "best_us_per_spawn": <min>, "reps": [<us_per_spawn of each repetition>], ...}

Wall-clock microseconds per spawn, over the whole repetition. The repetitions of the different
concurrencies alternate. Standard library only.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time

PROGRAM = "/bin/true"
NAME = "python_subprocess"


def spawn_once():
    result = subprocess.run([PROGRAM], stdin=subprocess.DEVNULL, capture_output=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{PROGRAM} exited with {result.returncode}")


def run_batch(spawns, concurrency):
    """Runs `spawns` children with at most `concurrency` alive; returns wall seconds."""
    if concurrency == 1:
        start = time.perf_counter()
        for _ in range(spawns):
            spawn_once()
        return time.perf_counter() - start

    shares = [spawns // concurrency + (1 if i < spawns % concurrency else 0)
              for i in range(concurrency)]
    errors = []
    go = threading.Barrier(concurrency + 1)

    def worker(count):
        go.wait()
        try:
            for _ in range(count):
                spawn_once()
        except Exception as error:  # pylint: disable=broad-except
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(count,)) for count in shares]
    for thread in threads:
        thread.start()
    go.wait()  # every thread is up: start the clock with the spawning
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def concurrency_list(text):
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", "--spawns", type=int, default=400, help="spawns per repetition")
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    parser.add_argument("-c", "--concurrency", type=concurrency_list, default=[1, 4],
                        help="comma-separated children in flight (default 1,4)")
    args = parser.parse_args()
    if args.spawns < 1 or args.repetitions < 1:
        parser.error("--spawns and --repetitions must be at least 1")

    for _ in range(20):  # warm-up: page cache, allocator, the subprocess module's first use
        spawn_once()

    # Repetitions outermost: a burst of load from elsewhere hits every concurrency alike.
    reps = {concurrency: [] for concurrency in args.concurrency}
    for _ in range(args.repetitions):
        for concurrency in args.concurrency:
            elapsed = run_batch(args.spawns, concurrency)
            reps[concurrency].append(elapsed * 1e6 / args.spawns)

    for concurrency in args.concurrency:
        median = statistics.median(reps[concurrency])
        print(json.dumps({
            "name": f"BM_Spawn/{NAME}/{concurrency}",
            "us_per_spawn": median,
            "spawns_per_second": 1e6 / median,
            "best_us_per_spawn": min(reps[concurrency]),
            "reps": reps[concurrency],
            "spawns": args.spawns,
            "runtime": f"Python {platform.python_version()}",
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
