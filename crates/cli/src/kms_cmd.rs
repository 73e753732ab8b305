//! `keyplane kms …`: run the built-in KMS on its own, and the customer-side commands a key owner
//! would run against AWS KMS (create a key, set its policy, disable it, schedule its deletion),
//! sent with the unmodified AWS SDK so they behave the same against the built-in KMS and AWS.
//! Results are printed as JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{KeyMetadata, KeySpec};
use keyplane_devkms::{DevKms, DevKmsConfig};
use serde_json::{Value, json};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4599";
const DEFAULT_REGION: &str = "us-east-2";
const CUSTOMER_PRINCIPAL: &str = "arn:aws:iam::111111111111:user/admin";

// Where and as whom the customer-side commands call KMS. Flags win over the credentials file
// that `keyplane serve --dev` writes. (A `//` comment: clap would show a `///` one as the
// description of every command that flattens these arguments.)
#[derive(clap::Args, Debug, Clone)]
pub struct KmsClientArgs {
    /// KMS endpoint URL (default: the file's `kms.endpoint`, else http://127.0.0.1:4599).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// AWS region of the key (default: the file's `kms.region`, else us-east-2).
    #[arg(long)]
    pub region: Option<String>,
    /// Access key id to sign with (default: the file's `kms.customer.accessKeyId`).
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// Secret access key to sign with (default: the file's `kms.customer.secretAccessKey`).
    #[arg(long)]
    pub secret_access_key: Option<crate::api_client::SecretArg>,
    /// The dev credentials file written by `keyplane serve --dev`.
    #[arg(long, default_value = "./keyplane-data/dev-credentials.json")]
    pub credentials_file: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum KmsCommand {
    /// Google Cloud KMS on the built-in KMS, as the customer.
    #[command(subcommand)]
    Gcp(crate::kms_gcp::GcpCommand),
    /// Run the built-in KMS alone (development and tests only, not for production secrets).
    /// Prints one JSON line with its endpoint and the sample customer's credentials; every
    /// identity's credentials are in `<data-dir>/credentials.json`.
    Serve {
        /// The address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:4599")]
        listen: String,
        /// Where the KMS keeps its keys, state and `credentials.json`.
        #[arg(long, default_value = "./keyplane-data/kms")]
        data_dir: PathBuf,
        /// Let `POST /_admin/clock/advance` move time forward (tests only).
        #[arg(long)]
        allow_clock_control: bool,
    },
    /// Create a KMS key (symmetric by default).
    CreateKey {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's description.
        #[arg(long)]
        description: Option<String>,
        /// SYMMETRIC_DEFAULT, RSA_2048, ECC_NIST_P256, HMAC_256, …
        #[arg(long)]
        key_spec: Option<String>,
        /// Make a multi-Region primary key.
        #[arg(long)]
        multi_region: bool,
        /// Key policy JSON file (`-` for standard input); default: the account's default policy.
        #[arg(long)]
        policy_file: Option<PathBuf>,
        /// `json`: the key's metadata; `arn`: only its ARN, for `KEY=$(keyplane kms create-key --output arn)`.
        #[arg(long, value_enum, default_value = "json")]
        output: CreateKeyOutput,
    },
    /// Replace a key's policy with a file's, or (--merge) add keyplane's statements to it.
    PutKeyPolicy {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
        /// The new key policy JSON file (`-` for standard input); with --merge, the policy to
        /// merge into instead of the key's current one.
        #[arg(long, required_unless_present = "merge")]
        policy_file: Option<PathBuf>,
        /// Put the key's current policy with keyplane's statements added or updated in place
        /// (asked of keyplane's API, as `keyplane key policy --key-id` prints it).
        #[arg(long)]
        merge: bool,
        /// With --merge: the database type the key is for.
        #[arg(long = "type", value_enum, default_value = "classic")]
        db_type: crate::key_cmd::DbTypeArg,
        /// With --merge: keyplane's API URL [default: as for `keyplane key`].
        #[arg(long, env = "KEYPLANE_API_URL")]
        api_url: Option<String>,
        /// With --merge: the application token [default: as for `keyplane key`].
        #[arg(long, env = "KEYPLANE_TOKEN", hide_env_values = true)]
        token: Option<crate::api_client::SecretArg>,
    },
    /// Print a key's policy.
    GetKeyPolicy {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Disable a key: KMS refuses every use of it until it is enabled again.
    DisableKey {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Enable a disabled key again.
    EnableKey {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
    },
    /// Schedule a key's deletion after a waiting period; it is unusable meanwhile.
    ScheduleKeyDeletion {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
        /// 7 to 30 days; KMS's default is 30.
        #[arg(long)]
        pending_window_in_days: Option<i32>,
    },
    /// Print a key's metadata: state, spec, usage, dates.
    DescribeKey {
        #[command(flatten)]
        client: KmsClientArgs,
        /// The key's ID or ARN.
        #[arg(long)]
        key_id: String,
    },
    /// The built-in Azure Key Vault, and the key owner's side of it.
    #[command(subcommand)]
    Azure(crate::kms_azure::AzureCommand),
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum CreateKeyOutput {
    /// The key's metadata as JSON.
    Json,
    /// Only the key's ARN.
    Arn,
}

pub async fn run(cmd: KmsCommand) -> anyhow::Result<()> {
    let out = match cmd {
        KmsCommand::Gcp(cmd) => return crate::kms_gcp::run(cmd).await,
        KmsCommand::Serve {
            listen,
            data_dir,
            allow_clock_control,
        } => return serve(listen, data_dir, allow_clock_control).await,
        KmsCommand::Azure(c) => return crate::kms_azure::run(c).await,
        KmsCommand::CreateKey {
            client,
            description,
            key_spec,
            multi_region,
            policy_file,
            output,
        } => {
            let c = connect(&client)?;
            let mut req = c
                .create_key()
                .set_description(description)
                .multi_region(multi_region);
            if let Some(spec) = key_spec {
                req = req.key_spec(KeySpec::from(spec.as_str()));
            }
            if let Some(p) = policy_file {
                req = req.policy(read_policy(&p)?);
            }
            let r = req.send().await.map_err(aws_error)?;
            if let CreateKeyOutput::Arn = output {
                let arn = r
                    .key_metadata()
                    .and_then(|m| m.arn())
                    .context("CreateKey returned no ARN")?;
                println!("{arn}");
                return Ok(());
            }
            json!({ "KeyMetadata": r.key_metadata().map(metadata_json) })
        }
        KmsCommand::PutKeyPolicy {
            client,
            key_id,
            policy_file,
            merge,
            db_type,
            api_url,
            token,
        } => {
            let kms = connect(&client)?;
            let mut out = json!({ "KeyId": key_id, "PolicyName": "default", "updated": true });
            let policy = if merge {
                let api = merged_api(&client, api_url, token)?;
                let (policy, changes) = merge_keyplane_statements(
                    &kms,
                    &api,
                    &client,
                    &key_id,
                    policy_file.as_deref(),
                    db_type,
                )
                .await?;
                out["updated"] = json!(changes.changed());
                out["statements"] = json!(changes.changes);
                if !changes.changed() {
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    return Ok(());
                }
                policy
            } else {
                match &policy_file {
                    Some(f) => read_policy(f)?,
                    None => bail!("pass --policy-file FILE, or --merge"),
                }
            };
            kms.put_key_policy()
                .key_id(&key_id)
                .policy(policy)
                .send()
                .await
                .map_err(aws_error)?;
            out
        }
        KmsCommand::GetKeyPolicy { client, key_id } => {
            let r = connect(&client)?
                .get_key_policy()
                .key_id(&key_id)
                .send()
                .await
                .map_err(aws_error)?;
            let policy = r.policy().unwrap_or("{}");
            json!({
                "PolicyName": r.policy_name().unwrap_or("default"),
                "Policy": serde_json::from_str::<Value>(policy).unwrap_or_else(|_| Value::String(policy.to_string())),
            })
        }
        KmsCommand::DisableKey { client, key_id } => {
            connect(&client)?
                .disable_key()
                .key_id(&key_id)
                .send()
                .await
                .map_err(aws_error)?;
            json!({ "KeyId": key_id, "KeyState": "Disabled" })
        }
        KmsCommand::EnableKey { client, key_id } => {
            connect(&client)?
                .enable_key()
                .key_id(&key_id)
                .send()
                .await
                .map_err(aws_error)?;
            json!({ "KeyId": key_id, "KeyState": "Enabled" })
        }
        KmsCommand::ScheduleKeyDeletion {
            client,
            key_id,
            pending_window_in_days,
        } => {
            let r = connect(&client)?
                .schedule_key_deletion()
                .key_id(&key_id)
                .set_pending_window_in_days(pending_window_in_days)
                .send()
                .await
                .map_err(aws_error)?;
            json!({
                "KeyId": r.key_id(),
                "KeyState": r.key_state().map(|s| s.as_str()),
                "DeletionDate": r.deletion_date().map(|d| d.to_string()),
                "PendingWindowInDays": r.pending_window_in_days(),
            })
        }
        KmsCommand::DescribeKey { client, key_id } => {
            let r = connect(&client)?
                .describe_key()
                .key_id(&key_id)
                .send()
                .await
                .map_err(aws_error)?;
            json!({ "KeyMetadata": r.key_metadata().map(metadata_json) })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn serve(listen: String, data_dir: PathBuf, allow_clock_control: bool) -> anyhow::Result<()> {
    let kms = DevKms::open(DevKmsConfig {
        data_dir: data_dir.clone(),
        extra_identities: Vec::new(),
        allow_clock_control,
    })
    .with_context(|| format!("opening the built-in KMS in {}", data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let customer = kms
        .credentials(CUSTOMER_PRINCIPAL)
        .context("the built-in KMS has no sample customer identity")?;
    println!(
        "{}",
        json!({
            "endpoint": endpoint,
            "region": DEFAULT_REGION,
            "credentialsFile": data_dir.join("credentials.json"),
            "customer": {
                "accountId": customer.account,
                "accessKeyId": customer.access_key_id,
                "secretAccessKey": customer.secret_access_key,
                "principalArn": customer.principal_arn,
            },
            "note": "built-in KMS for development and tests only, not for production secrets",
        })
    );
    kms.run(listener, crate::wait_for_signal())
        .await
        .context("serving the built-in KMS")?;
    Ok(())
}

/// The API client for `put-key-policy --merge`: its flags, then as for `keyplane key`, with
/// the dev credentials file these KMS commands read (read before `keyplane login`'s only when
/// given explicitly).
fn merged_api(
    client: &KmsClientArgs,
    api_url: Option<String>,
    token: Option<crate::api_client::SecretArg>,
) -> anyhow::Result<crate::api_client::ApiClient> {
    let explicit =
        client.credentials_file != std::path::Path::new(crate::api_client::DEV_CREDENTIALS_FILE);
    crate::api_client::ApiClient::from_args(&crate::api_client::ApiArgs {
        api_url,
        token,
        credentials_file: explicit.then(|| client.credentials_file.clone()),
    })
}

/// The policy to put for `put-key-policy --merge`: the file's or the key's current one, with
/// keyplane's statements for the key's region merged in.
async fn merge_keyplane_statements(
    kms: &aws_sdk_kms::Client,
    api: &crate::api_client::ApiClient,
    client: &KmsClientArgs,
    key_id: &str,
    policy_file: Option<&std::path::Path>,
    db_type: crate::key_cmd::DbTypeArg,
) -> anyhow::Result<(String, keyplane_core::policy::MergedPolicy)> {
    use crate::policy_merge;
    let (current, what) = match policy_file {
        Some(f) => (read_policy(f)?, f.display().to_string()),
        None => (
            policy_merge::key_policy(kms, key_id).await?,
            format!("the key policy of {key_id}"),
        ),
    };
    // The region keyplane registers the key for is the key's own.
    let region = match key_id.parse::<keyplane_core::AwsKeyArn>() {
        Ok(arn) => arn.region,
        Err(_) => client_region(client)?,
    };
    let aws = crate::key_cmd::KeyServiceArg::Aws;
    let ours = policy_merge::keyplane_statements(api, db_type, aws, &region).await?;
    let merged = policy_merge::merge(aws.policy_format(), &current, &ours, &what)?;
    policy_merge::report(aws.policy_format(), &merged);
    Ok((merged.document.clone(), merged))
}

pub(crate) fn read_policy(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading the policy from standard input")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading policy file {}", path.display()))
}

fn credentials_file(args: &KmsClientArgs) -> anyhow::Result<Option<Value>> {
    Ok(match std::fs::read_to_string(&args.credentials_file) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", args.credentials_file.display()))?,
        ),
        Err(_) => None,
    })
}

/// The AWS region these commands act in: the flag, the file's `kms.region`, else us-east-2.
fn client_region(args: &KmsClientArgs) -> anyhow::Result<String> {
    let file = credentials_file(args)?;
    Ok(args
        .region
        .clone()
        .or_else(|| {
            file.as_ref()
                .and_then(|f| f.pointer("/kms/region"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| DEFAULT_REGION.to_string()))
}

/// Resolves endpoint, region and keys from the flags, then the dev credentials file.
pub(crate) fn connect(args: &KmsClientArgs) -> anyhow::Result<aws_sdk_kms::Client> {
    let file = credentials_file(args)?;
    let from_file = |ptr: &str| {
        file.as_ref()
            .and_then(|f| f.pointer(ptr))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| from_file("/kms/endpoint"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let region = client_region(args)?;
    let (akid, secret) = match (
        args.access_key_id
            .clone()
            .or_else(|| from_file("/kms/customer/accessKeyId")),
        args.secret_access_key
            .as_ref()
            .map(|s| s.0.to_string())
            .or_else(|| from_file("/kms/customer/secretAccessKey")),
    ) {
        (Some(a), Some(s)) => (a, s),
        _ => bail!(
            "no KMS credentials: pass --access-key-id and --secret-access-key, or point --credentials-file at the dev-credentials.json written by `keyplane serve --dev` (looked at {})",
            args.credentials_file.display()
        ),
    };
    let mut conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(Credentials::new(akid, secret, None, None, "keyplane-cli"))
        .endpoint_url(&endpoint);
    if endpoint.starts_with("http://") {
        conf = conf.http_client(aws_smithy_http_client::Builder::new().build_http());
    } else {
        bail!(
            "only http:// endpoints are supported by this build (got {endpoint}); use the aws CLI for AWS itself"
        );
    }
    Ok(aws_sdk_kms::Client::from_conf(conf.build()))
}

/// AWS's error code and message instead of the SDK's generic "service error".
pub(crate) fn aws_error<E, R>(e: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some(code) => anyhow::anyhow!("{code}: {}", e.message().unwrap_or("")),
        None => anyhow::anyhow!(
            "calling KMS: {}",
            aws_sdk_kms::error::DisplayErrorContext(&e)
        ),
    }
}

fn metadata_json(m: &KeyMetadata) -> Value {
    json!({
        "AWSAccountId": m.aws_account_id(),
        "KeyId": m.key_id(),
        "Arn": m.arn(),
        "CreationDate": m.creation_date().map(|d| d.to_string()),
        "Enabled": m.enabled(),
        "Description": m.description(),
        "KeyUsage": m.key_usage().map(|u| u.as_str()),
        "KeyState": m.key_state().map(|s| s.as_str()),
        "DeletionDate": m.deletion_date().map(|d| d.to_string()),
        "PendingDeletionWindowInDays": m.pending_deletion_window_in_days(),
        "Origin": m.origin().map(|o| o.as_str()),
        "KeyManager": m.key_manager().map(|k| k.as_str()),
        "KeySpec": m.key_spec().map(|s| s.as_str()),
        "EncryptionAlgorithms": m.encryption_algorithms().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "MultiRegion": m.multi_region(),
    })
}
