//! `serve --dev`: the embedded defaults for trying keyplane. A bootstrap organization and
//! an Organization Administrator token are created on first start and written, with the
//! built-in KMS's endpoint and the sample customer's credentials, to
//! `<data-dir>/dev-credentials.json`; later starts reuse them.
use std::path::{Path, PathBuf};

use anyhow::Context;
use keyplane_core::{Role, Token};
use keyplane_devkms::{DevKms, DevKmsConfig, IdentityConfig, IdentityKind};
use keyplane_store::Store;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::settings::Resolved;

pub const CREDENTIALS_FILE: &str = "dev-credentials.json";
const ORG_SETTING: &str = "dev.org_id";
/// The sample customer of the built-in KMS.
pub const CUSTOMER_PRINCIPAL: &str = "arn:aws:iam::111111111111:user/admin";
pub const CUSTOMER_REGION: &str = "us-east-2";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevCredentials {
    pub org_id: Uuid,
    pub token: String,
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsCredentials>,
    /// The built-in Azure Key Vault: its URL, CA file, tenant, the sample customer's token and
    /// the platform application's credentials (what `keyplane kms azure` reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<keyplane_devkms::AzureDevCredentials>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct KmsCredentials {
    pub endpoint: String,
    pub region: String,
    pub customer: CustomerCredentials,
    /// The built-in Cloud KMS (same endpoint): the sample customer and the platform's
    /// service accounts. Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpDevCredentials>,
}

/// The built-in Cloud KMS's dev identities, as `gcloud`-less clients use them: a bearer token
/// per identity (`Authorization: Bearer …`).
#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct GcpDevCredentials {
    /// The sample customer's project, where its key rings and keys go.
    pub customer_project: String,
    pub customer_member: String,
    pub customer_token: String,
    /// The platform's project (the GCP Cloud Provider ID).
    pub platform_project: String,
    pub platform: Vec<GcpDevIdentity>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct GcpDevIdentity {
    pub service_account: String,
    pub token: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CustomerCredentials {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal_arn: String,
}

/// The built-in KMS as keyplane uses it: where it listens, the sample customer, and the
/// credentials of the platform's roles.
pub struct PlatformKms {
    pub endpoint: String,
    pub customer: KmsCredentials,
    pub platform: Vec<keyplane_devkms::Credentials>,
    /// Bearer tokens of the platform's service accounts, by email.
    pub gcp_platform: Vec<(String, zeroize::Zeroizing<String>)>,
    /// The built-in Azure Key Vault, served over TLS on its own port.
    pub azure: AzureDevVault,
}

/// What keyplane needs of the built-in Azure Key Vault: its credentials (the platform
/// application's client secret among them), the dev CA to trust, and the `host:port` its key
/// IDs name.
pub struct AzureDevVault {
    pub credentials: keyplane_devkms::AzureDevCredentials,
    pub ca_pem: String,
    pub authority: String,
}

impl AzureDevVault {
    /// What the application must know of the vault: its key IDs name its host and port, and
    /// its role assignments the platform application's service principal in its tenant.
    pub fn configure(&self, config: &mut keyplane_app::Config) {
        config.azure_dev_hosts.push(self.authority.clone());
        let platform = &self.credentials.platform;
        for a in config
            .provider_accounts
            .entry(keyplane_core::Provider::Azure)
            .or_default()
            .iter_mut()
            .filter(|a| a.id == platform.client_id && a.object_id.is_none())
        {
            a.object_id = Some(platform.object_id.clone());
        }
    }
}

/// Opens the built-in KMS under `<data-dir>/kms` and serves it on its own port, and its
/// Azure Key Vault over TLS on another, until `stop` turns true. Every configured AWS
/// platform account gets its role there, so dev mode works with any pool.
pub async fn start_kms(
    resolved: &Resolved,
    stop: tokio::sync::watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<PlatformKms> {
    let volume_role = resolved
        .aws
        .volume_role
        .clone()
        .unwrap_or_else(|| keyplane_kms_aws::DEFAULT_VOLUME_ROLE.to_string());
    let accounts = resolved.config.accounts(keyplane_core::Provider::Aws);
    let mut extra = Vec::new();
    for a in accounts {
        for name in [a.role.clone(), volume_role.clone()] {
            extra.push(IdentityConfig {
                account: a.id.clone(),
                kind: IdentityKind::Role,
                name,
                access_key_id: None,
                secret_access_key: None,
            });
        }
    }
    let kms = DevKms::open(DevKmsConfig {
        data_dir: resolved.data_dir.join("kms"),
        extra_identities: extra,
        allow_clock_control: false,
    })
    .context("opening the built-in KMS")?;
    let platform = accounts
        .iter()
        .filter_map(|a| kms.credentials(&a.principal(keyplane_core::Provider::Aws)))
        .collect();
    // Every configured platform service account exists in the built-in Cloud KMS, owning no
    // project: it holds only what customers grant it.
    let mut gcp_platform = Vec::new();
    for a in resolved.config.accounts(keyplane_core::Provider::Gcp) {
        let member = a.principal(keyplane_core::Provider::Gcp);
        let token = match kms.gcp_token(&member) {
            Some(t) => t,
            None => kms
                .add_gcp_identity(&member, &[])
                .with_context(|| format!("adding {member} to the built-in KMS"))?,
        };
        gcp_platform.push((a.id.clone(), token));
    }
    let gcp_customer = kms
        .gcp_token(keyplane_devkms::GCP_CUSTOMER)
        .context("the built-in KMS has no sample Cloud KMS customer")?;
    let listener = tokio::net::TcpListener::bind(resolved.kms_listen)
        .await
        .with_context(|| format!("binding the built-in KMS to {}", resolved.kms_listen))?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let customer = kms
        .credentials(CUSTOMER_PRINCIPAL)
        .context("the built-in KMS has no sample customer identity")?;
    let vault_listener = tokio::net::TcpListener::bind(resolved.azure_listen)
        .await
        .with_context(|| {
            format!(
                "binding the built-in Azure Key Vault to {}",
                resolved.azure_listen
            )
        })?;
    let vault = kms
        .azure_vault(keyplane_devkms::AzureVaultConfig::default(), vault_listener)
        .context("opening the built-in Azure Key Vault")?;
    let azure = AzureDevVault {
        credentials: vault.credentials().clone(),
        ca_pem: vault.ca_pem().to_string(),
        authority: vault.authority().to_string(),
    };
    tracing::info!(%endpoint, "built-in KMS listening (development and tests only)");
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tasks.spawn(kms.run(listener, until_stopped(stop.clone())));
    tasks.spawn(vault.run(until_stopped(stop)));
    Ok(PlatformKms {
        customer: KmsCredentials {
            endpoint: endpoint.clone(),
            region: CUSTOMER_REGION.to_string(),
            customer: CustomerCredentials {
                account_id: customer.account.clone(),
                access_key_id: customer.access_key_id.clone(),
                secret_access_key: customer.secret_access_key.to_string(),
                principal_arn: customer.principal_arn.clone(),
            },
            gcp: Some(GcpDevCredentials {
                customer_project: keyplane_devkms::GCP_CUSTOMER_PROJECT.to_string(),
                customer_member: keyplane_devkms::GCP_CUSTOMER.to_string(),
                customer_token: gcp_customer.to_string(),
                platform_project: keyplane_devkms::GCP_PLATFORM_PROJECT.to_string(),
                platform: gcp_platform
                    .iter()
                    .map(|(sa, t)| GcpDevIdentity {
                        service_account: sa.clone(),
                        token: t.to_string(),
                    })
                    .collect(),
            }),
        },
        endpoint,
        platform,
        gcp_platform,
        azure,
    })
}

pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE)
}

/// Creates (first start) or reuses (later starts) the dev organization and token, and
/// writes the credentials file readable by its owner only.
pub async fn bootstrap(
    store: &dyn Store,
    data_dir: &Path,
    api_url: &str,
    kms: Option<&PlatformKms>,
) -> anyhow::Result<DevCredentials> {
    let org_id = match store.get_setting(ORG_SETTING).await? {
        Some(id) => id.parse::<Uuid>().context("stored dev organization id")?,
        None => {
            let org = store.create_org("Dev Organization", None).await?;
            store
                .put_setting_if_absent(ORG_SETTING, &org.id.to_string())
                .await?
                .parse::<Uuid>()
                .context("stored dev organization id")?
        }
    };
    let path = credentials_path(data_dir);
    let reusable = match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str::<DevCredentials>(&text) {
            Ok(old) if old.org_id == org_id && token_is_valid(store, &old.token).await? => {
                Some(old.token)
            }
            _ => None,
        },
        Err(_) => None,
    };
    let token = match reusable {
        Some(t) => t,
        None => {
            let (token, _) =
                keyplane_app::tokens::issue_token(store, org_id, &Role::OrgAdmin, "dev bootstrap")
                    .await?;
            token.expose().to_string()
        }
    };
    let creds = DevCredentials {
        org_id,
        token,
        api_url: api_url.to_string(),
        kms: kms.map(|k| k.customer.clone()),
        azure: kms.map(|k| k.azure.credentials.clone()),
    };
    write_private(&path, serde_json::to_string_pretty(&creds)?.as_bytes())?;
    println!(
        "keyplane dev mode\n  organization: {org_id}\n  token:        {}\n  API:          {api_url}\n  credentials:  {}",
        creds.token,
        path.display()
    );
    if let Some(k) = kms {
        println!(
            "  built-in KMS: {} (customer account {}, development only)",
            k.endpoint, k.customer.customer.account_id
        );
        println!(
            "  built-in Azure Key Vault: {} (CA {}, development only)",
            k.azure.credentials.vault_url,
            k.azure.credentials.ca_file.display()
        );
    }
    Ok(creds)
}

async fn token_is_valid(store: &dyn Store, raw: &str) -> anyhow::Result<bool> {
    let Ok(token) = Token::parse(raw) else {
        return Ok(false);
    };
    Ok(match store.authenticate(token.client_id()).await? {
        Some((rec, _)) => rec.revoked_at.is_none() && token.matches_hash(&rec.secret_hash),
        None => false,
    })
}

/// Writes via a temporary file and rename so a crash never leaves half a file, with mode
/// 0600 because it holds a token and KMS secrets.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The alias of the platform's own key in each region of the built-in KMS.
pub const PLATFORM_KEY_ALIAS: &str = "alias/keyplane-platform";

/// In dev mode the platform's own keys live in the built-in KMS, in the first platform
/// account: one per AWS region, found by alias so that restarts reuse them.
pub async fn ensure_platform_keys(
    kms: &PlatformKms,
    regions: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, keyplane_app::PlatformKey>> {
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    let owner = kms
        .platform
        .first()
        .context("the built-in KMS has no platform identity")?;
    let mut out = std::collections::BTreeMap::new();
    for region in regions {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(Credentials::new(
                owner.access_key_id.clone(),
                owner.secret_access_key.to_string(),
                None,
                None,
                "keyplane-dev",
            ))
            .endpoint_url(&kms.endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        let client = aws_sdk_kms::Client::from_conf(conf);
        let arn = match client
            .describe_key()
            .key_id(PLATFORM_KEY_ALIAS)
            .send()
            .await
        {
            Ok(found) => found
                .key_metadata()
                .and_then(|m| m.arn())
                .map(str::to_string),
            Err(_) => None,
        };
        let arn = match arn {
            Some(a) => a,
            None => {
                let created = client
                    .create_key()
                    .description("keyplane platform key (dev)")
                    .send()
                    .await
                    .with_context(|| format!("creating the platform key in {region}"))?;
                let arn = created
                    .key_metadata()
                    .and_then(|m| m.arn())
                    .context("CreateKey returned no ARN")?
                    .to_string();
                client
                    .create_alias()
                    .alias_name(PLATFORM_KEY_ALIAS)
                    .target_key_id(&arn)
                    .send()
                    .await
                    .with_context(|| format!("naming the platform key in {region}"))?;
                arn
            }
        };
        out.insert(
            region.clone(),
            keyplane_app::PlatformKey {
                key_id: arn,
                account: owner.account.clone(),
            },
        );
    }
    Ok(out)
}
