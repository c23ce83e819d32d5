#!/usr/bin/env bash
# Builds and runs the queue benchmarks (bench/queue_bench.cpp), then writes a Markdown summary
# and redraws the chart.
#
#   bash bench/run_queue_bench.sh                       # everything, 5 repetitions
#   REPS=3 bash bench/run_queue_bench.sh --benchmark_filter='BM_FireAndForget/.*'
#
# Extra arguments go to the benchmark binary. Settings (environment):
#   REPS=5              repetitions of every benchmark
#   INTERLEAVE=true     false runs each benchmark's repetitions back to back
#   BUILD=true          false skips the dependency check and the build (use the binary there is)
#   BUILD_DIR=          the build folder; empty: the `release` preset's (build/release)
# Results (not committed) land in bench/results/: queue.json (Google Benchmark JSON) and queue.md
# (the summary of bench/summarize.py, also printed). The chart docs/images/queue-bench.svg is
# redrawn from queue.json: commit it only from a run on a quiet machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-}
if [ "${BUILD:-true}" = true ]; then
    if [ -f scripts/install-deps.sh ]; then
        bash scripts/install-deps.sh
    fi
    if [ -z "$BUILD_DIR" ] && [ -f CMakePresets.json ]; then
        cmake --preset release
        cmake --build --preset release --target btq_bench_queue
    else
        BUILD_DIR=${BUILD_DIR:-build/release}
        cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DBTQ_BUILD_BENCHMARKS=ON -DBTQ_BUILD_TESTS=OFF
        cmake --build "$BUILD_DIR" --target btq_bench_queue
    fi
fi
BUILD_DIR=${BUILD_DIR:-build/release}

mkdir -p bench/results

# Repetitions of different benchmarks are interleaved in random order, so a burst of load from
# elsewhere on a shared machine spreads over every library instead of hitting one of them.
"$BUILD_DIR/bench/btq_bench_queue" \
    --benchmark_repetitions="${REPS:-5}" \
    --benchmark_enable_random_interleaving="${INTERLEAVE:-true}" \
    --benchmark_report_aggregates_only=true \
    --benchmark_out=bench/results/queue.json \
    --benchmark_out_format=json \
    "$@"

python3 bench/summarize.py bench/results/queue.json --svg docs/images/queue-bench.svg \
    > bench/results/queue.md
echo
cat bench/results/queue.md
