#!/usr/bin/env bash
# HTTP load comparison: the example server (examples/schedule_server) in both modes against a
# re-creation of the seed's Node.js server (bench/peers/node-seed: Express, TaskQueue(4), one
# worker process per request). All three run the same schedule_worker on identical data.
#
#   bash bench/http/run_http_bench.sh
#   DURATION=5 bash bench/http/run_http_bench.sh
#
# Settings (environment):
#   DURATION=8          seconds of wrk per point
#   WRK_THREADS=1       wrk threads. 1 by default: on a 2-core machine two wrk threads compete
#                       with the server's threads for the cores, and a descheduled wrk thread
#                       leaves answers unread in its sockets, which wrk counts as latency (p99
#                       of seconds at 1,000 connections with 2 threads, ~20 ms with 1)
#   CONCURRENCY="10 50 200"   wrk connections for both endpoints; QUEUE_STATS_EXTRA="1000" is
#                       added for /api/queue-stats when the open-file limit allows
#   HOLD_CONNECTIONS=1000     connections of the memory point
#   SCHEDULES=50        schedules in the data folder
#   SERVER_THREADS=2    --threads of schedule_server
#   BUILD=false         skip the build and npm ci (use what is there)
#   KEEP_WORK=1         keep the temporary folder (data folders, server logs, raw wrk output)
#
# What it does: builds schedule_server and schedule_worker (release preset), installs the Node
# peer's packages (npm ci), fills one data folder from examples/schedule_server/sample-data and
# imports SCHEDULES schedules into it through the worker's command line, copies it three times,
# starts the three servers on free loopback ports (ours: --mode spawn and --mode pool, both
# --pool-size 4 --no-access-log; Node: TaskQueue(4)) and waits until each answers. Then:
#   1. the memory point, on the freshly started servers: bench/http/hold_connections.py opens
#      HOLD_CONNECTIONS keep-alive connections and sends GET /api/schedules on each at once, and
#      samples the server's VmRSS (the server process only) and its worker children's at the peak;
#   2. wrk (--latency, bench/http/status_counts.lua counting responses per status code) for each
#      endpoint x concurrency x server, the three servers taking turns at each point so that load
#      from elsewhere on the machine spreads over all of them; before each point the server's
#      queue must be idle again (the Node server keeps running requests whose clients are gone).
# All servers get SIGTERM at the end (and on any exit, by trap). Writes
# bench/results/http-<timestamp>.json (git-ignored), then prints the Markdown summary of
# bench/http/summarize_http.py and rewrites docs/images/http-bench.svg.
#
# Needs (Debian bookworm packages): cmake ninja-build g++ and the library's build dependencies
# (scripts/install-deps.sh), nodejs npm (the Node peer), wrk, python3, curl.
#
# The machine matters: wrk, the server and the worker processes share its CPUs. On a 2-core
# machine wrk takes roughly one core of its own, so the fast endpoints measure wrk as much as
# the server. Results are for comparison on one machine in one run, not absolute numbers.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}
WRK_THREADS=${WRK_THREADS:-1}
CONCURRENCY=${CONCURRENCY:-10 50 200}
QUEUE_STATS_EXTRA=${QUEUE_STATS_EXTRA:-1000}
HOLD_CONNECTIONS=${HOLD_CONNECTIONS:-1000}
SCHEDULES=${SCHEDULES:-50}
SERVER_THREADS=${SERVER_THREADS:-2}
POOL_SIZE=4
BUILD=${BUILD:-true}

log() { printf '[http-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$BUILD" = true ]; then
    bash "$ROOT/scripts/install-deps.sh" --bench
fi

missing=()
for command in cmake node npm wrk python3 curl; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
if [ "${#missing[@]}" -gt 0 ]; then
    die "missing programs: ${missing[*]} (Debian: apt-get install cmake nodejs npm wrk python3 curl)"
fi

SERVER=$ROOT/build/release/examples/schedule_server/schedule_server
WORKER=$ROOT/build/release/examples/schedule_worker/schedule_worker
NODE_SEED=$ROOT/bench/peers/node-seed

if [ "$BUILD" = true ]; then
    log "building schedule_server and schedule_worker (release)"
    timeout 1800 cmake --preset release >/dev/null
    timeout 1800 cmake --build --preset release --target schedule_server schedule_worker
    log "installing the Node peer's packages"
    if [ -f "$NODE_SEED/package-lock.json" ]; then
        timeout 600 npm ci --prefix "$NODE_SEED" --no-audit --no-fund >/dev/null
    else
        timeout 600 npm install --prefix "$NODE_SEED" --no-audit --no-fund >/dev/null
    fi
fi
[ -x "$SERVER" ] || die "$SERVER is not built"
[ -x "$WORKER" ] || die "$WORKER is not built"
[ -d "$NODE_SEED/node_modules/express" ] || die "express is not installed in $NODE_SEED (npm ci)"

# wrk needs a descriptor per connection, and so do the servers.
want_fds=$((HOLD_CONNECTIONS + 1200))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
fd_limit=$(ulimit -n)
QS_CONCURRENCY=$CONCURRENCY
for extra in $QUEUE_STATS_EXTRA; do
    if [ "$fd_limit" = unlimited ] || [ "$fd_limit" -ge $((extra + 100)) ]; then
        QS_CONCURRENCY="$QS_CONCURRENCY $extra"
    else
        log "open-file limit $fd_limit: skipping /api/queue-stats at $extra connections"
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/btq-http-bench.XXXXXX")
declare -A PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "${PIDS[$name]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${PIDS[$name]}" 2>/dev/null || true
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "data: sample data + $SCHEDULES schedules"
cp -a examples/schedule_server/sample-data "$WORK/base"
timeout 300 python3 bench/http/seed_data.py --worker "$WORKER" --data-dir "$WORK/base" \
    --schedules "$SCHEDULES"
SERVERS=(spawn pool node)
for name in "${SERVERS[@]}"; do
    cp -a "$WORK/base" "$WORK/data-$name"
done

# Three distinct free loopback ports (bound and released at once; a race with another program
# taking one in between is unlikely and shows as a failed start).
read -r -a PORT_LIST <<<"$(python3 - <<'PY'
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
for s in sockets:
    s.close()
PY
)"
declare -A PORTS=([spawn]=${PORT_LIST[0]} [pool]=${PORT_LIST[1]} [node]=${PORT_LIST[2]})

start_server() {
    local name=$1 port=${PORTS[$1]}
    case "$name" in
        spawn | pool)
            "$SERVER" --address 127.0.0.1 --port "$port" --mode "$name" --pool-size "$POOL_SIZE" \
                --no-access-log --threads "$SERVER_THREADS" --data-dir "$WORK/data-$name" \
                --sample-data '' --worker "$WORKER" >"$WORK/$name.log" 2>&1 &
            ;;
        node)
            node "$NODE_SEED/api_server.js" --host 127.0.0.1 --port "$port" --worker "$WORKER" \
                --data-dir "$WORK/data-node" --pool-size "$POOL_SIZE" >"$WORK/$name.log" 2>&1 &
            ;;
    esac
    PIDS[$name]=$!
}

wait_ready() {
    local name=$1 url="http://127.0.0.1:${PORTS[$1]}/api/queue-stats"
    for _ in $(seq 150); do
        kill -0 "${PIDS[$name]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited"; }
        if curl -sf --max-time 2 "$url" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    cat "$WORK/$name.log" >&2
    die "$name did not answer $url within 30 s"
}

# The queue must be idle (nothing running, nothing waiting) before a point starts.
wait_idle() {
    local name=$1 url="http://127.0.0.1:${PORTS[$1]}/api/queue-stats"
    local deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "${PIDS[$name]}" 2>/dev/null || die "$name exited (see its log)"
        if curl -s --max-time 5 "$url" 2>/dev/null | python3 -c '
import json, sys
pool = json.load(sys.stdin)["processPool"]
sys.exit(0 if pool["activeProcesses"] == 0 and pool["queuedTasks"] == 0 else 1)' 2>/dev/null
        then
            return 0
        fi
        sleep 0.2
    done
    die "$name's queue did not drain within 120 s"
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

for name in "${SERVERS[@]}"; do
    start_server "$name"
done
for name in "${SERVERS[@]}"; do
    wait_ready "$name"
    log "$name: pid ${PIDS[$name]}, http://127.0.0.1:${PORTS[$name]}"
done

mkdir -p "$WORK/points" "$WORK/memory"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Warm-up: a few hundred requests per server and endpoint (not recorded).
for name in "${SERVERS[@]}"; do
    for path in /api/queue-stats /api/schedules; do
        timeout 30 wrk -t1 -c4 -d1s "http://127.0.0.1:${PORTS[$name]}$path" >/dev/null
    done
    wait_idle "$name"
done

# 1. Memory with HOLD_CONNECTIONS connections open and the queue full.
for name in "${SERVERS[@]}"; do
    log "memory point: $name, $HOLD_CONNECTIONS connections on /api/schedules"
    wait_idle "$name"
    timeout 200 python3 bench/http/hold_connections.py --port "${PORTS[$name]}" \
        --pid "${PIDS[$name]}" --connections "$HOLD_CONNECTIONS" --path /api/schedules \
        --timeout 150 >"$WORK/memory/$name.json"
    wait_idle "$name"
    curl -s --max-time 5 "http://127.0.0.1:${PORTS[$name]}/api/queue-stats" \
        >"$WORK/memory/$name.stats.json"
done

# 2. Throughput and latency.
run_point() {
    local name=$1 path=$2 connections=$3
    local file="$WORK/points/${name}_${path//\//_}_$connections"
    local threads=$WRK_THREADS
    [ "$connections" -lt "$threads" ] && threads=$connections
    wait_idle "$name"
    cut -d' ' -f1-3 /proc/loadavg >"$file.load"
    WRK_JSON_OUT="$file.json" timeout $((DURATION + 60)) wrk -t"$threads" -c"$connections" \
        -d"${DURATION}s" --timeout 30s --latency -s bench/http/status_counts.lua \
        "http://127.0.0.1:${PORTS[$name]}$path" >"$file.txt" 2>&1 ||
        log "wrk failed for $name $path c=$connections (see $file.txt)"
    rss_kib "${PIDS[$name]}" >"$file.rss"
    kill -0 "${PIDS[$name]}" 2>/dev/null || die "$name exited during $path c=$connections"
    if [ -f "$file.json" ]; then
        python3 - "$file.json" "$name" "$path" "$connections" <<'PY' >&2
import json, sys
point = json.load(open(sys.argv[1]))
p = point["latency_us"]["percentiles"]
print(f"  {sys.argv[2]:5} {sys.argv[3]:17} c={sys.argv[4]:>4}  {point['requests_per_s']:>10.1f} req/s"
      f"  p50 {p['50'] / 1000:8.2f} ms  p99 {p['99'] / 1000:8.2f} ms  {point['statuses']}")
PY
    fi
}

for path in /api/queue-stats /api/schedules; do
    levels=$CONCURRENCY
    [ "$path" = /api/queue-stats ] && levels=$QS_CONCURRENCY
    for connections in $levels; do
        log "$path, $connections connections, ${DURATION} s each"
        for name in "${SERVERS[@]}"; do
            run_point "$name" "$path" "$connections"
        done
    done
done

# Stop the servers (SIGTERM) and keep their last words.
for name in "${SERVERS[@]}"; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null || true
done
for name in "${SERVERS[@]}"; do
    for _ in $(seq 100); do
        kill -0 "${PIDS[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${PIDS[$name]}" 2>/dev/null; then
        log "$name did not stop within 10 s of SIGTERM; killing it"
        kill -KILL "${PIDS[$name]}" 2>/dev/null || true
    fi
    unset "PIDS[$name]"
done

mkdir -p bench/results
OUT=bench/results/http-$STAMP.json
python3 - "$WORK" "$OUT" <<PY
import glob, json, os, platform, subprocess, sys

work, out = sys.argv[1], sys.argv[2]

def text(command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None

def read(path, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return default

servers = {
    "spawn": {"label": "btq spawn", "program": "schedule_server --mode spawn",
              "port": ${PORTS[spawn]}},
    "pool": {"label": "btq pool", "program": "schedule_server --mode pool",
             "port": ${PORTS[pool]}},
    "node": {"label": "Node seed", "program": "node bench/peers/node-seed/api_server.js",
             "port": ${PORTS[node]}},
}
points = []
for path in sorted(glob.glob(os.path.join(work, "points", "*.json"))):
    base = path[:-5]
    name, rest = os.path.basename(base).split("_", 1)
    endpoint, connections = rest.rsplit("_", 1)
    points.append({
        "server": name,
        "endpoint": endpoint.replace("_", "/"),
        "concurrency": int(connections),
        "wrk": json.loads(read(path)),
        "loadavg_before": read(base + ".load"),
        "server_rss_kib_after": int(read(base + ".rss", "0") or 0),
    })
points.sort(key=lambda p: (p["endpoint"], p["concurrency"], list(servers).index(p["server"])))
memory = []
for name in servers:
    result = read(os.path.join(work, "memory", name + ".json"))
    if result:
        entry = {"server": name, **json.loads(result)}
        stats = read(os.path.join(work, "memory", name + ".stats.json"))
        if stats:
            entry["queue_stats_after"] = json.loads(stats).get("processPool")
        memory.append(entry)
logs = {name: (read(os.path.join(work, name + ".log"), "") or "").splitlines()[-20:]
        for name in servers}

result = {
    "benchmark": "http",
    "started": "$STARTED",
    "machine": {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_start": "$LOAD_START",
        "loadavg_end": read("/proc/loadavg"),
        "node": text(["node", "--version"]),
        "wrk": text(["wrk", "--version"]),
        "express": json.loads(read("bench/peers/node-seed/node_modules/express/package.json"))["version"],
        "git": text(["git", "describe", "--always", "--dirty"]),
    },
    "config": {
        "duration_s": float("$DURATION"),
        "wrk_threads": int("$WRK_THREADS"),
        "wrk_timeout_s": 30,
        "schedules": int("$SCHEDULES"),
        "pool_size": $POOL_SIZE,
        "server_threads": int("$SERVER_THREADS"),
        "server_queue_capacity": "default (256)",
        "hold_connections": int("$HOLD_CONNECTIONS"),
        "note": "wrk, the servers and the worker processes share the machine's CPUs",
    },
    "servers": servers,
    "points": points,
    "memory": memory,
    "server_logs_tail": logs,
}
with open(out, "w", encoding="utf-8") as handle:
    json.dump(result, handle, indent=1)
    handle.write("\n")
PY
log "wrote $OUT"
mkdir -p docs/images
python3 bench/http/summarize_http.py "$OUT" --svg docs/images/http-bench.svg |
    tee "${OUT%.json}.md"
