//! The AWS adapter of keyplane's KMS provider layer: [`AwsKeyProvider`] performs the
//! [`KeyProvider`] operations on a customer's AWS KMS key with the official `aws-sdk-kms`, and
//! [`AwsConnector`] hands one out per platform identity (account, role, region).
//!
//! Every failure is sorted into a [`keyplane_kms::ErrorKind`] from the AWS error code. Every
//! call has a per-attempt and a per-operation timeout, and is retried with exponential
//! backoff and jitter only when the failure says nothing about the key (throttling, server
//! errors, an unreachable KMS); the SDK's own retries are disabled so that [`RetrySettings`]
//! is the whole policy.
//!
//! Credentials: static credentials per platform account (for keyplane's built-in KMS or any
//! compatible endpoint), or on real AWS the default credential chain followed by
//! `sts:AssumeRole` into the platform role with session name `keyplane`.
#![forbid(unsafe_code)]

mod errors;
mod provider;
mod retry;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use keyplane_core::Provider;
use keyplane_kms::{ErrorKind, KeyProvider, KmsConnector, KmsError, PlatformIdentity, Result};
use zeroize::Zeroizing;

pub use provider::AwsKeyProvider;
pub use retry::RetrySettings;

/// The role name the platform's volume service uses, in each platform account.
pub const DEFAULT_VOLUME_ROLE: &str = "keyplane-volumes";
/// The session name of the assumed platform role: it appears in the customer's CloudTrail.
pub const SESSION_NAME: &str = "keyplane";

/// An access key for one platform account. The secret is wiped on drop and never printed.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How keyplane reaches AWS KMS (or a compatible server) and as whom.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Endpoint override: keyplane's built-in KMS, moto, or any compatible server. `None` is
    /// real AWS. When set, STS calls (for `assume_role`) go there too.
    pub endpoint_url: Option<String>,
    /// Static credentials per platform account ID; they take precedence over `assume_role`.
    pub static_credentials: BTreeMap<String, StaticCredentials>,
    /// For accounts without static credentials: the default credential chain, then
    /// `sts:AssumeRole` into the identity's principal (a role ARN) with session name
    /// `keyplane`. Off by default so that a missing credential is an explicit error rather
    /// than a probe of the instance metadata service.
    pub assume_role: bool,
    /// The role NAME grants are made to, in the identity's account.
    pub volume_role: String,
    pub retry: RetrySettings,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            endpoint_url: None,
            static_credentials: BTreeMap::new(),
            assume_role: false,
            volume_role: DEFAULT_VOLUME_ROLE.to_string(),
            retry: RetrySettings::default(),
        }
    }
}

/// Hands out one [`AwsKeyProvider`] per platform identity and keeps it: the SDK client holds
/// the connection pool and the cached (assumed-role) credentials, which are worth reusing.
pub struct AwsConnector {
    settings: AwsSettings,
    clients: Mutex<HashMap<PlatformIdentity, Arc<AwsKeyProvider>>>,
}

impl fmt::Debug for AwsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AwsConnector {
    pub fn new(settings: AwsSettings) -> AwsConnector {
        AwsConnector {
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The concrete provider for `identity` (what [`KmsConnector::connect`] returns, typed).
    pub fn provider(&self, identity: &PlatformIdentity) -> Result<Arc<AwsKeyProvider>> {
        const OP: &str = "Connect";
        if identity.provider != Provider::Aws {
            return Err(KmsError::new(
                ErrorKind::Invalid,
                OP,
                format!(
                    "the AWS adapter cannot act as a {} identity",
                    identity.provider.as_str()
                ),
            ));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = clients.get(identity) {
            return Ok(p.clone());
        }
        let credentials = self.credentials_for(identity)?;
        let client = build_client(&self.settings, &identity.region, credentials);
        let provider = Arc::new(AwsKeyProvider::new(
            client,
            identity.region.clone(),
            self.settings.retry.clone(),
        ));
        clients.insert(identity.clone(), provider.clone());
        Ok(provider)
    }

    fn credentials_for(&self, identity: &PlatformIdentity) -> Result<SharedCredentialsProvider> {
        if let Some(c) = self.settings.static_credentials.get(&identity.account_id) {
            return Ok(SharedCredentialsProvider::new(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.to_string(),
                c.session_token.as_ref().map(|t| t.to_string()),
                None,
                "keyplane-static",
            )));
        }
        if self.settings.assume_role {
            return Ok(SharedCredentialsProvider::new(AssumeRoleOnFirstUse {
                role_arn: identity.principal.clone(),
                region: Region::new(identity.region.clone()),
                endpoint_url: self.settings.endpoint_url.clone(),
                provider: tokio::sync::OnceCell::new(),
            }));
        }
        Err(KmsError::new(
            ErrorKind::Credentials,
            "Connect",
            format!(
                "no credentials for platform account {account}: set kms.aws.static_credentials.\"{account}\" \
                 (access_key_id, secret_access_key) or kms.aws.assume_role = true",
                account = identity.account_id
            ),
        ))
    }
}

impl KmsConnector for AwsConnector {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
        Ok(self.provider(identity)?)
    }

    fn volume_grantee(&self, identity: &PlatformIdentity) -> String {
        format!(
            "arn:aws:iam::{}:role/{}",
            identity.account_id, self.settings.volume_role
        )
    }
}

/// A KMS client for `region` with the SDK's retries off (ours wrap every call) and its connect
/// timeout at our attempt timeout, so that a black-holed address fails within one attempt.
pub fn build_client(
    settings: &AwsSettings,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> aws_sdk_kms::Client {
    let mut conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.retry.attempt_timeout)
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        conf = conf.endpoint_url(url);
    }
    aws_sdk_kms::Client::from_conf(conf.build())
}

/// Assumes the platform role on first use. `connect` is synchronous but loading the default
/// chain is not, so the STS provider is built lazily inside the first credential request; the
/// client's identity cache then refreshes the session before it expires.
#[derive(Debug)]
struct AssumeRoleOnFirstUse {
    role_arn: String,
    region: Region,
    endpoint_url: Option<String>,
    provider: tokio::sync::OnceCell<AssumeRoleProvider>,
}

impl ProvideCredentials for AssumeRoleOnFirstUse {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let provider = self
                .provider
                .get_or_init(|| async {
                    let mut loader =
                        aws_config::defaults(BehaviorVersion::latest()).region(self.region.clone());
                    if let Some(url) = &self.endpoint_url {
                        loader = loader.endpoint_url(url);
                    }
                    let base = loader.load().await;
                    AssumeRoleProvider::builder(self.role_arn.clone())
                        .session_name(SESSION_NAME)
                        .region(self.region.clone())
                        .configure(&base)
                        .build()
                        .await
                })
                .await;
            provider.provide_credentials().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(account: &str) -> PlatformIdentity {
        PlatformIdentity {
            provider: Provider::Aws,
            region: "us-east-2".into(),
            account_id: account.into(),
            principal: format!("arn:aws:iam::{account}:role/creator"),
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = StaticCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: Zeroizing::new("very-secret".into()),
            session_token: Some(Zeroizing::new("token-secret".into())),
        };
        let mut s = AwsSettings::default();
        s.static_credentials.insert("222222222222".into(), c);
        let printed = format!("{:?}", AwsConnector::new(s));
        assert!(printed.contains("AKIAEXAMPLE"));
        assert!(
            !printed.contains("very-secret") && !printed.contains("token-secret"),
            "{printed}"
        );
    }

    #[test]
    fn missing_credentials_name_the_setting() {
        let c = AwsConnector::new(AwsSettings::default());
        let e = c.connect(&identity("222222222222")).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert!(
            e.message.contains("static_credentials") && e.message.contains("assume_role"),
            "{}",
            e.message
        );
    }

    #[test]
    fn volume_grantee_is_the_volume_role_of_the_identity_account() {
        let c = AwsConnector::new(AwsSettings::default());
        assert_eq!(
            c.volume_grantee(&identity("333333333333")),
            "arn:aws:iam::333333333333:role/keyplane-volumes"
        );
    }

    #[test]
    fn only_aws_identities() {
        let c = AwsConnector::new(AwsSettings::default());
        let mut id = identity("222222222222");
        id.provider = Provider::Gcp;
        assert_eq!(c.connect(&id).err().unwrap().kind, ErrorKind::Invalid);
    }
}
