#!/usr/bin/env bash
# The seed's "Memory Usage" and "Process Count" tables, measured: four servers, the same work per
# request (schedule_worker's memory_probe: touch PROBE_MB MB, hold it HOLD_MS ms), 1 to 1,000
# requests at once, the memory of each server's whole process tree sampled from /proc.
#
#   bash bench/memory/run_memory_bench.sh                     # everything, about 9 minutes
#   CONCURRENCY="1 10 100" RUNAWAY=false bash bench/memory/run_memory_bench.sh
#
# The four servers (bench/peers/node-seed is the seed's Node server re-created):
#   before  node api_server.js --no-queue        a process per request, no bound (the seed's before)
#   queue   node api_server.js --pool-size 4     the seed's fix, TaskQueue(4) (its after)
#   spawn   schedule_server --mode spawn --pool-size 4 --task-memory-limit TASK_MEMORY_LIMIT
#   pool    schedule_server --mode pool  --pool-size 4 --task-memory-limit TASK_MEMORY_LIMIT
# Each point gets a freshly started server on a free loopback port (--port 0, read from its log).
# bench/memory/memory_point.py opens N connections, sends GET /api/memory-probe on all of them at
# once and waits for every answer; bench/memory/sampler.py sums the VmRSS of the server and all its
# descendants every INTERVAL_MS ms meanwhile and kills the tree when the sum passes CEILING_MB (or
# the machine's MemAvailable falls below HOST_FLOOR_MB): that point is "stopped at ceiling", the
# seed's "Crash". Then the runaway scenario: RUNAWAY_REQUESTS requests at once, one of which (the
# middle one) asks for RUNAWAY_MB MB in RUNAWAY_STEP_MB steps every RUNAWAY_STEP_MS ms.
#
# Safety (the machine is shared): the probe itself refuses more than 2048 MB; the Node servers'
# children run under `prlimit --as` (the largest probe of the scenario + CHILD_CAP_MARGIN_MB), so
# none can grow past it whatever it is asked; btq's children have --task-memory-limit; the
# ceiling and the host floor stop a point; every request has REQUEST_TIMEOUT s, every point
# POINT_TIMEOUT s; every server and everything it started is killed after its point and on any
# exit (trap).
#
# Settings (environment):
#   CONCURRENCY="1 10 50 100 1000"   requests at once, one point each
#   SERVERS="before queue spawn pool"
#   PROBE_MB=30 HOLD_MS=500 STEP_MB=10 STEP_MS=10   the work of one request
#   CEILING_MB=4096   stop a point when the tree's total resident size passes this
#   HOST_FLOOR_MB=4096   ... or when the machine's MemAvailable falls below this
#   INTERVAL_MS=25    sampling interval (a sample of a large tree takes longer; the result says)
#   REQUEST_TIMEOUT=180 POINT_TIMEOUT=200   seconds
#   TASK_MEMORY_LIMIT=256M   btq's --task-memory-limit (both scenarios; empty: none)
#   BTQ_SERVER_ARGS=""       more schedule_server flags (e.g. "--queue-capacity 1000")
#   RUNAWAY=true RUNAWAY_REQUESTS=100 RUNAWAY_MB=2048 RUNAWAY_STEP_MB=16 RUNAWAY_STEP_MS=20
#   CHILD_CAP_MARGIN_MB=256  prlimit --as of the Node servers' children above the largest probe
#   BUILD=true BUILD_JOBS=2  build the release preset (nice, -j BUILD_JOBS) and npm ci if needed
#   KEEP_WORK=1              keep the temporary folder (server logs, raw point results)
#
# Writes bench/results/memory-<timestamp>.json (every point, git-ignored), then
# bench/results/memory.md and bench/results/memory.svg (bench/memory/summarize_memory.py), and
# copies the chart to docs/images/memory-bench.svg, which README.md shows.
#
# Needs: cmake, ninja and the library's build dependencies (scripts/install-deps.sh), node and npm,
# python3, prlimit (util-linux), curl. Linux only (/proc). The sampler asks for SCHED_RR (root or
# CAP_SYS_NICE; see bench/memory/sampler.py for why) and runs without it when refused.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

CONCURRENCY=${CONCURRENCY:-1 10 50 100 1000}
SERVERS=${SERVERS:-before queue spawn pool}
PROBE_MB=${PROBE_MB:-30}
HOLD_MS=${HOLD_MS:-500}
STEP_MB=${STEP_MB:-10}
STEP_MS=${STEP_MS:-10}
CEILING_MB=${CEILING_MB:-4096}
HOST_FLOOR_MB=${HOST_FLOOR_MB:-4096}
INTERVAL_MS=${INTERVAL_MS:-25}
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-180}
POINT_TIMEOUT=${POINT_TIMEOUT:-200}
TASK_MEMORY_LIMIT=${TASK_MEMORY_LIMIT-256M}
BTQ_SERVER_ARGS=${BTQ_SERVER_ARGS:-}
RUNAWAY=${RUNAWAY:-true}
RUNAWAY_REQUESTS=${RUNAWAY_REQUESTS:-100}
RUNAWAY_MB=${RUNAWAY_MB:-2048}
RUNAWAY_STEP_MB=${RUNAWAY_STEP_MB:-16}
RUNAWAY_STEP_MS=${RUNAWAY_STEP_MS:-20}
CHILD_CAP_MARGIN_MB=${CHILD_CAP_MARGIN_MB:-256}
BUILD=${BUILD:-true}
BUILD_JOBS=${BUILD_JOBS:-2}
POOL_SIZE=4

log() { printf '[memory-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$RUNAWAY_MB" -le 2048 ] || die "RUNAWAY_MB is at most 2048 (the probe's cap)"
[ "$PROBE_MB" -le 2048 ] || die "PROBE_MB is at most 2048 (the probe's cap)"

missing=()
for command in cmake node npm python3 prlimit curl; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
[ "${#missing[@]}" -eq 0 ] || die "missing programs: ${missing[*]} (scripts/install-deps.sh --bench; prlimit is in util-linux)"

SERVER=$ROOT/build/release/examples/schedule_server/schedule_server
WORKER=$ROOT/build/release/examples/schedule_worker/schedule_worker
NODE_SEED=$ROOT/bench/peers/node-seed

if [ "$BUILD" = true ]; then
    log "building schedule_server and schedule_worker (release preset, -j $BUILD_JOBS, nice)"
    nice -n 10 timeout 1800 cmake --preset release >/dev/null
    nice -n 10 timeout 1800 cmake --build --preset release -j "$BUILD_JOBS" \
        --target schedule_server schedule_worker
    if [ ! -d "$NODE_SEED/node_modules" ]; then
        log "installing the Node peer's packages (npm ci)"
        timeout 600 npm ci --prefix "$NODE_SEED" --no-audit --no-fund >/dev/null
    fi
fi
[ -x "$SERVER" ] || die "$SERVER is not built"
[ -x "$WORKER" ] || die "$WORKER is not built"
[ -d "$NODE_SEED/node_modules/express" ] || die "express is not installed in $NODE_SEED (npm ci)"
"$SERVER" --help 2>&1 | grep -q -- --enable-memory-probe ||
    die "this schedule_server has no --enable-memory-probe"
[ -z "$TASK_MEMORY_LIMIT" ] || "$SERVER" --help 2>&1 | grep -q -- --task-memory-limit ||
    die "this schedule_server has no --task-memory-limit (TASK_MEMORY_LIMIT= runs without one)"

# A descriptor per connection, for the load driver and the servers.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/btq-memory-bench.XXXXXX")
PID=""
# On any exit: the running server and all it started are killed, the work folder removed.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -z "$PID" ] || python3 bench/memory/proctree.py kill "$PID" 2>/dev/null || true
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Node servers start their worker through this, under `prlimit --as` (prlimit execs the
# worker: no extra process stays).
write_capped_worker() {
    local cap_mb=$1
    cat >"$WORK/capped-worker" <<EOF
#!/bin/sh
exec prlimit --as=$((cap_mb * 1024 * 1024)) -- "$WORKER" "\$@"
EOF
    chmod +x "$WORK/capped-worker"
    echo "$cap_mb" >"$WORK/child-cap-mb"
}

# Starts server $1 on a free port; sets PID and PORT.
start_server() {
    local name=$1 logfile="$WORK/$1.log"
    mkdir -p "$WORK/data-$name"
    case "$name" in
        before | queue)
            local size=$POOL_SIZE
            [ "$name" = before ] && size=0
            node "$NODE_SEED/api_server.js" --host 127.0.0.1 --port 0 --pool-size "$size" \
                --worker "$WORK/capped-worker" --data-dir "$WORK/data-$name" \
                --enable-memory-probe >"$logfile" 2>&1 &
            ;;
        spawn | pool)
            # shellcheck disable=SC2086 # BTQ_SERVER_ARGS is a list of flags
            "$SERVER" --address 127.0.0.1 --port 0 --mode "$name" --pool-size "$POOL_SIZE" \
                --no-access-log --data-dir "$WORK/data-$name" --sample-data '' \
                --worker "$WORKER" --enable-memory-probe \
                ${TASK_MEMORY_LIMIT:+--task-memory-limit "$TASK_MEMORY_LIMIT"} \
                $BTQ_SERVER_ARGS >"$logfile" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
    esac
    PID=$!
    disown "$PID" # it is killed on purpose: no "Killed" line from the shell
    PORT=""
    for _ in $(seq 150); do
        kill -0 "$PID" 2>/dev/null || { cat "$logfile" >&2; die "$name exited at start"; }
        PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$logfile" |
            head -n 1)
        if [ -n "$PORT" ] &&
            curl -sf --max-time 2 "http://127.0.0.1:$PORT/api/queue-stats" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    cat "$logfile" >&2
    die "$name did not answer within 30 s"
}

stop_server() {
    python3 bench/memory/proctree.py kill "$PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    PID=""
}

# run_point SCENARIO SERVER CONCURRENCY TARGET [RUNAWAY_TARGET]
run_point() {
    local scenario=$1 name=$2 concurrency=$3 target=$4 runaway=${5:-}
    local out="$WORK/points/${scenario}_${name}_${concurrency}.json"
    start_server "$name"
    sleep 0.5 # let a pool's workers finish starting before the idle sample
    if ! timeout $((POINT_TIMEOUT + 60)) python3 bench/memory/memory_point.py --port "$PORT" \
        --pid "$PID" --concurrency "$concurrency" --target "$target" \
        --runaway-target "$runaway" --ceiling-mb "$CEILING_MB" \
        --host-floor-mb "$HOST_FLOOR_MB" --interval-ms "$INTERVAL_MS" \
        --request-timeout "$REQUEST_TIMEOUT" --point-timeout "$POINT_TIMEOUT" >"$out.tmp"; then
        log "  the point driver failed for $name c=$concurrency"
    fi
    stop_server
    if [ -s "$out.tmp" ]; then
        python3 - "$out.tmp" "$out" "$scenario" "$name" "$WORK/child-cap-mb" "$WORK/$name.log" <<'PY'
import json, sys
point = json.load(open(sys.argv[1]))
point["scenario"], point["server"] = sys.argv[3], sys.argv[4]
if point["server"] in ("before", "queue"):
    point["child_cap_mb"] = int(open(sys.argv[5]).read())
point["server_log_tail"] = open(sys.argv[6], errors="replace").read().splitlines()[-8:]
json.dump(point, open(sys.argv[2], "w"))
memory, latency = point["memory"], point["latency_ms_200"]
stopped = memory["stopped_at_ceiling"]
p50 = f"{latency['p50'] / 1000:.2f}" if latency["p50"] is not None else "-"
p99 = f"{latency['p99'] / 1000:.2f}" if latency["p99"] is not None else "-"
line = (f"  {point['server']:6} c={point['concurrency']:>4}  peak {memory['peak']['rss_kib'] / 1024:8.1f} MB"
        f"  children {memory['peak']['children']:>4}  p50 {p50} s  p99 {p99} s  {point['outcomes']}")
if stopped:
    line += f"  STOPPED ({stopped['reason']}) at {stopped['rss_kib'] / 1024:.0f} MB"
if "runaway" in point:
    runaway = point["runaway"]
    line += (f"  runaway: {runaway.get('status', runaway.get('failure'))}, largest child "
             f"{memory['peak']['child_rss_kib'] / 1024:.0f} MB")
print(line, file=sys.stderr)
PY
    fi
    rm -f "$out.tmp"
}

mkdir -p "$WORK/points"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PROBE="/api/memory-probe?mb=$PROBE_MB&hold_ms=$HOLD_MS&step_mb=$STEP_MB&step_ms=$STEP_MS"
RUNAWAY_PROBE="/api/memory-probe?mb=$RUNAWAY_MB&hold_ms=$HOLD_MS&step_mb=$RUNAWAY_STEP_MB&step_ms=$RUNAWAY_STEP_MS"

log "work per request: $PROBE"
write_capped_worker $((PROBE_MB + CHILD_CAP_MARGIN_MB))
for concurrency in $CONCURRENCY; do
    log "$concurrency request(s) at once"
    for name in $SERVERS; do
        run_point main "$name" "$concurrency" "$PROBE"
    done
done

if [ "$RUNAWAY" = true ]; then
    log "runaway: $RUNAWAY_REQUESTS requests at once, one of them $RUNAWAY_PROBE"
    write_capped_worker $((RUNAWAY_MB + CHILD_CAP_MARGIN_MB))
    for name in $SERVERS; do
        run_point runaway "$name" "$RUNAWAY_REQUESTS" "$PROBE" "$RUNAWAY_PROBE"
    done
fi

mkdir -p bench/results
OUT=bench/results/memory-$STAMP.json
NODE_VERSION=$(node --version 2>/dev/null || echo unknown)
GIT_DESCRIBE=$(git describe --always --dirty 2>/dev/null || echo unknown)
python3 - "$WORK/points" "$OUT" <<PY
import glob, json, os, platform, sys

points_dir, out = sys.argv[1], sys.argv[2]

def meminfo(key):
    for line in open("/proc/meminfo"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None

points = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(points_dir, "*.json")))]
order = "$SERVERS".split()
points.sort(key=lambda p: (p["scenario"] != "main", p["concurrency"], order.index(p["server"])))
result = {
    "benchmark": "memory",
    "started": "$STARTED",
    "machine": {
        "cpus": os.cpu_count(),
        "memory_total_kib": meminfo("MemTotal"),
        "kernel": platform.release(),
        "loadavg_start": "$LOAD_START",
        "loadavg_end": open("/proc/loadavg").read().split(" ", 3)[:3],
        "node": "$NODE_VERSION",
        "express": json.load(open("bench/peers/node-seed/node_modules/express/package.json"))["version"],
        "git": "$GIT_DESCRIBE",
    },
    "config": {
        "servers": order,
        "concurrency": [int(c) for c in "$CONCURRENCY".split()],
        "probe": "$PROBE",
        "probe_mb": $PROBE_MB, "hold_ms": $HOLD_MS, "step_mb": $STEP_MB, "step_ms": $STEP_MS,
        "ceiling_mb": $CEILING_MB,
        "host_floor_mb": $HOST_FLOOR_MB,
        "interval_ms": $INTERVAL_MS,
        "request_timeout_s": $REQUEST_TIMEOUT,
        "point_timeout_s": $POINT_TIMEOUT,
        "pool_size": $POOL_SIZE,
        "task_memory_limit": "$TASK_MEMORY_LIMIT",
        "btq_server_args": "$BTQ_SERVER_ARGS",
        "runaway": "$RUNAWAY" == "true",
        "runaway_requests": $RUNAWAY_REQUESTS,
        "runaway_probe": "$RUNAWAY_PROBE",
        "child_cap_margin_mb": $CHILD_CAP_MARGIN_MB,
    },
    "points": points,
}
json.dump(result, open(out, "w"), indent=1)
PY
log "wrote $OUT"
python3 bench/memory/summarize_memory.py "$OUT" --markdown bench/results/memory.md \
    --svg bench/results/memory.svg
mkdir -p docs/images
cp bench/results/memory.svg docs/images/memory-bench.svg
cat bench/results/memory.md
