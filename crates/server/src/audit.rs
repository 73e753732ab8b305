//! Recording to the append-only audit log. A failure to record is logged and does not
//! fail the request it describes: the request's own outcome already happened.
use keyplane_store::NewAuditEntry;

use crate::app::AppState;
use crate::auth::Caller;

pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";
pub const DENIED: &str = "denied";

pub async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    outcome: &str,
    reason: &str,
) {
    let entry = NewAuditEntry {
        org_id: caller.org_id(),
        actor: format!("token:{}", caller.client_id),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        reason: reason.to_string(),
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, action, target, "could not append to the audit log");
    }
}
