//! Organizations: the caller's own, and one by ID.
use axum::Json;
use keyplane_core::Permission;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::ApiPath;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CurrentOrg {
    pub id: Uuid,
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    pub id: Uuid,
    pub name: String,
    pub enterprise_id: Option<Uuid>,
    pub created_at: String,
}

/// The organization of the calling token.
#[utoipa::path(get, path = "/v2/currentOrg", tag = "organizations", security(("token" = [])), responses(
    (status = 200, body = CurrentOrg),
    (status = 401, body = crate::error::ErrorBody),
    (status = 403, body = crate::error::ErrorBody),
))]
pub async fn current_org(caller: Caller) -> ApiResult<Json<CurrentOrg>> {
    caller.require(Permission::OrgRead)?;
    Ok(Json(CurrentOrg {
        id: caller.org.id,
        name: caller.org.name.clone(),
    }))
}

/// One organization; only the token's own is visible.
#[utoipa::path(get, path = "/v2/organizations/{id}", tag = "organizations", security(("token" = [])),
    params(("id" = Uuid, Path, description = "organization ID")),
    responses(
        (status = 200, body = OrgView),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn get_org(caller: Caller, ApiPath(id): ApiPath<Uuid>) -> ApiResult<Json<OrgView>> {
    caller.require(Permission::OrgRead)?;
    caller.own_org(id, "organization")?;
    let org = &caller.org;
    Ok(Json(OrgView {
        id: org.id,
        name: org.name.clone(),
        enterprise_id: org.enterprise_id,
        created_at: org
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    /// Entries older than this sequence number (the `next` of the previous page).
    before: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub reason: String,
    pub hash: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<i64>,
}

/// The organization's audit log, newest first, paged.
#[utoipa::path(get, path = "/v2/organizations/{id}/audit", tag = "organizations", security(("token" = [])),
    params(
        ("id" = Uuid, Path, description = "organization ID"),
        ("before" = Option<i64>, Query, description = "entries older than this sequence number"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 500, default 50"),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn audit_log(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    caller.require(Permission::OrgAuditRead)?;
    caller.own_org(id, "organization")?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(crate::error::ApiError::BadParameter(
            "limit: must be between 1 and 500".into(),
        ));
    }
    let entries = state.store.list_audit(id, q.before, limit + 1).await?;
    let more = entries.len() > limit as usize;
    let entries: Vec<AuditEntryView> = entries
        .into_iter()
        .take(limit as usize)
        .map(|e| AuditEntryView {
            seq: e.seq,
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: e.actor,
            action: e.action.to_string(),
            target: e.target,
            outcome: e.outcome.to_string(),
            reason: e.reason,
            hash: e.hash,
        })
        .collect();
    let next = if more {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(AuditPage { entries, next }))
}
