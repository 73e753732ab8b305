//! Errors in Google's JSON shape: `{"error":{"code":<HTTP status>,"message":…,"status":"<gRPC
//! code name>","details":[…]}}`, so that the official clients raise the same typed exception
//! (`PermissionDenied`, `NotFound`, `FailedPrecondition`, …) as against Cloud KMS.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The canonical gRPC codes Cloud KMS answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidArgument,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    Unimplemented,
    Internal,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
        }
    }

    /// The HTTP status Google's REST front end maps the code to.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct GcpError {
    pub code: Code,
    pub message: String,
    pub details: Vec<Value>,
}

impl GcpError {
    pub fn new(code: Code, message: impl Into<String>) -> GcpError {
        GcpError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> GcpError {
        GcpError::new(Code::InvalidArgument, message)
    }
    pub fn precondition(message: impl Into<String>) -> GcpError {
        GcpError::new(Code::FailedPrecondition, message)
    }
    pub fn not_found(kind: &str, name: &str) -> GcpError {
        GcpError::new(Code::NotFound, format!("{kind} {name} not found."))
    }
    pub fn internal(message: impl Into<String>) -> GcpError {
        GcpError::new(Code::Internal, message)
    }
    pub fn unauthenticated() -> GcpError {
        GcpError::new(
            Code::Unauthenticated,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential.",
        )
    }
    /// Cloud KMS's wording, which names the permission (the platform's adapter reads it from
    /// the ErrorInfo detail) and, like Cloud KMS, does not say whether the resource exists.
    pub fn permission_denied(permission: &str, resource: &str) -> GcpError {
        GcpError {
            code: Code::PermissionDenied,
            message: format!(
                "Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
            ),
            details: vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "cloudkms.googleapis.com",
                "metadata": { "permission": permission, "resource": resource },
            })],
        }
    }
    /// A version that is not ENABLED, in Cloud KMS's words.
    pub fn version_not_enabled(version_name: &str, state: &str) -> GcpError {
        GcpError::precondition(format!(
            "{version_name} is not enabled, current state is: {state}."
        ))
    }
}

impl IntoResponse for GcpError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "code": self.code.status().as_u16(),
            "message": self.message,
            "status": self.code.name(),
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details);
        }
        let mut resp = (self.code.status(), json!({ "error": error }).to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp
    }
}
