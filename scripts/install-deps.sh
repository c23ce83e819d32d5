#!/usr/bin/env bash
# Installs the Debian (bookworm) packages needed to build, test and benchmark btq.
# Does nothing (no apt-get update) when every package is already installed.
set -euo pipefail

PACKAGES=(
    # Toolchain and build system: every build.
    build-essential cmake ninja-build
    # The second compiler the library is tested with.
    clang
    # Unit tests (tests/): Catch2 v2.
    catch2
    # Benchmarks (bench/): Google Benchmark and the other libraries bench/ uses
    # (Boost incl. Boost.JSON, oneTBB, thread-pool).
    libbenchmark-dev libboost1.81-dev libboost-json1.81-dev libtbb-dev libthread-pool-dev
)

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
