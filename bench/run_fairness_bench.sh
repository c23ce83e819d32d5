#!/usr/bin/env bash
# Per-key fairness (issue 17): how soon a light key's tasks start while a heavy key floods the
# queue, btq (bench/fairness/fairness_bench.cpp) against the npm p-queue and bottleneck packages
# (bench/fairness/node/fairness_peers.mjs), the same scenario for all: total concurrency 4, the
# heavy key submits 2,000 tasks of a 1 ms timer, 20 ms later the light key submits 10.
#
#   bash bench/run_fairness_bench.sh
#   REPS=9 TASK_MS=10 bash bench/run_fairness_bench.sh
#
# Runs, each REPS times, in a new random order every repetition (a burst of load from elsewhere
# spreads over every library instead of hitting one):
#   btq keyed          submit_options::key "heavy" / "light" (keys take turns)
#   btq fifo           no keys: the baseline, the light tasks wait behind the flood
#   p-queue            PQueue({concurrency: 4}); it has no keys, so FIFO too
#   bottleneck 4/key   Bottleneck.Group({maxConcurrent: 4}): a limiter per key, so up to 8 in all
#   bottleneck 2/key   Bottleneck.Group({maxConcurrent: 2}): 4 in all, but the heavy key gets 2
#
# Settings (environment): REPS=5, HEAVY=2000, LIGHT=10, TASK_MS=1, DELAY_MS=20, CONCURRENCY=4,
# BUILD=true (false: use the binary there is), BUILD_DIR= (empty: the `release` preset's,
# build/release), BUILD_JOBS=2.
# Installs the peers with `npm ci` into bench/fairness/node/node_modules (git-ignored; versions
# pinned in package.json and package-lock.json). Writes bench/results/fairness.jsonl (every run)
# and bench/results/fairness.md (the table, from bench/fairness/summarize_fairness.py), both
# git-ignored, and prints the table. Needs cmake, ninja, the benchmarks' build dependencies, node
# (18 or later) and npm (`bash scripts/install-deps.sh --bench`), python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

REPS=${REPS:-5}
HEAVY=${HEAVY:-2000}
LIGHT=${LIGHT:-10}
TASK_MS=${TASK_MS:-1}
DELAY_MS=${DELAY_MS:-20}
CONCURRENCY=${CONCURRENCY:-4}
BUILD_DIR=${BUILD_DIR:-}
BUILD_JOBS=${BUILD_JOBS:-2}

log() { printf '[fairness-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for program in cmake node npm python3 shuf; do
    command -v "$program" >/dev/null 2>&1 || { log "error: $program not found"; exit 1; }
done

# ---- build: the one target ------------------------------------------------------------------
if [ "${BUILD:-true}" = true ]; then
    if [ -z "$BUILD_DIR" ]; then
        cmake --preset release >/dev/null
        cmake --build --preset release --target btq_bench_fairness -j "$BUILD_JOBS"
    else
        cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DBTQ_BUILD_BENCHMARKS=ON -DBTQ_BUILD_TESTS=OFF >/dev/null
        cmake --build "$BUILD_DIR" --target btq_bench_fairness -j "$BUILD_JOBS"
    fi
fi
BUILD_DIR=${BUILD_DIR:-build/release}
BENCH="$BUILD_DIR/bench/btq_bench_fairness"
[ -x "$BENCH" ] || { log "error: $BENCH not built"; exit 1; }

# ---- the peers: p-queue and bottleneck from npm, pinned ---------------------------------------
(cd bench/fairness/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

COMMON=(--heavy "$HEAVY" --light "$LIGHT" --task-ms "$TASK_MS" --delay-ms "$DELAY_MS"
    --concurrency "$CONCURRENCY")
PEERS=bench/fairness/node/fairness_peers.mjs
run_one() {
    case "$1" in
    btq-keyed) "$BENCH" --mode keyed "${COMMON[@]}" ;;
    btq-fifo) "$BENCH" --mode fifo "${COMMON[@]}" ;;
    p-queue) node "$PEERS" --library p-queue "${COMMON[@]}" ;;
    bottleneck-full) node "$PEERS" --library bottleneck --max-per-key "$CONCURRENCY" "${COMMON[@]}" ;;
    bottleneck-half)
        node "$PEERS" --library bottleneck --max-per-key $(((CONCURRENCY + 1) / 2)) "${COMMON[@]}"
        ;;
    esac
}

mkdir -p bench/results
OUT=bench/results/fairness.jsonl
: >"$OUT"
log "node $(node --version), load average $(cut -d' ' -f1-3 /proc/loadavg) at start, $REPS repetitions"
for rep in $(seq 1 "$REPS"); do
    for name in $(printf '%s\n' btq-keyed btq-fifo p-queue bottleneck-full bottleneck-half | shuf); do
        log "repetition $rep: $name"
        run_one "$name" >>"$OUT"
    done
done
log "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"

python3 bench/fairness/summarize_fairness.py "$OUT" >bench/results/fairness.md
echo
cat bench/results/fairness.md
