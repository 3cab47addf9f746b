#!/usr/bin/env bash
# The quick start: build, then run examples/quickstart.mts on SQLite (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node_modules/.bin/tsx examples/quickstart.mts
