#!/usr/bin/env bash
# Worker pool against a process per task (bench/worker_pool_bench.cpp): the same "echo" through
# persistent workers and through one process per task, for the C++ example worker and the Python
# reference worker. Writes bench/results/worker.json and prints a summary table.
#
#   REPS=5 bash bench/run_worker_bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
command -v python3 >/dev/null 2>&1 || apt-get install -y --no-install-recommends python3

cmake --preset release
cmake --build --preset release --target btq_bench_worker
mkdir -p bench/results

build/release/bench/btq_bench_worker \
    --benchmark_repetitions="${REPS:-5}" \
    --benchmark_report_aggregates_only=true \
    --benchmark_out=bench/results/worker.json \
    --benchmark_out_format=json \
    "$@"

python3 - bench/results/worker.json <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
median = {}
for r in runs:
    if r.get("aggregate_name") == "median":
        name = r["run_name"].replace("/real_time", "")
        median[name] = r["us_per_task"]
print("| worker | concurrency | pool µs/task | process per task µs/task | pool speed-up |")
print("| --- | ---: | ---: | ---: | ---: |")
for lang in ("cpp", "python"):
    for c in ("1", "4"):
        pool = median.get(f"BM_Worker/{lang}_pool/{c}")
        proc = median.get(f"BM_Worker/{lang}_process/{c}")
        if pool and proc:
            print(f"| {lang} | {c} | {pool:,.1f} | {proc:,.1f} | {proc / pool:,.0f}x |")
PY
