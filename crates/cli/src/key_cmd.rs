//! Customer-side commands on customer keys, over keyplane's API: the policy statements to
//! paste (or the key's whole policy with them merged in), a check of a whole key policy,
//! registration, listing and status. The API URL and token resolve as `api_client` says.
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keyplane_core::{AwsKeyArn, Provider};
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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the key-policy statements keyplane needs, with your provider ID filled in; with
    /// --merge-into or --key-id, the whole key policy with them added or updated in place.
    Policy {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The region the key is for, e.g. us-east-2.
        #[arg(long)]
        region: String,
        /// A key policy JSON file (`-` for standard input) to merge keyplane's statements into;
        /// prints the whole merged policy, ready for `keyplane kms put-key-policy`.
        #[arg(long, value_name = "FILE", conflicts_with = "key_id")]
        merge_into: Option<PathBuf>,
        /// A key of the built-in KMS whose current policy to merge keyplane's statements into,
        /// read as its owner (the sample customer of the dev credentials file).
        #[arg(long, value_name = "ARN")]
        key_id: Option<String>,
    },
    /// Check a whole key policy document: what the platform's role would be denied, and why.
    CheckPolicy {
        /// The key policy JSON file.
        #[arg(long)]
        file: PathBuf,
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
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
        /// The region the key serves; the key must be in it.
        #[arg(long)]
        region: String,
        /// The key ARN.
        #[arg(long)]
        key_id: String,
        /// Run every check but store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the organization's registered keys.
    List {
        /// The database type of the keys.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
    },
    /// Show a registered key's status and its last health check.
    Status {
        /// The database type the key is for.
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        /// The region the key serves.
        #[arg(long)]
        region: String,
    },
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
    region: &str,
    base: MergeBase,
) -> anyhow::Result<()> {
    let (current, what) = match base {
        MergeBase::File(file) => (
            crate::kms_cmd::read_policy(&file)?,
            file.display().to_string(),
        ),
        MergeBase::Key(key) => {
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
    let ours = policy_merge::keyplane_statements(api, db_type, Provider::Aws, region).await?;
    let merged = policy_merge::merge(Provider::Aws, &current, &ours, &what)?;
    println!("{}", merged.document);
    policy_merge::report(&merged);
    Ok(())
}

pub async fn run(args: &ApiArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = ApiClient::from_args(args)?;
    let out = match cmd {
        KeyCommand::Policy {
            r#type,
            region,
            merge_into,
            key_id,
        } => {
            let base = match (merge_into, key_id) {
                (Some(file), _) => Some(MergeBase::File(file)),
                (None, Some(key)) => Some(MergeBase::Key(key)),
                (None, None) => None,
            };
            if let Some(base) = base {
                return merged_policy(args, &api, r#type, &region, base).await;
            }
            api.call(
                Method::GET,
                &format!(
                    "{}/provider/aws/region/{region}/policy",
                    helper_base(r#type)
                ),
                None,
            )
            .await?
        }
        KeyCommand::CheckPolicy {
            file,
            r#type,
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
                        "{}/provider/aws/region/{region}/policy/check{q}",
                        helper_base(r#type)
                    ),
                    Some(doc),
                )
                .await?;
            if v["verdict"] != "ok" {
                println!("{}", serde_json::to_string_pretty(&v)?);
                bail!("the policy does not let the platform use the key; see the findings above");
            }
            v
        }
        KeyCommand::Register {
            r#type,
            region,
            key_id,
            dry_run,
        } => {
            let body =
                json!({"orgId": api.org_id().await?, "aws": {"keyID": key_id, "region": region}});
            let q = if dry_run { "?dryRun=true" } else { "" };
            api.call(Method::POST, &format!("{}{q}", base(r#type)), Some(body))
                .await?
        }
        KeyCommand::List { r#type } => api.call(Method::GET, base(r#type), None).await?,
        KeyCommand::Status { r#type, region } => {
            api.call(
                Method::GET,
                &format!("{}/provider/aws/region/{region}/status", base(r#type)),
                None,
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
