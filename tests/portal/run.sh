#!/usr/bin/env bash
# The portal's browser test: headless Debian Chromium (playwright-core, no browser
# download) walks the seed's "Create and register an AWS KMS CMK in the Astra Portal"
# against a real `keyplane serve --dev`:
#
#   tests/portal/run.sh [KEYPLANE_BINARY] [-- WALKTHROUGH_ARGS]   (default: target/debug/keyplane)
#
# e.g. `tests/portal/run.sh target/debug/keyplane -- --keep-going` runs every step even
# after a failure. Free ports, a fresh data dir; makes a key in the built-in KMS (the
# walkthrough puts the policy the page shows on it), runs tests/portal/walkthrough.mjs with
# the endpoint, token, binary and credentials in the environment, and stops the server.
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

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_port() {
  node -e '
    const net = require("net"), end = Date.now() + 30000;
    (function go() {
      const c = net.connect(+process.argv[1], "127.0.0.1");
      c.on("connect", () => { c.end(); process.exit(0); });
      c.on("error", () => Date.now() > end ? process.exit(1) : setTimeout(go, 200));
    })();' "$1"
}
json_get() { node -e 'let d="";process.stdin.on("data",c=>d+=c).on("end",()=>{let v=JSON.parse(d);for(const k of process.argv.slice(1))v=v[k];console.log(v)})' "$@"; }

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

# The customer key, made as in the AWS console; its policy comes from the portal's page
# (the walkthrough's step d). The CLI's statements, for comparing with the page's.
arn="$("$bin" kms create-key --credentials-file "$creds" --description portal | json_get KeyMetadata Arn)"
"$bin" key policy --type classic --region us-east-2 --credentials-file "$creds" >"$work/cli-statements.json"

echo "== portal walkthrough against keyplane at $api (key $arn)"
KEYPLANE_API_URL="$api" KEYPLANE_TOKEN="$token" KEYPLANE_BIN="$bin" KEYPLANE_CREDENTIALS="$creds" \
  KEYPLANE_WORK="$work/walkthrough" KEYPLANE_KEY_ARN="$arn" KEYPLANE_CLI_STATEMENTS="$work/cli-statements.json" \
  node "$here/walkthrough.mjs" "$@" || { rc=$?; echo "== last lines of the server's log"; tail -n 40 "$work/server.log"; exit $rc; }
