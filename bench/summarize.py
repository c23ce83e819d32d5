#!/usr/bin/env python3
"""Summarize bench/queue_bench.cpp's Google Benchmark JSON as Markdown tables and an SVG chart.

    python3 bench/summarize.py bench/results/queue.json > bench/results/queue.md
    python3 bench/summarize.py bench/results/queue.json --svg docs/images/queue-bench.svg

Tables:
- BM_FireAndForget, BM_Futures: for each family and producer count, library, median ns per task,
  median items/s, the spread across repetitions (coefficient of variation of ns per task, when
  the run had repetitions), and the ratio to btq (lib_ns / btq_ns: above 1 means btq is faster).
- BM_MixedLoad (btq only): ns per task of each variant and its ratio to `plain` (target 1.10);
  the `…10` variants give every 10th task options, `rate` none (the queue has a rate limit).
- BM_TrySubmitRefused: ns per refused call against the 50 ns target (btq's forms).
- BM_SubmitToStart: p50, p99 and mean submit-to-start latency, and p50, p99 over cv_pool's.
- BM_MemoryPerWaiter: btq's heap bytes per waiter.
- Targets: each says met or missed and by how much.
Medians come from the `median` aggregates; a run without repetitions (no aggregates) is
summarized from its single runs instead. The chart (--svg) has median ns per task against
producers, one line per library, for fire-and-forget and futures side by side; it is drawn by
bench/svg_chart.py. Standard library only.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import svg_chart  # noqa: E402  (bench/svg_chart.py, shared with bench/http/summarize_http.py)

THROUGHPUT_FAMILIES = ("BM_FireAndForget", "BM_Futures")
MIXED_FAMILY = "BM_MixedLoad"
REFUSED_FAMILY = "BM_TrySubmitRefused"
LATENCY_FAMILY = "BM_SubmitToStart"
MEMORY_FAMILY = "BM_MemoryPerWaiter"
REFERENCE = "btq"

MIXED_PLAIN = "plain"
MIXED_VARIANTS = ["plain", "priority10", "deadline10", "stop10", "key10", "weight10",
                  "rate"]  # registration order
# Variants where no task carries options: the queue itself is set up differently.
MIXED_QUEUE_LEVEL = {"rate": "a rate limit that never holds a start back"}
MIXED_TARGET = 1.10
REFUSED_TARGET_NS = 50.0
LATENCY_BASELINE = "cv_pool"
# Existing families: (family, peers, limit on btq_ns / peer_ns); several peers = the best of them.
RATIO_TARGETS = (
    ("BM_FireAndForget", ("cv_pool",), 1.00),
    ("BM_FireAndForget", ("tbb",), 1.25),
    ("BM_Futures", ("thread_pool", "asio", "std_async"), 1.00),
)

# The chart's libraries, in legend order.
LIBRARIES = ["btq", "cv_pool", "tbb", "asio", "thread_pool", "std_async"]
LABELS = {"btq": "btq", "cv_pool": "cv pool", "tbb": "oneTBB", "asio": "Boost.Asio",
          "thread_pool": "thread_pool", "std_async": "std::async"}
COLORS = {"btq": "#d95f02", "cv_pool": "#1b9e77", "tbb": "#7570b3", "asio": "#e7298a",
          "thread_pool": "#66a61e", "std_async": "#a6761d"}


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


def fmt_cv(cv, counter):
    return f"{100.0 * cv[counter]:.1f}%" if cv and counter in cv else "-"


def ratio(value, reference):
    return value / reference if reference else None


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}"


def verdict(value, limit, unit=""):
    """'met (0.93 ≤ 1.00, 7.0% under)' or 'missed by 12.0% (1.12 > 1.00)'; a limit is a maximum."""
    if value is None:
        return "no data"
    shown = f"{fmt_ns(value)} {unit}".strip() if unit else f"{value:.2f}"
    bound = f"{fmt_ns(limit)} {unit}".strip() if unit else f"{limit:.2f}"
    margin = 100.0 * abs(value - limit) / limit
    if value <= limit:
        return f"**met** ({shown} ≤ {bound}, {margin:.1f}% under)"
    return f"**missed** by {margin:.1f}% ({shown} > {bound})"


def family_runs(medians, cvs, family, counter):
    """{name part after the family (a tuple): (median run, cv run)} for runs that have `counter`."""
    return {key[1:]: (run, cvs.get(key)) for key, run in medians.items()
            if key[0] == family and counter in run}


def by_producers(medians, family):
    """{producers: {library: median ns per task}} of a throughput family."""
    grouped = defaultdict(dict)
    for (lib, producers), (run, _) in family_runs(medians, {}, family, "ns_per_task").items():
        grouped[int(producers)][lib] = run["ns_per_task"]
    return grouped


def plural(producers):
    return f"{producers} producer{'s' if producers != 1 else ''}"


def table(title, columns, rows):
    """A Markdown table under a heading; `columns` are names, ':' at the end aligns right."""
    if not rows:
        return []
    lines = [f"### {title}", "",
             "| " + " | ".join(name.rstrip(":") for name in columns) + " |",
             "| " + " | ".join("---:" if name.endswith(":") else "---" for name in columns) + " |"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    lines.append("")
    return lines


def throughput_tables(medians, cvs):
    lines = []
    for family in THROUGHPUT_FAMILIES:
        grouped = defaultdict(list)
        for (lib, producers), (run, cv) in family_runs(medians, cvs, family, "ns_per_task").items():
            grouped[int(producers)].append((lib, run, cv))
        for producers in sorted(grouped):
            runs = sorted(grouped[producers], key=lambda row: row[1]["ns_per_task"])
            reference = next((run["ns_per_task"] for lib, run, _ in runs if lib == REFERENCE), None)
            rows = []
            for lib, run, cv in runs:
                ns = run["ns_per_task"]
                items = run.get("items_per_second", 1e9 / ns if ns else 0.0)
                rows.append([f"**{lib}**" if lib == REFERENCE else lib, fmt_ns(ns),
                             fmt_rate(items), fmt_cv(cv, "ns_per_task"),
                             fmt_ratio(ratio(ns, reference))])
            lines.extend(table(f"{family}, {plural(producers)}",
                               ["library", "median ns/task:", "items/s:", "CV:",
                                "vs btq (lib_ns / btq_ns):"], rows))
    return lines


def variant_rank(variant):
    return (MIXED_VARIANTS.index(variant) if variant in MIXED_VARIANTS else len(MIXED_VARIANTS),
            variant)


def mixed_rows(medians, cvs):
    """[(variant, producers, ns, cv, ratio to plain)] by producers, then variant."""
    runs = family_runs(medians, cvs, MIXED_FAMILY, "ns_per_task")
    rows = []
    for (variant, producers), (run, cv) in runs.items():
        plain = runs.get((MIXED_PLAIN, producers))
        rows.append((variant, int(producers), run["ns_per_task"], cv,
                     ratio(run["ns_per_task"], plain[0]["ns_per_task"]) if plain else None))
    rows.sort(key=lambda row: (row[1], variant_rank(row[0])))
    return rows


def mixed_table(medians, cvs):
    rows = [[variant, producers, fmt_ns(ns), fmt_cv(cv, "ns_per_task"), fmt_ratio(vs_plain)]
            for variant, producers, ns, cv, vs_plain in mixed_rows(medians, cvs)]
    queue_level = "; ".join(f"`{name}`: {what}" for name, what in MIXED_QUEUE_LEVEL.items())
    return table(f"{MIXED_FAMILY} (btq; every 10th task with options; {queue_level})",
                 ["variant", "producers:", "median ns/task:", "CV:",
                  f"vs plain (target ≤ {MIXED_TARGET:.2f}):"], rows)


def refused_table(medians, cvs):
    runs = family_runs(medians, cvs, REFUSED_FAMILY, "ns_per_call")
    rows = []
    for (lib,), (run, cv) in sorted(runs.items(), key=lambda kv: kv[1][0]["ns_per_call"]):
        ns = run["ns_per_call"]
        rows.append([lib, fmt_ns(ns), fmt_cv(cv, "ns_per_call"),
                     verdict(ns, REFUSED_TARGET_NS, "ns") if lib.startswith(REFERENCE) else "-"])
    return table(f"{REFUSED_FAMILY} (full queue, one thread)",
                 ["library", "median ns/call:", "CV:", f"vs target {REFUSED_TARGET_NS:g} ns"], rows)


def latency_table(medians, cvs):
    runs = family_runs(medians, cvs, LATENCY_FAMILY, "p50_ns")
    baseline = runs.get((LATENCY_BASELINE,), ({}, None))[0]
    rows = []
    for (lib,), (run, cv) in sorted(runs.items(), key=lambda kv: kv[1][0]["p50_ns"]):
        rows.append([f"**{lib}**" if lib == REFERENCE else lib, fmt_ns(run["p50_ns"]),
                     fmt_ns(run["p99_ns"]), fmt_ns(run.get("mean_ns", 0.0)), fmt_cv(cv, "p50_ns"),
                     fmt_ratio(ratio(run["p50_ns"], baseline.get("p50_ns"))),
                     fmt_ratio(ratio(run["p99_ns"], baseline.get("p99_ns")))])
    return table(f"{LATENCY_FAMILY} (idle pool, one producer)",
                 ["library", "p50 ns:", "p99 ns:", "mean ns:", "CV of p50:",
                  f"p50 vs {LATENCY_BASELINE}:", f"p99 vs {LATENCY_BASELINE}:"], rows)


def targets_table(medians, cvs):
    rows = []
    for family, peers, limit in RATIO_TARGETS:
        grouped = by_producers(medians, family)
        what = (f"{family}: btq_ns / {peers[0]}_ns ≤ {limit:.2f}" if len(peers) == 1
                else f"{family}: btq_ns / best peer's ns ≤ {limit:.2f}")
        for producers in sorted(grouped):
            libs = grouped[producers]
            present = [peer for peer in peers if peer in libs]
            best = min(present, key=libs.get) if present else None
            value = ratio(libs[REFERENCE], libs[best]) if best and REFERENCE in libs else None
            measured = (f"{fmt_ns(libs[REFERENCE])} vs {best} {fmt_ns(libs[best])} ns/task"
                        if value is not None else "-")
            rows.append([what, producers, measured, verdict(value, limit)])
    refused = family_runs(medians, cvs, REFUSED_FAMILY, "ns_per_call").get((REFERENCE,))
    if refused:
        ns = refused[0]["ns_per_call"]
        rows.append([f"{REFUSED_FAMILY}/btq ≤ {REFUSED_TARGET_NS:g} ns", 1, f"{fmt_ns(ns)} ns/call",
                     verdict(ns, REFUSED_TARGET_NS, "ns")])
    for variant, producers, ns, _, vs_plain in sorted(mixed_rows(medians, cvs),
                                                      key=lambda row: variant_rank(row[0])):
        if variant != MIXED_PLAIN:
            rows.append([f"{MIXED_FAMILY}/{variant}: ns / plain ns ≤ {MIXED_TARGET:.2f}", producers,
                         f"{fmt_ns(ns)} ns/task", verdict(vs_plain, MIXED_TARGET)])
    return table("Targets", ["target", "producers:", "measured", "verdict"], rows)


def memory_table(medians):
    rows = [[key[1], f"{run['bytes_per_waiter']:.1f}"] for key, run in sorted(medians.items())
            if len(key) == 2 and key[0] == MEMORY_FAMILY and "bytes_per_waiter" in run]
    return table(f"{MEMORY_FAMILY} (btq, 1,000,000 waiters in a paused queue)",
                 ["submit form", "median bytes per waiter:"], rows)


def describe_run(context):
    """Date, CPUs, host and load average at the start of the run."""
    load_avg = ", ".join(f"{value:.2f}" for value in context.get("load_avg", []))
    return (f"{context.get('date', '')}, {context.get('num_cpus', '?')} CPUs "
            f"({context.get('host_name', '?')}), load average at start {load_avg or '?'}")


def markdown(context, medians, cvs, has_aggregates):
    lines = ["# btq queue benchmarks", ""]
    lines.append(describe_run(context) + ". Empty tasks, 2 worker threads; "
                 "each throughput iteration submits a batch split across the producers and waits "
                 "for all of it (std_async: one thread per task, batch of 2,000). "
                 + ("Medians over repetitions; CV = stddev / mean across them."
                    if has_aggregates else "One run each (no repetitions, so no medians)."))
    lines.append("")
    lines.extend(targets_table(medians, cvs))
    lines.extend(throughput_tables(medians, cvs))
    lines.extend(mixed_table(medians, cvs))
    lines.extend(refused_table(medians, cvs))
    lines.extend(latency_table(medians, cvs))
    lines.extend(memory_table(medians))
    return "\n".join(lines).rstrip() + "\n"


def svg(context, medians, has_aggregates):
    width, height = 800, 480
    panel_w, panel_h = width / 2, height - 50 - 40
    subtitle = [("medians of repetitions" if has_aggregates else "one run, no repetitions"),
                f"{context.get('date', '?')[:10]}, {context.get('num_cpus', '?')} CPUs"]
    if context.get("load_avg"):
        subtitle.append(f"load average {context['load_avg'][0]:.2f} at start")
    out = svg_chart.header(
        width, height, "btq vs other task runners: wall-clock ns per empty task (2 workers)",
        "; ".join(subtitle))
    for column, (family, title) in enumerate((("BM_FireAndForget", "fire-and-forget"),
                                              ("BM_Futures", "with a std::future"))):
        series = defaultdict(list)
        for producers, libs in sorted(by_producers(medians, family).items()):
            for lib, ns in libs.items():
                series[lib].append((producers, ns))
        out.extend(svg_chart.panel(column * panel_w, 50, panel_w, panel_h, title,
                                   "median ns per task" if has_aggregates else "ns per task",
                                   series, x_label="producer threads",
                                   order=LIBRARIES, labels=LABELS, colors=COLORS,
                                   x_unit="producers"))
    step = 120
    out.extend(svg_chart.legend(LIBRARIES, LABELS, COLORS, x=(width - step * len(LIBRARIES)) / 2 + 10,
                                y=height - 14, step=step))
    return svg_chart.footer(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="bench/results/queue.json")
    parser.add_argument("--svg", help="write the chart here (e.g. docs/images/queue-bench.svg)")
    args = parser.parse_args()
    context, medians, cvs, has_aggregates = load(args.results)
    sys.stdout.write(markdown(context, medians, cvs, has_aggregates))
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as handle:
            handle.write(svg(context, medians, has_aggregates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
