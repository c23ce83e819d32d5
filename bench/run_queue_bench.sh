#!/usr/bin/env bash
# Builds and runs the queue benchmarks (bench/queue_bench.cpp), then writes a Markdown summary.
#
#   bash bench/run_queue_bench.sh                       # everything, 5 repetitions
#   REPS=3 bash bench/run_queue_bench.sh --benchmark_filter='BM_FireAndForget/.*'
#
# Extra arguments go to the benchmark binary; INTERLEAVE=false runs each benchmark's repetitions
# back to back. Results (not committed) land in bench/results/:
# queue.json (Google Benchmark JSON) and queue.md (the summary, also printed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -f scripts/install-deps.sh ]; then
    bash scripts/install-deps.sh
fi

if [ -f CMakePresets.json ]; then
    cmake --preset release
    cmake --build --preset release --target btq_bench_queue
else
    cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DBTQ_BUILD_BENCHMARKS=ON -DBTQ_BUILD_TESTS=OFF
    cmake --build build/release --target btq_bench_queue
fi

mkdir -p bench/results

# Repetitions of different benchmarks are interleaved in random order, so a burst of load from
# elsewhere on a shared machine spreads over every library instead of hitting one of them.
build/release/bench/btq_bench_queue \
    --benchmark_repetitions="${REPS:-5}" \
    --benchmark_enable_random_interleaving="${INTERLEAVE:-true}" \
    --benchmark_report_aggregates_only=true \
    --benchmark_out=bench/results/queue.json \
    --benchmark_out_format=json \
    "$@"

python3 bench/summarize.py bench/results/queue.json > bench/results/queue.md
echo
cat bench/results/queue.md
