//! What the operator configures: the region catalog and the platform's own cloud accounts.
//! The binary builds this from flags, `KEYPLANE_*` variables and the TOML file.
use keyplane_core::Provider;
use keyplane_core::regions::default_regions;
use std::collections::BTreeMap;

/// One of the platform's cloud accounts that customers trust in their key policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    /// AWS: the 12-digit account ID; GCP: the service account; Azure: the application ID.
    pub id: String,
    /// AWS only: the role name customers allow (`arn:aws:iam::<id>:role/<role>`).
    pub role: String,
    /// The regions this account serves; `None` means every region of the catalog.
    pub regions: Option<Vec<String>>,
}

impl ProviderAccount {
    pub fn serves(&self, region: &str) -> bool {
        self.regions
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == region))
    }

    /// The principal customers must name in their key policy.
    pub fn principal(&self, provider: Provider) -> String {
        match provider {
            Provider::Aws => format!("arn:aws:iam::{}:role/{}", self.id, self.role),
            _ => self.id.clone(),
        }
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
    /// How long KMS errors that say nothing about the key (timeouts, throttling, 5xx) may
    /// last before datacenters are suspended: a KMS outage is not a revocation.
    pub kms_grace_period: std::time::Duration,
    /// How long a plaintext data key stays in memory after it was last unwrapped.
    pub data_key_ttl: std::time::Duration,
    /// Page cache of each open datacenter file, in MiB. Pages are decrypted once, when read
    /// into it: a cache that holds a datacenter's working set makes its reads cost what a
    /// plain file's do, while a smaller one pays a decryption on every miss (a plain file
    /// would be served from the OS's cache instead). It fills only as pages are read.
    pub data_cache_mib: u32,
    /// How often the worker polls for work when idle.
    pub worker_poll: std::time::Duration,
    /// `serve --dev` only: the code of the sign-in link printed at start, and the dev token
    /// it signs in with.
    pub dev_signin: Option<DevSignin>,
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
/// Holds the pages of ~100,000 documents of 1 KB (a 135 MiB file), the size at which the Data
/// API's encryption overhead is measured (`benches/datapath.rs`).
pub const DEFAULT_DATA_CACHE_MIB: u32 = 256;

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
        let account = |id: &str| ProviderAccount {
            id: id.to_string(),
            role: DEFAULT_AWS_ROLE.to_string(),
            regions: None,
        };
        let provider_accounts = BTreeMap::from([
            (Provider::Aws, vec![account(DEFAULT_AWS_ACCOUNT)]),
            (
                Provider::Gcp,
                vec![account(
                    "keyplane-platform@keyplane-dev.iam.gserviceaccount.com",
                )],
            ),
            (
                Provider::Azure,
                vec![account("7f3c2a10-0000-4000-8000-000000000222")],
            ),
        ]);
        Config {
            catalog,
            provider_accounts,
            public_url: "http://127.0.0.1:8080".to_string(),
            platform_keys: BTreeMap::new(),
            data_dir: std::path::PathBuf::from("./keyplane-data"),
            key_check_interval: std::time::Duration::from_secs(60),
            kms_grace_period: std::time::Duration::from_secs(15 * 60),
            data_key_ttl: std::time::Duration::from_secs(5 * 60),
            data_cache_mib: DEFAULT_DATA_CACHE_MIB,
            worker_poll: std::time::Duration::from_millis(200),
            dev_signin: None,
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

    /// The Data API endpoint of a database's region, as clients reach it.
    pub fn data_endpoint(&self, database: uuid::Uuid, region: &str) -> String {
        format!(
            "{}/db/{database}-{region}",
            self.public_url.trim_end_matches('/')
        )
    }
}
