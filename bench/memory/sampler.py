#!/usr/bin/env python3
"""Samples the memory of a server and all its descendants until told to stop; stops the server at
a ceiling.

    python3 bench/memory/sampler.py --pid SERVER_PID [--interval-ms 25] [--ceiling-mb 4096] \
        [--host-floor-mb 4096]

Started by bench/memory/memory_point.py with a pipe on standard input. It takes one sample (the
idle one), prints "ready", and then samples every INTERVAL ms until its standard input closes;
then it prints one JSON object with the peaks and exits.

A sample: every descendant of PID from /proc/*/stat (proctree.py), and for PID and each living
descendant (zombies are counted apart: they hold no memory) its resident size from
/proc/PID/statm. The total is the sum of VmRSS, what ps and top show a process to have: every
page it has in memory. A page several processes map (the worker program's code, a library) is
counted in each of them, so the total is an upper bound of what the tree uses together; the sum
of the private part (resident minus file-backed and shared pages) is recorded beside it, a lower
bound. Pss (smaps_rollup) would divide shared pages exactly, but reading it walks every page
table: at a thousand 30 MB workers one sample would take half a second. A child past 64 MiB also
has its VmHWM read, so a runaway's peak between two samples is not missed.

A thousand runnable children on two cores leave a normal process a thousandth of them: the
sampler would wait seconds for its turn, and both the peaks and the ceiling would be late. So it
asks for SCHED_RR (the lowest real-time priority; as root, or with CAP_SYS_NICE) and, if that is
refused, for nice -10, then keeps what it has; the result says which. It sleeps at least half an
interval between samples, whatever a sample costs, so it never takes a core for itself.

When the total passes CEILING MB, the whole tree is killed at once (proctree.kill_tree) and the
result says so: that point stands for the seed's "Crash". The same happens when the machine's
MemAvailable falls below HOST_FLOOR MB, whatever this tree's total (the reason is recorded).
Standard library only.
"""

import argparse
import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proctree  # noqa: E402


def raise_priority() -> str:
    """SCHED_RR priority 1 if allowed, else nice -10 if allowed; says which it got."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return "SCHED_RR 1"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "normal"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="the server process")
    parser.add_argument("--interval-ms", type=float, default=25.0)
    parser.add_argument("--ceiling-mb", type=float, default=4096.0)
    parser.add_argument("--host-floor-mb", type=float, default=4096.0,
                        help="also stop when the machine's MemAvailable falls below this")
    parser.add_argument("--timeline-every", type=int, default=4,
                        help="keep every Nth sample in the timeline")
    args = parser.parse_args()
    root = args.pid
    ceiling_kib = args.ceiling_mb * 1024
    priority = raise_priority()

    started = time.monotonic()
    peak = {"rss_kib": 0, "private_kib": 0, "children": 0, "zombies": 0, "server_rss_kib": 0,
            "child_rss_kib": 0}
    idle: dict | None = None
    child_peaks: dict[int, int] = {}  # pid -> largest VmRSS or VmHWM seen
    children_seen: set[int] = set()
    timeline: list[list[float]] = []
    durations: list[float] = []
    starts: list[float] = []
    stopped = None
    samples = 0

    def host_short() -> bool:
        """True when the whole machine has less than --host-floor-mb available: a second guard,
        independent of this tree's accounting, for a machine shared with others."""
        for line in proctree._read("/proc/meminfo").split(b"\n"):
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) < args.host_floor_mb * 1024
        return False

    def sample() -> None:
        nonlocal idle, stopped, samples
        began = time.monotonic()
        starts.append(began)
        table = proctree.process_table()
        tree = proctree.descendants(root, table)
        living = [pid for pid in tree if table.get(pid, (0, "Z"))[1] != "Z"]
        server_rss, server_shared = proctree.memory_kib(root) if root in table else (0, 0)
        total_rss, total_private = server_rss, server_rss - server_shared
        for pid in living:
            rss, shared = proctree.memory_kib(pid)
            total_rss += rss
            total_private += rss - shared
            children_seen.add(pid)
            if rss > 64 * 1024:
                rss = max(rss, proctree.high_water_kib(pid))
            if rss > child_peaks.get(pid, 0):
                child_peaks[pid] = rss
        now = time.monotonic() - started
        samples += 1
        if idle is None:
            idle = {"rss_kib": total_rss, "private_kib": total_private, "children": len(living),
                    "server_rss_kib": server_rss}
        peak["rss_kib"] = max(peak["rss_kib"], total_rss)
        peak["private_kib"] = max(peak["private_kib"], total_private)
        peak["children"] = max(peak["children"], len(living))
        peak["zombies"] = max(peak["zombies"], len(tree) - len(living))
        peak["server_rss_kib"] = max(peak["server_rss_kib"], server_rss)
        over = total_rss > ceiling_kib
        if samples % args.timeline_every == 1 or over:
            timeline.append([round(now, 3), total_rss, len(living)])
        if stopped is None and (over or host_short()):
            killed = proctree.kill_tree(root)
            stopped = {"at_s": round(now, 3), "rss_kib": total_rss, "children": len(living),
                       "killed": killed, "reason": "ceiling" if over else "host memory low"}
        durations.append(time.monotonic() - began)

    sample()
    print("ready", flush=True)
    interval = args.interval_ms / 1000.0
    while True:
        wait = max(interval / 2, interval - durations[-1])
        readable, _, _ = select.select([sys.stdin], [], [], wait)
        if readable and not sys.stdin.readline():
            break
        sample()
    sample()

    if child_peaks:
        peak["child_rss_kib"] = max(child_peaks.values())
    durations.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:-1])]  # the last one waited for the stop
    result = {
        "measure": "sum of VmRSS (statm) of the server and its living descendants",
        "interval_ms": args.interval_ms,
        "priority": priority,
        "ceiling_mb": args.ceiling_mb,
        "samples": samples,
        "sample_ms_median": round(durations[len(durations) // 2] * 1000, 2),
        "sample_ms_max": round(durations[-1] * 1000, 2),
        "gap_ms_max": round(max(gaps, default=0) * 1000, 2),
        "idle": idle,
        "peak": peak,
        "children_seen": len(children_seen),
        "stopped_at_ceiling": stopped,
        "timeline": timeline,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
