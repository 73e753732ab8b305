//! The built-in vault in-process on a free port, and the clients the suites use against it:
//! the official SDK's `KeyClient` as the sample customer (creates keys, changes attributes,
//! rotates), the ARM role-assignment client as the customer, and the adapter as the platform.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, KeyAttributes, KeyClientUpdateKeyPropertiesOptions, KeyType,
    UpdateKeyPropertiesParameters,
};
use keyplane_core::Provider;
use keyplane_devkms::{AzureDevCredentials, AzureVaultConfig, DevKms, DevKmsConfig};
use keyplane_kms::PlatformIdentity;
use keyplane_kms::retry::RetrySettings;
use keyplane_kms_azure::arm::RoleAssignments;
use keyplane_kms_azure::{
    AzureConnector, AzureCredentialConfig, AzureKeyProvider, AzureSettings, StaticTokenCredential,
    VaultClients,
};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

pub const CSEU: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
pub const KEY_VAULT_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";

pub struct Vault {
    pub kms: DevKms,
    pub url: String,
    /// `localhost:<port>`, the dev host key IDs name.
    pub authority: String,
    pub creds: AzureDevCredentials,
    pub ca_pem: String,
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn fast_retry() -> RetrySettings {
    RetrySettings {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        attempt_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
    }
}

impl Vault {
    pub async fn start() -> Vault {
        let tmp = tempfile::tempdir().unwrap();
        let mut v = Vault::start_in(&tmp.path().join("kms"), 0).await;
        v.tmp = Some(tmp);
        v
    }

    /// A vault on the data in `dir`; `port` 0 picks a free one.
    pub async fn start_in(dir: &Path, port: u16) -> Vault {
        let kms = DevKms::open(DevKmsConfig {
            data_dir: dir.to_path_buf(),
            extra_identities: vec![],
            allow_clock_control: true,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let vault = kms
            .azure_vault(AzureVaultConfig::default(), listener)
            .unwrap();
        let url = vault.url().to_string();
        let authority = vault.authority().to_string();
        let creds = vault.credentials().clone();
        let ca_pem = vault.ca_pem().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(vault.run(async {
            let _ = rx.await;
        }));
        Vault {
            kms,
            url,
            authority,
            creds,
            ca_pem,
            dir: dir.to_path_buf(),
            tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.tmp.take()
    }

    pub fn port(&self) -> u16 {
        self.authority.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn clients(&self) -> VaultClients {
        VaultClients::new(
            Some(&self.ca_pem),
            vec![self.authority.clone()],
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// The official SDK's client as the sample customer (Key Vault Administrator).
    pub fn customer(&self) -> KeyClient {
        self.clients()
            .key_client(
                &self.url,
                Arc::new(StaticTokenCredential::new(&self.creds.customer.token)),
            )
            .unwrap()
    }

    pub fn roles(&self) -> RoleAssignments {
        RoleAssignments::new(
            &self.clients(),
            &self.url,
            Arc::new(StaticTokenCredential::new(&self.creds.customer.token)),
        )
    }

    pub fn identity(&self) -> PlatformIdentity {
        PlatformIdentity {
            provider: Provider::Azure,
            region: "eastus".into(),
            account_id: self.creds.platform.client_id.clone(),
            principal: self.creds.platform.object_id.clone(),
        }
    }

    pub fn settings(&self, credential: AzureCredentialConfig) -> AzureSettings {
        let mut s = AzureSettings {
            ca_bundle_pem: Some(self.ca_pem.clone()),
            dev_hosts: vec![self.authority.clone()],
            retry: fast_retry(),
            ..Default::default()
        };
        s.credentials
            .insert(self.creds.platform.client_id.clone(), credential);
        s
    }

    pub fn static_token(&self) -> AzureCredentialConfig {
        AzureCredentialConfig::StaticToken {
            token: Zeroizing::new(self.creds.platform.token.clone()),
        }
    }

    pub fn client_secret(&self) -> AzureCredentialConfig {
        AzureCredentialConfig::ClientSecret {
            tenant_id: self.creds.tenant_id.clone(),
            client_id: self.creds.platform.client_id.clone(),
            client_secret: Zeroizing::new(self.creds.platform.client_secret.clone()),
            authority_host: Some(self.url.clone()),
        }
    }

    /// The platform application's certificate credential, from the PEM the vault wrote.
    pub fn client_certificate(&self) -> AzureCredentialConfig {
        self.certificate_credential(self.platform_certificate_pem())
    }

    pub fn platform_certificate_pem(&self) -> Zeroizing<String> {
        let file = self.creds.platform.certificate_file.as_ref().unwrap();
        Zeroizing::new(std::fs::read_to_string(file).unwrap())
    }

    pub fn certificate_credential(&self, pem: Zeroizing<String>) -> AzureCredentialConfig {
        AzureCredentialConfig::ClientCertificate {
            tenant_id: self.creds.tenant_id.clone(),
            client_id: self.creds.platform.client_id.clone(),
            certificate_pem: pem,
            authority_host: Some(self.url.clone()),
        }
    }

    /// The adapter acting as the platform application (static dev token).
    pub fn platform(&self) -> Arc<AzureKeyProvider> {
        self.platform_with(self.static_token())
    }

    pub fn platform_with(&self, credential: AzureCredentialConfig) -> Arc<AzureKeyProvider> {
        AzureConnector::new(self.settings(credential))
            .unwrap()
            .provider(&self.identity())
            .unwrap()
    }

    pub fn connector(&self) -> AzureConnector {
        AzureConnector::new(self.settings(self.static_token())).unwrap()
    }

    /// Creates a key as the customer; returns its versionless key ID.
    pub async fn create_key(&self, name: &str, kty: KeyType, size: i32) -> String {
        let p = CreateKeyParameters {
            kty: Some(kty),
            key_size: Some(size),
            ..Default::default()
        };
        self.customer()
            .create_key(name, p.try_into().unwrap(), None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        format!("{}/keys/{name}", self.url)
    }

    pub fn key_scope(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.creds.vault_scope)
    }

    /// Assigns a role to the platform's service principal on a key (or `None`: the vault).
    pub async fn grant(&self, key: Option<&str>, role: &str) -> String {
        let scope = key.map_or_else(|| self.creds.vault_scope.clone(), |k| self.key_scope(k));
        let v = self
            .roles()
            .create(
                &scope,
                role,
                &self.creds.platform.object_id,
                "ServicePrincipal",
            )
            .await
            .unwrap();
        v["name"].as_str().unwrap().to_string()
    }

    /// Sets attributes of the key's version (current one if `version` is `None`) as the customer.
    pub async fn set_attributes(
        &self,
        name: &str,
        version: Option<&str>,
        f: impl FnOnce(&mut KeyAttributes),
    ) {
        let mut attrs = KeyAttributes::default();
        f(&mut attrs);
        let p = UpdateKeyPropertiesParameters {
            key_attributes: Some(attrs),
            ..Default::default()
        };
        let o = KeyClientUpdateKeyPropertiesOptions {
            key_version: version.map(str::to_string),
            ..Default::default()
        };
        self.customer()
            .update_key_properties(name, p.try_into().unwrap(), Some(o))
            .await
            .unwrap();
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The organization context keyplane binds data keys to.
pub fn ctx(org: &str) -> keyplane_kms::EncryptionContext {
    [("organization".to_string(), org.to_string())]
        .into_iter()
        .collect()
}
