//! The platform's cloud accounts that a customer's key policy must trust (the "provider
//! ID"), per region, and the assignment of one more.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_app::App;
use keyplane_core::Provider;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RegionPath;
use crate::error::ApiResult;
use crate::extract::{ApiPath, Auth};

#[derive(Serialize, Deserialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccountView {
    pub organization_id: Uuid,
    /// The platform account to allow in the key policy, e.g. AWS `arn:aws:iam::<provider_id>:role/creator`.
    pub provider_id: String,
    pub provider: Provider,
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
    let (provider, mine) = app
        .accounts()
        .list(&who, &path.provider, &path.region)
        .await?;
    Ok(Json(
        mine.into_iter()
            .map(|a| ProviderAccountView {
                organization_id: who.org_id(),
                provider_id: a.account_id,
                provider,
            })
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
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(app, who, path).await
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
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<Vec<ProviderAccountView>>> {
    list(app, who, path).await
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
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<ProviderPath>,
) -> ApiResult<(StatusCode, Json<ProviderAccountView>)> {
    let (provider, account) = app.accounts().assign(&who, &path.provider).await?;
    Ok((
        StatusCode::CREATED,
        Json(ProviderAccountView {
            organization_id: who.org_id(),
            provider_id: account,
            provider,
        }),
    ))
}
