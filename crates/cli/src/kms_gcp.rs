//! `keyplane kms gcp …`: the customer's side of Google Cloud KMS, against keyplane's built-in
//! KMS (or any server speaking Cloud KMS REST v1): create a key ring and a key, add or remove
//! an IAM binding, read or replace the policy, disable / enable / destroy a version, rotate, describe.
//! Sent with Google's official Rust client, so they behave as they would against Cloud KMS.
//! Results are printed as JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, KeyRing};
use keyplane_kms_gcp::GcpCredentials;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4599";

/// Where, as whom and on which key ring the commands act. Flags win over the files that
/// `keyplane serve --dev` (and `keyplane kms serve`) write.
#[derive(clap::Args, Debug, Clone)]
pub struct GcpClientArgs {
    /// Cloud KMS endpoint (default: the dev credentials file's `kms.endpoint`, else
    /// http://127.0.0.1:4599).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Bearer token to call with (default: the token of --member in the built-in KMS's
    /// credentials file).
    #[arg(long, env = "KEYPLANE_GCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The identity whose dev token to use.
    #[arg(long, default_value = keyplane_devkms::GCP_CUSTOMER)]
    pub member: String,
    /// The project of the key ring.
    #[arg(long, default_value = keyplane_devkms::GCP_CUSTOMER_PROJECT)]
    pub project: String,
    /// The location (region) of the key ring.
    #[arg(long, default_value = "us-east1")]
    pub location: String,
    /// The dev credentials file written by `keyplane serve --dev`.
    #[arg(long, default_value = "./keyplane-data/dev-credentials.json")]
    pub credentials_file: PathBuf,
    /// The built-in KMS's own credentials file (holds every identity's dev token).
    #[arg(long, default_value = "./keyplane-data/kms/credentials.json")]
    pub kms_credentials_file: PathBuf,
}

/// A key: `--key-ring R --key K`, or `--key projects/…/cryptoKeys/K`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// The key ring's ID in --project / --location (not needed with a full --key name).
    #[arg(long)]
    pub key_ring: Option<String>,
    /// The key's ID in --key-ring, or its full name.
    #[arg(long)]
    pub key: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum GcpCommand {
    /// Create a key ring in --project / --location.
    CreateKeyRing {
        #[command(flatten)]
        client: GcpClientArgs,
        /// The new key ring's ID.
        #[arg(long)]
        key_ring: String,
    },
    /// Create a symmetric ENCRYPT_DECRYPT key (its version 1 is primary).
    CreateKey {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Rotate automatically every N days (first rotation N days from now).
        #[arg(long)]
        rotation_period_days: Option<u32>,
    },
    /// Add MEMBER to ROLE in the key's IAM policy (e.g. --member
    /// serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com --role
    /// roles/cloudkms.cryptoKeyEncrypterDecrypter).
    AddIamBinding {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The member of the binding (serviceAccount:EMAIL, user:EMAIL, group:EMAIL).
        #[arg(long = "binding-member")]
        binding_member: String,
        /// The role of the binding (roles/cloudkms.cryptoKeyEncrypterDecrypter, roles/cloudkms.viewer, …).
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE in the key's IAM policy.
    RemoveIamBinding {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The member of the binding (serviceAccount:EMAIL, user:EMAIL, group:EMAIL).
        #[arg(long = "binding-member")]
        binding_member: String,
        /// The role of the binding (roles/cloudkms.cryptoKeyEncrypterDecrypter, roles/cloudkms.viewer, …).
        #[arg(long)]
        role: String,
    },
    /// Print the key's IAM policy (getIamPolicy's JSON, which `keyplane key check-policy` reads).
    GetIamPolicy {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Replace the key's IAM policy with a file's (getIamPolicy's JSON, e.g. the output of
    /// `keyplane key policy --provider gcp --merge-into`). The file's etag makes Cloud KMS refuse
    /// it if the policy changed since it was read.
    SetIamPolicy {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The policy JSON file (`-` for standard input); a `{"policy": …}` request body works too.
        #[arg(long, value_name = "FILE")]
        policy_file: PathBuf,
    },
    /// Disable a version: it no longer encrypts or decrypts until enabled.
    DisableVersion {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The version number (default: the primary).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Enable a disabled version again.
    EnableVersion {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The version number (default: the primary).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Schedule a version's destruction (after the key's destroy-scheduled duration).
    DestroyVersion {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The version number (default: the primary).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Create a new version and make it primary; older versions keep decrypting.
    Rotate {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// The key and its versions.
    Describe {
        #[command(flatten)]
        client: GcpClientArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
}

fn read_json(path: &PathBuf) -> anyhow::Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(_) => Ok(None),
    }
}

/// An IAM policy file as getIamPolicy prints it, or wrapped as setIamPolicy's body. It is
/// checked as keyplane's checker reads policies first, so a mistake is named before any call.
fn read_iam_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = crate::kms_cmd::read_policy(path)?;
    keyplane_core::policy::gcp::IamPolicy::parse(&text)
        .with_context(|| format!("reading the IAM policy in {}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text)?;
    if v.get("bindings").is_none()
        && let Some(inner) = v.get_mut("policy")
    {
        v = inner.take();
    }
    serde_json::from_value(v)
        .with_context(|| format!("{} is not an IAM policy Cloud KMS takes", path.display()))
}

/// Resolves endpoint and token from the flags, then the dev files.
async fn connect(args: &GcpClientArgs) -> anyhow::Result<KeyManagementService> {
    let dev = read_json(&args.credentials_file)?;
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| {
            dev.as_ref()
                .and_then(|f| f.pointer("/kms/endpoint"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let kms = read_json(&args.kms_credentials_file)?;
            kms.as_ref()
                .and_then(|f| f.pointer("/gcp/identities"))
                .and_then(Value::as_array)
                .and_then(|list| list.iter().find(|i| i["member"] == args.member.as_str()))
                .and_then(|i| i["token"].as_str())
                .map(String::from)
                .with_context(|| {
                    format!(
                        "no token for {}: pass --token, or point --kms-credentials-file at the built-in KMS's \
                         credentials.json (looked at {})",
                        args.member,
                        args.kms_credentials_file.display()
                    )
                })?
        }
    };
    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
        bail!("the endpoint must be an http:// or https:// URL (got {endpoint})");
    }
    let credentials = GcpCredentials::StaticToken(Zeroizing::new(token))
        .to_client_credentials("Connect")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    KeyManagementService::builder()
        .with_endpoint(endpoint)
        .with_credentials(credentials)
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .context("building the Cloud KMS client")
}

fn key_name(client: &GcpClientArgs, key: &KeyArgs) -> anyhow::Result<String> {
    if key.key.starts_with("projects/") {
        return Ok(key.key.clone());
    }
    let ring = key
        .key_ring
        .as_deref()
        .context("give --key-ring with a key ID, or the key's full name as --key")?;
    Ok(format!(
        "projects/{}/locations/{}/keyRings/{ring}/cryptoKeys/{}",
        client.project, client.location, key.key
    ))
}

/// Cloud KMS's status and message instead of the client's generic error.
fn gcp_error(e: google_cloud_gax::error::Error) -> anyhow::Error {
    match e.status() {
        Some(s) => anyhow::anyhow!("{}: {}", s.code.name(), s.message),
        None => anyhow::anyhow!("calling Cloud KMS: {e}"),
    }
}

/// The model as JSON, with enums by name: the client serializes them as numbers (what it
/// sends on the wire), which reads badly in a terminal.
fn to_json<T: serde::Serialize>(v: &T) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(v)?;
    name_enums(&mut v);
    Ok(v)
}

fn name_enums(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, field) in m.iter_mut() {
                if let Some(n) = field.as_i64() {
                    let name = match k.as_str() {
                        "state" => CryptoKeyVersionState::from(n as i32).name().map(str::to_string),
                        "purpose" => CryptoKeyPurpose::from(n as i32).name().map(str::to_string),
                        "protectionLevel" => google_cloud_kms_v1::model::ProtectionLevel::from(n as i32).name().map(str::to_string),
                        "algorithm" => {
                            google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionAlgorithm::from(n as i32)
                                .name()
                                .map(str::to_string)
                        }
                        _ => None,
                    };
                    if let Some(name) = name {
                        *field = Value::from(name);
                    }
                } else {
                    name_enums(field);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(name_enums),
        _ => {}
    }
}

/// The version named by `version`, or the key's primary.
async fn version_name(
    c: &KeyManagementService,
    key: &str,
    version: Option<u64>,
) -> anyhow::Result<String> {
    if let Some(v) = version {
        return Ok(format!("{key}/cryptoKeyVersions/{v}"));
    }
    let k = c
        .get_crypto_key()
        .set_name(key)
        .send()
        .await
        .map_err(gcp_error)?;
    k.primary
        .map(|p| p.name)
        .with_context(|| format!("{key} has no primary version: give --version"))
}

async fn set_state(
    c: &KeyManagementService,
    name: String,
    state: CryptoKeyVersionState,
) -> anyhow::Result<Value> {
    let v = c
        .update_crypto_key_version()
        .set_crypto_key_version(CryptoKeyVersion::new().set_name(name).set_state(state))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await
        .map_err(gcp_error)?;
    to_json(&v)
}

/// Adds (or removes) `member` in `role`'s binding with a read-modify-write on the etag.
async fn change_binding(
    c: &KeyManagementService,
    key: &str,
    member: &str,
    role: &str,
    add: bool,
) -> anyhow::Result<Value> {
    let current = c
        .get_iam_policy()
        .set_resource(key)
        .send()
        .await
        .map_err(gcp_error)?;
    let mut bindings = current.bindings.clone();
    match bindings
        .iter_mut()
        .find(|b| b.role == role && b.condition.is_none())
    {
        Some(b) if add && !b.members.iter().any(|m| m == member) => {
            b.members.push(member.to_string());
        }
        Some(_) if add => {}
        Some(b) => b.members.retain(|m| m != member),
        None if add => bindings.push(Binding::new().set_role(role).set_members([member])),
        None => {}
    }
    bindings.retain(|b| !b.members.is_empty());
    let p = c
        .set_iam_policy()
        .set_resource(key)
        .set_policy(Policy::new().set_bindings(bindings).set_etag(current.etag))
        .send()
        .await
        .map_err(gcp_error)?;
    to_json(&p)
}

pub async fn run(cmd: GcpCommand) -> anyhow::Result<()> {
    let out = match cmd {
        GcpCommand::CreateKeyRing { client, key_ring } => {
            let c = connect(&client).await?;
            let r = c
                .create_key_ring()
                .set_parent(format!(
                    "projects/{}/locations/{}",
                    client.project, client.location
                ))
                .set_key_ring_id(key_ring)
                .set_key_ring(KeyRing::new())
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&r)?
        }
        GcpCommand::CreateKey {
            client,
            key,
            rotation_period_days,
        } => {
            let name = key_name(&client, &key)?;
            let (ring, id) = name
                .rsplit_once("/cryptoKeys/")
                .context("a key name ends in /cryptoKeys/KEY")?;
            let mut k = CryptoKey::new().set_purpose(CryptoKeyPurpose::EncryptDecrypt);
            if let Some(days) = rotation_period_days {
                let secs = i64::from(days) * 86_400;
                let next = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
                    + secs;
                k = k
                    .set_rotation_period(google_cloud_wkt::Duration::clamp(secs, 0))
                    .set_next_rotation_time(google_cloud_wkt::Timestamp::clamp(next, 0));
            }
            let c = connect(&client).await?;
            let r = c
                .create_crypto_key()
                .set_parent(ring)
                .set_crypto_key_id(id)
                .set_crypto_key(k)
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&r)?
        }
        GcpCommand::AddIamBinding {
            client,
            key,
            binding_member,
            role,
        } => {
            let name = key_name(&client, &key)?;
            change_binding(
                &connect(&client).await?,
                &name,
                &binding_member,
                &role,
                true,
            )
            .await?
        }
        GcpCommand::RemoveIamBinding {
            client,
            key,
            binding_member,
            role,
        } => {
            let name = key_name(&client, &key)?;
            change_binding(
                &connect(&client).await?,
                &name,
                &binding_member,
                &role,
                false,
            )
            .await?
        }
        GcpCommand::GetIamPolicy { client, key } => {
            let name = key_name(&client, &key)?;
            let p = connect(&client)
                .await?
                .get_iam_policy()
                .set_resource(name)
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&p)?
        }
        GcpCommand::SetIamPolicy {
            client,
            key,
            policy_file,
        } => {
            let name = key_name(&client, &key)?;
            let policy = read_iam_policy(&policy_file)?;
            let p = connect(&client)
                .await?
                .set_iam_policy()
                .set_resource(name)
                .set_policy(policy)
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&p)?
        }
        GcpCommand::DisableVersion {
            client,
            key,
            version,
        } => {
            let name = key_name(&client, &key)?;
            let c = connect(&client).await?;
            let v = version_name(&c, &name, version).await?;
            set_state(&c, v, CryptoKeyVersionState::Disabled).await?
        }
        GcpCommand::EnableVersion {
            client,
            key,
            version,
        } => {
            let name = key_name(&client, &key)?;
            let c = connect(&client).await?;
            let v = version_name(&c, &name, version).await?;
            set_state(&c, v, CryptoKeyVersionState::Enabled).await?
        }
        GcpCommand::DestroyVersion {
            client,
            key,
            version,
        } => {
            let name = key_name(&client, &key)?;
            let c = connect(&client).await?;
            let v = version_name(&c, &name, version).await?;
            let r = c
                .destroy_crypto_key_version()
                .set_name(v)
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&r)?
        }
        GcpCommand::Rotate { client, key } => {
            let name = key_name(&client, &key)?;
            let c = connect(&client).await?;
            let v = c
                .create_crypto_key_version()
                .set_parent(&name)
                .set_crypto_key_version(CryptoKeyVersion::new())
                .send()
                .await
                .map_err(gcp_error)?;
            let id = v.name.rsplit('/').next().unwrap_or_default().to_string();
            let k = c
                .update_crypto_key_primary_version()
                .set_name(&name)
                .set_crypto_key_version_id(id)
                .send()
                .await
                .map_err(gcp_error)?;
            to_json(&k)?
        }
        GcpCommand::Describe { client, key } => {
            let name = key_name(&client, &key)?;
            let c = connect(&client).await?;
            let k = c
                .get_crypto_key()
                .set_name(&name)
                .send()
                .await
                .map_err(gcp_error)?;
            let versions = c
                .list_crypto_key_versions()
                .set_parent(&name)
                .send()
                .await
                .map_err(gcp_error)?;
            json!({ "cryptoKey": to_json(&k)?, "versions": to_json(&versions.crypto_key_versions)? })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
