//! The platform's cloud accounts that a customer's key policy must trust (the "provider
//! ID"), per region, and the assignment of one more. AWS accounts are shared between
//! organizations; GCP and Azure identities are each organization's own.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_app::App;
use keyplane_app::accounts::TrustedIdentity;
use keyplane_core::Provider;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RegionPath;
use crate::error::ApiResult;
use crate::extract::{ApiPath, Auth};

#[derive(Serialize, Deserialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccountView {
    pub organization_id: Uuid,
    /// The platform account to allow in the key policy, e.g. AWS `arn:aws:iam::<provider_id>:role/creator`;
    /// for GCP the platform's Google Cloud project, whose service account `principal` names.
    pub provider_id: String,
    pub provider: Provider,
    /// GCP: the service account (`serviceAccount:EMAIL`) to grant on the key; absent where
    /// the provider ID names the principal (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl ProviderAccountView {
    fn of(org: Uuid, t: TrustedIdentity) -> ProviderAccountView {
        ProviderAccountView {
            organization_id: org,
            principal: (t.provider == Provider::Gcp).then_some(t.principal),
            provider_id: t.provider_id,
            provider: t.provider,
        }
    }
}

#[derive(Deserialize)]
pub struct ProviderPath {
    provider: String,
}

async fn list(
    app: App,
    who: keyplane_app::Requester,
    path: RegionPath,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    let (_, mine) = app
        .accounts()
        .list_trusted(&who, &path.provider, &path.region)
        .await?;
    Ok(Json(
        mine.into_iter()
            .map(|t| ProviderAccountView::of(who.org_id(), t))
            .collect(),
    ))
}

/// The platform account(s) to trust for Managed Clusters (classic) keys in a region.
#[utoipa::path(get, path = "/v2/kms/classic/provider/{provider}/region/{region}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = Provider, Path, description = "aws, gcp or azure (any case)"), ("region" = String, Path, description = "the cloud's region name, e.g. us-east-2")),
    responses(
        (status = 200, body = Vec<ProviderAccountView>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 503, description = "gcp, azure: no platform identity is free (the operator must add some)", body = crate::error::ErrorBody),
    ))]
pub async fn classic_accounts(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(app, who, path).await
}

/// The platform account(s) to trust for serverless keys in a region.
#[utoipa::path(get, path = "/v2/kms/provider/{provider}/region/{region}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = Provider, Path, description = "aws, gcp or azure (any case)"), ("region" = String, Path, description = "the cloud's region name")),
    responses(
        (status = 200, body = Vec<ProviderAccountView>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 503, description = "gcp, azure: no platform identity is free (the operator must add some)", body = crate::error::ErrorBody),
    ))]
pub async fn serverless_accounts(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(app, who, path).await
}

/// Assigns the organization one more platform account of the provider.
#[utoipa::path(post, path = "/v2/kms/classic/provider/{provider}/accounts", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = Provider, Path, description = "aws, gcp or azure (any case)")),
    responses(
        (status = 201, body = ProviderAccountView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "every account is assigned already (aws), or no other identity is free (gcp, azure)", body = crate::error::ErrorBody),
        (status = 503, description = "gcp, azure: the organization holds no identity yet and none is free (the operator must add some)", body = crate::error::ErrorBody),
    ))]
pub async fn assign_classic_account(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<ProviderPath>,
) -> ApiResult<(StatusCode, Json<ProviderAccountView>)> {
    let (provider, account) = app.accounts().assign(&who, &path.provider).await?;
    let trusted = app
        .accounts()
        .trusted(provider, &account)
        .ok_or_else(|| keyplane_app::AppError::bug("the assigned account is not configured"))?;
    Ok((
        StatusCode::CREATED,
        Json(ProviderAccountView::of(who.org_id(), trusted)),
    ))
}
