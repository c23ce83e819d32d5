#!/usr/bin/env bash
# Builds the btq-schedule-server .deb from a build folder (CPack), installs it with dpkg, checks
# its files, runs the installed schedule_server (no --worker, no --sample-data: it must find both
# from its own place) on a free loopback port with a temporary data folder, checks GET /healthz
# and GET /api/playlists, stops it, purges the package and checks its files are gone. The package
# is purged and the server stopped whatever happens.
#
# Usage: scripts/test-deb.sh BUILD_DIR      (schedule_server and schedule_worker built in it)
# Exit status: 0 passed, 1 failed, 77 skipped: not root, no dpkg or cpack, or the package (or a
# file of its) is already on this machine (a real installation is never touched).
set -euo pipefail

build_dir="${1:?usage: test-deb.sh BUILD_DIR}"
build_dir="$(cd "${build_dir}" && pwd)"
package=btq-schedule-server

skip() {
    echo "test-deb: SKIPPED: $*"
    exit 77
}
fail() {
    echo "test-deb: FAILED: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || skip "installing a .deb needs root"
for tool in dpkg dpkg-query cpack; do
    command -v "${tool}" >/dev/null 2>&1 || skip "${tool} not found"
done
if dpkg-query -W -f '${Status}' "${package}" 2>/dev/null | grep -q 'installed'; then
    skip "${package} is installed on this machine: not replacing or removing it"
fi
# Files of the same names installed some other way would be overwritten, then purged.
for file in /usr/bin/schedule_server /usr/bin/schedule_worker \
    /usr/lib/systemd/system/schedule-server.service /usr/share/btq; do
    [ ! -e "${file}" ] || skip "${file} exists on this machine: not overwriting it"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/btq-test-deb-XXXXXX")"
server_pid=""
installed=0
# dpkg with its lock shared with apt and other sessions: wait up to 30 s for it.
run_dpkg() {
    local tries=0
    until dpkg "$@" >"${work}/dpkg.log" 2>&1; do
        if grep -q 'lock' "${work}/dpkg.log" && [ "${tries}" -lt 60 ]; then
            tries=$((tries + 1))
            sleep 0.5
            continue
        fi
        cat "${work}/dpkg.log" >&2
        return 1
    done
}
cleanup() {
    if [ -n "${server_pid}" ] && kill -0 "${server_pid}" 2>/dev/null; then
        kill -KILL "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    if [ "${installed}" -eq 1 ]; then
        run_dpkg --purge "${package}" || echo "test-deb: could not purge ${package}" >&2
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/server-probe.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server-probe.sh"

# 1. The packages, into a folder of this run's own (another build's packages stay apart).
(cd "${build_dir}" && cpack -G DEB -B "${work}/packages" -D CPACK_COMPONENTS_ALL=server >"${work}/cpack.log" 2>&1) ||
    { cat "${work}/cpack.log" >&2; fail "cpack -G DEB"; }
deb="$(find "${work}/packages" -maxdepth 1 -name "${package}_*.deb" | head -n 1)"
[ -n "${deb}" ] || fail "cpack wrote no ${package}_*.deb:"$'\n'"$(cat "${work}/cpack.log")"
echo "test-deb: built ${deb##*/}"
echo "test-deb: $(dpkg-deb -f "${deb}" Depends | sed 's/^/Depends: /')"

# 2. Installed, and every file where it belongs.
installed=1
run_dpkg -i "${deb}" || fail "dpkg -i ${deb##*/}"
expected=(
    /usr/bin/schedule_server
    /usr/bin/schedule_worker
    /usr/share/btq/sample-data/feed.m3u
    /usr/share/btq/sample-data/playlists/campus-news.m3u
    /usr/lib/systemd/system/schedule-server.service
    "/usr/share/doc/${package}/copyright"
)
for file in "${expected[@]}"; do
    [ -f "${file}" ] || fail "${file} is not installed"
    dpkg -S "${file}" >/dev/null 2>&1 || fail "${file} is not listed as ${package}'s"
done
for program in /usr/bin/schedule_server /usr/bin/schedule_worker; do
    [ -x "${program}" ] || fail "${program} is not executable"
done
grep -q '^ExecStart=/usr/bin/schedule_server ' /usr/lib/systemd/system/schedule-server.service ||
    fail "the installed unit does not run /usr/bin/schedule_server"
echo "test-deb: installed: ${expected[*]}"

# 3. The installed server, found as a user runs it: by name, with nothing but a data folder.
log="${work}/server.log"
start_server "${log}" schedule_server --port 0 --data-dir "${work}/data" --pool-size 2
[ -n "${port}" ] || fail "the installed server did not start:"$'\n'"$(cat "${log}")"
grep -q 'filled from /usr/share/btq/sample-data' "${log}" ||
    fail "the installed server did not use the installed sample data:"$'\n'"$(cat "${log}")"
health="$(http_get "${port}" /healthz | head -n 1 | tr -d '\r')"
[[ "${health}" == "HTTP/1.1 200"* ]] || fail "GET /healthz answered '${health}'"
playlists="$(http_get "${port}" /api/playlists)"
[[ "${playlists}" == "HTTP/1.1 200"* && "${playlists}" == *'"campus-news"'* ]] ||
    fail "GET /api/playlists (the installed worker) answered:"$'\n'"${playlists}"
echo "test-deb: the installed server on port ${port}: /healthz 200, /api/playlists 200"
kill -TERM "${server_pid}"
rc=0
wait "${server_pid}" || rc=$?
server_pid=""
[ "${rc}" -eq 0 ] || fail "the installed server exited ${rc} on SIGTERM:"$'\n'"$(cat "${log}")"

# 4. Purged: nothing of it is left.
run_dpkg --purge "${package}" || fail "dpkg --purge ${package}"
installed=0
for file in "${expected[@]}" /usr/share/btq; do
    [ ! -e "${file}" ] || fail "${file} is still there after dpkg --purge"
done
if dpkg-query -W -f '${Status}' "${package}" 2>/dev/null | grep -q 'installed'; then
    fail "dpkg still lists ${package} after --purge"
fi
echo "test-deb: purged: its files are gone"
echo "test-deb: OK"
