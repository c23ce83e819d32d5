#!/usr/bin/env bash
# Soak and chaos run of the example server: a seeded mixed workload on up to 1,000 loopback
# connections, faults injected on a seeded schedule, one SIGTERM and restart on the same data
# folder, then an oracle over the client's record of every request (README, "Soak and chaos").
#
#   bash bench/soak/run.sh [--seconds N] [--seed S] [--mode spawn|pool]
#
# Defaults: 60 s, seed 1, pool mode. The server and worker come from BUILD_DIR (default
# build/plain, what scripts/test.sh builds); they are built there if missing. Loopback only;
# stops by itself; exits 1 on any oracle violation, 2 on bad arguments or a failed build.
# Run as root for the file-system faults (it mounts a tmpfs of its own under a temporary
# folder); otherwise they are skipped and the report says so.
# Results: bench/results/soak/<mode>-seed<S>-<N>s/ (report.txt, soak.svg, summary.json,
# records.jsonl, samples.json, the server logs); git-ignored.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

seconds=60
seed=1
mode=pool
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "${mode}" in spawn | pool) ;; *) echo "run.sh: --mode is spawn or pool" >&2; exit 2 ;; esac
case "${seconds}${seed}" in *[!0-9]*) echo "run.sh: --seconds and --seed are whole numbers" >&2; exit 2 ;; esac

build_dir="${BUILD_DIR:-build/plain}"
server="${build_dir}/examples/schedule_server/schedule_server"
worker="${build_dir}/examples/schedule_worker/schedule_worker"
if [ ! -x "${server}" ] || [ ! -x "${worker}" ]; then
    echo "run.sh: building schedule_server and schedule_worker in ${build_dir}"
    if [ ! -f "${build_dir}/CMakeCache.txt" ]; then
        cmake -S . -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 2
    fi
    cmake --build "${build_dir}" --parallel 2 --target schedule_server schedule_worker || exit 2
fi

out="bench/results/soak/${mode}-seed${seed}-${seconds}s"
rm -rf "${out}"
mkdir -p "${out}"
python3 bench/soak/soak.py --seconds "${seconds}" --seed "${seed}" --mode "${mode}" \
    --build-dir "${build_dir}" --out "${out}"
