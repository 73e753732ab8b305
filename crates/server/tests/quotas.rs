//! Per-organization quotas over the API: databases, datacenters (regions) and application
//! tokens, refused with 409 and a message naming the quota and how to raise it, and never
//! overshot by concurrent requests (the store counts inside the transaction that creates).
mod common;

use std::time::Duration;

use common::{TestServer, assert_error, send, wait_status};
use keyplane_app::Config;
use keyplane_core::{Quotas, Role};
use serde_json::{Value, json};

fn create_body(name: &str) -> Value {
    json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
           "capacityUnits": 1, "region": "us-east-2"})
}

async fn create_db(s: &TestServer, token: &str, name: &str) -> (u16, Value, Option<String>) {
    let res = s
        .req("POST", "/v2/databases", Some(token))
        .json(&create_body(name))
        .send()
        .await
        .unwrap();
    let st = res.status().as_u16();
    let id = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().rsplit('/').next().unwrap().to_string());
    let body = res.bytes().await.unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (st, body, id)
}

async fn add_region(s: &TestServer, db: &str, region: &str) -> (u16, Value) {
    s.post(
        &format!("/v2/databases/{db}/datacenters"),
        &s.admin,
        json!([{"tier": "C10", "cloudProvider": "AWS", "region": region}]),
    )
    .await
}

async fn server(quotas: Quotas) -> TestServer {
    TestServer::with_config(Config {
        quotas,
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn databases_regions_and_tokens_stop_at_their_quota() {
    let s = server(Quotas {
        databases: 2,
        datacenters: 3,
        tokens: 3,
    })
    .await;
    let (st, _, first) = create_db(&s, &s.admin, "one").await;
    assert_eq!(st, 201);
    let first = first.unwrap();
    let (st, _, _) = create_db(&s, &s.admin, "two").await;
    assert_eq!(st, 201);
    let (st, body, _) = create_db(&s, &s.admin, "three").await;
    let msg = assert_error(st, &body, 409, 4091);
    assert!(msg.contains("quota of 2 databases"), "{msg}");
    assert!(msg.contains("terminate a database"), "{msg}");
    assert!(msg.contains("--max-databases"), "{msg}");
    assert!(msg.contains("KEYPLANE_MAX_DATABASES"), "{msg}");
    let (_, list) = s.get("/v2/databases", &s.admin).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Regions count against the datacenter quota: a third fits, a fourth does not.
    wait_status(&s, &first, "ACTIVE").await;
    let (st, body) = add_region(&s, &first, "eu-west-1").await;
    assert_eq!(st, 201, "{body}");
    wait_status(&s, &first, "ACTIVE").await;
    let (st, body) = add_region(&s, &first, "us-west-2").await;
    let msg = assert_error(st, &body, 409, 4091);
    assert!(msg.contains("quota of 3 datacenters"), "{msg}");
    assert!(msg.contains("--max-datacenters"), "{msg}");
    let (_, view) = s.get(&format!("/v2/databases/{first}"), &s.admin).await;
    assert_eq!(view["status"], "ACTIVE", "nothing changed: {view}");
    assert_eq!(view["info"]["datacenters"].as_array().unwrap().len(), 2);

    // Tokens: the harness's admin token is one of the three.
    let new_token = || {
        s.post(
            "/v2/clientIdSecrets",
            &s.admin,
            json!({"roles": ["Read Only User"]}),
        )
    };
    let (st, made) = new_token().await;
    assert_eq!(st, 201, "{made}");
    let (st, _) = new_token().await;
    assert_eq!(st, 201);
    let (st, body) = new_token().await;
    let msg = assert_error(st, &body, 409, 4091);
    assert!(msg.contains("quota of 3 application tokens"), "{msg}");
    assert!(msg.contains("revoke a token"), "{msg}");
    let client = made["clientId"].as_str().unwrap();
    let (st, _) = send(s.req(
        "DELETE",
        &format!("/v2/clientIdSecrets/{client}"),
        Some(&s.admin),
    ))
    .await;
    assert!(st < 300, "{st}");
    let (st, body) = new_token().await;
    assert_eq!(st, 201, "a revoked token frees its place: {body}");
}

#[tokio::test]
async fn eight_concurrent_creations_never_overshoot_the_quota() {
    let s = server(Quotas {
        databases: 3,
        ..Quotas::default()
    })
    .await;
    let other = s.store.create_org("Burst", None).await.unwrap();
    let token = s.token(other.id, Role::OrgAdmin).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let req = s
            .req("POST", "/v2/databases", Some(&token))
            .json(&create_body(&format!("burst-{i}")));
        handles.push(tokio::spawn(async move { send(req).await }));
    }
    let mut created = 0;
    for h in handles {
        let (st, body) = h.await.unwrap();
        match st {
            201 => created += 1,
            _ => {
                assert_error(st, &body, 409, 4091);
            }
        }
    }
    assert_eq!(created, 3);
    let (_, list) = s.get("/v2/databases?limit=100", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    // The quota is per organization: the harness's own is untouched.
    let (st, _, _) = create_db(&s, &s.admin, "mine").await;
    assert_eq!(st, 201);
}

#[test]
fn the_defaults_are_what_the_readme_says() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let q = Quotas::default();
    for (flag, var, key, value) in [
        (
            "--max-databases",
            "KEYPLANE_MAX_DATABASES",
            "max_databases",
            q.databases,
        ),
        (
            "--max-datacenters",
            "KEYPLANE_MAX_DATACENTERS",
            "max_datacenters",
            q.datacenters,
        ),
        (
            "--max-tokens",
            "KEYPLANE_MAX_TOKENS",
            "max_tokens",
            q.tokens,
        ),
    ] {
        let row = format!("| `{flag}` | `{var}` | `{key}` | `{value}`");
        assert!(
            readme.contains(&row),
            "the README's configuration table lacks {row}"
        );
    }
}
