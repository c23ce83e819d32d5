#!/usr/bin/env bash
# Full verification: the format check, dev build + all tests (library, Asio binding, schedule_worker, server,
# packaging), the library tests and the parser fuzzers built with Clang, then the library tests
# under AddressSanitizer/UBSan and under ThreadSanitizer.
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

# Formatting: every C++ file as clang-format 16 writes it with the repo's .clang-format.
format_check() {
    git ls-files '*.cpp' '*.hpp' | xargs clang-format-16 --dry-run -Werror
}
stage "format check (clang-format 16)" format_check

stage "dev: configure"  cmake --preset dev
stage "dev: build"      cmake --build --preset dev
stage "dev: test"       ctest --preset dev --parallel "${JOBS}"

# Clang: the library must build with both compilers the README names.
stage "clang: configure" cmake --preset clang
stage "clang: build"     cmake --build --preset clang --target btq_library_tests btq_asio_tests
stage "clang: test"      ctest --preset clang --parallel "${JOBS}"
# libFuzzer targets for the worker's parsers (tests/fuzz), each run for a bounded time.
stage "clang: build fuzzers" cmake --build --preset clang --target btq_fuzz_m3u btq_fuzz_schedule_request
stage "clang: fuzz"      ctest --test-dir build/clang -L fuzz --output-on-failure --parallel "${JOBS}"

for preset in asan tsan; do
    stage "${preset}: configure" cmake --preset "${preset}"
    stage "${preset}: build"     cmake --build --preset "${preset}" --target btq_library_tests btq_asio_tests
    stage "${preset}: test"      ctest --preset "${preset}" --parallel "${JOBS}"
done

echo
echo "All stages passed in ${SECONDS} s."
