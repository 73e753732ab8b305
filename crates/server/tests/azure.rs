//! Azure Key Vault customer keys through the DevOps API, against the built-in vault over
//! HTTPS (its dev CA trusted, its host accepted in key IDs), the platform acting through the
//! Azure adapter with the platform application's client secret, and the customer through
//! Microsoft's official Rust SDK and the ARM role-assignment API: what registration refuses
//! and why (nothing stored), the policy helper and checker, and eight registrations of one
//! key at once.
mod common;

use std::sync::Arc;

use azure_core::time::OffsetDateTime;
use common::TestServer;
use common::azure::{ROLE, start};
use serde_json::{Value, json};

fn body(s: &TestServer, key: &str) -> Value {
    json!({"orgId": s.org, "azure": {"keyID": key, "region": "eastus"}})
}

async fn register(s: &TestServer, key: &str) -> (u16, Value) {
    s.post("/v2/kms", &s.admin, body(s, key)).await
}

fn message(v: &Value) -> String {
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Nothing is registered for serverless Azure in eastus.
async fn assert_nothing_stored(s: &TestServer) {
    let (st, v) = s
        .get("/v2/kms/provider/azure/region/eastus", &s.admin)
        .await;
    assert_eq!(st, 404, "{v}");
}

#[tokio::test]
async fn registration_refuses_what_the_platform_cannot_use_and_says_what_to_change() {
    let (vault, s) = start().await;

    // Malformed IDs and hosts that are neither Azure's nor a configured dev vault: 400.
    for bad in [
        "orders",
        "http://contoso.vault.azure.net/keys/orders",
        "https://localhost:1/keys/orders",
        "https://contoso.vault.azure.net/secrets/orders",
    ] {
        let (st, v) = register(&s, bad).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(message(&v).contains("azure.keyID"), "{bad}: {v}");
    }

    // A key the platform holds no role on: the role to assign, and the command.
    let key = vault.create_key("no-role").await;
    let (st, v) = register(&s, &key).await;
    assert_eq!(st, 422, "{v}");
    let m = message(&v);
    assert!(
        m.contains(ROLE) && m.contains("keyplane kms azure assign-role --key no-role"),
        "{m}"
    );
    assert!(m.contains("get, wrapKey, unwrapKey"), "{m}");

    // An unknown key of the vault (Key Vault authorizes first: with no role on the vault, a
    // missing key and a forbidden one answer alike, as above; with one, it is not found).
    vault.grant_on_vault().await;
    let (st, v) = register(&s, &format!("{}/keys/missing", vault.url)).await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("was not found"), "{v}");

    // Disabled, expired, not yet valid: refused with the reason.
    let key = vault.create_key("orders").await;
    vault.grant("orders").await;
    vault
        .set_attributes("orders", |a| a.enabled = Some(false))
        .await;
    let (st, v) = register(&s, &key).await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("disabled"), "{v}");
    vault
        .set_attributes("orders", |a| {
            a.enabled = Some(true);
            a.expires = Some(OffsetDateTime::now_utc() - azure_core::time::Duration::hours(1));
        })
        .await;
    let (st, v) = register(&s, &key).await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("expired"), "{v}");
    vault
        .set_attributes("orders", |a| {
            a.expires = Some(OffsetDateTime::now_utc() + azure_core::time::Duration::days(30));
            a.not_before = Some(OffsetDateTime::now_utc() + azure_core::time::Duration::days(1));
        })
        .await;
    let (st, v) = register(&s, &key).await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("not valid yet"), "{v}");

    // Classic databases take no Azure key, whatever the key.
    vault
        .set_attributes("orders", |a| {
            a.not_before = Some(OffsetDateTime::now_utc() - azure_core::time::Duration::days(1));
        })
        .await;
    // A vault of another region than the database's (the vault reports eastus).
    let (st, v) = s
        .post(
            "/v2/kms",
            &s.admin,
            json!({"orgId": s.org, "azure": {"keyID": key, "region": "westus2"}}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("region eastus, not westus2"), "{v}");

    let (st, v) = s.post("/v2/kms/classic", &s.admin, body(&s, &key)).await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("serverless"), "{v}");
    assert_nothing_stored(&s).await;

    // A dry run checks everything and stores nothing; then the key registers, its version
    // given or not (the versionless key is stored).
    let (st, v) = s
        .post("/v2/kms?dryRun=true", &s.admin, body(&s, &key))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_nothing_stored(&s).await;
    let current = vault
        .customer()
        .get_key("orders", None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
        .key
        .unwrap()
        .kid
        .unwrap();
    let (st, v) = register(&s, &current).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["azure"]["keyID"], key.as_str(), "{v}");
    assert_eq!(v["primaryVersion"], current.as_str(), "{v}");
    let (st, v) = s
        .get("/v2/kms/provider/azure/region/eastus/status", &s.admin)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "AVAILABLE", "{v}");
    assert_eq!(v["primaryVersion"], current.as_str(), "{v}");
    assert!(v["factsError"].is_null(), "{v}");
}

#[tokio::test]
async fn the_policy_helper_names_the_role_and_the_checker_reads_role_assignments() {
    let (vault, s) = start().await;
    let key = vault.create_key("orders").await;
    let path = "/v2/kms/serverless/provider/azure/region/eastus/policy";
    let (st, help) = s.get(&format!("{path}?keyID={key}"), &s.admin).await;
    assert_eq!(st, 200, "{help}");
    assert_eq!(help["providerId"], vault.creds.platform.client_id.as_str());
    assert_eq!(help["keyID"], key.as_str(), "{help}");
    assert_eq!(help["roleAssignment"]["roleName"], ROLE, "{help}");
    assert_eq!(
        help["roleAssignment"]["assigneeObjectId"],
        vault.creds.platform.object_id.as_str()
    );
    assert_eq!(
        help["accessPolicy"]["keyPermissions"],
        json!(["get", "wrapKey", "unwrapKey"])
    );
    let (st, bad) = s.get(&format!("{path}?keyID=nope"), &s.admin).await;
    assert_eq!(st, 400, "{bad}");
    assert!(message(&bad).contains("keyID"), "{bad}");

    // The key's role assignments as ARM lists them: none for the platform, then the role.
    let check = format!("{path}/check?keyID={key}");
    let listed = vault.roles().list(&vault.scope("orders")).await.unwrap();
    let (st, r) = s.post(&check, &s.admin, listed).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["verdict"], "insufficient", "{r}");
    assert_eq!(r["findings"].as_array().unwrap().len(), 3, "{r}");
    vault.grant("orders").await;
    let listed = vault.roles().list(&vault.scope("orders")).await.unwrap();
    let (st, r) = s.post(&check, &s.admin, listed).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["verdict"], "ok", "{r}");
    // Without the key, scopes cannot be checked: said, not guessed.
    let (st, r) = s.post(&format!("{path}/check"), &s.admin, json!([])).await;
    assert_eq!(st, 400, "{r}");
    assert!(message(&r).contains("keyID"), "{r}");
}

#[tokio::test]
async fn eight_registrations_of_one_key_at_once_store_it_once() {
    let (vault, s) = start().await;
    let key = vault.create_key("orders").await;
    vault.grant("orders").await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move { register(&s, &key).await }));
    }
    let mut created = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert!(st == 201 || st == 200, "{st}: {v}");
        assert_eq!(v["azure"]["keyID"], key.as_str(), "{v}");
        created += usize::from(st == 201);
    }
    assert!(created >= 1, "no registration answered 201");
    let (st, v) = s.get("/v2/kms", &s.admin).await;
    assert_eq!(st, 200, "{v}");
    let azure: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["CloudProvider"] == "azure")
        .collect();
    assert_eq!(azure.len(), 1, "{v}");
}
