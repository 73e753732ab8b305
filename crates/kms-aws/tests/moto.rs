//! Wire compatibility with moto, a public AWS emulator written independently of keyplane: the
//! happy path of every operation. moto runs everything in account 123456789012, ignores the
//! signature's credentials and enforces neither policies nor key states, so only the shapes of
//! requests and answers are proven here; the error kinds are tested against the built-in KMS.
//!
//! moto's server must be installed (`scripts/setup-test-deps` puts it in `<workspace>/.venv`):
//! this test fails, never skips, without it.

mod common;

use common::*;
use keyplane_kms::{ErrorKind, KeyState, KmsConnector};

#[tokio::test]
async fn every_operation_speaks_the_wire_protocol_of_moto() {
    let moto = Moto::start().await;
    let customer = moto.client();
    let role = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/creator");
    let key = customer_key(&customer, MOTO_ACCOUNT, &role, None).await;
    let other = customer_key(&customer, MOTO_ACCOUNT, &role, None).await;
    let (connector, kms) = platform_at(
        &moto.endpoint,
        MOTO_ACCOUNT,
        bogus_credentials(),
        fast_retries(),
    );

    let d = kms.describe_key(&key).await.unwrap();
    assert_eq!(d.arn, key);
    assert_eq!(d.account, MOTO_ACCOUNT);
    assert_eq!(d.region, REGION);
    assert_eq!(d.state, KeyState::Enabled);
    assert_eq!(d.key_spec, "SYMMETRIC_DEFAULT");
    assert_eq!(d.key_usage, "ENCRYPT_DECRYPT");
    assert!(!d.multi_region);

    // moto 5 fails DisableKey and EnableKey named by ARN with a 500 (a KeyError in its
    // backend); AWS accepts both forms, and EnableKey is own-account only anyway, so the
    // bare key ID is an equivalent request.
    let key_id = key.rsplit('/').next().unwrap();
    customer.disable_key().key_id(key_id).send().await.unwrap();
    assert_eq!(
        kms.describe_key(&key).await.unwrap().state,
        KeyState::Disabled
    );
    kms.enable_key(key_id).await.unwrap();
    assert_eq!(
        kms.describe_key(&key).await.unwrap().state,
        KeyState::Enabled
    );

    let c = ctx(&[("db", "d1"), ("org", "o1")]);
    let ct = kms.encrypt(&key, b"hello", &c).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &ct, &c).await.unwrap().as_slice(),
        b"hello"
    );
    let ct_no_ctx = kms.encrypt(&key, b"bare", &ctx(&[])).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &ct_no_ctx, &ctx(&[]))
            .await
            .unwrap()
            .as_slice(),
        b"bare"
    );

    let dk = kms.generate_data_key(&key, &c).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert_eq!(
        kms.decrypt(&key, &dk.ciphertext, &c)
            .await
            .unwrap()
            .as_slice(),
        dk.plaintext.as_slice()
    );
    let wrapped = kms
        .generate_data_key_without_plaintext(&key, &c)
        .await
        .unwrap();
    assert_eq!(kms.decrypt(&key, &wrapped, &c).await.unwrap().len(), 32);

    let moved = kms.re_encrypt(&ct, &key, &other, &c).await.unwrap();
    assert_eq!(
        kms.decrypt(&other, &moved, &c).await.unwrap().as_slice(),
        b"hello"
    );

    let grantee = connector.volume_grantee(&identity(MOTO_ACCOUNT));
    let grant_id = kms
        .create_grant(
            &key,
            &grantee,
            &["Decrypt", "kms:Encrypt"],
            "keyplane-volumes",
        )
        .await
        .unwrap();
    let grants = kms.list_grants(&key).await.unwrap();
    let g = grants
        .iter()
        .find(|g| g.grant_id == grant_id)
        .unwrap_or_else(|| panic!("{grants:?}"));
    assert_eq!(g.grantee, grantee);
    assert_eq!(g.name.as_deref(), Some("keyplane-volumes"));
    let mut ops = g.operations.clone();
    ops.sort();
    assert_eq!(ops, ["Decrypt", "Encrypt"]);
    kms.revoke_grant(&key, &grant_id).await.unwrap();
    assert!(
        kms.list_grants(&key)
            .await
            .unwrap()
            .iter()
            .all(|g| g.grant_id != grant_id)
    );

    // moto's error answers decode to the same kinds as AWS's.
    let unknown =
        format!("arn:aws:kms:{REGION}:{MOTO_ACCOUNT}:key/00000000-0000-4000-8000-000000000000");
    let e = kms.describe_key(&unknown).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    // The harness's reset empties moto: the keys made above are gone.
    moto.reset().await;
    let e = kms.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    moto.stop().await;
}
