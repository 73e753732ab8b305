//! The append-only audit log: recording (done by the services, never by a transport) and
//! reading an organization's log. A failure to record is logged and does not fail the
//! request it describes: the request's own outcome already happened.
use keyplane_core::Permission;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_store::{AuditEntry, NewAuditEntry};
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::error::{AppError, AppResult, INTERNAL_MESSAGE};

/// Appends one entry.
pub(crate) async fn record(
    app: &App,
    org_id: Uuid,
    actor: String,
    action: AuditAction,
    target: &str,
    outcome: AuditOutcome,
    reason: &str,
) {
    let entry = NewAuditEntry {
        org_id,
        actor,
        action,
        target: target.to_string(),
        outcome,
        reason: reason.to_string(),
    };
    match app.store.append_audit(&entry).await {
        Err(e) => tracing::error!(error = %e, %action, target, "could not append to the audit log"),
        Ok(_) if outcome == AuditOutcome::Success && keyplane_core::webhook::is_event(action) => {
            app.webhook_wake.notify_one();
        }
        Ok(_) => {}
    }
}

/// Appends one entry about what `who` asked for.
pub(crate) async fn record_for(
    app: &App,
    who: &Requester,
    action: AuditAction,
    target: &str,
    outcome: AuditOutcome,
    reason: &str,
) {
    record(
        app,
        who.org_id(),
        who.actor(),
        action,
        target,
        outcome,
        reason,
    )
    .await;
}

/// The outcome an error is recorded with: a permission refusal is `denied`.
pub(crate) fn outcome_of(e: &AppError) -> AuditOutcome {
    match e {
        AppError::Forbidden(_) => AuditOutcome::Denied,
        _ => AuditOutcome::Failure,
    }
}

/// What a client may read about an error: keyplane's own failures stay in the log.
pub(crate) fn reason_of(e: &AppError) -> String {
    match e {
        AppError::Store(_) | AppError::Kms(_) | AppError::Internal(_) => {
            INTERNAL_MESSAGE.to_string()
        }
        other => other.to_string(),
    }
}

/// Records a result: success with `detail`, or the refusal and its reason.
pub(crate) async fn record_result<T>(
    app: &App,
    who: &Requester,
    action: AuditAction,
    target: &str,
    res: &AppResult<T>,
    detail: &str,
) {
    match res {
        Ok(_) => record_for(app, who, action, target, AuditOutcome::Success, detail).await,
        Err(e) => record_for(app, who, action, target, outcome_of(e), &reason_of(e)).await,
    }
}

/// One page of an organization's audit log, newest first.
#[derive(Debug, Clone)]
pub struct AuditLogPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; None on the last page.
    pub next: Option<i64>,
}

/// Reading the audit log.
pub struct Audit<'a>(pub(crate) &'a App);

impl Audit<'_> {
    /// Entries of `org_id` older than `before`, newest first, `limit` (1 to 500, default 50)
    /// at a time.
    pub async fn page(
        &self,
        who: &Requester,
        org_id: Uuid,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> AppResult<AuditLogPage> {
        who.require(Permission::OrgAuditRead)?;
        who.own_org(org_id)?;
        let limit = limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(AppError::invalid_parameter(
                "limit",
                "limit: must be between 1 and 500",
            ));
        }
        let mut entries = self.0.store.list_audit(org_id, before, limit + 1).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next = if more {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditLogPage { entries, next })
    }
}
