//! Provisioning a datacenter: a data key generated under the datacenter's KMS key (only its
//! wrapped form is stored), the encrypted file, a copy of the database's data when a region
//! is added, then ACTIVE. A process that keeps no datacenter files (`--role api`) stops
//! after the data key: the files are a data node's (issue 11 part 2).
use chrono::Utc;
use keyplane_core::{DatabaseStatus, KeyStatus};
use keyplane_store::{Datacenter, Job, KeyKind, KeyStatusUpdate};

use super::refresh_database_status;
use crate::App;
use crate::dataplane::datacenter_context;
use crate::error::{AppError, AppResult};

pub(super) async fn provision(app: &App, job: &Job) -> AppResult<()> {
    let dc_id = job
        .datacenter_id
        .as_deref()
        .ok_or_else(|| AppError::bug("provision job without a datacenter"))?;
    let Some(mut dc) = app.store.get_datacenter(dc_id).await? else {
        return Ok(());
    };
    if dc.terminated_at.is_some() || dc.status == DatabaseStatus::Active {
        return Ok(());
    }
    if dc.status != DatabaseStatus::Initializing {
        app.store
            .set_datacenter_status(&dc.id, DatabaseStatus::Initializing, "")
            .await?;
    }
    if let Some(db) = app.store.get_database(dc.org_id, dc.database_id).await?
        && db.status == DatabaseStatus::Pending
    {
        app.store
            .set_database_status(db.id, DatabaseStatus::Initializing, "")
            .await?;
    }
    if dc.wrapped_data_key.is_none() {
        let kms = app.data.key_provider(&dc).await?;
        let wrapped = kms
            .generate_data_key_without_plaintext(&dc.key_id, &datacenter_context(&dc))
            .await?;
        app.store.set_wrapped_data_key(&dc.id, &wrapped).await?;
        // Re-read: if a previous run stored one first, that one is the key of record.
        dc = app
            .store
            .get_datacenter(&dc.id)
            .await?
            .ok_or_else(|| AppError::bug(format!("datacenter {} vanished", dc.id)))?;
    }
    if !app.config.role.holds_data_files() {
        return activate(app, &dc).await;
    }
    let keyspace = app
        .store
        .get_database(dc.org_id, dc.database_id)
        .await?
        .map(|d| d.keyspace)
        .unwrap_or_default();
    app.data.create_file(&dc, &keyspace).await?;
    // A region added to a database with data gets a copy of it (and its write number); writes
    // wait meanwhile so none is acknowledged without reaching this region.
    let lock = app.data.write_lock(&dc.database_id).await;
    let _exclusive = lock.write().await;
    if let Some(copied) = app.data.copy_into_new_region(&dc).await? {
        tracing::info!(datacenter = %dc.id, documents = copied, "copied the database into the new region");
    }
    activate(app, &dc).await
}

/// The last step: the datacenter ACTIVE (SUSPENDED if its key was revoked meanwhile), its
/// customer key IN_USE, the database's status.
async fn activate(app: &App, dc: &Datacenter) -> AppResult<()> {
    if app.store.activate_datacenter(&dc.id).await? == DatabaseStatus::Suspended {
        // Revoked while it was provisioned: refused here at once, as everywhere else.
        if let Some(now) = app.store.get_datacenter(&dc.id).await? {
            app.data.suspend(&dc.id, &now.message);
            app.data.forget(&dc.id).await;
        }
        tracing::warn!(datacenter = %dc.id, "provisioned under a key revoked meanwhile: SUSPENDED");
    }
    if dc.key_kind == KeyKind::Customer {
        mark_key_in_use(app, dc).await?;
    }
    refresh_database_status(app, dc.database_id).await?;
    Ok(())
}

async fn mark_key_in_use(app: &App, dc: &Datacenter) -> AppResult<()> {
    let Some(db) = app.store.get_database(dc.org_id, dc.database_id).await? else {
        return Ok(());
    };
    let Some(key) = app
        .store
        .get_customer_key(dc.org_id, db.db_type, dc.provider, &dc.region)
        .await?
    else {
        return Ok(());
    };
    // The slot's key, unless it was replaced since this datacenter was bound to its key.
    if key.status == KeyStatus::Available && key.key_id == dc.key_id {
        app.store
            .update_customer_key_status(
                dc.org_id,
                db.db_type,
                dc.provider,
                &dc.region,
                &KeyStatusUpdate {
                    key_id: dc.key_id.clone(),
                    status: KeyStatus::InUse,
                    status_reason: None,
                    checked_at: Utc::now(),
                    check_ok: true,
                    check_message: format!("encrypts datacenter {}", dc.id),
                },
            )
            .await?;
    }
    Ok(())
}
