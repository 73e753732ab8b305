//! Admin routes for tests and local setup: adding identities and moving the clock. Both need
//! the admin token; the clock only moves when the configuration allows it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::state::{IdentityConfig, IdentityKind};
use crate::{Credentials, Inner};

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Compared in constant time so the token cannot be guessed byte by byte.
pub(crate) fn token_ok(inner: &Inner, headers: &HeaderMap) -> bool {
    let given = headers
        .get("x-keyplane-admin-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    !given.is_empty() && bool::from(given.ct_eq(inner.admin_token.as_bytes()))
}

fn unauthorized() -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        "missing or wrong x-keyplane-admin-token",
    )
}

/// `{"account":"333333333333"}` adds an account with a `user/admin`; `kind` and `name` pick
/// another user or a role; `accessKeyId`/`secretAccessKey` fix its keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddIdentity {
    account: String,
    kind: Option<IdentityKind>,
    name: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

pub(crate) async fn add_identity(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_blocking_pool(move || add_identity_blocking(inner, headers, body)).await
}

/// Runs an admin request that writes files (`credentials.json`, the state: each an fsync) on
/// the blocking pool, never on an async worker.
pub(crate) async fn on_blocking_pool(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "devkms admin request failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn add_identity_blocking(inner: Arc<Inner>, headers: HeaderMap, body: Bytes) -> Response {
    if !token_ok(&inner, &headers) {
        return unauthorized();
    }
    let req: AddIdentity = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("bad identity request: {e}"),
            );
        }
    };
    let cfg = IdentityConfig {
        account: req.account,
        kind: req.kind.unwrap_or(IdentityKind::User),
        name: req.name.unwrap_or_else(|| "admin".to_string()),
        access_key_id: req.access_key_id,
        secret_access_key: req.secret_access_key,
    };
    let mut st = inner.write();
    let existed = st.identities.len();
    let akid = match Inner::ensure_identity(&mut st, &cfg) {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let created = st.identities.len() != existed;
    let Some(ident) = st.identities.get(&akid) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "identity vanished");
    };
    let creds = Credentials::of(ident);
    let caller_arn = ident.caller_arn();
    if let Err(e) = inner.store.write_credentials(&st) {
        tracing::warn!(error = %e, "devkms could not rewrite credentials.json");
    }
    if inner.commit(st).is_err() {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "could not persist state");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "account": creds.account,
            "principalArn": creds.principal_arn,
            "callerArn": caller_arn,
            "accessKeyId": creds.access_key_id,
            "secretAccessKey": creds.secret_access_key,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

pub(crate) async fn advance_clock(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_blocking_pool(move || advance_clock_blocking(inner, headers, body)).await
}

fn advance_clock_blocking(inner: Arc<Inner>, headers: HeaderMap, body: Bytes) -> Response {
    if !token_ok(&inner, &headers) {
        return unauthorized();
    }
    if !inner.allow_clock_control {
        return refuse(
            StatusCode::FORBIDDEN,
            "clock control is disabled (allow_clock_control is false)",
        );
    }
    let req: Advance = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("bad clock request: {e}")),
    };
    if req.seconds < 0 {
        return refuse(StatusCode::BAD_REQUEST, "the clock only moves forward");
    }
    let offset = inner.clock_offset.fetch_add(req.seconds, Ordering::Relaxed) + req.seconds;
    let sweep = inner.sweep();
    // Persist the new offset even when the sweep had nothing to do.
    let st = inner.write();
    if sweep.is_err() || inner.commit(st).is_err() {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "could not persist state");
    }
    (
        StatusCode::OK,
        Json(json!({ "offsetSeconds": offset, "now": inner.now() })),
    )
        .into_response()
}
