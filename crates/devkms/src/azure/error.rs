//! Key Vault's error answer, `{"error":{"code","message","innererror":{"code"}}}` with Key
//! Vault's status codes, so the official SDKs raise the same typed errors as against Azure; and
//! the Entra ID token endpoint's OAuth error shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The `resource` the 401 challenge names: the audience every Key Vault token is for.
pub(crate) const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// A refused vault request.
#[derive(Debug, Clone)]
pub(crate) struct VaultError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
    /// Set on 401s: the `WWW-Authenticate` challenge (`Bearer authorization=…, resource=…`).
    pub challenge: Option<String>,
}

impl VaultError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        VaultError {
            status,
            code,
            message: message.into(),
            inner: None,
            challenge: None,
        }
    }

    pub fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    /// The challenge the SDKs wait for before they send a token: it names the tenant's
    /// authority and the vault resource.
    pub fn unauthorized(authority: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        e.challenge = Some(format!(
            "Bearer authorization=\"{authority}\", resource=\"{VAULT_RESOURCE}\""
        ));
        e
    }

    pub fn key_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!(
                "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command."
            ),
        )
    }

    pub fn deleted_key_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!("Deleted Key not found: {name}"),
        )
    }

    pub fn forbidden(message: impl Into<String>, inner: &'static str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).with_inner(inner)
    }

    pub fn conflict(message: impl Into<String>, inner: &'static str) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message).with_inner(inner)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let mut err = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = self.inner {
            err["innererror"] = json!({ "code": inner });
        }
        let body = json!({ "error": err }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

/// An OAuth 2.0 error from the token endpoint, in Entra ID's shape (`error`,
/// `error_description` with the AADSTS code, `error_codes`).
#[derive(Debug, Clone)]
pub(crate) struct TokenError {
    pub status: StatusCode,
    pub error: &'static str,
    pub aadsts: u32,
    pub description: String,
}

impl TokenError {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        aadsts: u32,
        description: impl Into<String>,
    ) -> Self {
        TokenError {
            status,
            error,
            aadsts,
            description: description.into(),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {}", self.aadsts, self.description),
            "error_codes": [self.aadsts],
        })
        .to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp
    }
}
