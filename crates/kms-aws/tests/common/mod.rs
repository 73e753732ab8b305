//! Test harness: keyplane's built-in KMS on a loopback port (from `keyplane-testkit`), a
//! customer using a plain aws-sdk-kms client, and the platform going through `AwsConnector`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use keyplane_core::Provider;
use keyplane_kms::{EncryptionContext, KeyProvider, KmsConnector, PlatformIdentity};
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
