//! Customer key registration over real servers: keyplane on a loopback port, keyplane's
//! built-in KMS as the customer's KMS, an unmodified aws-sdk-kms client as the customer.
mod common;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::{TestServer, assert_error, bound_statements};
use keyplane_core::{DbType, Provider, Role};
use serde_json::{Value, json};

const USE_ACTIONS: [&str; 8] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
];
const GRANT_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];
const ROLE: &str = "arn:aws:iam::222222222222:role/creator";

fn default_statement() -> Value {
    json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
           "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"})
}

/// AWS's default statement and the statements bound to `org` (written out in
/// `common::bound_statements`) minus the action `drop`; a statement left with no action goes.
fn policy_without(org: uuid::Uuid, drop: Option<&str>) -> Value {
    let mut statements = vec![default_statement()];
    for mut st in bound_statements(ROLE, org) {
        let kept: Vec<Value> = st["Action"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a.as_str() != drop)
            .cloned()
            .collect();
        if kept.is_empty() {
            continue;
        }
        st["Action"] = Value::Array(kept);
        statements.push(st);
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

async fn create_key(s: &TestServer, region: &str, policy: Option<&Value>) -> String {
    let kms = s.kms.customer(region);
    let mut req = kms.create_key().description("customer key");
    if let Some(p) = policy {
        req = req.policy(p.to_string());
    }
    let out = req.send().await.expect("create key");
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

fn register_body(org: impl std::fmt::Display, arn: &str, region: &str) -> Value {
    json!({"orgId": org.to_string(), "aws": {"keyID": arn, "region": region}})
}

async fn keys_stored(s: &TestServer) -> usize {
    s.store.list_customer_keys(s.org, None).await.unwrap().len()
}

#[tokio::test]
async fn the_seed_flow_end_to_end() {
    let s = TestServer::start().await;
    // 1. Which account to trust.
    let (st, accounts) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200);
    let provider_id = accounts[0]["provider_id"].as_str().unwrap().to_string();
    // 2. The statements to paste, with that ID filled in.
    let (st, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    assert_eq!(help["providerId"], provider_id.as_str());
    assert_eq!(
        help["principal"],
        format!("arn:aws:iam::{provider_id}:role/creator")
    );
    assert_eq!(
        help["statements"][0]["Sid"],
        "Allow an external account to use this KMS key"
    );
    // 3. The customer creates a key and puts the policy (default statement + helper's).
    let arn = create_key(&s, "us-east-2", None).await;
    let mut statements = vec![default_statement()];
    statements.extend(help["statements"].as_array().unwrap().iter().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    let kms = s.kms.customer("us-east-2");
    kms.put_key_policy()
        .key_id(&arn)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    // The checker agrees before registering.
    let (st, check) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
            &s.admin,
            policy.clone(),
        )
        .await;
    assert_eq!(st, 200, "{check}");
    assert_eq!(check["verdict"], "ok", "{check}");
    // 4. Register.
    let body = register_body(s.org, &arn, "us-east-2");
    let (st, created) = s.post("/v2/kms/classic", &s.admin, body.clone()).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(
        created,
        json!({"orgId": s.org, "aws": {"keyID": arn, "region": "us-east-2"}})
    );
    // 5. List and get show it.
    let (st, list) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(st, 200);
    assert_eq!(
        list,
        json!([{"OrganizationID": s.org, "CloudProvider": "aws", "KeyID": arn, "Region": "us-east-2"}])
    );
    let (st, one) = s
        .get("/v2/kms/classic/provider/aws/region/us-east-2", &s.admin)
        .await;
    assert_eq!(st, 200);
    assert_eq!(one, created);
    let (st, status) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["status"], "AVAILABLE");
    assert_eq!(status["lastCheck"]["ok"], true);
    // Serverless is a separate slot: nothing registered there.
    let (st, body404) = s
        .get("/v2/kms/provider/aws/region/us-east-2", &s.admin)
        .await;
    let msg = assert_error(st, &body404, 404, 4000);
    assert!(msg.contains("POST /v2/kms"), "{msg}");
    // Idempotent: the same registration again answers the same.
    let (st, again) = s.post("/v2/kms/classic", &s.admin, body).await;
    assert_eq!((st, &again), (201, &created));
    // The check left no grant behind.
    let grants = kms.list_grants().key_id(&arn).send().await.unwrap();
    assert!(grants.grants().is_empty(), "{:?}", grants.grants());
    // A different key for the same slot is a conflict.
    let other = create_key(&s, "us-east-2", Some(&policy_without(s.org, None))).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &other, "us-east-2"),
        )
        .await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(
        msg.contains("already registered") && msg.contains("replace it (PUT"),
        "{msg}"
    );
    assert_eq!(keys_stored(&s).await, 1);
}

#[tokio::test]
async fn each_missing_action_is_refused_with_a_message_naming_it() {
    let s = TestServer::start().await;
    for action in USE_ACTIONS.iter().chain(GRANT_ACTIONS.iter()) {
        // The checker finds every gap from the document alone.
        let (_, check) = s
            .post(
                "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
                &s.admin,
                policy_without(s.org, Some(action)),
            )
            .await;
        assert_eq!(check["verdict"], "insufficient", "{action}");
        assert_eq!(check["findings"][0]["action"], *action, "{check}");
        assert_eq!(check["findings"].as_array().unwrap().len(), 1, "{check}");

        let arn = create_key(&s, "us-east-2", Some(&policy_without(s.org, Some(action)))).await;
        if *action == "kms:EnableKey" {
            // AWS refuses EnableKey across accounts whatever the policy says, so no live call
            // can prove it: the live check passes and only the checker reports the gap.
            let (st, body) = s
                .post(
                    "/v2/kms/classic?dryRun=true",
                    &s.admin,
                    register_body(s.org, &arn, "us-east-2"),
                )
                .await;
            assert_eq!(st, 200, "{body}");
            continue;
        }
        let (st, body) = s
            .post(
                "/v2/kms/classic",
                &s.admin,
                register_body(s.org, &arn, "us-east-2"),
            )
            .await;
        let msg = assert_error(st, &body, 422, 4220);
        assert!(
            msg.contains(&format!("perform {action}:")),
            "{action}: {msg}"
        );
        assert!(msg.contains(ROLE), "{msg}");
        assert_eq!(keys_stored(&s).await, 0, "{action}: nothing stored");
    }
}

#[tokio::test]
async fn a_deny_statement_wins_and_is_named() {
    let s = TestServer::start().await;
    let mut policy = policy_without(s.org, None);
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "NoPlatformDecrypt", "Effect": "Deny", "Principal": {"AWS": ROLE},
        "Action": "kms:Decrypt", "Resource": "*"}));
    let arn = create_key(&s, "us-east-2", Some(&policy)).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &arn, "us-east-2"),
        )
        .await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(msg.contains("kms:Decrypt"), "{msg}");
    let (_, check) = s
        .post(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
            &s.admin,
            policy,
        )
        .await;
    assert_eq!(
        check["findings"][0]["reason"]["kind"], "denied_by",
        "{check}"
    );
    assert!(
        check["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NoPlatformDecrypt")
    );
    assert_eq!(keys_stored(&s).await, 0);
}

#[tokio::test]
async fn key_states_and_kinds_are_refused_with_the_fix() {
    let s = TestServer::start().await;
    let kms = s.kms.customer("us-east-2");
    let policy = policy_without(s.org, None);

    let disabled = create_key(&s, "us-east-2", Some(&policy)).await;
    kms.disable_key().key_id(&disabled).send().await.unwrap();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &disabled, "us-east-2"),
        )
        .await;
    assert!(
        assert_error(st, &body, 422, 4220).contains("disabled"),
        "{body}"
    );

    let doomed = create_key(&s, "us-east-2", Some(&policy)).await;
    kms.schedule_key_deletion()
        .key_id(&doomed)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &doomed, "us-east-2"),
        )
        .await;
    assert!(
        assert_error(st, &body, 422, 4220).contains("scheduled for deletion"),
        "{body}"
    );

    let rsa = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let rsa = rsa.key_metadata().unwrap().arn().unwrap().to_string();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &rsa, "us-east-2"),
        )
        .await;
    assert!(
        assert_error(st, &body, 422, 4220).contains("SYMMETRIC_DEFAULT"),
        "{body}"
    );

    let unknown = "arn:aws:kms:us-east-2:111111111111:key/0b0b0b0b-1111-2222-3333-444444444444";
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, unknown, "us-east-2"),
        )
        .await;
    assert!(
        assert_error(st, &body, 422, 4220).contains("not found"),
        "{body}"
    );

    // A key of another region, registered for us-east-2, never reaches the KMS.
    let west = create_key(&s, "eu-west-1", Some(&policy)).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &west, "us-east-2"),
        )
        .await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(
        msg.contains("eu-west-1") && msg.contains("us-east-2"),
        "{msg}"
    );

    let alias = "arn:aws:kms:us-east-2:111111111111:alias/prod";
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, alias, "us-east-2"),
        )
        .await;
    assert!(
        assert_error(st, &body, 400, 1000).contains("alias"),
        "{body}"
    );
    assert_eq!(keys_stored(&s).await, 0);
}

#[tokio::test]
async fn kms_down_is_a_retryable_503_and_nothing_is_stored() {
    let mut s = TestServer::start().await;
    let arn = create_key(&s, "us-east-2", Some(&policy_without(s.org, None))).await;
    s.kms.stop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &arn, "us-east-2"),
        )
        .await;
    let msg = assert_error(st, &body, 503, 5030);
    assert!(msg.contains("nothing was stored"), "{msg}");
    assert_eq!(keys_stored(&s).await, 0);
}

#[tokio::test]
async fn request_shape_organization_and_provider_rules() {
    let s = TestServer::start().await;
    let arn = "arn:aws:kms:us-east-2:111111111111:key/0b0b0b0b-1111-2222-3333-444444444444";
    let both = json!({"orgId": s.org, "aws": {"keyID": arn, "region": "us-east-2"},
                      "gcp": {"keyID": "projects/p/locations/l/keyRings/r/cryptoKeys/k", "region": "us-east1"}});
    let (st, body) = s.post("/v2/kms/classic", &s.admin, both).await;
    assert!(assert_error(st, &body, 400, 1000).contains("exactly one provider"));
    let (st, body) = s
        .post("/v2/kms/classic", &s.admin, json!({"orgId": s.org}))
        .await;
    assert_error(st, &body, 400, 1000);

    let other = uuid::Uuid::new_v4();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(other, arn, "us-east-2"),
        )
        .await;
    assert_error(st, &body, 403, 3001);

    let gcp = json!({"orgId": s.org, "gcp": {"keyID": "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k", "region": "us-east1"}});
    let (st, body) = s.post("/v2/kms/classic", &s.admin, gcp).await;
    let msg = assert_error(st, &body, 400, 1000);
    assert!(
        msg.contains("gcp.keyID") && msg.contains("project"),
        "{msg}"
    );
    let azure = json!({"orgId": s.org, "azure": {"keyID": "https://vault-one.vault.azure.net/keys/k", "region": "eastus"}});
    let (st, body) = s.post("/v2/kms/classic", &s.admin, azure.clone()).await;
    assert!(assert_error(st, &body, 422, 4220).contains("serverless"));
    let (st, body) = s.post("/v2/kms", &s.admin, azure).await;
    assert_error(st, &body, 501, 5010);

    s.store
        .set_unlocked_regions(s.org, Provider::Aws, Some(vec!["eu-west-1".into()]))
        .await
        .unwrap();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, arn, "us-east-2"),
        )
        .await;
    assert!(assert_error(st, &body, 422, 4220).contains("not unlocked"));

    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &ro,
            register_body(s.org, arn, "us-east-2"),
        )
        .await;
    assert_error(st, &body, 403, 3000);
    assert_eq!(keys_stored(&s).await, 0);
}

#[tokio::test]
async fn dry_run_checks_everything_and_stores_nothing() {
    let s = TestServer::start().await;
    let arn = create_key(&s, "us-east-2", Some(&policy_without(s.org, None))).await;
    let (st, body) = s
        .post(
            "/v2/kms?dryRun=true",
            &s.admin,
            register_body(s.org, &arn, "us-east-2"),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["valid"], true);
    assert_eq!(
        body["checks"]["passed"].as_array().unwrap().len(),
        10,
        "{body}"
    );
    assert_eq!(
        body["checks"]["refusedForAnotherOrganization"],
        json!(["kms:Encrypt"]),
        "the binding was proven: {body}"
    );
    assert_eq!(keys_stored(&s).await, 0);
    // A dry run of a bad key fails like the real thing.
    let bad = create_key(
        &s,
        "us-east-2",
        Some(&policy_without(s.org, Some("kms:Encrypt"))),
    )
    .await;
    let (st, body) = s
        .post(
            "/v2/kms?dryRun=true",
            &s.admin,
            register_body(s.org, &bad, "us-east-2"),
        )
        .await;
    assert!(assert_error(st, &body, 422, 4220).contains("kms:Encrypt"));
    // The serverless alias registers for real.
    let (st, body) = s
        .post(
            "/v2/kms/serverless",
            &s.admin,
            register_body(s.org, &arn, "us-east-2"),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let k = s
        .store
        .get_customer_key(s.org, DbType::Serverless, Provider::Aws, "us-east-2")
        .await
        .unwrap();
    assert_eq!(k.unwrap().key_id, arn);
}

#[tokio::test]
async fn every_attempt_and_read_is_in_the_hash_chained_audit_log() {
    let s = TestServer::start().await;
    let arn = create_key(
        &s,
        "us-east-2",
        Some(&policy_without(s.org, Some("kms:Decrypt"))),
    )
    .await;
    let (st, _) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &arn, "us-east-2"),
        )
        .await;
    assert_eq!(st, 422);
    let good = create_key(&s, "us-east-2", Some(&policy_without(s.org, None))).await;
    let (st, _) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            register_body(s.org, &good, "us-east-2"),
        )
        .await;
    assert_eq!(st, 201);
    s.get("/v2/kms/classic", &s.admin).await;
    let ro = s.token(s.org, Role::ReadOnly).await;
    s.post(
        "/v2/kms/classic",
        &ro,
        register_body(s.org, &good, "us-east-2"),
    )
    .await;

    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=2", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let first = page["entries"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["action"], "cmk.register");
    assert_eq!(first[0]["outcome"], "denied");
    assert_eq!(first[1]["action"], "cmk.list");
    let next = page["next"].as_i64().unwrap();
    let (_, page2) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=10&before={next}", s.org),
            &s.admin,
        )
        .await;
    let rest = page2["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 2, "{page2}");
    assert_eq!(
        (rest[0]["outcome"].as_str(), rest[1]["outcome"].as_str()),
        (Some("success"), Some("failure"))
    );
    assert!(rest[1]["reason"].as_str().unwrap().contains("kms:Decrypt"));
    assert!(page2["next"].is_null());
    // Only those with org-audit-read see it.
    let (st, body) = s
        .get(&format!("/v2/organizations/{}/audit", s.org), &ro)
        .await;
    assert_error(st, &body, 403, 3000);
    // The chain verifies.
    let all = s.store.audit_after(0, 1000).await.unwrap();
    let mut prev = keyplane_core::audit::GENESIS.to_string();
    for e in &all {
        let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let org = e.org_id.to_string();
        let h = keyplane_core::audit::entry_hash(
            &prev,
            &keyplane_core::audit::AuditFields {
                seq: e.seq,
                org_id: &org,
                at: &at,
                actor: &e.actor,
                action: e.action.as_str(),
                target: &e.target,
                outcome: e.outcome.as_str(),
                reason: &e.reason,
            },
        );
        assert_eq!(
            (e.prev_hash.as_str(), e.hash.as_str()),
            (prev.as_str(), h.as_str())
        );
        prev = h;
    }
}
