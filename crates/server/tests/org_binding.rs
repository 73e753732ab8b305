//! A customer's key serves only the organization that owns it, over real servers: keyplane on
//! a loopback port, its built-in KMS (which evaluates the key policy's context conditions as
//! AWS does) as the customers' KMS, and unmodified aws-sdk-kms clients as the customers. Every
//! organization trusts the same platform role, so the key policy's condition is what keeps
//! organization B from having the platform use organization A's key.
mod common;

use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use common::{
    PLATFORM_ROLE, TestServer, assert_error, bound_statements, full_policy, register_key,
    root_statement, seed_policy, send,
};
use keyplane_app::Config;
use keyplane_core::{DbType, KeyStatus, Provider, Role};
use keyplane_store::CustomerKey;
use serde_json::{Value, json};
use uuid::Uuid;

const REGION: &str = "us-east-2";

async fn create_key(s: &TestServer, policy: &Value) -> String {
    let out = s
        .kms
        .customer(REGION)
        .create_key()
        .description("customer key")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

fn register_body(org: Uuid, arn: &str) -> Value {
    json!({"orgId": org, "aws": {"keyID": arn, "region": REGION}})
}

/// The condition, as the messages print it, that binds a statement to `org`.
fn condition_text(org: Uuid) -> String {
    format!(r#""Condition": {{"StringEquals":{{"kms:EncryptionContext:organization":"{org}"}}}}"#)
}

async fn status(s: &TestServer, token: &str) -> Value {
    let (st, body) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            token,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    body
}

async fn create_db(s: &TestServer, token: &str, name: &str) -> String {
    let res = s
        .req("POST", "/v2/databases", Some(token))
        .json(
            &json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                      "capacityUnits": 1, "region": REGION}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    loc.rsplit('/').next().unwrap().to_string()
}

async fn wait_active(s: &TestServer, token: &str, db: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body) = s.get(&format!("/v2/databases/{db}"), token).await;
        assert_eq!(st, 200, "{body}");
        if body["status"] == "ACTIVE" {
            return body;
        }
        assert!(Instant::now() < deadline, "never ACTIVE: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn data(s: &TestServer, db: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("/db/{db}-{REGION}/api/json/v1/shop{path}");
    send(
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .json(&cmd),
    )
    .await
}

async fn audit_actions(s: &TestServer, org: Uuid, action: &str) -> Vec<Value> {
    let (st, page) = s
        .get(
            &format!("/v2/organizations/{org}/audit?limit=100"),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_statements_as_printed_bind_the_key_and_register() {
    let s = TestServer::start().await;
    let (st, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    assert_eq!(
        help["statements"],
        json!(bound_statements(PLATFORM_ROLE, s.org)),
        "the helper prints the organization-bound statements"
    );
    // The customer pastes them as printed, beside their account's own statement.
    let mut statements = vec![root_statement()];
    statements.extend(help["statements"].as_array().unwrap().iter().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    let (st, check) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
            &s.admin,
            policy.clone(),
        )
        .await;
    assert_eq!(st, 200, "{check}");
    assert_eq!(check["verdict"], "ok", "{check}");
    assert_eq!(check["bound_to_organization"], true, "{check}");
    assert_eq!(check["organization_findings"], json!([]), "{check}");

    let arn = create_key(&s, &policy).await;
    let (st, dry) = s
        .post(
            "/v2/kms/classic?dryRun=true",
            &s.admin,
            register_body(s.org, &arn),
        )
        .await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(
        dry["checks"]["refusedForAnotherOrganization"],
        json!(["kms:Encrypt"])
    );
    // kms:CreateGrant is allowed only for grants carrying the organization's context, so the
    // registration's grant carried it.
    let (st, body) = s
        .post("/v2/kms/classic", &s.admin, register_body(s.org, &arn))
        .await;
    assert_eq!(st, 201, "{body}");
    let view = status(&s, &s.admin).await;
    assert_eq!(view["status"], "AVAILABLE");
    assert_eq!(view["boundToOrganization"], true, "{view}");
    assert_eq!(view["warning"], Value::Null, "{view}");
    assert!(
        view["lastCheck"]["message"]
            .as_str()
            .unwrap()
            .contains("refused for another organization: kms:Encrypt"),
        "{view}"
    );
    let grants = s
        .kms
        .customer(REGION)
        .list_grants()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    assert!(grants.grants().is_empty(), "the check's grant was revoked");
}

#[tokio::test]
async fn another_organization_cannot_register_or_use_a_bound_key() {
    let s = TestServer::start().await;
    // Organization A's key, bound to A, registered and in use by A's database.
    let a_key = register_key(&s, REGION).await;
    let a_db = create_db(&s, &s.admin, "a-orders").await;
    let view = wait_active(&s, &s.admin, &a_db).await;
    assert_eq!(
        view["info"]["datacenters"][0]["encryption"]["keyID"],
        a_key.as_str()
    );

    // Organization B trusts the very same platform account, and knows A's key ARN.
    let b = s.store.create_org("Mallory", None).await.unwrap().id;
    let b_token = s.token(b, Role::OrgAdmin).await;
    let (_, mine) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &b_token,
        )
        .await;
    let (_, theirs) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &s.admin,
        )
        .await;
    assert_eq!(mine[0]["provider_id"], theirs[0]["provider_id"]);
    for path in ["/v2/kms/classic?dryRun=true", "/v2/kms/classic", "/v2/kms"] {
        let (st, body) = s.post(path, &b_token, register_body(b, &a_key)).await;
        let msg = assert_error(st, &body, 422, 4220);
        assert!(msg.contains(&format!("organization = {b}")), "{msg}");
        assert!(msg.contains("belongs to that organization"), "{msg}");
        assert!(msg.contains(PLATFORM_ROLE), "{msg}");
    }
    assert!(
        s.store
            .list_customer_keys(b, None)
            .await
            .unwrap()
            .is_empty()
    );
    let (st, body) = s
        .get("/v2/kms/classic/provider/aws/region/us-east-2", &b_token)
        .await;
    assert_error(st, &body, 404, 4000);

    // No database of B can be put on A's key: B's database in that region is
    // platform-keyed, and none of its datacenters names A's key.
    let b_db = create_db(&s, &b_token, "b-orders").await;
    let view = wait_active(&s, &b_token, &b_db).await;
    let dc = &view["info"]["datacenters"][0];
    assert_eq!(dc["encryption"]["keyType"], "platform-managed", "{view}");
    assert_eq!(view["customerKeyed"], false, "{view}");
    assert_ne!(dc["encryption"]["keyID"], a_key.as_str());
    let dcs = s
        .store
        .list_datacenters(b_db.parse().unwrap())
        .await
        .unwrap();
    assert!(dcs.iter().all(|d| d.key_id != a_key), "{dcs:?}");
    // B's attempts are in B's audit log as failures; A's key and database are untouched.
    let (_, page) = s
        .get(&format!("/v2/organizations/{b}/audit?limit=50"), &b_token)
        .await;
    let refused = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"].as_str().unwrap().starts_with("cmk.register") && e["outcome"] == "failure"
        })
        .count();
    assert_eq!(refused, 3, "{page}");
    assert_eq!(status(&s, &s.admin).await["status"], "IN_USE");
    wait_active(&s, &s.admin, &a_db).await;
}

#[tokio::test]
async fn a_key_usable_for_any_organization_is_refused_with_the_condition_to_add() {
    let s = TestServer::start().await;
    let b = s.store.create_org("Other", None).await.unwrap().id;
    let b_token = s.token(b, Role::OrgAdmin).await;
    let key = create_key(&s, &seed_policy()).await;
    for (org, token) in [(s.org, s.admin.clone()), (b, b_token)] {
        let (st, body) = s
            .post("/v2/kms/classic", &token, register_body(org, &key))
            .await;
        let msg = assert_error(st, &body, 422, 4220);
        assert!(
            msg.contains(&format!(
                "lets {PLATFORM_ROLE} use the key for any organization"
            )),
            "{msg}"
        );
        assert!(msg.contains(&condition_text(org)), "{msg}");
        assert!(
            s.store
                .list_customer_keys(org, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let grants = s
        .kms
        .customer(REGION)
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(grants.grants().is_empty(), "no check grant left behind");

    // The checker says the same of the pasted policy, per action.
    let (st, check) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
            &s.admin,
            seed_policy(),
        )
        .await;
    assert_eq!(st, 200, "{check}");
    assert_eq!(check["verdict"], "unbound", "{check}");
    assert_eq!(check["verdict_ok"], true, "every action is allowed");
    assert_eq!(check["bound_to_organization"], false);
    let findings = check["organization_findings"].as_array().unwrap();
    let actions: Vec<&str> = findings
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptTo",
            "kms:ReEncryptFrom",
            "kms:CreateGrant"
        ]
    );
    for f in findings {
        assert_eq!(f["reason"]["kind"], "any_organization", "{f}");
        assert_eq!(
            f["reason"]["condition"],
            json!({"StringEquals": {"kms:EncryptionContext:organization": s.org.to_string()}})
        );
        assert!(
            f["message"].as_str().unwrap().contains("any organization"),
            "{f}"
        );
    }
}

/// A key stored by a registration from before registration proved the binding: the monitor
/// flags it with a warning (not INACCESSIBLE) and one audit entry, and the README's procedure
/// binds it without the database ever stopping.
#[tokio::test]
async fn a_key_registered_before_the_binding_is_flagged_until_its_policy_is_bound() {
    let config = Config {
        // Rounds are run by the test itself.
        key_check_interval: Duration::from_secs(3600),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let s = TestServer::with_config(config).await;
    let key = create_key(&s, &seed_policy()).await;
    let now = Utc::now().trunc_subsecs(3);
    let legacy = CustomerKey {
        org_id: s.org,
        db_type: DbType::Classic,
        provider: Provider::Aws,
        region: REGION.into(),
        key_id: key.clone(),
        provider_account: "222222222222".into(),
        created_at: now,
        created_by: "client-from-before".into(),
        status: KeyStatus::Available,
        status_reason: None,
        status_since: now,
        last_check_at: Some(now),
        last_check_ok: Some(true),
        last_check_message: Some("registration check passed".into()),
        bound_at: None,
        binding_warning: None,
    };
    assert_eq!(s.store.insert_customer_key(&legacy).await.unwrap(), None);
    let db = create_db(&s, &s.admin, "legacy-orders").await;
    wait_active(&s, &s.admin, &db).await;
    let (st, _) = data(&s, &db, "", json!({"createCollection": {"name": "o"}})).await;
    assert_eq!(st, 200);
    let (st, _) = data(
        &s,
        &db,
        "/o",
        json!({"insertOne": {"document": {"_id": "a", "n": 1}}}),
    )
    .await;
    assert_eq!(st, 200);

    let view = status(&s, &s.admin).await;
    assert_eq!(view["boundToOrganization"], false, "{view}");
    s.app.monitor().check_all().await.unwrap();
    let view = status(&s, &s.admin).await;
    assert_eq!(
        view["status"], "IN_USE",
        "a warning, not INACCESSIBLE: {view}"
    );
    let warning = view["warning"].as_str().unwrap_or_else(|| panic!("{view}"));
    assert!(warning.contains("any organization"), "{warning}");
    assert!(warning.contains(&condition_text(s.org)), "{warning}");
    assert_eq!(
        audit_actions(&s, s.org, "cmk.binding.unbound").await.len(),
        1
    );
    s.app.monitor().check_all().await.unwrap();
    assert_eq!(
        audit_actions(&s, s.org, "cmk.binding.unbound").await.len(),
        1,
        "one audit entry when the warning first appears"
    );
    readable(&s, &db).await;

    // The README's way, without downtime. 1. The bound statements beside the old ones (whose
    // Sids are renamed, as Sids must be unique).
    let kms = s.kms.customer(REGION);
    let mut old = seed_policy()["Statement"].as_array().unwrap().clone();
    for st in old.iter_mut().skip(1) {
        st["Sid"] = json!(format!("{} (before binding)", st["Sid"].as_str().unwrap()));
    }
    let mut both = old.clone();
    both.extend(bound_statements(PLATFORM_ROLE, s.org));
    let put = |policy: Value| {
        let (kms, key) = (kms.clone(), key.clone());
        async move {
            kms.put_key_policy()
                .key_id(&key)
                .policy(policy.to_string())
                .send()
                .await
                .unwrap();
        }
    };
    put(json!({"Version": "2012-10-17", "Statement": both})).await;
    s.app.monitor().check_all().await.unwrap();
    assert!(
        status(&s, &s.admin).await["warning"].is_string(),
        "still usable for anyone"
    );
    readable(&s, &db).await;
    // 2. Check the policy as it will be without the old statements.
    let (_, check) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
            &s.admin,
            full_policy(s.org),
        )
        .await;
    assert_eq!(check["verdict"], "ok", "{check}");
    // 3. Remove the old statements; the key check clears the warning.
    put(full_policy(s.org)).await;
    let (st, view) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/check",
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["warning"], Value::Null, "{view}");
    assert_eq!(view["boundToOrganization"], true, "{view}");
    assert_eq!(view["status"], "IN_USE", "{view}");
    readable(&s, &db).await;
    wait_active(&s, &s.admin, &db).await;
    assert_eq!(audit_actions(&s, s.org, "cmk.binding.bound").await.len(), 1);
    s.app.monitor().check_all().await.unwrap();
    assert_eq!(audit_actions(&s, s.org, "cmk.binding.bound").await.len(), 1);
    assert!(s.store.unbound_customer_keys().await.unwrap().is_empty());
}

/// The document written before the policy changes is still served: no downtime.
async fn readable(s: &TestServer, db: &str) {
    let (st, body) = data(s, db, "/o", json!({"findOne": {"filter": {"_id": "a"}}})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["document"]["n"], 1, "{body}");
}
