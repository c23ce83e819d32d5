#!/usr/bin/env bash
# Builds and runs the spawn benchmarks (bench/spawn_bench.cpp), runs the Python and Node peers
# (bench/spawn_peers.py, bench/spawn_peers.js) in the same run, then writes a Markdown summary.
#
#   bash bench/run_spawn_bench.sh                       # everything, 5 repetitions
#   REPS=3 bash bench/run_spawn_bench.sh --benchmark_filter='BM_SpawnPair/.*'   # btq vs posix_spawn only
#
# Extra arguments go to the benchmark binary; INTERLEAVE=false runs each benchmark's repetitions
# back to back. SPAWNS sets the peers' spawns per repetition (400, the C++ batch); PEERS=false
# skips them. Results (not committed) land in bench/results/: spawn.json (Google Benchmark JSON),
# spawn_peers.jsonl (one JSON line per peer and concurrency) and spawn.md (the summary, also
# printed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -f scripts/install-deps.sh ]; then
    bash scripts/install-deps.sh
fi

# The peers need node and python3 (Debian's nodejs and python3 packages). Installed only when
# missing, like scripts/install-deps.sh: no apt-get update otherwise.
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${PEERS:-true}" = true ]; then
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    else
        SUDO=(sudo)
    fi
    echo "run_spawn_bench: installing missing packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ -f CMakePresets.json ]; then
    cmake --preset release
    cmake --build --preset release --target btq_bench_spawn
else
    cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DBTQ_BUILD_BENCHMARKS=ON -DBTQ_BUILD_TESTS=OFF
    cmake --build build/release --target btq_bench_spawn
fi

mkdir -p bench/results

# The 1 GiB heap of the BM_SpawnBigHeap benchmarks stays allocated once touched, so the small and
# the big parent run in two processes, the small one first: BM_SpawnPair (btq and posix_spawn,
# batch by batch) and BM_Spawn/fork_exec, then BM_SpawnBigHeap. Within each, the repetitions of
# different benchmarks are interleaved in random order, so a burst of load from elsewhere on a
# shared machine spreads over every library instead of hitting one of them; within a pair, btq
# and posix_spawn run a fraction of a second apart.
# A --benchmark_filter of yours replaces that split: one process, in registration order
# (BM_SpawnBigHeap last), without interleaving.
BENCH=build/release/bench/btq_bench_spawn
COMMON=(
    --benchmark_repetitions="${REPS:-5}"
    --benchmark_report_aggregates_only=true
    --benchmark_out_format=json
)
user_filter=false
for argument in "$@"; do
    case "$argument" in
        --benchmark_filter=*) user_filter=true ;;
    esac
done
if [ "$user_filter" = true ]; then
    "$BENCH" "${COMMON[@]}" --benchmark_enable_random_interleaving=false \
        --benchmark_out=bench/results/spawn.json "$@"
else
    "$BENCH" "${COMMON[@]}" --benchmark_enable_random_interleaving="${INTERLEAVE:-true}" \
        --benchmark_filter='^(BM_SpawnPair/|BM_Spawn/fork_exec/)' \
        --benchmark_out=bench/results/spawn_small.json "$@"
    "$BENCH" "${COMMON[@]}" --benchmark_enable_random_interleaving="${INTERLEAVE:-true}" \
        --benchmark_filter='^BM_SpawnBigHeap/' --benchmark_out=bench/results/spawn_big.json "$@"
    # One file, as if from one run: the first run's context, both runs' benchmarks.
    python3 - bench/results/spawn_small.json bench/results/spawn_big.json \
        bench/results/spawn.json <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    merged = json.load(handle)
with open(sys.argv[2], encoding="utf-8") as handle:
    merged["benchmarks"] += json.load(handle)["benchmarks"]
with open(sys.argv[3], "w", encoding="utf-8") as handle:
    json.dump(merged, handle, indent=2)
PY
    rm -f bench/results/spawn_small.json bench/results/spawn_big.json
fi

: > bench/results/spawn_peers.jsonl
if [ "${PEERS:-true}" = true ]; then
    echo
    echo "Peers: Python subprocess, Node child_process (${SPAWNS:-400} spawns, ${REPS:-5} repetitions)"
    python3 bench/spawn_peers.py --spawns "${SPAWNS:-400}" --repetitions "${REPS:-5}" \
        | tee -a bench/results/spawn_peers.jsonl
    node bench/spawn_peers.js --spawns "${SPAWNS:-400}" --repetitions "${REPS:-5}" \
        | tee -a bench/results/spawn_peers.jsonl
fi

python3 bench/summarize_spawn.py bench/results/spawn.json bench/results/spawn_peers.jsonl \
    > bench/results/spawn.md
echo
cat bench/results/spawn.md
