//! One ordered write per database at a time, so that every region holds the same documents.
//!
//! A write of a database with several ACTIVE regions runs in one region, its primary (the
//! endpoint's own region), which records by `_id` what it touched in the same transaction
//! (`keyplane_docstore::DocStore::record`); every other region is then made equal to the
//! primary for exactly those documents (`apply_from`), and only then is the write answered
//! and the next one let in. Writes are numbered per database; each region's file knows the
//! number of the last write it has. After a crash (or a failed region) the regions differ by
//! at most that one write, whose primary still holds its record: [`settle`] completes it in
//! the regions that miss it before anything else is written or read, and repairs by a full
//! copy from the most advanced region whatever is further apart.
//!
//! Why this design (measured, see the note of issue 10): SQLite's atomic commit across
//! ATTACHed files is not atomic in WAL mode (each file commits on its own, no super-journal),
//! and without WAL every commit costs several more fsyncs; a per-database order plus a redo
//! record inside the primary's own (encrypted) file costs no extra fsync per write.
use std::sync::Arc;

use keyplane_docstore::{DocStore, DocStoreError, Recorded};

use crate::error::{AppError, AppResult};

/// A database's write order, shared by every endpoint of it.
#[derive(Default)]
pub(crate) struct DatabaseOrder {
    /// Writes share it from before they list the regions until they are answered; adding a
    /// region takes it alone while it copies the data and turns ACTIVE, so no acknowledged
    /// write misses the new region.
    pub(crate) regions: Arc<tokio::sync::RwLock<()>>,
    /// Held for the whole of one write; the number of the last write every ACTIVE region has,
    /// `None` when this process does not know it (start, or a write that did not reach
    /// every region): the next write (or first read) settles the regions first.
    pub(crate) last: tokio::sync::Mutex<Option<u64>>,
}

/// A region taking part in a write: its datacenter id (for messages) and open store.
pub(crate) type Region = (String, Arc<DocStore>);

fn doc_error(region: &str, e: DocStoreError) -> AppError {
    AppError::internal(std::io::Error::other(format!("region {region}: {e}")))
}

/// Brings every region to the same last write and returns its number (blocking: run it on
/// the blocking pool). Regions one write behind get it from the region holding its record;
/// regions further apart (or when no region holds the record, e.g. its primary was removed)
/// are copied whole from a most advanced region.
pub(crate) fn settle(regions: &[Region]) -> AppResult<u64> {
    let mut seqs = Vec::with_capacity(regions.len());
    for (id, s) in regions {
        seqs.push(s.replication_seq().map_err(|e| doc_error(id, e))?);
    }
    let Some(&top) = seqs.iter().max() else {
        return Ok(0);
    };
    if seqs.iter().all(|s| *s == top) {
        return Ok(top);
    }
    let mut holder = None;
    for (i, (id, s)) in regions.iter().enumerate() {
        if seqs[i] == top && s.holds_record(top).map_err(|e| doc_error(id, e))? {
            holder = Some(i);
            break;
        }
    }
    let source = holder
        .or_else(|| seqs.iter().position(|s| *s == top))
        .unwrap_or(0);
    let (source_id, from) = &regions[source];
    for (i, (id, s)) in regions.iter().enumerate() {
        if seqs[i] == top {
            continue;
        }
        if holder.is_some() && seqs[i] + 1 == top {
            s.apply_from(from, top).map_err(|e| doc_error(id, e))?;
            tracing::info!(datacenter = %id, from = %source_id, write = top, "completed an interrupted write in a region");
        } else {
            let copied = s.resync_from(from).map_err(|e| doc_error(id, e))?;
            tracing::warn!(datacenter = %id, from = %source_id, at = seqs[i], write = top, copied,
                "a region was more than one write behind (or its last write's record was gone); copied it whole");
        }
    }
    Ok(top)
}

/// One write: `f` in `regions[primary]`, recorded as write `seq`, then applied to every other
/// region (blocking). Returns `f`'s own result and whether the write changed anything (if not,
/// its number stays free for the next write). An `Err` means a region could not take the
/// write: the regions then differ by this one write until [`settle`] completes it.
pub(crate) fn apply<T>(
    regions: &[Region],
    primary: usize,
    seq: u64,
    f: impl FnOnce(&DocStore) -> Result<T, DocStoreError>,
) -> AppResult<(Result<T, DocStoreError>, bool)> {
    let (pid, p) = &regions[primary];
    let Recorded { result, changed } = p.record(seq, f).map_err(|e| doc_error(pid, e))?;
    if changed {
        for (i, (id, s)) in regions.iter().enumerate() {
            if i != primary {
                s.apply_from(p, seq).map_err(|e| doc_error(id, e))?;
            }
        }
    }
    Ok((result, changed))
}

impl super::DataPlane {
    /// Copies the database into a region being added (datacenter `dc`, not yet ACTIVE) from
    /// one of its ACTIVE regions, after settling those, and gives it their write number.
    /// The caller holds the database's region lock alone, so no write runs meanwhile and none
    /// acknowledged afterwards misses the new region. `None` when there is nothing to copy
    /// from (the database's first region).
    pub async fn copy_into_new_region(
        &self,
        dc: &keyplane_store::Datacenter,
    ) -> AppResult<Option<u64>> {
        let siblings = self.store.list_datacenters(dc.database_id).await?;
        let serving: Vec<&keyplane_store::Datacenter> = siblings
            .iter()
            .filter(|d| {
                d.id != dc.id
                    && d.terminated_at.is_none()
                    && d.status == keyplane_core::DatabaseStatus::Active
            })
            .collect();
        if serving.is_empty() {
            return Ok(None);
        }
        let order = self.order(&dc.database_id);
        let mut last = order.last.lock().await;
        let mut regions: Vec<Region> = Vec::with_capacity(serving.len());
        for d in &serving {
            regions.push((d.id.clone(), self.docstore(&d.id).await?));
        }
        let to = self.docstore_for_provisioning(dc).await?;
        let (top, copied) = tokio::task::spawn_blocking(move || -> AppResult<(u64, u64)> {
            let top = settle(&regions)?;
            let copied = to
                .resync_from(&regions[0].1)
                .map_err(|e| doc_error("new", e))?;
            Ok((top, copied))
        })
        .await
        .map_err(AppError::internal)??;
        *last = Some(top);
        Ok(Some(copied))
    }
}
