#!/usr/bin/env bash
# The portal's browser test: headless Debian Chromium (playwright-core, no browser
# download) walks the seed's "Create and register an AWS KMS CMK in the Astra Portal"
# against a real `keyplane serve --dev`:
#
#   tests/portal/run.sh [KEYPLANE_BINARY] [-- WALKTHROUGH_ARGS]   (default: target/debug/keyplane)
#
# e.g. `tests/portal/run.sh target/debug/keyplane -- --keep-going` runs every step even
# after a failure. Free ports, a fresh data dir (tests/lib/serve-dev.sh); makes a key in the
# built-in KMS (the walkthrough puts the policy the page shows on it), runs
# tests/portal/walkthrough.mjs with the endpoint, token, binary and credentials in the
# environment, and stops the server.
# Screenshots of every step: target/portal-screenshots/. scripts/setup-test-deps installs
# Chromium and tests/portal/node_modules.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"
shift || true
[ "${1:-}" = "--" ] && shift
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
[ -x "$bin" ] || { echo "run.sh: no executable at $bin (cargo build -p keyplane)" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: node is needed" >&2; exit 2; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "run.sh: no Chromium at ${CHROMIUM:-/usr/bin/chromium} (scripts/setup-test-deps installs Debian's)" >&2; exit 2; }
[ -d "$here/node_modules/playwright-core" ] || { echo "run.sh: playwright-core is missing (scripts/setup-test-deps runs npm ci in tests/portal)" >&2; exit 2; }

# shellcheck source=../lib/serve-dev.sh
. "$root/tests/lib/serve-dev.sh"
kp_serve_dev "$bin" --key-check-interval 2
api="$KP_API"
token="$KP_TOKEN"
creds="$KP_CREDS"
work="$KP_WORK"

# The customer key, made as in the AWS console; its policy comes from the portal's page
# (the walkthrough's step d). The CLI's statements, for comparing with the page's.
arn="$("$bin" kms create-key --credentials-file "$creds" --description portal | kp_json_get KeyMetadata Arn)"
"$bin" key policy --type classic --region us-east-2 --credentials-file "$creds" >"$work/cli-statements.json"

echo "== portal walkthrough against keyplane at $api (key $arn)"
KEYPLANE_API_URL="$api" KEYPLANE_TOKEN="$token" KEYPLANE_BIN="$bin" KEYPLANE_CREDENTIALS="$creds" \
  KEYPLANE_WORK="$work/walkthrough" KEYPLANE_KEY_ARN="$arn" KEYPLANE_CLI_STATEMENTS="$work/cli-statements.json" \
  node "$here/walkthrough.mjs" "$@" || { rc=$?; kp_log_tail; exit $rc; }
