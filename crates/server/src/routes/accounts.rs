//! The platform's cloud accounts that a customer's key policy must trust (the "provider
//! ID"). An organization's account is chosen once and stored, so the answer never changes
//! under a key policy that already names it.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_core::{Permission, Provider};
use keyplane_store::AccountAssignment;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::config::ProviderAccount;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::regions::{check_region, parse_provider};

/// How often a racing assignment is re-read before giving up; two is enough in practice.
const ASSIGN_ATTEMPTS: usize = 8;

#[derive(Serialize, Deserialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccountView {
    pub organization_id: Uuid,
    /// The platform account to allow in the key policy, e.g. AWS `arn:aws:iam::<provider_id>:role/creator`.
    pub provider_id: String,
    pub provider: Provider,
}

#[derive(Deserialize)]
pub struct RegionPath {
    provider: String,
    region: String,
}

#[derive(Deserialize)]
pub struct ProviderPath {
    provider: String,
}

fn view(org: Uuid, provider: Provider, id: &str) -> ProviderAccountView {
    ProviderAccountView {
        organization_id: org,
        provider_id: id.to_string(),
        provider,
    }
}

/// Picks the least-used account among `candidates` (ties: configuration order).
async fn least_used<'a>(
    state: &AppState,
    provider: Provider,
    candidates: &[&'a ProviderAccount],
) -> ApiResult<Option<&'a ProviderAccount>> {
    let usage = state.store.account_usage(provider).await?;
    Ok(candidates
        .iter()
        .copied()
        .min_by_key(|a| usage.get(&a.id).copied().unwrap_or(0)))
}

/// The organization's accounts that serve `region`, assigning one on first use.
pub async fn accounts_for_region(
    state: &AppState,
    org: Uuid,
    provider: Provider,
    region: &str,
) -> ApiResult<Vec<AccountAssignment>> {
    let serving: Vec<&ProviderAccount> = state
        .config
        .accounts(provider)
        .iter()
        .filter(|a| a.serves(region))
        .collect();
    if serving.is_empty() {
        return Err(ApiError::RegionUnavailable(format!(
            "the platform has no {provider} account configured for region {region}; contact support"
        )));
    }
    for _ in 0..ASSIGN_ATTEMPTS {
        let assigned = state.store.assigned_accounts(org, provider).await?;
        let mine: Vec<AccountAssignment> = assigned
            .iter()
            .filter(|a| serving.iter().any(|s| s.id == a.account_id))
            .cloned()
            .collect();
        if !mine.is_empty() {
            return Ok(mine);
        }
        let free: Vec<&ProviderAccount> = serving
            .iter()
            .copied()
            .filter(|s| !assigned.iter().any(|a| a.account_id == s.id))
            .collect();
        let Some(pick) = least_used(state, provider, &free).await? else {
            break;
        };
        let ordinal = assigned.len() as i64;
        state
            .store
            .try_assign_account(org, provider, &pick.id, ordinal)
            .await?;
        // Whether we won or another request did, the next read shows the settled answer.
    }
    Err(ApiError::Conflict(
        "could not settle the provider account assignment; retry the request".into(),
    ))
}

async fn list(
    state: AppState,
    caller: Caller,
    path: RegionPath,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    caller.require(Permission::OrgCmkRead)?;
    let provider = parse_provider(&path.provider)?;
    check_region(&state.config, &caller.org, provider, &path.region)?;
    let mine = accounts_for_region(&state, caller.org_id(), provider, &path.region).await?;
    Ok(Json(
        mine.iter()
            .map(|a| view(caller.org_id(), provider, &a.account_id))
            .collect(),
    ))
}

/// The platform account(s) to trust for Managed Clusters (classic) keys in a region.
#[utoipa::path(get, path = "/v2/kms/classic/provider/{provider}/region/{region}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = String, Path, description = "aws, gcp or azure"), ("region" = String, Path, description = "the cloud's region name, e.g. us-east-2")),
    responses(
        (status = 200, body = Vec<ProviderAccountView>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn classic_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(state, caller, path).await
}

/// The platform account(s) to trust for serverless keys in a region.
#[utoipa::path(get, path = "/v2/kms/provider/{provider}/region/{region}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = String, Path, description = "aws, gcp or azure"), ("region" = String, Path, description = "the cloud's region name")),
    responses(
        (status = 200, body = Vec<ProviderAccountView>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn serverless_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(state, caller, path).await
}

/// Assigns the organization one more platform account of the provider.
#[utoipa::path(post, path = "/v2/kms/classic/provider/{provider}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = String, Path, description = "aws, gcp or azure")),
    responses(
        (status = 201, body = ProviderAccountView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ))]
pub async fn assign_classic_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<ProviderPath>,
) -> ApiResult<(StatusCode, Json<ProviderAccountView>)> {
    caller.require(Permission::OrgCmkWrite)?;
    let provider = parse_provider(&path.provider)?;
    let org = caller.org_id();
    for _ in 0..ASSIGN_ATTEMPTS {
        let assigned = state.store.assigned_accounts(org, provider).await?;
        let free: Vec<&ProviderAccount> = state
            .config
            .accounts(provider)
            .iter()
            .filter(|c| !assigned.iter().any(|a| a.account_id == c.id))
            .collect();
        let Some(pick) = least_used(&state, provider, &free).await? else {
            return Err(ApiError::Conflict(format!(
                "every platform {provider} account is already assigned to your organization; none is left to assign"
            )));
        };
        if state
            .store
            .try_assign_account(org, provider, &pick.id, assigned.len() as i64)
            .await?
        {
            return Ok((StatusCode::CREATED, Json(view(org, provider, &pick.id))));
        }
    }
    Err(ApiError::Conflict(
        "could not settle the provider account assignment; retry the request".into(),
    ))
}
