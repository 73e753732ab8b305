//! The data side of a datacenter: its SQLCipher file, opened with a data key that exists
//! only in memory. The key is unwrapped by the customer's (or platform's) KMS key and kept
//! for at most the configured TTL: after that the next access asks the KMS again, so a
//! disabled or revoked key makes the data unreadable within that bound, even between two
//! runs of the key health monitor, and a reaper closes files whose key expired even when
//! nothing touches them again (`open`). At most `max_open_datacenters` files are open, the
//! least recently used closed first. `order` keeps a database's regions equal (one ordered
//! write per database, recorded in its primary and copied by `_id` to the others, completed
//! after a crash); `access` is the Data API's use of it: an endpoint resolved for a requester,
//! reads on its region and writes to every live region.
pub mod access;
mod open;
pub(crate) mod order;
#[cfg(feature = "bench-plain")]
mod plain;
mod rotation;
mod suspensions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_core::DatabaseStatus;
use keyplane_docstore::{DataKey, DocStore};
use keyplane_kms::{EncryptionContext, KeyProvider, KmsConnector, KmsError, PlatformIdentity};
use keyplane_store::{Datacenter, DynStore};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::metrics::{Counter, Counters, MetricKind};
use open::{OpenFiles, close_all};
use order::DatabaseOrder;
use rotation::Rotations;
pub use rotation::{RotatedDataKey, RotationProgress};
use suspensions::Suspensions;

pub struct DataPlane {
    store: DynStore,
    kms: Arc<dyn KmsConnector>,
    config: Arc<Config>,
    counters: Arc<Counters>,
    /// One lock per datacenter, held while its store is opened, so that concurrent first
    /// accesses unwrap the key once.
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The open stores (and so the plaintext keys in memory), the only record of them.
    open: OpenFiles,
    /// Suspended datacenters and why; checked before every access.
    suspended: Suspensions,
    /// Per database: the region lock and the order of its writes (`order`).
    databases: std::sync::Mutex<HashMap<uuid::Uuid, Arc<DatabaseOrder>>>,
    /// The data-key rotations running in this process (`rotation`).
    rotations: Rotations,
    /// Datacenters served from a plain SQLite file, for the benchmark's baseline only.
    #[cfg(feature = "bench-plain")]
    plain_for_benchmark: std::sync::RwLock<std::collections::HashSet<String>>,
}

/// The context every data key of a datacenter is bound to: visible to the customer's
/// policy conditions and CloudTrail, and it keeps a wrapped key from being replayed for
/// another datacenter.
pub fn datacenter_context(dc: &Datacenter) -> EncryptionContext {
    EncryptionContext::from([
        ("organization".to_string(), dc.org_id.to_string()),
        ("database".to_string(), dc.database_id.to_string()),
        ("datacenter".to_string(), dc.id.clone()),
    ])
}

fn task_error(e: tokio::task::JoinError) -> AppError {
    AppError::internal(e)
}

/// A file operation's failure, naming the file.
fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> AppError {
    AppError::internal(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

impl DataPlane {
    pub fn new(
        store: DynStore,
        kms: Arc<dyn KmsConnector>,
        config: Arc<Config>,
        counters: Arc<Counters>,
    ) -> DataPlane {
        DataPlane {
            store,
            kms,
            config,
            counters,
            opening: Mutex::new(HashMap::new()),
            open: OpenFiles::new(),
            suspended: Suspensions::default(),
            databases: std::sync::Mutex::new(HashMap::new()),
            rotations: Rotations::default(),
            #[cfg(feature = "bench-plain")]
            plain_for_benchmark: std::sync::RwLock::new(std::collections::HashSet::new()),
        }
    }

    /// KMS calls made to unwrap data keys since start (for the benchmark and tests).
    pub fn kms_calls(&self) -> u64 {
        self.counters.data_key_unwraps()
    }

    pub fn file(&self, dc_id: &str) -> PathBuf {
        self.config
            .data_dir
            .join("datacenters")
            .join(format!("{dc_id}.db"))
    }

    /// The identity that acts on the datacenter's key.
    pub fn identity(&self, dc: &Datacenter) -> PlatformIdentity {
        self.config
            .identity(dc.provider, &dc.provider_account, &dc.region)
    }

    /// A provider acting on the datacenter's key as its identity (with the key's login,
    /// where its service takes one).
    pub async fn key_provider(&self, dc: &Datacenter) -> Result<Arc<dyn KeyProvider>, KmsError> {
        self.provider_for(&self.identity(dc), dc.org_id, &dc.key_id)
            .await
    }

    /// A provider acting on the organization's `key_id` as `identity`.
    pub async fn provider_for(
        &self,
        identity: &PlatformIdentity,
        org: uuid::Uuid,
        key_id: &str,
    ) -> Result<Arc<dyn KeyProvider>, KmsError> {
        crate::logins::connect(
            &self.store,
            self.kms.as_ref(),
            &self.config,
            identity,
            org,
            key_id,
        )
        .await
    }

    /// Unwraps the datacenter's data key with one KMS Decrypt.
    pub async fn unwrap(&self, dc: &Datacenter) -> AppResult<DataKey> {
        let wrapped = dc.wrapped_data_key.as_ref().ok_or_else(|| {
            AppError::DatacenterUnavailable(format!("datacenter {} has no data key yet", dc.id))
        })?;
        let kms = self.key_provider(dc).await?;
        self.unwrap_with(kms.as_ref(), dc, wrapped).await
    }

    /// Unwraps `wrapped`, a data key of the datacenter (of record or a rotation's), through a
    /// provider the caller already holds: one KMS Decrypt, counted.
    pub(crate) async fn unwrap_with(
        &self,
        kms: &dyn KeyProvider,
        dc: &Datacenter,
        wrapped: &[u8],
    ) -> AppResult<DataKey> {
        self.counters.data_key_unwrap();
        let plain = kms
            .decrypt(&dc.key_id, wrapped, &datacenter_context(dc))
            .await?;
        Ok(DataKey::from_slice(&plain)?)
    }

    /// The database's region lock: writes share it, adding a region takes it alone while it
    /// copies the data and turns ACTIVE, so no acknowledged write misses the new region.
    pub async fn write_lock(&self, database: &uuid::Uuid) -> Arc<tokio::sync::RwLock<()>> {
        self.order(database).regions.clone()
    }

    pub(crate) fn order(&self, database: &uuid::Uuid) -> Arc<DatabaseOrder> {
        let mut map = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(*database).or_default().clone()
    }

    pub fn suspend(&self, dc_id: &str, message: &str) {
        self.suspended.suspend(dc_id, message);
    }

    pub fn resume(&self, dc_id: &str) {
        self.suspended.resume(dc_id);
    }

    /// Makes this process refuse what the store says is suspended, whichever process
    /// suspended it (another replica's monitor, a revoke handled elsewhere), and serve again
    /// what it resumed; a datacenter newly suspended here has its open file and key dropped
    /// at once, and so has one another process terminated (shredded) lately. Returns how many
    /// were newly suspended.
    pub async fn sync_suspensions(&self) -> AppResult<usize> {
        let read_at = Instant::now();
        let suspended = self.store.suspended_datacenters().await?;
        let added = self.suspended.sync(&suspended, read_at);
        for id in &added {
            self.forget(id).await;
        }
        // Lately: within a key's TTL (after which the reaper has closed it anyway) and a sync.
        let window = self.config.data_key_ttl + self.config.suspension_sync_interval;
        let since = chrono::Duration::from_std(window)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        for id in self.store.terminated_since(since).await? {
            if self.open.contains(&id) {
                self.forget(&id).await;
                tracing::info!(datacenter = %id, "dropped a datacenter terminated elsewhere");
            }
        }
        if !added.is_empty() {
            tracing::info!(
                datacenters = added.len(),
                "suspended here as the store says"
            );
        }
        Ok(added.len())
    }

    /// Drops the open file and the key it holds at once.
    pub async fn forget(&self, dc_id: &str) {
        let slot = self.opening.lock().await.remove(dc_id);
        // Wait out an open in progress first, so that it cannot put its store back after this.
        let _opening = match &slot {
            Some(slot) => Some(slot.lock().await),
            None => None,
        };
        let closing = self.open.remove(dc_id).into_iter().collect();
        close_all(closing).await;
    }

    /// Plaintext data keys in memory now: encrypted datacenter files open anywhere in the
    /// process (in the cache, or still held by a request finishing with one).
    pub fn held_data_keys(&self) -> usize {
        self.open.held_keys()
    }

    /// Datacenter files in the cache of open files.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// What the data plane holds now, read when asked (a stored copy would lag a store that an
    /// in-flight request drops after the last close).
    pub fn gauges(&self) -> Vec<Counter> {
        let gauge = |name, help, value: usize| Counter {
            name,
            help,
            kind: MetricKind::Gauge,
            value: value as u64,
        };
        vec![
            gauge(
                "keyplane_data_keys_held",
                "Plaintext data keys in memory (encrypted datacenter files open anywhere in the process).",
                self.open.held_keys(),
            ),
            gauge(
                "keyplane_open_datacenter_files",
                "Datacenter files in the cache of open files.",
                self.open.len(),
            ),
        ]
    }

    /// How often the reaper looks for expired keys: a tenth of the TTL, between 50 ms and 5 s,
    /// so a key outlives its TTL by at most that.
    pub fn reaper_period(&self) -> Duration {
        (self.config.data_key_ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// Closes every file whose key is past its TTL, dropping the key and the decrypted page
    /// cache; returns how many.
    pub async fn reap(&self) -> usize {
        let expired = self.open.take_expired(Instant::now());
        let n = expired.len();
        close_all(expired).await;
        if n > 0 {
            tracing::debug!(closed = n, "closed datacenter files whose data key expired");
        }
        n
    }

    async fn slot(&self, dc_id: &str) -> Arc<Mutex<()>> {
        self.opening
            .lock()
            .await
            .entry(dc_id.to_string())
            .or_default()
            .clone()
    }

    /// The datacenter's open store, unwrapping its key if the cached one expired.
    pub async fn docstore(&self, dc_id: &str) -> AppResult<Arc<DocStore>> {
        if let Some(reason) = self.suspended.reason(dc_id) {
            return Err(AppError::Suspended(reason));
        }
        if let Some(store) = self.open.fresh(dc_id) {
            return Ok(store);
        }
        let slot = self.slot(dc_id).await;
        let _opening = slot.lock().await;
        // Another caller may have opened it while this one waited.
        if let Some(store) = self.open.fresh(dc_id) {
            return Ok(store);
        }
        // Expired or never opened: drop the old handle (and its key) before anything else.
        let stale = self.open.remove(dc_id).into_iter().collect();
        close_all(stale).await;
        let dc = self.store.get_datacenter(dc_id).await?.ok_or_else(|| {
            AppError::DatacenterUnavailable(format!("datacenter {dc_id} does not exist"))
        })?;
        match dc.status {
            DatabaseStatus::Active | DatabaseStatus::Maintenance => {}
            DatabaseStatus::Suspended => return Err(AppError::Suspended(dc.message.clone())),
            other => {
                return Err(AppError::DatacenterUnavailable(format!(
                    "datacenter {dc_id} is {other}, not ACTIVE; retry when it is"
                )));
            }
        }
        // A rotation a crash interrupted is settled before the file is opened.
        let dc = if dc.pending_wrapped_data_key.is_some() && !self.rotations.is_running(dc_id) {
            self.settle_pending_rotation(dc).await?
        } else {
            dc
        };
        let path = self.file(dc_id);
        let cache_mib = self.config.data_cache_mib;
        let key = if self.is_plain_for_benchmark(dc_id) {
            None
        } else {
            Some(self.unwrap(&dc).await?)
        };
        let store = tokio::task::spawn_blocking(move || -> AppResult<DocStore> {
            let store = match &key {
                Some(key) => DocStore::open(&path, key)?,
                None => open_plain(&path)?,
            };
            store.set_cache_size_mib(cache_mib)?;
            Ok(store)
        })
        .await
        .map_err(task_error)??;
        let store = Arc::new(store);
        self.open.track(&store);
        let expires = Instant::now() + self.config.data_key_ttl;
        let evicted = self.open.insert(
            dc_id,
            store.clone(),
            expires,
            self.config.max_open_datacenters,
        );
        close_all(evicted).await;
        Ok(store)
    }

    /// Creates the datacenter's file if it does not exist (a re-run after a crash opens the
    /// one it created), keyed with the unwrapped data key.
    pub async fn create_file(&self, dc: &Datacenter, keyspace: &str) -> AppResult<()> {
        let key = self.unwrap(dc).await?;
        let path = self.file(&dc.id);
        let keyspace = keyspace.to_string();
        tokio::task::spawn_blocking(move || -> AppResult<()> {
            if let Some(parent) = path.parent() {
                private_folder(parent)?;
            }
            if !path.exists() {
                create_atomically(&path, &key)?;
            }
            let store = match DocStore::open(&path, &key) {
                Ok(s) => s,
                // Only provisioning calls this, before the datacenter was ever ACTIVE, so no
                // acknowledged data can be in a file that is not a whole store: it is the
                // leftover of an interrupted creation (e.g. by an older version), made again.
                Err(keyplane_docstore::DocStoreError::Corrupt(reason)) => {
                    tracing::warn!(file = %path.display(), reason, "recreating an unfinished datacenter file");
                    for suffix in FILE_SUFFIXES {
                        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                    }
                    create_atomically(&path, &key)?;
                    DocStore::open(&path, &key)?
                }
                Err(e) => return Err(e.into()),
            };
            store.create_keyspace(&keyspace)?;
            Ok(())
        })
        .await
        .map_err(task_error)??;
        Ok(())
    }

    /// Deletes the datacenter's files (a creation's leftovers too) and drops its key from
    /// memory: with the wrapped key erased as well, nothing left can recover the data.
    /// Returns how many bytes the files held.
    pub async fn delete_files(&self, dc_id: &str) -> AppResult<u64> {
        self.forget(dc_id).await;
        let base = self.file(dc_id);
        let mut erased = 0;
        for name in [creating(&base), rotation::rotation_copy(&base), base] {
            for suffix in FILE_SUFFIXES {
                let p = PathBuf::from(format!("{}{suffix}", name.display()));
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&p) {
                    Ok(()) => erased += size,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("removing", &p, e)),
                }
            }
        }
        Ok(erased)
    }

    /// Opens a datacenter that is still INITIALIZING (the status check of [`Self::docstore`]
    /// would refuse it), for provisioning only.
    pub async fn docstore_for_provisioning(&self, dc: &Datacenter) -> AppResult<Arc<DocStore>> {
        let key = self.unwrap(dc).await?;
        let path = self.file(&dc.id);
        let store = tokio::task::spawn_blocking(move || DocStore::open(&path, &key))
            .await
            .map_err(task_error)??;
        let store = Arc::new(store);
        self.open.track(&store);
        Ok(store)
    }

    #[cfg(not(feature = "bench-plain"))]
    fn is_plain_for_benchmark(&self, _dc_id: &str) -> bool {
        false
    }
}

/// Where a datacenter file is made before it is renamed into place.
fn creating(path: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.creating", path.display()))
}

/// A datacenter file and the files SQLite keeps next to it.
const FILE_SUFFIXES: [&str; 4] = ["", "-wal", "-shm", "-journal"];

/// Without the `bench-plain` feature no datacenter is ever served from a plain file.
#[cfg(not(feature = "bench-plain"))]
fn open_plain(path: &std::path::Path) -> AppResult<DocStore> {
    Err(AppError::bug(format!(
        "{} would be opened without encryption, which only the benchmark build does",
        path.display()
    )))
}

#[cfg(feature = "bench-plain")]
fn open_plain(path: &std::path::Path) -> AppResult<DocStore> {
    Ok(DocStore::open_plain(path)?)
}

/// The datacenters' folder, owner-only (0700) whatever the umask: the files in it are
/// encrypted, but their names and sizes are the organization's business alone. Missing
/// parents are created owner-only too; this folder is keyplane's own, so one left readable
/// by an older version is narrowed.
fn private_folder(dir: &std::path::Path) -> AppResult<()> {
    use std::os::unix::fs::PermissionsExt;
    keyplane_store::create_private_dir(dir)?;
    let meta = std::fs::metadata(dir).map_err(|e| io_error("reading", dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode(keyplane_store::DIR_MODE),
        )
        .map_err(|e| io_error("narrowing", dir, e))?;
        tracing::info!(folder = %dir.display(), "narrowed the datacenters folder's permissions to its owner");
    }
    Ok(())
}

/// Creates the file under a temporary name and renames it into place once it is complete,
/// so a crash (kill -9) mid-creation never leaves a half-made file at the real path: a
/// re-run finds either nothing (and creates it again) or a whole store.
fn create_atomically(path: &std::path::Path, key: &DataKey) -> AppResult<()> {
    let io = |e: std::io::Error| io_error("creating", path, e);
    let tmp = creating(path);
    for suffix in FILE_SUFFIXES {
        match std::fs::remove_file(format!("{}{suffix}", tmp.display())) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    // Closing the store checkpoints its WAL into the main file before the rename.
    drop(DocStore::create(&tmp, key)?);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Follows the store's suspensions every `suspension_sync_interval` until `shutdown`
/// resolves, so a suspension made by any process is enforced by this one within that time.
pub async fn run_suspension_sync(
    data: Arc<DataPlane>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(data.config.suspension_sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = data.sync_suspensions().await {
            tracing::warn!(error = %e, "reading the store's suspensions failed; retrying");
        }
    }
}

/// Closes expired files every [`DataPlane::reaper_period`] until `shutdown` resolves, so no
/// plaintext data key outlives its TTL by more than that period, accessed or not.
pub async fn run_reaper(data: Arc<DataPlane>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(data.reaper_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        data.reap().await;
    }
}
