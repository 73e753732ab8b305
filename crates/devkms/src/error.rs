//! Errors: the crate's one `DevKmsError` for opening and persisting, and the AWS-shaped API
//! error that every KMS operation answers with.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Failures of the server itself (files, state, configuration), as opposed to a client's bad
/// request, which is an [`ApiError`] sent back on the wire.
#[derive(Debug, thiserror::Error)]
pub enum DevKmsError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is unreadable: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    #[error("root key file {path} must hold exactly 32 bytes")]
    BadRootKey { path: PathBuf },
    #[error(
        "stored secrets do not decrypt under the root key in {path}: was the root key replaced?"
    )]
    RootKeyMismatch { path: PathBuf },
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    #[error("invalid Azure vault configuration: {0}")]
    InvalidAzureVault(String),
    #[error("the built-in vault's TLS setup failed: {0}")]
    Tls(String),
}

impl DevKmsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DevKmsError::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error as AWS KMS reports it: `{"__type": kind, "message": …}` with AWS's HTTP status, so
/// that unmodified SDKs map it to the same typed exception as they would against AWS.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub kind: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl ApiError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        let status = match kind {
            "KMSInternalException" => StatusCode::INTERNAL_SERVER_ERROR,
            "DependencyTimeoutException" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            kind,
            message: message.into(),
            status,
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    /// AWS's wording for a missing required member.
    pub fn missing(member: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFoundException", message)
    }
    pub fn key_not_found(arn: &str) -> Self {
        Self::not_found(format!("Key '{arn}' does not exist"))
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new("KMSInvalidStateException", message)
    }
    pub fn disabled(arn: &str) -> Self {
        Self::new("DisabledException", format!("{arn} is disabled."))
    }
    pub fn pending_deletion(arn: &str) -> Self {
        Self::invalid_state(format!("{arn} is pending deletion."))
    }
    pub fn invalid_ciphertext() -> Self {
        Self::new("InvalidCiphertextException", "")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("KMSInternalException", message)
    }
    pub fn access_denied(caller_arn: &str, action: &str, key_arn: &str, explicit: bool) -> Self {
        let why = if explicit {
            "with an explicit deny in a resource-based policy".to_string()
        } else {
            format!("because no resource-based policy allows the {action} action")
        };
        Self::new(
            "AccessDeniedException",
            format!(
                "User: {caller_arn} is not authorized to perform: {action} on resource: {key_arn} {why}"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.kind, "message": self.message }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            h.insert("x-amzn-errortype", v);
        }
        resp
    }
}
