//! Google Cloud KMS customer keys end to end over real servers: keyplane on a loopback port,
//! its built-in KMS speaking Cloud KMS as the customer's KMS, Google's own Rust client as the
//! customer, and keyplane's worker and key health monitor.
mod common;

use std::time::{Duration, Instant};

use common::gcp::{self, GCP_PLATFORM};
use common::{TestServer, assert_error, send, wait_status};
use keyplane_app::Config;
use keyplane_core::DbType;
use serde_json::{Value, json};

const REGION: &str = "us-east1";
const PLATFORM_SA: &str = "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";

/// A server whose monitor runs often, so suspension shows within a second or two.
async fn server() -> TestServer {
    TestServer::with_config(fast(Config::default())).await
}

fn fast(config: Config) -> Config {
    Config {
        key_check_interval: Duration::from_millis(300),
        kms_grace_period: Duration::from_secs(3600),
        worker_poll: Duration::from_millis(50),
        ..config
    }
}

fn register_path(t: DbType) -> &'static str {
    match t {
        DbType::Classic => "/v2/kms/classic",
        DbType::Serverless => "/v2/kms",
    }
}

fn helper_path(t: DbType) -> &'static str {
    match t {
        DbType::Classic => "/v2/kms/classic",
        DbType::Serverless => "/v2/kms/serverless",
    }
}

fn accounts_path(t: DbType, region: &str) -> String {
    match t {
        DbType::Classic => format!("/v2/kms/classic/provider/gcp/region/{region}/accounts"),
        DbType::Serverless => format!("/v2/kms/provider/gcp/region/{region}/accounts"),
    }
}

fn status_path(t: DbType, region: &str) -> String {
    format!("{}/provider/gcp/region/{region}/status", register_path(t))
}

async fn register(s: &TestServer, t: DbType, key_id: &str, region: &str) -> (u16, Value) {
    s.post(
        register_path(t),
        &s.admin,
        json!({"orgId": s.org, "gcp": {"keyID": key_id, "region": region}}),
    )
    .await
}

async fn create_db(s: &TestServer, t: DbType, name: &str, region: &str) -> (u16, Value, String) {
    let (tier, dbtype) = match t {
        DbType::Classic => ("C10", None),
        DbType::Serverless => ("serverless", Some("vector")),
    };
    let mut body = json!({"name": name, "keyspace": "shop", "cloudProvider": "GCP", "tier": tier,
                          "capacityUnits": 1, "region": region});
    if let Some(d) = dbtype {
        body["dbType"] = json!(d);
    }
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let id = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().rsplit('/').next().unwrap().to_string())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v, id)
}

async fn data(s: &TestServer, db: &str, region: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("/db/{db}-{region}/api/json/v1/shop{path}");
    send(
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .json(&cmd),
    )
    .await
}

/// The seed's flow with a Cloud KMS key: accounts → key → binding → register (with its
/// refusals) → database → documents → the primary version disabled → SUSPENDED → enabled →
/// ACTIVE with every document.
async fn seed_flow(t: DbType) {
    let s = server().await;
    // 1. Which identity to trust: the platform's project, and its service account.
    let (st, accounts) = s.get(&accounts_path(t, REGION), &s.admin).await;
    assert_eq!(st, 200, "{accounts}");
    assert_eq!(
        accounts,
        json!([{"organization_id": s.org, "provider_id": "keyplane-dev", "provider": "gcp",
                "principal": GCP_PLATFORM}])
    );
    // 2. What to grant, with that service account filled in.
    let (st, help) = s
        .get(
            &format!("{}/provider/gcp/region/{REGION}/policy", helper_path(t)),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    assert_eq!(help["providerId"], "keyplane-dev");
    assert_eq!(help["principal"], GCP_PLATFORM);
    assert!(help.get("statements").is_none(), "{help}");
    assert_eq!(
        help["bindings"],
        json!([{"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "members": [GCP_PLATFORM]},
               {"role": "roles/cloudkms.viewer", "members": [GCP_PLATFORM]}])
    );
    let cmds = help["gcloudCommands"].as_array().unwrap();
    assert_eq!(cmds.len(), 2, "{help}");
    assert!(
        cmds[0]
            .as_str()
            .unwrap()
            .contains(&format!("--member={GCP_PLATFORM}")),
        "{help}"
    );

    // 3. The customer's key ring and key in the region.
    let c = gcp::customer(&s.kms).await;
    let key = gcp::new_key(&c, REGION, "shop", "orders").await;

    // Refused: not a key name; a key ring of another location.
    let (st, body) = register(&s, t, "projects/customer-project/keys/orders", REGION).await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(
        msg.contains("gcp.keyID") && msg.contains("keyRings"),
        "{msg}"
    );
    let elsewhere = gcp::new_key(&c, "europe-west1", "shop-eu", "orders").await;
    let (st, body) = register(&s, t, &elsewhere, REGION).await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(
        msg.contains("location europe-west1") && msg.contains(REGION),
        "{msg}"
    );

    // Refused: only the viewer role granted, so the platform cannot encrypt or decrypt.
    gcp::set_bindings(
        &c,
        &key,
        &[(gcp::VIEWER_ROLE, vec![GCP_PLATFORM.to_string()])],
    )
    .await;
    let (st, body) = register(&s, t, &key, REGION).await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(
        msg.contains("roles/cloudkms.cryptoKeyEncrypterDecrypter")
            && msg.contains(GCP_PLATFORM)
            && msg.contains("cloudkms.cryptoKeyVersions.useToEncrypt"),
        "{msg}"
    );
    // The checker reads the pasted getIamPolicy output and says the same.
    let pasted = gcp::iam_policy_json(&s.kms, &key).await;
    let check = format!(
        "{}/provider/gcp/region/{REGION}/policy/check",
        helper_path(t)
    );
    let (st, review) = s.post(&check, &s.admin, pasted).await;
    assert_eq!(st, 200, "{review}");
    assert_eq!(review["verdict"], "insufficient", "{review}");
    let findings = review["members"][0]["findings"].as_array().unwrap();
    assert_eq!(
        findings
            .iter()
            .map(|f| f["permission"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            "cloudkms.cryptoKeyVersions.useToDecrypt"
        ],
        "{review}"
    );

    // The binding as the help gives it.
    gcp::grant(&c, &key, &[GCP_PLATFORM.to_string()]).await;
    let (st, review) = s
        .post(&check, &s.admin, gcp::iam_policy_json(&s.kms, &key).await)
        .await;
    assert_eq!(st, 200);
    assert_eq!(review["verdict"], "ok", "{review}");

    // Refused: the primary version disabled.
    let v1 = gcp::primary(&c, &key).await;
    gcp::disable(&c, &v1).await;
    let (st, body) = register(&s, t, &key, REGION).await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(
        msg.contains(&v1) && msg.contains("disabled") && msg.contains("enable it"),
        "{msg}"
    );
    assert!(
        s.store
            .list_customer_keys(s.org, None)
            .await
            .unwrap()
            .is_empty()
    );
    gcp::enable(&c, &v1).await;

    // 4. Registered by the version's name; the key is stored, the answer names the primary.
    let (st, body) = register(&s, t, &v1, REGION).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        body,
        json!({"orgId": s.org, "gcp": {"keyID": key, "region": REGION}, "primaryVersion": v1})
    );
    let (st, list) = s.get(register_path(t), &s.admin).await;
    assert_eq!(st, 200);
    assert_eq!(
        list,
        json!([{"OrganizationID": s.org, "CloudProvider": "gcp", "KeyID": key, "Region": REGION}])
    );
    let (_, status) = s.get(&status_path(t, REGION), &s.admin).await;
    assert_eq!(status["status"], "AVAILABLE", "{status}");
    assert_eq!(status["primaryVersion"], v1.as_str(), "{status}");
    assert_eq!(status["primaryVersionState"], "ENABLED", "{status}");

    // 5. A database there is encrypted under the key.
    let (st, body, db) = create_db(&s, t, "orders", REGION).await;
    assert_eq!(st, 201, "{body}");
    let view = wait_status(&s, &db, "ACTIVE").await;
    let dc = &view["info"]["datacenters"][0];
    assert_eq!(dc["encryption"]["keyType"], "customer", "{view}");
    assert_eq!(dc["encryption"]["keyID"], key.as_str(), "{view}");
    let (_, status) = s.get(&status_path(t, REGION), &s.admin).await;
    assert_eq!(status["status"], "IN_USE", "{status}");

    let (st, body) = data(
        &s,
        &db,
        REGION,
        "",
        json!({"createCollection": {"name": "orders"}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"_id": format!("o{i}"), "item": "secret-widget-text", "n": i}))
        .collect();
    let (st, body) = data(
        &s,
        &db,
        REGION,
        "/orders",
        json!({"insertMany": {"documents": docs}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");

    // The stored data key is keyplane's 256-bit key wrapped by the customer's key: the
    // platform's service account unwraps it with the datacenter's context as AAD.
    let dc_id = dc["id"].as_str().unwrap();
    let stored = s.store.get_datacenter(dc_id).await.unwrap().unwrap();
    assert_eq!(stored.provider_account, PLATFORM_SA);
    let platform = gcp::client_as(&s.kms, GCP_PLATFORM).await;
    let aad = keyplane_kms_gcp::context_aad(&keyplane_app::dataplane::datacenter_context(&stored));
    let plain = platform
        .decrypt()
        .set_name(&key)
        .set_ciphertext(bytes_of(stored.wrapped_data_key.clone().unwrap()))
        .set_additional_authenticated_data(bytes_of(aad))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext.len(), 32);
    let file = std::fs::read(s.data_dir.join("datacenters").join(format!("{dc_id}.db"))).unwrap();
    assert!(!String::from_utf8_lossy(&file).contains("secret-widget-text"));

    // 6. Rotation (a new primary version) changes nothing for the data; the status shows it.
    let v2 = gcp::rotate(&c, &key).await;
    let (st, status) = s
        .post(
            &format!("{}/provider/gcp/region/{REGION}/check", register_path(t)),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["status"], "IN_USE", "{status}");
    assert_eq!(status["primaryVersion"], v2.as_str(), "{status}");
    assert!(status["rotation"].is_object(), "{status}");
    let (st, body) = data(&s, &db, REGION, "/orders", json!({"countDocuments": {}})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"]["count"], 20);

    // 7. The primary version disabled: SUSPENDED within the interval, data refused.
    gcp::disable(&c, &v2).await;
    let view = wait_status(&s, &db, "SUSPENDED").await;
    let reason = view["message"].as_str().unwrap();
    assert!(
        reason.contains(&v2) && reason.contains("disabled"),
        "{view}"
    );
    let (st, body) = data(
        &s,
        &db,
        REGION,
        "/orders",
        json!({"findOne": {"filter": {"_id": "o1"}}}),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    // The key's status says why (read until the monitor's round that suspended has recorded
    // it: on a loaded machine a later round may first record a slow answer of the KMS).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, status) = s.get(&status_path(t, REGION), &s.admin).await;
        let reason = status["reason"].as_str().unwrap_or_default();
        if status["status"] == "INACCESSIBLE" && reason.contains(&v2) {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 8. Enabled again: ACTIVE by itself, with every document.
    gcp::enable(&c, &v2).await;
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = data(&s, &db, REGION, "/orders", json!({"countDocuments": {}})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"]["count"], 20);
}

fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}

#[tokio::test]
async fn the_seed_flow_with_a_cloud_kms_key_classic() {
    seed_flow(DbType::Classic).await;
}

#[tokio::test]
async fn the_seed_flow_with_a_cloud_kms_key_serverless() {
    seed_flow(DbType::Serverless).await;
}

/// A removed IAM binding, then a destroyed primary version, each suspend with the reason;
/// restoring brings the database back.
#[tokio::test]
async fn a_removed_binding_or_a_destroyed_primary_suspends_with_the_reason() {
    let s = server().await;
    let c = gcp::customer(&s.kms).await;
    let key = gcp::new_key(&c, REGION, "shop", "orders").await;
    gcp::grant(&c, &key, &[GCP_PLATFORM.to_string()]).await;
    let (st, body) = register(&s, DbType::Classic, &key, REGION).await;
    assert_eq!(st, 201, "{body}");
    let (st, body, db) = create_db(&s, DbType::Classic, "orders", REGION).await;
    assert_eq!(st, 201, "{body}");
    wait_status(&s, &db, "ACTIVE").await;

    // The encrypter role removed: the wrapped data key no longer decrypts.
    gcp::set_bindings(&c, &key, &[(gcp::ENCRYPTER_DECRYPTER_ROLE, vec![])]).await;
    let view = wait_status(&s, &db, "SUSPENDED").await;
    let reason = view["message"].as_str().unwrap();
    assert!(
        reason.contains("roles/cloudkms.cryptoKeyEncrypterDecrypter") && reason.contains(&key),
        "{view}"
    );
    gcp::grant(&c, &key, &[GCP_PLATFORM.to_string()]).await;
    wait_status(&s, &db, "ACTIVE").await;

    // The primary version scheduled for destruction.
    let v1 = gcp::primary(&c, &key).await;
    c.destroy_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    let view = wait_status(&s, &db, "SUSPENDED").await;
    let reason = view["message"].as_str().unwrap();
    assert!(
        reason.contains(&v1) && reason.contains("scheduled for destruction"),
        "{view}"
    );
    c.restore_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    gcp::enable(&c, &v1).await;
    wait_status(&s, &db, "ACTIVE").await;
}

/// The terraform provider's `astra_customer_key` with `cloud_provider = "gcp"`: its Go client
/// posts `{"orgId","gcp":{"keyID","region"}}` (no `aws`) to `POST /v2/kms` and wants 201;
/// `GET /v2/kms` answers the four PascalCase fields.
#[tokio::test]
async fn the_terraform_providers_gcp_body_is_registered() {
    let s = server().await;
    let c = gcp::customer(&s.kms).await;
    let key = gcp::new_key(&c, REGION, "tf", "customer-key").await;
    gcp::grant(&c, &key, &[GCP_PLATFORM.to_string()]).await;
    let body = format!(
        r#"{{"gcp":{{"keyID":"{key}","region":"{REGION}"}},"orgId":"{}"}}"#,
        s.org
    );
    let res = s
        .req("POST", "/v2/kms", Some(&s.admin))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let (st, list) = s.get("/v2/kms", &s.admin).await;
    assert_eq!(st, 200);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let mut fields: Vec<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["CloudProvider", "KeyID", "OrganizationID", "Region"]
    );
    assert_eq!(
        items[0],
        json!({"OrganizationID": s.org, "CloudProvider": "gcp", "KeyID": key, "Region": REGION})
    );
}
