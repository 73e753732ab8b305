#!/usr/bin/env bash
# Runs the Azure Key Vault conformance suite: Microsoft's official Python SDK
# (azure-keyvault-keys) against keyplane's built-in vault over TLS.
#
#   tests/conformance-azure/run.sh [KEYPLANE_BINARY]
#
# KEYPLANE_BINARY defaults to target/debug/keyplane; it is run as
# `keyplane kms azure serve`, which writes the dev CA and azure-credentials.json (the
# customer's and the platform's tokens) to its data dir, where the suite reads them.
# The Rust side of the same cases is `cargo test -p keyplane-kms-azure`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"

if ! python3 -c 'import azure.keyvault.keys, requests, pytest' 2>/dev/null; then
  python3 -m pip install -q 'azure-keyvault-keys>=4.11,<5' requests pytest
fi
if [ ! -x "$bin" ]; then
  echo "run.sh: no executable at $bin (cargo build -p keyplane, or pass its path)" >&2
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
vault_pid=""
cleanup() {
  [ -n "$vault_pid" ] && kill "$vault_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
"$bin" kms azure serve --listen "127.0.0.1:$port" --data-dir "$work/kms" >"$work/vault.out" 2>"$work/vault.err" &
vault_pid=$!
wait_port "$port" || { echo "the built-in Azure vault did not start:"; cat "$work/vault.err"; exit 1; }

echo "== keyplane built-in Azure Key Vault at https://localhost:$port (azure-keyvault-keys $(python3 -c 'import azure.keyvault.keys as k; print(k.__version__)'))"
AZ_CREDENTIALS_FILE="$work/kms/azure-credentials.json" AZ_ADMIN_TOKEN_FILE="$work/kms/admin-token" \
  python3 -m pytest -q -p no:cacheprovider "$here/test_azure_conformance.py"
