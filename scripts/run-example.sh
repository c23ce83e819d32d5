#!/usr/bin/env bash
# Builds the examples with the release preset and runs the "overload" example.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

cmake --preset release
cmake --build --preset release --target btq_example_overload

exec ./build/release/examples/basic/overload "$@"
