//! The OpenBao / Vault Transit adapter of keyplane's KMS provider layer.
//! [`OpenbaoKeyProvider`] performs the [`KeyProvider`] operations on a customer's Transit
//! keys over the server's HTTP API (reqwest with rustls, already in the tree; no SDK), logged
//! in as the platform's AppRole role in the customer's server; [`OpenbaoConnector`] hands
//! one out per customer server, namespace and role credentials, and keeps it so that its
//! token is reused.
//!
//! - Operations: describe = `GET <mount>/keys/<name>`; encrypt, decrypt,
//!   `datakey/plaintext` and `datakey/wrapped`, each bound to keyplane's encryption context
//!   (see [`context`] for how and why); re-encryption is decrypt then encrypt;
//!   [`KeyProvider::test_permissions`] asks `sys/capabilities-self`;
//!   [`KeyProvider::rotation_facts`] reads `auto_rotate_period` and the latest version's time.
//! - Tokens: logged in on first use, renewed at half their lease, logged in again when the
//!   lease cannot be extended; a 403 with a token the server no longer honours (expired,
//!   revoked) logs in again once and repeats the request.
//! - Errors: every failure is sorted into a [`keyplane_kms::ErrorKind`] (see `errors`). A
//!   sealed server is [`ErrorKind::Unreachable`]: it answers, but can serve no key until an
//!   operator unseals it, exactly like a server that cannot be reached. A ciphertext older
//!   than the key's `min_decryption_version` is [`ErrorKind::InvalidState`], with a message
//!   naming the version and `min_decryption_version`.
//! - Limits: a timeout per attempt and per operation; retries with backoff only for
//!   failures that say nothing about the key, by the shared loop of
//!   [`keyplane_kms::retry`] ([`RetrySettings`]).
//! - Secrets: the secret ID and the token live in wiped-on-drop memory, are redacted from
//!   every Debug output, go in a header marked sensitive, and are never logged. Redirects
//!   are not followed, and a key ID naming another server than the credentials' is refused
//!   before anything is sent.
#![forbid(unsafe_code)]

pub mod context;
mod errors;
mod provider;
mod session;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use keyplane_core::platform_jwt::PlatformJwtKey;
use keyplane_core::{OpenbaoKeyRef, OpenbaoRole};
pub use keyplane_kms::LoginCredential;
use keyplane_kms::{
    ErrorKind, KeyLogin, KeyProvider, KmsConnector, KmsError, PlatformIdentity, Result,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use context::{canonical_context, transit_ciphertext_version};
pub use errors::OpenbaoError;
pub use keyplane_kms::retry::RetrySettings;
pub use provider::{
    CONTEXT_BINDING_TYPES, KEY_USAGE, OpenbaoKeyProvider, TransitKeyInfo, required_permissions,
    transit_permission,
};
pub use session::SessionStats;

/// How the platform reaches one customer's OpenBao and logs in there: the server and
/// namespace (those of the customer's key), the AppRole role and its credentials, and the
/// CA bundle for a server whose certificate a private CA signed.
#[derive(Clone)]
pub struct OpenbaoAccess {
    /// `scheme://host[:port]`, as [`OpenbaoKeyRef::address`] gives it.
    pub address: String,
    pub namespace: Option<String>,
    pub role: OpenbaoRole,
    /// The AppRole's role ID and secret ID, or the organization a platform JWT names.
    pub credential: LoginCredential,
    /// PEM certificates to trust, alone, for an https address; None trusts the system's.
    pub ca_bundle_pem: Option<String>,
}

impl OpenbaoAccess {
    /// Access to the server and namespace of `key`.
    pub fn for_key(
        key: &OpenbaoKeyRef,
        role: OpenbaoRole,
        role_id: Zeroizing<String>,
        secret_id: Zeroizing<String>,
    ) -> OpenbaoAccess {
        OpenbaoAccess {
            address: key.address().to_string(),
            namespace: key.namespace().map(str::to_string),
            role,
            credential: LoginCredential::AppRole { role_id, secret_id },
            ca_bundle_pem: None,
        }
    }

    /// Access to the server and namespace of `key` as JWT role `role`, with JWTs naming
    /// `subject`.
    pub fn for_key_jwt(key: &OpenbaoKeyRef, role: OpenbaoRole, subject: &str) -> OpenbaoAccess {
        OpenbaoAccess {
            address: key.address().to_string(),
            namespace: key.namespace().map(str::to_string),
            role: role.as_jwt(),
            credential: LoginCredential::PlatformJwt {
                subject: subject.to_string(),
            },
            ca_bundle_pem: None,
        }
    }

    pub fn with_ca_bundle(mut self, pem: impl Into<String>) -> OpenbaoAccess {
        self.ca_bundle_pem = Some(pem.into());
        self
    }

    /// A digest of everything that makes a session distinct, secrets included, so that
    /// new credentials get a new session and never a token obtained with the old ones.
    fn fingerprint(&self, region: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.address.as_str(),
            self.namespace.as_deref().unwrap_or(""),
            self.role.mount(),
            self.role.role_name(),
            match &self.credential {
                LoginCredential::AppRole { role_id, .. } => role_id.as_str(),
                LoginCredential::PlatformJwt { .. } => "jwt",
            },
            match &self.credential {
                LoginCredential::AppRole { secret_id, .. } => secret_id.as_str(),
                LoginCredential::PlatformJwt { subject } => subject.as_str(),
            },
            self.ca_bundle_pem.as_deref().unwrap_or(""),
            region,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

impl fmt::Debug for OpenbaoAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenbaoAccess")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("role", &self.role.provider_id())
            .field(
                "credential",
                &match &self.credential {
                    LoginCredential::AppRole { .. } => "approle (redacted)".to_string(),
                    LoginCredential::PlatformJwt { subject } => format!("jwt, subject {subject}"),
                },
            )
            .field(
                "ca_bundle_pem",
                &self.ca_bundle_pem.as_ref().map(|p| p.len()),
            )
            .finish()
    }
}

/// Settings shared by every OpenBao session of the platform.
#[derive(Debug, Clone, Default)]
pub struct OpenbaoSettings {
    pub retry: RetrySettings,
    /// Signs the JWTs of JWT auth roles; None refuses such roles.
    pub jwt: Option<Arc<JwtSigner>>,
}

/// The platform's JWT signing key (its JWTs name the key's own issuer).
#[derive(Debug)]
pub struct JwtSigner {
    pub key: PlatformJwtKey,
}

/// Hands out one [`OpenbaoKeyProvider`] per customer server, namespace, credentials and
/// region, and keeps it: it holds the connection pool and the token.
pub struct OpenbaoConnector {
    settings: OpenbaoSettings,
    providers: Mutex<HashMap<[u8; 32], Arc<OpenbaoKeyProvider>>>,
}

impl fmt::Debug for OpenbaoConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenbaoConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenbaoConnector {
    pub fn new(settings: OpenbaoSettings) -> OpenbaoConnector {
        OpenbaoConnector {
            settings,
            providers: Mutex::new(HashMap::new()),
        }
    }

    /// The provider acting with `access` for keys registered in `region` (which
    /// [`KeyProvider::describe_key`] reports: Transit has no regions of its own).
    pub fn provider(
        &self,
        access: &OpenbaoAccess,
        region: &str,
    ) -> Result<Arc<OpenbaoKeyProvider>> {
        let id = access.fingerprint(region);
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = providers.get(&id) {
            return Ok(p.clone());
        }
        let provider = Arc::new(build_provider(access, region, &self.settings)?);
        providers.insert(id, provider.clone());
        Ok(provider)
    }

    /// The same, as the provider-neutral trait object.
    pub fn connect(&self, access: &OpenbaoAccess, region: &str) -> Result<Arc<dyn KeyProvider>> {
        Ok(self.provider(access, region)?)
    }

    /// Drops the kept provider for `access` (after its credentials were replaced, say).
    pub fn forget(&self, access: &OpenbaoAccess, region: &str) {
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        providers.remove(&access.fingerprint(region));
    }
}

/// As the application's connector: an OpenBao key is always opened with the login its
/// customer gave with it, never as a platform-wide identity.
impl KmsConnector for OpenbaoConnector {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
        Err(KmsError::new(
            ErrorKind::Credentials,
            "Connect",
            format!(
                "an OpenBao key is used with the role credentials registered with it; none were given for {} in {}",
                identity.principal, identity.region
            ),
        ))
    }

    fn connect_with_login(
        &self,
        identity: &PlatformIdentity,
        key_id: &str,
        login: &KeyLogin,
    ) -> Result<Arc<dyn KeyProvider>> {
        let key = OpenbaoKeyRef::parse(key_id)
            .map_err(|e| KmsError::new(ErrorKind::Invalid, "Connect", e.to_string()))?;
        let role = OpenbaoRole::from_provider_id(&login.role)
            .map_err(|e| KmsError::new(ErrorKind::Invalid, "Connect", e.to_string()))?;
        let mut access = match &login.credential {
            LoginCredential::AppRole { role_id, secret_id } => {
                OpenbaoAccess::for_key(&key, role, role_id.clone(), secret_id.clone())
            }
            LoginCredential::PlatformJwt { subject } => {
                OpenbaoAccess::for_key_jwt(&key, role, subject)
            }
        };
        access.ca_bundle_pem = login.ca_bundle_pem.clone();
        Ok(self.provider(&access, &identity.region)?)
    }
}

/// A provider for `access`, not kept anywhere (the connector keeps the ones it builds).
pub fn build_provider(
    access: &OpenbaoAccess,
    region: &str,
    settings: &OpenbaoSettings,
) -> Result<OpenbaoKeyProvider> {
    // The address and namespace must be what a key ID would give, so that every key ID
    // this provider accepts is compared against the same canonical form.
    let probe = format!(
        "{}/v1/{}keyplane/keys/probe",
        access.address,
        access
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default()
    );
    let key = OpenbaoKeyRef::parse_in_namespace(&probe, access.namespace.as_deref())
        .map_err(|e| KmsError::new(ErrorKind::Invalid, "Connect", e.to_string()))?;
    if key.address() != access.address {
        return Err(KmsError::new(
            ErrorKind::Invalid,
            "Connect",
            format!(
                "the address {:?} is not in canonical form {:?} (scheme://host[:port], lower case)",
                access.address,
                key.address()
            ),
        ));
    }
    let server = transport::Server::new(
        key.address(),
        key.namespace(),
        access.ca_bundle_pem.as_deref(),
        &settings.retry,
    )?;
    let sessions = session::Sessions::new(
        access.role.clone(),
        access.credential.clone(),
        settings.jwt.clone(),
    );
    Ok(OpenbaoKeyProvider::new(
        server,
        sessions,
        region.to_string(),
        settings.retry.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> OpenbaoAccess {
        let key = OpenbaoKeyRef::parse("http://127.0.0.1:1/v1/transit/keys/k").unwrap();
        OpenbaoAccess::for_key(
            &key,
            OpenbaoRole::approle(None, "keyplane").unwrap(),
            Zeroizing::new("role-id-value".into()),
            Zeroizing::new("secret-id-value".into()),
        )
    }

    #[test]
    fn secrets_are_not_printed() {
        let a = access();
        let connector = OpenbaoConnector::new(OpenbaoSettings::default());
        let p = connector.provider(&a, "us-east-2").unwrap();
        let printed = format!("{a:?} {p:?} {connector:?}");
        assert!(printed.contains("auth/approle/role/keyplane"), "{printed}");
        assert!(
            !printed.contains("role-id-value") && !printed.contains("secret-id-value"),
            "{printed}"
        );
    }

    #[test]
    fn the_connector_keeps_one_provider_per_credentials() {
        let connector = OpenbaoConnector::new(OpenbaoSettings::default());
        let a = access();
        let p1 = connector.provider(&a, "us-east-2").unwrap();
        let p2 = connector.provider(&a, "us-east-2").unwrap();
        assert!(Arc::ptr_eq(&p1, &p2));
        let mut b = a.clone();
        b.credential = LoginCredential::AppRole {
            role_id: Zeroizing::new("role-id-value".into()),
            secret_id: Zeroizing::new("another".into()),
        };
        assert!(!Arc::ptr_eq(
            &p1,
            &connector.provider(&b, "us-east-2").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &p1,
            &connector.provider(&a, "eu-west-1").unwrap()
        ));
        connector.forget(&a, "us-east-2");
        assert!(!Arc::ptr_eq(
            &p1,
            &connector.provider(&a, "us-east-2").unwrap()
        ));
    }

    #[test]
    fn addresses_must_be_canonical_and_bundles_usable() {
        let mut a = access();
        a.address = "HTTP://127.0.0.1:1".into();
        let e = build_provider(&a, "r", &OpenbaoSettings::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        let mut a = access();
        a.address = "https://127.0.0.1:1".into();
        let e = build_provider(
            &a.clone().with_ca_bundle("not a pem"),
            "r",
            &OpenbaoSettings::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("no PEM certificate"), "{}", e.message);
    }

    /// A hand-written listener, since no real OpenBao redirects on demand (a standby does, to
    /// its active node): it answers every request with a 307 to a second listener, which must
    /// never see a connection, so the login's secret ID never goes where the server points.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpListener;
        let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!(
            "http://{}/v1/auth/approle/login",
            elsewhere.local_addr().unwrap()
        );
        let redirecting = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", redirecting.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = redirecting.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        let mut a = access();
        a.address = address.clone();
        let p = build_provider(&a, "r", &OpenbaoSettings::default()).unwrap();
        let e = p
            .describe_key(&format!("{address}/v1/transit/keys/k"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Credentials, "{e}");
        assert!(e.message.contains("HTTP 307"), "{}", e.message);
        let followed =
            tokio::time::timeout(std::time::Duration::from_millis(200), elsewhere.accept()).await;
        assert!(followed.is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_key_on_another_server_is_refused_before_any_request() {
        let p = build_provider(&access(), "r", &OpenbaoSettings::default()).unwrap();
        let e = p
            .encrypt(
                "http://evil.example:8200/v1/transit/keys/k",
                b"x",
                &Default::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(
            e.message
                .contains("these credentials are for http://127.0.0.1:1"),
            "{}",
            e.message
        );
        assert_eq!(p.session_stats().logins, 0);
        let e = p.describe_key("not a key").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }
}
