//! The Azure Key Vault adapter of keyplane's KMS provider layer: [`AzureKeyProvider`] performs
//! the [`KeyProvider`] operations on a customer's Key Vault (or Managed HSM) key with
//! Microsoft's official Rust SDK (`azure_security_keyvault_keys`, `azure_identity`), and
//! [`AzureConnector`] hands one out per platform identity (the platform's Entra ID
//! application).
//!
//! Data keys: keyplane's CSPRNG makes the 256-bit key and Key Vault wraps it with `wrapKey`
//! (RSA-OAEP-256 for RSA keys, A256KW for a Managed HSM's AES keys); `unwrapKey` reverses it.
//! Key Vault's wrap takes no additional authenticated data, so the adapter binds the wrapped
//! key to its encryption context itself (see [`envelope`]): next to Key Vault's output it
//! stores the key version that wrapped it and an HMAC of the context keyed with the data key,
//! and refuses to return a data key whose context does not match.
//!
//! Every failure is sorted into a [`keyplane_kms::ErrorKind`] from the HTTP status and Key
//! Vault's error codes; every call has a per-attempt and a per-operation timeout and is
//! retried only when the failure says nothing about the key ([`keyplane_kms::retry`]; the
//! SDK's own retries are off). Credentials: an Entra ID application's client secret or
//! certificate (the token endpoint configurable, for the built-in vault's), or a static bearer
//! token. A CA bundle can be added to the system roots, so a local vault over TLS can be
//! trusted.
#![forbid(unsafe_code)]

pub mod arm;
mod credential;
pub mod envelope;
mod errors;
mod provider;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use keyplane_core::Provider;
use keyplane_kms::{ErrorKind, KeyProvider, KmsConnector, KmsError, PlatformIdentity, Result};
use zeroize::Zeroizing;

pub use credential::{CertificateAssertion, StaticTokenCredential};
pub use keyplane_kms::retry::RetrySettings;
pub use provider::AzureKeyProvider;

/// How keyplane proves it is the platform's application.
#[derive(Clone)]
pub enum AzureCredentialConfig {
    /// An Entra ID application's client secret (client credentials grant).
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Zeroizing<String>,
        /// Token endpoint host instead of `https://login.microsoftonline.com` (another cloud,
        /// or the built-in vault's own endpoint).
        authority_host: Option<String>,
    },
    /// An Entra ID application's certificate credential: a PEM with the certificate registered
    /// on the application and its RSA private key; each token request carries a fresh signed
    /// client assertion.
    ClientCertificate {
        tenant_id: String,
        client_id: String,
        certificate_pem: Zeroizing<String>,
        authority_host: Option<String>,
    },
    /// A bearer token used as is (the built-in vault's long-lived dev tokens).
    StaticToken { token: Zeroizing<String> },
}

/// Entra ID's public-cloud token host.
const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The token endpoint the SDK posts to for `tenant_id`, built as the SDK builds it (the
/// authority host's URL joined with the tenant's path): the audience a client assertion must
/// name.
fn token_endpoint(
    authority_host: Option<&str>,
    tenant_id: &str,
) -> std::result::Result<String, String> {
    let host = authority_host.unwrap_or(DEFAULT_AUTHORITY_HOST);
    azure_core::http::Url::parse(host)
        .and_then(|u| u.join(&format!("/{tenant_id}/oauth2/v2.0/token")))
        .map(|u| u.to_string())
        .map_err(|e| format!("the authority host {host:?} is not a URL: {e}"))
}

impl fmt::Debug for AzureCredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                authority_host,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("authority_host", authority_host)
                .finish(),
            AzureCredentialConfig::ClientCertificate {
                tenant_id,
                client_id,
                authority_host,
                ..
            } => f
                .debug_struct("ClientCertificate")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("certificate_pem", &"<redacted>")
                .field("authority_host", authority_host)
                .finish(),
            AzureCredentialConfig::StaticToken { .. } => f
                .debug_struct("StaticToken")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// How keyplane reaches Key Vault and as whom.
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// Credentials per platform application (client) ID: the `account_id` of an Azure
    /// [`PlatformIdentity`].
    pub credentials: BTreeMap<String, AzureCredentialConfig>,
    /// PEM certificates trusted in addition to the system roots (the built-in vault's dev CA).
    pub ca_bundle_pem: Option<String>,
    /// `host:port` of development vaults (the built-in one): accepted in key IDs, and the only
    /// hosts for which the SDK's check that the 401 challenge names a Key Vault domain is off.
    pub dev_hosts: Vec<String>,
    pub retry: RetrySettings,
}

/// Builds the SDK's clients with keyplane's transport: the CA bundle, the connect timeout, no
/// redirects, and the SDK's retries off (ours wrap every call).
#[derive(Clone)]
pub struct VaultClients {
    http: reqwest::Client,
    transport: Transport,
    dev_hosts: Vec<String>,
}

impl fmt::Debug for VaultClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClients")
            .field("dev_hosts", &self.dev_hosts)
            .finish_non_exhaustive()
    }
}

fn invalid(op: &'static str, message: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::Invalid, op, message)
}

impl VaultClients {
    pub fn new(
        ca_bundle_pem: Option<&str>,
        dev_hosts: Vec<String>,
        connect_timeout: Duration,
    ) -> Result<VaultClients> {
        const OP: &str = "Connect";
        let mut builder = reqwest::ClientBuilder::new()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| invalid(OP, format!("the CA bundle is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(invalid(OP, "the CA bundle holds no certificate"));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(OP, format!("cannot build the HTTPS client: {e}")))?;
        let transport = Transport::new(Arc::new(http.clone()));
        Ok(VaultClients {
            http,
            transport,
            dev_hosts,
        })
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.transport.clone()),
            retry: RetryOptions::none(),
            ..Default::default()
        }
    }

    /// True when `vault_url`'s `host:port` is a configured development vault.
    pub fn is_dev_host(&self, vault_url: &str) -> bool {
        let authority = vault_url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or("");
        self.dev_hosts
            .iter()
            .any(|d| d.eq_ignore_ascii_case(authority))
    }

    /// The development hosts key IDs may name.
    pub fn dev_hosts(&self) -> &[String] {
        &self.dev_hosts
    }

    /// A `KeyClient` for `vault_url` acting as `credential`.
    pub fn key_client(
        &self,
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<KeyClient> {
        let options = KeyClientOptions {
            client_options: self.client_options(),
            // Azure's vault domains must match the challenge's resource; a development host
            // (localhost) cannot, so only there the check is off.
            verify_challenge_resource: Some(!self.is_dev_host(vault_url)),
            ..Default::default()
        };
        KeyClient::new(vault_url, credential, Some(options)).map_err(|e| {
            invalid(
                "Connect",
                format!("cannot create a Key Vault client for {vault_url}: {e}"),
            )
        })
    }

    /// The token credential for a configured identity.
    pub fn credential(&self, config: &AzureCredentialConfig) -> Result<Arc<dyn TokenCredential>> {
        match config {
            AzureCredentialConfig::StaticToken { token } => {
                Ok(Arc::new(StaticTokenCredential::new(token.as_str())))
            }
            AzureCredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
                authority_host,
            } => {
                let client_options = self.identity_client_options(authority_host.as_deref());
                let cred = ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    Secret::new(client_secret.to_string()),
                    Some(ClientSecretCredentialOptions { client_options }),
                )
                .map_err(|e| {
                    KmsError::new(
                        ErrorKind::Credentials,
                        "Connect",
                        format!("cannot build the client-secret credential of {client_id}: {e}"),
                    )
                })?;
                Ok(cred)
            }
            AzureCredentialConfig::ClientCertificate {
                tenant_id,
                client_id,
                certificate_pem,
                authority_host,
            } => {
                let refused = |m: String| {
                    KmsError::new(
                        ErrorKind::Credentials,
                        "Connect",
                        format!("the certificate credential of {client_id}: {m}"),
                    )
                };
                let endpoint =
                    token_endpoint(authority_host.as_deref(), tenant_id).map_err(refused)?;
                let assertion =
                    CertificateAssertion::from_pem(certificate_pem, client_id, &endpoint)
                        .map_err(refused)?;
                let client_options = self.identity_client_options(authority_host.as_deref());
                let cred = ClientAssertionCredential::new(
                    tenant_id.clone(),
                    client_id.clone(),
                    assertion,
                    Some(ClientAssertionCredentialOptions { client_options }),
                )
                .map_err(|e| refused(e.to_string()))?;
                Ok(cred)
            }
        }
    }

    /// The token endpoint's client options: keyplane's transport, and another authority host
    /// than Entra ID's public cloud when one is configured.
    fn identity_client_options(&self, authority_host: Option<&str>) -> ClientOptions {
        let mut client_options = self.client_options();
        if let Some(host) = authority_host {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.to_string();
            client_options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
        }
        client_options
    }

    /// The HTTPS client itself (for the ARM role-assignment calls of [`arm`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Hands out one [`AzureKeyProvider`] per platform identity and keeps it: its credential
/// caches the access token, and its clients hold the connection pool.
pub struct AzureConnector {
    settings: AzureSettings,
    clients: VaultClients,
    providers: Mutex<HashMap<PlatformIdentity, Arc<AzureKeyProvider>>>,
}

impl fmt::Debug for AzureConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConnector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AzureConnector {
    pub fn new(settings: AzureSettings) -> Result<AzureConnector> {
        let clients = VaultClients::new(
            settings.ca_bundle_pem.as_deref(),
            settings.dev_hosts.clone(),
            settings.retry.attempt_timeout,
        )?;
        Ok(AzureConnector {
            settings,
            clients,
            providers: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    /// The concrete provider for `identity` (what [`KmsConnector::connect`] returns, typed).
    pub fn provider(&self, identity: &PlatformIdentity) -> Result<Arc<AzureKeyProvider>> {
        const OP: &str = "Connect";
        if identity.provider != Provider::Azure {
            return Err(invalid(
                OP,
                format!(
                    "the Azure adapter cannot act as a {} identity",
                    identity.provider.as_str()
                ),
            ));
        }
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = providers.get(identity) {
            return Ok(p.clone());
        }
        let Some(config) = self.settings.credentials.get(&identity.account_id) else {
            return Err(KmsError::new(
                ErrorKind::Credentials,
                OP,
                format!(
                    "no credentials for the platform application {app}: in the config file, set [azure.credentials.\"{app}\"] \
                     (tenant_id with client_secret or certificate_file, or a token)",
                    app = identity.account_id
                ),
            ));
        };
        let credential = self.clients.credential(config)?;
        let provider = Arc::new(AzureKeyProvider::new(
            self.clients.clone(),
            credential,
            self.settings.retry.clone(),
        ));
        providers.insert(identity.clone(), provider.clone());
        Ok(provider)
    }
}

impl KmsConnector for AzureConnector {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
        Ok(self.provider(identity)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(app: &str) -> PlatformIdentity {
        PlatformIdentity {
            provider: Provider::Azure,
            region: "eastus".into(),
            account_id: app.into(),
            principal: "7f3c2a10-0000-4000-8000-0000000002a0".into(),
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut s = AzureSettings::default();
        s.credentials.insert(
            "app-1".into(),
            AzureCredentialConfig::ClientSecret {
                tenant_id: "t".into(),
                client_id: "app-1".into(),
                client_secret: Zeroizing::new("very-secret-value".into()),
                authority_host: None,
            },
        );
        s.credentials.insert(
            "app-2".into(),
            AzureCredentialConfig::StaticToken {
                token: Zeroizing::new("token-secret-value".into()),
            },
        );
        let c = AzureConnector::new(s).unwrap();
        let printed = format!("{c:?}");
        assert!(printed.contains("app-1"), "{printed}");
        assert!(
            !printed.contains("very-secret-value") && !printed.contains("token-secret-value"),
            "{printed}"
        );
        let p = c.provider(&identity("app-1")).unwrap();
        let printed = format!("{p:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
        let p = c.provider(&identity("app-2")).unwrap();
        assert!(!format!("{p:?}").contains("token-secret-value"));
    }

    #[test]
    fn missing_credentials_name_the_setting_and_only_azure_identities() {
        let c = AzureConnector::new(AzureSettings::default()).unwrap();
        let e = c.connect(&identity("app-x")).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Credentials);
        assert!(e.message.contains("[azure.credentials"), "{}", e.message);
        let mut id = identity("app-x");
        id.provider = Provider::Aws;
        assert_eq!(c.connect(&id).err().unwrap().kind, ErrorKind::Invalid);
        assert_eq!(
            c.volume_grantee(&identity("a")),
            "7f3c2a10-0000-4000-8000-0000000002a0"
        );
    }

    #[test]
    fn the_assertions_audience_is_the_endpoint_the_sdk_posts_to() {
        assert_eq!(
            token_endpoint(None, "t1").unwrap(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        // A path on the host is replaced, as the SDK's join replaces it.
        assert_eq!(
            token_endpoint(Some("https://localhost:4600/some/path/"), "t1").unwrap(),
            "https://localhost:4600/t1/oauth2/v2.0/token"
        );
        assert!(token_endpoint(Some("not a url"), "t1").is_err());
    }

    #[test]
    fn a_bad_ca_bundle_is_refused() {
        let s = AzureSettings {
            ca_bundle_pem: Some("not a certificate".into()),
            ..Default::default()
        };
        assert_eq!(
            AzureConnector::new(s).err().unwrap().kind,
            ErrorKind::Invalid
        );
    }
}
