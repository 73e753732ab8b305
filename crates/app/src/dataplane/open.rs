//! The open datacenter files and the plaintext data keys inside them (SQLCipher keeps the key
//! of an open file in memory, with the file's decrypted page cache). An entry lives until the
//! TTL after its key was unwrapped, and the reaper closes it then even if nothing touches it
//! again; at most `max_open` entries exist, the least recently used one closed first.
//!
//! Closing a file checkpoints its WAL (an fsync): callers drop what [`OpenFiles`] hands back on
//! the blocking pool, never on an async worker.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use keyplane_docstore::DocStore;

/// An open store and when the key it was opened with must be asked of the KMS again.
struct Entry {
    store: Arc<DocStore>,
    expires: Instant,
    /// The [`OpenFiles::accesses`] count at the last access, for the LRU: a counter, not a
    /// clock, so two accesses in one millisecond still have an order.
    last_used: AtomicU64,
}

pub(super) struct OpenFiles {
    /// The open stores: read without awaiting a lock, the path every data operation takes.
    map: RwLock<HashMap<String, Entry>>,
    /// Every encrypted store this process opened, weakly: a key is held while any handle to
    /// its store is alive (an in-flight request may keep one a moment after it left the map).
    held: Mutex<Vec<Weak<DocStore>>>,
    accesses: AtomicU64,
}

impl OpenFiles {
    pub(super) fn new() -> OpenFiles {
        OpenFiles {
            map: RwLock::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            accesses: AtomicU64::new(0),
        }
    }

    fn next_access(&self) -> u64 {
        self.accesses.fetch_add(1, Ordering::Relaxed)
    }

    /// The datacenter's store if it is open and its key within the TTL.
    pub(super) fn fresh(&self, dc_id: &str) -> Option<Arc<DocStore>> {
        let map = self.map.read().ok()?;
        let e = map.get(dc_id)?;
        if e.expires <= Instant::now() {
            return None;
        }
        e.last_used.store(self.next_access(), Ordering::Relaxed);
        Some(e.store.clone())
    }

    /// Records a store opened with a key (for [`Self::held_keys`]).
    pub(super) fn track(&self, store: &Arc<DocStore>) {
        if store.is_encrypted() {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.push(Arc::downgrade(store));
        }
    }

    /// Adds an opened store; returns what must be closed: the entry it replaces, and the least
    /// recently used ones beyond `max_open`.
    pub(super) fn insert(
        &self,
        dc_id: &str,
        store: Arc<DocStore>,
        expires: Instant,
        max_open: usize,
    ) -> Vec<Arc<DocStore>> {
        let mut out = vec![];
        let Ok(mut map) = self.map.write() else {
            // A poisoned map is never used again for lookups either (`fresh` answers None),
            // so the store is closed at once rather than cached.
            out.push(store);
            return out;
        };
        let entry = Entry {
            store,
            expires,
            last_used: AtomicU64::new(self.next_access()),
        };
        if let Some(old) = map.insert(dc_id.to_string(), entry) {
            out.push(old.store);
        }
        while map.len() > max_open.max(1) {
            let Some(victim) = map
                .iter()
                .filter(|(k, _)| k.as_str() != dc_id)
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = map.remove(&victim) {
                out.push(e.store);
            }
        }
        out
    }

    /// Takes the datacenter's store out of the map (a poisoned map is still emptied of it: the
    /// key must go either way).
    pub(super) fn remove(&self, dc_id: &str) -> Option<Arc<DocStore>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.remove(dc_id).map(|e| e.store)
    }

    /// Takes out every entry whose key is past its TTL.
    pub(super) fn take_expired(&self, now: Instant) -> Vec<Arc<DocStore>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = map
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter()
            .filter_map(|k| map.remove(k))
            .map(|e| e.store)
            .collect()
    }

    /// Whether the datacenter's store is in the map (fresh or not).
    pub(super) fn contains(&self, dc_id: &str) -> bool {
        self.map
            .read()
            .map(|m| m.contains_key(dc_id))
            .unwrap_or(true)
    }

    pub(super) fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Plaintext data keys in memory: encrypted stores still open anywhere in the process.
    pub(super) fn held_keys(&self) -> usize {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|w| w.strong_count() > 0);
        held.len()
    }
}

/// Drops stores on the blocking pool: closing one checkpoints its WAL into the file (an
/// fsync), which must not stall an async worker.
pub(super) async fn close_all(stores: Vec<Arc<DocStore>>) {
    if stores.is_empty() {
        return;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || drop(stores)).await {
        tracing::error!(error = %e, "closing datacenter files failed");
    }
}
