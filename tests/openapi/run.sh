#!/usr/bin/env bash
# Validates real answers of every route against keyplane's own OpenAPI document with
# schemathesis (PyPI, pinned by scripts/setup-test-deps), against a real `serve --dev`:
#
#   tests/openapi/run.sh [KEYPLANE_BINARY]      (default: target/debug/keyplane)
#
# The server gets registered customer keys (classic and serverless in aws us-east-2,
# serverless in eu-west-1) and an ACTIVE serverless database with a second keyspace, so that
# answers with data are validated too, not only refusals. Six runs, each with a fixed seed and one worker so that CI sees the
# same requests every time:
#   1. every operation (token revocation aside), generated values only: refusals of bad
#      paths, queries and bodies;
#   2. the same operations but those that end something, with real IDs, regions and
#      keyspaces mixed into the generated values (schemathesis dictionaries), so that 200s
#      with bodies are checked against their schemas;
#   3. removing a region, then 4. terminating a database, on a second database made for
#      them (schemathesis reuses IDs it saw in earlier answers of a run, so these run apart,
#      and in that order: a terminating database refuses to lose a region);
#   5. revoking, unrevoking and deregistering keys, with real regions (a revoked key
#      suspends the databases the earlier runs need serving, a deregistered one is gone);
#   6. token revocation alone, with a token made for it (it would end the others' token).
# Checks: no 5xx, every status documented, content types, response schemas and headers as
# documented. Any failure fails the run; the report lands in target/openapi-report/. Then
# the server's own request counters must show successes on the routes that serve data, so
# the run cannot pass on refusals alone.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/keyplane}"
st="$root/.venv/bin/schemathesis"
[ -x "$st" ] || { echo "run.sh: schemathesis is needed (scripts/setup-test-deps installs it into .venv)" >&2; exit 2; }
examples="${KEYPLANE_OPENAPI_EXAMPLES:-25}"

# shellcheck source=../lib/serve-dev.sh
. "$root/tests/lib/serve-dev.sh"
kp_serve_dev "$bin" --key-check-interval 3600

auth=(-H "Authorization: Bearer $KP_TOKEN")
kp_customer_key "$bin" classic us-east-2 >/dev/null
kp_customer_key "$bin" serverless us-east-2 >/dev/null
# A customer-keyed database gains a region only where a key is registered.
kp_customer_key "$bin" serverless eu-west-1 >/dev/null
db="$(kp_create_database '{"name":"openapi","cloudProvider":"AWS","tier":"serverless","region":"us-east-2","dbType":"vector"}')" \
  || { kp_log_tail; exit 1; }
curl -sf -X POST "$KP_API/v2/databases/$db/keyspaces/extra" "${auth[@]}" >/dev/null
curl -sf -X POST "$KP_API/db/$db-us-east-2/api/json/v1/default_keyspace" -H "Token: $KP_TOKEN" \
  -H 'content-type: application/json' -d '{"createCollection":{"name":"things"}}' >/dev/null
# A second database for the routes that end one (terminate it, remove its region).
doomed="$(kp_create_database '{"name":"doomed","cloudProvider":"AWS","tier":"serverless","region":"us-east-2"}')" \
  || { kp_log_tail; exit 1; }
org="$(curl -sf "$KP_API/v2/currentOrg" "${auth[@]}" | kp_json_get id)"
client_id="$(curl -sf "$KP_API/v2/clientIdSecrets" "${auth[@]}" | kp_json_get clients 0 clientId)"

report="$root/target/openapi-report"
rm -rf "$report"
mkdir -p "$report"
config="$KP_WORK/schemathesis.toml"
cat >"$config" <<TOML
[dictionaries.databases]
values = ["$db"]
[dictionaries.doomed]
values = ["$doomed"]
[dictionaries.collections]
values = ["things"]
[dictionaries.organizations]
values = ["$org"]
[dictionaries.datacenters]
values = ["$doomed-1", "$doomed-2"]
[dictionaries.keyspaces]
values = ["extra", "default_keyspace", "other_ks"]
[dictionaries.providers]
values = ["aws", "gcp"]
[dictionaries.regions]
values = ["us-east-2", "eu-west-1"]
[dictionaries.endpoints]
values = ["$db-us-east-2"]

[[operations]]
include-operation-id-regex = "^terminate_(database|datacenter)\$"
parameters = { "path.id" = { dictionary = "doomed", probability = 0.6 }, "path.datacenterId" = { dictionary = "datacenters", probability = 0.6 } }
[[operations]]
include-path-regex = "^/v2/databases/"
exclude-operation-id-regex = "^terminate_(database|datacenter)\$"
parameters = { "path.id" = { dictionary = "databases", probability = 0.6 }, "path.datacenterId" = { dictionary = "datacenters", probability = 0.6 }, "path.keyspaceName" = { dictionary = "keyspaces", probability = 0.6 } }
[[operations]]
include-path-regex = "^/v2/organizations/"
parameters = { "path.id" = { dictionary = "organizations", probability = 0.6 } }
[[operations]]
include-path-regex = "^/v2/kms/"
parameters = { "path.provider" = { dictionary = "providers", probability = 0.6 }, "path.region" = { dictionary = "regions", probability = 0.6 } }
[[operations]]
include-path-regex = "^/db/"
parameters = { "path.endpoint" = { dictionary = "endpoints", probability = 0.8 }, "path.keyspace" = { dictionary = "keyspaces", probability = 0.8 }, "path.collection" = { dictionary = "collections", probability = 0.8 } }
TOML

checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"
common=(--checks "$checks" --workers 1 --seed 20261201 --max-examples "$examples" --no-shrink
  --suppress-health-check all --warnings off --request-timeout 30 --max-redirects 0)

# Revoking a key suspends the databases under it, and deregistering or replacing one changes
# the key the later runs need (adding a region): the routes that revoke, unrevoke, deregister
# and replace keys get a run of their own, after those.
keys_kept=(--exclude-operation-id revoke_classic --exclude-operation-id revoke_serverless
  --exclude-operation-id unrevoke_classic --exclude-operation-id unrevoke_serverless
  --exclude-operation-id deregister_classic --exclude-operation-id deregister_serverless
  --exclude-operation-id replace_classic --exclude-operation-id replace_serverless)

run() {
  local name="$1"; shift
  echo "== schemathesis: $name"
  # From the scratch directory: schemathesis keeps a cache in its working directory.
  (cd "$KP_WORK" && "$st" "$@") || { rc=$?; echo "schemathesis found failures ($name); report in $report"; kp_log_tail; exit $rc; }
}

run "every operation, generated values" run "$KP_API/openapi.json" "${auth[@]}" "${common[@]}" \
  --phases examples,coverage,fuzzing --exclude-operation-id revoke_token \
  --exclude-operation-id terminate_database --exclude-operation-id terminate_datacenter \
  "${keys_kept[@]}" \
  --report junit --report-junit-path "$report/1-generated.xml"
run "every operation, with real IDs" --config-file "$config" run "$KP_API/openapi.json" "${auth[@]}" \
  "${common[@]}" --phases examples,fuzzing --exclude-operation-id revoke_token \
  --exclude-operation-id terminate_database --exclude-operation-id terminate_datacenter \
  "${keys_kept[@]}" \
  --report junit --report-junit-path "$report/2-real-ids.xml"
# A second region to remove, then the two runs that end things, region first: once the
# database is terminating, removing a region is refused (409), so a run that mixed the two
# could pass without a successful removal ever being validated.
kp_wait_active "$doomed" || { kp_log_tail; exit 1; }
added="$(curl -s -o "$KP_WORK/add-region.json" -w '%{http_code}' -X POST "$KP_API/v2/databases/$doomed/datacenters" \
  "${auth[@]}" -H 'content-type: application/json' -d '[{"tier":"serverless","cloudProvider":"AWS","region":"eu-west-1"}]')"
[ "$added" = 201 ] || { echo "adding a region to $doomed: $added $(cat "$KP_WORK/add-region.json")"; kp_log_tail; exit 1; }
kp_wait_active "$doomed" || { kp_log_tail; exit 1; }
run "removing a region, on a database of its own" --config-file "$config" \
  run "$KP_API/openapi.json" "${auth[@]}" "${common[@]}" --phases examples,coverage,fuzzing \
  --include-operation-id terminate_datacenter \
  --report junit --report-junit-path "$report/3-terminate-region.xml"
run "terminating a database, on a database of its own" --config-file "$config" \
  run "$KP_API/openapi.json" "${auth[@]}" "${common[@]}" --phases examples,coverage,fuzzing \
  --include-operation-id terminate_database \
  --report junit --report-junit-path "$report/4-terminate-database.xml"

cat >"$KP_WORK/keys.toml" <<TOML
[dictionaries.providers]
values = ["aws"]
[dictionaries.regions]
values = ["us-east-2"]
[[operations]]
include-path-regex = "^/v2/kms/"
parameters = { "path.provider" = { dictionary = "providers", probability = 0.9 }, "path.region" = { dictionary = "regions", probability = 0.9 } }
TOML
run "revoking, unrevoking and deregistering keys, with real regions" --config-file "$KP_WORK/keys.toml" \
  run "$KP_API/openapi.json" "${auth[@]}" "${common[@]}" --phases examples,coverage,fuzzing \
  --include-operation-id revoke_classic --include-operation-id revoke_serverless \
  --include-operation-id unrevoke_classic --include-operation-id unrevoke_serverless \
  --include-operation-id deregister_classic --include-operation-id deregister_serverless \
  --include-operation-id replace_classic --include-operation-id replace_serverless \
  --report junit --report-junit-path "$report/5-key-revocation.xml"

# Revocation, with a token of its own and the real client ID in the mix.
victim="$(curl -sf -X POST "$KP_API/v2/clientIdSecrets" "${auth[@]}" -H 'content-type: application/json' \
  -d '{"roles":["Organization Administrator"],"description":"revoked by schemathesis"}')"
victim_token="$(echo "$victim" | kp_json_get token)"
victim_id="$(echo "$victim" | kp_json_get clientId)"
cat >"$KP_WORK/revoke.toml" <<TOML
[dictionaries.clients]
values = ["$victim_id", "$client_id"]
[[operations]]
include-operation-id = "revoke_token"
parameters = { "path.clientId" = { dictionary = "clients", probability = 0.5 } }
TOML
for d in "$db" "$doomed"; do
  echo "database $d is $(curl -sf "$KP_API/v2/databases/$d" "${auth[@]}" | kp_json_get status) after the runs"
done
# The answers validated above include real data, not only refusals: the server's own request
# counters must show a success on the routes that serve it.
curl -sf "$KP_API/metrics" >"$KP_WORK/metrics.txt"
curl -sf "$KP_API/openapi.json" >"$KP_WORK/openapi.json"
python3 - "$KP_WORK/metrics.txt" "$KP_WORK/openapi.json" <<'PY'
import json, re, sys
documented = {(m.upper(), p) for p, ops in json.load(open(sys.argv[2]))["paths"].items() for m in ops}
seen = {}
for line in open(sys.argv[1]):
    m = re.match(r'keyplane_http_requests_total\{method="(\w+)",route="([^"]+)",status="(\d+)"\} (\d+)', line)
    if m and (m[1], m[2]) in documented:
        seen.setdefault((m[1], m[2]), {})[m[3]] = int(m[4])
must = [
    ("GET", "/v2/databases/{id}"), ("GET", "/v2/databases/{id}/datacenters"), ("GET", "/v2/databases"),
    ("POST", "/v2/databases"), ("POST", "/v2/databases/{id}/keyspaces/{keyspaceName}"),
    ("GET", "/v2/regions/serverless"), ("GET", "/v2/availableRegions"),
    ("GET", "/v2/kms/provider/{provider}/region/{region}"), ("GET", "/v2/kms/classic/provider/{provider}/region/{region}"),
    ("GET", "/v2/kms/provider/{provider}/region/{region}/accounts"), ("GET", "/v2/kms"), ("GET", "/v2/kms/classic"),
    ("GET", "/v2/organizations/{id}"), ("GET", "/v2/organizations/{id}/audit"),
    ("POST", "/db/{endpoint}/api/json/v1"), ("POST", "/db/{endpoint}/api/json/v1/{keyspace}"),
    ("POST", "/db/{endpoint}/api/json/v1/{keyspace}/{collection}"),
    ("DELETE", "/v2/databases/{id}/keyspaces/{keyspaceName}"), ("POST", "/v2/databases/{id}/terminate"),
    ("POST", "/v2/databases/{id}/datacenters/{datacenterId}/terminate"),
    ("POST", "/v2/kms/provider/{provider}/region/{region}/revoke"),
    ("POST", "/v2/kms/provider/{provider}/region/{region}/unrevoke"),
]
print("answers validated, by operation and status:")
width = max(len(f"{m} {r}") for (m, r) in seen)
for key in sorted(seen):
    print(f"  {key[0] + ' ' + key[1]:<{width}}  " + " ".join(f"{s}x{n}" for s, n in sorted(seen[key].items())))
missing = [f"{m} {r}" for (m, r) in must if not any(s.startswith("2") for s in seen.get((m, r), {}))]
if missing:
    print("no successful answer was validated for: " + ", ".join(missing))
    sys.exit(1)
PY

run "token revocation" --config-file "$KP_WORK/revoke.toml" run "$KP_API/openapi.json" \
  -H "Authorization: Bearer $victim_token" "${common[@]}" --phases examples,coverage,fuzzing \
  --include-operation-id revoke_token --report junit --report-junit-path "$report/6-revoke.xml"
echo "== schemathesis: no failures"
