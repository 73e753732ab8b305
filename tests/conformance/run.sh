#!/usr/bin/env bash
# Runs the KMS conformance suite against keyplane's built-in KMS and against moto, then prints
# every case where the two differ, next to AWS's documented answer.
#
#   tests/conformance/run.sh [KEYPLANE_BINARY]
#
# KEYPLANE_BINARY defaults to target/debug/keyplane (run as `keyplane kms serve …`). A binary
# without a `kms` subcommand is run with the same flags directly, which fits the crate's
# example server: target/debug/examples/serve. The server writes every identity's
# credentials to <data-dir>/credentials.json, which the suite reads.
# BENCH=1 also runs bench_boto3.py against both servers.
# Exit status: that of the keyplane run (moto is expected to fail cases).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"

if ! python3 -c 'import moto, boto3, pytest' 2>/dev/null || ! command -v aws >/dev/null; then
  python3 -m pip install -q boto3 awscli 'moto[server]' pytest
fi
# Until the keyplane binary has `kms serve`, fall back to the crate's example server.
if [ -x "$bin" ] && [ "$(basename "$bin")" = keyplane ] && ! "$bin" kms --help >/dev/null 2>&1; then
  echo "run.sh: $bin has no 'kms serve'; using the devkms example server instead" >&2
  (cd "$root" && cargo build -q -p keyplane-devkms --example serve)
  bin="$root/target/debug/examples/serve"
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: no executable at $bin (build it, or pass the path of keyplane or of the devkms example 'serve')" >&2
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
kms_pid=""; moto_pid=""
cleanup() {
  [ -n "$kms_pid" ] && kill "$kms_pid" 2>/dev/null || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

kms_port="$(free_port)"
if "$bin" kms --help >/dev/null 2>&1; then
  "$bin" kms serve --listen "127.0.0.1:$kms_port" --data-dir "$work/kms" --allow-clock-control >"$work/kms.out" 2>"$work/kms.err" &
else
  "$bin" --listen "127.0.0.1:$kms_port" --data-dir "$work/kms" --allow-clock-control >"$work/kms.out" 2>"$work/kms.err" &
fi
kms_pid=$!
wait_port "$kms_port" || { echo "keyplane KMS did not start:"; cat "$work/kms.err"; exit 1; }

moto_port="$(free_port)"
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
wait_port "$moto_port" || { echo "moto did not start:"; cat "$work/moto.log"; exit 1; }
curl -s -X POST "http://127.0.0.1:$moto_port/moto-api/reset" >/dev/null || true

echo "== keyplane built-in KMS at http://127.0.0.1:$kms_port"
set +e
KMS_TARGET=keyplane KMS_ENDPOINT="http://127.0.0.1:$kms_port" KMS_CREDENTIALS_FILE="$work/kms/credentials.json" \
  KMS_RESULTS="$work/keyplane.jsonl" python3 -m pytest -q -p no:cacheprovider "$here/test_kms_conformance.py"
keyplane_rc=$?
echo "== moto at http://127.0.0.1:$moto_port (failures here are expected: they are the differences)"
KMS_TARGET=moto KMS_ENDPOINT="http://127.0.0.1:$moto_port" KMS_RESULTS="$work/moto.jsonl" \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  python3 -m pytest -q -p no:cacheprovider "$here/test_kms_conformance.py" >"$work/moto-pytest.log" 2>&1
echo "   moto: $(tail -n 1 "$work/moto-pytest.log")"
set -e

python3 "$here/compare.py" "$work/keyplane.jsonl" "$work/moto.jsonl"

if [ "${BENCH:-0}" = "1" ]; then
  creds="$work/kms/credentials.json"
  KEYPLANE_ENDPOINT="http://127.0.0.1:$kms_port" KEYPLANE_CREDENTIALS_FILE="$creds" \
    MOTO_ENDPOINT="http://127.0.0.1:$moto_port" python3 "$here/bench_boto3.py"
fi
exit "$keyplane_rc"
