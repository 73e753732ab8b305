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
use keyplane_store::{Datacenter, KeyStatusUpdate, NewAuditEntry};

use crate::app::AppState;
use crate::dataplane::datacenter_context;
use crate::lifecycle::{JobError, key_problem, refresh_database_status};

/// Runs the check every `key_check_interval` until `shutdown` resolves.
pub async fn run_monitor(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(state.config.key_check_interval) => {}
        }
        if let Err(e) = check_all(&state).await {
            tracing::error!(error = %e, "key health check failed");
        }
    }
}

/// A key's DescribeKey answer within one round, shared by every datacenter under that key.
type Described = HashMap<(String, String, String), Result<(), (ErrorKind, String)>>;

/// Checks every live customer-keyed datacenter now.
pub async fn check_all(state: &AppState) -> Result<(), JobError> {
    check_datacenters(state, &state.store.live_customer_datacenters().await?).await
}

/// Checks these datacenters now (the monitor's round, and the `…/check` route for one key's):
/// one DescribeKey per key, and a Decrypt of each datacenter's own wrapped data key.
pub async fn check_datacenters(state: &AppState, dcs: &[Datacenter]) -> Result<(), JobError> {
    let mut described = Described::new();
    for dc in dcs {
        check_with(state, dc, &mut described).await?;
    }
    Ok(())
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
async fn probe(
    state: &AppState,
    dc: &Datacenter,
    described: &mut Described,
) -> Result<(), KmsError> {
    let kms = state.kms.connect(&state.data.identity(dc))?;
    describe(dc, kms.as_ref(), described).await?;
    if let Some(wrapped) = &dc.wrapped_data_key {
        kms.decrypt(&dc.key_id, wrapped, &datacenter_context(dc))
            .await?;
    }
    Ok(())
}

async fn check_with(
    state: &AppState,
    dc: &Datacenter,
    described: &mut Described,
) -> Result<(), JobError> {
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

/// Suspends the datacenter: its cached key and open file are dropped at once.
pub async fn suspend(state: &AppState, dc: &Datacenter, reason: &str) -> Result<(), JobError> {
    state.data.suspend(&dc.id, reason);
    state.data.forget(&dc.id).await;
    if dc.status != DatabaseStatus::Suspended || dc.message != reason {
        state
            .store
            .set_datacenter_status(&dc.id, DatabaseStatus::Suspended, reason)
            .await?;
        refresh_database_status(state, dc.database_id).await?;
        if dc.status != DatabaseStatus::Suspended {
            audit(state, dc, AuditAction::DatacenterSuspend, reason).await;
            tracing::warn!(datacenter = %dc.id, reason, "datacenter suspended");
        }
    }
    Ok(())
}

async fn audit(state: &AppState, dc: &Datacenter, action: AuditAction, reason: &str) {
    let entry = NewAuditEntry {
        org_id: dc.org_id,
        actor: "system:key-monitor".into(),
        action,
        target: format!("{} {}", dc.id, dc.key_id),
        outcome: AuditOutcome::Success,
        reason: reason.into(),
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, "could not append to the audit log");
    }
}

async fn db_type(state: &AppState, dc: &Datacenter) -> Result<Option<DbType>, JobError> {
    Ok(state
        .store
        .get_database(dc.org_id, dc.database_id)
        .await?
        .map(|d| d.db_type))
}

async fn record_key(
    state: &AppState,
    dc: &Datacenter,
    status: KeyStatus,
    reason: Option<&str>,
    ok: bool,
    message: &str,
) -> Result<(), JobError> {
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
async fn record_check_only(
    state: &AppState,
    dc: &Datacenter,
    ok: bool,
    message: &str,
) -> Result<(), JobError> {
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
