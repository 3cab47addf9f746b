#!/usr/bin/env bash
# Every test: the Rust core (cargo test), lint, the conformance suite and the adapter-specific
# JS tests (which include the type test and the pack test). Does its own set-up on a fresh
# machine. With CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/setup.sh

echo "== cargo fmt --check" >&2
cargo fmt --check
echo "== cargo clippy" >&2
cargo clippy --all-targets -- -D warnings
echo "== cargo test (the core, without Node)" >&2
cargo test --no-default-features

bash scripts/ensure-postgres.sh   # the Postgres tests need the local server, role and database
bash scripts/ensure-s3.sh         # the S3 tests need moto on 127.0.0.1:9000 (and :9001, signature-checking)
echo "== node --test" >&2
node --test --test-concurrency=2 --test-timeout=600000 __test__/*.test.mjs
# Tests that disturb shared servers (a Postgres restart): alone, after everything else.
echo "== node --test (exclusive: one at a time, nothing else running)" >&2
node --test --test-concurrency=1 --test-timeout=600000 __test__/exclusive/*.test.mjs

echo "== all tests passed in $(( $(date +%s) - start )) s" >&2
