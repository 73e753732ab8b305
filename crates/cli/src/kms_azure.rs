//! `keyplane kms azure …`: the built-in Azure Key Vault on its own (`serve`), and the
//! customer-side commands a key owner runs against Key Vault: create a key, read it, rotate
//! it, disable or enable it, set its expiry, and assign, list and remove the role that lets
//! the platform use it. Keys go through Microsoft's official Rust SDK and role assignments
//! through the ARM REST API, so the commands behave the same against the built-in vault and
//! Azure (given a token and the vault's ARM ID). Results are printed as JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, Key, KeyAttributes, KeyClientGetKeyOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyType, UpdateKeyPropertiesParameters,
};
use futures::TryStreamExt;
use keyplane_core::AzureKeyId;
use keyplane_core::policy::azure::{CRYPTO_SERVICE_ENCRYPTION_USER, builtin_role_id};
use keyplane_devkms::{AzureVaultConfig, DevKms, DevKmsConfig};
use keyplane_kms_azure::arm::RoleAssignments;
use keyplane_kms_azure::{StaticTokenCredential, VaultClients};
use serde_json::{Value, json};

const DEFAULT_DEV_CREDENTIALS: &str = "./keyplane-data/dev-credentials.json";
const DEFAULT_VAULT_CREDENTIALS: &str = "./keyplane-data/kms/azure-credentials.json";

/// Where and as whom the commands call Key Vault. Flags win over the credentials file.
#[derive(clap::Args, Debug, Clone)]
pub struct AzureClientArgs {
    /// The vault URL (default: the credentials file's `vaultUrl`).
    #[arg(long)]
    pub vault_url: Option<String>,
    /// The bearer token to call with (default: the file's `customer.token`).
    #[arg(long, env = "KEYPLANE_AZURE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificates to trust besides the system roots (default: the file's `caFile`).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The vault's ARM ID, the base of a key's role-assignment scope (default: the file's
    /// `vaultScope`).
    #[arg(long)]
    pub vault_scope: Option<String>,
    /// The built-in vault's credentials: `dev-credentials.json` (its `azure` section) or the
    /// `azure-credentials.json` that `keyplane kms azure serve` writes (default: the first of
    /// ./keyplane-data/dev-credentials.json and ./keyplane-data/kms/azure-credentials.json that
    /// has them).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
}

/// What a key command prints.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyOutput {
    /// The key as JSON.
    #[default]
    Json,
    /// Only the versionless key ID, the form to register (`KEY=$(…)`).
    KeyId,
}

/// Which key: its name in the vault, or its key ID (URL).
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArg {
    /// The key's name or key ID (`https://<vault>/keys/<name>[/<version>]`).
    #[arg(long = "key")]
    pub key: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum AzureCommand {
    /// Run the built-in Azure Key Vault alone over TLS (development and tests only). Writes
    /// `azure-ca.pem` and `azure-credentials.json` (0600) to the data dir and prints one JSON
    /// line with the vault URL and those files.
    Serve {
        #[arg(long, default_value = "127.0.0.1:4600")]
        listen: String,
        #[arg(long, default_value = "./keyplane-data/kms")]
        data_dir: PathBuf,
        #[arg(long, default_value = keyplane_devkms::azure::DEFAULT_VAULT_NAME)]
        vault_name: String,
        /// The Azure region the vault reports.
        #[arg(long, default_value = keyplane_devkms::azure::DEFAULT_VAULT_LOCATION)]
        location: String,
        /// Host names the TLS certificate covers (repeatable); the first is the URL's host.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Let `POST /_admin/clock/advance` move time forward (tests only).
        #[arg(long)]
        allow_clock_control: bool,
    },
    /// Create a key, or a new version of an existing one.
    CreateKey {
        #[command(flatten)]
        client: AzureClientArgs,
        /// The key's name: 1 to 127 letters, digits and dashes.
        #[arg(long)]
        name: String,
        /// RSA, RSA-HSM or oct-HSM.
        #[arg(long, default_value = "RSA")]
        kty: String,
        /// Bits: 2048, 3072 or 4096 for RSA; 256 for oct-HSM.
        #[arg(long)]
        size: Option<i32>,
        /// Expiry: RFC 3339 (2027-01-31T00:00:00Z) or relative (+90d, +12h, -1h).
        #[arg(long)]
        expires: Option<String>,
        /// Not-before, in the same forms.
        #[arg(long)]
        not_before: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: KeyOutput,
    },
    /// Print a key (the current version, or `--version`).
    Get {
        #[command(flatten)]
        client: AzureClientArgs,
        #[command(flatten)]
        key: KeyArg,
        /// A version to print instead of the current one.
        #[arg(long)]
        version: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: KeyOutput,
    },
    /// Rotate a key: a new current version; older versions keep unwrapping.
    Rotate {
        #[command(flatten)]
        client: AzureClientArgs,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Disable every version of a key (or only `--version`).
    Disable {
        #[command(flatten)]
        client: AzureClientArgs,
        #[command(flatten)]
        key: KeyArg,
        /// Disable only this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Enable every version of a key (or only `--version`).
    Enable {
        #[command(flatten)]
        client: AzureClientArgs,
        #[command(flatten)]
        key: KeyArg,
        /// Enable only this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Set the expiry of the current version (or `--version`).
    SetExpiry {
        #[command(flatten)]
        client: AzureClientArgs,
        #[command(flatten)]
        key: KeyArg,
        /// RFC 3339 or relative (+90d, -1h).
        #[arg(long)]
        expires: String,
        /// Set it on this version instead of the current one.
        #[arg(long)]
        version: Option<String>,
    },
    /// Assign a role on a key (or, without `--key`, on the vault).
    AssignRole {
        #[command(flatten)]
        client: AzureClientArgs,
        /// The key's name or key ID; without it the scope is the whole vault.
        #[arg(long = "key")]
        key: Option<String>,
        /// Role name or role definition ID.
        #[arg(long, default_value = CRYPTO_SERVICE_ENCRYPTION_USER.name)]
        role: String,
        /// Object ID of the assignee (default: the platform's service principal from the
        /// credentials file).
        #[arg(long)]
        assignee: Option<String>,
        /// ServicePrincipal, User or Group.
        #[arg(long, default_value = "ServicePrincipal")]
        principal_type: String,
    },
    /// Remove role assignments on a key (or the vault): by `--assignment` name, or every one
    /// matching `--role` and `--assignee` (default: the platform's).
    RemoveRole {
        #[command(flatten)]
        client: AzureClientArgs,
        /// The key's name or key ID; without it the scope is the whole vault.
        #[arg(long = "key")]
        key: Option<String>,
        /// The assignment's name (a GUID, as `list-roles` prints it).
        #[arg(long)]
        assignment: Option<String>,
        /// Remove this role's assignments (default: Key Vault Crypto Service Encryption User).
        #[arg(long)]
        role: Option<String>,
        /// Remove assignments to this object ID (default: the platform's service principal).
        #[arg(long)]
        assignee: Option<String>,
    },
    /// List the role assignments that apply to a key (or the vault), as ARM prints them:
    /// the output can be pasted into `keyplane key check-policy`'s Azure checker.
    ListRoles {
        #[command(flatten)]
        client: AzureClientArgs,
        /// The key's name or key ID; without it the assignments of the whole vault.
        #[arg(long = "key")]
        key: Option<String>,
    },
}

/// The connection settings after flags and file are merged.
struct Resolved {
    vault_url: String,
    token: String,
    ca_pem: Option<String>,
    vault_scope: Option<String>,
    platform_object_id: Option<String>,
}

fn azure_section(path: &Path) -> anyhow::Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let section = match v.get("azure") {
        Some(a) => a.clone(),
        None => v,
    };
    Ok(section.get("vaultUrl").is_some().then_some(section))
}

fn resolve(args: &AzureClientArgs) -> anyhow::Result<Resolved> {
    let file = match &args.credentials_file {
        Some(p) => Some(
            azure_section(p)?
                .with_context(|| format!("{} has no Azure vault credentials", p.display()))?,
        ),
        None => match azure_section(Path::new(DEFAULT_DEV_CREDENTIALS))? {
            Some(v) => Some(v),
            None => azure_section(Path::new(DEFAULT_VAULT_CREDENTIALS))?,
        },
    };
    let from_file = |ptr: &str| {
        file.as_ref()
            .and_then(|f| f.pointer(ptr))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let Some(vault_url) = args.vault_url.clone().or_else(|| from_file("/vaultUrl")) else {
        bail!(
            "no vault URL: pass --vault-url, or --credentials-file pointing at the azure-credentials.json that `keyplane kms azure serve` writes"
        );
    };
    let Some(token) = args.token.clone().or_else(|| from_file("/customer/token")) else {
        bail!("no token: pass --token (or KEYPLANE_AZURE_TOKEN), or --credentials-file");
    };
    let ca_file = args
        .ca_file
        .clone()
        .or_else(|| from_file("/caFile").map(PathBuf::from));
    let ca_pem = match ca_file {
        Some(p) => Some(
            std::fs::read_to_string(&p)
                .with_context(|| format!("reading the CA file {}", p.display()))?,
        ),
        None => None,
    };
    Ok(Resolved {
        vault_url: vault_url.trim_end_matches('/').to_string(),
        token,
        ca_pem,
        vault_scope: args
            .vault_scope
            .clone()
            .or_else(|| from_file("/vaultScope")),
        platform_object_id: from_file("/platform/objectId"),
    })
}

impl Resolved {
    fn authority(&self) -> String {
        self.vault_url.trim_start_matches("https://").to_string()
    }

    fn clients(&self) -> anyhow::Result<VaultClients> {
        let dev = if self.authority().contains(".vault.azure.")
            || self.authority().contains(".managedhsm.azure.")
        {
            Vec::new()
        } else {
            vec![self.authority()]
        };
        VaultClients::new(self.ca_pem.as_deref(), dev, Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn key_client(&self) -> anyhow::Result<KeyClient> {
        self.clients()?
            .key_client(
                &self.vault_url,
                Arc::new(StaticTokenCredential::new(&self.token)),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn roles(&self) -> anyhow::Result<RoleAssignments> {
        Ok(RoleAssignments::new(
            &self.clients()?,
            &self.vault_url,
            Arc::new(StaticTokenCredential::new(&self.token)),
        ))
    }

    /// A key name or key ID → (name, version pinned in the ID).
    fn key(&self, given: &str) -> anyhow::Result<(String, Option<String>)> {
        if !given.contains("://") {
            return Ok((given.to_string(), None));
        }
        let id = AzureKeyId::parse_allowing(given, &[self.authority()])?;
        if !id.vault_url().eq_ignore_ascii_case(&self.vault_url) {
            bail!(
                "{given} is not a key of {}; pass --vault-url {}",
                self.vault_url,
                id.vault_url()
            );
        }
        Ok((id.name, id.version))
    }

    fn scope(&self, key: Option<&str>) -> anyhow::Result<String> {
        let Some(vault) = &self.vault_scope else {
            bail!(
                "the vault's ARM ID is unknown: pass --vault-scope /subscriptions/…/providers/Microsoft.KeyVault/vaults/<name>"
            );
        };
        Ok(match key {
            Some(k) => format!("{vault}/keys/{}", self.key(k)?.0),
            None => vault.clone(),
        })
    }
}

/// RFC 3339, or `+90d` / `-1h` / `+30m` relative to now.
fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    let rel = s
        .strip_prefix('+')
        .map(|r| (1i64, r))
        .or_else(|| s.strip_prefix('-').map(|r| (-1, r)));
    if let Some((sign, r)) = rel {
        let (n, unit) = r.split_at(r.len().saturating_sub(1));
        let n: i64 = n
            .parse()
            .with_context(|| format!("{s:?}: expected +<n>d, +<n>h or +<n>m"))?;
        let secs = match unit {
            "d" => n * 86_400,
            "h" => n * 3_600,
            "m" => n * 60,
            _ => bail!("{s:?}: the unit must be d, h or m"),
        };
        return Ok(OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(sign * secs));
    }
    azure_core::time::parse_rfc3339(s)
        .map_err(|e| anyhow::anyhow!("{s:?} is not an RFC 3339 time or +<n>d: {e}"))
}

fn key_json(k: &Key) -> Value {
    let jwk = k.key.as_ref();
    let kid = jwk.and_then(|j| j.kid.clone()).unwrap_or_default();
    let a = k.attributes.as_ref();
    let t = |x: Option<OffsetDateTime>| x.map(|t| azure_core::time::to_rfc3339(&t));
    json!({
        "kid": kid,
        "keyId": kid.rsplit_once('/').map(|(base, _)| base.to_string()),
        "version": kid.rsplit('/').next(),
        "kty": jwk.and_then(|j| j.kty.as_ref()).map(|t| t.to_string()),
        "keySize": jwk.and_then(|j| j.n.as_ref()).map(|n| n.len() * 8),
        "keyOps": jwk.and_then(|j| j.key_ops.clone()),
        "enabled": a.and_then(|a| a.enabled),
        "notBefore": t(a.and_then(|a| a.not_before)),
        "expires": t(a.and_then(|a| a.expires)),
        "created": t(a.and_then(|a| a.created)),
        "updated": t(a.and_then(|a| a.updated)),
        "tags": k.tags,
    })
}

fn print_key(k: &Key, output: KeyOutput) -> anyhow::Result<()> {
    let v = key_json(k);
    match output {
        KeyOutput::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        KeyOutput::KeyId => println!(
            "{}",
            v["keyId"]
                .as_str()
                .context("Key Vault answered without the key's ID")?
        ),
    }
    Ok(())
}

fn sdk_error(e: azure_core::Error) -> anyhow::Error {
    if let azure_core::error::ErrorKind::HttpResponse {
        status,
        raw_response: Some(raw),
        ..
    } = e.kind()
    {
        let body: Value = serde_json::from_slice(raw.body().as_ref()).unwrap_or(Value::Null);
        let err = &body["error"];
        return anyhow::anyhow!(
            "HTTP {} {}{}: {}",
            u16::from(*status),
            err["code"].as_str().unwrap_or(""),
            err["innererror"]["code"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            err["message"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    anyhow::anyhow!("calling Key Vault: {e}")
}

async fn get_key(c: &KeyClient, name: &str, version: Option<String>) -> anyhow::Result<Key> {
    let o = KeyClientGetKeyOptions {
        key_version: version,
        ..Default::default()
    };
    c.get_key(name, Some(o))
        .await
        .map_err(sdk_error)?
        .into_model()
        .map_err(sdk_error)
}

async fn update(
    c: &KeyClient,
    name: &str,
    version: Option<String>,
    attrs: KeyAttributes,
) -> anyhow::Result<Key> {
    let p = UpdateKeyPropertiesParameters {
        key_attributes: Some(attrs),
        ..Default::default()
    };
    let o = KeyClientUpdateKeyPropertiesOptions {
        key_version: version,
        ..Default::default()
    };
    c.update_key_properties(name, p.try_into().map_err(sdk_error)?, Some(o))
        .await
        .map_err(sdk_error)?
        .into_model()
        .map_err(sdk_error)
}

/// Every version of a key, or the one given.
async fn versions(c: &KeyClient, name: &str, only: Option<String>) -> anyhow::Result<Vec<String>> {
    if let Some(v) = only {
        return Ok(vec![v]);
    }
    let mut pager = c
        .list_key_properties_versions(name, None)
        .map_err(sdk_error)?;
    let mut out = Vec::new();
    while let Some(p) = pager.try_next().await.map_err(sdk_error)? {
        if let Some(v) = p.kid.as_deref().and_then(|k| k.rsplit('/').next()) {
            out.push(v.to_string());
        }
    }
    if out.is_empty() {
        bail!("key {name} has no versions");
    }
    Ok(out)
}

async fn set_enabled(
    c: &KeyClient,
    name: &str,
    version: Option<String>,
    enabled: bool,
) -> anyhow::Result<Value> {
    let mut done = Vec::new();
    for v in versions(c, name, version).await? {
        let k = update(
            c,
            name,
            Some(v),
            KeyAttributes {
                enabled: Some(enabled),
                ..Default::default()
            },
        )
        .await?;
        done.push(key_json(&k));
    }
    Ok(json!({ "enabled": enabled, "versions": done }))
}

fn role_id(role: &str) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(role).is_ok() {
        return Ok(role.to_ascii_lowercase());
    }
    builtin_role_id(role).map(str::to_string).with_context(|| {
        format!("unknown role {role:?}: give a built-in role name or a role definition ID")
    })
}

pub async fn run(cmd: AzureCommand) -> anyhow::Result<()> {
    let out = match cmd {
        AzureCommand::Serve {
            listen,
            data_dir,
            vault_name,
            location,
            hosts,
            allow_clock_control,
        } => {
            return serve(
                listen,
                data_dir,
                vault_name,
                location,
                hosts,
                allow_clock_control,
            )
            .await;
        }
        AzureCommand::CreateKey {
            client,
            name,
            kty,
            size,
            expires,
            not_before,
            output,
        } => {
            let r = resolve(&client)?;
            let kty = match kty.as_str() {
                "RSA" => KeyType::Rsa,
                "RSA-HSM" => KeyType::RsaHsm,
                "oct-HSM" => KeyType::OctHsm,
                other => bail!("--kty {other:?}: use RSA, RSA-HSM or oct-HSM (keys that can wrap)"),
            };
            let attrs = KeyAttributes {
                expires: expires.as_deref().map(parse_time).transpose()?,
                not_before: not_before.as_deref().map(parse_time).transpose()?,
                ..Default::default()
            };
            let p = CreateKeyParameters {
                key_size: Some(size.unwrap_or(if kty == KeyType::OctHsm { 256 } else { 2048 })),
                kty: Some(kty),
                key_attributes: Some(attrs),
                ..Default::default()
            };
            let k = r
                .key_client()?
                .create_key(&name, p.try_into().map_err(sdk_error)?, None)
                .await
                .map_err(sdk_error)?
                .into_model()
                .map_err(sdk_error)?;
            return print_key(&k, output);
        }
        AzureCommand::Get {
            client,
            key,
            version,
            output,
        } => {
            let r = resolve(&client)?;
            let (name, pinned) = r.key(&key.key)?;
            return print_key(
                &get_key(&r.key_client()?, &name, version.or(pinned)).await?,
                output,
            );
        }
        AzureCommand::Rotate { client, key } => {
            let r = resolve(&client)?;
            let (name, _) = r.key(&key.key)?;
            let k = r
                .key_client()?
                .rotate_key(&name, None)
                .await
                .map_err(sdk_error)?
                .into_model()
                .map_err(sdk_error)?;
            key_json(&k)
        }
        AzureCommand::Disable {
            client,
            key,
            version,
        } => {
            let r = resolve(&client)?;
            let (name, pinned) = r.key(&key.key)?;
            set_enabled(&r.key_client()?, &name, version.or(pinned), false).await?
        }
        AzureCommand::Enable {
            client,
            key,
            version,
        } => {
            let r = resolve(&client)?;
            let (name, pinned) = r.key(&key.key)?;
            set_enabled(&r.key_client()?, &name, version.or(pinned), true).await?
        }
        AzureCommand::SetExpiry {
            client,
            key,
            expires,
            version,
        } => {
            let r = resolve(&client)?;
            let (name, pinned) = r.key(&key.key)?;
            let attrs = KeyAttributes {
                expires: Some(parse_time(&expires)?),
                ..Default::default()
            };
            key_json(&update(&r.key_client()?, &name, version.or(pinned), attrs).await?)
        }
        AzureCommand::AssignRole {
            client,
            key,
            role,
            assignee,
            principal_type,
        } => {
            let r = resolve(&client)?;
            let scope = r.scope(key.as_deref())?;
            let Some(assignee) = assignee.or_else(|| r.platform_object_id.clone()) else {
                bail!("no --assignee, and the credentials file names no platform object ID");
            };
            r.roles()?
                .create(&scope, &role_id(&role)?, &assignee, &principal_type)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        AzureCommand::RemoveRole {
            client,
            key,
            assignment,
            role,
            assignee,
        } => {
            let r = resolve(&client)?;
            let scope = r.scope(key.as_deref())?;
            let roles = r.roles()?;
            let names: Vec<String> = match assignment {
                Some(a) => vec![a],
                None => {
                    let role = role_id(
                        role.as_deref()
                            .unwrap_or(CRYPTO_SERVICE_ENCRYPTION_USER.name),
                    )?;
                    let Some(assignee) = assignee.or_else(|| r.platform_object_id.clone()) else {
                        bail!(
                            "no --assignment or --assignee, and the credentials file names no platform object ID"
                        );
                    };
                    let listed = roles
                        .list(&scope)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    listed["value"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|a| {
                            let p = &a["properties"];
                            p["scope"]
                                .as_str()
                                .is_some_and(|s| s.eq_ignore_ascii_case(&scope))
                                && p["principalId"]
                                    .as_str()
                                    .is_some_and(|s| s.eq_ignore_ascii_case(&assignee))
                                && p["roleDefinitionId"]
                                    .as_str()
                                    .is_some_and(|s| s.to_ascii_lowercase().ends_with(&role))
                        })
                        .filter_map(|a| a["name"].as_str().map(String::from))
                        .collect()
                }
            };
            if names.is_empty() {
                bail!("no matching role assignment at {scope}");
            }
            for n in &names {
                roles
                    .delete(&scope, n)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            json!({ "scope": scope, "removed": names })
        }
        AzureCommand::ListRoles { client, key } => {
            let r = resolve(&client)?;
            let scope = r.scope(key.as_deref())?;
            r.roles()?
                .list(&scope)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn serve(
    listen: String,
    data_dir: PathBuf,
    vault_name: String,
    location: String,
    hosts: Vec<String>,
    allow_clock_control: bool,
) -> anyhow::Result<()> {
    let kms = DevKms::open(DevKmsConfig {
        data_dir: data_dir.clone(),
        extra_identities: Vec::new(),
        allow_clock_control,
    })
    .with_context(|| format!("opening the built-in KMS in {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let mut config = AzureVaultConfig {
        name: vault_name,
        location,
        ..Default::default()
    };
    if !hosts.is_empty() {
        config.hosts = hosts;
    }
    let vault = kms
        .azure_vault(config, listener)
        .context("opening the built-in Azure vault")?;
    let c = vault.credentials();
    println!(
        "{}",
        json!({
            "vaultUrl": vault.url(),
            "vaultName": c.vault_name,
            "location": c.location,
            "tenantId": c.tenant_id,
            "vaultScope": c.vault_scope,
            "caFile": c.ca_file,
            "credentialsFile": data_dir.join(keyplane_devkms::azure::CREDENTIALS_FILE),
            "platform": { "clientId": c.platform.client_id, "objectId": c.platform.object_id },
            "note": "built-in Azure Key Vault for development and tests only, not for production secrets",
        })
    );
    vault
        .run(crate::wait_for_signal())
        .await
        .context("serving the built-in Azure vault")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((parse_time("+90d").unwrap().unix_timestamp() - now - 90 * 86_400).abs() < 5);
        assert!((parse_time("-1h").unwrap().unix_timestamp() - now + 3_600).abs() < 5);
        assert_eq!(
            parse_time("2027-01-31T00:00:00Z").unwrap().unix_timestamp(),
            1_801_353_600
        );
        assert!(parse_time("+9x").is_err() && parse_time("tomorrow").is_err());
    }

    #[test]
    fn roles_by_name_or_id() {
        assert_eq!(
            role_id("Key Vault Crypto Service Encryption User").unwrap(),
            CRYPTO_SERVICE_ENCRYPTION_USER.id
        );
        assert_eq!(
            role_id("E147488A-F6F5-4113-8E2D-B22465E65BF6").unwrap(),
            CRYPTO_SERVICE_ENCRYPTION_USER.id
        );
        assert!(role_id("Nope").is_err());
    }
}
