#!/usr/bin/env bash
# Installs the Debian (bookworm) packages needed to build, test and benchmark btq.
# Does nothing (no apt-get update) when every package is already installed.
#   --bench   also the tools of the HTTP load comparison (bench/http): wrk, Node.js and npm
set -euo pipefail

PACKAGES=(
    # Toolchain and build system: every build.
    build-essential cmake ninja-build
    # The second compiler the library is tested with, and its libFuzzer runtime (tests/fuzz).
    clang libclang-rt-14-dev
    # The format check of scripts/test.sh (version 16 understands C++20 requires clauses).
    clang-format-16
    # Unit tests (tests/): Catch2 v2.
    catch2
    # Benchmarks (bench/): Google Benchmark and the other libraries bench/ uses
    # (Boost incl. Boost.JSON, oneTBB, thread-pool).
    libbenchmark-dev libboost1.81-dev libboost-json1.81-dev libtbb-dev libthread-pool-dev
    # The example worker (examples/schedule_worker): SQLite for storage, pugixml for XMLTV.
    libsqlite3-dev libpugixml-dev
    # The example server's command line (examples/schedule_server): CLI11.
    libcli11-dev
    # The tests validate the worker's XMLTV exports against the XMLTV DTD with xmllint: Debian's
    # libxmltv-perl ships the DTD, libxml2-utils xmllint.
    libxmltv-perl libxml2-utils
    # The cluster-wide permits (include/btq/redis, target btq::redis): the hiredis client, and the
    # Redis 7 server its tests (tests/redis) start on a free loopback port of their own; CMake finds
    # hiredis through pkg-config, which libhiredis-dev does not pull in.
    redis-server libhiredis-dev pkg-config
    # The example worker's PostgreSQL store (--database postgresql://...): libpq's header to
    # build it (libpq itself is loaded at run time), and the PostgreSQL 15 server its tests start
    # in a temporary folder of their own (initdb and postgres from /usr/lib/postgresql/15/bin).
    postgresql libpq-dev
    # Operating it (docs/ops): promtool checks and unit-tests the Prometheus alerting rules; the
    # dashboard checker is Python 3 (standard library only). Doxygen builds the API reference.
    prometheus python3 doxygen
    # The dashboard's browser test (tests/browser): Chromium headless, driven over the DevTools
    # protocol by a Python script (standard library only).
    chromium
)

if [ "${1:-}" = "--bench" ]; then
    PACKAGES+=(wrk curl)
    # Node.js and npm run the re-creation of the seed's server (bench/peers/node-seed). A node
    # installed some other way (e.g. NodeSource, which bundles npm) is used as it is.
    if ! command -v npm >/dev/null 2>&1; then
        PACKAGES+=(nodejs npm)
    fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

echo "install-deps: installing missing packages: ${missing[*]}"
"${SUDO[@]}" apt-get update
# Passed as an argument so it also survives sudo's environment reset.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
