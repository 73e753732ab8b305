//! What the operator configures: the region catalog, the platform's own cloud accounts, the
//! per-organization quotas, the monitor's and data plane's timings, and what this process is
//! in a fleet (its role, its replica ID, its job leases). The binary builds this from flags,
//! `KEYPLANE_*` variables and the TOML file.
use keyplane_core::regions::default_regions;
use keyplane_core::{Provider, Quotas};
use std::collections::BTreeMap;

/// One of the platform's identities that customers trust in their key policies: the unit an
/// organization is assigned (and, for serverless databases, one database's identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    /// AWS: the 12-digit account ID; GCP: the service account's email; Azure: the application ID.
    pub id: String,
    /// AWS only: the role name customers allow (`arn:aws:iam::<id>:role/<role>`).
    pub role: String,
    /// The regions this account serves; `None` means every region of the catalog.
    pub regions: Option<Vec<String>>,
    /// The "Cloud Provider ID" customers are shown when it is not `id` itself: for GCP the
    /// platform's project that holds the service account (the original's provider ID).
    pub provider_id: Option<String>,
    /// Azure only: the object ID of the application's service principal, which role
    /// assignments name. It differs per tenant, so it is known only where the operator
    /// configured it (the built-in vault's tenant in dev mode); otherwise the help names the
    /// command that prints it.
    pub object_id: Option<String>,
}

impl ProviderAccount {
    /// An identity known by its ID alone (an Azure application).
    pub fn new(id: impl Into<String>) -> ProviderAccount {
        ProviderAccount {
            id: id.into(),
            role: String::new(),
            regions: None,
            provider_id: None,
            object_id: None,
        }
    }

    /// An AWS account whose role `role` acts on customers' keys.
    pub fn aws(id: impl Into<String>, role: impl Into<String>) -> ProviderAccount {
        ProviderAccount {
            role: role.into(),
            ..ProviderAccount::new(id)
        }
    }

    /// A service account of the platform's Google Cloud project `project`.
    pub fn gcp(service_account: impl Into<String>, project: impl Into<String>) -> ProviderAccount {
        ProviderAccount {
            provider_id: Some(project.into()),
            ..ProviderAccount::new(service_account)
        }
    }

    /// Restricted to `regions`.
    pub fn serving(mut self, regions: &[&str]) -> ProviderAccount {
        self.regions = Some(regions.iter().map(|r| r.to_string()).collect());
        self
    }

    pub fn serves(&self, region: &str) -> bool {
        self.regions
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == region))
    }

    /// The principal customers must name in their key policy.
    pub fn principal(&self, provider: Provider) -> String {
        match provider {
            Provider::Aws => format!("arn:aws:iam::{}:role/{}", self.id, self.role),
            Provider::Gcp => keyplane_core::policy::gcp::service_account_member(&self.id),
            Provider::Azure | Provider::Openbao => self.id.clone(),
        }
    }

    /// What the accounts route answers as `provider_id`.
    pub fn provider_id(&self) -> &str {
        self.provider_id.as_deref().unwrap_or(&self.id)
    }
}

/// The platform's own key in a region: what encrypts databases deployed where the
/// organization has no customer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformKey {
    pub key_id: String,
    /// The platform account that owns it and acts on it.
    pub account: String,
}

/// What one `keyplane serve` process does (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessRole {
    /// The control plane: the DevOps API, the portal and the job runner. It keeps no
    /// datacenter files: provisioning stores a datacenter's data key and stops there, and it
    /// answers the Data API with 503 (data nodes own the files: issue 11 part 2).
    Api,
    /// Everything in one process (the default): the control plane and the datacenters'
    /// files and Data API.
    #[default]
    All,
}

impl ProcessRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessRole::Api => "api",
            ProcessRole::All => "all",
        }
    }

    /// Whether this process creates, opens and serves datacenter files.
    pub fn holds_data_files(self) -> bool {
        match self {
            ProcessRole::Api => false,
            ProcessRole::All => true,
        }
    }
}

/// How long a job's lease lasts unless configured: the time a dead replica's job waits before
/// another one takes it over. The runner renews it every third of it.
pub const DEFAULT_JOB_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a portal session lasts after sign-in, whatever the activity.
pub const DEFAULT_PORTAL_SESSION_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(8 * 3600);

/// A process's replica ID when none is configured: the host, the process ID and random
/// digits, so that two processes never share one (leases are fenced by it) and the operator
/// can tell which one holds a job.
pub fn generate_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

#[derive(Debug, Clone)]
pub struct Config {
    pub catalog: BTreeMap<Provider, Vec<String>>,
    pub provider_accounts: BTreeMap<Provider, Vec<ProviderAccount>>,
    /// How clients reach this server, written into dev credentials and links.
    pub public_url: String,
    /// Platform keys by provider and region.
    pub platform_keys: BTreeMap<Provider, BTreeMap<String, PlatformKey>>,
    /// Where datacenter files live.
    pub data_dir: std::path::PathBuf,
    /// How often the key health monitor checks every in-use customer key.
    pub key_check_interval: std::time::Duration,
    /// How often the keys' own rotation facts are read to alert on an overdue rotation
    /// (`rotation_watch`); zero: never.
    pub key_rotation_check_interval: std::time::Duration,
    /// How long KMS errors that say nothing about the key (timeouts, throttling, 5xx) may
    /// last before datacenters are suspended: a KMS outage is not a revocation.
    pub kms_grace_period: std::time::Duration,
    /// The longest time an organization may choose to keep serving datacenters under a key
    /// that fails its check ("alert-only") before they are suspended.
    pub alert_only_max: std::time::Duration,
    /// How often each process reads the store's suspended datacenters, so a suspension or a
    /// revoke made by any process (or replica) is enforced by every one within this time.
    pub suspension_sync_interval: std::time::Duration,
    /// How long a plaintext data key stays in memory after it was unwrapped: the reaper closes
    /// its file within a tenth of this (at most 5 s) after, used or not.
    pub data_key_ttl: std::time::Duration,
    /// How long a datacenter keeps one data key before the scheduler rotates it (its file
    /// re-encrypted under a new data key); zero: only on request.
    pub data_key_rotation: std::time::Duration,
    /// Page cache of each open datacenter file, in MiB. Pages are decrypted once, when read
    /// into it: a cache that holds a datacenter's working set makes its reads cost what a
    /// plain file's do, while a smaller one pays a decryption on every miss (a plain file
    /// would be served from the OS's cache instead). It fills only as pages are read.
    pub data_cache_mib: u32,
    /// Most datacenter files open at once (each holds its plaintext data key and page cache);
    /// opening one more closes the least recently used.
    pub max_open_datacenters: usize,
    /// Key checks the monitor runs at once (each a DescribeKey per key and a Decrypt per
    /// datacenter, mostly waiting on the KMS).
    pub key_check_concurrency: usize,
    /// How often the worker polls for work when idle.
    pub worker_poll: std::time::Duration,
    /// The most databases, datacenters and tokens one organization may hold.
    pub quotas: Quotas,
    /// `serve --dev` only: the code of the sign-in link printed at start, and the dev token
    /// it signs in with.
    pub dev_signin: Option<DevSignin>,
    /// What this process does in the fleet.
    pub role: ProcessRole,
    /// This process's name in job leases; unique per process.
    pub replica_id: String,
    /// How long a claimed job stays this process's without a renewal.
    pub job_lease: std::time::Duration,
    /// True only when no other process runs jobs on this store (SQLite, its data dir locked
    /// by `keyplane serve`): the worker then resumes at start the jobs a crashed run left
    /// running, without waiting out their leases.
    pub sole_job_runner: bool,
    /// How long a portal session lasts after sign-in.
    pub portal_session_lifetime: std::time::Duration,
    /// `host:port` of development Key Vaults (the built-in one in dev mode) whose key IDs are
    /// accepted besides Azure's own hosts; empty in production.
    pub azure_dev_hosts: Vec<String>,
    /// Seals the logins customers give with their keys (OpenBao roles' credentials) in the
    /// store. Every process of a deployment holds the same one; None refuses such keys.
    pub sealing_key: Option<keyplane_core::SealingKey>,
    /// Webhook limits, retries and which targets are accepted.
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// The `--dev` portal sign-in link's secret and the token it stands for. Never printed by
/// `Debug`.
#[derive(Clone)]
pub struct DevSignin {
    pub code: String,
    pub token: String,
}

impl std::fmt::Debug for DevSignin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevSignin(<redacted>)")
    }
}

pub const DEFAULT_AWS_ACCOUNT: &str = "222222222222";
pub const DEFAULT_AWS_ROLE: &str = "creator";
/// The platform's Google Cloud project (the GCP "Cloud Provider ID") and its first service
/// account, as the built-in KMS knows them.
pub const DEFAULT_GCP_PROJECT: &str = "keyplane-dev";
pub const DEFAULT_GCP_SERVICE_ACCOUNT: &str =
    "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";
/// The role customers are told to make in their OpenBao for the platform, unless the
/// operator names another: its path is the OpenBao "provider ID".
pub const DEFAULT_OPENBAO_ROLE: &str = "auth/approle/role/keyplane";
/// Holds the pages of ~100,000 documents of 1 KB (a 135 MiB file), the size at which the Data
/// API's encryption overhead is measured (`benches/datapath.rs`).
pub const DEFAULT_DATA_CACHE_MIB: u32 = 256;
/// See [`Config::max_open_datacenters`]; measured by `benches/idle_memory.rs`.
pub const DEFAULT_MAX_OPEN_DATACENTERS: usize = 1000;
/// See [`Config::key_check_concurrency`]; measured by `benches/monitor.rs`.
pub const DEFAULT_KEY_CHECK_CONCURRENCY: usize = 64;

impl Default for Config {
    fn default() -> Self {
        let catalog = Provider::ALL
            .iter()
            .map(|p| {
                (
                    *p,
                    default_regions(*p).iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect();
        let provider_accounts = BTreeMap::from([
            (
                Provider::Aws,
                vec![ProviderAccount::aws(DEFAULT_AWS_ACCOUNT, DEFAULT_AWS_ROLE)],
            ),
            (
                Provider::Gcp,
                vec![ProviderAccount::gcp(
                    DEFAULT_GCP_SERVICE_ACCOUNT,
                    DEFAULT_GCP_PROJECT,
                )],
            ),
            (
                Provider::Azure,
                vec![ProviderAccount::new("7f3c2a10-0000-4000-8000-000000000222")],
            ),
            (
                Provider::Openbao,
                vec![ProviderAccount::new(DEFAULT_OPENBAO_ROLE)],
            ),
        ]);
        Config {
            catalog,
            provider_accounts,
            public_url: "http://127.0.0.1:8080".to_string(),
            platform_keys: BTreeMap::new(),
            data_dir: std::path::PathBuf::from("./keyplane-data"),
            key_check_interval: std::time::Duration::from_secs(60),
            key_rotation_check_interval: std::time::Duration::from_secs(6 * 3600),
            kms_grace_period: std::time::Duration::from_secs(15 * 60),
            alert_only_max: std::time::Duration::from_secs(24 * 3600),
            suspension_sync_interval: std::time::Duration::from_secs(1),
            data_key_ttl: std::time::Duration::from_secs(5 * 60),
            data_key_rotation: std::time::Duration::from_secs(30 * 24 * 3600),
            data_cache_mib: DEFAULT_DATA_CACHE_MIB,
            max_open_datacenters: DEFAULT_MAX_OPEN_DATACENTERS,
            key_check_concurrency: DEFAULT_KEY_CHECK_CONCURRENCY,
            worker_poll: std::time::Duration::from_millis(200),
            quotas: Quotas::default(),
            dev_signin: None,
            role: ProcessRole::default(),
            replica_id: generate_replica_id(),
            job_lease: DEFAULT_JOB_LEASE,
            sole_job_runner: false,
            portal_session_lifetime: DEFAULT_PORTAL_SESSION_LIFETIME,
            azure_dev_hosts: Vec::new(),
            sealing_key: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
        }
    }
}

impl Config {
    pub fn regions(&self, provider: Provider) -> &[String] {
        self.catalog
            .get(&provider)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn accounts(&self, provider: Provider) -> &[ProviderAccount] {
        self.provider_accounts
            .get(&provider)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn platform_key(&self, provider: Provider, region: &str) -> Option<&PlatformKey> {
        self.platform_keys
            .get(&provider)
            .and_then(|m| m.get(region))
    }

    pub fn account(&self, provider: Provider, id: &str) -> Option<&ProviderAccount> {
        self.accounts(provider).iter().find(|a| a.id == id)
    }

    /// The identity keyplane acts as with `account` of `provider` in `region`: for a
    /// datacenter's key, the monitor's checks and a key's status alike. An account no longer
    /// configured is taken as AWS's default role in that account, the principal keys
    /// registered with it were told to trust (elsewhere the account is the principal).
    pub fn identity(
        &self,
        provider: Provider,
        account: &str,
        region: &str,
    ) -> keyplane_kms::PlatformIdentity {
        let principal = match self.account(provider, account) {
            Some(a) => a.principal(provider),
            None if provider == Provider::Aws => {
                format!("arn:aws:iam::{account}:role/{DEFAULT_AWS_ROLE}")
            }
            // An OpenBao key's account is the role its customer named with the login.
            None => account.to_string(),
        };
        keyplane_kms::PlatformIdentity {
            provider,
            region: region.to_string(),
            account_id: account.to_string(),
            principal,
        }
    }

    /// The Data API endpoint of a database's region, as clients reach it.
    pub fn data_endpoint(&self, database: uuid::Uuid, region: &str) -> String {
        format!(
            "{}/db/{database}-{region}",
            self.public_url.trim_end_matches('/')
        )
    }
}
