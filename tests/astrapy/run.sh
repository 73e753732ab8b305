#!/usr/bin/env bash
# Runs astrapy (unmodified, from PyPI) against a real `keyplane serve --dev`:
#
#   tests/astrapy/run.sh [KEYPLANE_BINARY]      (default: target/debug/keyplane)
#
# Free ports, a fresh data dir; registers a customer key made in the built-in KMS (so the
# suspension test can disable it), creates a serverless database through the DevOps API,
# waits for ACTIVE, runs tests/astrapy/test_astrapy.py with the endpoint and token in the
# environment, and stops the server. Python comes from ./.venv (scripts/setup-test-deps).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
if ! "$py" -c 'import astrapy, pytest' 2>/dev/null; then
  echo "run.sh: astrapy and pytest are needed (scripts/setup-test-deps installs them into .venv)" >&2
  exit 2
fi
[ -x "$bin" ] || { echo "run.sh: no executable at $bin (cargo build -p keyplane)" >&2; exit 2; }

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 150); do
    if "$py" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}
json_get() { "$py" -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

api_port="$(free_port)"
kms_port="$(free_port)"
data="$work/data"
"$bin" serve --dev --data-dir "$data" --listen "127.0.0.1:$api_port" --kms-listen "127.0.0.1:$kms_port" \
  --key-check-interval 2 >"$work/server.log" 2>&1 &
server_pid=$!
wait_port "$api_port" || { echo "keyplane did not start:"; cat "$work/server.log"; exit 1; }
creds="$data/dev-credentials.json"
for _ in $(seq 1 50); do [ -s "$creds" ] && break; sleep 0.1; done
api="http://127.0.0.1:$api_port"
token="$(json_get token <"$creds")"

# A customer key: the account's own statement plus the ones `keyplane key policy` prints.
arn="$("$bin" kms create-key --credentials-file "$creds" --description astrapy | json_get KeyMetadata Arn)"
"$bin" key policy --type serverless --region us-east-2 --credentials-file "$creds" >"$work/statements.json"
"$py" - "$work/statements.json" "$work/policy.json" <<'PY'
import json, sys
stmts = json.load(open(sys.argv[1]))["statements"]
root = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}
json.dump({"Version": "2012-10-17", "Statement": [root] + stmts}, open(sys.argv[2], "w"))
PY
"$bin" kms put-key-policy --credentials-file "$creds" --key-id "$arn" --policy-file "$work/policy.json" >/dev/null
"$bin" key register --type serverless --region us-east-2 --key-id "$arn" --credentials-file "$creds" >/dev/null

# A serverless (vector) database, as astrapy's admin would create one; wait for ACTIVE.
db="$(curl -sf -X POST "$api/v2/databases" -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"astrapy","keyspace":"default_keyspace","cloudProvider":"AWS","tier":"serverless","capacityUnits":1,"region":"us-east-2","dbType":"vector"}' \
  | json_get id)"
for _ in $(seq 1 300); do
  status="$(curl -sf "$api/v2/databases/$db" -H "Authorization: Bearer $token" | json_get status)"
  [ "$status" = ACTIVE ] && break
  sleep 0.1
done
[ "$status" = ACTIVE ] || { echo "database $db never became ACTIVE ($status)"; cat "$work/server.log"; exit 1; }

echo "== astrapy $("$py" -c 'import astrapy; print(astrapy.__version__)') against keyplane at $api (database $db)"
KEYPLANE_API_URL="$api" KEYPLANE_TOKEN="$token" KEYPLANE_DB_ID="$db" \
  KEYPLANE_ENDPOINT="$api/db/$db-us-east-2" KEYPLANE_BIN="$bin" KEYPLANE_CREDENTIALS="$creds" \
  KEYPLANE_KEY_ARN="$arn" \
  "$py" -m pytest -q -p no:cacheprovider "$here/test_astrapy.py" || { rc=$?; tail -n 40 "$work/server.log"; exit $rc; }
