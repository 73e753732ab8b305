//! Data-key rotation: a datacenter's file re-encrypted under a new data key, online.
//!
//! The new data key is generated under the datacenter's KMS key, unwrapped once (the proof
//! that the KMS gives it back), and recorded in the store as pending beside the key of
//! record. Then, with the database's writes held off (its region lock, taken alone) while
//! reads go on, the file is copied under the new key and checked
//! (`DocStore::export_rekeyed`); new opens of the datacenter are held and in-flight reads
//! finish; the old file's WAL is folded in, the copy is renamed over it (the commit point),
//! and the pending key is promoted. A crash before the rename leaves the file under the key
//! of record (the pending key is forgotten at the next open); after it, under the pending
//! key (promoted at the next open): exactly one of the two, never neither.
//!
//! One process owns a data dir (`serve.lock`), so the datacenter's file has no user but this
//! process; should one be there anyway, folding the old WAL in fails and the rotation is
//! abandoned with the file untouched.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyplane_core::DatabaseStatus;
use keyplane_docstore::{DataKey, DocStore, DocStoreError};
use keyplane_store::Datacenter;

use super::{DataPlane, close_all, datacenter_context, io_error, task_error};
use crate::error::{AppError, AppResult, ConflictReason, RotationRefusal};

/// What one rotation did and what it cost the datacenter's users.
#[derive(Debug, Clone)]
pub struct RotatedDataKey {
    /// Bytes of the file (with its WAL) that were re-encrypted.
    pub bytes: u64,
    /// From the request to the new key in use.
    pub took: Duration,
    /// How long writes to the database waited: the copy, its check and the swap.
    pub writes_paused: Duration,
    /// How long new reads of the datacenter waited: the swap only.
    pub reads_paused: Duration,
}

/// A rotation running in this process, as the datacenter's status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationProgress {
    pub started_at: DateTime<Utc>,
    /// Share of the file copied under the new key so far, 0 to 100.
    pub percent: u8,
}

/// The rotations running in this process.
#[derive(Default)]
pub(super) struct Rotations(std::sync::Mutex<HashMap<String, Running>>);

struct Running {
    started_at: DateTime<Utc>,
    /// Size of the file being copied; 0 until the copy starts.
    source_bytes: u64,
    copy: PathBuf,
}

impl Rotations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_running(&self, dc_id: &str) -> bool {
        self.lock().contains_key(dc_id)
    }
}

/// Ends a running rotation's record however the rotation ends.
struct RunningGuard<'a> {
    rotations: &'a Rotations,
    dc_id: String,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.rotations.lock().remove(&self.dc_id);
    }
}

/// Where a rotation copies a datacenter file before it replaces it.
pub(super) fn rotation_copy(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.rotating", path.display()))
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn refused(r: RotationRefusal) -> AppError {
    AppError::Conflict(ConflictReason::Rotation(r))
}

/// Removes a copy an interrupted rotation left (and its journal).
fn remove_copy(copy: &Path) -> AppResult<()> {
    for suffix in ["", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", copy.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing", &p, e)),
        }
    }
    Ok(())
}

/// How long a swap waits for reads that hold the old file to finish.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(30);

impl DataPlane {
    /// Whether the datacenter's data key is being rotated: pending in the store (whichever
    /// process runs it, or a crash left it) or running here.
    pub fn rotating(&self, dc: &Datacenter) -> bool {
        dc.pending_wrapped_data_key.is_some() || self.rotations.is_running(&dc.id)
    }

    /// The rotation of `dc_id` running in this process, if one is.
    pub fn rotation_progress(&self, dc_id: &str) -> Option<RotationProgress> {
        let map = self.rotations.lock();
        let r = map.get(dc_id)?;
        let percent = size_of(&r.copy)
            .saturating_mul(100)
            .checked_div(r.source_bytes)
            .map_or(0, |p| p.min(99) as u8);
        Some(RotationProgress {
            started_at: r.started_at,
            percent,
        })
    }

    /// Rotates the datacenter's data key now. Refused while another rotation of it runs, or
    /// when it is not ACTIVE; a rotation a crash left pending is settled first.
    pub async fn rotate_data_key(&self, dc_id: &str) -> AppResult<RotatedDataKey> {
        let started = Instant::now();
        let _running = {
            let mut map = self.rotations.lock();
            if map.contains_key(dc_id) {
                return Err(refused(RotationRefusal::InProgress));
            }
            map.insert(
                dc_id.to_string(),
                Running {
                    started_at: Utc::now(),
                    source_bytes: 0,
                    copy: rotation_copy(&self.file(dc_id)),
                },
            );
            RunningGuard {
                rotations: &self.rotations,
                dc_id: dc_id.to_string(),
            }
        };
        let dc = {
            // Under the open lock, as the open path settles it, so the two never race.
            let slot = self.slot(dc_id).await;
            let _opening = slot.lock().await;
            let dc = self.live_datacenter(dc_id).await?;
            self.settle_pending_rotation(dc).await?
        };
        if let Some(reason) = self.suspended.reason(dc_id) {
            return Err(AppError::Suspended(reason));
        }
        let Some(current_wrapped) = dc.wrapped_data_key.clone() else {
            return Err(refused(RotationRefusal::NotReady(dc.status)));
        };
        if dc.status != DatabaseStatus::Active {
            return Err(refused(RotationRefusal::NotReady(dc.status)));
        }
        // One connection to the key for the three calls (an OpenBao key logs in per connection).
        let kms = self.key_provider(&dc).await?;
        let current = self
            .unwrap_with(kms.as_ref(), &dc, &current_wrapped)
            .await?;
        let next_wrapped = kms
            .generate_data_key_without_plaintext(&dc.key_id, &datacenter_context(&dc))
            .await?;
        let next = self.unwrap_with(kms.as_ref(), &dc, &next_wrapped).await?;
        if !self
            .store
            .begin_data_key_rotation(dc_id, &current_wrapped, &next_wrapped)
            .await?
        {
            return Err(refused(RotationRefusal::KeyChanged));
        }
        match self.rekey_file(&dc, current, next, &next_wrapped).await {
            Ok((bytes, writes_paused, reads_paused)) => Ok(RotatedDataKey {
                bytes,
                took: started.elapsed(),
                writes_paused,
                reads_paused,
            }),
            Err(Failed::Before(e)) => {
                // The file is whole under the key of record: the pending key goes.
                if let Err(abandon) = self
                    .store
                    .abandon_data_key_rotation(dc_id, &next_wrapped)
                    .await
                {
                    tracing::warn!(datacenter = %dc_id, error = %abandon, "could not forget a failed rotation's key; the next open does");
                }
                Err(e)
            }
            // The file is under the new key; its next open promotes the pending key.
            Err(Failed::After(e)) => Err(e),
        }
    }

    /// Settles a rotation of `dc_id` a crash left pending (see
    /// [`Self::settle_pending_rotation`]), unless one is running in this process.
    pub async fn settle_rotation(&self, dc_id: &str) -> AppResult<()> {
        let slot = self.slot(dc_id).await;
        let _opening = slot.lock().await;
        if self.rotations.is_running(dc_id) {
            return Ok(());
        }
        let dc = self.live_datacenter(dc_id).await?;
        self.settle_pending_rotation(dc).await.map(drop)
    }

    async fn live_datacenter(&self, dc_id: &str) -> AppResult<Datacenter> {
        self.store
            .get_datacenter(dc_id)
            .await?
            .filter(|d| d.terminated_at.is_none())
            .ok_or_else(|| {
                AppError::DatacenterUnavailable(format!("datacenter {dc_id} does not exist"))
            })
    }

    /// The copy and the swap; the bytes copied and the writers' and readers' pauses.
    async fn rekey_file(
        &self,
        dc: &Datacenter,
        current: DataKey,
        next: DataKey,
        next_wrapped: &[u8],
    ) -> Result<(u64, Duration, Duration), Failed> {
        let before = Failed::Before;
        let order = self.order(&dc.database_id);
        let writes = order.regions.clone().write_owned().await;
        let writes_from = Instant::now();
        let path = self.file(&dc.id);
        let copy = rotation_copy(&path);
        let bytes = size_of(&path) + size_of(Path::new(&format!("{}-wal", path.display())));
        if let Some(r) = self.rotations.lock().get_mut(&dc.id) {
            r.source_bytes = bytes.max(1);
        }
        let (src, dst) = (path.clone(), copy.clone());
        let (rekeyed, next) = tokio::task::spawn_blocking(move || {
            DocStore::export_rekeyed(&src, &current, &dst, &next).map(|r| (r, next))
        })
        .await
        .map_err(|e| before(task_error(e)))?
        .map_err(|e| before(e.into()))?;

        // The swap: new opens wait, reads holding the old file finish, then it is closed.
        let slot = self.slot(&dc.id).await;
        let _opening = slot.lock().await;
        let reads_from = Instant::now();
        if let Some(old) = self.open.remove(&dc.id) {
            let deadline = Instant::now() + IN_FLIGHT_WAIT;
            while Arc::strong_count(&old) > 1 {
                if Instant::now() > deadline {
                    let _ = tokio::task::spawn_blocking(move || remove_copy(rekeyed.copy())).await;
                    return Err(before(AppError::DatacenterUnavailable(format!(
                        "reads of datacenter {} held its file for {}s; the data key was not rotated, retry",
                        dc.id,
                        IN_FLIGHT_WAIT.as_secs()
                    ))));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            close_all(vec![old]).await;
        }
        let cache_mib = self.config.data_cache_mib;
        let swapped = tokio::task::spawn_blocking(move || -> Result<DocStore, Failed> {
            let copy = rekeyed.copy().to_path_buf();
            if let Err(e) = rekeyed.release_source() {
                let _ = remove_copy(&copy);
                return Err(Failed::Before(AppError::DatacenterUnavailable(format!(
                    "the datacenter's file could not be released for the swap ({e}); the data key \
                     was not rotated, retry"
                ))));
            }
            std::fs::rename(&copy, &path)
                .map_err(|e| Failed::Before(io_error("renaming", &copy, e)))?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Failed::After(io_error("syncing", dir, e)))?;
            }
            let store = DocStore::open(&path, &next).map_err(|e| Failed::After(e.into()))?;
            store
                .set_cache_size_mib(cache_mib)
                .map_err(|e| Failed::After(e.into()))?;
            Ok(store)
        })
        .await
        .map_err(|e| Failed::After(task_error(e)))??;
        if !self
            .store
            .finish_data_key_rotation(&dc.id, next_wrapped)
            .await
            .map_err(|e| Failed::After(e.into()))?
        {
            // Terminated (shredded) meanwhile: its key of record is erased, so is the file.
            let _ = self.delete_files(&dc.id).await;
            return Err(Failed::After(AppError::DatacenterUnavailable(format!(
                "datacenter {} was terminated while its data key was rotated",
                dc.id
            ))));
        }
        let store = Arc::new(swapped);
        self.open.track(&store);
        let expires = Instant::now() + self.config.data_key_ttl;
        let evicted = self
            .open
            .insert(&dc.id, store, expires, self.config.max_open_datacenters);
        close_all(evicted).await;
        let reads_paused = reads_from.elapsed();
        drop(writes);
        Ok((bytes, writes_from.elapsed(), reads_paused))
    }

    /// Settles a rotation a crash (or a failed store write) left pending: the file opens under
    /// the key of record (the pending key is forgotten) or under the pending one (it is
    /// promoted). Returns the datacenter as it is then. The caller holds the datacenter's open
    /// lock, and no rotation of it runs in this process but the caller's own.
    pub(super) async fn settle_pending_rotation(&self, dc: Datacenter) -> AppResult<Datacenter> {
        let Some(pending) = dc.pending_wrapped_data_key.clone() else {
            return Ok(dc);
        };
        let Some(record) = dc.wrapped_data_key.clone() else {
            return Ok(dc);
        };
        let path = self.file(&dc.id);
        let copy = rotation_copy(&path);
        let kms = self.key_provider(&dc).await?;
        let current = self.unwrap_with(kms.as_ref(), &dc, &record).await?;
        let p = path.clone();
        let under_record = tokio::task::spawn_blocking(move || -> AppResult<bool> {
            // A copy still there was never renamed: the file is the one of record.
            remove_copy(&copy)?;
            match DocStore::open(&p, &current) {
                Ok(_) => Ok(true),
                Err(DocStoreError::WrongKey) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(task_error)??;
        if under_record {
            self.store
                .abandon_data_key_rotation(&dc.id, &pending)
                .await?;
            tracing::info!(datacenter = %dc.id, "forgot the data key of a rotation that did not finish");
        } else {
            let next = self.unwrap_with(kms.as_ref(), &dc, &pending).await?;
            let p = path.clone();
            tokio::task::spawn_blocking(move || DocStore::open(&p, &next).map(drop))
                .await
                .map_err(task_error)?
                .map_err(|e| {
                    AppError::DatacenterUnavailable(format!(
                        "datacenter {} opens under neither its data key nor the one its rotation made: {e}",
                        dc.id
                    ))
                })?;
            self.store
                .finish_data_key_rotation(&dc.id, &pending)
                .await?;
            tracing::info!(datacenter = %dc.id, "finished the rotation of a data key a crash interrupted");
        }
        self.live_datacenter(&dc.id).await
    }
}

/// A rotation's failure, and whether the file had been replaced by then.
enum Failed {
    /// Before the rename: the file is still under the key of record.
    Before(AppError),
    /// After it: the file is under the new key.
    After(AppError),
}

impl From<Failed> for AppError {
    fn from(f: Failed) -> AppError {
        match f {
            Failed::Before(e) | Failed::After(e) => e,
        }
    }
}
