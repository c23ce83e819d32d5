#!/usr/bin/env python3
"""Summarize the spawn benchmarks as Markdown tables.

    python3 bench/summarize_spawn.py bench/results/spawn.json bench/results/spawn_peers.jsonl \
        > bench/results/spawn.md

Inputs: the Google Benchmark JSON of bench/spawn_bench.cpp (BM_SpawnPair/<C>, BM_Spawn/<lib>/<C>,
BM_SpawnBigHeap/<lib>/4), and optionally the JSON lines of bench/spawn_peers.py and
bench/spawn_peers.js (BM_Spawn/python_subprocess/<C>, BM_Spawn/node_child_process/<C>).

Output:
- btq against posix_spawn batch by batch (BM_SpawnPair): per C, the median batch of each, and the
  ratio of their throughputs (the median over the pairs of a repetition; with repetitions, the
  median of those), with its spread across repetitions next to the spread of posix_spawn's own
  time. The btq and posix_spawn rows of the per-C tables come from here when BM_Spawn/btq and
  BM_Spawn/posix_spawn did not run, and the btq / posix_spawn target is judged on this ratio;
- one table per concurrency C (children in flight): library, median microseconds per spawn,
  spawns per second (1e6 / median us), the spread across repetitions (coefficient of variation of
  us/spawn), the best repetition's us/spawn, and the ratio of btq's throughput to the library's
  (above 1: btq is faster);
- the 1 GiB parent: each library's us/spawn at C = 4 from the small and the big parent, and the
  slowdown (big / small);
- the targets: btq >= 0.9x posix_spawn's throughput at every C, btq >= 2x Node's throughput,
  btq from the 1 GiB parent at most 1.2x slower than from the small one. The verdict is on the
  medians; the same ratio over the best repetitions is shown next to it, since on a shared
  machine the best repetition is the one least disturbed by other load.

Medians (and bests) come from the `median` (and `min`) aggregates of the benchmark JSON (a run
without repetitions is summarized from its single runs) and from the peers' own medians (and
fastest repetitions). Standard library only.
"""

import json
import math
import statistics
import sys
from collections import defaultdict

SPAWN = "BM_Spawn"
PAIR = "BM_SpawnPair"
BIG_HEAP = "BM_SpawnBigHeap"
REFERENCE = "btq"
RAW = "posix_spawn"
NODE = "node_child_process"
BIG_HEAP_CONCURRENCY = 4

TARGET_VS_RAW = 0.9       # btq throughput / posix_spawn throughput, at least
TARGET_VS_NODE = 2.0      # btq throughput / Node throughput, at least
TARGET_BIG_HEAP = 1.2     # btq us/spawn from the 1 GiB parent / from the small one, at most

# Order of the libraries in a table with equal times (never happens) and in the heap table.
LIBRARY_ORDER = (REFERENCE, RAW, "fork_exec", "python_subprocess", NODE)


def split_name(run_name):
    """'BM_Spawn/btq/2/real_time' -> ['BM_Spawn', 'btq', '2'] (drops runner suffixes)."""
    parts = run_name.split("/")
    return [p for p in parts if p not in ("real_time", "manual_time") and ":" not in p]


class Pair:
    """One BM_SpawnPair/<C>: the medians of its counters, their CVs across repetitions."""

    def __init__(self):
        self.median = {}
        self.cv = {}
        self.lowest = {}
        self.error = None


PAIR_COUNTERS = ("btq_us_per_spawn", "raw_us_per_spawn", "btq_vs_raw")


def load_pairs(runs, has_aggregates):
    pairs = defaultdict(Pair)
    for run in runs:
        parts = split_name(run.get("run_name", run["name"]))
        if len(parts) != 2 or parts[0] != PAIR:
            continue
        pair = pairs[int(parts[1])]
        if run.get("error_occurred"):
            pair.error = run.get("error_message", "error")
            continue
        if has_aggregates and run.get("run_type") != "aggregate":
            continue
        target = {"median": pair.median, "cv": pair.cv, "min": pair.lowest}.get(
            run.get("aggregate_name") if has_aggregates else "median")
        if target is None:
            continue
        for counter in PAIR_COUNTERS:
            if counter in run:
                target.setdefault(counter, run[counter])
    return dict(pairs)


class Entry:
    """One (family, library, concurrency): median and best us/spawn, the CV, and notes."""

    def __init__(self, us, cv=None, heap_mib=0.0, error=None, best=None):
        self.us = us
        self.best = best if best is not None else us
        self.cv = cv
        self.heap_mib = heap_mib
        self.error = error

    @property
    def rate(self):
        return 1e6 / self.us if self.us else 0.0


def load_benchmark(path):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if not text.strip():  # what the benchmark writes when its filter matched nothing
        return {}, {}, {}, False
    data = json.loads(text)
    runs = data.get("benchmarks", [])
    has_aggregates = any(r.get("run_type") == "aggregate" for r in runs)
    entries, cvs, bests, errors = {}, {}, {}, {}
    for run in runs:
        parts = split_name(run.get("run_name", run["name"]))
        if len(parts) != 3 or parts[0] not in (SPAWN, BIG_HEAP):
            continue
        key = (parts[0], parts[1], int(parts[2]))
        if run.get("error_occurred"):
            errors[key] = run.get("error_message", "error")
            continue
        if "us_per_spawn" not in run:
            continue
        if has_aggregates:
            if run.get("run_type") != "aggregate":
                continue
            if run.get("aggregate_name") == "median":
                entries[key] = Entry(run["us_per_spawn"], heap_mib=run.get("heap_mib", 0.0))
            elif run.get("aggregate_name") == "cv":
                cvs[key] = run["us_per_spawn"]
            elif run.get("aggregate_name") == "min":
                bests[key] = run["us_per_spawn"]
        else:
            entries.setdefault(key, Entry(run["us_per_spawn"], heap_mib=run.get("heap_mib", 0.0)))
    for key, cv in cvs.items():
        if key in entries:
            entries[key].cv = cv
    for key, best in bests.items():
        if key in entries:
            entries[key].best = best
    for key, message in errors.items():
        if key not in entries:
            entries[key] = Entry(0.0, error=message)
    pairs = load_pairs(runs, has_aggregates)
    for concurrency, pair in pairs.items():
        for lib, counter in ((REFERENCE, "btq_us_per_spawn"), (RAW, "raw_us_per_spawn")):
            if (SPAWN, lib, concurrency) in entries:
                continue
            if pair.error is not None:
                entries[(SPAWN, lib, concurrency)] = Entry(0.0, error=pair.error)
            elif counter in pair.median:
                entries[(SPAWN, lib, concurrency)] = Entry(pair.median[counter],
                                                           cv=pair.cv.get(counter))
    return data.get("context", {}), entries, pairs, has_aggregates


def load_peers(path):
    entries, runtimes = {}, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            parts = split_name(record["name"])
            if len(parts) != 3:
                continue
            reps = record.get("reps") or []
            cv = None
            if len(reps) > 1 and statistics.mean(reps) > 0:
                cv = statistics.stdev(reps) / statistics.mean(reps)
            best = record.get("best_us_per_spawn", min(reps) if reps else None)
            entries[(parts[0], parts[1], int(parts[2]))] = Entry(record["us_per_spawn"], cv,
                                                                 best=best)
            if record.get("runtime") and record["runtime"] not in runtimes:
                runtimes.append(record["runtime"])
    return entries, runtimes


def fmt_us(value):
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def fmt_rate(value):
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"


def fmt_cv(entry):
    return f"{100.0 * entry.cv:.1f}%" if entry.cv is not None else "-"


def order(lib):
    return LIBRARY_ORDER.index(lib) if lib in LIBRARY_ORDER else len(LIBRARY_ORDER)


def pair_table(pairs):
    rows = sorted((c, p) for c, p in pairs.items())
    if not rows:
        return []
    lines = [f"### {PAIR}: btq and posix_spawn, batch by batch", "",
             "| C | btq us/spawn | posix_spawn us/spawn | btq / posix_spawn throughput "
             "| CV of the ratio | CV of posix_spawn us | lowest repetition's ratio |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for concurrency, pair in rows:
        if pair.error is not None:
            lines.append(f"| {concurrency} | error: {pair.error} | - | - | - | - | - |")
            continue

        def cv(counter):
            value = pair.cv.get(counter)
            return f"{100.0 * value:.1f}%" if value is not None else "-"

        lowest = pair.lowest.get("btq_vs_raw")
        lines.append(f"| {concurrency} | {fmt_us(pair.median.get('btq_us_per_spawn', 0.0))} "
                     f"| {fmt_us(pair.median.get('raw_us_per_spawn', 0.0))} "
                     f"| {pair.median.get('btq_vs_raw', 0.0):.2f} | {cv('btq_vs_raw')} "
                     f"| {cv('raw_us_per_spawn')} "
                     f"| {f'{lowest:.2f}' if lowest is not None else '-'} |")
    lines.append("")
    return lines


def spawn_tables(entries, pairs):
    by_concurrency = defaultdict(list)
    for (family, lib, concurrency), entry in entries.items():
        if family == SPAWN:
            by_concurrency[concurrency].append((lib, entry))
    lines = []
    for concurrency in sorted(by_concurrency):
        rows = by_concurrency[concurrency]
        rows.sort(key=lambda row: (row[1].error is not None, row[1].us, order(row[0])))
        reference = next((e for lib, e in rows if lib == REFERENCE and e.error is None), None)
        lines.append(f"### {SPAWN}, {concurrency} child{'ren' if concurrency != 1 else ''} "
                     "in flight")
        lines.append("")
        lines.append("| library | median us/spawn | spawns/s | CV | best us/spawn "
                     "| btq throughput / lib's |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for lib, entry in rows:
            name = f"**{lib}**" if lib == REFERENCE else lib
            if entry.error is not None:
                lines.append(f"| {name} | error: {entry.error} | - | - | - | - |")
                continue
            ratio = f"{entry.us / reference.us:.2f}" if reference and reference.us else "-"
            paired = pairs.get(concurrency)
            if lib == RAW and paired is not None and "btq_vs_raw" in paired.median:
                ratio = f"{paired.median['btq_vs_raw']:.2f} (paired)"
            lines.append(f"| {name} | {fmt_us(entry.us)} | {fmt_rate(entry.rate)} | "
                         f"{fmt_cv(entry)} | {fmt_us(entry.best)} | {ratio} |")
        lines.append("")
    return lines


def big_heap_table(entries):
    libs = sorted({lib for (family, lib, _), e in entries.items()
                   if family == BIG_HEAP and e.error is None}, key=order)
    if not libs:
        return []
    lines = [f"### {BIG_HEAP}: {BIG_HEAP_CONCURRENCY} in flight, from a parent with 1 GiB of "
             "touched heap", "",
             "| library | median us/spawn, small parent | median us/spawn, 1 GiB parent "
             "| CV (1 GiB) | slowdown (1 GiB / small), medians | slowdown, best reps |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for lib in libs:
        big = entries[(BIG_HEAP, lib, BIG_HEAP_CONCURRENCY)]
        small = entries.get((SPAWN, lib, BIG_HEAP_CONCURRENCY))
        if small is None or small.error is not None or not small.us:
            small_text, slowdown, best_slowdown = "-", "-", "-"
        else:
            small_text, slowdown = fmt_us(small.us), f"{big.us / small.us:.2f}x"
            best_slowdown = f"{big.best / small.best:.2f}x" if small.best else "-"
        name = f"**{lib}**" if lib == REFERENCE else lib
        lines.append(f"| {name} | {small_text} | {fmt_us(big.us)} | {fmt_cv(big)} | {slowdown} "
                     f"| {best_slowdown} |")
    lines.append("")
    return lines


def verdict(ok):
    return "met" if ok else "**missed**"


def target_table(entries, pairs):
    """Each target on the medians (the verdict) and on the best repetitions (for a noisy run).
    btq / posix_spawn comes from BM_SpawnPair where it ran: the median ratio of the pairs, and
    in the second column the lowest repetition's."""
    rows = []

    def usable(*found):
        return all(e is not None and e.error is None and e.us and e.best for e in found)

    concurrencies = sorted({c for (family, lib, c) in entries if family == SPAWN and lib == RAW})
    for concurrency in concurrencies:
        btq = entries.get((SPAWN, REFERENCE, concurrency))
        raw = entries.get((SPAWN, RAW, concurrency))
        paired = pairs.get(concurrency)
        if paired is not None and paired.error is None and "btq_vs_raw" in paired.median:
            ratio = paired.median["btq_vs_raw"]
            lowest = paired.lowest.get("btq_vs_raw", ratio)
            rows.append((f"btq / posix_spawn throughput, C = {concurrency} (paired batches)",
                         f">= {TARGET_VS_RAW:.1f}", ratio, lowest, ratio >= TARGET_VS_RAW))
        elif usable(btq, raw):
            ratio, best = raw.us / btq.us, raw.best / btq.best
            rows.append((f"btq / posix_spawn throughput, C = {concurrency}",
                         f">= {TARGET_VS_RAW:.1f}", ratio, best, ratio >= TARGET_VS_RAW))
    for concurrency in sorted({c for (family, lib, c) in entries if lib == NODE}):
        btq = entries.get((SPAWN, REFERENCE, concurrency))
        node = entries.get((SPAWN, NODE, concurrency))
        if usable(btq, node):
            ratio, best = node.us / btq.us, node.best / btq.best
            rows.append((f"btq / Node throughput, C = {concurrency}", f">= {TARGET_VS_NODE:.1f}",
                         ratio, best, ratio >= TARGET_VS_NODE))
    big = entries.get((BIG_HEAP, REFERENCE, BIG_HEAP_CONCURRENCY))
    small = entries.get((SPAWN, REFERENCE, BIG_HEAP_CONCURRENCY))
    if usable(big, small):
        slowdown, best = big.us / small.us, big.best / small.best
        rows.append((f"btq 1 GiB parent / small parent (us/spawn), C = {BIG_HEAP_CONCURRENCY}",
                     f"<= {TARGET_BIG_HEAP:.1f}", slowdown, best, slowdown <= TARGET_BIG_HEAP))
    if not rows:
        return []
    lines = ["### Targets", "",
             "| target | wanted | medians | best reps (paired: lowest rep) | verdict (medians) |",
             "| --- | ---: | ---: | ---: | --- |"]
    lines.extend(f"| {name} | {wanted} | {ratio:.2f} | {best:.2f} | {verdict(ok)} |"
                 for name, wanted, ratio, best, ok in rows)
    lines.append("")
    return lines


def warnings(entries):
    lines = []
    tainted = sorted(f"{lib}/{c}" for (family, lib, c), e in entries.items()
                     if family == SPAWN and e.heap_mib and not math.isnan(e.heap_mib))
    if tainted:
        lines.append(f"Warning: {', '.join(tainted)} ran while the 1 GiB heap was held (random "
                     "interleaving on?); their small-parent numbers are not.")
        lines.append("")
    return lines


def main(argv):
    if len(argv) not in (2, 3):
        print(f"usage: {argv[0]} SPAWN.json [SPAWN_PEERS.jsonl]", file=sys.stderr)
        return 2
    context, entries, pairs, has_aggregates = load_benchmark(argv[1])
    runtimes = []
    if len(argv) == 3:
        peers, runtimes = load_peers(argv[2])
        entries.update(peers)
    if not entries:
        print(f"{argv[0]}: no spawn benchmark results in {' '.join(argv[1:])} "
              "(did the benchmark filter match nothing?)", file=sys.stderr)
        return 1
    lines = ["# btq spawn benchmarks", ""]
    host = context.get("host_name", "?")
    cpus = context.get("num_cpus", "?")
    peers_text = f" Peers: {', '.join(runtimes)}." if runtimes else ""
    lines.append(
        f"{context.get('date', '')}, {cpus} CPUs ({host}). Each spawn starts `/bin/true` and "
        "waits for it, with at most C children alive. btq and posix_spawn "
        f"run in pairs of batches of 100 ({PAIR}), alternating which goes first; fork_exec in "
        "batches of 400. btq: "
        "bounded_task_queue<command, subprocess_executor>, max_concurrency C, output captured "
        "through pipes. posix_spawn / fork_exec: raw calls, stdio on /dev/null, the C children "
        "watched by pidfds and reaped as they end. python_subprocess: subprocess.run "
        "(capture_output), C threads. node_child_process: child_process.spawn awaiting 'close', "
        "C in flight." + peers_text + " "
        + ("Medians over repetitions; CV = stddev / mean of us/spawn across them; best = the "
           "fastest repetition." if has_aggregates
           else "One run each (no repetitions, so no medians)."))
    lines.append("")
    lines.extend(warnings(entries))
    lines.extend(pair_table(pairs))
    lines.extend(spawn_tables(entries, pairs))
    lines.extend(big_heap_table(entries))
    lines.extend(target_table(entries, pairs))
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
