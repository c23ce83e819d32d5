#!/usr/bin/env python3
"""Samples the memory of a server and all its descendants until told to stop; stops the server at
a ceiling.

    python3 bench/memory/sampler.py --pid SERVER_PID [--interval-ms 25] [--ceiling-mb 4096]

Started by bench/memory/memory_point.py with a pipe on standard input. It takes one sample, prints
"ready", and then samples every INTERVAL ms (or as fast as a sample allows, when the tree is large)
until its standard input closes; then it prints one JSON object with the peaks and exits.

A sample: every descendant of PID from /proc/*/stat (proctree.py), and for PID and each living
descendant (zombies are counted apart: they hold no memory) Pss and Rss from
/proc/PID/smaps_rollup. The total is the sum of Pss: a page shared by n processes of the tree (the
worker program's code, a forked child's copy-on-write pages, libraries) counts 1/n in each, so
the total is the memory the tree uses together. The sum of Rss, which counts a shared page once
per process, is recorded too. A child whose Rss is past 64 MiB also has its VmHWM read, so a
runaway's peak between two samples is not missed.

When the total Pss passes CEILING MB, the whole tree is killed at once (proctree.kill_tree) and
the result says so: that point stands for the seed's "Crash". The same happens when the machine's
MemAvailable falls below --host-floor-mb, whatever this tree's total (the reason is recorded).
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

    started = time.monotonic()
    peak = {"pss_kib": 0, "rss_kib": 0, "children": 0, "zombies": 0, "server_pss_kib": 0,
            "child_rss_kib": 0}
    idle: dict | None = None
    child_peaks: dict[int, int] = {}  # pid -> largest Rss or VmHWM seen
    children_seen: set[int] = set()
    timeline: list[list[float]] = []
    durations: list[float] = []
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
        table = proctree.process_table()
        tree = proctree.descendants(root, table)
        living = [pid for pid in tree if table.get(pid, (0, "Z"))[1] != "Z"]
        server_rss, server_pss = proctree.memory_kib(root) if root in table else (0, 0)
        total_rss, total_pss = server_rss, server_pss
        over = host_short()
        for pid in living:
            if over:
                break
            rss, pss = proctree.memory_kib(pid)
            total_rss += rss
            total_pss += pss
            # Past the ceiling already: stop now, not after reading every other child.
            over = total_pss > ceiling_kib
            children_seen.add(pid)
            if rss > 64 * 1024:
                rss = max(rss, proctree.high_water_kib(pid))
            if rss > child_peaks.get(pid, 0):
                child_peaks[pid] = rss
        now = time.monotonic() - started
        samples += 1
        if idle is None:
            idle = {"pss_kib": total_pss, "rss_kib": total_rss, "children": len(living),
                    "server_pss_kib": server_pss}
        peak["pss_kib"] = max(peak["pss_kib"], total_pss)
        peak["rss_kib"] = max(peak["rss_kib"], total_rss)
        peak["children"] = max(peak["children"], len(living))
        peak["zombies"] = max(peak["zombies"], len(tree) - len(living))
        peak["server_pss_kib"] = max(peak["server_pss_kib"], server_pss)
        if samples % args.timeline_every == 1 or total_pss > ceiling_kib:
            timeline.append([round(now, 3), total_pss, len(living)])
        if stopped is None and (over or total_pss > ceiling_kib):
            killed = proctree.kill_tree(root)
            stopped = {"at_s": round(now, 3), "pss_kib": total_pss, "children": len(living),
                       "killed": killed,
                       "reason": "ceiling" if total_pss > ceiling_kib else "host memory low"}
        durations.append(time.monotonic() - began)

    sample()
    print("ready", flush=True)
    interval = args.interval_ms / 1000.0
    while True:
        wait = max(0.0, interval - durations[-1])
        readable, _, _ = select.select([sys.stdin], [], [], wait)
        if readable and not sys.stdin.readline():
            break
        sample()
    sample()

    if child_peaks:
        largest = max(child_peaks, key=child_peaks.get)
        peak["child_rss_kib"] = child_peaks[largest]
    durations.sort()
    result = {
        "measure": "sum of Pss (smaps_rollup) of the server and its living descendants",
        "interval_ms": args.interval_ms,
        "ceiling_mb": args.ceiling_mb,
        "samples": samples,
        "sample_ms_median": round(durations[len(durations) // 2] * 1000, 2),
        "sample_ms_max": round(durations[-1] * 1000, 2),
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
