//! Where each setting comes from: a flag wins over its `KEYPLANE_*` variable (clap reads
//! both), which wins over the TOML file (`--config`), which wins over the default.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::Provider;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `serve --role`: what the process does in a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleFlag {
    /// The DevOps API, the portal and the job runner; no datacenter files, no Data API.
    Api,
    /// A data node (not available yet: issue 11 part 2).
    Data,
    /// Everything in one process.
    #[default]
    All,
}

/// Options every command that touches the store takes.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, env = "KEYPLANE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where keyplane keeps its state (SQLite database, dev credentials, built-in KMS).
    #[arg(long, env = "KEYPLANE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL; default: SQLite in the data dir.
    #[arg(long, env = "KEYPLANE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the API [default: 127.0.0.1:8080].
    #[arg(long, env = "KEYPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Log format [default: human].
    #[arg(long, env = "KEYPLANE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// The URL clients use to reach the API [default: http://<listen>].
    #[arg(long, env = "KEYPLANE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Embedded defaults for trying keyplane: a bootstrap organization and token, and the
    /// built-in KMS on a second port.
    #[arg(long, env = "KEYPLANE_DEV")]
    pub dev: bool,
    /// Address of the built-in KMS in dev mode [default: 127.0.0.1:4599].
    #[arg(long, env = "KEYPLANE_KMS_LISTEN")]
    pub kms_listen: Option<SocketAddr>,
    /// Address of the built-in Azure Key Vault (HTTPS, dev CA) in dev mode; its key IDs name
    /// it, so keep it fixed across restarts [default: 127.0.0.1:4600].
    #[arg(long, env = "KEYPLANE_AZURE_LISTEN")]
    pub azure_listen: Option<SocketAddr>,
    /// Seconds between two key health checks [default: 60].
    #[arg(long, env = "KEYPLANE_KEY_CHECK_INTERVAL")]
    pub key_check_interval: Option<u64>,
    /// Seconds between two reads of the keys' own rotation facts, which alert on a rotation
    /// past due; 0 turns it off [default: 21600].
    #[arg(long, env = "KEYPLANE_KEY_ROTATION_CHECK_INTERVAL")]
    pub key_rotation_check_interval: Option<u64>,
    /// Seconds KMS errors that say nothing about the key may last before databases are
    /// suspended [default: 900].
    #[arg(long, env = "KEYPLANE_KMS_GRACE_PERIOD")]
    pub kms_grace_period: Option<u64>,
    /// The most seconds an organization may choose to keep serving databases under a failing
    /// key ("alert-only") before they are suspended [default: 86400].
    #[arg(long, env = "KEYPLANE_ALERT_ONLY_MAX")]
    pub alert_only_max: Option<u64>,
    /// Deliver webhooks over http and to loopback or private addresses: for tests and
    /// development only (`--dev` turns it on) [default: off].
    #[arg(long, env = "KEYPLANE_WEBHOOK_ALLOW_PRIVATE_TARGETS")]
    pub webhook_allow_private_targets: bool,
    /// Milliseconds before a failed webhook delivery is retried; it doubles after each
    /// further failure, up to an hour [default: 10000].
    #[arg(long, env = "KEYPLANE_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Attempts before a webhook delivery is given up [default: 18].
    #[arg(long, env = "KEYPLANE_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Webhooks one organization may have [default: 10].
    #[arg(long, env = "KEYPLANE_MAX_WEBHOOKS")]
    pub max_webhooks: Option<u32>,
    /// Milliseconds between two reads of the store's suspended datacenters: the longest a
    /// suspension or revoke made by another process takes to be enforced by this one
    /// [default: 1000].
    #[arg(long, env = "KEYPLANE_SUSPENSION_SYNC_MS")]
    pub suspension_sync_ms: Option<u64>,
    /// Seconds a plaintext data key stays in memory after it was unwrapped; its file is closed
    /// then, used or not [default: 300].
    #[arg(long, env = "KEYPLANE_DATA_KEY_TTL")]
    pub data_key_ttl: Option<u64>,
    /// Seconds between two rotations of each datacenter's data key (its file re-encrypted
    /// under a new one, online); 0 turns the schedule off [default: 2592000, 30 days].
    #[arg(long, env = "KEYPLANE_DATA_KEY_ROTATION")]
    pub data_key_rotation: Option<u64>,
    /// MiB of decrypted pages cached per open datacenter file [default: 256].
    #[arg(long, env = "KEYPLANE_DATA_CACHE_MIB")]
    pub data_cache_mib: Option<u32>,
    /// What this process does: `all` (everything), `api` (DevOps API, portal and jobs, no
    /// datacenter files and no Data API; for replicas on one PostgreSQL), `data` (data nodes:
    /// not yet) [default: all].
    #[arg(long, env = "KEYPLANE_ROLE", value_enum)]
    pub role: Option<RoleFlag>,
    /// Seconds a claimed job stays this process's without a renewal: how long a job of a
    /// replica that died waits before another takes it over [default: 30].
    #[arg(long, env = "KEYPLANE_JOB_LEASE")]
    pub job_lease: Option<u64>,
    /// Most datacenter files open at once, each with its data key and page cache; the least
    /// recently used is closed first [default: 1000].
    #[arg(long, env = "KEYPLANE_MAX_OPEN_DATACENTERS")]
    pub max_open_datacenters: Option<usize>,
    /// Key checks the key health monitor runs at once [default: 64].
    #[arg(long, env = "KEYPLANE_KEY_CHECK_CONCURRENCY")]
    pub key_check_concurrency: Option<usize>,
    /// Databases (not TERMINATED) one organization may hold [default: 50].
    #[arg(long, env = "KEYPLANE_MAX_DATABASES")]
    pub max_databases: Option<u32>,
    /// Datacenters (regions of databases, not TERMINATED) one organization may hold
    /// [default: 150].
    #[arg(long, env = "KEYPLANE_MAX_DATACENTERS")]
    pub max_datacenters: Option<u32>,
    /// Unrevoked application tokens one organization may create through the API
    /// [default: 100].
    #[arg(long, env = "KEYPLANE_MAX_TOKENS")]
    pub max_tokens: Option<u32>,
    /// The key that seals the credentials customers give with OpenBao keys (64 hex digits);
    /// every process of one store needs the same one [default: <data-dir>/sealing.key,
    /// created owner-only on first start].
    #[arg(long, env = "KEYPLANE_SEALING_KEY_FILE")]
    pub sealing_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub public_url: Option<String>,
    pub dev: Option<bool>,
    pub kms_listen: Option<SocketAddr>,
    pub azure_listen: Option<SocketAddr>,
    /// Replaces the region catalog of each provider named.
    pub regions: Option<BTreeMap<Provider, Vec<String>>>,
    /// Replaces the platform accounts of each provider named.
    pub provider_accounts: Option<BTreeMap<Provider, Vec<FileAccount>>>,
    /// How keyplane reaches AWS KMS (or a compatible server) as the platform's accounts.
    pub aws: Option<FileAws>,
    /// How keyplane reaches Google Cloud KMS (or a compatible server) as the platform's
    /// service accounts.
    pub gcp: Option<FileGcp>,
    /// How keyplane reaches Azure Key Vault as the platform's Entra ID applications.
    pub azure: Option<FileAzure>,
    /// See `serve --sealing-key-file`.
    pub sealing_key_file: Option<PathBuf>,
    /// The platform's own keys per provider and region, for databases deployed where the
    /// organization has no customer key: `[platform_keys.aws.us-east-2] key_id = "arn:…"`,
    /// `account = "222222222222"`.
    pub platform_keys: Option<BTreeMap<Provider, BTreeMap<String, FilePlatformKey>>>,
    /// Seconds between two key health checks (default 60).
    pub key_check_interval_secs: Option<u64>,
    /// Seconds between two reads of the keys' rotation facts; 0: never (default 21600).
    pub key_rotation_check_interval_secs: Option<u64>,
    /// Seconds KMS errors that say nothing about the key may last before suspending (default 900).
    pub kms_grace_period_secs: Option<u64>,
    /// The most seconds an organization may choose alert-only for (default 86400).
    pub alert_only_max_secs: Option<u64>,
    /// See `serve --webhook-allow-private-targets` (default false; true with `dev`).
    pub webhook_allow_private_targets: Option<bool>,
    /// See `serve --webhook-retry-base-ms` (default 10000).
    pub webhook_retry_base_ms: Option<u64>,
    /// See `serve --webhook-max-attempts` (default 18).
    pub webhook_max_attempts: Option<u32>,
    /// See `serve --max-webhooks` (default 10).
    pub max_webhooks: Option<u32>,
    /// Milliseconds between two reads of the store's suspended datacenters (default 1000).
    pub suspension_sync_ms: Option<u64>,
    /// Seconds a plaintext data key stays in memory (default 300).
    pub data_key_ttl_secs: Option<u64>,
    /// Seconds between two rotations of each datacenter's data key; 0: never (default 30 days).
    pub data_key_rotation_secs: Option<u64>,
    /// MiB of decrypted pages cached per open datacenter file (default 256).
    pub data_cache_mib: Option<u32>,
    /// `all`, `api` or `data` (default all).
    pub role: Option<RoleFlag>,
    /// Seconds a claimed job stays one process's without a renewal (default 30).
    pub job_lease_secs: Option<u64>,
    /// Most datacenter files open at once (default 1000).
    pub max_open_datacenters: Option<usize>,
    /// Key checks the monitor runs at once (default 64).
    pub key_check_concurrency: Option<usize>,
    /// Databases one organization may hold (default 50).
    pub max_databases: Option<u32>,
    /// Datacenters one organization may hold (default 150).
    pub max_datacenters: Option<u32>,
    /// Unrevoked application tokens one organization may create through the API (default 100).
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FilePlatformKey {
    pub key_id: String,
    pub account: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileAws {
    /// keyplane's built-in KMS, moto, or any compatible server; absent: real AWS.
    pub endpoint_url: Option<String>,
    /// On real AWS: the default credential chain, then sts:AssumeRole into each account's role.
    #[serde(default)]
    pub assume_role: bool,
    /// The role name grants for persistent resources are made to.
    pub volume_role: Option<String>,
    /// Static credentials per platform account ID.
    #[serde(default)]
    pub credentials: BTreeMap<String, FileAwsCredentials>,
    pub max_attempts: Option<u32>,
    pub attempt_timeout_ms: Option<u64>,
    pub operation_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileGcp {
    /// keyplane's built-in KMS or any server speaking Cloud KMS REST v1; absent: Cloud KMS.
    pub endpoint: Option<String>,
    /// How to authenticate as each platform service account, by its email.
    #[serde(default)]
    pub credentials: BTreeMap<String, FileGcpCredentials>,
}

/// One service account's credentials: a key file (`gcloud iam service-accounts keys
/// create`), or a bearer token from a token source outside keyplane, never both.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileGcpCredentials {
    pub key_file: Option<PathBuf>,
    pub token: Option<String>,
}

impl std::fmt::Debug for FileGcpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileGcpCredentials")
            .field("key_file", &self.key_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileAzure {
    /// PEM certificates trusted besides the system roots (a vault behind a private CA).
    pub ca_file: Option<PathBuf>,
    /// `host:port` of development vaults whose key IDs are accepted besides Azure's hosts.
    #[serde(default)]
    pub dev_hosts: Vec<String>,
    /// How to authenticate as each platform application, by its client ID.
    #[serde(default)]
    pub credentials: BTreeMap<String, FileAzureCredentials>,
}

/// One application's credentials: a client secret or a certificate of its tenant (with the
/// token endpoint's host for another cloud), or a bearer token from a token source outside
/// keyplane.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileAzureCredentials {
    pub tenant_id: Option<String>,
    pub client_secret: Option<String>,
    /// A PEM file with the certificate registered on the application and its unencrypted RSA
    /// private key (what `az ad sp create-for-rbac --create-cert` writes).
    pub certificate_file: Option<PathBuf>,
    pub authority_host: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for FileAzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAzureCredentials")
            .field("tenant_id", &self.tenant_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("certificate_file", &self.certificate_file)
            .field("authority_host", &self.authority_host)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileAwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for FileAwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccount {
    /// AWS: the account ID; GCP: the service account's email; Azure: the application ID.
    pub id: String,
    pub role: Option<String>,
    pub regions: Option<Vec<String>>,
    /// GCP: the platform's project holding the service account, shown to customers as the
    /// Cloud Provider ID (default: the project in the service account's email).
    pub project: Option<String>,
    /// Azure: the object ID of the application's service principal in the customers' tenant,
    /// when it is one tenant (role assignments name it).
    pub object_id: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The settings of a command after merging every source.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub listen: SocketAddr,
    pub kms_listen: SocketAddr,
    pub azure_listen: SocketAddr,
    pub log_format: LogFormat,
    pub dev: bool,
    /// As asked for; `config.role` holds what the application runs as.
    pub role: RoleFlag,
    pub config: Config,
    pub aws: FileAws,
    pub gcp: FileGcp,
    pub azure: FileAzure,
    /// The operator's sealing key file; None: the data directory's.
    pub sealing_key_file: Option<PathBuf>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_KMS_LISTEN: &str = "127.0.0.1:4599";
pub const DEFAULT_AZURE_LISTEN: &str = "127.0.0.1:4600";

pub fn resolve(store: &StoreArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Resolved> {
    let file = FileConfig::load(store.config.as_deref())?;
    let data_dir = store
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./keyplane-data"));
    let database_url = store
        .database_url
        .clone()
        .or(file.database_url)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("keyplane.db").display()));
    let listen = serve
        .and_then(|s| s.listen)
        .or(file.listen)
        .map_or_else(|| DEFAULT_LISTEN.parse(), Ok)?;
    let kms_listen = serve
        .and_then(|s| s.kms_listen)
        .or(file.kms_listen)
        .map_or_else(|| DEFAULT_KMS_LISTEN.parse(), Ok)?;
    let azure_listen = serve
        .and_then(|s| s.azure_listen)
        .or(file.azure_listen)
        .map_or_else(|| DEFAULT_AZURE_LISTEN.parse(), Ok)?;
    let log_format = serve
        .and_then(|s| s.log_format)
        .or(file.log_format)
        .unwrap_or_default();
    let dev = serve.is_some_and(|s| s.dev) || file.dev.unwrap_or(false);
    let aws = file.aws.unwrap_or_default();
    let gcp = file.gcp.unwrap_or_default();
    let azure = file.azure.unwrap_or_default();
    let sealing_key_file = serve
        .and_then(|s| s.sealing_key_file.clone())
        .or(file.sealing_key_file);

    let mut config = Config::default();
    if let Some(regions) = file.regions {
        for (p, list) in regions {
            config.catalog.insert(p, list);
        }
    }
    if let Some(accounts) = file.provider_accounts {
        for (p, list) in accounts {
            let accounts = list
                .into_iter()
                .map(|a| ProviderAccount {
                    provider_id: match p {
                        Provider::Gcp => a.project.or_else(|| gcp_project_of(&a.id)),
                        _ => a.project,
                    },
                    id: a.id,
                    role: a
                        .role
                        .unwrap_or_else(|| keyplane_app::config::DEFAULT_AWS_ROLE.into()),
                    regions: a.regions,
                    object_id: a.object_id,
                })
                .collect();
            config.provider_accounts.insert(p, accounts);
        }
    } else if dev {
        // Dev mode knows several platform identities per cloud, so the serverless rule (one
        // provider ID per serverless database) can be tried: `POST …/accounts` assigns more.
        config.provider_accounts = dev_provider_accounts();
    }
    validate_accounts(&config)?;
    if let Some(keys) = file.platform_keys {
        for (p, by_region) in keys {
            let m = by_region
                .into_iter()
                .map(|(r, k)| {
                    (
                        r,
                        keyplane_app::PlatformKey {
                            key_id: k.key_id,
                            account: k.account,
                        },
                    )
                })
                .collect();
            config.platform_keys.insert(p, m);
        }
    }
    config.azure_dev_hosts = azure.dev_hosts.clone();
    config.data_dir = data_dir.clone();
    let secs = |flag: Option<u64>, file: Option<u64>, default: u64| {
        std::time::Duration::from_secs(flag.or(file).unwrap_or(default).max(1))
    };
    config.key_check_interval = secs(
        serve.and_then(|s| s.key_check_interval),
        file.key_check_interval_secs,
        60,
    );
    config.kms_grace_period = secs(
        serve.and_then(|s| s.kms_grace_period),
        file.kms_grace_period_secs,
        900,
    );
    config.alert_only_max = secs(
        serve.and_then(|s| s.alert_only_max),
        file.alert_only_max_secs,
        86400,
    );
    let hooks = &mut config.webhooks;
    hooks.allow_private_targets = dev
        || serve.is_some_and(|s| s.webhook_allow_private_targets)
        || file.webhook_allow_private_targets.unwrap_or(false);
    if let Some(ms) = serve
        .and_then(|s| s.webhook_retry_base_ms)
        .or(file.webhook_retry_base_ms)
    {
        hooks.retry_base = std::time::Duration::from_millis(ms.max(10));
    }
    if let Some(n) = serve
        .and_then(|s| s.webhook_max_attempts)
        .or(file.webhook_max_attempts)
    {
        hooks.max_attempts = n.max(1);
    }
    if let Some(n) = serve.and_then(|s| s.max_webhooks).or(file.max_webhooks) {
        hooks.max_per_org = n;
    }
    config.suspension_sync_interval = std::time::Duration::from_millis(
        serve
            .and_then(|s| s.suspension_sync_ms)
            .or(file.suspension_sync_ms)
            .unwrap_or(1000)
            .max(50),
    );
    config.data_key_ttl = secs(
        serve.and_then(|s| s.data_key_ttl),
        file.data_key_ttl_secs,
        300,
    );
    config.key_rotation_check_interval = std::time::Duration::from_secs(
        serve
            .and_then(|s| s.key_rotation_check_interval)
            .or(file.key_rotation_check_interval_secs)
            .unwrap_or(6 * 3600),
    );
    config.data_key_rotation = std::time::Duration::from_secs(
        serve
            .and_then(|s| s.data_key_rotation)
            .or(file.data_key_rotation_secs)
            .unwrap_or(30 * 24 * 3600),
    );
    config.data_cache_mib = serve
        .and_then(|s| s.data_cache_mib)
        .or(file.data_cache_mib)
        .unwrap_or(keyplane_app::config::DEFAULT_DATA_CACHE_MIB)
        .max(1);
    config.max_open_datacenters = serve
        .and_then(|s| s.max_open_datacenters)
        .or(file.max_open_datacenters)
        .unwrap_or(keyplane_app::config::DEFAULT_MAX_OPEN_DATACENTERS)
        .max(1);
    config.key_check_concurrency = serve
        .and_then(|s| s.key_check_concurrency)
        .or(file.key_check_concurrency)
        .unwrap_or(keyplane_app::config::DEFAULT_KEY_CHECK_CONCURRENCY)
        .max(1);
    config.quotas = keyplane_core::Quotas {
        databases: serve
            .and_then(|s| s.max_databases)
            .or(file.max_databases)
            .unwrap_or(keyplane_core::Quotas::DEFAULT_DATABASES),
        datacenters: serve
            .and_then(|s| s.max_datacenters)
            .or(file.max_datacenters)
            .unwrap_or(keyplane_core::Quotas::DEFAULT_DATACENTERS),
        tokens: serve
            .and_then(|s| s.max_tokens)
            .or(file.max_tokens)
            .unwrap_or(keyplane_core::Quotas::DEFAULT_TOKENS),
    };
    config.public_url = serve
        .and_then(|s| s.public_url.clone())
        .or(file.public_url)
        .unwrap_or_else(|| format!("http://{listen}"));
    let role = serve.and_then(|s| s.role).or(file.role).unwrap_or_default();
    config.role = match role {
        RoleFlag::Api => keyplane_app::ProcessRole::Api,
        // Refused by `serve` before anything starts; admin commands ignore the role.
        RoleFlag::All | RoleFlag::Data => keyplane_app::ProcessRole::All,
    };
    config.job_lease = secs(
        serve.and_then(|s| s.job_lease),
        file.job_lease_secs,
        keyplane_app::config::DEFAULT_JOB_LEASE.as_secs(),
    );
    Ok(Resolved {
        data_dir,
        database_url,
        listen,
        kms_listen,
        azure_listen,
        log_format,
        dev,
        role,
        config,
        aws,
        gcp,
        azure,
        sealing_key_file,
    })
}

/// `name@PROJECT.iam.gserviceaccount.com` → `PROJECT`.
fn gcp_project_of(email: &str) -> Option<String> {
    let (_, domain) = email.split_once('@')?;
    domain
        .strip_suffix(".iam.gserviceaccount.com")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// How many platform identities per cloud `serve --dev` knows.
pub const DEV_IDENTITIES: usize = 4;

/// Dev mode's platform identities: AWS accounts 222222222222…222222222225 (role `creator`),
/// and service accounts `keyplane-platform[-N]@keyplane-dev.iam.gserviceaccount.com`; the
/// first of each is the built-in KMS's default platform identity.
fn dev_provider_accounts() -> BTreeMap<Provider, Vec<ProviderAccount>> {
    use keyplane_app::config::{DEFAULT_AWS_ROLE, DEFAULT_GCP_PROJECT};
    let mut out = Config::default().provider_accounts;
    out.insert(
        Provider::Aws,
        (0..DEV_IDENTITIES)
            .map(|i| {
                ProviderAccount::aws(
                    format!("{}", 222_222_222_222u64 + i as u64),
                    DEFAULT_AWS_ROLE,
                )
            })
            .collect(),
    );
    out.insert(
        Provider::Gcp,
        (0..DEV_IDENTITIES)
            .map(|i| {
                let name = match i {
                    0 => "keyplane-platform".to_string(),
                    n => format!("keyplane-platform-{}", n + 1),
                };
                ProviderAccount::gcp(
                    format!("{name}@{DEFAULT_GCP_PROJECT}.iam.gserviceaccount.com"),
                    DEFAULT_GCP_PROJECT,
                )
            })
            .collect(),
    );
    out
}

/// A misconfigured account would be handed to customers, who would paste it into key
/// policies: refuse to start instead.
fn validate_accounts(config: &Config) -> anyhow::Result<()> {
    for (provider, accounts) in &config.provider_accounts {
        for a in accounts {
            if *provider == Provider::Gcp && !a.id.contains('@') {
                anyhow::bail!(
                    "provider_accounts.gcp: {:?} must be a service account's email",
                    a.id
                );
            }
            if *provider == Provider::Aws
                && !(a.id.len() == 12 && a.id.bytes().all(|b| b.is_ascii_digit()))
            {
                anyhow::bail!(
                    "provider_accounts.aws: account id {:?} must be 12 digits",
                    a.id
                );
            }
            if let Some(regions) = &a.regions {
                for r in regions {
                    if !config.regions(*provider).contains(r) {
                        anyhow::bail!(
                            "provider_accounts.{provider}: account {} names region {r:?}, which is not in the {provider} catalog",
                            a.id
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            r#"
listen = "127.0.0.1:9000"
data_dir = "/tmp/from-file"
log_format = "json"
[regions]
aws = ["us-east-2", "eu-west-1"]
[[provider_accounts.aws]]
id = "333333333333"
regions = ["us-east-2"]
"#
        )
        .unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            data_dir: None,
            database_url: None,
        };
        let serve = ServeArgs {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        };
        let r = resolve(&store, Some(&serve)).unwrap();
        assert_eq!(r.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(r.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(r.database_url, "sqlite:///tmp/from-file/keyplane.db");
        assert_eq!(r.log_format, LogFormat::Json);
        assert_eq!(r.config.regions(Provider::Aws), ["us-east-2", "eu-west-1"]);
        assert_eq!(
            r.config.accounts(Provider::Aws)[0].principal(Provider::Aws),
            "arn:aws:iam::333333333333:role/creator"
        );
        assert_eq!(r.config.public_url, "http://127.0.0.1:7000");
    }

    #[test]
    fn quotas_from_flag_file_or_default() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "max_databases = 7\nmax_tokens = 3").unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let q = resolve(&store, None).unwrap().config.quotas;
        assert_eq!((q.databases, q.datacenters, q.tokens), (7, 150, 3));
        let serve = ServeArgs {
            max_databases: Some(9),
            max_datacenters: Some(20),
            ..Default::default()
        };
        let q = resolve(&store, Some(&serve)).unwrap().config.quotas;
        assert_eq!((q.databases, q.datacenters, q.tokens), (9, 20, 3));
        let q = resolve(&StoreArgs::default(), None).unwrap().config.quotas;
        assert_eq!(q, keyplane_core::Quotas::default());
    }

    #[test]
    fn data_cache_from_flag_file_or_default() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "data_cache_mib = 512").unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(resolve(&store, None).unwrap().config.data_cache_mib, 512);
        let serve = ServeArgs {
            data_cache_mib: Some(64),
            ..Default::default()
        };
        assert_eq!(
            resolve(&store, Some(&serve)).unwrap().config.data_cache_mib,
            64
        );
        let none = StoreArgs {
            data_dir: Some(std::env::temp_dir()),
            ..Default::default()
        };
        assert_eq!(resolve(&none, None).unwrap().config.data_cache_mib, 256);
    }

    #[test]
    fn role_and_job_lease_from_flag_file_or_default() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "role = \"api\"\njob_lease_secs = 7").unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let r = resolve(&store, None).unwrap();
        assert_eq!(r.role, RoleFlag::Api);
        assert_eq!(r.config.role, keyplane_app::ProcessRole::Api);
        assert_eq!(r.config.job_lease, std::time::Duration::from_secs(7));
        let serve = ServeArgs {
            role: Some(RoleFlag::All),
            job_lease: Some(3),
            ..Default::default()
        };
        let r = resolve(&store, Some(&serve)).unwrap();
        assert_eq!(r.config.role, keyplane_app::ProcessRole::All);
        assert_eq!(r.config.job_lease, std::time::Duration::from_secs(3));
        let none = StoreArgs {
            data_dir: Some(std::env::temp_dir()),
            ..Default::default()
        };
        let r = resolve(&none, None).unwrap();
        assert_eq!(r.role, RoleFlag::All);
        assert_eq!(r.config.job_lease, keyplane_app::config::DEFAULT_JOB_LEASE);
    }

    #[test]
    fn open_files_cap_and_check_concurrency_from_flag_file_or_default() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "max_open_datacenters = 50\nkey_check_concurrency = 8").unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let c = resolve(&store, None).unwrap().config;
        assert_eq!((c.max_open_datacenters, c.key_check_concurrency), (50, 8));
        let serve = ServeArgs {
            max_open_datacenters: Some(7),
            key_check_concurrency: Some(3),
            ..Default::default()
        };
        let c = resolve(&store, Some(&serve)).unwrap().config;
        assert_eq!((c.max_open_datacenters, c.key_check_concurrency), (7, 3));
        let none = StoreArgs {
            data_dir: Some(std::env::temp_dir()),
            ..Default::default()
        };
        let c = resolve(&none, None).unwrap().config;
        assert_eq!(
            (c.max_open_datacenters, c.key_check_concurrency),
            (1000, 64)
        );
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[[provider_accounts.aws]]\nid = \"12\"").unwrap();
        let store = StoreArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let err = resolve(&store, None).unwrap_err().to_string();
        assert!(err.contains("must be 12 digits"), "{err}");

        let mut g = tempfile::NamedTempFile::new().unwrap();
        writeln!(g, "lisen = \"x\"").unwrap();
        let store = StoreArgs {
            config: Some(g.path().to_path_buf()),
            ..Default::default()
        };
        let err = format!("{:#}", resolve(&store, None).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }
}
