#!/usr/bin/env bash
# Runs astrapy (unmodified, from PyPI) against a real `keyplane serve --dev`:
#
#   tests/astrapy/run.sh [KEYPLANE_BINARY]      (default: target/debug/keyplane)
#
# Free ports, a fresh data dir (tests/lib/serve-dev.sh); registers a customer key made in the
# built-in KMS (so the suspension test can disable it), creates a serverless database
# through the DevOps API, waits for ACTIVE, runs tests/astrapy/test_astrapy.py with the
# endpoint and token in the environment, and stops the server. Python comes from ./.venv
# (scripts/setup-test-deps).
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

# shellcheck source=../lib/serve-dev.sh
. "$root/tests/lib/serve-dev.sh"
kp_serve_dev "$bin" --key-check-interval 2
api="$KP_API"
token="$KP_TOKEN"
creds="$KP_CREDS"

# A customer key the suspension test can disable, and a serverless (vector) database on it,
# as astrapy's admin would create one; waits for ACTIVE.
arn="$(kp_customer_key "$bin" serverless us-east-2)"
db="$(kp_create_database '{"name":"astrapy","keyspace":"default_keyspace","cloudProvider":"AWS","tier":"serverless","capacityUnits":1,"region":"us-east-2","dbType":"vector"}')" \
  || { kp_log_tail; exit 1; }

echo "== astrapy $("$py" -c 'import astrapy; print(astrapy.__version__)') against keyplane at $api (database $db)"
KEYPLANE_API_URL="$api" KEYPLANE_TOKEN="$token" KEYPLANE_DB_ID="$db" \
  KEYPLANE_ENDPOINT="$api/db/$db-us-east-2" KEYPLANE_BIN="$bin" KEYPLANE_CREDENTIALS="$creds" \
  KEYPLANE_KEY_ARN="$arn" \
  "$py" -m pytest -q -p no:cacheprovider "$here/test_astrapy.py" || { rc=$?; kp_log_tail; exit $rc; }
