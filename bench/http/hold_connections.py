#!/usr/bin/env python3
"""The memory point of bench/http/run_http_bench.sh: many keep-alive connections, one request each.

    python3 bench/http/hold_connections.py --port 5000 --pid SERVER_PID \
        [--connections 1000] [--path /api/schedules] [--hold 1.0] [--timeout 120]

Opens CONNECTIONS keep-alive connections to 127.0.0.1:PORT, then sends one GET PATH on every one
at once, so the server's queue fills (a bounded queue answers the overflow with 503; an unbounded
one keeps every request waiting). While the requests are outstanding, and for HOLD seconds after
the last answer with every connection still open, it samples every 50 ms:

- the server's resident memory (VmRSS of the server process only), and
- its children (the worker processes): how many, and the sum of their VmRSS.

Prints one JSON object: the peaks, the server's RSS when idle and with the connections open but
no request sent, the answers by status code, how many connections were still open at the end,
and the time until the last answer. Standard library only.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memory"))
import proctree  # noqa: E402  (bench/memory/proctree.py)


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """The direct children of pid, from every process's parent in /proc/*/stat (this kernel has
    no /proc/PID/task/*/children)."""
    return [child for child, (parent, _) in proctree.process_table().items() if parent == pid]


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_server_kib = 0
        self.peak_workers_kib = 0
        self.peak_workers = 0
        self.samples = 0

    def sample(self) -> None:
        self.samples += 1
        self.peak_server_kib = max(self.peak_server_kib, rss_kib(self.pid))
        kids = children(self.pid)
        total = sum(rss_kib(child) for child in kids)
        self.peak_workers_kib = max(self.peak_workers_kib, total)
        self.peak_workers = max(self.peak_workers, len(kids))

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            self.sample()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
        self.sample()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Reads one HTTP/1.1 response (Content-Length, chunked, or up to the close); returns
    (status, body). Also used by bench/memory/memory_point.py."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, bytes(body)
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    return status, await reader.read()


async def main_async(args: argparse.Namespace) -> dict:
    sampler = Sampler(args.pid)
    idle_kib = rss_kib(args.pid)

    # Open every connection first (a few hundred at a time, so a listen backlog is not what is
    # being measured), then send the requests together.
    connect_limit = asyncio.Semaphore(200)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        async with connect_limit:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port), timeout=20)
            except (OSError, asyncio.TimeoutError):
                return None

    opened = await asyncio.gather(*(connect() for _ in range(args.connections)))
    connections = [c for c in opened if c is not None]
    await asyncio.sleep(0.3)
    connected_kib = rss_kib(args.pid)

    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               "Connection: keep-alive\r\nAccept: application/json\r\n\r\n").encode()
    statuses: dict[str, int] = {}
    bodies: dict[str, str] = {}
    failures: dict[str, int] = {}
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop, args.interval))
    started = time.monotonic()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(request)
            await writer.drain()
            status, body = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, IndexError) as failure:
            key = type(failure).__name__
            failures[key] = failures.get(key, 0) + 1
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status != 200 and str(status) not in bodies:
            bodies[str(status)] = body[:300].decode("utf-8", errors="replace")

    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(*(one(r, w) for r, w in connections)),
                               timeout=args.timeout)
    except asyncio.TimeoutError:
        timed_out = True
    last_answer_s = time.monotonic() - started
    await asyncio.sleep(args.hold)  # every connection still open, the queue drained
    stop.set()
    await sampling
    held_kib = rss_kib(args.pid)
    still_open = sum(1 for reader, _ in connections if not reader.at_eof())
    for _, writer in connections:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in connections), return_exceptions=True)

    return {
        "connections_requested": args.connections,
        "connections_opened": len(connections),
        "connections_open_at_end": still_open,
        "path": args.path,
        "statuses": statuses,
        "failures": failures,
        "sample_bodies": bodies,
        "timed_out": timed_out,
        "last_answer_s": round(last_answer_s, 3),
        "server_rss_idle_kib": idle_kib,
        "server_rss_connected_kib": connected_kib,
        "server_rss_peak_kib": sampler.peak_server_kib,
        "server_rss_after_kib": held_kib,
        "workers_rss_peak_kib": sampler.peak_workers_kib,
        "workers_peak_count": sampler.peak_workers,
        "samples": sampler.samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server process")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--path", default="/api/schedules")
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
