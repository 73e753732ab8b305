#!/usr/bin/env bash
# Runs @datastax/astra-db-ts (unmodified, 2.x, pinned in tests/astra-db-ts/package-lock.json)
# against a real `keyplane serve --dev`:
#
#   tests/astra-db-ts/run.sh [KEYPLANE_BINARY] [-- --only 'case|case']   (default: target/debug/keyplane)
#
# Free ports, a fresh data dir (tests/lib/serve-dev.sh); a customer key made in the built-in
# KMS, and a serverless database on it, ACTIVE; then tests/astra-db-ts/test.mjs with the API
# URL, token and database in the environment. scripts/setup-test-deps runs npm ci here.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"
shift || true
[ "${1:-}" = "--" ] && shift
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
command -v node >/dev/null || { echo "run.sh: node is needed" >&2; exit 2; }
[ -d "$here/node_modules/@datastax/astra-db-ts" ] || { echo "run.sh: astra-db-ts is missing (scripts/setup-test-deps runs npm ci in tests/astra-db-ts)" >&2; exit 2; }

# shellcheck source=../lib/serve-dev.sh
. "$root/tests/lib/serve-dev.sh"
kp_serve_dev "$bin"
kp_customer_key "$bin" serverless us-east-2 >/dev/null
db="$(kp_create_database '{"name":"astra-db-ts","keyspace":"default_keyspace","cloudProvider":"AWS","tier":"serverless","capacityUnits":1,"region":"us-east-2","dbType":"vector"}')" \
  || { kp_log_tail; exit 1; }

echo "== astra-db-ts $(node -p 'require("'"$here"'/node_modules/@datastax/astra-db-ts/package.json").version') against keyplane at $KP_API (database $db)"
KEYPLANE_API_URL="$KP_API" KEYPLANE_TOKEN="$KP_TOKEN" KEYPLANE_DB_ID="$db" KEYPLANE_REGION=us-east-2 \
  node "$here/test.mjs" "$@" || { rc=$?; kp_log_tail; exit $rc; }
