//! The real-AWS credential path (`assume_role = true`: the default credential chain, then
//! `sts:AssumeRole` into the platform role) against moto, which serves STS and KMS on one port.
//!
//! The default chain reads its base credentials from the environment, so this binary holds a
//! single test that sets the environment before any runtime or other thread exists.

mod common;

use common::*;
use keyplane_kms::{KeyState, KmsConnector};
use keyplane_kms_aws::{AwsConnector, AwsSettings};

#[test]
fn assume_role_from_the_default_chain_reaches_the_key() {
    // SAFETY: this test binary has exactly one test, and it sets the variables before it starts
    // the Tokio runtime: no other thread reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBASECREDENTIALS");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "base-secret-moto-ignores");
        // Never probe an instance metadata service from a test.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let moto = Moto::start().await;
        let customer = moto.client();
        let role = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/creator");
        let key = customer_key(&customer, MOTO_ACCOUNT, &role, None).await;

        let connector = AwsConnector::new(AwsSettings {
            endpoint_url: Some(moto.endpoint.clone()),
            assume_role: true,
            retry: fast_retries(),
            ..AwsSettings::default()
        });
        let kms = connector.connect(&identity(MOTO_ACCOUNT)).unwrap();
        assert_eq!(
            kms.describe_key(&key).await.unwrap().state,
            KeyState::Enabled
        );
        let c = ctx(&[("db", "d1")]);
        let ct = kms.encrypt(&key, b"as the assumed role", &c).await.unwrap();
        assert_eq!(
            kms.decrypt(&key, &ct, &c).await.unwrap().as_slice(),
            b"as the assumed role"
        );

        // moto keeps the sessions it handed out: the platform role was assumed as `keyplane`.
        let state = moto.get("/moto-api/data.json").await;
        let wanted = format!("arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/creator/keyplane");
        assert!(state.contains(&wanted), "no {wanted} in moto's STS state");
        moto.stop().await;
    });
}
