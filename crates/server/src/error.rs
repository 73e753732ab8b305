//! The one API error type. Every failure of every route becomes
//! `{"errors":[{"ID":<int>,"message":"…"}]}` with a stable numeric ID per kind.
//!
//! | ID   | Status | Kind                                                         |
//! |------|--------|--------------------------------------------------------------|
//! | 1000 | 400    | invalid request body (malformed JSON, wrong type, bad value) |
//! | 1001 | 400    | request body larger than the limit (1 MiB)                   |
//! | 1002 | 400    | invalid path or query parameter (e.g. unknown provider)      |
//! | 2000 | 401    | no `Authorization: Bearer` token                             |
//! | 2001 | 401    | malformed token                                              |
//! | 2002 | 401    | unknown or revoked token                                     |
//! | 3000 | 403    | the token's role lacks the permission                        |
//! | 3001 | 403    | the request names another organization than the token's     |
//! | 4000 | 404    | resource not found (or of another organization)              |
//! | 4001 | 404    | no such route                                                |
//! | 4002 | 404    | region not in the catalog, or not unlocked                   |
//! | 4050 | 405    | method not allowed on this route                             |
//! | 4090 | 409    | conflict with the current state                              |
//! | 4220 | 422    | well-formed but unacceptable (a check failed)                |
//! | 5000 | 500    | internal error (details only in the server log)              |
//! | 5010 | 501    | not implemented yet                                          |
//! | 5030 | 503    | a dependency is unavailable; retry later                     |
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of 1 MiB; send a smaller body")]
    BodyTooLarge,
    #[error("{0}")]
    BadParameter(String),
    #[error("missing token: send 'Authorization: Bearer <application token>'")]
    MissingToken,
    #[error("malformed token: {0}")]
    MalformedToken(String),
    #[error("the token is unknown or has been revoked; create a new application token")]
    InvalidToken,
    #[error("the token's role lacks the permission '{0}'; use a token whose role grants it")]
    Forbidden(&'static str),
    #[error("{0}")]
    OtherOrganization(String),
    #[error("{0}")]
    NotFound(String),
    #[error("no route for {method} {path}; see /openapi.json for the API")]
    RouteNotFound { method: String, path: String },
    #[error("{0}")]
    RegionUnavailable(String),
    #[error("method {method} is not allowed on {path}; see /openapi.json for the API")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

const INTERNAL_MESSAGE: &str =
    "an internal error occurred; it has been logged, retry later or contact the platform operator";

impl ApiError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(e))
    }

    pub fn id(&self) -> u32 {
        match self {
            ApiError::BadRequest(_) => 1000,
            ApiError::BodyTooLarge => 1001,
            ApiError::BadParameter(_) => 1002,
            ApiError::MissingToken => 2000,
            ApiError::MalformedToken(_) => 2001,
            ApiError::InvalidToken => 2002,
            ApiError::Forbidden(_) => 3000,
            ApiError::OtherOrganization(_) => 3001,
            ApiError::NotFound(_) => 4000,
            ApiError::RouteNotFound { .. } => 4001,
            ApiError::RegionUnavailable(_) => 4002,
            ApiError::MethodNotAllowed { .. } => 4050,
            ApiError::Conflict(_) => 4090,
            ApiError::Unprocessable(_) => 4220,
            ApiError::Internal(_) => 5000,
            ApiError::NotImplemented(_) => 5010,
            ApiError::Unavailable(_) => 5030,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.id() / 1000 {
            1 => StatusCode::BAD_REQUEST,
            2 => StatusCode::UNAUTHORIZED,
            3 => StatusCode::FORBIDDEN,
            _ => match self.id() {
                4000..=4002 => StatusCode::NOT_FOUND,
                4050 => StatusCode::METHOD_NOT_ALLOWED,
                4090 => StatusCode::CONFLICT,
                4220 => StatusCode::UNPROCESSABLE_ENTITY,
                5010 => StatusCode::NOT_IMPLEMENTED,
                5030 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// What the client sees: for a 500, never the detail.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => INTERNAL_MESSAGE.to_string(),
            other => other.to_string(),
        }
    }
}

impl From<keyplane_store::StoreError> for ApiError {
    fn from(e: keyplane_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// The error body of the DevOps API.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorItem {
    #[serde(rename = "ID")]
    pub id: u32,
    pub message: String,
}

impl ErrorBody {
    pub fn one(id: u32, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            errors: vec![ErrorItem {
                id,
                message: message.into(),
            }],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, source = ?detail.source(), "request failed");
        }
        let body = ErrorBody::one(self.id(), self.public_message());
        (self.status(), Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_their_documented_statuses() {
        assert_eq!(ApiError::BodyTooLarge.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::InvalidToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::Forbidden("org-cmk-read").status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::RegionUnavailable(String::new()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::Conflict(String::new()).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::Unprocessable(String::new()).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::NotImplemented(String::new()).status(),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            ApiError::Unavailable(String::new()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let internal = ApiError::internal(std::io::Error::other("disk on fire"));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.public_message().contains("disk on fire"));
    }
}
