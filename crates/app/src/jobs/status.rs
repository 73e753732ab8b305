//! A database's status follows its live datacenters: SUSPENDED if one is, MAINTENANCE
//! while a region is added or removed, ERROR if all failed, else ACTIVE (naming the failed
//! ones).
use keyplane_core::DatabaseStatus;
use keyplane_store::{Datacenter, REMOVING_A_REGION};
use uuid::Uuid;

use crate::App;
use crate::error::AppResult;

/// Recomputes the database's status from its datacenters and stores it if it changed.
pub async fn refresh_database_status(app: &App, db_id: Uuid) -> AppResult<()> {
    let dcs = app.store.list_datacenters(db_id).await?;
    let Some(first) = dcs.first() else {
        return Ok(());
    };
    let Some(db) = app.store.get_database(first.org_id, db_id).await? else {
        return Ok(());
    };
    if matches!(
        db.status,
        DatabaseStatus::Terminating | DatabaseStatus::Terminated
    ) {
        return Ok(());
    }
    let live: Vec<&Datacenter> = dcs.iter().filter(|d| d.terminated_at.is_none()).collect();
    let (status, message) =
        if let Some(s) = live.iter().find(|d| d.status == DatabaseStatus::Suspended) {
            (
                DatabaseStatus::Suspended,
                format!("region {}: {}", s.region, s.message),
            )
        } else if live.iter().any(|d| d.status == DatabaseStatus::Terminating) {
            (DatabaseStatus::Maintenance, REMOVING_A_REGION.to_string())
        } else if live.iter().all(|d| d.status == DatabaseStatus::Error) {
            let m = live.first().map(|d| d.message.clone()).unwrap_or_default();
            (DatabaseStatus::Error, m)
        } else if live.iter().any(|d| {
            matches!(
                d.status,
                DatabaseStatus::Pending | DatabaseStatus::Initializing
            )
        }) {
            if db.status == DatabaseStatus::Maintenance
                || live.iter().any(|d| d.status == DatabaseStatus::Active)
            {
                (DatabaseStatus::Maintenance, "adding a region".to_string())
            } else {
                (DatabaseStatus::Initializing, String::new())
            }
        } else {
            let failed: Vec<String> = live
                .iter()
                .filter(|d| d.status == DatabaseStatus::Error)
                .map(|d| d.message.clone())
                .collect();
            (DatabaseStatus::Active, failed.join("; "))
        };
    if status != db.status || message != db.message {
        app.store
            .set_database_status(db_id, status, &message)
            .await?;
    }
    Ok(())
}
