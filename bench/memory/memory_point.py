#!/usr/bin/env python3
"""One point of bench/memory/run_memory_bench.sh: N requests at once against one server, its
process tree's memory sampled throughout.

    python3 bench/memory/memory_point.py --port PORT --pid SERVER_PID --concurrency 100 \
        --target '/api/memory-probe?mb=30&hold_ms=500' \
        [--runaway-target '/api/memory-probe?mb=2048&...'] [--ceiling-mb 4096] \
        [--host-floor-mb 4096] [--interval-ms 25] [--request-timeout 150] [--point-timeout 200]

Starts bench/memory/sampler.py on the server's pid (it takes the idle sample first), opens
CONCURRENCY connections to 127.0.0.1:PORT (200 at a time, so a listen backlog is not what is
measured), then sends one GET on every connection at once (`Connection: close`) and waits for
every answer, each for at most REQUEST_TIMEOUT seconds and all together for at most
POINT_TIMEOUT. With --runaway-target, the request in the middle of the list is that one instead
(the others stay TARGET). Latency is from the request's write to the end of its answer.

Prints one JSON object: the sampler's result (idle, peaks, stopped at the ceiling or not), every
answer by status (or by failure: connection reset when the ceiling stopped the server, timeout,
...), latency percentiles of the 200 answers, and the runaway's status, latency and body.
Standard library only.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "http"))
from hold_connections import read_response  # noqa: E402  (one HTTP/1.1 response reader)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.4999)))
    return sorted_values[rank - 1]


async def run_load(args: argparse.Namespace) -> dict:
    connect_limit = asyncio.Semaphore(200)

    async def connect():
        async with connect_limit:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port, limit=1 << 20), timeout=20)
            except (OSError, asyncio.TimeoutError) as failure:
                return type(failure).__name__

    opened = await asyncio.gather(*(connect() for _ in range(args.concurrency)))
    runaway_index = args.concurrency // 2 if args.runaway_target else -1
    results: list[dict] = [{} for _ in opened]

    async def one(index: int, connection) -> None:
        result = results[index]
        result["runaway"] = index == runaway_index
        if isinstance(connection, str):
            result["failure"] = "connect " + connection
            return
        reader, writer = connection
        target = args.runaway_target if index == runaway_index else args.target
        request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
                   "Connection: close\r\nAccept: application/json\r\n\r\n").encode()
        began = time.monotonic()
        try:
            writer.write(request)
            await writer.drain()
            status, body = await asyncio.wait_for(read_response(reader), args.request_timeout)
            result["status"] = status
            result["latency_ms"] = (time.monotonic() - began) * 1000
            if status != 200 or index == runaway_index:
                result["body"] = body[:600].decode("utf-8", errors="replace")
        except asyncio.TimeoutError:
            result["failure"] = "timeout"
        except asyncio.CancelledError:
            result["failure"] = "point timeout"
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, IndexError) as failure:
            result["failure"] = ("connection closed" if isinstance(failure, asyncio.IncompleteReadError)
                                 else type(failure).__name__)
            result["latency_ms"] = (time.monotonic() - began) * 1000
        finally:
            writer.close()

    started = time.monotonic()
    point_timed_out = False
    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(opened)]
    done, pending = await asyncio.wait(tasks, timeout=args.point_timeout)
    if pending:
        point_timed_out = True
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.monotonic() - started
    for result in results:
        if not result.get("status") and not result.get("failure"):
            result["failure"] = "point timeout"
    return {"results": results, "elapsed_s": round(elapsed, 3), "point_timed_out": point_timed_out}


def summarize(results: list[dict]) -> dict:
    outcomes: dict[str, int] = {}
    bodies: dict[str, str] = {}
    for result in results:
        if result.get("runaway"):
            continue
        key = str(result["status"]) if "status" in result else result["failure"]
        outcomes[key] = outcomes.get(key, 0) + 1
        if key != "200" and key not in bodies and result.get("body"):
            bodies[key] = result["body"][:300]
    latencies = sorted(r["latency_ms"] for r in results
                       if r.get("status") == 200 and not r.get("runaway"))
    return {
        "requests": sum(1 for r in results if not r.get("runaway")),
        "outcomes": outcomes,
        "sample_bodies": bodies,
        "latency_ms_200": {
            "count": len(latencies),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server process")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--target", required=True, help="path and query of every request")
    parser.add_argument("--runaway-target", default="",
                        help="path and query of the one request in the middle")
    parser.add_argument("--ceiling-mb", type=float, default=4096.0)
    parser.add_argument("--host-floor-mb", type=float, default=4096.0)
    parser.add_argument("--interval-ms", type=float, default=25.0)
    parser.add_argument("--request-timeout", type=float, default=150.0)
    parser.add_argument("--point-timeout", type=float, default=200.0)
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds of idle sampling before the requests")
    args = parser.parse_args()

    sampler = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sampler.py"), "--pid", str(args.pid),
         "--interval-ms", str(args.interval_ms), "--ceiling-mb", str(args.ceiling_mb),
         "--host-floor-mb", str(args.host_floor_mb)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if sampler.stdout.readline().strip() != "ready":
            raise SystemExit("sampler did not start")
        time.sleep(args.settle)
        load = asyncio.run(run_load(args))
        sampler.stdin.close()
        memory = json.loads(sampler.stdout.read())
        sampler.wait(timeout=30)
    finally:
        if sampler.poll() is None:
            sampler.kill()
            sampler.wait()

    results = load["results"]
    point = {
        "concurrency": args.concurrency,
        "target": args.target,
        "elapsed_s": load["elapsed_s"],
        "point_timed_out": load["point_timed_out"],
        "request_timeout_s": args.request_timeout,
        "point_timeout_s": args.point_timeout,
        **summarize(results),
        "memory": memory,
    }
    runaway = [r for r in results if r.get("runaway")]
    if runaway:
        point["runaway_target"] = args.runaway_target
        point["runaway"] = runaway[0]
    json.dump(point, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
