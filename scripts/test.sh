#!/usr/bin/env bash
# Full verification: dev build + all tests, then the library tests under
# AddressSanitizer/UBSan and under ThreadSanitizer.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=2

stage() {
    local name="$1"
    shift
    echo
    echo "=================================================================="
    echo "== ${name}"
    echo "=================================================================="
    local start=$SECONDS
    if "$@"; then
        echo "== ${name}: OK ($((SECONDS - start)) s)"
    else
        local rc=$?
        echo "== ${name}: FAILED with exit code ${rc} ($((SECONDS - start)) s)" >&2
        exit "${rc}"
    fi
}

stage "install dependencies" bash scripts/install-deps.sh

stage "dev: configure"  cmake --preset dev
stage "dev: build"      cmake --build --preset dev
stage "dev: test"       ctest --preset dev --parallel "${JOBS}"

for preset in asan tsan; do
    stage "${preset}: configure" cmake --preset "${preset}"
    stage "${preset}: build"     cmake --build --preset "${preset}" --target btq_library_tests
    stage "${preset}: test"      ctest --preset "${preset}" --parallel "${JOBS}"
done

echo
echo "All stages passed in ${SECONDS} s."
