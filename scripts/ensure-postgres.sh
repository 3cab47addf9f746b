#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 for the Postgres tests: starts the installed
# cluster if it is stopped, installs PostgreSQL with apt-get if it is absent, then creates the
# role `persist` (password `persist`, or $PG_PASSWORD) and the database `persist` it owns, and
# makes that role authenticate with its password over TCP (so a wrong password is refused; other
# roles keep the machine's settings). Idempotent; safe to run before every test run.
set -euo pipefail

PASSWORD="${PG_PASSWORD:-persist}"

answers() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "== installing PostgreSQL (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

VERSION="$(ls /etc/postgresql | sort -V | tail -n1)"
if ! answers; then
  echo "== starting PostgreSQL $VERSION" >&2
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start || true
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
fi
answers || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }

psql_su() { su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -At $*"; }

# Role and database.
if [ "$(psql_su "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'persist'\"")" != "1" ]; then
  psql_su "-c \"CREATE ROLE persist LOGIN PASSWORD '$PASSWORD'\""
else
  psql_su "-c \"ALTER ROLE persist LOGIN PASSWORD '$PASSWORD'\""
fi
if [ "$(psql_su "-c \"SELECT 1 FROM pg_database WHERE datname = 'persist'\"")" != "1" ]; then
  psql_su "-c \"CREATE DATABASE persist OWNER persist ENCODING 'UTF8' TEMPLATE template0\""
fi

# Password authentication for `persist` over TCP (first matching line wins in pg_hba.conf).
HBA="$(psql_su "-c 'SHOW hba_file'")"
MARK="# cuitty-persist: the test role authenticates with its password"
if ! grep -qF "$MARK" "$HBA"; then
  tmp="$(mktemp)"
  { echo "$MARK"
    echo "host all persist 127.0.0.1/32 scram-sha-256"
    echo "host all persist ::1/128 scram-sha-256"
    cat "$HBA"; } >"$tmp"
  cat "$tmp" >"$HBA"
  rm -f "$tmp"
  psql_su "-c 'SELECT pg_reload_conf()'" >/dev/null
fi
echo "== PostgreSQL $VERSION ready on 127.0.0.1:5432 (database persist, role persist)" >&2
