#!/usr/bin/env bash
# The local S3 servers the S3 tests need (../shared/notes/s3-test-server.md): moto 5.2.5 in a
# venv outside the clone (/var/tmp/cuitty-persist-s3venv, shared by every clone on the machine,
# like cargo's target cache), started on loopback when not answering.
#   127.0.0.1:9000  no signature checks; the conformance suite and most S3 tests
#   127.0.0.1:9001  signature-checking (INITIAL_NO_AUTH_ACTION_COUNT=3); its IAM user's key is
#                   written to <venv>/auth-9001.json for the wrong-secret test
# Idempotent: when both answer (and the key file exists), it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PERSIST_S3_VENV:-/var/tmp/cuitty-persist-s3venv}"
MOTO_VERSION="5.2.5"

answers() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }
# The signature-checking instance counts every request against its three unauthenticated
# ones, so it is probed by connecting only.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if answers 9000 && listening 9001 && [ -s "$VENV/auth-9001.json" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "== installing moto[server]==$MOTO_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION"
fi

start() { # probe, port, extra env...
  local probe=$1 port=$2; shift 2
  if "$probe" "$port"; then return 0; fi
  echo "== starting moto on 127.0.0.1:$port (log $VENV/moto-$port.log)" >&2
  env "$@" setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$VENV/moto-$port.log" 2>&1 < /dev/null &
  echo $! >"$VENV/moto-$port.pid"
  for _ in $(seq 300); do "$probe" "$port" && return 0; sleep 0.1; done
  echo "moto on port $port did not answer within 30 s; see $VENV/moto-$port.log" >&2
  exit 1
}

start answers 9000
if [ ! -s "$VENV/auth-9001.json" ] && listening 9001; then
  # Its key was never recorded here (an instance of an earlier venv, say): its free calls may be
  # spent, so start it afresh.
  kill "$(cat "$VENV/moto-9001.pid" 2>/dev/null)" 2>/dev/null || true
  for pid in $(ss -ltnpH 'sport = :9001' 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2); do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do listening 9001 || break; sleep 0.1; done
fi
if ! listening 9001; then
  rm -f "$VENV/auth-9001.json"
  start listening 9001 INITIAL_NO_AUTH_ACTION_COUNT=3
fi

if [ ! -s "$VENV/auth-9001.json" ]; then
  # The three unauthenticated calls: CreateUser, CreateAccessKey, PutUserPolicy (s3:*).
  "$VENV/bin/python" - <<'PY' >"$VENV/auth-9001.json.tmp"
import json, re, urllib.parse, urllib.request
def iam(params):
    body = urllib.parse.urlencode({**params, "Version": "2010-05-08"}).encode()
    req = urllib.request.Request("http://127.0.0.1:9001/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x"})
    return urllib.request.urlopen(req).read().decode()
iam({"Action": "CreateUser", "UserName": "persist-test"})
out = iam({"Action": "CreateAccessKey", "UserName": "persist-test"})
key = re.search(r"<AccessKeyId>(.*?)</AccessKeyId>", out).group(1)
secret = re.search(r"<SecretAccessKey>(.*?)</SecretAccessKey>", out).group(1)
policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
iam({"Action": "PutUserPolicy", "UserName": "persist-test", "PolicyName": "s3-all", "PolicyDocument": policy})
print(json.dumps({"accessKeyId": key, "secretAccessKey": secret}))
PY
  mv "$VENV/auth-9001.json.tmp" "$VENV/auth-9001.json"
fi
