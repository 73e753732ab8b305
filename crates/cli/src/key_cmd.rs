//! Customer-side commands on customer keys, over keyplane's API: the policy statements to
//! paste (or the key's whole policy with them merged in), a check of a whole key policy,
//! registration, listing and status. The API URL and token resolve as `api_client` says.
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keyplane_core::AwsKeyArn;
use keyplane_core::policy::PolicyFormat;
use serde_json::{Value, json};

pub use crate::api_client::ApiArgs;
use crate::api_client::{ApiClient, DEV_CREDENTIALS_FILE};
use crate::kms_cmd::KmsClientArgs;
use crate::policy_merge;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DbTypeArg {
    /// Managed Clusters.
    Classic,
    /// Serverless databases.
    Serverless,
}

/// The key service a key lives in: the three clouds' KMS, or OpenBao (which serves a region
/// of any cloud). It picks the API's `provider/<service>/…` path and the policy's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyServiceArg {
    /// AWS KMS: a key policy (JSON statements).
    Aws,
    /// Google Cloud KMS: the key's IAM policy (getIamPolicy output).
    Gcp,
    /// Azure Key Vault: role assignments (`az role assignment list` output).
    Azure,
    /// OpenBao / Vault Transit: an ACL policy (HCL or its JSON form).
    Openbao,
}

impl KeyServiceArg {
    /// The service's name in the API's paths.
    pub fn name(self) -> &'static str {
        match self {
            KeyServiceArg::Aws => "aws",
            KeyServiceArg::Gcp => "gcp",
            KeyServiceArg::Azure => "azure",
            KeyServiceArg::Openbao => "openbao",
        }
    }

    pub fn policy_format(self) -> PolicyFormat {
        match self {
            KeyServiceArg::Aws => PolicyFormat::AwsKeyPolicy,
            KeyServiceArg::Gcp => PolicyFormat::GcpIamPolicy,
            KeyServiceArg::Azure => PolicyFormat::AzureRoleAssignments,
            KeyServiceArg::Openbao => PolicyFormat::OpenbaoPolicy,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print what keyplane needs granted on the key, with your provider ID filled in; with
    /// --merge-into or --key-id, the key's whole policy with it added or updated in place.
    Policy {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The region the key is for, e.g. us-east-2.
        #[arg(long)]
        region: String,
        /// The key service the key is in; it sets the policy's format.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The key's current policy (`-` for standard input) to merge keyplane's grants into:
        /// an AWS key policy, a GCP getIamPolicy output, an `az role assignment list` output or
        /// an OpenBao policy. Prints the whole merged document, ready to put back.
        #[arg(long, value_name = "FILE", conflicts_with = "key_id")]
        merge_into: Option<PathBuf>,
        /// A key of the built-in AWS KMS whose current policy to merge keyplane's statements
        /// into, read as its owner (the sample customer of the dev credentials file); for
        /// OpenBao, the Transit key the policy is for (its paths are named in it).
        #[arg(long, value_name = "ARN")]
        key_id: Option<String>,
        /// OpenBao: the help for an AppRole role (default) or a JWT role.
        #[arg(long, value_enum)]
        auth: Option<OpenbaoAuthArg>,
    },
    /// Check a whole key policy document: what the platform's role would be denied, and why.
    CheckPolicy {
        /// The key policy JSON file.
        #[arg(long)]
        file: PathBuf,
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key is for.
        #[arg(long)]
        region: String,
        /// The key ARN the policy belongs to.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Register a key (every check runs first; --dry-run stores nothing).
    Register {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves; the key must be in it.
        #[arg(long)]
        region: String,
        /// The key: an AWS ARN, a Google Cloud key name (a version's name is accepted), an
        /// Azure key identifier, or an OpenBao Transit key URL.
        #[arg(long)]
        key_id: String,
        /// Run every check but store nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        login: OpenbaoLoginArgs,
    },
    /// List the organization's registered keys.
    List {
        /// The database type of the keys.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
    },
    /// Show a registered key's status, its last health check and whether it is bound to the
    /// organization (a warning on standard error while it is not).
    Status {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
    },
    /// Revoke the platform's use of the key, whatever your KMS allows: every database under
    /// it is suspended at once and stays so, and none is deployed under it, until `unrevoke`.
    Revoke {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
    },
    /// Deregister a key no live database is encrypted under (refused, naming them, otherwise).
    Deregister {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
    },
    /// Replace the region's key by another (checked as at registration): new databases use
    /// it; existing ones stay under the old key until `keyplane db rewrap` moves each.
    Replace {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
        /// The new key, as `register` takes it.
        #[arg(long)]
        key_id: String,
        /// Run every check but change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        login: OpenbaoLoginArgs,
    },
    /// Show or choose what a key that fails its check does to its databases: suspend them at
    /// once (the default), or keep them serving with an alert for a time first. With --region,
    /// the choice of that key, overriding the organization's; without, the organization's.
    OnInaccessible {
        /// The database type the key is for (with --region).
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in (with --region).
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region whose key the choice is for.
        #[arg(long)]
        region: Option<String>,
        /// Suspend at once.
        #[arg(long, conflicts_with_all = ["alert_only", "clear"])]
        suspend: bool,
        /// Keep serving for this many seconds after the key first fails, with an alert; then
        /// suspend.
        #[arg(long, value_name = "SECONDS", conflicts_with = "clear")]
        alert_only: Option<i64>,
        /// Forget the choice: a key follows the organization's again, the organization
        /// suspends.
        #[arg(long)]
        clear: bool,
    },
    /// End a revocation: the key is checked as at registration, then its databases resume.
    Unrevoke {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The key service the key is in.
        #[arg(long, value_enum, default_value = "aws")]
        provider: KeyServiceArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
    },
}

/// How keyplane logs in to the customer's OpenBao.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OpenbaoAuthArg {
    /// An AppRole role: --role-id and --secret-id-file.
    #[default]
    Approle,
    /// A JWT role bound to the organization, trusting keyplane's signing key (`key policy
    /// --auth jwt` prints what to configure); nothing secret is given.
    Jwt,
}

impl OpenbaoAuthArg {
    fn name(self) -> &'static str {
        match self {
            OpenbaoAuthArg::Approle => "approle",
            OpenbaoAuthArg::Jwt => "jwt",
        }
    }
}

/// The login an OpenBao key is used with (`--provider openbao` only). Omitted on a
/// replacement: the slot's current login is kept.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OpenbaoLoginArgs {
    /// The login method.
    #[arg(long, value_enum)]
    auth: Option<OpenbaoAuthArg>,
    /// The role's path [default: the provider ID keyplane shows, auth/approle/role/keyplane].
    #[arg(long)]
    role: Option<String>,
    /// The role's role ID (`bao read -field=role_id auth/approle/role/NAME/role-id`).
    #[arg(long)]
    role_id: Option<String>,
    /// A file holding a secret ID of the role (`-`: standard input); kept out of the command
    /// line so it stays out of shell history and process listings.
    #[arg(long, value_name = "FILE")]
    secret_id_file: Option<std::path::PathBuf>,
    /// PEM certificates to trust for the server, alone (a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
}

impl OpenbaoLoginArgs {
    /// The provider object's login fields, added to `key` (an OpenBao key only).
    fn add_to(&self, provider: KeyServiceArg, key: &mut serde_json::Value) -> anyhow::Result<()> {
        let given = self.role.is_some()
            || self.auth.is_some()
            || self.role_id.is_some()
            || self.secret_id_file.is_some()
            || self.ca_file.is_some();
        if provider != KeyServiceArg::Openbao {
            if given {
                anyhow::bail!(
                    "--auth, --role, --role-id, --secret-id-file and --ca-file are for --provider openbao"
                );
            }
            return Ok(());
        }
        if let Some(role) = &self.role {
            key["role"] = json!(role);
        }
        if let Some(auth) = self.auth {
            key["auth"] = json!(auth.name());
        }
        if let Some(id) = &self.role_id {
            key["roleID"] = json!(id);
        }
        if let Some(path) = &self.secret_id_file {
            let secret = zeroize::Zeroizing::new(if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--secret-id-file {}: {e}", path.display()))?
            });
            key["secretID"] = json!(secret.trim());
        }
        if let Some(path) = &self.ca_file {
            key["caCertificate"] = json!(
                std::fs::read_to_string(path)
                    .map_err(|e| { anyhow::anyhow!("--ca-file {}: {e}", path.display()) })?
            );
        }
        Ok(())
    }
}

fn base(t: DbTypeArg) -> &'static str {
    match t {
        DbTypeArg::Classic => "/v2/kms/classic",
        DbTypeArg::Serverless => "/v2/kms",
    }
}

pub(crate) fn helper_base(t: DbTypeArg) -> &'static str {
    match t {
        DbTypeArg::Classic => "/v2/kms/classic",
        DbTypeArg::Serverless => "/v2/kms/serverless",
    }
}

/// The built-in KMS client acting as the key's owner: the dev credentials file's customer, in
/// the key's own region.
fn kms_as_owner(args: &ApiArgs, arn: &AwsKeyArn) -> anyhow::Result<aws_sdk_kms::Client> {
    crate::kms_cmd::connect(&KmsClientArgs {
        endpoint: None,
        region: Some(arn.region.clone()),
        access_key_id: None,
        secret_access_key: None,
        credentials_file: args
            .credentials_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEV_CREDENTIALS_FILE)),
    })
}

/// The policy `key policy` merges into: a file's, or a key's current one.
enum MergeBase {
    File(PathBuf),
    Key(String),
}

/// `key policy --merge-into/--key-id`: the whole policy, merged, on standard output.
async fn merged_policy(
    args: &ApiArgs,
    api: &ApiClient,
    db_type: DbTypeArg,
    provider: KeyServiceArg,
    region: &str,
    base: MergeBase,
) -> anyhow::Result<()> {
    let (current, what) = match base {
        MergeBase::File(file) => (
            crate::kms_cmd::read_policy(&file)?,
            file.display().to_string(),
        ),
        MergeBase::Key(key) => {
            if provider != KeyServiceArg::Aws {
                bail!(
                    "--key-id reads a key of the built-in AWS KMS; for a {} key, save its current policy \
                     to a file and pass it with --merge-into",
                    provider.name()
                );
            }
            let arn: AwsKeyArn = key.parse().map_err(|e| anyhow::anyhow!("--key-id: {e}"))?;
            if arn.region != region {
                bail!(
                    "the key is in {} but --region is {region}: a key serves only its own region",
                    arn.region
                );
            }
            let client = kms_as_owner(args, &arn)?;
            (
                policy_merge::key_policy(&client, &key).await?,
                format!("the key policy of {key}"),
            )
        }
    };
    let ours = policy_merge::keyplane_statements(api, db_type, provider, region).await?;
    let merged = policy_merge::merge(provider.policy_format(), &current, &ours, &what)?;
    println!("{}", merged.document);
    policy_merge::report(provider.policy_format(), &merged);
    Ok(())
}

pub async fn run(args: &ApiArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = ApiClient::from_args(args)?;
    let out = match cmd {
        KeyCommand::Policy {
            r#type,
            provider,
            region,
            merge_into,
            key_id,
            auth,
        } => {
            if auth.is_some() && provider != KeyServiceArg::Openbao {
                anyhow::bail!("--auth is for --provider openbao");
            }
            // An OpenBao key's ID names its paths in the help; there is no KMS to read it from.
            let (key_id, named) = match provider {
                KeyServiceArg::Openbao => (None, key_id),
                _ => (key_id, None),
            };
            let base = match (merge_into, key_id) {
                (Some(file), _) => Some(MergeBase::File(file)),
                (None, Some(key)) => Some(MergeBase::Key(key)),
                (None, None) => None,
            };
            if let Some(base) = base {
                return merged_policy(args, &api, r#type, provider, &region, base).await;
            }
            let mut query: Vec<String> = named.map(|k| format!("keyID={k}")).into_iter().collect();
            if let Some(a) = auth {
                query.push(format!("auth={}", a.name()));
            }
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            api.call(
                Method::GET,
                &format!(
                    "{}/provider/{}/region/{region}/policy{q}",
                    helper_base(r#type),
                    provider.name()
                ),
                None,
            )
            .await?
        }
        KeyCommand::CheckPolicy {
            file,
            r#type,
            provider,
            region,
            key_id,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let q = key_id.map(|k| format!("?keyID={k}")).unwrap_or_default();
            let v = api
                .call(
                    Method::POST,
                    &format!(
                        "{}/provider/{}/region/{region}/policy/check{q}",
                        helper_base(r#type),
                        provider.name()
                    ),
                    Some(doc),
                )
                .await?;
            match v["verdict"].as_str() {
                Some("ok") => {}
                Some("unbound") => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    bail!(
                        "the policy lets the platform use the key for any organization, so registration would refuse \
                         it; add the condition each of the organization_findings above names"
                    );
                }
                _ => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    bail!(
                        "the policy does not let the platform use the key; see the findings above"
                    );
                }
            }
            v
        }
        KeyCommand::Register {
            r#type,
            provider,
            region,
            key_id,
            dry_run,
            login,
        } => {
            let mut body = json!({"orgId": api.org_id().await?});
            let mut key = json!({"keyID": key_id, "region": region});
            login.add_to(provider, &mut key)?;
            body[provider.name()] = key;
            let q = if dry_run { "?dryRun=true" } else { "" };
            api.call(Method::POST, &format!("{}{q}", base(r#type)), Some(body))
                .await?
        }
        KeyCommand::Replace {
            r#type,
            provider,
            region,
            key_id,
            dry_run,
            login,
        } => {
            let mut body = json!({"orgId": api.org_id().await?});
            let mut key = json!({"keyID": key_id, "region": region});
            login.add_to(provider, &mut key)?;
            body[provider.name()] = key;
            let q = if dry_run { "?dryRun=true" } else { "" };
            let path = format!(
                "{}/provider/{}/region/{region}{q}",
                base(r#type),
                provider.name()
            );
            api.call(Method::PUT, &path, Some(body)).await?
        }
        KeyCommand::List { r#type } => api.call(Method::GET, base(r#type), None).await?,
        KeyCommand::Status {
            r#type,
            provider,
            region,
        } => {
            let v = api
                .call(
                    Method::GET,
                    &format!(
                        "{}/provider/{}/region/{region}/status",
                        base(r#type),
                        provider.name()
                    ),
                    None,
                )
                .await?;
            // Standard output keeps the API's JSON; the warning is for the person reading.
            if let Some(w) = v["warning"].as_str() {
                eprintln!("warning: {w}");
            }
            v
        }
        KeyCommand::Revoke {
            r#type,
            provider,
            region,
        } => {
            let path = format!(
                "{}/provider/{}/region/{region}/revoke",
                base(r#type),
                provider.name()
            );
            api.call(Method::POST, &path, None).await?
        }
        KeyCommand::Deregister {
            r#type,
            provider,
            region,
        } => {
            let path = format!(
                "{}/provider/{}/region/{region}",
                base(r#type),
                provider.name()
            );
            api.call(Method::DELETE, &path, None).await?;
            serde_json::json!({"deregistered": true, "region": region, "provider": provider.name()})
        }
        KeyCommand::OnInaccessible {
            r#type,
            provider,
            region,
            suspend,
            alert_only,
            clear,
        } => {
            let path = match &region {
                Some(region) => format!(
                    "{}/provider/{}/region/{region}/on-inaccessible",
                    base(r#type),
                    provider.name()
                ),
                None => "/v2/kms/on-inaccessible".to_string(),
            };
            let body = match (suspend, alert_only) {
                (true, _) => Some(serde_json::json!({"action": "suspend"})),
                (_, Some(secs)) => {
                    Some(serde_json::json!({"action": "alert-only", "alertOnlySeconds": secs}))
                }
                _ => None,
            };
            match (body, clear) {
                (Some(body), _) => api.call(Method::PUT, &path, Some(body)).await?,
                (None, true) => api.call(Method::DELETE, &path, None).await?,
                (None, false) => {
                    api.call(Method::GET, "/v2/kms/on-inaccessible", None)
                        .await?
                }
            }
        }
        KeyCommand::Unrevoke {
            r#type,
            provider,
            region,
        } => {
            let path = format!(
                "{}/provider/{}/region/{region}/unrevoke",
                base(r#type),
                provider.name()
            );
            api.call(Method::POST, &path, None).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Key {
        #[command(subcommand)]
        cmd: KeyCommand,
    }

    fn policy(args: &[&str]) -> (KeyServiceArg, Option<PathBuf>) {
        let argv = ["key", "policy", "--region", "us-east1"]
            .iter()
            .chain(args)
            .copied();
        match Key::try_parse_from(argv).unwrap().cmd {
            KeyCommand::Policy {
                provider,
                merge_into,
                ..
            } => (provider, merge_into),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_provider_selects_the_path_and_format_and_defaults_to_aws() {
        assert_eq!(policy(&[]).0, KeyServiceArg::Aws);
        let (s, file) = policy(&["--provider", "gcp", "--merge-into", "iam.json"]);
        assert_eq!(s, KeyServiceArg::Gcp);
        assert_eq!(file, Some(PathBuf::from("iam.json")));
        assert_eq!(policy(&["--provider", "openbao"]).0, KeyServiceArg::Openbao);
        assert_eq!(
            KeyServiceArg::Openbao.policy_format(),
            PolicyFormat::OpenbaoPolicy
        );
        assert_eq!(KeyServiceArg::Azure.name(), "azure");
        assert!(
            Key::try_parse_from(["key", "policy", "--region", "r", "--provider", "ibm"]).is_err()
        );
    }
}
