//! Recording to the append-only audit log. A failure to record is logged and does not
//! fail the request it describes: the request's own outcome already happened.
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_store::NewAuditEntry;

use crate::app::AppState;
use crate::auth::Caller;

pub const SUCCESS: AuditOutcome = AuditOutcome::Success;
pub const FAILURE: AuditOutcome = AuditOutcome::Failure;
pub const DENIED: AuditOutcome = AuditOutcome::Denied;

pub async fn record(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    target: &str,
    outcome: AuditOutcome,
    reason: &str,
) {
    let entry = NewAuditEntry {
        org_id: caller.org_id(),
        actor: format!("token:{}", caller.client_id),
        action,
        target: target.to_string(),
        outcome,
        reason: reason.to_string(),
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, %action, target, "could not append to the audit log");
    }
}
