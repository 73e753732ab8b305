#!/usr/bin/env bash
# Runs the Google Cloud KMS conformance suite: Google's official Python client
# (google-cloud-kms, REST transport, unmodified) against keyplane's built-in KMS.
#
#   tests/conformance-gcp/run.sh [KEYPLANE_BINARY] [-- PYTEST_ARGS…]
#
# KEYPLANE_BINARY defaults to target/debug/keyplane, run as `keyplane kms serve`. The server
# writes every identity's dev token to <data-dir>/credentials.json, which the suite reads.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/target/debug/keyplane"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then bin="$1"; shift; fi
[ "${1:-}" = "--" ] && shift

if ! python3 -c 'import google.cloud.kms, pytest, requests' 2>/dev/null; then
  python3 -m pip install -q google-cloud-kms pytest requests
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: no executable at $bin (build it with cargo build -p keyplane)" >&2
  exit 2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 150); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

work="$(mktemp -d)"
kms_pid=""
cleanup() {
  [ -n "$kms_pid" ] && kill "$kms_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
"$bin" kms serve --listen "127.0.0.1:$port" --data-dir "$work/kms" --allow-clock-control >"$work/kms.out" 2>"$work/kms.err" &
kms_pid=$!
wait_port "$port" || { echo "keyplane KMS did not start:"; cat "$work/kms.err"; exit 1; }

echo "== Google Cloud KMS conformance: google-cloud-kms against keyplane's built-in KMS at http://127.0.0.1:$port"
GCP_KMS_ENDPOINT="http://127.0.0.1:$port" GCP_KMS_CREDENTIALS_FILE="$work/kms/credentials.json" \
  GCP_KMS_ADMIN_TOKEN_FILE="$work/kms/admin-token" \
  python3 -m pytest -q -p no:cacheprovider "$here/test_gcp_conformance.py" "$@"
