//! The AWS KMS surface of the built-in KMS: the JSON 1.1 endpoint (`POST /`, `X-Amz-Target:
//! TrentService.<Operation>`), its authentication and dispatch, and one module per operation
//! group. Checks run in AWS's order: input validation, key lookup, authorization, key state,
//! key usage.
//!
//! - [`input`]: decoding the body and its members, with AWS's validation messages;
//! - [`access`]: resolving key references, cross-account scope, policy and grant evaluation;
//! - [`keys`], [`aliases`], [`policies`], [`crypto`], [`grants`], [`rotation`], [`tags`]: the
//!   operations, each parsing its request and applying it to the state.

mod access;
mod aliases;
mod crypto;
mod grants;
mod input;
mod keys;
mod policies;
mod rotation;
mod tags;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyplane_core::policy::Caller;
use serde_json::{Map, Value, json};

use crate::Inner;
use crate::error::ApiError;
use crate::sigv4;

use input::{Input, parse_body};

pub(crate) use rotation::auto_rotate;

/// Real KMS operations this server does not implement: answered as unsupported rather than
/// unknown, so a caller can tell a gap in the dev KMS from a typo.
const AWS_ONLY_OPERATIONS: &[&str] = &[
    "ConnectCustomKeyStore",
    "CreateCustomKeyStore",
    "DeleteCustomKeyStore",
    "DeleteImportedKeyMaterial",
    "DeriveSharedSecret",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "GetParametersForImport",
    "GetPublicKey",
    "ImportKeyMaterial",
    "ReplicateKey",
    "Sign",
    "UpdateCustomKeyStore",
    "UpdatePrimaryRegion",
    "Verify",
    "VerifyMac",
];

pub(crate) async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resp = match dispatch(&inner, &method, &uri, &headers, &body) {
        Ok(v) => {
            // Operations without a response (EnableKey, PutKeyPolicy, …) answer with an empty
            // body, as AWS does.
            let body = if v.is_null() {
                String::new()
            } else {
                v.to_string()
            };
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            r
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(kind = e.kind, message = %e.message, "devkms internal error");
            } else {
                tracing::debug!(kind = e.kind, message = %e.message, "devkms request refused");
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// Who is calling, where, and when.
pub(super) struct Ctx<'a> {
    pub(super) inner: &'a Inner,
    pub(super) caller: Caller,
    pub(super) region: String,
    pub(super) now: f64,
}

fn authenticate(
    inner: &Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Caller, String), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        })?;
    let parsed = sigv4::parse_authorization(auth)?;
    if parsed.service != "kms" {
        return Err(ApiError::new(
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'kms'.",
        ));
    }
    let amz_date = sigv4::check_date(headers, parsed.date, chrono::Utc::now())?;
    let st = inner.read();
    let ident = st.identities.get(parsed.access_key_id).ok_or_else(|| {
        ApiError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    if !sigv4::verify(
        &parsed,
        &amz_date,
        &ident.secret,
        method,
        uri,
        headers,
        body,
    ) {
        return Err(ApiError::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok((
        Caller {
            arn: ident.caller_arn(),
            account: ident.account.clone(),
        },
        parsed.region.to_string(),
    ))
}

fn dispatch(
    inner: &Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let (caller, region) = authenticate(inner, method, uri, headers, body)?;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let op = target.strip_prefix("TrentService.").unwrap_or("");
    let body = parse_body(body)?;
    let input = Input(&body);
    let ctx = Ctx {
        inner,
        caller,
        region,
        now: inner.now(),
    };
    match op {
        "CreateKey" => keys::create_key(&ctx, input),
        "DescribeKey" => keys::describe_key(&ctx, input),
        "ListKeys" => keys::list_keys(&ctx, input),
        "CreateAlias" => aliases::create_alias(&ctx, input),
        "UpdateAlias" => aliases::update_alias(&ctx, input),
        "DeleteAlias" => aliases::delete_alias(&ctx, input),
        "ListAliases" => aliases::list_aliases(&ctx, input),
        "GetKeyPolicy" => policies::get_key_policy(&ctx, input),
        "PutKeyPolicy" => policies::put_key_policy(&ctx, input),
        "ListKeyPolicies" => policies::list_key_policies(&ctx, input),
        "EnableKey" => keys::set_enabled(&ctx, input, true),
        "DisableKey" => keys::set_enabled(&ctx, input, false),
        "ScheduleKeyDeletion" => keys::schedule_key_deletion(&ctx, input),
        "CancelKeyDeletion" => keys::cancel_key_deletion(&ctx, input),
        "Encrypt" => crypto::encrypt(&ctx, input),
        "Decrypt" => crypto::decrypt(&ctx, input),
        "ReEncrypt" => crypto::re_encrypt(&ctx, input),
        "GenerateDataKey" => crypto::generate_data_key(&ctx, input, true),
        "GenerateDataKeyWithoutPlaintext" => crypto::generate_data_key(&ctx, input, false),
        "GenerateRandom" => crypto::generate_random(input),
        "CreateGrant" => grants::create_grant(&ctx, input),
        "ListGrants" => grants::list_grants(&ctx, input),
        "RevokeGrant" => grants::revoke_grant(&ctx, input),
        "RetireGrant" => grants::retire_grant(&ctx, input),
        "ListRetirableGrants" => grants::list_retirable_grants(&ctx, input),
        "EnableKeyRotation" => rotation::enable_key_rotation(&ctx, input),
        "DisableKeyRotation" => rotation::disable_key_rotation(&ctx, input),
        "GetKeyRotationStatus" => rotation::get_key_rotation_status(&ctx, input),
        "RotateKeyOnDemand" => rotation::rotate_key_on_demand(&ctx, input),
        "ListKeyRotations" => rotation::list_key_rotations(&ctx, input),
        "TagResource" => tags::tag_resource(&ctx, input),
        "UntagResource" => tags::untag_resource(&ctx, input),
        "ListResourceTags" => tags::list_resource_tags(&ctx, input),
        "UpdateKeyDescription" => keys::update_key_description(&ctx, input),
        other if AWS_ONLY_OPERATIONS.contains(&other) => Err(ApiError::new(
            "UnsupportedOperationException",
            format!("keyplane's built-in KMS does not implement {other}"),
        )),
        _ => Err(ApiError::new("UnknownOperationException", "")),
    }
}

pub(super) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Rounds to milliseconds, as AWS timestamps are.
pub(super) fn ts(t: f64) -> Value {
    json!((t * 1000.0).round() / 1000.0)
}

/// Returns the items after `marker` (by sort key), at most `limit`, and the next marker.
pub(super) fn page<T>(
    mut items: Vec<(String, T)>,
    limit: usize,
    marker: Option<&str>,
) -> (Vec<T>, Option<String>) {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match marker {
        Some(m) => items
            .iter()
            .position(|(k, _)| k.as_str() > m)
            .unwrap_or(items.len()),
        None => 0,
    };
    let rest: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    let mut out = Vec::with_capacity(limit.min(rest.len()));
    let mut last = None;
    for (k, v) in rest.into_iter().take(limit) {
        last = Some(k);
        out.push(v);
    }
    (out, if more { last } else { None })
}

pub(super) fn paged(mut body: Map<String, Value>, next: Option<String>) -> Value {
    body.insert("Truncated".into(), json!(next.is_some()));
    if let Some(m) = next {
        body.insert("NextMarker".into(), json!(m));
    }
    Value::Object(body)
}
