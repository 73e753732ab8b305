//! The DevOps API conventions over a real server on a loopback port: the auth matrix on
//! every documented route, the error body on every error path, limits, and the OpenAPI
//! document's completeness.
mod common;

use common::{TestServer, assert_error, send};
use keyplane_core::{Permission, Role};
use serde_json::{Value, json};

/// Every operation of the OpenAPI document, as (method, path template, secured).
async fn operations(s: &TestServer) -> Vec<(String, String, bool)> {
    let (status, doc) = send(s.req("GET", "/openapi.json", None)).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true),
        "OpenAPI 3.1"
    );
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op.get("security").is_some();
            ops.push((method.to_uppercase(), path.clone(), secured));
        }
    }
    ops.sort();
    ops
}

fn fill(template: &str, org: &str, client_id: &str) -> String {
    template
        .replace("{provider}", "aws")
        .replace("{region}", "us-east-2")
        .replace("{id}", org)
        .replace("{clientId}", client_id)
        .replace("{keyspaceName}", "ks")
        .replace("{webhookId}", "6f1d2c3b-0000-4000-8000-00000000e1e1")
}

/// A valid body for each POST that takes one, so that only the token decides the answer.
fn body_for(method: &str, path: &str) -> Option<Value> {
    let arn = "arn:aws:kms:us-east-2:111111111111:key/0b0b0b0b-1111-2222-3333-444444444444";
    if method == "PUT" && path.ends_with("/provider/{provider}/region/{region}") {
        // A replacement takes a registration's body.
        return Some(
            json!({"orgId": "00000000-0000-0000-0000-000000000000", "aws": {"keyID": arn, "region": "us-east-2"}}),
        );
    }
    if method == "PUT" && path.ends_with("/on-inaccessible") {
        return Some(json!({"action": "suspend"}));
    }
    if method != "POST" {
        return None;
    }
    match path {
        "/v2/clientIdSecrets" => Some(json!({"roles": ["Read Only User"]})),
        "/v2/webhooks" => Some(json!({"url": "https://hooks.example.com/keyplane"})),
        p if p.ends_with("/policy/check") => Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]})),
        "/v2/databases" => Some(
            json!({"name": "db", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10",
                                       "capacityUnits": 1, "region": "us-east-2"}),
        ),
        "/v2/databases/{id}/datacenters" => {
            Some(json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]))
        }
        "/v2/kms/classic" | "/v2/kms" | "/v2/kms/serverless" => Some(
            json!({"orgId": "00000000-0000-0000-0000-000000000000", "aws": {"keyID": arn, "region": "us-east-2"}}),
        ),
        _ => None,
    }
}

#[tokio::test]
async fn auth_matrix_on_every_secured_route() {
    let s = TestServer::start().await;
    let ops = operations(&s).await;
    let secured: Vec<_> = ops.iter().filter(|o| o.2).collect();
    assert!(
        secured.len() >= 8,
        "expected the API's secured routes, got {ops:?}"
    );

    let revoked = s.token(s.org, Role::OrgAdmin).await;
    let revoked_id = revoked.split(':').nth(1).unwrap().to_string();
    assert!(s.store.revoke_token(s.org, &revoked_id).await.unwrap());
    let powerless = s.token(s.org, Role::Custom(Default::default())).await;
    let victim = s.token(s.org, Role::ReadOnly).await;
    let victim_id = victim.split(':').nth(1).unwrap().to_string();
    let org = s.org.to_string();

    for (method, template, _) in secured {
        let path = fill(template, &org, &victim_id);
        let with_body = |b: reqwest::RequestBuilder| match body_for(method, template) {
            Some(v) => b.json(&v),
            None => b,
        };
        let ctx = format!("{method} {template}");

        let (st, body) = send(with_body(s.req(method, &path, None))).await;
        assert_error(st, &body, 401, 2000);

        let (st, body) = send(with_body(
            s.req(method, &path, None)
                .header("Authorization", "Bearer AstraCS:nope"),
        ))
        .await;
        assert_error(st, &body, 401, 2001);
        let (st, body) = send(with_body(
            s.req(method, &path, None)
                .header("Authorization", "Basic abc"),
        ))
        .await;
        assert_error(st, &body, 401, 2001);

        let (st, body) = send(with_body(s.req(method, &path, Some(&revoked)))).await;
        assert_error(st, &body, 401, 2002);

        let (st, body) = send(with_body(s.req(method, &path, Some(&powerless)))).await;
        let msg = assert_error(st, &body, 403, 3000);
        assert!(
            msg.contains("'org-") || msg.contains("'db-keyspace-"),
            "{ctx}: names the missing permission: {msg}"
        );
    }
}

#[tokio::test]
async fn other_organizations_resources_are_not_found() {
    let s = TestServer::start().await;
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_token = s.token(other.id, Role::OrgAdmin).await;
    let other_client = other_token.split(':').nth(1).unwrap();

    let (st, body) = s
        .get(&format!("/v2/organizations/{}", other.id), &s.admin)
        .await;
    assert_error(st, &body, 404, 4000);
    let (st, body) = send(s.req(
        "DELETE",
        &format!("/v2/clientIdSecrets/{other_client}"),
        Some(&s.admin),
    ))
    .await;
    assert_error(st, &body, 404, 4000);
    // The other organization's token still works: nothing was revoked.
    let (st, body) = s.get("/v2/currentOrg", &other_token).await;
    assert_eq!(st, 200);
    assert_eq!(body["name"], "Other");
    // Its own organization is visible.
    let (st, body) = s
        .get(&format!("/v2/organizations/{}", s.org), &s.admin)
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["id"], s.org.to_string());
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    // A sealing key, so that creating a webhook is served rather than refused with 501.
    let s = TestServer::with_config(keyplane_app::Config {
        sealing_key: Some(keyplane_core::SealingKey::generate()),
        ..Default::default()
    })
    .await;
    let org = s.org.to_string();
    let client = s.admin.split(':').nth(1).unwrap().to_string();
    for (method, template, _) in operations(&s).await {
        // Revoking the admin's own token would end the test early; a fresh one stands in.
        let target = if method == "DELETE" {
            s.token(s.org, Role::ReadOnly)
                .await
                .split(':')
                .nth(1)
                .unwrap()
                .to_string()
        } else {
            client.clone()
        };
        let path = fill(&template, &org, &target);
        let mut b = s.req(&method, &path, Some(&s.admin));
        if let Some(v) = body_for(&method, &template) {
            b = b.json(&v);
        }
        let res = b.send().await.unwrap();
        let st = res.status().as_u16();
        let body: Value =
            serde_json::from_slice(&res.bytes().await.unwrap()).unwrap_or(Value::Null);
        let id = body["errors"][0]["ID"].as_u64();
        assert!(
            id != Some(4001) && id != Some(4050) && st < 500,
            "{method} {template} is documented but not served: {st} {body}"
        );
    }
}

/// The router registers API routes only through `utoipa_axum::routes!`, which takes each
/// path from its OpenAPI annotation. A plain `.route(` would add an undocumented route.
#[test]
fn no_route_bypasses_the_openapi_document() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = vec![];
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for needle in [
                    ".route(",
                    ".route_service(",
                    ".nest(",
                    ".nest_service(",
                    "Router::new()",
                ] {
                    if text.contains(needle) {
                        offenders.push(format!("{} uses {needle}", p.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "undocumented routes: {offenders:?}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_body() {
    let s = TestServer::start().await;
    let (st, body) = send(s.req("GET", "/v2/nothing-here", Some(&s.admin))).await;
    let msg = assert_error(st, &body, 404, 4001);
    assert!(msg.contains("/v2/nothing-here"));
    let (st, body) = send(s.req("PUT", "/v2/currentOrg", Some(&s.admin))).await;
    assert_error(st, &body, 405, 4050);
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_problem() {
    let s = TestServer::start().await;
    let path = "/v2/clientIdSecrets";

    let (st, body) = send(
        s.req("POST", path, Some(&s.admin))
            .header("content-type", "application/json")
            .body("{\"roles\": [\"Read Only User\""),
    )
    .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.starts_with("malformed JSON"), "{msg}");

    let (st, body) = s
        .post(path, &s.admin, json!({"roles": "Read Only User"}))
        .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.contains("roles"), "names the field: {msg}");

    let (st, body) = s
        .post(path, &s.admin, json!({"roles": ["Superuser"]}))
        .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(
        msg.contains("roles") && msg.contains("Superuser") && msg.contains("Read Only User"),
        "{msg}"
    );

    let (st, body) = s
        .post(
            path,
            &s.admin,
            json!({"permissions": ["org-cmk-read", "org-everything"]}),
        )
        .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.contains("org-everything"), "{msg}");

    let (st, body) = s
        .post(
            path,
            &s.admin,
            json!({"roles": ["Read Only User"], "colour": "red"}),
        )
        .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.contains("colour"), "{msg}");

    let (st, body) = send(s.req("POST", path, Some(&s.admin)).body("{}")).await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.contains("Content-Type"), "{msg}");

    let (st, body) = send(s.req("GET", "/v2/organizations/not-a-uuid", Some(&s.admin))).await;
    assert_error(st, &body, 400, 1002);

    // Nothing was written by any of these.
    assert_eq!(s.store.list_tokens(s.org).await.unwrap().len(), 1);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let s = TestServer::start().await;
    let big = format!(
        "{{\"description\":\"{}\",\"roles\":[\"Read Only User\"]}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let (st, body) = send(
        s.req("POST", "/v2/clientIdSecrets", Some(&s.admin))
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    let msg = assert_error(st, &body, 400, 1001);
    assert!(msg.contains("1 MiB"));
    // Just under the limit is read (and then refused for its description's length).
    let ok = format!(
        "{{\"description\":\"{}\",\"roles\":[\"Read Only User\"]}}",
        "x".repeat(1000)
    );
    let (st, body) = send(
        s.req("POST", "/v2/clientIdSecrets", Some(&s.admin))
            .header("content-type", "application/json")
            .body(ok),
    )
    .await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(msg.contains("description"));
}

#[tokio::test]
async fn a_store_failure_is_a_generic_500() {
    let s = TestServer::start().await;
    let conn = rusqlite_free_drop(&s.db_path);
    let (st, body) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &s.admin,
        )
        .await;
    let msg = assert_error(st, &body, 500, 5000);
    assert!(
        !msg.to_lowercase().contains("account_assignments"),
        "no detail leaks: {msg}"
    );
    drop(conn);
}

/// Breaks the store underneath the server, as a corrupted schema would.
fn rusqlite_free_drop(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect({:?}); c.execute('DROP TABLE account_assignments'); c.commit()",
            path.to_str().unwrap()
        ))
        .output()
        .unwrap()
}

#[tokio::test]
async fn tokens_are_created_listed_without_secret_and_revoked_at_once() {
    let s = TestServer::start().await;
    let (st, created) = s
        .post(
            "/v2/clientIdSecrets",
            &s.admin,
            json!({"roles": ["Database Administrator"], "description": "ci"}),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 97);
    assert!(token.starts_with("AstraCS:"));
    assert_eq!(created["roles"], json!(["Database Administrator"]));

    let (st, list) = s.get("/v2/clientIdSecrets", &s.admin).await;
    assert_eq!(st, 200);
    let text = list.to_string();
    let secret = token.rsplit(':').next().unwrap();
    assert!(!text.contains(secret), "listing never shows a secret");
    assert_eq!(list["clients"].as_array().unwrap().len(), 2);

    let (st, _) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &token,
        )
        .await;
    assert_eq!(st, 200);
    let client_id = created["clientId"].as_str().unwrap();
    let (st, _) = send(s.req(
        "DELETE",
        &format!("/v2/clientIdSecrets/{client_id}"),
        Some(&s.admin),
    ))
    .await;
    assert_eq!(st, 204);
    let (st, body) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &token,
        )
        .await;
    assert_error(st, &body, 401, 2002);
    // Revoking twice is a 404: there is no active token by that ID any more.
    let (st, body) = send(s.req(
        "DELETE",
        &format!("/v2/clientIdSecrets/{client_id}"),
        Some(&s.admin),
    ))
    .await;
    assert_error(st, &body, 404, 4000);
}

#[tokio::test]
async fn a_token_cannot_hand_out_more_than_it_has() {
    let s = TestServer::start().await;
    let minter = s
        .token(
            s.org,
            Role::custom(["org-token-write", "org-cmk-read"]).unwrap(),
        )
        .await;
    let (st, body) = s
        .post(
            "/v2/clientIdSecrets",
            &minter,
            json!({"roles": ["Organization Administrator"]}),
        )
        .await;
    let msg = assert_error(st, &body, 403, 3000);
    assert!(msg.contains("org-"), "{msg}");
    let (st, body) = s
        .post(
            "/v2/clientIdSecrets",
            &minter,
            json!({"permissions": ["org-cmk-read"]}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        body["permissions"],
        json!([Permission::OrgCmkRead.as_str()])
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = TestServer::start().await;
    let (st, body) = send(s.req("GET", "/healthz", None)).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));
    let (st, body) = send(s.req("GET", "/readyz", None)).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("ready")));
    assert_eq!(body["role"], "all", "{body}");
    assert_eq!(
        body["replicaId"],
        s.app.config.replica_id.as_str(),
        "{body}"
    );
    s.get(
        "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
        &s.admin,
    )
    .await;
    s.get(
        "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
        "AstraCS:bad",
    )
    .await;
    let text = s
        .req("GET", "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let route = "/v2/kms/classic/provider/{provider}/region/{region}/accounts";
    assert!(
        text.contains(&format!(
            r#"keyplane_http_requests_total{{method="GET",route="{route}",status="200"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"keyplane_http_requests_total{{method="GET",route="{route}",status="401"}} 1"#
        )),
        "{text}"
    );
    assert!(text.contains("keyplane_http_request_duration_seconds_bucket"));
    for counter in [
        "keyplane_jobs_claimed_total",
        "keyplane_jobs_taken_over_total",
        "keyplane_job_lease_renewals_total",
        "keyplane_job_leases_lost_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter")),
            "{text}"
        );
    }
}

/// An API replica (`--role api`) keeps no datacenter files: it says so at /readyz, and
/// answers the Data API with 503 and why (after authenticating, as every Data API request).
#[tokio::test]
async fn an_api_replica_reports_its_role_and_refuses_the_data_api() {
    let s = TestServer::with_config(keyplane_app::Config {
        role: keyplane_app::ProcessRole::Api,
        ..Default::default()
    })
    .await;
    let (st, body) = send(s.req("GET", "/readyz", None)).await;
    assert_eq!((st, body["role"].as_str()), (200, Some("api")), "{body}");
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(
            &json!({"name": "apidb", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10",
                      "capacityUnits": 1, "region": "us-east-2"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Provisioned as far as an API replica goes: the data key, no file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, db) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
        if db["status"] == "ACTIVE" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{db}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dcs = s.store.list_datacenters(id.parse().unwrap()).await.unwrap();
    assert!(dcs[0].wrapped_data_key.is_some());
    assert!(
        !s.app.data.file(&dcs[0].id).exists(),
        "no datacenter file on an API replica"
    );
    let res = s
        .client
        .post(format!("{}/db/{id}-us-east-2/api/json/v1/ks", s.url))
        .header("Token", &s.admin)
        .json(&json!({"findCollections": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    let body: Value = res.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--role api"), "{body}");
    // Without a token: 401 first, as on any process.
    let res = s
        .client
        .post(format!("{}/db/{id}-us-east-2/api/json/v1/ks", s.url))
        .json(&json!({"findCollections": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}
