//! The customer's side of the built-in Azure Key Vault in the server tests: the vault on a
//! free port over HTTPS (its dev CA trusted), Microsoft's official Rust SDK and the ARM
//! role-assignment API as the sample customer, and keyplane's side (the Azure adapter as the
//! platform application, signing in with its client secret) with the configuration dev mode
//! writes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, KeyAttributes, KeyType, UpdateKeyPropertiesParameters,
};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::Provider;
use keyplane_devkms::{AzureDevCredentials, AzureVaultConfig, DevKms, DevKmsConfig};
use keyplane_kms_azure::arm::RoleAssignments;
use keyplane_kms_azure::{
    AzureConnector, AzureCredentialConfig, AzureSettings, StaticTokenCredential, VaultClients,
};
use zeroize::Zeroizing;

use super::TestServer;

pub const ROLE: &str = "Key Vault Crypto Service Encryption User";
pub const ROLE_ID: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";

/// The built-in vault on a free port, and what the customer's side needs of it.
pub struct Vault {
    _kms: DevKms,
    _dir: tempfile::TempDir,
    pub url: String,
    pub authority: String,
    pub creds: AzureDevCredentials,
    pub ca_pem: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Vault {
    pub async fn start() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let kms = DevKms::open(DevKmsConfig {
            data_dir: dir.path().join("kms"),
            extra_identities: vec![],
            allow_clock_control: false,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let vault = kms
            .azure_vault(AzureVaultConfig::default(), listener)
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let v = Vault {
            url: vault.url().to_string(),
            authority: vault.authority().to_string(),
            creds: vault.credentials().clone(),
            ca_pem: vault.ca_pem().to_string(),
            _kms: kms,
            _dir: dir,
            _stop: tx,
        };
        tokio::spawn(vault.run(async {
            let _ = rx.await;
        }));
        v
    }

    pub fn clients(&self) -> VaultClients {
        VaultClients::new(
            Some(&self.ca_pem),
            vec![self.authority.clone()],
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// Microsoft's SDK as the sample customer (Key Vault Administrator).
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

    pub fn scope(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.creds.vault_scope)
    }

    /// Creates an RSA key as the customer; its versionless key ID.
    pub async fn create_key(&self, name: &str) -> String {
        let p = CreateKeyParameters {
            kty: Some(KeyType::Rsa),
            key_size: Some(2048),
            ..Default::default()
        };
        self.customer()
            .create_key(name, p.try_into().unwrap(), None)
            .await
            .unwrap();
        format!("{}/keys/{name}", self.url)
    }

    /// Assigns the platform's service principal the crypto role on key `name`.
    pub async fn grant(&self, name: &str) {
        self.roles()
            .create(
                &self.scope(name),
                ROLE_ID,
                &self.creds.platform.object_id,
                "ServicePrincipal",
            )
            .await
            .unwrap();
    }

    /// The same role on the whole vault.
    pub async fn grant_on_vault(&self) {
        self.roles()
            .create(
                &self.creds.vault_scope,
                ROLE_ID,
                &self.creds.platform.object_id,
                "ServicePrincipal",
            )
            .await
            .unwrap();
    }

    pub async fn set_attributes(&self, name: &str, f: impl FnOnce(&mut KeyAttributes)) {
        let mut attrs = KeyAttributes::default();
        f(&mut attrs);
        let p = UpdateKeyPropertiesParameters {
            key_attributes: Some(attrs),
            ..Default::default()
        };
        self.customer()
            .update_key_properties(name, p.try_into().unwrap(), None)
            .await
            .unwrap();
    }

    /// keyplane's side: the Azure adapter as the platform application, signing in with its
    /// client secret at the vault's token endpoint.
    pub fn connector(&self) -> Arc<dyn keyplane_kms::KmsConnector> {
        let mut settings = AzureSettings {
            ca_bundle_pem: Some(self.ca_pem.clone()),
            dev_hosts: vec![self.authority.clone()],
            ..Default::default()
        };
        settings.credentials.insert(
            self.creds.platform.client_id.clone(),
            AzureCredentialConfig::ClientSecret {
                tenant_id: self.creds.tenant_id.clone(),
                client_id: self.creds.platform.client_id.clone(),
                client_secret: Zeroizing::new(self.creds.platform.client_secret.clone()),
                authority_host: Some(self.url.clone()),
            },
        );
        Arc::new(keyplane_kms::ServiceConnectors::new().with(
            Provider::Azure,
            Arc::new(AzureConnector::new(settings).unwrap()),
        ))
    }

    /// The application's configuration as dev mode writes it: the vault's host accepted, the
    /// platform application with its service principal's object ID.
    pub fn config(&self) -> Config {
        let mut config = Config {
            azure_dev_hosts: vec![self.authority.clone()],
            ..Config::default()
        };
        config.provider_accounts.insert(
            Provider::Azure,
            vec![ProviderAccount {
                object_id: Some(self.creds.platform.object_id.clone()),
                ..ProviderAccount::new(self.creds.platform.client_id.clone())
            }],
        );
        config
    }
}

/// A vault, and a keyplane server configured for it.
pub async fn start() -> (Vault, TestServer) {
    let vault = Vault::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keyplane.db");
    let store = keyplane_store::open(db_path.to_str().unwrap())
        .await
        .unwrap();
    let s =
        TestServer::with_store(store, vault.config(), dir, db_path, Some(vault.connector())).await;
    (vault, s)
}
