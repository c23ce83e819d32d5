#!/usr/bin/env python3
"""Summarize bench/run_fairness_bench.sh's runs (one JSON object a line) as a Markdown table.

    python3 bench/fairness/summarize_fairness.py bench/results/fairness.jsonl > bench/results/fairness.md

One row per library and mode: the light key's time from its submit to its first task's start
and to its last (10th) task's start, the time until every task finished (medians, min–max over
the repetitions), the ratio of each median to btq keyed's (above 1: btq keyed is sooner), each
task's mean measured run time (a 1 ms sleep lasts longer than 1 ms, by a different amount in
each runtime), the most tasks seen running at once, and when the light key really submitted.
Standard library only.
"""

import argparse
import json
import statistics
import sys

REFERENCE = ("btq", "keyed")
# Row order: btq first, then the peers; within a library, modes in reverse alphabetical order
# (btq keyed before fifo, bottleneck's larger maxConcurrent first).
LIBRARY_ORDER = ["btq", "p-queue", "bottleneck"]
LABELS = {
    ("btq", "keyed"): "btq, `.key` heavy / light",
    ("btq", "fifo"): "btq, no keys (FIFO)",
    ("p-queue", "fifo"): "p-queue, no keys (FIFO)",
}


def label(library, mode):
    return LABELS.get((library, mode), f"{library}, {mode}")


def load(path):
    runs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    return runs


def fmt_ms(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(values):
    """'median (min–max)' of a list of ms."""
    return f"{fmt_ms(statistics.median(values))} ({fmt_ms(min(values))}–{fmt_ms(max(values))})"


def fmt_ratio(value, reference):
    if not reference:
        return "-"
    ratio = value / reference
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2f}"


def summarize(runs):
    groups = {}
    for run in runs:
        groups.setdefault((run["library"], run["mode"]), []).append(run)
    order = sorted(groups, key=lambda key: key[1], reverse=True)
    order.sort(key=lambda key: LIBRARY_ORDER.index(key[0]) if key[0] in LIBRARY_ORDER
               else len(LIBRARY_ORDER))

    def medians(key):
        rows = groups[key]
        return [statistics.median(run[field] for run in rows)
                for field in ("light_first_start_ms", "light_last_start_ms", "total_ms")]

    reference = medians(REFERENCE) if REFERENCE in groups else None
    first = runs[0]
    lines = [
        "# Per-key fairness: a light key's wait behind a heavy key's flood",
        "",
        f"Concurrency {first['concurrency']} in all; the heavy key submits {first['heavy']:,} "
        f"tasks of a {first['task_ms']:g} ms timer, {first['delay_ms']:g} ms later the light key "
        f"submits {first['light']}. Times from the light key's submit (its first and last task's "
        "start) and from the first heavy submit (total), in ms: median (min–max) of "
        f"{min(len(rows) for rows in groups.values())} interleaved repetitions. "
        "Ratio = median / btq keyed's median (first start / last start / total).",
        "",
        "| library, mode | light: first start ms | light: "
        f"{first['light']}th start ms | total ms | vs btq keyed (first / {first['light']}th / "
        "total) | mean task run ms | most running | light submitted at ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in order:
        rows = groups[key]
        first_start, last_start, total = medians(key)
        ratios = (" / ".join(fmt_ratio(value, ref) for value, ref in
                             zip((first_start, last_start, total), reference))
                  if reference else "-")
        name = label(*key)
        lines.append("| " + " | ".join([
            f"**{name}**" if key == REFERENCE else name,
            spread([run["light_first_start_ms"] for run in rows]),
            spread([run["light_last_start_ms"] for run in rows]),
            spread([run["total_ms"] for run in rows]),
            ratios,
            f"{statistics.median(run['task_run_ms_mean'] for run in rows):.3f}",
            str(max(run["peak_active"] for run in rows)),
            fmt_ms(statistics.median(run["light_submitted_ms"] for run in rows)),
        ]) + " |")
    failed = sum(run.get("failed", 0) for run in runs)
    if failed:
        lines.extend(["", f"**{failed} task(s) failed** across the runs."])
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="bench/results/fairness.jsonl")
    args = parser.parse_args()
    runs = load(args.results)
    if not runs:
        print("no runs in " + args.results, file=sys.stderr)
        return 1
    sys.stdout.write(summarize(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
