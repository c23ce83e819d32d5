#!/usr/bin/env bash
# Cluster-wide permits on Redis (issue 13): btq::redis_permits (bench/redis/redis_bench.cpp)
# against the npm redis-semaphore package (bench/redis/node/redis_semaphore_bench.js), both against
# one redis-server that this script starts on a free loopback port in a temporary folder and stops
# whatever happens.
#
#   bash bench/redis/run_redis_bench.sh
#   BUILD_DIR=build/release DURATION_MS=3000 bash bench/redis/run_redis_bench.sh
#
# Builds only the btq_bench_redis target of BUILD_DIR (default: build; configured with the
# benchmarks on if it is not yet), and runs `npm install` in bench/redis/node. Then, in one run:
# btq, redis-semaphore with its defaults (retryInterval 10 ms) and, unless FAST_RETRY is empty,
# redis-semaphore with retryInterval FAST_RETRY ms (default 1).
#
# Settings (environment): SAMPLES=2000 (uncontended tasks), PROCESSES=4, WAITERS=64 (per
# process), DURATION_MS=5000 (each contended run), WAKE_ROUNDS=150 (x 2 hand-offs), HOLD_MS=5,
# KILLS=5, KILL_TTL_MS=1000, BUILD_JOBS=2, FAST_RETRY=1.
#
# Writes bench/results/redis.json (every figure of every side; not committed) and
# bench/results/redis.md (the table, from bench/redis/summarize_redis.py), and prints the table.
# Needs: cmake, ninja, hiredis (pkg-config), the benchmarks' other build dependencies
# (scripts/install-deps.sh), redis-server and redis-cli, node and npm, python3. Linux only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_JOBS=${BUILD_JOBS:-2}
SAMPLES=${SAMPLES:-2000}
PROCESSES=${PROCESSES:-4}
WAITERS=${WAITERS:-64}
DURATION_MS=${DURATION_MS:-5000}
WAKE_ROUNDS=${WAKE_ROUNDS:-150}
HOLD_MS=${HOLD_MS:-5}
KILLS=${KILLS:-5}
KILL_TTL_MS=${KILL_TTL_MS:-1000}
FAST_RETRY=${FAST_RETRY-1}

log() { printf '[redis-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for program in cmake redis-server redis-cli node npm python3; do
    command -v "$program" >/dev/null 2>&1 || { log "error: $program not found"; exit 1; }
done

# ---- build: the one target ------------------------------------------------------------------
if ! grep -q '^BTQ_BUILD_BENCHMARKS:BOOL=ON' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
    if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
        cmake -S . -B "$BUILD_DIR" -DBTQ_BUILD_BENCHMARKS=ON >/dev/null
    else
        cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBTQ_BUILD_BENCHMARKS=ON \
            -DBTQ_BUILD_TESTS=OFF -DBTQ_BUILD_EXAMPLES=OFF >/dev/null
    fi
fi
nice -n 5 cmake --build "$BUILD_DIR" --target btq_bench_redis -j "$BUILD_JOBS"
BENCH=$(find "$BUILD_DIR" -type f -name btq_bench_redis -perm -u+x | head -n 1)
[ -n "$BENCH" ] || { log "error: btq_bench_redis not built (is hiredis found?)"; exit 1; }

# ---- the peer: redis-semaphore from npm, into bench/redis/node --------------------------------
(cd bench/redis/node && npm install --no-audit --no-fund --loglevel=error >/dev/null)

# ---- a redis-server of the run's own ----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/btq-redis-bench-XXXXXX")
REDIS_PID=
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill -CONT "$REDIS_PID" 2>/dev/null || true
        kill -KILL "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Another process may take the free port first: the server must answer as itself (its pid).
start_redis() {
    local attempt
    for attempt in $(seq 1 20); do
        PORT=$(free_port)
        redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no \
            --daemonize no >"$WORK/redis.log" 2>&1 &
        REDIS_PID=$!
        local tries
        for tries in $(seq 1 200); do
            if ! kill -0 "$REDIS_PID" 2>/dev/null; then
                break
            fi
            if redis-cli -p "$PORT" INFO server 2>/dev/null | tr -d '\r' |
                grep -qx "process_id:$REDIS_PID"; then
                return 0
            fi
            sleep 0.05
        done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=
    done
    log "error: redis-server did not start; its log:"
    cat "$WORK/redis.log" >&2
    return 1
}
start_redis
REDIS_VERSION=$(redis-cli -p "$PORT" INFO server | tr -d '\r' | sed -n 's/^redis_version://p')
log "redis-server $REDIS_VERSION on 127.0.0.1:$PORT (pid $REDIS_PID), folder $WORK"

COMMON=(--port "$PORT" --samples "$SAMPLES" --processes "$PROCESSES" --waiters "$WAITERS"
    --duration-ms "$DURATION_MS" --wake-rounds "$WAKE_ROUNDS" --hold-ms "$HOLD_MS"
    --kills "$KILLS" --kill-ttl-ms "$KILL_TTL_MS")
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

"$BENCH" "${COMMON[@]}" >"$WORK/btq.json"
node bench/redis/node/redis_semaphore_bench.js "${COMMON[@]}" >"$WORK/redis-semaphore.json"
RUNS=("$WORK/btq.json" "$WORK/redis-semaphore.json")
if [ -n "$FAST_RETRY" ]; then
    node bench/redis/node/redis_semaphore_bench.js "${COMMON[@]}" --retry-interval-ms "$FAST_RETRY" \
        >"$WORK/redis-semaphore-fast.json"
    RUNS+=("$WORK/redis-semaphore-fast.json")
fi

mkdir -p bench/results
python3 - "$STARTED" "$LOAD_BEFORE" "$REDIS_VERSION" "$(nproc)" "${RUNS[@]}" \
    >bench/results/redis.json <<'PY'
import json
import sys

started, load, version, cores, *runs = sys.argv[1:]
out = {"started": started, "load_average_at_start": float(load), "redis_version": version,
       "cores": int(cores), "runs": []}
for path in runs:
    with open(path, encoding="utf-8") as handle:
        out["runs"].append(json.load(handle))
json.dump(out, sys.stdout, indent=2)
print()
PY
python3 bench/redis/summarize_redis.py bench/results/redis.json >bench/results/redis.md
echo
cat bench/results/redis.md
