//! The Google Cloud KMS adapter of keyplane's KMS provider layer: [`GcpKeyProvider`] performs
//! the [`KeyProvider`] operations on a customer's Cloud KMS key with Google's official
//! `google-cloud-kms-v1` client (REST transport), and [`GcpConnector`] hands one out per
//! platform identity (a service account, in one region).
//!
//! - describe = the crypto key and its primary version (state, purpose, protection level,
//!   location → region); encrypt/decrypt bind the encryption context as additional
//!   authenticated data ([`context_aad`]); `test_permissions` is `testIamPermissions`;
//!   `rotation_facts` reads `rotationPeriod` / `nextRotationTime`. Data keys are keyplane's
//!   CSPRNG then Encrypt (the trait's defaults): Cloud KMS has no GenerateDataKey.
//! - Every failure is sorted into a [`keyplane_kms::ErrorKind`] by its status code.
//! - Every call has a per-attempt and a per-operation timeout and is retried, with backoff,
//!   only when the failure says nothing about the key (`keyplane_kms::retry`); the client's
//!   own retries are off.
//! - Credentials per service account: its key file (JSON), or a fixed bearer token (keyplane's
//!   built-in KMS hands out dev tokens).
#![forbid(unsafe_code)]

mod errors;
mod provider;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_gax::error::CredentialsError;
use http::{Extensions, HeaderMap, HeaderValue, header};
use keyplane_core::Provider;
use keyplane_kms::{
    EncryptionContext, ErrorKind, KeyProvider, KmsConnector, KmsError, PlatformIdentity, Result,
};
use zeroize::Zeroizing;

pub use keyplane_kms::retry::RetrySettings;
pub use provider::{GcpKeyFacts, GcpKeyProvider};

/// What keyplane asks `testIamPermissions` for: encrypt, decrypt, read the key.
pub use keyplane_core::policy::gcp::PLATFORM_PERMISSIONS;

/// Tags the additional authenticated data so that the format can change later.
const AAD_TAG: &[u8] = b"keyplane-aad-v1\n";

/// The additional authenticated data an [`EncryptionContext`] is bound as: `keyplane-aad-v1\n`
/// followed, for each entry in key order (bytewise, as `BTreeMap` keeps them), by the key's
/// length (u32, big-endian), the key, the value's length and the value. It is a stable format:
/// ciphertexts made today must decrypt with the same context forever, so it never changes; a
/// new format would get a new tag.
pub fn context_aad(context: &EncryptionContext) -> Vec<u8> {
    let mut out = AAD_TAG.to_vec();
    for (k, v) in context {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// How keyplane authenticates as one of the platform's service accounts.
#[derive(Clone)]
pub enum GcpCredentials {
    /// The service account's key file (the JSON `gcloud iam service-accounts keys create`
    /// writes). Access tokens are minted from it and cached by the client.
    ServiceAccountKey(Zeroizing<String>),
    /// A bearer token sent as it is (keyplane's built-in KMS's dev tokens, or a token source
    /// outside keyplane). Never refreshed.
    StaticToken(Zeroizing<String>),
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpCredentials::ServiceAccountKey(_) => f.write_str("ServiceAccountKey(<redacted>)"),
            GcpCredentials::StaticToken(_) => f.write_str("StaticToken(<redacted>)"),
        }
    }
}

/// A fixed `Authorization: Bearer …` header, as a credentials provider of the Google client.
struct StaticToken {
    header: HeaderValue,
    tag: EntityTag,
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> std::result::Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, self.header.clone());
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: h,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

impl GcpCredentials {
    /// The Google client's credentials; a malformed key file or token is a Credentials error.
    pub fn to_client_credentials(&self, operation: &'static str) -> Result<Credentials> {
        match self {
            GcpCredentials::StaticToken(t) => {
                let mut header =
                    HeaderValue::from_str(&format!("Bearer {}", t.as_str())).map_err(|_| {
                        KmsError::new(
                            ErrorKind::Credentials,
                            operation,
                            "the bearer token is not a valid header value",
                        )
                    })?;
                header.set_sensitive(true);
                Ok(Credentials::from(StaticToken {
                    header,
                    tag: EntityTag::new(),
                }))
            }
            GcpCredentials::ServiceAccountKey(json) => {
                let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                    KmsError::new(
                        ErrorKind::Credentials,
                        operation,
                        format!("the service account key is not JSON: {e}"),
                    )
                })?;
                google_cloud_auth::credentials::service_account::Builder::new(value)
                    .build()
                    .map_err(|e| {
                        KmsError::new(
                            ErrorKind::Credentials,
                            operation,
                            format!("unusable service account key: {e}"),
                        )
                    })
            }
        }
    }
}

/// How keyplane reaches Cloud KMS (or a compatible server) and as whom.
#[derive(Debug, Clone, Default)]
pub struct GcpSettings {
    /// Endpoint override: keyplane's built-in KMS or any server speaking Cloud KMS REST v1.
    /// `None` is Cloud KMS itself (`https://cloudkms.googleapis.com`).
    pub endpoint: Option<String>,
    /// Credentials per service account email (the identity's principal).
    pub credentials: BTreeMap<String, GcpCredentials>,
    pub retry: RetrySettings,
}

/// Hands out one [`GcpKeyProvider`] per platform identity and keeps it: its client holds the
/// connection pool and the cached access tokens.
pub struct GcpConnector {
    settings: GcpSettings,
    clients: Mutex<HashMap<PlatformIdentity, Arc<GcpKeyProvider>>>,
}

impl fmt::Debug for GcpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// `serviceAccount:x@p.iam.gserviceaccount.com` or `x@p.iam.gserviceaccount.com` → the email.
fn email_of(principal: &str) -> &str {
    principal
        .strip_prefix("serviceAccount:")
        .unwrap_or(principal)
}

impl GcpConnector {
    pub fn new(settings: GcpSettings) -> GcpConnector {
        GcpConnector {
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &GcpSettings {
        &self.settings
    }

    /// The concrete provider for `identity` (what [`KmsConnector::connect`] returns, typed).
    pub fn provider(&self, identity: &PlatformIdentity) -> Result<Arc<GcpKeyProvider>> {
        const OP: &str = "Connect";
        if identity.provider != Provider::Gcp {
            return Err(KmsError::new(
                ErrorKind::Invalid,
                OP,
                format!(
                    "the GCP adapter cannot act as a {} identity",
                    identity.provider.as_str()
                ),
            ));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = clients.get(identity) {
            return Ok(p.clone());
        }
        let email = email_of(&identity.principal);
        let creds = self
            .settings
            .credentials
            .iter()
            .find(|(k, _)| email_of(k).eq_ignore_ascii_case(email))
            .map(|(_, c)| c)
            .ok_or_else(|| {
                KmsError::new(
                    ErrorKind::Credentials,
                    OP,
                    format!(
                        "no credentials for the platform's service account {email}: set kms.gcp.credentials.\"{email}\" \
                         (a service account key file or a token)"
                    ),
                )
            })?;
        let provider = Arc::new(GcpKeyProvider::new(
            self.settings.endpoint.clone(),
            creds.to_client_credentials(OP)?,
            identity.region.clone(),
            self.settings.retry.clone(),
        ));
        clients.insert(identity.clone(), provider.clone());
        Ok(provider)
    }
}

impl KmsConnector for GcpConnector {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
        Ok(self.provider(identity)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: &str = "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";

    fn identity() -> PlatformIdentity {
        PlatformIdentity {
            provider: Provider::Gcp,
            region: "us-east1".into(),
            account_id: SA.into(),
            principal: SA.into(),
        }
    }

    #[test]
    fn aad_format_is_stable() {
        let mut ctx = EncryptionContext::new();
        assert_eq!(context_aad(&ctx), b"keyplane-aad-v1\n");
        ctx.insert("organization".into(), "o1".into());
        ctx.insert("database".into(), "d".into());
        let mut want = b"keyplane-aad-v1\n".to_vec();
        want.extend_from_slice(b"\0\0\0\x08database\0\0\0\x01d\0\0\0\x0corganization\0\0\0\x02o1");
        assert_eq!(context_aad(&ctx), want);
        // Lengths keep ("ab","c") and ("a","bc") apart.
        let a = EncryptionContext::from([("ab".to_string(), "c".to_string())]);
        let b = EncryptionContext::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(context_aad(&a), context_aad(&b));
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut s = GcpSettings::default();
        s.credentials.insert(
            SA.into(),
            GcpCredentials::StaticToken(Zeroizing::new("tok-secret".into())),
        );
        s.credentials.insert(
            "other@x.iam.gserviceaccount.com".into(),
            GcpCredentials::ServiceAccountKey(Zeroizing::new(
                "{\"private_key\":\"pk-secret\"}".into(),
            )),
        );
        let printed = format!("{:?}", GcpConnector::new(s));
        assert!(
            !printed.contains("tok-secret") && !printed.contains("pk-secret"),
            "{printed}"
        );
    }

    #[test]
    fn missing_or_bad_credentials_are_credentials_errors() {
        let c = GcpConnector::new(GcpSettings::default());
        let e = c.connect(&identity()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert!(e.message.contains(SA), "{}", e.message);

        let mut s = GcpSettings::default();
        s.credentials.insert(
            format!("serviceAccount:{SA}"),
            GcpCredentials::ServiceAccountKey(Zeroizing::new("{}".into())),
        );
        let e = GcpConnector::new(s).connect(&identity()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Credentials);
    }

    #[test]
    fn only_gcp_identities_and_grants_go_to_the_service_account() {
        let mut s = GcpSettings::default();
        s.credentials.insert(
            SA.into(),
            GcpCredentials::StaticToken(Zeroizing::new("t".into())),
        );
        let c = GcpConnector::new(s);
        assert!(c.connect(&identity()).is_ok());
        let mut aws = identity();
        aws.provider = Provider::Aws;
        assert_eq!(c.connect(&aws).err().unwrap().kind, ErrorKind::Invalid);
        assert_eq!(c.volume_grantee(&identity()), SA);
    }
}
