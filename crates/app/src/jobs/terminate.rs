//! Terminating a datacenter (one region) or a whole database, by crypto-shredding: the
//! files are deleted, the data key dropped from memory, the wrapped data key erased from the
//! row and from what the store's engine keeps of deleted values, the rows marked TERMINATED,
//! and the shredding recorded in the audit log. keyplane makes no grants on a customer's
//! key (it is used under the key policy the customer wrote), so there are none to revoke.
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_store::{Datacenter, Job};
use uuid::Uuid;

use super::refresh_database_status;
use crate::App;
use crate::error::{AppError, AppResult};

/// Who the audit log names for a shredding: the worker, acting on a terminate request that
/// was recorded under its requester.
const SHREDDER_ACTOR: &str = "system:terminator";

/// Shreds these datacenters: files and keys in memory dropped, rows marked; then, once for
/// all of them, the store's own copies of deleted values; then one audit entry each.
async fn shred(app: &App, dcs: &[Datacenter]) -> AppResult<()> {
    let mut bytes = Vec::with_capacity(dcs.len());
    for dc in dcs {
        bytes.push(app.data.delete_files(&dc.id).await?);
        app.data.resume(&dc.id);
        app.store.mark_datacenter_terminated(&dc.id).await?;
    }
    let erased = app.store.erase_deleted().await?;
    if !erased {
        tracing::info!(
            datacenters = dcs.len(),
            "the store keeps copies of deleted values for now (see erase_deleted)"
        );
    }
    let store_copies = if erased {
        "the store's copies of deleted values erased"
    } else {
        "the store's engine still holds copies of deleted values"
    };
    for (dc, bytes) in dcs.iter().zip(bytes) {
        let reason = format!(
            "erased the data file ({bytes} bytes) and the wrapped data key under {}; {store_copies}",
            dc.key_id
        );
        crate::audit::record(
            app,
            dc.org_id,
            SHREDDER_ACTOR.to_string(),
            AuditAction::DatacenterShred,
            &dc.id,
            AuditOutcome::Success,
            &reason,
        )
        .await;
    }
    Ok(())
}

pub(super) async fn terminate_datacenter(app: &App, job: &Job) -> AppResult<()> {
    let dc_id = job
        .datacenter_id
        .as_deref()
        .ok_or_else(|| AppError::bug("terminate job without a datacenter"))?;
    let dc =
        app.store.get_datacenter(dc_id).await?.ok_or_else(|| {
            AppError::bug(format!("terminate job for unknown datacenter {dc_id}"))
        })?;
    shred(app, std::slice::from_ref(&dc)).await?;
    refresh_database_status(app, job.database_id).await
}

pub(super) async fn terminate_database(app: &App, db_id: Uuid) -> AppResult<()> {
    let live: Vec<Datacenter> = app
        .store
        .list_datacenters(db_id)
        .await?
        .into_iter()
        .filter(|dc| dc.terminated_at.is_none())
        .collect();
    shred(app, &live).await?;
    app.store.mark_database_terminated(db_id).await?;
    Ok(())
}
