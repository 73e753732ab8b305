//! Who is calling: the `Authorization: Bearer` application token, resolved to its
//! organization and role on every request (no cache, so a revocation is effective at once).
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyplane_core::{Permission, Role, Token};
use keyplane_store::Organization;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub org: Organization,
    pub role: Role,
}

impl Caller {
    pub fn org_id(&self) -> Uuid {
        self.org.id
    }

    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(p.as_str()))
        }
    }

    /// A resource of another organization answers 404, never 403, so that its existence
    /// is not revealed.
    pub fn own_org(&self, id: Uuid, what: &str) -> Result<(), ApiError> {
        if id == self.org.id {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("{what} {id} not found")))
        }
    }
}

impl Caller {
    /// Resolves a raw application token (the part after "Bearer ", or a `Token` header).
    pub async fn from_token(state: &AppState, raw: &str) -> Result<Caller, ApiError> {
        let token =
            Token::parse(raw.trim()).map_err(|e| ApiError::MalformedToken(e.to_string()))?;
        let (record, org) = state
            .store
            .authenticate(token.client_id())
            .await?
            .ok_or(ApiError::InvalidToken)?;
        if record.revoked_at.is_some() || !token.matches_hash(&record.secret_hash) {
            return Err(ApiError::InvalidToken);
        }
        Ok(Caller {
            client_id: record.client_id,
            org,
            role: record.role,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let header = header.to_str().map_err(|_| {
            ApiError::MalformedToken("the Authorization header is not ASCII".into())
        })?;
        let raw = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::MalformedToken("use the form 'Authorization: Bearer <token>'".into())
            })?;
        Caller::from_token(state, raw).await
    }
}
