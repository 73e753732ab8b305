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

    assert_fresh_symmetric_key(&*kms, &key, MOTO_ACCOUNT).await;

    // moto 5 fails DisableKey and EnableKey named by ARN with a 500 (a KeyError in its
    // backend); AWS accepts both forms, and EnableKey is own-account only anyway, so the
    // bare key ID is an equivalent request.
    let key_id = key.rsplit('/').next().unwrap();
    customer.disable_key().key_id(key_id).send().await.unwrap();
    assert_eq!(state(&*kms, &key).await, KeyState::Disabled);
    kms.enable_key(key_id).await.unwrap();
    assert_eq!(state(&*kms, &key).await, KeyState::Enabled);

    let c = ctx(&[("db", "d1"), ("org", "o1")]);
    data_path_round_trips(&*kms, &key, &other, &c).await;
    let ct_no_ctx = kms.encrypt(&key, b"bare", &ctx(&[])).await.unwrap();
    assert_eq!(
        kms.decrypt(&key, &ct_no_ctx, &ctx(&[]))
            .await
            .unwrap()
            .as_slice(),
        b"bare"
    );

    let grantee = connector.volume_grantee(&identity(MOTO_ACCOUNT));
    grant_round_trip(
        &*kms,
        &key,
        &grantee,
        &["Decrypt", "kms:Encrypt"],
        &["Decrypt", "Encrypt"],
        &keyplane_kms::GrantConstraint::ContextSubset(ctx(&[("organization", "o1")])),
    )
    .await;

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
