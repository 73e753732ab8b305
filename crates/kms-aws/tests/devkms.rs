//! The AWS adapter against keyplane's built-in KMS, which enforces key policies, key states and
//! cross-account rules like AWS: the customer (account 111111111111) owns the key, the platform
//! (`role/creator` of account 222222222222) uses it through `AwsConnector`.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::*;
use keyplane_kms::{ErrorKind, KeyState, KmsConnector};
use keyplane_kms_aws::RetrySettings;

#[tokio::test]
async fn every_operation_works_cross_account_with_the_seed_policy() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let other = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let (connector, kms) = s.platform();

    assert_fresh_symmetric_key(&*kms, &key, CUSTOMER_ACCOUNT).await;

    // AWS allows no cross-account EnableKey, whatever the key policy says, and answers as if
    // the key did not exist; the adapter says why.
    let e = kms.enable_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(e.message.contains("across accounts"), "{}", e.message);

    let c = ctx(&[("db", "d1"), ("org", "o1")]);
    let (ct, moved) = data_path_round_trips(&*kms, &key, &other, &c).await;
    // The context is bound to the ciphertext.
    let e = kms
        .decrypt(&key, &ct, &ctx(&[("db", "d2")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{e:?}");
    // Decrypt names the expected key: a ciphertext of another key is refused.
    let e = kms.decrypt(&key, &moved, &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{e:?}");

    let grantee = connector.volume_grantee(&identity(PLATFORM_ACCOUNT));
    assert_eq!(grantee, "arn:aws:iam::222222222222:role/keyplane-volumes");
    let grant_id = grant_round_trip(
        &*kms,
        &key,
        &grantee,
        &["Decrypt", "kms:GenerateDataKeyWithoutPlaintext"],
        &["Decrypt", "GenerateDataKeyWithoutPlaintext"],
        &keyplane_kms::GrantConstraint::ContextSubset(ctx(&[("organization", "o1")])),
    )
    .await;
    let e = kms.revoke_grant(&key, &grant_id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    // The connector hands out one provider per identity.
    let again = connector.connect(&identity(PLATFORM_ACCOUNT)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&kms, &again));
}

#[tokio::test]
async fn enable_key_works_on_a_key_of_the_platform_account() {
    let s = DevKmsServer::start().await;
    // The platform role manages a key of its own account (default key policy: the account).
    let own = s.client(CREATOR);
    let key = new_key_arn(&own).await;
    own.disable_key().key_id(&key).send().await.unwrap();
    let (_c, kms) = s.platform();
    assert_eq!(state(&*kms, &key).await, KeyState::Disabled);
    kms.enable_key(&key).await.unwrap();
    assert_eq!(state(&*kms, &key).await, KeyState::Enabled);
    kms.encrypt(&key, b"x", &ctx(&[])).await.unwrap();
}

#[tokio::test]
async fn a_policy_without_an_action_is_access_denied_for_that_action() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let (_c, kms) = s.platform();
    let c = ctx(&[("db", "d1")]);
    let key_without = async |missing: Option<&str>| {
        customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, missing).await
    };
    let denied = |action: &str| ErrorKind::AccessDenied {
        action: action.into(),
    };

    let no_decrypt = key_without(Some("kms:Decrypt")).await;
    let ct = kms.encrypt(&no_decrypt, b"x", &c).await.unwrap();
    let e = kms.decrypt(&no_decrypt, &ct, &c).await.unwrap_err();
    assert_eq!(e.kind, denied("kms:Decrypt"), "{e:?}");
    assert_eq!(e.operation, "Decrypt");
    assert!(
        !e.message.contains("attempts"),
        "access denied must not be retried: {}",
        e.message
    );

    let no_gdk = key_without(Some("kms:GenerateDataKey")).await;
    let e = kms.generate_data_key(&no_gdk, &c).await.unwrap_err();
    assert_eq!(e.kind, denied("kms:GenerateDataKey"), "{e:?}");

    // ReEncrypt needs ReEncryptFrom on the source and ReEncryptTo on the destination.
    let full = key_without(None).await;
    let no_to = key_without(Some("kms:ReEncryptTo")).await;
    let no_from = key_without(Some("kms:ReEncryptFrom")).await;
    let ct = kms.encrypt(&full, b"x", &c).await.unwrap();
    let e = kms.re_encrypt(&ct, &full, &no_to, &c).await.unwrap_err();
    assert_eq!(e.kind, denied("kms:ReEncryptTo"), "{e:?}");
    let ct2 = kms.encrypt(&no_from, b"x", &c).await.unwrap();
    let e = kms.re_encrypt(&ct2, &no_from, &full, &c).await.unwrap_err();
    assert_eq!(e.kind, denied("kms:ReEncryptFrom"), "{e:?}");

    let no_grants = key_without(Some("kms:CreateGrant")).await;
    let e = kms
        .create_grant(
            &no_grants,
            "arn:aws:iam::222222222222:role/keyplane-volumes",
            &["Decrypt"],
            "v",
            &keyplane_kms::GrantConstraint::None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, denied("kms:CreateGrant"), "{e:?}");
}

#[tokio::test]
async fn key_states_are_sorted_into_kinds() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let (_c, kms) = s.platform();
    let c = ctx(&[]);

    // Disabled: refused, described as such, and the platform may enable it again.
    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    customer.disable_key().key_id(&key).send().await.unwrap();
    let e = kms.encrypt(&key, b"x", &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disabled, "{e:?}");
    let e = kms.generate_data_key(&key, &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disabled, "{e:?}");
    assert_eq!(state(&*kms, &key).await, KeyState::Disabled);
    customer.enable_key().key_id(&key).send().await.unwrap();
    assert_eq!(state(&*kms, &key).await, KeyState::Enabled);
    kms.encrypt(&key, b"x", &c).await.unwrap();

    // Scheduled for deletion.
    let doomed = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let ct = kms.encrypt(&doomed, b"x", &c).await.unwrap();
    customer
        .schedule_key_deletion()
        .key_id(&doomed)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let e = kms.decrypt(&doomed, &ct, &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PendingDeletion, "{e:?}");
    let e = kms.encrypt(&doomed, b"x", &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PendingDeletion, "{e:?}");
    assert_eq!(state(&*kms, &doomed).await, KeyState::PendingDeletion);

    // Unknown key.
    let unknown =
        format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:key/00000000-0000-4000-8000-000000000000");
    let e = kms.describe_key(&unknown).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    let e = kms.encrypt(&unknown, b"x", &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    // A key ARN of another region is told apart from a missing key.
    let elsewhere = key.replace(REGION, "eu-west-1");
    let e = kms.describe_key(&elsewhere).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongRegion, "{e:?}");

    // Asymmetric keys cannot make data keys.
    let rsa = customer_key_of(
        &customer,
        CUSTOMER_ACCOUNT,
        CREATOR,
        None,
        KeySpec::Rsa2048,
        KeyUsageType::SignVerify,
    )
    .await;
    let d = kms.describe_key(&rsa).await.unwrap();
    assert_eq!(
        (d.key_spec.as_str(), d.key_usage.as_str()),
        ("RSA_2048", "SIGN_VERIFY")
    );
    let e = kms.generate_data_key(&rsa, &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongKeyType, "{e:?}");
    let e = kms.encrypt(&rsa, b"x", &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongKeyType, "{e:?}");
}

#[tokio::test]
async fn tampered_ciphertext_is_invalid_ciphertext() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let (_c, kms) = s.platform();
    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let c = ctx(&[("db", "d1")]);
    let mut ct = kms.encrypt(&key, b"secret", &c).await.unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 0x01;
    let e = kms.decrypt(&key, &ct, &c).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{e:?}");
    let e = kms
        .decrypt(&key, b"definitely not a ciphertext", &c)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{e:?}");
}

#[tokio::test]
async fn refused_credentials_are_credentials_errors_and_not_retried() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;

    // An access key the server does not know.
    let (_c, kms) = platform_at(
        &s.endpoint,
        PLATFORM_ACCOUNT,
        bogus_credentials(),
        fast_retries(),
    );
    let e = kms.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
    assert!(!e.message.contains("attempts"), "{}", e.message);

    // A known access key with the wrong secret.
    let mut wrong_secret = s.creator_credentials();
    wrong_secret.secret_access_key = zeroize::Zeroizing::new("wrong".to_string());
    let (_c, kms) = platform_at(&s.endpoint, PLATFORM_ACCOUNT, wrong_secret, fast_retries());
    let e = kms.encrypt(&key, b"x", &ctx(&[])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_after_bounded_retries() {
    // A port that was just free: nothing listens there.
    let port = free_port();
    let retry = RetrySettings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(150),
        attempt_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(10),
    };
    let (_c, kms) = platform_at(
        &format!("http://127.0.0.1:{port}"),
        PLATFORM_ACCOUNT,
        bogus_credentials(),
        retry,
    );
    let start = Instant::now();
    let e = kms
        .describe_key(&format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:key/x"))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(e.message.contains("after 3 attempts"), "{}", e.message);
    // Two backoffs: at least 50 ms + 75 ms (half of each capped backoff), and nowhere near the
    // operation timeout.
    assert!(elapsed >= Duration::from_millis(125), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

/// The key's own rotation as GetKeyRotationStatus reports it across accounts: denied under the
/// seed policy (which does not grant it); granted, off, then on with its period and next date,
/// which an on-demand rotation does not move.
#[tokio::test]
async fn rotation_facts_follow_the_customers_rotation() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let (_c, kms) = s.platform();
    let seed = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let e = kms.rotation_facts(&seed).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: "kms:GetKeyRotationStatus".into()
        },
        "{e:?}"
    );

    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let mut policy: serde_json::Value =
        serde_json::from_str(&seed_policy(CUSTOMER_ACCOUNT, CREATOR, None)).unwrap();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "Sid": "Let the platform read the key's rotation",
            "Effect": "Allow",
            "Principal": {"AWS": CREATOR},
            "Action": "kms:GetKeyRotationStatus",
            "Resource": "*"
        }));
    customer
        .put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let off = kms.rotation_facts(&key).await.unwrap();
    assert!(!off.enabled && off.last_rotated_at.is_none(), "{off:?}");

    customer
        .enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(180)
        .send()
        .await
        .unwrap();
    let on = kms.rotation_facts(&key).await.unwrap();
    assert!(on.enabled, "{on:?}");
    assert_eq!(on.period_days, Some(180));
    assert!(on.next_rotation_at.is_some(), "{on:?}");
    assert_eq!(on.last_rotated_at, None);

    customer
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let rotated = kms.rotation_facts(&key).await.unwrap();
    assert_eq!(rotated.next_rotation_at, on.next_rotation_at, "{rotated:?}");
    let next =
        chrono::DateTime::parse_from_rfc3339(on.next_rotation_at.as_deref().unwrap()).unwrap();
    let days = (next.to_utc() - chrono::Utc::now()).num_days();
    assert!((179..=180).contains(&days), "next rotation in {days} days");
}
