//! Who is calling: the `Authorization: Bearer` token of a vault request, and the Entra ID
//! client-credentials token endpoint (`POST /{tenant}/oauth2/v2.0/token`) that turns an
//! application's client secret, or a client assertion signed with one of its certificates, into
//! an access token, so the official credential classes work
//! unmodified against the built-in vault.
//!
//! Two kinds of token are accepted: a principal's long-lived dev token (`kpdev.…`, stored as a
//! SHA-256 hash, handed out in `azure-credentials.json`) and an access token from the token
//! endpoint (`kpat.…`: the principal, tenant, audience and expiry sealed under the root key, so
//! nothing about issued tokens is stored). A request without a token, or with a bad one, gets
//! the 401 challenge the SDKs wait for before they authenticate.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::certificates;
use super::error::{TokenError, VaultError};
use super::state::sha256_hex;
use super::{Caller, Ctx};

const ACCESS_TOKEN_PREFIX: &str = "kpat.";
const DEV_TOKEN_PREFIX: &str = "kpdev.";
const ACCESS_TOKEN_PURPOSE: &str = "keyplane-devkms azure access token";
/// Lifetime of an access token from the token endpoint, as Entra ID's default.
pub(crate) const ACCESS_TOKEN_SECS: i64 = 3600;

/// A new random dev token or client secret (the secret gets a different prefix so the two are
/// never confused in a credentials file).
pub(crate) fn new_token() -> String {
    format!("{DEV_TOKEN_PREFIX}{}", random_b64(32))
}

pub(crate) fn new_client_secret() -> String {
    format!("kpsecret.{}", random_b64(30))
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    B64URL.encode(b)
}

#[derive(Serialize, Deserialize)]
struct AccessClaims {
    oid: String,
    tid: String,
    aud: String,
    exp: i64,
}

fn authority(ctx: &Ctx, tenant: &str) -> String {
    format!("{}/{tenant}", ctx.base_url)
}

/// The audience of tokens for ARM (role assignments).
pub(crate) const ARM_RESOURCE: &str = "https://management.azure.com";

/// The caller of a request for `audience` (the vault, or ARM), or the 401 challenge. Dev tokens
/// are good for both; an access token only for the audience it was issued for.
pub(crate) fn caller(ctx: &Ctx, headers: &HeaderMap, audience: &str) -> Result<Caller, VaultError> {
    let st = ctx.inner.read();
    let Some(dir) = st.azure.directory.as_ref() else {
        return Err(VaultError::internal(
            "the vault's directory is not initialised",
        ));
    };
    let challenge = |msg: &str| VaultError::unauthorized(&authority(ctx, &dir.tenant_id), msg);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(challenge(
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
    else {
        return Err(challenge(
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let object_id = if let Some(sealed) = token.strip_prefix(ACCESS_TOKEN_PREFIX) {
        let claims = B64URL
            .decode(sealed)
            .ok()
            .and_then(|raw| ctx.inner.store.open_sealed(ACCESS_TOKEN_PURPOSE, &raw))
            .and_then(|plain| serde_json::from_slice::<AccessClaims>(&plain).ok());
        let Some(c) = claims else {
            return Err(challenge("AKV10032: Invalid issuer or signature."));
        };
        if c.exp <= ctx.inner.now() as i64 {
            return Err(challenge(
                "AKV10022: Invalid audience or the token has expired.",
            ));
        }
        if !c.tid.eq_ignore_ascii_case(&dir.tenant_id) {
            return Err(challenge(
                "AKV10032: Invalid issuer. Expected one of the tenant's issuers.",
            ));
        }
        if !c.aud.trim_end_matches('/').eq_ignore_ascii_case(audience) {
            return Err(challenge("AKV10022: Invalid audience."));
        }
        c.oid
    } else {
        let hash = sha256_hex(token);
        match dir
            .principals
            .iter()
            .find(|p| bool::from(p.token_sha256.as_bytes().ct_eq(hash.as_bytes())))
        {
            Some(p) => p.object_id.clone(),
            None => return Err(challenge("AKV10032: Invalid issuer or signature.")),
        }
    };
    let Some(p) = dir.principal(&object_id) else {
        return Err(challenge(
            "AKV10032: The token's principal no longer exists.",
        ));
    };
    Ok(Caller {
        object_id: p.object_id.clone(),
        app_id: p.app_id.clone(),
    })
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`.
pub(crate) fn token(ctx: &Ctx, tenant: &str, body: &[u8]) -> Result<serde_json::Value, TokenError> {
    let form: TokenRequest = {
        let pairs: std::collections::BTreeMap<String, String> =
            form_urlencoded::parse(body).into_owned().collect();
        TokenRequest {
            grant_type: pairs.get("grant_type").cloned(),
            client_id: pairs.get("client_id").cloned(),
            client_secret: pairs.get("client_secret").cloned(),
            client_assertion_type: pairs.get("client_assertion_type").cloned(),
            client_assertion: pairs.get("client_assertion").cloned(),
            scope: pairs.get("scope").cloned(),
        }
    };
    let st = ctx.inner.read();
    let Some(dir) = st.azure.directory.as_ref() else {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            "Tenant not found.",
        ));
    };
    if !tenant.eq_ignore_ascii_case(&dir.tenant_id) {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
            ),
        ));
    }
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; the built-in vault issues client_credentials tokens only.",
        ));
    }
    let client_id = form.client_id.unwrap_or_default();
    let Some(app) = dir.principals.iter().find(|p| {
        p.app_id
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(&client_id))
    }) else {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        ));
    };
    // A certificate's signed assertion, or the client secret.
    if let Some(kind) = &form.client_assertion_type {
        if kind != certificates::ASSERTION_TYPE {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                format!(
                    "client_assertion_type must be {}",
                    certificates::ASSERTION_TYPE
                ),
            ));
        }
        let endpoint = format!("{}/oauth2/v2.0/token", authority(ctx, tenant));
        certificates::verify_assertion(
            app,
            &client_id,
            form.client_assertion.as_deref().unwrap_or(""),
            &endpoint,
            ctx.inner.now() as i64,
        )?;
    } else {
        let secret_ok = match (&app.secret_sha256, &form.client_secret) {
            (Some(h), Some(s)) => bool::from(h.as_bytes().ct_eq(sha256_hex(s).as_bytes())),
            _ => false,
        };
        if !secret_ok {
            return Err(TokenError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            ));
        }
    }
    let scope = form.scope.unwrap_or_default();
    let Some(aud) = scope
        .split_whitespace()
        .find_map(|s| s.strip_suffix("/.default"))
    else {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        ));
    };
    let claims = AccessClaims {
        oid: app.object_id.clone(),
        tid: dir.tenant_id.clone(),
        aud: aud.to_string(),
        exp: ctx.inner.now() as i64 + ACCESS_TOKEN_SECS,
    };
    let plain = serde_json::to_vec(&claims).unwrap_or_default();
    let sealed = ctx.inner.store.seal_raw(ACCESS_TOKEN_PURPOSE, &plain);
    tracing::debug!(client_id = %client_id, "devkms azure: issued an access token");
    Ok(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECS - 1,
        "ext_expires_in": ACCESS_TOKEN_SECS - 1,
        "access_token": format!("{ACCESS_TOKEN_PREFIX}{}", B64URL.encode(sealed)),
    }))
}
