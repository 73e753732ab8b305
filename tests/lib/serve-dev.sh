# Shared by the suites that drive a real `keyplane serve --dev` (tests/astrapy, tests/portal,
# tests/astra-db-ts, tests/openapi): source it from a run.sh, then
#
#   kp_serve_dev BIN [SERVE_ARGS…]     starts the server on free ports in a fresh data dir and
#                                      sets KP_API, KP_TOKEN, KP_CREDS, KP_WORK, KP_LOG;
#                                      an EXIT trap stops it and removes KP_WORK
#   kp_customer_key BIN TYPE REGION    makes a key in the built-in KMS, in that AWS region,
#                                      whose policy lets the platform in, registers it for
#                                      TYPE (classic or serverless), prints its ARN; for
#                                      serverless, the organization first takes every provider
#                                      ID of the dev pool, so several databases can deploy
#   kp_create_database JSON            POST /v2/databases, waits for ACTIVE, prints the ID
#   kp_wait_active ID                  waits until the database is ACTIVE
#   kp_json_get KEY…  <JSON            prints one member of the JSON on standard input
#   kp_log_tail                        the last lines of the server's log (for failures)
#
# Only python3's standard library is used here (every suite's machine has it).

kp_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

kp_wait_port() {
  python3 - "$1" <<'PY'
import socket, sys, time
end = time.time() + 30
while time.time() < end:
    s = socket.socket(); s.settimeout(0.2)
    if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0:
        sys.exit(0)
    s.close(); time.sleep(0.2)
sys.exit(1)
PY
}

kp_json_get() {
  python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"
}

kp_log_tail() { echo "== last lines of the server's log"; tail -n "${1:-40}" "$KP_LOG" 2>/dev/null || true; }

KP_SERVER_PID=""
kp_cleanup() {
  if [ -n "$KP_SERVER_PID" ]; then
    kill "$KP_SERVER_PID" 2>/dev/null || true
    wait "$KP_SERVER_PID" 2>/dev/null || true
    KP_SERVER_PID=""
  fi
  [ -n "${KP_WORK:-}" ] && rm -rf "$KP_WORK"
}

kp_serve_dev() {
  local bin="$1"; shift
  [ -x "$bin" ] || { echo "no executable at $bin (cargo build -p keyplane)" >&2; return 2; }
  KP_WORK="$(mktemp -d)"
  trap kp_cleanup EXIT
  local api_port kms_port
  api_port="$(kp_free_port)"
  kms_port="$(kp_free_port)"
  KP_LOG="$KP_WORK/server.log"
  "$bin" serve --dev --data-dir "$KP_WORK/data" --listen "127.0.0.1:$api_port" \
    --kms-listen "127.0.0.1:$kms_port" --azure-listen 127.0.0.1:0 "$@" >"$KP_LOG" 2>&1 &
  KP_SERVER_PID=$!
  kp_wait_port "$api_port" || { echo "keyplane did not start:"; cat "$KP_LOG"; return 1; }
  KP_CREDS="$KP_WORK/data/dev-credentials.json"
  for _ in $(seq 1 50); do [ -s "$KP_CREDS" ] && break; sleep 0.1; done
  KP_API="http://127.0.0.1:$api_port"
  KP_TOKEN="$(kp_json_get token <"$KP_CREDS")"
  export KP_API KP_TOKEN KP_CREDS KP_WORK KP_LOG
}

# A serverless database needs a provider ID of its own that the key lets in (the serverless
# provider-ID rule), and the suites deploy several: before the first serverless key, the
# organization takes every provider ID `serve --dev` has (four AWS roles), so the statements
# `key policy` prints name them all. Once the pool is spent the next assignment is refused
# (409), which ends the loop: a later call costs one refused request.
kp_take_provider_ids() {
  for _ in 1 2 3; do
    curl -sf -X POST "$KP_API/v2/kms/classic/provider/aws/accounts" -H "Authorization: Bearer $KP_TOKEN" \
      -H 'content-type: application/json' -d '{}' >/dev/null || break
  done
}

kp_customer_key() {
  local bin="$1" type="$2" region="$3" arn
  [ "$type" = serverless ] && kp_take_provider_ids
  arn="$("$bin" kms create-key --credentials-file "$KP_CREDS" --region "$region" --description "$type-$region" | kp_json_get KeyMetadata Arn)"
  "$bin" key policy --type "$type" --region "$region" --credentials-file "$KP_CREDS" >"$KP_WORK/statements.json"
  python3 - "$KP_WORK/statements.json" "$KP_WORK/policy.json" <<'PY'
import json, sys
stmts = json.load(open(sys.argv[1]))["statements"]
root = {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}
json.dump({"Version": "2012-10-17", "Statement": [root] + stmts}, open(sys.argv[2], "w"))
PY
  "$bin" kms put-key-policy --credentials-file "$KP_CREDS" --region "$region" --key-id "$arn" --policy-file "$KP_WORK/policy.json" >/dev/null
  "$bin" key register --type "$type" --region "$region" --key-id "$arn" --credentials-file "$KP_CREDS" >/dev/null
  echo "$arn"
}

kp_wait_active() {
  local db="$1" status=""
  for _ in $(seq 1 300); do
    status="$(curl -sf "$KP_API/v2/databases/$db" -H "Authorization: Bearer $KP_TOKEN" | kp_json_get status)"
    [ "$status" = ACTIVE ] && return 0
    sleep 0.1
  done
  echo "database $db never became ACTIVE ($status)" >&2
  return 1
}

kp_create_database() {
  local db
  db="$(curl -sf -X POST "$KP_API/v2/databases" -H "Authorization: Bearer $KP_TOKEN" \
    -H 'content-type: application/json' -d "$1" | kp_json_get id)" || return 1
  kp_wait_active "$db" || return 1
  echo "$db"
}
