//! A key registered before registration proved the organization binding, seen from the CLI
//! against a real `serve --dev`: `keyplane key status` warns (on standard error, the API's
//! JSON staying on standard output) until the key policy is bound, which the one-step
//! `keyplane kms put-key-policy --merge` does in place, without stopping anything.
mod common;

use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use common::{Customer, Run, serve_dev_with};
use keyplane_core::{DbType, KeyStatus, Provider};
use keyplane_store::CustomerKey;
use serde_json::{Value, json};

/// The seed document's policy from before the binding, written out: the platform role may
/// use the key for any organization.
fn seed_policy() -> Value {
    let role = "arn:aws:iam::222222222222:role/creator";
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow", "Principal": {"AWS": role},
         "Action": ["kms:EnableKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom", "kms:DescribeKey"],
         "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow", "Principal": {"AWS": role},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]})
}

fn status(customer: &Customer) -> Run {
    let r = customer.run(&[
        "key",
        "status",
        "--type",
        "serverless",
        "--region",
        "us-east-2",
    ]);
    r.ok();
    r
}

/// Polls `keyplane key status` until `done` holds (the monitor runs every second here).
fn wait_status(customer: &Customer, what: &str, done: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = status(customer);
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn key_status_warns_about_an_unbound_key_until_the_merge_binds_it() {
    let customer = Customer::new();
    let (_server, creds) = serve_dev_with(&customer, &["--key-check-interval", "1"]);
    let org: uuid::Uuid = creds["orgId"].as_str().unwrap().parse().unwrap();
    let key = customer.run(&["kms", "create-key", "--output", "arn"]);
    let key = key.ok().stdout.trim().to_string();
    std::fs::write(customer.cwd().join("seed.json"), seed_policy().to_string()).unwrap();
    customer
        .run(&[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-file",
            "seed.json",
        ])
        .ok();
    // Registration refuses such a key now, so it can only come from an earlier version's
    // store: written there the way that version wrote it.
    let refused = customer.run(&[
        "key",
        "register",
        "--type",
        "serverless",
        "--region",
        "us-east-2",
        "--key-id",
        &key,
    ]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("any organization"), "{refused:#?}");
    let store_url = format!(
        "sqlite://{}",
        customer.cwd().join("keyplane-data/keyplane.db").display()
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = keyplane_store::open(&store_url).await.unwrap();
            let now = Utc::now().trunc_subsecs(3);
            let legacy = CustomerKey {
                org_id: org,
                db_type: DbType::Serverless,
                provider: Provider::Aws,
                region: "us-east-2".into(),
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
            assert_eq!(store.insert_customer_key(&legacy).await.unwrap(), None);
        });

    let warned = wait_status(&customer, "the warning never appeared", |r| {
        r.stderr.contains("warning:")
    });
    let v = warned.json();
    assert_eq!(v["status"], "AVAILABLE", "a warning, not a status: {v}");
    assert_eq!(v["boundToOrganization"], false);
    let warning = v["warning"].as_str().unwrap();
    assert!(warning.contains("any organization"), "{warning}");
    assert!(
        warning.contains(&format!(r#""kms:EncryptionContext:organization":"{org}""#)),
        "{warning}"
    );
    assert!(warned.stderr.contains(warning), "{warned:#?}");

    // The one-step merge updates keyplane's statements where they stand, bound.
    let merged = customer.run(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--merge",
        "--type",
        "serverless",
    ]);
    let m = merged.ok().json();
    assert_eq!(m["updated"], true, "{m}");
    let fixed = wait_status(&customer, "the warning never cleared", |r| {
        r.json()["warning"].is_null()
    });
    assert_eq!(fixed.json()["boundToOrganization"], true);
    assert!(!fixed.stderr.contains("warning:"), "{fixed:#?}");
    let check = customer.run(&[
        "key",
        "check-policy",
        "--type",
        "serverless",
        "--region",
        "us-east-2",
        "--file",
        "seed.json",
    ]);
    assert_ne!(check.code, Some(0), "the old policy is reported unbound");
    assert!(check.stderr.contains("any organization"), "{check:#?}");
    assert_eq!(check.json()["verdict"], "unbound");
}
