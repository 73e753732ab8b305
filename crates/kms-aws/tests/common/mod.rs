//! Test harness: keyplane's built-in KMS on a loopback port, a customer using a plain
//! aws-sdk-kms client, and the platform going through `AwsConnector`.
#![allow(dead_code)]

pub mod moto;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use keyplane_core::Provider;
use keyplane_devkms::{DevKms, DevKmsConfig};
use keyplane_kms::{KeyProvider, KmsConnector, PlatformIdentity};
use keyplane_kms_aws::{AwsConnector, AwsSettings, RetrySettings, StaticCredentials};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

pub const REGION: &str = "us-east-2";
pub const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";
pub const CUSTOMER_ACCOUNT: &str = "111111111111";
pub const CREATOR: &str = "arn:aws:iam::222222222222:role/creator";
pub const PLATFORM_ACCOUNT: &str = "222222222222";

pub struct DevKmsServer {
    pub kms: DevKms,
    pub endpoint: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for DevKmsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl DevKmsServer {
    pub async fn start() -> DevKmsServer {
        let dir = tempfile::tempdir().unwrap();
        let kms = DevKms::open(DevKmsConfig {
            data_dir: dir.path().join("kms"),
            extra_identities: vec![],
            allow_clock_control: false,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(kms.clone().run(listener, async {
            let _ = rx.await;
        }));
        DevKmsServer {
            kms,
            endpoint,
            _dir: dir,
            stop: Some(tx),
        }
    }

    /// A plain SDK client acting as `principal` (the customer managing their key).
    pub fn client(&self, principal: &str) -> aws_sdk_kms::Client {
        let c = self
            .kms
            .credentials(principal)
            .unwrap_or_else(|| panic!("no identity {principal}"));
        sdk_client(&self.endpoint, &c.access_key_id, &c.secret_access_key)
    }

    pub fn creator_credentials(&self) -> StaticCredentials {
        let c = self.kms.credentials(CREATOR).unwrap();
        StaticCredentials {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: Zeroizing::new(c.secret_access_key.clone()),
            session_token: None,
        }
    }

    /// The platform's provider, connected as `role/creator` of account 222222222222.
    pub fn platform(&self) -> (AwsConnector, Arc<dyn KeyProvider>) {
        platform_at(
            &self.endpoint,
            PLATFORM_ACCOUNT,
            self.creator_credentials(),
            fast_retries(),
        )
    }
}

pub fn sdk_client(endpoint: &str, akid: &str, secret: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(akid, secret, None, None, "test-customer"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
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

pub const SEED_USE_ACTIONS: [&str; 8] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
];
pub const GRANT_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];

/// The key policy the seed document tells customers to write: IAM delegation for their own
/// account, the use statement for the platform role and the persistent-resources statement,
/// with `missing` left out.
pub fn seed_policy(account: &str, principal: &str, missing: Option<&str>) -> String {
    let keep = |a: &&str| Some(*a) != missing;
    let use_actions: Vec<&str> = SEED_USE_ACTIONS.into_iter().filter(keep).collect();
    let grant_actions: Vec<&str> = GRANT_ACTIONS.into_iter().filter(keep).collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-consolepolicy-3",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "Allow an external account to use this KMS key",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": use_actions,
                "Resource": "*"
            },
            {
                "Sid": "Allow attachment of persistent resources",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": grant_actions,
                "Resource": "*"
            }
        ]
    })
    .to_string()
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

pub fn ctx(pairs: &[(&str, &str)]) -> keyplane_kms::EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
