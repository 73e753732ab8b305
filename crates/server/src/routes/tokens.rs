//! Application tokens of the caller's organization, with the original's route names
//! (`/v2/clientIdSecrets`): create (the secret is shown once), list, revoke.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_app::App;
use keyplane_app::tokens::NewToken;
use keyplane_core::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ts;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Auth};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// One built-in role: "Organization Administrator", "Database Administrator" or "Read Only User".
    #[serde(default)]
    pub roles: Vec<String>,
    /// A custom role instead: the exact permissions, e.g. ["org-cmk-read","org-cmk-write"].
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub client_id: String,
    pub org_id: Uuid,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    /// The whole token. It is shown only here, once; only its hash is kept.
    pub token: String,
    pub generated_on: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub client_id: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub description: String,
    pub generated_on: String,
    pub revoked_on: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub clients: Vec<TokenView>,
}

fn role_names(role: &Role) -> (Vec<String>, Vec<String>) {
    let perms = role
        .permissions()
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    (vec![role.name().to_string()], perms)
}

/// Creates an application token in the caller's organization. A token can only hand out
/// permissions its own role has.
#[utoipa::path(post, path = "/v2/clientIdSecrets", tag = "tokens", security(("token" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "the organization's token quota is reached", body = crate::error::ErrorBody),
    ))]
pub async fn create_token(
    State(app): State<App>,
    Auth(who): Auth,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let req = NewToken {
        roles: body.roles,
        permissions: body.permissions,
        description: body.description,
    };
    let (token, record) = app.tokens().create(&who, &req).await?;
    let (roles, permissions) = role_names(&record.role);
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            client_id: record.client_id,
            org_id: record.org_id,
            roles,
            permissions,
            token: token.expose().to_string(),
            generated_on: ts(record.created_at),
        }),
    ))
}

/// Lists the organization's tokens, newest first, without their secrets.
#[utoipa::path(get, path = "/v2/clientIdSecrets", tag = "tokens", security(("token" = [])),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn list_tokens(State(app): State<App>, Auth(who): Auth) -> ApiResult<Json<TokenList>> {
    let clients = app
        .tokens()
        .list(&who)
        .await?
        .into_iter()
        .map(|r| {
            let (roles, permissions) = role_names(&r.role);
            TokenView {
                client_id: r.client_id,
                roles,
                permissions,
                description: r.description,
                generated_on: ts(r.created_at),
                revoked_on: r.revoked_at.map(ts),
            }
        })
        .collect();
    Ok(Json(TokenList { clients }))
}

/// Revokes a token of the caller's organization; it is refused from the next request on.
#[utoipa::path(delete, path = "/v2/clientIdSecrets/{clientId}", tag = "tokens", security(("token" = [])),
    params(("clientId" = String, Path, description = "the token's client ID")),
    responses(
        (status = 204),
        (status = 400, description = "a client ID that is not UTF-8 once decoded", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn revoke_token(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    app.tokens().revoke(&who, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
