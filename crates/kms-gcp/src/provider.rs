//! [`GcpKeyProvider`]: the [`KeyProvider`] operations as google-cloud-kms-v1 calls.

use std::future::Future;

use async_trait::async_trait;
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion};
use keyplane_core::GcpKeyName;
use keyplane_kms::retry::{RetrySettings, with_retries};
use keyplane_kms::{
    EncryptionContext, ErrorKind, KeyDescription, KeyProvider, KeyState, KmsError, Result,
    RotationFacts,
};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::context_aad;
use crate::errors::classify;

/// Locations that span regions: a key there is reported as multi-region.
const MULTI_REGION_LOCATIONS: [&str; 4] = ["global", "us", "europe", "asia"];

/// What Cloud KMS says of a key, beyond the provider-neutral [`KeyDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpKeyFacts {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub name: String,
    /// `ENCRYPT_DECRYPT`, `ASYMMETRIC_SIGN`, …
    pub purpose: String,
    /// The primary version's full name and state (`ENABLED`, `DISABLED`,
    /// `DESTROY_SCHEDULED`, `DESTROYED`), if the key has one.
    pub primary: Option<(String, String)>,
    /// `SOFTWARE`, `HSM`, `EXTERNAL`, … of new versions.
    pub protection_level: String,
    /// e.g. `GOOGLE_SYMMETRIC_ENCRYPTION`.
    pub algorithm: String,
    pub rotation: RotationFacts,
}

/// The platform's view of Cloud KMS in one location, as one service account. Cheap to share:
/// the client (built on first use) holds the connection pool and the credentials' token cache.
pub struct GcpKeyProvider {
    endpoint: Option<String>,
    credentials: Credentials,
    region: String,
    retry: RetrySettings,
    client: OnceCell<KeyManagementService>,
}

impl std::fmt::Debug for GcpKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKeyProvider")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn enum_name(name: Option<&str>, value: Option<i32>) -> String {
    match (name, value) {
        (Some(n), _) => n.to_string(),
        (None, Some(v)) => format!("UNKNOWN({v})"),
        (None, None) => "UNKNOWN".to_string(),
    }
}

fn version_state(v: &CryptoKeyVersion) -> String {
    enum_name(v.state.name(), v.state.value())
}

impl GcpKeyProvider {
    /// A provider acting with `credentials` on keys in `region`, sending to `endpoint`
    /// (`None`: Cloud KMS itself).
    pub fn new(
        endpoint: Option<String>,
        credentials: Credentials,
        region: impl Into<String>,
        retry: RetrySettings,
    ) -> GcpKeyProvider {
        GcpKeyProvider {
            endpoint,
            credentials,
            region: region.into(),
            retry,
            client: OnceCell::new(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The client, built on first use (building is async; `KmsConnector::connect` is not). Its
    /// own retries are off and its attempt timeout is ours, so [`RetrySettings`] is the whole
    /// policy.
    async fn client(&self, operation: &'static str) -> Result<&KeyManagementService> {
        self.client
            .get_or_try_init(|| async {
                let mut b = KeyManagementService::builder()
                    .with_credentials(self.credentials.clone())
                    .with_retry_policy(NeverRetry)
                    .with_attempt_timeout(self.retry.attempt_timeout);
                if let Some(e) = &self.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().await.map_err(|e| {
                    KmsError::new(
                        ErrorKind::Invalid,
                        operation,
                        format!("could not build the Cloud KMS client: {e}"),
                    )
                })
            })
            .await
    }

    /// Parses the key name and refuses a key of another location up front: Cloud KMS would
    /// answer it (or not) without saying that the location is the problem.
    fn key(&self, operation: &'static str, key_id: &str) -> Result<GcpKeyName> {
        let name: GcpKeyName =
            key_id
                .parse()
                .map_err(|e: keyplane_core::gcp::GcpKeyNameError| {
                    KmsError::new(ErrorKind::Invalid, operation, e.to_string())
                })?;
        name.check_location(&self.region)
            .map_err(|e| KmsError::new(ErrorKind::WrongRegion, operation, e.to_string()))?;
        Ok(name)
    }

    /// One call through the retry loop, its failures sorted into kinds.
    async fn call<T, F, Fut>(&self, operation: &'static str, mut send: F) -> Result<T>
    where
        F: FnMut(KeyManagementService) -> Fut,
        Fut: Future<Output = google_cloud_kms_v1::Result<T>>,
    {
        let client = self.client(operation).await?.clone();
        with_retries(&self.retry, operation, || {
            let sent = send(client.clone());
            async move { sent.await.map_err(|e| classify(operation, e)) }
        })
        .await
    }

    async fn get_crypto_key(
        &self,
        operation: &'static str,
        key_id: &str,
    ) -> Result<(GcpKeyName, CryptoKey)> {
        let name = self.key(operation, key_id)?;
        let key_name = name.key_name();
        let key = self
            .call(operation, |c| {
                let n = key_name.clone();
                async move { c.get_crypto_key().set_name(n).send().await }
            })
            .await?;
        Ok((name, key))
    }

    /// The key's purpose, primary version, protection level and rotation, as Cloud KMS
    /// reports them.
    pub async fn key_facts(&self, key_id: &str) -> Result<GcpKeyFacts> {
        let (_, k) = self.get_crypto_key("DescribeKey", key_id).await?;
        Ok(facts(&k))
    }
}

fn facts(k: &CryptoKey) -> GcpKeyFacts {
    let template = k.version_template.as_ref();
    let protection_level = template
        .map(|t| enum_name(t.protection_level.name(), t.protection_level.value()))
        .or_else(|| {
            k.primary
                .as_ref()
                .map(|p| enum_name(p.protection_level.name(), p.protection_level.value()))
        })
        .unwrap_or_else(|| "SOFTWARE".to_string());
    let algorithm = template
        .map(|t| enum_name(t.algorithm.name(), t.algorithm.value()))
        .unwrap_or_else(|| "GOOGLE_SYMMETRIC_ENCRYPTION".to_string());
    let period = k.rotation_period().map(|d| d.seconds());
    GcpKeyFacts {
        name: k.name.clone(),
        purpose: enum_name(k.purpose.name(), k.purpose.value()),
        primary: k
            .primary
            .as_ref()
            .map(|p| (p.name.clone(), version_state(p))),
        protection_level,
        algorithm,
        rotation: RotationFacts {
            enabled: period.is_some(),
            period_days: period.map(|s| (s / 86_400).clamp(0, i64::from(u32::MAX)) as u32),
            last_rotated_at: k
                .primary
                .as_ref()
                .and_then(|p| p.create_time)
                .map(String::from),
            next_rotation_at: k.next_rotation_time.map(String::from),
        },
    }
}

fn describe(name: &GcpKeyName, f: &GcpKeyFacts) -> KeyDescription {
    let state = match f.primary.as_ref().map(|(_, s)| s.as_str()) {
        Some("ENABLED") => KeyState::Enabled,
        Some("DISABLED") => KeyState::Disabled,
        Some("DESTROY_SCHEDULED") => KeyState::PendingDeletion,
        Some(other) => KeyState::Other(other.to_string()),
        None => KeyState::Other("NO_PRIMARY_VERSION".to_string()),
    };
    KeyDescription {
        arn: name.key_name(),
        account: name.project.clone(),
        region: name.location.clone(),
        state,
        key_spec: f.algorithm.clone(),
        key_usage: f.purpose.clone(),
        multi_region: MULTI_REGION_LOCATIONS.contains(&name.location.as_str()),
        primary_version: f.primary.as_ref().map(|(n, _)| n.clone()),
    }
}

#[async_trait]
impl KeyProvider for GcpKeyProvider {
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription> {
        let (name, k) = self.get_crypto_key("DescribeKey", key_id).await?;
        Ok(describe(&name, &facts(&k)))
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "Encrypt";
        // A version name is sent as given (Cloud KMS then encrypts with that version);
        // the key encrypts with its primary version.
        let name = self.key(OP, key_id)?.to_string();
        let aad = bytes::Bytes::from(context_aad(context));
        let plaintext = bytes::Bytes::copy_from_slice(plaintext);
        let out = self
            .call(OP, |c| {
                let (n, p, a) = (name.clone(), plaintext.clone(), aad.clone());
                async move {
                    c.encrypt()
                        .set_name(n)
                        .set_plaintext(p)
                        .set_additional_authenticated_data(a)
                        .send()
                        .await
                }
            })
            .await?;
        Ok(out.ciphertext.to_vec())
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        const OP: &str = "Decrypt";
        // Cloud KMS decrypts with the key (the ciphertext names its version).
        let name = self.key(OP, key_id)?.key_name();
        let aad = bytes::Bytes::from(context_aad(context));
        let ciphertext = bytes::Bytes::copy_from_slice(ciphertext);
        let out = self
            .call(OP, |c| {
                let (n, ct, a) = (name.clone(), ciphertext.clone(), aad.clone());
                async move {
                    c.decrypt()
                        .set_name(n)
                        .set_ciphertext(ct)
                        .set_additional_authenticated_data(a)
                        .send()
                        .await
                }
            })
            .await?;
        Ok(Zeroizing::new(out.plaintext.to_vec()))
    }

    async fn test_permissions(&self, key_id: &str, permissions: &[&str]) -> Result<Vec<String>> {
        const OP: &str = "TestIamPermissions";
        let name = self.key(OP, key_id)?.key_name();
        let asked: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        let out = self
            .call(OP, |c| {
                let (n, p) = (name.clone(), asked.clone());
                async move {
                    c.test_iam_permissions()
                        .set_resource(n)
                        .set_permissions(p)
                        .send()
                        .await
                }
            })
            .await?;
        Ok(out.permissions)
    }

    async fn rotation_facts(&self, key_id: &str) -> Result<RotationFacts> {
        let (_, k) = self.get_crypto_key("RotationFacts", key_id).await?;
        Ok(facts(&k).rotation)
    }
}
