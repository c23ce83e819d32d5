# shellcheck shell=bash
# What scripts/test-deb.sh and scripts/verify-unit.sh share to check an installed server: an HTTP
# GET without curl, and a server started on a free port whose port is read from its log.
# Sourced; the caller defines fail() and cleans server_pid up.

# http_get PORT PATH: the whole answer of GET PATH on 127.0.0.1:PORT (bash's /dev/tcp: no curl
# needed), at most 5 s.
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    timeout 5 cat <&3 || true
    exec 3<&- 3>&-
}

# start_server LOG PROGRAM ARGUMENTS...: starts the server (given --port 0 among its arguments)
# with its output in LOG, and waits up to 5 s for its "listening on" line. Sets server_pid, and
# port (empty when the server exited or did not listen in time).
start_server() {
    local log="$1"
    shift
    : >"${log}" # there before the server starts: the loop below reads it at once
    "$@" >"${log}" 2>&1 &
    server_pid=$!
    port=""
    for _ in $(seq 1 100); do
        port="$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "${log}")"
        [ -n "${port}" ] && break
        kill -0 "${server_pid}" 2>/dev/null || break
        sleep 0.05
    done
}
