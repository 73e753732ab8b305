//! Organizations: the caller's own, one by ID, and its audit log.
use axum::Json;
use axum::extract::State;
use keyplane_app::App;
use keyplane_store::{AuditEntry, Organization};
use serde::Serialize;
use uuid::Uuid;

use super::ts;
use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery, Auth};

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
pub async fn current_org(State(app): State<App>, Auth(who): Auth) -> ApiResult<Json<CurrentOrg>> {
    let org = app.orgs().current(&who)?;
    Ok(Json(CurrentOrg {
        id: org.id,
        name: org.name,
    }))
}

fn org_view(org: Organization) -> OrgView {
    OrgView {
        id: org.id,
        name: org.name,
        enterprise_id: org.enterprise_id,
        created_at: ts(org.created_at),
    }
}

/// One organization; only the token's own is visible.
#[utoipa::path(get, path = "/v2/organizations/{id}", tag = "organizations", security(("token" = [])),
    params(("id" = Uuid, Path, description = "organization ID")),
    responses(
        (status = 200, body = OrgView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn get_org(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<OrgView>> {
    Ok(Json(org_view(app.orgs().get(&who, id)?)))
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

fn entry_view(e: AuditEntry) -> AuditEntryView {
    AuditEntryView {
        seq: e.seq,
        at: ts(e.at),
        actor: e.actor,
        action: e.action.to_string(),
        target: e.target,
        outcome: e.outcome.to_string(),
        reason: e.reason,
        hash: e.hash,
    }
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
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let page = app.audit().page(&who, id, q.before, q.limit).await?;
    Ok(Json(AuditPage {
        entries: page.entries.into_iter().map(entry_view).collect(),
        next: page.next,
    }))
}
