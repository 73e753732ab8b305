//! Test harness: keyplane's built-in KMS on a loopback port (from `keyplane-testkit`), a
//! customer using a plain aws-sdk-kms client, and the platform going through `AwsConnector`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use keyplane_core::Provider;
use keyplane_kms::{
    EncryptionContext, KeyDescription, KeyProvider, KeyState, KmsConnector, PlatformIdentity,
};
use keyplane_kms_aws::{AwsConnector, AwsSettings, RetrySettings, StaticCredentials};
use zeroize::Zeroizing;

// Each test binary uses its own part of the shared harness.
#[allow(unused_imports)]
pub use keyplane_testkit::{
    ADMIN as CUSTOMER, CREATOR, DevKmsServer, MOTO_ACCOUNT, Moto, REGION, free_port, new_key_arn,
    seed_policy,
};

pub const CUSTOMER_ACCOUNT: &str = keyplane_devkms::CUSTOMER_ACCOUNT;
pub const PLATFORM_ACCOUNT: &str = keyplane_devkms::PROVIDER_ACCOUNT;

/// The platform's side of a devkms server: `role/creator` of account 222222222222.
pub trait Platform {
    fn creator_credentials(&self) -> StaticCredentials;
    /// The platform's provider, connected as `role/creator` through `AwsConnector`.
    fn platform(&self) -> (AwsConnector, Arc<dyn KeyProvider>);
}

impl Platform for DevKmsServer {
    fn creator_credentials(&self) -> StaticCredentials {
        let c = self.kms.credentials(CREATOR).unwrap();
        StaticCredentials {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: Zeroizing::new(c.secret_access_key.clone()),
            session_token: None,
        }
    }

    fn platform(&self) -> (AwsConnector, Arc<dyn KeyProvider>) {
        platform_at(
            &self.endpoint,
            PLATFORM_ACCOUNT,
            self.creator_credentials(),
            fast_retries(),
        )
    }
}

pub fn identity(account: &str) -> PlatformIdentity {
    PlatformIdentity {
        provider: Provider::Aws,
        region: REGION.to_string(),
        account_id: account.to_string(),
        principal: format!("arn:aws:iam::{account}:role/creator"),
    }
}

/// Small backoffs so that retry tests take milliseconds, with bounds the tests can assert.
pub fn fast_retries() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        attempt_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(8),
    }
}

pub fn platform_at(
    endpoint: &str,
    account: &str,
    credentials: StaticCredentials,
    retry: RetrySettings,
) -> (AwsConnector, Arc<dyn KeyProvider>) {
    let mut static_credentials = BTreeMap::new();
    static_credentials.insert(account.to_string(), credentials);
    let connector = AwsConnector::new(AwsSettings {
        endpoint_url: Some(endpoint.to_string()),
        static_credentials,
        retry,
        ..AwsSettings::default()
    });
    let provider = connector.connect(&identity(account)).unwrap();
    (connector, provider)
}

pub fn bogus_credentials() -> StaticCredentials {
    StaticCredentials {
        access_key_id: "AKIAAAAAAAAAAAAAAAAA".to_string(),
        secret_access_key: Zeroizing::new("not-a-secret-anyone-knows".to_string()),
        session_token: None,
    }
}

/// Creates a key as the customer of `account` with the seed policy for `platform_role` (minus
/// `missing`) and returns its ARN.
pub async fn customer_key(
    customer: &aws_sdk_kms::Client,
    account: &str,
    platform_role: &str,
    missing: Option<&str>,
) -> String {
    customer_key_of(
        customer,
        account,
        platform_role,
        missing,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
}

pub async fn customer_key_of(
    customer: &aws_sdk_kms::Client,
    account: &str,
    platform_role: &str,
    missing: Option<&str>,
    spec: KeySpec,
    usage: KeyUsageType,
) -> String {
    let created = customer
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .description("customer key")
        .send()
        .await
        .unwrap();
    let md = created.key_metadata().unwrap();
    let arn = md.arn().unwrap().to_string();
    customer
        .put_key_policy()
        .key_id(&arn)
        .policy_name("default")
        .policy(seed_policy(account, platform_role, missing))
        .send()
        .await
        .unwrap();
    arn
}

pub fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The state DescribeKey reports for `key`.
pub async fn state(kms: &dyn KeyProvider, key: &str) -> KeyState {
    kms.describe_key(key).await.unwrap().state
}

/// Asserts everything DescribeKey says of a fresh, enabled symmetric key of `account`.
pub async fn assert_fresh_symmetric_key(kms: &dyn KeyProvider, key: &str, account: &str) {
    let d = kms.describe_key(key).await.unwrap();
    assert_eq!(
        d,
        KeyDescription {
            arn: key.to_string(),
            account: account.to_string(),
            region: REGION.to_string(),
            state: KeyState::Enabled,
            key_spec: "SYMMETRIC_DEFAULT".to_string(),
            key_usage: "ENCRYPT_DECRYPT".to_string(),
            multi_region: false,
            primary_version: None,
        }
    );
}

/// Every data-path call the platform makes, all under context `c`, each checked by decrypting
/// what it made: Encrypt of `b"hello"` under `key`, GenerateDataKey (whose `Debug` must not show
/// the plaintext), GenerateDataKeyWithoutPlaintext, and ReEncrypt from `key` to `other`.
/// Returns the ciphertext under `key` and the re-encrypted one under `other`.
pub async fn data_path_round_trips(
    kms: &dyn KeyProvider,
    key: &str,
    other: &str,
    c: &EncryptionContext,
) -> (Vec<u8>, Vec<u8>) {
    let ct = kms.encrypt(key, b"hello", c).await.unwrap();
    assert_eq!(kms.decrypt(key, &ct, c).await.unwrap().as_slice(), b"hello");

    let dk = kms.generate_data_key(key, c).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert_eq!(
        kms.decrypt(key, &dk.ciphertext, c)
            .await
            .unwrap()
            .as_slice(),
        dk.plaintext.as_slice()
    );
    assert!(!format!("{dk:?}").contains(&format!("{:?}", dk.plaintext.as_slice())));

    let wrapped = kms
        .generate_data_key_without_plaintext(key, c)
        .await
        .unwrap();
    assert_eq!(kms.decrypt(key, &wrapped, c).await.unwrap().len(), 32);

    let moved = kms.re_encrypt(&ct, key, other, c).await.unwrap();
    assert_eq!(
        kms.decrypt(other, &moved, c).await.unwrap().as_slice(),
        b"hello"
    );
    (ct, moved)
}

/// Grants `grantee` the `operations` on `key` under the name `keyplane-volumes` and
/// `constraint`, checks that ListGrants shows the grant with that grantee, name and
/// constraint and the operations `listed` (as AWS names them, sorted), revokes it and checks
/// that it is gone. Returns the grant's ID.
pub async fn grant_round_trip(
    kms: &dyn KeyProvider,
    key: &str,
    grantee: &str,
    operations: &[&str],
    listed: &[&str],
    constraint: &keyplane_kms::GrantConstraint,
) -> String {
    let grant_id = kms
        .create_grant(key, grantee, operations, "keyplane-volumes", constraint)
        .await
        .unwrap();
    let grants = kms.list_grants(key).await.unwrap();
    let g = grants
        .iter()
        .find(|g| g.grant_id == grant_id)
        .unwrap_or_else(|| panic!("{grants:?}"));
    assert_eq!(g.grantee, grantee);
    assert_eq!(g.name.as_deref(), Some("keyplane-volumes"));
    assert_eq!(&g.constraint, constraint);
    let mut ops = g.operations.clone();
    ops.sort();
    assert_eq!(ops, listed);
    kms.revoke_grant(key, &grant_id).await.unwrap();
    let after = kms.list_grants(key).await.unwrap();
    assert!(after.iter().all(|g| g.grant_id != grant_id), "{after:?}");
    grant_id
}
