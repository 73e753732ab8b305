//! Terminating a datacenter (one region) or a whole database: the files are deleted and the
//! wrapped data key forgotten (crypto-shredding), then the rows are marked TERMINATED.
use keyplane_store::Job;
use uuid::Uuid;

use super::refresh_database_status;
use crate::App;
use crate::error::{AppError, AppResult};

async fn terminate_one(app: &App, dc_id: &str) -> AppResult<()> {
    app.data.delete_files(dc_id).await?;
    app.data.resume(dc_id);
    app.store.mark_datacenter_terminated(dc_id).await?;
    Ok(())
}

pub(super) async fn terminate_datacenter(app: &App, job: &Job) -> AppResult<()> {
    let dc_id = job
        .datacenter_id
        .as_deref()
        .ok_or_else(|| AppError::bug("terminate job without a datacenter"))?;
    terminate_one(app, dc_id).await?;
    refresh_database_status(app, job.database_id).await
}

pub(super) async fn terminate_database(app: &App, db_id: Uuid) -> AppResult<()> {
    for dc in app.store.list_datacenters(db_id).await? {
        if dc.terminated_at.is_none() {
            terminate_one(app, &dc.id).await?;
        }
    }
    app.store.mark_database_terminated(db_id).await?;
    Ok(())
}
