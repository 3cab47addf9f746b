#!/usr/bin/env bash
# Everything a fresh machine needs before the addon can be built and used: the npm dev tools
# (napi CLI, TypeScript, tsx) and a debug build of the native addon. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (Rust) is required: https://rustup.rs" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/napi ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dev dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
profile_flag=""
[ "${PERSIST_RELEASE:-}" = "1" ] && profile_flag="--release"
echo "setup: building the native addon${profile_flag:+ (release)}" >&2
node_modules/.bin/napi build --platform $profile_flag --js binding.js --dts binding.d.ts >&2
