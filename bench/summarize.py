#!/usr/bin/env python3
"""Summarize bench/queue_bench.cpp's Google Benchmark JSON as Markdown tables.

    python3 bench/summarize.py bench/results/queue.json > bench/results/queue.md

For each benchmark family (BM_FireAndForget, BM_Futures) and producer count, one table:
library, median ns per task, median items/s, the spread across repetitions (coefficient of
variation of ns per task, when the run had repetitions), and the ratio to btq
(lib_ns / btq_ns: above 1 means btq is faster). Then a table of btq's heap bytes per waiter
(BM_MemoryPerWaiter). Medians come from the `median` aggregates; a run without repetitions
(no aggregates) is summarized from its single iteration runs instead. Standard library only.
"""

import json
import sys
from collections import defaultdict

THROUGHPUT_FAMILIES = ("BM_FireAndForget", "BM_Futures")
MEMORY_FAMILY = "BM_MemoryPerWaiter"
REFERENCE = "btq"


def split_name(run_name):
    """'BM_Futures/btq/2/real_time' -> ['BM_Futures', 'btq', '2'] (drops runner suffixes)."""
    parts = run_name.split("/")
    return [p for p in parts if p not in ("real_time", "manual_time") and ":" not in p]


def load(path):
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    runs = data.get("benchmarks", [])
    has_aggregates = any(r.get("run_type") == "aggregate" for r in runs)
    medians, cvs = {}, {}
    for run in runs:
        if run.get("error_occurred"):
            continue
        key = tuple(split_name(run.get("run_name", run["name"])))
        if has_aggregates:
            if run.get("run_type") != "aggregate":
                continue
            if run.get("aggregate_name") == "median":
                medians[key] = run
            elif run.get("aggregate_name") == "cv":
                cvs[key] = run
        else:
            medians.setdefault(key, run)
    return data.get("context", {}), medians, cvs, has_aggregates


def fmt_ns(value):
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def fmt_rate(value):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"


def throughput_tables(medians, cvs):
    # family -> producers -> [(library, run)]
    grouped = defaultdict(lambda: defaultdict(list))
    for key, run in medians.items():
        if len(key) == 3 and key[0] in THROUGHPUT_FAMILIES and "ns_per_task" in run:
            grouped[key[0]][int(key[2])].append((key[1], run, cvs.get(key)))
    lines = []
    for family in THROUGHPUT_FAMILIES:
        for producers in sorted(grouped.get(family, {})):
            rows = grouped[family][producers]
            rows.sort(key=lambda row: row[1]["ns_per_task"])
            reference = next((run for lib, run, _ in rows if lib == REFERENCE), None)
            lines.append(f"### {family}, {producers} producer{'s' if producers != 1 else ''}")
            lines.append("")
            lines.append("| library | median ns/task | items/s | CV | vs btq (lib_ns / btq_ns) |")
            lines.append("| --- | ---: | ---: | ---: | ---: |")
            for lib, run, cv in rows:
                ns = run["ns_per_task"]
                items = run.get("items_per_second", 1e9 / ns if ns else 0.0)
                spread = f"{100.0 * cv['ns_per_task']:.1f}%" if cv and "ns_per_task" in cv else "-"
                if reference is not None and reference["ns_per_task"] > 0:
                    ratio = f"{ns / reference['ns_per_task']:.2f}"
                else:
                    ratio = "-"
                name = f"**{lib}**" if lib == REFERENCE else lib
                lines.append(f"| {name} | {fmt_ns(ns)} | {fmt_rate(items)} | {spread} | {ratio} |")
            lines.append("")
    return lines


def memory_table(medians):
    rows = [(key[1], run) for key, run in sorted(medians.items())
            if len(key) == 2 and key[0] == MEMORY_FAMILY and "bytes_per_waiter" in run]
    if not rows:
        return []
    lines = [f"### {MEMORY_FAMILY} (btq, 1,000,000 waiters in a paused queue)", "",
             "| submit form | median bytes per waiter |", "| --- | ---: |"]
    for form, run in rows:
        lines.append(f"| {form} | {run['bytes_per_waiter']:.1f} |")
    lines.append("")
    return lines


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} RESULTS.json", file=sys.stderr)
        return 2
    context, medians, cvs, has_aggregates = load(argv[1])
    lines = ["# btq queue benchmarks", ""]
    host = context.get("host_name", "?")
    cpus = context.get("num_cpus", "?")
    lines.append(f"{context.get('date', '')}, {cpus} CPUs ({host}). Empty tasks, 2 worker threads; "
                 "each iteration submits a batch split across the producers and waits for all of it "
                 "(std_async: one thread per task, batch of 2,000). "
                 + ("Medians over repetitions; CV = stddev / mean of ns/task across them."
                    if has_aggregates else "One run each (no repetitions, so no medians)."))
    lines.append("")
    lines.extend(throughput_tables(medians, cvs))
    lines.extend(memory_table(medians))
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
