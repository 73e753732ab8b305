//! Key health: every in-use customer key is checked on an interval with DescribeKey and a
//! Decrypt of each datacenter's wrapped data key. A key the platform can no longer use
//! suspends its datacenters at once; errors that say nothing about the key (timeouts,
//! throttling, 5xx) suspend nothing until they have lasted the grace period. When the key
//! is usable again, the datacenters return to ACTIVE by themselves.
use std::collections::HashMap;

use chrono::Utc;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::{DatabaseStatus, DbType, KeyStatus};
use keyplane_kms::{ErrorKind, KeyState, KmsError};
use keyplane_store::{Datacenter, KeyStatusUpdate};

use crate::App;
use crate::dataplane::datacenter_context;
use crate::error::AppResult;
use crate::jobs::refresh_database_status;
use crate::keys::key_problem;

/// Who the audit log says acted when the monitor suspends or resumes a datacenter.
pub const MONITOR_ACTOR: &str = "system:key-monitor";

/// Runs the check every `key_check_interval` until `shutdown` resolves.
pub async fn run_monitor(app: App, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(app.config.key_check_interval) => {}
        }
        if let Err(e) = app.monitor().check_all().await {
            tracing::error!(error = %e, "key health check failed");
        }
    }
}

/// A key's DescribeKey answer within one round, shared by every datacenter under that key.
type Described = HashMap<(String, String, String), Result<(), (ErrorKind, String)>>;

pub struct Monitor<'a>(pub(crate) &'a App);

impl Monitor<'_> {
    /// Checks every live customer-keyed datacenter now: one round.
    pub async fn check_all(&self) -> AppResult<()> {
        let dcs = self.0.store.live_customer_datacenters().await?;
        self.check_datacenters(&dcs).await?;
        self.0.counters.monitor_round();
        Ok(())
    }

    /// Checks these datacenters now (a round, or one key's on request): one DescribeKey
    /// per key, and a Decrypt of each datacenter's own wrapped data key.
    pub async fn check_datacenters(&self, dcs: &[Datacenter]) -> AppResult<()> {
        let mut described = Described::new();
        for dc in dcs {
            check_with(self.0, dc, &mut described).await?;
        }
        Ok(())
    }

    /// Suspends the datacenter: its cached key and open file are dropped at once.
    pub async fn suspend(&self, dc: &Datacenter, reason: &str) -> AppResult<()> {
        suspend(self.0, dc, reason).await
    }
}

/// Whether the key is in a state that can be used, asking the KMS once per key.
async fn describe(
    dc: &Datacenter,
    kms: &dyn keyplane_kms::KeyProvider,
    described: &mut Described,
) -> Result<(), KmsError> {
    let id = (
        dc.key_id.clone(),
        dc.provider_account.clone(),
        dc.region.clone(),
    );
    if let Some(known) = described.get(&id) {
        return known
            .clone()
            .map_err(|(kind, message)| KmsError::new(kind, "DescribeKey", message));
    }
    let answer = match kms.describe_key(&dc.key_id).await {
        Ok(desc) => match desc.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err((ErrorKind::Disabled, "key state Disabled".to_string())),
            KeyState::PendingDeletion => Err((
                ErrorKind::PendingDeletion,
                "key state PendingDeletion".to_string(),
            )),
            KeyState::Other(s) => Err((ErrorKind::InvalidState, format!("key state {s}"))),
        },
        Err(e) => Err((e.kind, e.message)),
    };
    described.insert(id, answer.clone());
    answer.map_err(|(kind, message)| KmsError::new(kind, "DescribeKey", message))
}

/// The result of asking the KMS whether the datacenter's key still works.
async fn probe(state: &App, dc: &Datacenter, described: &mut Described) -> Result<(), KmsError> {
    let kms = state.kms.connect(&state.data.identity(dc))?;
    describe(dc, kms.as_ref(), described).await?;
    if let Some(wrapped) = &dc.wrapped_data_key {
        kms.decrypt(&dc.key_id, wrapped, &datacenter_context(dc))
            .await?;
    }
    Ok(())
}

async fn check_with(state: &App, dc: &Datacenter, described: &mut Described) -> AppResult<()> {
    if !matches!(
        dc.status,
        DatabaseStatus::Active | DatabaseStatus::Suspended | DatabaseStatus::Maintenance
    ) || dc.wrapped_data_key.is_none()
    {
        return Ok(());
    }
    let now = Utc::now();
    match probe(state, dc, described).await {
        Ok(()) => {
            if dc.kms_failing_since.is_some() {
                state.store.set_kms_failing_since(&dc.id, None).await?;
            }
            if dc.status == DatabaseStatus::Suspended {
                state
                    .store
                    .set_datacenter_status(&dc.id, DatabaseStatus::Active, "")
                    .await?;
                state.data.resume(&dc.id);
                refresh_database_status(state, dc.database_id).await?;
                audit(
                    state,
                    dc,
                    AuditAction::DatacenterResume,
                    "the key is usable again",
                )
                .await;
                tracing::info!(datacenter = %dc.id, "key usable again; datacenter ACTIVE");
            }
            record_key(state, dc, KeyStatus::InUse, None, true, "the key is usable").await
        }
        Err(e) if e.kind.is_transient() => {
            let since = dc.kms_failing_since.unwrap_or(now);
            if dc.kms_failing_since.is_none() {
                state.store.set_kms_failing_since(&dc.id, Some(now)).await?;
            }
            let grace =
                chrono::Duration::from_std(state.config.kms_grace_period).unwrap_or_default();
            let reason = format!(
                "{} (failing since {}; grace period {} s)",
                key_problem(&e.kind, &dc.key_id, &e.message),
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                state.config.kms_grace_period.as_secs()
            );
            if now - since >= grace {
                suspend(state, dc, &reason).await?;
                record_key(
                    state,
                    dc,
                    KeyStatus::Inaccessible,
                    Some(&reason),
                    false,
                    &reason,
                )
                .await
            } else {
                tracing::warn!(datacenter = %dc.id, error = %e, "KMS error that says nothing about the key; within the grace period");
                record_check_only(state, dc, false, &reason).await
            }
        }
        Err(e) => {
            let reason = key_problem(&e.kind, &dc.key_id, &e.message);
            suspend(state, dc, &reason).await?;
            record_key(
                state,
                dc,
                KeyStatus::Inaccessible,
                Some(&reason),
                false,
                &reason,
            )
            .await
        }
    }
}

async fn suspend(state: &App, dc: &Datacenter, reason: &str) -> AppResult<()> {
    state.data.suspend(&dc.id, reason);
    state.data.forget(&dc.id).await;
    if dc.status != DatabaseStatus::Suspended || dc.message != reason {
        state
            .store
            .set_datacenter_status(&dc.id, DatabaseStatus::Suspended, reason)
            .await?;
        refresh_database_status(state, dc.database_id).await?;
        if dc.status != DatabaseStatus::Suspended {
            state.counters.suspension();
            audit(state, dc, AuditAction::DatacenterSuspend, reason).await;
            tracing::warn!(datacenter = %dc.id, reason, "datacenter suspended");
        }
    }
    Ok(())
}

async fn audit(state: &App, dc: &Datacenter, action: AuditAction, reason: &str) {
    crate::audit::record(
        state,
        dc.org_id,
        MONITOR_ACTOR.to_string(),
        action,
        &format!("{} {}", dc.id, dc.key_id),
        AuditOutcome::Success,
        reason,
    )
    .await;
}

async fn db_type(state: &App, dc: &Datacenter) -> AppResult<Option<DbType>> {
    Ok(state
        .store
        .get_database(dc.org_id, dc.database_id)
        .await?
        .map(|d| d.db_type))
}

async fn record_key(
    state: &App,
    dc: &Datacenter,
    status: KeyStatus,
    reason: Option<&str>,
    ok: bool,
    message: &str,
) -> AppResult<()> {
    let Some(t) = db_type(state, dc).await? else {
        return Ok(());
    };
    state
        .store
        .update_customer_key_status(
            dc.org_id,
            t,
            dc.provider,
            &dc.region,
            &KeyStatusUpdate {
                status,
                status_reason: reason.map(str::to_string),
                checked_at: Utc::now(),
                check_ok: ok,
                check_message: message.to_string(),
            },
        )
        .await?;
    Ok(())
}

/// Records a failed check without changing the key's status (grace period).
async fn record_check_only(state: &App, dc: &Datacenter, ok: bool, message: &str) -> AppResult<()> {
    let Some(t) = db_type(state, dc).await? else {
        return Ok(());
    };
    let Some(key) = state
        .store
        .get_customer_key(dc.org_id, t, dc.provider, &dc.region)
        .await?
    else {
        return Ok(());
    };
    state
        .store
        .update_customer_key_status(
            dc.org_id,
            t,
            dc.provider,
            &dc.region,
            &KeyStatusUpdate {
                status: key.status,
                status_reason: key.status_reason.clone(),
                checked_at: Utc::now(),
                check_ok: ok,
                check_message: message.to_string(),
            },
        )
        .await?;
    Ok(())
}
