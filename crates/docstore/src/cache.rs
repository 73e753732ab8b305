use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;
use crate::key::DataKey;

/// The default: a datacenter's key is asked of KMS at most once per five minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

struct Entry {
    key: Arc<DataKey>,
    expires: Instant,
}

/// One id's slot. The async mutex is what makes loads single-flight: the first caller holds it
/// across the KMS call, later callers wait on it and then find the loaded key.
type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// Counters that let tests and benchmarks prove how many KMS calls a workload caused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loader calls (each one is a KMS Decrypt in production).
    pub loads: u64,
    /// Requests served from memory.
    pub hits: u64,
    /// Entries dropped because they expired or were evicted.
    pub evictions: u64,
}

/// Plaintext data keys by datacenter id, kept for a TTL and wiped when they leave.
///
/// Holding keys only for a TTL bounds how long a revoked customer key keeps data readable, and
/// `evict` lets the key-health monitor cut access at once. Time is tokio's clock, so tests can
/// run with paused time.
pub struct DataKeyCache {
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    loads: AtomicU64,
    hits: AtomicU64,
    evictions: AtomicU64,
}

impl Default for DataKeyCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl DataKeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A poisoned map only means another thread panicked mid-insert; the map itself is still
    /// consistent (every mutation is a single call), so keep serving.
    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the cached key for `id`, or calls `loader` (once, however many callers are
    /// waiting for the same id) and caches its result for the TTL. A failed load caches
    /// nothing, so the next caller tries again.
    pub async fn get_or_load<F, Fut>(&self, id: &str, loader: F) -> Result<Arc<DataKey>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<DataKey>>,
    {
        let slot = {
            let mut map = self.map();
            map.entry(id.to_owned()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        let now = Instant::now();
        if let Some(entry) = guard.as_ref() {
            if entry.expires > now {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.key.clone());
            }
            // Expired: drop our reference now, before the (slow) reload.
            *guard = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        let key = Arc::new(loader().await?);
        // Only cache if the slot is still the current one for this id: an evict() during the
        // load means the caller wanted this id's keys gone.
        let still_current = self.map().get(id).is_some_and(|s| Arc::ptr_eq(s, &slot));
        if still_current {
            *guard = Some(Entry {
                key: key.clone(),
                expires: Instant::now() + self.ttl,
            });
        }
        Ok(key)
    }

    /// The cached key if present and fresh; never loads.
    pub fn get(&self, id: &str) -> Option<Arc<DataKey>> {
        let slot = self.map().get(id).cloned()?;
        let guard = slot.try_lock().ok()?;
        let entry = guard.as_ref()?;
        (entry.expires > Instant::now()).then(|| {
            self.hits.fetch_add(1, Ordering::Relaxed);
            entry.key.clone()
        })
    }

    /// Forgets `id`'s key (on suspension, revocation or datacenter termination). The bytes are
    /// wiped as soon as the last `Arc` a caller still holds is dropped.
    pub fn evict(&self, id: &str) -> bool {
        let slot = self.map().remove(id);
        match slot {
            Some(slot) => {
                if let Ok(mut g) = slot.try_lock() {
                    *g = None;
                }
                self.evictions.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn evict_all(&self) -> usize {
        let drained: Vec<Slot> = self.map().drain().map(|(_, s)| s).collect();
        for slot in &drained {
            if let Ok(mut g) = slot.try_lock() {
                *g = None;
            }
        }
        self.evictions
            .fetch_add(drained.len() as u64, Ordering::Relaxed);
        drained.len()
    }

    /// Drops every expired entry; meant to run on an interval so that keys of idle datacenters
    /// do not outlive their TTL in memory. Slots busy loading are left alone.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map();
        let mut removed = 0;
        map.retain(|_, slot| match slot.try_lock() {
            Ok(mut g) => match g.as_ref() {
                Some(e) if e.expires <= now => {
                    *g = None;
                    removed += 1;
                    false
                }
                Some(_) => true,
                // Empty and unlocked: a failed or abandoned load; nothing to keep.
                None => false,
            },
            Err(_) => true,
        });
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Number of ids with a slot (fresh, expired-but-unswept, or loading).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            loads: self.loads.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
