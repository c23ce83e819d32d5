#!/usr/bin/env bash
# Many instances, one store, over HTTP: one pool-mode schedule_server on SQLite, one on
# PostgreSQL, and two on one PostgreSQL, each point driven by wrk on GET /api/schedules (the
# database-backed listing) and POST /api/import-schedule (a write), in one run.
#
#   bash bench/http/run_postgres_http_bench.sh
#   DURATION=5 CONNECTIONS=32 bash bench/http/run_postgres_http_bench.sh
#
# Settings (environment):
#   DURATION=8        seconds of wrk per point
#   CONNECTIONS=32    wrk connections per point (split evenly over the servers of a point)
#   SCHEDULES=50      schedules in the store before the run
#   POOL_SIZE=4       --pool-size of each server (persistent workers: the mode to use with
#                     PostgreSQL, README "PostgreSQL: many instances, one store")
#   SERVER_THREADS=1  --threads of each server
#   BUILD=false       use the release build that is there
#   KEEP_WORK=1       keep the temporary folder (logs, the PostgreSQL cluster)
#
# PostgreSQL is started by the script in its temporary folder on a free loopback port (as the
# `postgres` user when run as root: PostgreSQL refuses root), with fsync off, and stopped on any
# exit. Two servers on one 2-core machine share the cores with wrk and PostgreSQL: the point
# shows that two instances serve one store correctly and what that costs here, not how it scales
# on separate machines.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
SCHEDULES=${SCHEDULES:-50}
POOL_SIZE=${POOL_SIZE:-4}
SERVER_THREADS=${SERVER_THREADS:-1}
BUILD=${BUILD:-true}

log() { printf '[pg-http-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$BUILD" = true ]; then
    bash "$ROOT/scripts/install-deps.sh" --bench
    log "building schedule_server and schedule_worker (release)"
    timeout 1800 cmake --preset release >/dev/null
    timeout 1800 cmake --build --preset release --target schedule_server schedule_worker
fi
for command in wrk python3 curl psql; do
    command -v "$command" >/dev/null 2>&1 || die "missing program: $command"
done
SERVER=$ROOT/build/release/examples/schedule_server/schedule_server
WORKER=$ROOT/build/release/examples/schedule_worker/schedule_worker
[ -x "$SERVER" ] || die "$SERVER is not built"
[ -x "$WORKER" ] || die "$WORKER is not built"
PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || die "PostgreSQL is not installed (apt-get install postgresql)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/btq-pg-http-bench.XXXXXX")
chmod 755 "$WORK"
SERVER_PIDS=()
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$WORK/pg" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -f "$WORK/pg/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
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

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
}
read -r PG_PORT PORT_A PORT_B PORT_S <<<"$(free_ports 4)"

log "PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_postgres "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U btq --no-sync >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
as_postgres "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c fsync=off -c max_connections=100" \
    start >/dev/null || { cat "$WORK/pg/server.log" >&2; die "PostgreSQL did not start"; }
psql -h 127.0.0.1 -p "$PG_PORT" -U btq -d postgres -qc 'CREATE DATABASE schedules' >/dev/null
PG_URL="postgresql://btq@127.0.0.1:$PG_PORT/schedules"

log "data: sample data + $SCHEDULES schedules, in SQLite and in PostgreSQL"
cp -a examples/schedule_server/sample-data "$WORK/sqlite"
cp -a examples/schedule_server/sample-data "$WORK/pgdata"
timeout 300 python3 bench/http/seed_data.py --worker "$WORKER" --data-dir "$WORK/sqlite" \
    --schedules "$SCHEDULES"
SCHEDULE_DATABASE=$PG_URL timeout 300 python3 bench/http/seed_data.py --worker "$WORKER" \
    --data-dir "$WORK/pgdata" --schedules "$SCHEDULES"

# start_server NAME PORT DATA_DIR [--database URL]
start_server() {
    local name=$1 port=$2 data=$3
    shift 3
    "$SERVER" --address 127.0.0.1 --port "$port" --mode pool --pool-size "$POOL_SIZE" \
        --no-access-log --threads "$SERVER_THREADS" --data-dir "$data" --sample-data '' \
        --worker "$WORKER" --queue-capacity 1000 "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PIDS+=($!)
    for _ in $(seq 150); do
        curl -sf --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    cat "$WORK/$name.log" >&2
    die "$name did not become ready"
}
start_server sqlite "$PORT_S" "$WORK/sqlite"
start_server pg-a "$PORT_A" "$WORK/pgdata" --database "$PG_URL"
start_server pg-b "$PORT_B" "$WORK/pgdata" --database "$PG_URL"

# wrk's scripts: bench/http/status_counts.lua counts the answers per status and writes the
# point's numbers as JSON ($WRK_JSON_OUT); the import's script sets the request first. Every
# import posts the same two-item schedule (the store gives each its own id), so the listing
# grows during the write points; the listing points run first.
GET_SCRIPT=$ROOT/bench/http/status_counts.lua
IMPORT_SCRIPT=$WORK/import.lua
{
    cat <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name":"bench","channel":"campus-tv","items":[' ..
  '{"title":"News","url":"https://media.example.org/news.mp4","start":"2026-12-01T08:00:00+01:00","duration":1800},' ..
  '{"title":"Weather","url":"https://media.example.org/weather.mp4","start":"2026-12-01T08:30:00+01:00","duration":600}]}'
LUA
    cat "$GET_SCRIPT"
} >"$IMPORT_SCRIPT"

# point LABEL SCRIPT PATH PORT... : wrk on every port at once, CONNECTIONS split over them.
RESULTS=$WORK/results.txt
point() {
    local label=$1 script=$2 path=$3
    shift 3
    local ports=("$@") count=$#
    local per=$((CONNECTIONS / count))
    local pids=() i=0
    for port in "${ports[@]}"; do
        WRK_JSON_OUT="$WORK/wrk-$label-$i.json" timeout $((DURATION + 60)) \
            wrk -t1 -c"$per" -d"${DURATION}s" --latency -s "$script" \
            "http://127.0.0.1:$port$path" >"$WORK/wrk-$label-$i.txt" 2>&1 &
        pids+=($!)
        i=$((i + 1))
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || die "wrk failed for $label (see $WORK/wrk-$label-*.txt)"
    done
    for ((i = 0; i < count; i++)); do
        echo "$label $WORK/wrk-$label-$i.json" >>"$RESULTS"
    done
    log "$label done"
}

log "points: $DURATION s each, $CONNECTIONS connections, GET /api/schedules and POST /api/import-schedule"
for endpoint in list import; do
    if [ "$endpoint" = list ]; then
        script=$GET_SCRIPT path=/api/schedules
    else
        script=$IMPORT_SCRIPT path=/api/import-schedule
    fi
    point "$endpoint:sqlite-one" "$script" "$path" "$PORT_S"
    point "$endpoint:postgres-one" "$script" "$path" "$PORT_A"
    point "$endpoint:postgres-two" "$script" "$path" "$PORT_A" "$PORT_B"
done

# Both PostgreSQL servers list the same schedules (one store).
count_a=$(curl -sf "http://127.0.0.1:$PORT_A/api/schedules" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["schedules"]))')
count_b=$(curl -sf "http://127.0.0.1:$PORT_B/api/schedules" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["schedules"]))')
log "schedules listed by the two PostgreSQL servers: $count_a and $count_b"
[ "$count_a" = "$count_b" ] || die "the two servers on one PostgreSQL list different schedules"

mkdir -p bench/results
python3 - "$RESULTS" "$DURATION" "$CONNECTIONS" "$count_a" <<'PY'
import collections, json, sys, time

results_file, duration, connections, listed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
points = collections.OrderedDict()
for line in open(results_file):
    label, path = line.split()
    result = json.load(open(path))
    percentiles = result["latency_us"]["percentiles"]
    entry = points.setdefault(label, {"rate": 0.0, "p50": 0.0, "p99": 0.0, "statuses": {},
                                      "socket_errors": 0})
    entry["rate"] += result["requests_per_s"]
    # Two servers: the slower server's percentile (an upper bound of the point's).
    entry["p50"] = max(entry["p50"], percentiles["50"] / 1000.0)
    entry["p99"] = max(entry["p99"], percentiles["99"] / 1000.0)
    entry["socket_errors"] += sum(v for k, v in result["errors"].items() if k != "status")
    for status, count in result["statuses"].items():
        entry["statuses"][status] = entry["statuses"].get(status, 0) + count

stamp = time.strftime("%Y%m%d-%H%M%S")
with open(f"bench/results/postgres-http-{stamp}.json", "w") as out:
    json.dump({"duration_s": int(duration), "connections": int(connections), "points": points},
              out, indent=2)
names = {"sqlite-one": "one server, SQLite", "postgres-one": "one server, PostgreSQL",
         "postgres-two": "two servers, one PostgreSQL"}
print("| endpoint | setup | requests/s | p50 (ms) | p99 (ms) | answers |")
print("| --- | --- | ---: | ---: | ---: | --- |")
for label, entry in points.items():
    endpoint, setup = label.split(":")
    path = "GET /api/schedules" if endpoint == "list" else "POST /api/import-schedule"
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(entry["statuses"].items()))
    if entry["socket_errors"]:
        statuses += f", socket errors: {entry['socket_errors']}"
    print(f"| {path} | {names[setup]} | {entry['rate']:,.0f} | {entry['p50']:.2f} | "
          f"{entry['p99']:.2f} | {statuses} |")
print()
print(f"{duration} s per point, {connections} wrk connections per point (split over the servers); "
      f"after the run both PostgreSQL servers listed the same {listed} schedules.")
PY
