//! Data-key rotation as a use case: on the customer's request (`POST …/rotate-data-key`) or on
//! the schedule (every datacenter whose data key is older than the configured interval,
//! default 30 days), each audited, which also tells the organization's webhooks. The file
//! work itself is the data plane's (`dataplane::rotation`).
use std::time::Duration;

use chrono::Utc;
use keyplane_core::Permission;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_store::Datacenter;
use uuid::Uuid;

use crate::App;
use crate::audit::{reason_of, record, record_result};
use crate::auth::Requester;
use crate::dataplane::RotatedDataKey;
use crate::error::{AppError, AppResult, Resource};

/// Who the audit log names for a rotation the schedule made.
const SCHEDULE_ACTOR: &str = "system:data-key-rotation";
/// Datacenters the schedule takes per look: one at a time, so a look never holds many
/// databases' writes.
const DUE_PER_LOOK: u32 = 16;

/// Rotating datacenters' data keys.
pub struct DataKeys<'a>(pub(crate) &'a App);

fn summary(r: &RotatedDataKey) -> String {
    format!(
        "re-encrypted {} bytes under a new data key in {} ms; writes waited {} ms, reads {} ms",
        r.bytes,
        r.took.as_millis(),
        r.writes_paused.as_millis(),
        r.reads_paused.as_millis()
    )
}

impl DataKeys<'_> {
    /// Rotates the data key of one of the requester's datacenters now, and answers the
    /// datacenter as it is then.
    pub async fn rotate(
        &self,
        who: &Requester,
        database_id: Uuid,
        datacenter_id: &str,
    ) -> AppResult<(Datacenter, RotatedDataKey)> {
        let action = AuditAction::DatacenterRotateDataKey;
        let result = self.rotate_checked(who, database_id, datacenter_id).await;
        let detail = result.as_ref().map(|(_, r)| summary(r)).unwrap_or_default();
        record_result(self.0, who, action, datacenter_id, &result, &detail).await;
        result
    }

    async fn rotate_checked(
        &self,
        who: &Requester,
        database_id: Uuid,
        datacenter_id: &str,
    ) -> AppResult<(Datacenter, RotatedDataKey)> {
        who.require(Permission::OrgCmkWrite)?;
        let app = self.0;
        let not_found = || {
            AppError::NotFound(Resource::Datacenter {
                database: database_id,
                datacenter: datacenter_id.to_string(),
            })
        };
        let db = app
            .store
            .get_database(who.org_id(), database_id)
            .await?
            .ok_or(AppError::NotFound(Resource::Database(database_id)))?;
        app.store
            .get_datacenter(datacenter_id)
            .await?
            .filter(|d| d.database_id == db.id && d.terminated_at.is_none())
            .ok_or_else(not_found)?;
        app.serves_data()?;
        let rotated = app.data.rotate_data_key(datacenter_id).await?;
        let dc = app
            .store
            .get_datacenter(datacenter_id)
            .await?
            .ok_or_else(not_found)?;
        Ok((dc, rotated))
    }

    /// One look of the schedule: rotates every datacenter whose data key is due, and settles
    /// any rotation a crash left pending on one that is not; returns how many were rotated.
    pub async fn rotate_due(&self) -> AppResult<usize> {
        let app = self.0;
        let interval = app.config.data_key_rotation;
        let Ok(age) = chrono::Duration::from_std(interval) else {
            return Ok(0);
        };
        let before = Utc::now() - age;
        let mut rotated = 0;
        for dc in app.store.data_keys_due(before, DUE_PER_LOOK).await? {
            // Only left pending by a crash, not due: settled (the file's one key of record
            // confirmed), not rotated again.
            if dc.data_key_rotated_at.unwrap_or(dc.created_at) >= before {
                if let Err(e) = app.data.settle_rotation(&dc.id).await {
                    tracing::warn!(datacenter = %dc.id, error = %e, "settling an interrupted data-key rotation failed; retried at the next look");
                }
                continue;
            }
            let (result, reason) = match app.data.rotate_data_key(&dc.id).await {
                Ok(r) => {
                    rotated += 1;
                    (AuditOutcome::Success, summary(&r))
                }
                Err(e) => {
                    tracing::warn!(datacenter = %dc.id, error = %e, "scheduled data-key rotation failed; retried at the next look");
                    (AuditOutcome::Failure, reason_of(&e))
                }
            };
            record(
                app,
                dc.org_id,
                SCHEDULE_ACTOR.to_string(),
                AuditAction::DatacenterRotateDataKey,
                &dc.id,
                result,
                &reason,
            )
            .await;
        }
        Ok(rotated)
    }
}

/// How often the schedule looks for due data keys: a hundredth of the interval, between 1 s
/// and an hour, so a key is rotated at most that late.
pub fn schedule_period(interval: Duration) -> Duration {
    (interval / 100).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Rotates due data keys until `shutdown` resolves; nothing when the interval is zero or the
/// process keeps no datacenter files.
pub async fn run_schedule(app: App, shutdown: impl std::future::Future<Output = ()>) {
    let interval = app.config.data_key_rotation;
    if interval.is_zero() || !app.config.role.holds_data_files() {
        return;
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(schedule_period(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let keys = app.data_keys();
        tokio::select! {
            _ = &mut shutdown => return,
            r = keys.rotate_due() => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "looking for due data keys failed; retrying");
                }
            }
        }
    }
}
