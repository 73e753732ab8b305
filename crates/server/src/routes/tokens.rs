//! Application tokens of the caller's organization, with the original's route names
//! (`/v2/clientIdSecrets`): create (the secret is shown once), list, revoke.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{SubsecRound, Utc};
use keyplane_core::{Permission, Role, Token};
use keyplane_store::{Store, TokenRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};

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

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn role_names(role: &Role) -> (Vec<String>, Vec<String>) {
    let perms = role
        .permissions()
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    (vec![role.name().to_string()], perms)
}

/// Creates a token for `org_id` and stores only the hash of its secret. Shared by the API
/// and `keyplane admin create-token`.
pub async fn issue_token(
    store: &dyn Store,
    org_id: Uuid,
    role: &Role,
    description: &str,
) -> keyplane_store::Result<(Token, TokenRecord)> {
    let token = Token::generate();
    let record = TokenRecord {
        client_id: token.client_id().to_string(),
        org_id,
        role: role.clone(),
        secret_hash: token.secret_hash().to_vec(),
        description: description.to_string(),
        created_at: Utc::now().trunc_subsecs(3),
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    Ok((token, record))
}

fn requested_role(body: &CreateToken) -> ApiResult<Role> {
    match (body.roles.as_slice(), body.permissions.is_empty()) {
        ([one], true) => Role::parse(one).map_err(|e| ApiError::BadRequest(format!("roles: {e}"))),
        ([], false) => Role::custom(body.permissions.iter().map(String::as_str))
            .map_err(|e| ApiError::BadRequest(format!("permissions: {e}"))),
        _ => Err(ApiError::BadRequest(
            "give exactly one of: \"roles\" with one role name, or \"permissions\" with a list of permissions"
                .into(),
        )),
    }
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
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require(Permission::OrgTokenWrite)?;
    let role = requested_role(&body)?;
    if body.description.len() > 256 {
        return Err(ApiError::BadRequest(
            "description: at most 256 characters".into(),
        ));
    }
    if let Some(p) = role
        .permissions()
        .into_iter()
        .find(|p| !caller.role.allows(*p))
    {
        return Err(ApiError::Forbidden(p.as_str()));
    }
    let (token, record) = issue_token(
        state.store.as_ref(),
        caller.org_id(),
        &role,
        &body.description,
    )
    .await?;
    let (roles, permissions) = role_names(&role);
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
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TokenList>> {
    caller.require(Permission::OrgTokenRead)?;
    let records = state.store.list_tokens(caller.org_id()).await?;
    let clients = records
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
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(client_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::OrgTokenWrite)?;
    if state
        .store
        .revoke_token(caller.org_id(), &client_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no active token with client ID {client_id} in your organization"
        )))
    }
}
