//! The GCP adapter against keyplane's built-in KMS (its Cloud KMS surface) on a loopback port:
//! the customer sets keys and bindings up with Google's own Rust client, the platform acts
//! through `GcpConnector`, exactly as it would against Cloud KMS.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState as V;
use keyplane_core::policy::gcp::{
    CRYPTO_KEYS_GET, ENCRYPTER_DECRYPTER_ROLE, PLATFORM_PERMISSIONS, USE_TO_DECRYPT,
    USE_TO_ENCRYPT, VIEWER_ROLE,
};
use keyplane_kms::{ErrorKind, KeyProvider, KeyState};

#[tokio::test]
async fn encrypt_decrypt_bound_to_the_context_and_the_key() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k1").await;
    let other = new_key(&c, REGION, "ring", "k2").await;
    grant_platform(&c, &key).await;
    grant_platform(&c, &other).await;
    let p = platform(&s, REGION);

    let d = p.describe_key(&key).await.unwrap();
    assert_eq!(d.arn, key);
    assert_eq!(d.state, KeyState::Enabled);
    assert_eq!(d.region, REGION);
    assert_eq!(d.account, GCP_CUSTOMER_PROJECT);
    assert_eq!(d.key_usage, "ENCRYPT_DECRYPT");
    assert_eq!(d.key_spec, "GOOGLE_SYMMETRIC_ENCRYPTION");
    assert_eq!(
        d.primary_version.as_deref(),
        Some(format!("{key}/cryptoKeyVersions/1").as_str())
    );
    let facts = p.key_facts(&key).await.unwrap();
    assert_eq!(facts.protection_level, "SOFTWARE");

    let pair = p.generate_data_key(&key, &ctx("org-1")).await.unwrap();
    assert_eq!(pair.plaintext.len(), 32);
    let back = p
        .decrypt(&key, &pair.ciphertext, &ctx("org-1"))
        .await
        .unwrap();
    assert_eq!(&back[..], &pair.plaintext[..]);
    // A version name encrypts with that version; decrypting needs only the key.
    let v1 = format!("{key}/cryptoKeyVersions/1");
    let ct = p.encrypt(&v1, b"hello", &ctx("org-1")).await.unwrap();
    assert_eq!(
        &p.decrypt(&v1, &ct, &ctx("org-1")).await.unwrap()[..],
        b"hello"
    );

    for (k, ciphertext, context) in [
        (&key, pair.ciphertext.clone(), ctx("org-2")),
        (&key, pair.ciphertext.clone(), Default::default()),
        (&other, pair.ciphertext.clone(), ctx("org-1")),
        (&key, b"not a ciphertext".to_vec(), ctx("org-1")),
    ] {
        let e = p.decrypt(k, &ciphertext, &context).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{e}");
    }
    let mut tampered = pair.ciphertext.clone();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    assert_eq!(
        p.decrypt(&key, &tampered, &ctx("org-1"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidCiphertext
    );
    s.stop().await;
}

#[tokio::test]
async fn without_the_binding_the_platform_is_denied_and_test_permissions_answers_per_binding() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    let p = platform(&s, REGION);

    let e = p.describe_key(&key).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: CRYPTO_KEYS_GET.into()
        },
        "{e}"
    );
    let e = p.encrypt(&key, b"x", &ctx("o")).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: USE_TO_ENCRYPT.into()
        }
    );
    assert!(
        p.test_permissions(&key, &PLATFORM_PERMISSIONS)
            .await
            .unwrap()
            .is_empty()
    );

    set_roles(&c, &key, GCP_PLATFORM, &[ENCRYPTER_DECRYPTER_ROLE]).await;
    assert_eq!(
        p.test_permissions(&key, &PLATFORM_PERMISSIONS)
            .await
            .unwrap(),
        [USE_TO_ENCRYPT, USE_TO_DECRYPT]
    );
    let ct = p.encrypt(&key, b"x", &ctx("o")).await.unwrap();
    assert!(matches!(
        p.describe_key(&key).await.unwrap_err().kind,
        ErrorKind::AccessDenied { .. }
    ));

    set_roles(&c, &key, GCP_PLATFORM, &[VIEWER_ROLE]).await;
    assert_eq!(
        p.test_permissions(&key, &PLATFORM_PERMISSIONS)
            .await
            .unwrap(),
        [CRYPTO_KEYS_GET]
    );
    let e = p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: USE_TO_DECRYPT.into()
        }
    );

    grant_platform(&c, &key).await;
    assert_eq!(
        p.test_permissions(&key, &PLATFORM_PERMISSIONS)
            .await
            .unwrap()
            .len(),
        3
    );
    // The binding removed: denied again.
    set_roles(&c, &key, GCP_PLATFORM, &[]).await;
    assert!(matches!(
        p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err().kind,
        ErrorKind::AccessDenied { .. }
    ));
    s.stop().await;
}

#[tokio::test]
async fn a_disabled_primary_version_refuses_until_enabled() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    grant_platform(&c, &key).await;
    let p = platform(&s, REGION);
    let ct = p.encrypt(&key, b"data", &ctx("o")).await.unwrap();
    let v1 = format!("{key}/cryptoKeyVersions/1");

    set_version_state(&c, &v1, V::Disabled).await;
    assert_eq!(
        p.describe_key(&key).await.unwrap().state,
        KeyState::Disabled
    );
    assert_eq!(
        p.encrypt(&key, b"x", &ctx("o")).await.unwrap_err().kind,
        ErrorKind::Disabled
    );
    let e = p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disabled);
    assert!(e.message.contains("DISABLED"), "{e}");

    set_version_state(&c, &v1, V::Enabled).await;
    assert_eq!(&p.decrypt(&key, &ct, &ctx("o")).await.unwrap()[..], b"data");
    s.stop().await;
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_readable_manual_and_automatic() {
    let s = DevKmsServer::start_with_clock_control().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    grant_platform(&c, &key).await;
    let p = platform(&s, REGION);
    let ct1 = p.encrypt(&key, b"one", &ctx("o")).await.unwrap();

    let v2 = rotate(&c, &key).await;
    assert_eq!(
        p.describe_key(&key)
            .await
            .unwrap()
            .primary_version
            .as_deref(),
        Some(v2.as_str())
    );
    let ct2 = p.encrypt(&key, b"two", &ctx("o")).await.unwrap();
    assert_eq!(&p.decrypt(&key, &ct1, &ctx("o")).await.unwrap()[..], b"one");
    assert_eq!(&p.decrypt(&key, &ct2, &ctx("o")).await.unwrap()[..], b"two");

    assert!(!p.rotation_facts(&key).await.unwrap().enabled);
    // Automatic rotation every 2 days, first one a day from now.
    let next = chrono::Utc::now() + chrono::Duration::days(1);
    c.update_crypto_key()
        .set_crypto_key(
            google_cloud_kms_v1::model::CryptoKey::new()
                .set_name(&key)
                .set_rotation_period(google_cloud_wkt::Duration::clamp(2 * 86_400, 0))
                .set_next_rotation_time(google_cloud_wkt::Timestamp::clamp(next.timestamp(), 0)),
        )
        .set_update_mask(
            google_cloud_wkt::FieldMask::default()
                .set_paths(["rotation_period", "next_rotation_time"]),
        )
        .send()
        .await
        .unwrap();
    let facts = p.rotation_facts(&key).await.unwrap();
    assert!(facts.enabled);
    assert_eq!(facts.period_days, Some(2));
    assert!(facts.next_rotation_at.is_some());

    advance_clock(&s, 86_400 + 60).await;
    let d = p.describe_key(&key).await.unwrap();
    assert_eq!(
        d.primary_version,
        Some(format!("{key}/cryptoKeyVersions/3"))
    );
    for (ct, want) in [(&ct1, &b"one"[..]), (&ct2, &b"two"[..])] {
        assert_eq!(&p.decrypt(&key, ct, &ctx("o")).await.unwrap()[..], want);
    }
    s.stop().await;
}

#[tokio::test]
async fn destroyed_versions_refuse_scheduled_then_for_good() {
    let s = DevKmsServer::start_with_clock_control().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    grant_platform(&c, &key).await;
    let p = platform(&s, REGION);
    let ct = p.encrypt(&key, b"data", &ctx("o")).await.unwrap();
    let v1 = format!("{key}/cryptoKeyVersions/1");

    c.destroy_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        p.describe_key(&key).await.unwrap().state,
        KeyState::PendingDeletion
    );
    assert_eq!(
        p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err().kind,
        ErrorKind::PendingDeletion
    );

    // Restore brings it back DISABLED, as Cloud KMS does.
    let r = c
        .restore_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.state, V::Disabled);
    assert_eq!(
        p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err().kind,
        ErrorKind::Disabled
    );

    c.destroy_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    advance_clock(&s, 31 * 86_400).await;
    let d = p.describe_key(&key).await.unwrap();
    assert_eq!(d.state, KeyState::Other("DESTROYED".into()));
    let e = p.decrypt(&key, &ct, &ctx("o")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e}");
    assert!(
        c.restore_crypto_key_version()
            .set_name(&v1)
            .send()
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test]
async fn names_regions_missing_keys_and_unknown_tokens_are_sorted() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    let p = platform(&s, REGION);

    let e = p
        .describe_key("arn:aws:kms:us-east-2:111111111111:key/x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("projects/PROJECT"), "{e}");
    let e = platform(&s, "europe-west1")
        .describe_key(&key)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongRegion);

    // A key that does not exist: NotFound to whoever may read the key ring, denied (it may
    // not exist) to anyone else.
    let missing = format!(
        "{}/cryptoKeys/missing",
        key.rsplit_once("/cryptoKeys/").unwrap().0
    );
    assert!(matches!(
        p.describe_key(&missing).await.unwrap_err().kind,
        ErrorKind::AccessDenied { .. }
    ));
    let ring = key.rsplit_once("/cryptoKeys/").unwrap().0.to_string();
    set_roles(&c, &ring, GCP_PLATFORM, &[VIEWER_ROLE]).await;
    assert_eq!(
        p.describe_key(&missing).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // The key ring's binding reaches its keys.
    assert_eq!(p.describe_key(&key).await.unwrap().state, KeyState::Enabled);

    let stranger = connector(&s.endpoint, "kpgcp-not-a-token", fast_retries())
        .provider(&identity(REGION))
        .unwrap();
    assert_eq!(
        stranger.describe_key(&key).await.unwrap_err().kind,
        ErrorKind::Credentials
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unreachable_after_bounded_retries() {
    let port = keyplane_testkit::free_port();
    let p = connector(&format!("http://127.0.0.1:{port}"), "t", fast_retries())
        .provider(&identity(REGION))
        .unwrap();
    let started = std::time::Instant::now();
    let e = p
        .describe_key("projects/customer-project/locations/us-east1/keyRings/r/cryptoKeys/k")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.message.contains("after 3 attempts"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn state_tokens_and_bindings_survive_a_restart() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    grant_platform(&c, &key).await;
    let ct = platform(&s, REGION)
        .encrypt(&key, b"kept", &ctx("o"))
        .await
        .unwrap();
    let token = s.kms.gcp_token(GCP_PLATFORM).unwrap();
    let dir = s.dir.clone();
    let tmp = s.stop().await;

    let s = DevKmsServer::start_in(&dir, false).await;
    assert_eq!(s.kms.gcp_token(GCP_PLATFORM).unwrap(), token);
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("credentials.json")).unwrap())
            .unwrap();
    let listed = creds["gcp"]["identities"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i["member"] == GCP_PLATFORM && i["token"] == token.as_str())
    );
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        !state.contains(token.as_str()),
        "a token is in state.json in the clear"
    );
    assert_eq!(
        &platform(&s, REGION)
            .decrypt(&key, &ct, &ctx("o"))
            .await
            .unwrap()[..],
        b"kept"
    );
    s.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn eight_tasks_at_once_all_round_trip() {
    let s = DevKmsServer::start().await;
    let c = customer(&s).await;
    let key = new_key(&c, REGION, "ring", "k").await;
    grant_platform(&c, &key).await;
    let p = platform(&s, REGION);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (p, key) = (p.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let context = ctx(&format!("org-{t}-{i}"));
                let pair = p.generate_data_key(&key, &context).await.unwrap();
                assert_eq!(
                    &p.decrypt(&key, &pair.ciphertext, &context).await.unwrap()[..],
                    &pair.plaintext[..]
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.stop().await;
}
