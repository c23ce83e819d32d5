#!/usr/bin/env bash
# Checks the systemd unit of schedule_server as `cmake --install` writes it (README.md,
# "Installing"), from a build folder whose schedule_server and schedule_worker are built:
#
#   1. installs the "server" component into a temporary prefix (so ExecStart names a program
#      that exists, which systemd-analyze checks);
#   2. `systemd-analyze verify` on the installed unit: any output at all fails;
#   3. the installed programs have no executable stack (the unit sets MemoryDenyWriteExecute=yes,
#      under which a program that needs one fails to start its threads);
#   4. the installed server started with the unit's own ExecStart flags (the data folder and the
#      port swapped for a temporary folder and a free port) listens, fills the new data folder
#      from the installed sample data (found from its own place), answers /healthz and stops
#      with exit status 0 on SIGTERM: every flag in the unit is one the server takes.
#
# Usage: scripts/verify-unit.sh BUILD_DIR
# Exit status: 0 passed, 1 failed, 77 skipped (no systemd-analyze: Debian package "systemd").
set -euo pipefail

build_dir="${1:?usage: verify-unit.sh BUILD_DIR}"
build_dir="$(cd "${build_dir}" && pwd)"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify-unit: SKIPPED: systemd-analyze not found (Debian: apt-get install systemd)"
    exit 77
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/btq-verify-unit-XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "${server_pid}" ] && kill -0 "${server_pid}" 2>/dev/null; then
        kill -KILL "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

fail() {
    echo "verify-unit: FAILED: $*" >&2
    exit 1
}

# shellcheck source=scripts/lib/server-probe.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server-probe.sh"

prefix="${work}/prefix"
cmake --install "${build_dir}" --component server --prefix "${prefix}" >"${work}/install.log" ||
    { cat "${work}/install.log" >&2; fail "cmake --install --component server"; }
unit="${prefix}/lib/systemd/system/schedule-server.service"
[ -f "${unit}" ] || fail "the install has no ${unit#"${work}/"}"

# 2. systemd-analyze verify: it writes nothing for a sound unit.
output="$(systemd-analyze verify "${unit}" 2>&1)" || fail "systemd-analyze verify: ${output}"
if [ -n "${output}" ]; then
    fail "systemd-analyze verify printed:"$'\n'"${output}"
fi
echo "verify-unit: systemd-analyze verify: no warnings"

# 3. No executable stack (GNU_STACK RWE) in the programs MemoryDenyWriteExecute=yes runs.
if command -v readelf >/dev/null 2>&1; then
    for program in schedule_server schedule_worker; do
        stack="$(readelf -lW "${prefix}/bin/${program}" | grep GNU_STACK || true)"
        if [ -z "${stack}" ] || grep -q 'RWE' <<<"${stack}"; then
            fail "${program} asks for an executable stack (${stack:-no GNU_STACK header})"
        fi
    done
    echo "verify-unit: no executable stack in schedule_server, schedule_worker"
fi

# 4. The unit's ExecStart, its continuation lines joined, run for real.
exec_start="$(awk '/^ExecStart=/ { on = 1 }
    on { more = /\\$/; sub(/\\$/, ""); printf "%s ", $0; if (!more) exit }' "${unit}")"
exec_start="${exec_start#ExecStart=}"
read -r -a command <<<"${exec_start}"
[ "${command[0]}" = "${prefix}/bin/schedule_server" ] ||
    fail "ExecStart runs ${command[0]}, not the installed ${prefix}/bin/schedule_server"
arguments=()
for ((index = 1; index < ${#command[@]}; ++index)); do
    case "${command[index]}" in
    --data-dir)
        arguments+=(--data-dir "${work}/data")
        index=$((index + 1))
        ;;
    --port)
        arguments+=(--port 0)
        index=$((index + 1))
        ;;
    "\$SCHEDULE_SERVER_OPTIONS") ;; # from /etc/default/schedule-server: empty here
    *) arguments+=("${command[index]}") ;;
    esac
done
log="${work}/server.log"
start_server "${log}" "${command[0]}" "${arguments[@]}"
[ -n "${port}" ] || fail "the server with the unit's flags did not start:"$'\n'"$(cat "${log}")"
grep -q "filled from ${prefix}/share/btq/sample-data" "${log}" ||
    fail "the installed server did not find the installed sample data:"$'\n'"$(cat "${log}")"
status="$(http_get "${port}" /healthz | head -n 1 | tr -d '\r')"
[[ "${status}" == "HTTP/1.1 200"* ]] || fail "GET /healthz answered '${status}'"
kill -TERM "${server_pid}"
rc=0
wait "${server_pid}" || rc=$?
server_pid=""
[ "${rc}" -eq 0 ] || fail "the server exited ${rc} on SIGTERM:"$'\n'"$(cat "${log}")"
echo "verify-unit: the server runs with the unit's flags (${arguments[*]})"
echo "verify-unit: OK"
