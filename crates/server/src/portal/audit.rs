//! Audit: the organization's audit log (every key registration, check, refusal and
//! database change, hash-chained), newest first, a page at a time.
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyplane_app::AppError;
use keyplane_core::Permission;

use super::html::{Nav, esc, page, respond};
use super::{TAG, message_page, signed_in};
use crate::error::app_error_message;
use keyplane_app::App;

/// Entries per page.
const PAGE: u32 = 25;

/// The organization's audit log, newest first, paged by sequence number.
#[utoipa::path(get, path = "/portal/audit", tag = TAG,
    params(("before" = Option<i64>, Query, description = "entries older than this sequence number (the next page)")),
    responses((status = 200, description = "the audit page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn audit_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let hdr = v.header(Nav::Audit);
    if let Err(e) = v.who.require(Permission::OrgAuditRead) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Audit log",
            &hdr,
            &app_error_message(&e),
        );
    }
    let before = match q.get("before").map(|b| b.parse::<i64>()) {
        None => None,
        Some(Ok(b)) if b > 0 => Some(b),
        Some(_) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "Audit log",
                &hdr,
                "That page does not exist: `before` must be a positive entry number.",
            );
        }
    };
    let log = match state
        .audit()
        .page(&v.who, v.who.org_id(), before, Some(PAGE))
        .await
    {
        Ok(p) => p,
        Err(e @ AppError::Forbidden(_)) => {
            return message_page(
                StatusCode::FORBIDDEN,
                "Audit log",
                &hdr,
                &app_error_message(&e),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: reading the audit log");
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Audit log",
                &hdr,
                "The audit log could not be read; please retry.",
            );
        }
    };
    let shown = &log.entries;
    let rows: String = shown
        .iter()
        .map(|e| {
            format!(
                r#"<tr class="audit-entry" data-seq="{seq}"><td data-label="Time"><time datetime="{iso}">{at}</time></td><td data-label="Actor"><code>{actor}</code></td><td data-label="Action">{action}</td><td data-label="Target" class="key">{target}</td><td data-label="Outcome"><span class="status {cls}">{outcome}</span>{reason}</td></tr>"#,
                seq = e.seq,
                iso = esc(&e.at.to_rfc3339()),
                at = esc(&e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                actor = esc(&e.actor),
                action = esc(e.action.as_str()),
                target = esc(&e.target),
                cls = if e.outcome == keyplane_core::audit::AuditOutcome::Success { "AVAILABLE" } else { "INACCESSIBLE" },
                outcome = esc(e.outcome.as_str()),
                reason = if e.reason.is_empty() { String::new() } else { format!(r#"<div class="muted">{}</div>"#, esc(&e.reason)) },
            )
        })
        .collect();
    let mut pager = String::new();
    if before.is_some() {
        pager.push_str(r#"<a href="/portal/audit" rel="first">Newest</a> "#);
    }
    if let Some(next) = log.next {
        pager.push_str(&format!(
            r#"<a href="/portal/audit?before={next}" rel="next">Older entries</a>"#
        ));
    }
    let table = if shown.is_empty() {
        r#"<p class="card">No entries.</p>"#.to_string()
    } else {
        format!(
            r#"<table class="keys" id="audit"><thead><tr><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    let body = format!(
        r#"<h1>Audit log</h1><p class="muted">Every key registration, key check and database change of this organization, newest first. Entries are hash-chained; <code>keyplane admin verify-audit</code> checks the chain.</p>{table}<nav aria-label="Pages" class="pager"><p>{pager}</p></nav>"#
    );
    respond(
        StatusCode::OK,
        page("Audit log", &hdr, &body, None, ""),
        None,
    )
}
