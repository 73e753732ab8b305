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
        created_at: org.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}
