#!/usr/bin/env bash
# Installs what is missing, builds the example server and its worker (release preset), and starts
# the server on http://127.0.0.1:5000 with its data in ./data (SQLite, created on first use, with
# the sample playlists and video feed copied in). Extra arguments go to the server, e.g.
#   bash scripts/run-example.sh --mode spawn --port 8080
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

cmake --preset release
cmake --build --preset release --target schedule_server schedule_worker

exec ./build/release/examples/schedule_server/schedule_server --data-dir data "$@"
