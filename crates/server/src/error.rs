//! The DevOps API's error table. Every failure of every route becomes
//! `{"errors":[{"ID":<int>,"message":"…"}]}` with a stable numeric ID per kind; the
//! application's [`AppError`] is mapped here (and only here), next to the transport's own
//! refusals (a body that does not parse, no route, …).
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
//! | 4091 | 409    | the organization's quota (databases, datacenters, tokens)    |
//! | 4220 | 422    | well-formed but unacceptable (a check failed)                |
//! | 5000 | 500    | internal error (details only in the server log)              |
//! | 5010 | 501    | not implemented yet                                          |
//! | 5030 | 503    | a dependency is unavailable; retry later                     |
//! | 5031 | 503    | no platform identity is free (the operator must add some)    |
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplane_app::AppError;
use keyplane_app::error::INTERNAL_MESSAGE;
use serde::Serialize;

/// What a request without a token is told (the Data API says the same).
pub const MISSING_TOKEN: &str = "missing token: send 'Authorization: Bearer <application token>'";

#[derive(Debug, thiserror::Error)]
pub enum DevOpsError {
    /// What the application refused or failed at.
    #[error(transparent)]
    App(#[from] AppError),
    /// The body does not parse into the route's request type.
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of 1 MiB; send a smaller body")]
    BodyTooLarge,
    /// A path or query parameter does not parse.
    #[error("{0}")]
    BadParameter(String),
    #[error("{MISSING_TOKEN}")]
    MissingToken,
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("malformed token: {0}")]
    MalformedHeader(String),
    #[error("no route for {method} {path}; see /openapi.json for the API")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed on {path}; see /openapi.json for the API")]
    MethodNotAllowed { method: String, path: String },
    /// A handler panicked: a bug. The detail is logged, never sent.
    #[error("handler panicked: {0}")]
    Panic(String),
}

/// The table's ID of an application error.
pub fn app_error_id(e: &AppError) -> u32 {
    match e {
        AppError::Invalid { .. } => 1000,
        AppError::InvalidParameter { .. } => 1002,
        AppError::MalformedToken(_) => 2001,
        AppError::InvalidToken => 2002,
        AppError::Forbidden(_) => 3000,
        AppError::WrongOrganization { .. } => 3001,
        AppError::NotFound(_) => 4000,
        AppError::RegionUnavailable(_) => 4002,
        AppError::Conflict(_) => 4090,
        AppError::QuotaExceeded(_) => 4091,
        AppError::KeyCheckFailed(_)
        | AppError::NoCustomerKey { .. }
        | AppError::ProviderMismatch { .. } => 4220,
        AppError::NotSupported(_) => 5010,
        AppError::KmsUnavailable(_)
        | AppError::NoPlatformKey { .. }
        | AppError::StoreUnreachable(_)
        | AppError::Suspended(_)
        | AppError::DatacenterUnavailable(_) => 5030,
        AppError::IdentityPoolExhausted { .. } => 5031,
        AppError::Document(_) | AppError::Kms(_) | AppError::Store(_) | AppError::Internal(_) => {
            5000
        }
    }
}

/// The status of a table ID.
pub fn status_of(id: u32) -> StatusCode {
    match id {
        1000..=1999 => StatusCode::BAD_REQUEST,
        2000..=2999 => StatusCode::UNAUTHORIZED,
        3000..=3999 => StatusCode::FORBIDDEN,
        4000..=4002 => StatusCode::NOT_FOUND,
        4050 => StatusCode::METHOD_NOT_ALLOWED,
        4090 | 4091 => StatusCode::CONFLICT,
        4220 => StatusCode::UNPROCESSABLE_ENTITY,
        5010 => StatusCode::NOT_IMPLEMENTED,
        5030 | 5031 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status an application error answers with.
pub fn app_error_status(e: &AppError) -> StatusCode {
    status_of(app_error_id(e))
}

/// What a client sees of an application error: for a 500, never the detail.
pub fn app_error_message(e: &AppError) -> String {
    if app_error_id(e) == 5000 {
        INTERNAL_MESSAGE.to_string()
    } else {
        e.to_string()
    }
}

impl DevOpsError {
    pub fn id(&self) -> u32 {
        match self {
            DevOpsError::App(e) => app_error_id(e),
            DevOpsError::BadRequest(_) => 1000,
            DevOpsError::BodyTooLarge => 1001,
            DevOpsError::BadParameter(_) => 1002,
            DevOpsError::MissingToken => 2000,
            DevOpsError::MalformedHeader(_) => 2001,
            DevOpsError::RouteNotFound { .. } => 4001,
            DevOpsError::MethodNotAllowed { .. } => 4050,
            DevOpsError::Panic(_) => 5000,
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.id())
    }

    /// What the client sees: for a 500, never the detail.
    pub fn public_message(&self) -> String {
        match self {
            DevOpsError::App(e) => app_error_message(e),
            DevOpsError::Panic(_) => INTERNAL_MESSAGE.to_string(),
            other => other.to_string(),
        }
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

impl IntoResponse for DevOpsError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            match &self {
                DevOpsError::App(e) if app_error_id(e) != 5000 => {
                    tracing::warn!(error = %e, "request refused: a dependency is unavailable")
                }
                other => {
                    let source = std::error::Error::source(other).map(|s| s.to_string());
                    tracing::error!(error = %other, ?source, "request failed");
                }
            }
        }
        let body = ErrorBody::one(self.id(), self.public_message());
        (self.status(), Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, DevOpsError>;

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_app::{ConflictReason, RegionProblem};
    use keyplane_core::Permission;
    use keyplane_core::databases::RegionChangeRefusal;

    #[test]
    fn ids_map_to_their_documented_statuses() {
        assert_eq!(DevOpsError::BodyTooLarge.status(), StatusCode::BAD_REQUEST);
        let app = |e: AppError| DevOpsError::App(e).status();
        assert_eq!(app(AppError::InvalidToken), StatusCode::UNAUTHORIZED);
        assert_eq!(
            app(AppError::Forbidden(Permission::OrgCmkRead)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app(AppError::RegionUnavailable(
                RegionProblem::NoPlatformAccount {
                    provider: keyplane_core::Provider::Aws,
                    region: "us-east-2".into()
                }
            )),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app(AppError::Conflict(ConflictReason::Region(
                RegionChangeRefusal::LastRegion
            ))),
            StatusCode::CONFLICT
        );
        assert_eq!(
            app(AppError::KeyCheckFailed(String::new())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            app(AppError::NotSupported(String::new())),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            app(AppError::KmsUnavailable(String::new())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let quota = AppError::QuotaExceeded(keyplane_core::QuotaExceeded {
            kind: keyplane_core::QuotaKind::Databases,
            limit: 3,
        });
        assert_eq!(app_error_id(&quota), 4091);
        assert_eq!(app(quota), StatusCode::CONFLICT);
        let pool = AppError::IdentityPoolExhausted {
            provider: keyplane_core::Provider::Gcp,
            region: None,
        };
        assert_eq!(app_error_id(&pool), 5031);
        assert_eq!(app(pool), StatusCode::SERVICE_UNAVAILABLE);
        let internal = DevOpsError::App(AppError::bug("disk on fire"));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.public_message().contains("disk on fire"));
        let panic = DevOpsError::Panic("index out of bounds".into());
        assert_eq!(panic.id(), 5000);
        assert!(!panic.public_message().contains("index"));
    }
}
