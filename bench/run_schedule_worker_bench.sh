#!/usr/bin/env bash
# The example worker (bench/schedule_worker_bench.cpp): `schedules` on a database of 1,000
# schedules, one process per request (cold start) against a persistent worker against
# in-process, and the import of a 1,000-item schedule both ways; each on SQLite and, when the
# worker has its PostgreSQL store, on a PostgreSQL server the benchmark starts. Writes
# bench/results/schedule_worker.json and prints the medians.
#
#   REPS=10 bash bench/run_schedule_worker_bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

cmake --preset release
cmake --build --preset release --target btq_bench_schedule_worker schedule_worker
mkdir -p bench/results

build/release/bench/btq_bench_schedule_worker \
    --benchmark_repetitions="${REPS:-10}" \
    --benchmark_report_aggregates_only=true \
    --benchmark_out=bench/results/schedule_worker.json \
    --benchmark_out_format=json \
    "$@"

python3 - bench/results/schedule_worker.json <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
median = {}
for r in runs:
    if r.get("aggregate_name") == "median":
        name = r["run_name"].replace("/real_time", "").replace("BM_ScheduleWorker/", "")
        median[name] = r["real_time"] * scale[r.get("time_unit", "ns")]
def shown(us):
    return f"{us / 1000:,.2f} ms" if us >= 1000 else f"{us:,.1f} µs"
print("`schedules` on 1,000 schedules, median wall time per request:")
print("| how | median | target |")
print("| --- | ---: | --- |")
targets = {"once": "<= 5 ms", "persistent": "well under 1 ms", "in_process": ""}
for name in ("once", "persistent", "in_process"):
    if name in median:
        print(f"| {name} | {shown(median[name])} | {targets[name]} |")
print()
print("SQLite against PostgreSQL, median wall time per request:")
print("| request | mode | SQLite | PostgreSQL |")
print("| --- | --- | ---: | ---: |")
for request, prefix in (("schedules (1,000)", ""), ("import (1,000 items)", "import_")):
    for mode in ("once", "persistent"):
        sqlite = median.get(prefix + mode)
        postgresql = median.get(prefix + mode + "_postgresql")
        print(f"| {request} | {mode} | {shown(sqlite) if sqlite else '-'} | "
              f"{shown(postgresql) if postgresql else '-'} |")
PY
