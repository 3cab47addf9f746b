#!/usr/bin/env bash
# npm run bench [-- --only persist-sqlite,better-sqlite3 --runs 3 --n 100000 --phases ...]
# Builds the release addon, installs the bench's own dependencies (bench/package.json, kept apart
# from the library's install), then runs bench/run.mjs on that release build (run.mjs snapshots
# it, so a debug rebuild in the repo meanwhile does not leak into the figures).
# BENCH_SKIP_BUILD=1 uses persist.linux-x64-gnu.node as it is (the report says which build it is).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

addon_args=()
if [ "${BENCH_SKIP_BUILD:-}" != "1" ]; then
  PERSIST_RELEASE=1 bash scripts/setup.sh
  crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' Cargo.toml | head -1 | tr - _)
  release=$(ls -t target/*/release/lib"$crate".so target/release/lib"$crate".so 2>/dev/null | head -1 || true)
  [ -n "$release" ] && addon_args=(--addon "$release")
fi
if [ ! -f bench/node_modules/.package-lock.json ] || [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
  echo "bench: installing the bench dependencies (better-sqlite3 and sqlite3 build from source: a few minutes)" >&2
  if [ -f bench/package-lock.json ]; then
    (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd bench && npm install --no-audit --no-fund --loglevel=error)
  fi
fi
exec node bench/run.mjs "${addon_args[@]}" "$@"
