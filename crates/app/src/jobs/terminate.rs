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

async fn terminate_one(app: &App, dc: &Datacenter) -> AppResult<()> {
    let bytes = app.data.delete_files(&dc.id).await?;
    app.data.resume(&dc.id);
    app.store.mark_datacenter_terminated(&dc.id).await?;
    let erased = app.store.erase_deleted().await?;
    if !erased {
        tracing::info!(datacenter = %dc.id, "the store keeps copies of deleted values for now (see erase_deleted)");
    }
    let reason = format!(
        "erased the data file ({bytes} bytes) and the wrapped data key under {}{}",
        dc.key_id,
        if erased {
            "; the store's copies of deleted values erased"
        } else {
            "; the store's engine still holds copies of deleted values"
        }
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
    terminate_one(app, &dc).await?;
    refresh_database_status(app, job.database_id).await
}

pub(super) async fn terminate_database(app: &App, db_id: Uuid) -> AppResult<()> {
    for dc in app.store.list_datacenters(db_id).await? {
        if dc.terminated_at.is_none() {
            terminate_one(app, &dc).await?;
        }
    }
    app.store.mark_database_terminated(db_id).await?;
    Ok(())
}
