//! The KMS JSON 1.1 endpoint: authentication, input decoding, key resolution, authorization and
//! every operation. Checks run in AWS's order: input validation, key lookup, authorization, key
//! state, key usage.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyplane_core::policy::{self, Caller, Decision, KeyPolicy};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::Inner;
use crate::crypto::{self, BlobHeader, SecretKey};
use crate::error::ApiError;
use crate::sigv4;
use crate::state::{
    AliasRecord, GrantConstraints, GrantRecord, Key, KeyRecord, KeyState, MaterialRecord,
    RotationRecord, State, Tag,
};

const MAX_PLAINTEXT: usize = 4096;
const MAX_CIPHERTEXT: usize = 6144;
const SPECS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
];
const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

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
pub(crate) struct Ctx<'a> {
    inner: &'a Inner,
    caller: Caller,
    region: String,
    now: f64,
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
    let input = parse_body(body)?;
    let input = Input(&input);
    let ctx = Ctx {
        inner,
        caller,
        region,
        now: inner.now(),
    };
    match op {
        "CreateKey" => create_key(&ctx, &input),
        "DescribeKey" => describe_key(&ctx, &input),
        "ListKeys" => list_keys(&ctx, &input),
        "CreateAlias" => create_alias(&ctx, &input),
        "UpdateAlias" => update_alias(&ctx, &input),
        "DeleteAlias" => delete_alias(&ctx, &input),
        "ListAliases" => list_aliases(&ctx, &input),
        "GetKeyPolicy" => get_key_policy(&ctx, &input),
        "PutKeyPolicy" => put_key_policy(&ctx, &input),
        "ListKeyPolicies" => list_key_policies(&ctx, &input),
        "EnableKey" => set_enabled(&ctx, &input, true),
        "DisableKey" => set_enabled(&ctx, &input, false),
        "ScheduleKeyDeletion" => schedule_key_deletion(&ctx, &input),
        "CancelKeyDeletion" => cancel_key_deletion(&ctx, &input),
        "Encrypt" => encrypt(&ctx, &input),
        "Decrypt" => decrypt(&ctx, &input),
        "ReEncrypt" => re_encrypt(&ctx, &input),
        "GenerateDataKey" => generate_data_key(&ctx, &input, true),
        "GenerateDataKeyWithoutPlaintext" => generate_data_key(&ctx, &input, false),
        "GenerateRandom" => generate_random(&input),
        "CreateGrant" => create_grant(&ctx, &input),
        "ListGrants" => list_grants(&ctx, &input),
        "RevokeGrant" => revoke_grant(&ctx, &input),
        "RetireGrant" => retire_grant(&ctx, &input),
        "ListRetirableGrants" => list_retirable_grants(&ctx, &input),
        "EnableKeyRotation" => enable_key_rotation(&ctx, &input),
        "DisableKeyRotation" => disable_key_rotation(&ctx, &input),
        "GetKeyRotationStatus" => get_key_rotation_status(&ctx, &input),
        "RotateKeyOnDemand" => rotate_key_on_demand(&ctx, &input),
        "ListKeyRotations" => list_key_rotations(&ctx, &input),
        "TagResource" => tag_resource(&ctx, &input),
        "UntagResource" => untag_resource(&ctx, &input),
        "ListResourceTags" => list_resource_tags(&ctx, &input),
        "UpdateKeyDescription" => update_key_description(&ctx, &input),
        other if AWS_ONLY_OPERATIONS.contains(&other) => Err(ApiError::new(
            "UnsupportedOperationException",
            format!("keyplane's built-in KMS does not implement {other}"),
        )),
        _ => Err(ApiError::new("UnknownOperationException", "")),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::serialization(
            "Start of structure or map found where not expected.",
        )),
        Err(_) => Err(ApiError::serialization(
            "Unexpected character or malformed JSON in request body.",
        )),
    }
}

/// Typed access to the request members with AWS's error for each kind of mistake.
struct Input<'a>(&'a Map<String, Value>);

fn member_name(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn wrong_type(name: &str, expected: &str) -> ApiError {
    ApiError::serialization(format!("Expected {expected} for member '{name}'"))
}

impl Input<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
    fn str_opt(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(name, "a string")),
        }
    }
    fn str_req(&self, name: &str) -> Result<&str, ApiError> {
        self.str_opt(name)?
            .ok_or_else(|| ApiError::missing(&member_name(name)))
    }
    fn bool_opt(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(name, "a boolean")),
        }
    }
    fn int_opt(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "an integer")),
        }
    }
    fn blob_opt(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        match self.str_opt(name)? {
            None => Ok(None),
            Some(s) => B64.decode(s).map(|v| Some(Zeroizing::new(v))).map_err(|_| {
                ApiError::serialization(format!(
                    "Base64 encoded binary data is not valid for member '{name}'"
                ))
            }),
        }
    }
    fn blob_req(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        self.blob_opt(name)?
            .ok_or_else(|| ApiError::missing(&member_name(name)))
    }
    fn map_opt(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        _ => return Err(wrong_type(name, "a map of strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(wrong_type(name, "a map")),
        }
    }
    fn context(&self, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(self.map_opt(name)?.unwrap_or_default())
    }
    fn str_list_opt(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| wrong_type(name, "a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong_type(name, "a list")),
        }
    }
    /// An optional integer that must lie in `range`, refused with AWS's validation message.
    fn int_in(&self, name: &str, range: RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
        match self.int_opt(name)? {
            Some(n) if !range.contains(&n) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {} and {}",
                member_name(name),
                range.start(),
                range.end()
            ))),
            n => Ok(n),
        }
    }
    fn limit(&self) -> Result<usize, ApiError> {
        Ok(self.int_in("Limit", 1..=1000)?.unwrap_or(100) as usize)
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Rounds to milliseconds, as AWS timestamps are.
fn ts(t: f64) -> Value {
    json!((t * 1000.0).round() / 1000.0)
}

/// Returns the items after `marker` (by sort key), at most `limit`, and the next marker.
fn page<T>(
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

fn paged(mut body: Map<String, Value>, next: Option<String>) -> Value {
    body.insert("Truncated".into(), json!(next.is_some()));
    if let Some(m) = next {
        body.insert("NextMarker".into(), json!(m));
    }
    Value::Object(body)
}

fn valid_key_id(id: &str) -> bool {
    if let Some(hexpart) = id.strip_prefix("mrk-") {
        return hexpart.len() == 32 && hexpart.bytes().all(|b| b.is_ascii_hexdigit());
    }
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

/// Which account's key an ARN or name points at, before looking it up.
enum KeyRef {
    Key { account: String, id: String },
    Alias { account: String, name: String },
}

/// Whether the operation may name a key in another account (AWS's "Cross-account use").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    CrossAccount,
    OwnAccount,
}

impl Ctx<'_> {
    fn account(&self) -> &str {
        &self.caller.account
    }
    fn key_arn(&self, account: &str, id: &str) -> String {
        format!("arn:aws:kms:{}:{account}:key/{id}", self.region)
    }
    fn alias_arn(&self, account: &str, name: &str) -> String {
        format!("arn:aws:kms:{}:{account}:{name}", self.region)
    }
    fn alias_not_found(&self, account: &str, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "Alias {} is not found.",
            self.alias_arn(account, name)
        ))
    }

    /// Where the caller's own alias `name` in this region is kept in `State::aliases`.
    fn own_alias_slot(&self, name: &str) -> (String, String, String) {
        (
            self.account().to_string(),
            self.region.clone(),
            name.to_string(),
        )
    }

    /// The caller's own alias `name` in this region: its slot and its target key's id.
    fn own_alias(
        &self,
        st: &State,
        name: &str,
    ) -> Result<((String, String, String), String), ApiError> {
        let slot = self.own_alias_slot(name);
        let target = st
            .aliases
            .get(&slot)
            .map(|a| a.target_key_id.clone())
            .ok_or_else(|| self.alias_not_found(self.account(), name))?;
        Ok((slot, target))
    }

    fn parse_ref(&self, key_ref: &str, scope: Scope) -> Result<KeyRef, ApiError> {
        if key_ref.is_empty() || key_ref.len() > 2048 {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length between 1 and 2048",
            ));
        }
        if key_ref.starts_with("arn:") {
            let parts: Vec<&str> = key_ref.splitn(6, ':').collect();
            let invalid = || ApiError::not_found(format!("Invalid arn {key_ref}"));
            if parts.len() != 6 || parts[1] != "aws" || parts[2] != "kms" {
                return Err(invalid());
            }
            let (region, account, resource) = (parts[3], parts[4], parts[5]);
            if region != self.region {
                return Err(invalid());
            }
            let r = if let Some(id) = resource.strip_prefix("key/") {
                KeyRef::Key {
                    account: account.to_string(),
                    id: id.to_string(),
                }
            } else if resource.starts_with("alias/") {
                KeyRef::Alias {
                    account: account.to_string(),
                    name: resource.to_string(),
                }
            } else {
                return Err(invalid());
            };
            let other = match &r {
                KeyRef::Key { account, .. } | KeyRef::Alias { account, .. } => {
                    account != self.account()
                }
            };
            if other && scope == Scope::OwnAccount {
                return Err(match r {
                    KeyRef::Key { account, id } => {
                        ApiError::key_not_found(&self.key_arn(&account, &id))
                    }
                    KeyRef::Alias { account, name } => self.alias_not_found(&account, &name),
                });
            }
            return Ok(r);
        }
        if key_ref.starts_with("alias/") {
            return Ok(KeyRef::Alias {
                account: self.account().to_string(),
                name: key_ref.to_string(),
            });
        }
        if !valid_key_id(key_ref) {
            return Err(ApiError::not_found(format!("Invalid keyId '{key_ref}'")));
        }
        Ok(KeyRef::Key {
            account: self.account().to_string(),
            id: key_ref.to_string(),
        })
    }

    /// Finds the key a KeyId names (key id, key ARN, alias name or alias ARN) and returns its id.
    fn resolve(&self, st: &State, key_ref: &str, scope: Scope) -> Result<String, ApiError> {
        let (account, id) = match self.parse_ref(key_ref, scope)? {
            KeyRef::Key { account, id } => (account, id),
            KeyRef::Alias { account, name } => {
                let slot = (account, self.region.clone(), name);
                let a = st
                    .aliases
                    .get(&slot)
                    .ok_or_else(|| self.alias_not_found(&slot.0, &slot.2))?;
                (slot.0, a.target_key_id.clone())
            }
        };
        match st.keys.get(&id) {
            Some(k)
                if k.rec.account == account
                    && k.rec.region == self.region
                    && !k.is_deleted(self.now) =>
            {
                Ok(id)
            }
            _ => Err(ApiError::key_not_found(&self.key_arn(&account, &id))),
        }
    }

    fn key<'s>(&self, st: &'s State, key_ref: &str, scope: Scope) -> Result<&'s Key, ApiError> {
        stored(st, &self.resolve(st, key_ref, scope)?)
    }

    /// Evaluates the key policy (and, for grantable operations, the key's grants) for `action`.
    /// Returns the grant that allowed the call, if it was a grant.
    fn authorize<'k>(
        &self,
        key: &'k Key,
        action: &str,
        enc_ctx: Option<&BTreeMap<String, String>>,
        extra: &[(&str, Vec<String>)],
    ) -> Result<Option<&'k GrantRecord>, ApiError> {
        let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(ec) = enc_ctx {
            for (k, v) in ec {
                context.insert(format!("kms:EncryptionContext:{k}"), vec![v.clone()]);
            }
            if !ec.is_empty() {
                context.insert(
                    "kms:EncryptionContextKeys".into(),
                    ec.keys().cloned().collect(),
                );
            }
        }
        context.insert("kms:KeySpec".into(), vec![key.rec.key_spec.clone()]);
        context.insert("kms:KeyUsage".into(), vec![key.rec.key_usage.clone()]);
        for (k, v) in extra {
            context.insert((*k).to_string(), v.clone());
        }
        let req = policy::Request {
            action,
            caller: &self.caller,
            key_arn: &key.rec.arn,
            key_account: &key.rec.account,
            context: &context,
        };
        match policy::evaluate(&key.policy, &req).decision {
            Decision::Allow => return Ok(None),
            Decision::ExplicitDeny => {
                return Err(ApiError::access_denied(
                    &self.caller.arn,
                    action,
                    &key.rec.arn,
                    true,
                ));
            }
            _ => {}
        }
        let op = action.strip_prefix("kms:").unwrap_or(action);
        if GRANT_OPERATIONS.contains(&op)
            && let Some(g) = key.rec.grants.iter().find(|g| {
                g.operations.iter().any(|o| o == op)
                    && principal_matches(&g.grantee_principal, &self.caller)
                    && constraints_hold(g.constraints.as_ref(), enc_ctx)
            })
        {
            return Ok(Some(g));
        }
        Err(ApiError::access_denied(
            &self.caller.arn,
            action,
            &key.rec.arn,
            false,
        ))
    }
}

/// The key with id `id`, which [`Ctx::resolve`] has just found under the same lock.
fn stored<'s>(st: &'s State, id: &str) -> Result<&'s Key, ApiError> {
    st.keys
        .get(id)
        .ok_or_else(|| ApiError::internal("key vanished"))
}

fn stored_mut<'s>(st: &'s mut State, id: &str) -> Result<&'s mut Key, ApiError> {
    st.keys
        .get_mut(id)
        .ok_or_else(|| ApiError::internal("key vanished"))
}

/// Whether a principal named in a grant is the caller: its own ARN, its role (for an assumed
/// role session), or its account.
fn principal_matches(p: &str, caller: &Caller) -> bool {
    if p == caller.arn
        || p == caller.account
        || p == format!("arn:aws:iam::{}:root", caller.account)
    {
        return true;
    }
    let prefix = format!("arn:aws:sts::{}:assumed-role/", caller.account);
    if let Some(rest) = caller.arn.strip_prefix(&prefix)
        && let Some((role, _session)) = rest.split_once('/')
    {
        return p == format!("arn:aws:iam::{}:role/{role}", caller.account);
    }
    false
}

/// Grant constraints only restrict operations that take an encryption context.
fn constraints_hold(
    c: Option<&GrantConstraints>,
    enc_ctx: Option<&BTreeMap<String, String>>,
) -> bool {
    let (Some(c), Some(ec)) = (c, enc_ctx) else {
        return true;
    };
    if let Some(eq) = &c.encryption_context_equals
        && eq != ec
    {
        return false;
    }
    if let Some(sub) = &c.encryption_context_subset
        && !sub.iter().all(|(k, v)| ec.get(k) == Some(v))
    {
        return false;
    }
    true
}

fn require_enabled(k: &Key) -> Result<(), ApiError> {
    match k.rec.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(ApiError::disabled(&k.rec.arn)),
        KeyState::PendingDeletion => Err(ApiError::pending_deletion(&k.rec.arn)),
    }
}

/// The checks every cryptographic use of a key makes, in AWS's order: the policy (or a grant)
/// allows `action` under `enc_ctx`, the key is enabled, and it is a symmetric encryption key.
/// `op` names the operation in the key-usage error.
fn authorize_crypto(
    ctx: &Ctx<'_>,
    k: &Key,
    action: &str,
    op: &str,
    enc_ctx: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    ctx.authorize(k, action, Some(enc_ctx), &[])?;
    require_enabled(k)?;
    require_symmetric_crypto(k, op)
}

fn require_not_pending(k: &Key) -> Result<(), ApiError> {
    if k.rec.state == KeyState::PendingDeletion {
        return Err(ApiError::pending_deletion(&k.rec.arn));
    }
    Ok(())
}

fn require_symmetric_crypto(k: &Key, op: &str) -> Result<(), ApiError> {
    if k.rec.key_usage != "ENCRYPT_DECRYPT" || !k.is_symmetric() {
        return Err(ApiError::new(
            "InvalidKeyUsageException",
            format!(
                "{} key usage is {} which is not valid for {op}.",
                k.rec.arn, k.rec.key_usage
            ),
        ));
    }
    Ok(())
}

fn check_algorithm(k: &Key, alg: Option<&str>) -> Result<(), ApiError> {
    match alg {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some("RSAES_OAEP_SHA_1") | Some("RSAES_OAEP_SHA_256") | Some("SM2PKE") => {
            Err(ApiError::new(
                "InvalidKeyUsageException",
                format!(
                    "The encryption algorithm is not valid for KMS key {}.",
                    k.rec.arn
                ),
            ))
        }
        Some(other) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'encryptionAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]"
        ))),
    }
}

fn algorithms(
    spec: &str,
    usage: &str,
) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let (mut enc, mut sign, mut mac) = (vec![], vec![], vec![]);
    match (spec, usage) {
        ("SYMMETRIC_DEFAULT", _) => enc = vec!["SYMMETRIC_DEFAULT"],
        (s, "ENCRYPT_DECRYPT") if s.starts_with("RSA_") => {
            enc = vec!["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
        }
        (s, "SIGN_VERIFY") if s.starts_with("RSA_") => {
            sign = vec![
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ]
        }
        ("ECC_NIST_P256", "SIGN_VERIFY") | ("ECC_SECG_P256K1", "SIGN_VERIFY") => {
            sign = vec!["ECDSA_SHA_256"]
        }
        ("ECC_NIST_P384", "SIGN_VERIFY") => sign = vec!["ECDSA_SHA_384"],
        ("ECC_NIST_P521", "SIGN_VERIFY") => sign = vec!["ECDSA_SHA_512"],
        ("HMAC_224", _) => mac = vec!["HMAC_SHA_224"],
        ("HMAC_256", _) => mac = vec!["HMAC_SHA_256"],
        ("HMAC_384", _) => mac = vec!["HMAC_SHA_384"],
        ("HMAC_512", _) => mac = vec!["HMAC_SHA_512"],
        _ => {}
    }
    (enc, sign, mac)
}

fn metadata(k: &Key) -> Value {
    let r = &k.rec;
    let mut m = json!({
        "AWSAccountId": r.account,
        "KeyId": r.key_id,
        "Arn": r.arn,
        "CreationDate": ts(r.creation_date),
        "Enabled": r.state == KeyState::Enabled,
        "Description": r.description,
        "KeyUsage": r.key_usage,
        "KeyState": r.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": r.key_spec,
        "KeySpec": r.key_spec,
        "MultiRegion": r.multi_region,
    });
    let (enc, sign, mac) = algorithms(&r.key_spec, &r.key_usage);
    if !enc.is_empty() {
        m["EncryptionAlgorithms"] = json!(enc);
    }
    if !sign.is_empty() {
        m["SigningAlgorithms"] = json!(sign);
    }
    if !mac.is_empty() {
        m["MacAlgorithms"] = json!(mac);
    }
    if r.state == KeyState::PendingDeletion {
        if let Some(d) = r.deletion_date {
            m["DeletionDate"] = ts(d);
        }
        if let Some(w) = r.pending_window_days {
            m["PendingDeletionWindowInDays"] = json!(w);
        }
    }
    if r.multi_region {
        m["MultiRegionConfiguration"] = json!({
            "MultiRegionKeyType": "PRIMARY",
            "PrimaryKey": { "Arn": r.arn, "Region": r.region },
            "ReplicaKeys": [],
        });
    }
    m
}

fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(ApiError::new(
                "TagException",
                format!("Tag key or value of '{}' has an invalid length", t.key),
            ));
        }
        if t.key.starts_with("aws:") {
            return Err(ApiError::new(
                "TagException",
                "Tags beginning with aws: are reserved",
            ));
        }
    }
    Ok(())
}

fn parse_tags(input: &Input<'_>) -> Result<Vec<Tag>, ApiError> {
    let Some(v) = input.get("Tags") else {
        return Ok(vec![]);
    };
    let arr = v.as_array().ok_or_else(|| wrong_type("Tags", "a list"))?;
    let mut out = Vec::with_capacity(arr.len());
    for t in arr {
        let key = t
            .get("TagKey")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing("tagKey"))?;
        let value = t
            .get("TagValue")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing("tagValue"))?;
        out.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    validate_tags(&out)?;
    Ok(out)
}

fn parse_policy(json: &str) -> Result<KeyPolicy, ApiError> {
    KeyPolicy::parse(json)
        .map_err(|e| ApiError::new("MalformedPolicyDocumentException", e.to_string()))
}

fn lockout(ctx: &Ctx<'_>, policy: &KeyPolicy, arn: &str, account: &str) -> Result<(), ApiError> {
    policy::lockout_check(policy, &ctx.caller, arn, account).map_err(|_| {
        ApiError::new(
            "MalformedPolicyDocumentException",
            "The new key policy will not allow you to update the key policy in the future.",
        )
    })
}

fn new_material(
    ctx: &Ctx<'_>,
    arn: &str,
    version: usize,
    rotation_type: Option<&str>,
) -> (SecretKey, MaterialRecord) {
    let key = SecretKey::random();
    let sealed = ctx.inner.store.seal_material(arn, version, &key);
    (
        key,
        MaterialRecord {
            created: ctx.now,
            rotation_type: rotation_type.map(String::from),
            sealed,
        },
    )
}

fn create_key(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let spec = match (
        input.str_opt("KeySpec")?,
        input.str_opt("CustomerMasterKeySpec")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request.",
            ));
        }
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => "SYMMETRIC_DEFAULT",
    };
    if !SPECS.contains(&spec) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{spec}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            SPECS.join(", ")
        )));
    }
    let default_usage = if spec.starts_with("HMAC_") {
        "GENERATE_VERIFY_MAC"
    } else {
        "ENCRYPT_DECRYPT"
    };
    let usage = input.str_opt("KeyUsage")?.unwrap_or(default_usage);
    let allowed: &[&str] = match spec {
        "SYMMETRIC_DEFAULT" => &["ENCRYPT_DECRYPT"],
        s if s.starts_with("RSA_") => &["ENCRYPT_DECRYPT", "SIGN_VERIFY"],
        s if s.starts_with("ECC_NIST_") => &["SIGN_VERIFY", "KEY_AGREEMENT"],
        "ECC_SECG_P256K1" => &["SIGN_VERIFY"],
        _ => &["GENERATE_VERIFY_MAC"],
    };
    if ![
        "ENCRYPT_DECRYPT",
        "SIGN_VERIFY",
        "GENERATE_VERIFY_MAC",
        "KEY_AGREEMENT",
    ]
    .contains(&usage)
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{usage}' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC, KEY_AGREEMENT]"
        )));
    }
    if !allowed.contains(&usage) {
        return Err(ApiError::validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec}"
        )));
    }
    if let Some(origin) = input.str_opt("Origin")?
        && origin != "AWS_KMS"
    {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            format!("Origin {origin} is not supported by keyplane's KMS"),
        ));
    }
    if input.str_opt("CustomKeyStoreId")?.is_some() || input.str_opt("XksKeyId")?.is_some() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "Custom key stores are not supported by keyplane's KMS",
        ));
    }
    let description = input.str_opt("Description")?.unwrap_or("").to_string();
    if description.chars().count() > 8192 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    let multi_region = input.bool_opt("MultiRegion")?.unwrap_or(false);
    let bypass = input
        .bool_opt("BypassPolicyLockoutSafetyCheck")?
        .unwrap_or(false);
    let tags = parse_tags(input)?;
    let account = ctx.account().to_string();
    let key_id = if multi_region {
        format!("mrk-{}", uuid::Uuid::new_v4().simple())
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    let arn = ctx.key_arn(&account, &key_id);
    let (policy_json, policy) = match input.str_opt("Policy")? {
        Some(p) => {
            let parsed = parse_policy(p)?;
            if !bypass {
                lockout(ctx, &parsed, &arn, &account)?;
            }
            (p.to_string(), parsed)
        }
        None => {
            let p = KeyPolicy::default_policy_json(&account);
            let parsed = parse_policy(&p)?;
            (p, parsed)
        }
    };
    let mut materials = vec![];
    let mut records = vec![];
    if spec == "SYMMETRIC_DEFAULT" || spec.starts_with("HMAC_") {
        let (k, r) = new_material(ctx, &arn, 0, None);
        materials.push(k);
        records.push(r);
    }
    let rec = KeyRecord {
        key_id: key_id.clone(),
        account,
        region: ctx.region.clone(),
        arn,
        creation_date: ctx.now,
        description,
        key_spec: spec.to_string(),
        key_usage: usage.to_string(),
        state: KeyState::Enabled,
        deletion_date: None,
        pending_window_days: None,
        multi_region,
        policy: policy_json,
        tags,
        rotation: RotationRecord {
            period_days: 365,
            ..Default::default()
        },
        materials: records,
        grants: vec![],
    };
    let key = Key {
        rec,
        policy: Arc::new(policy),
        materials,
    };
    let meta = metadata(&key);
    let mut st = ctx.inner.write();
    st.keys.insert(key_id, key);
    ctx.inner.commit(st)?;
    Ok(json!({ "KeyMetadata": meta }))
}

fn describe_key(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:DescribeKey", None, &[])?;
    Ok(json!({ "KeyMetadata": metadata(k) }))
}

fn list_keys(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let items: Vec<(String, Value)> = st
        .keys
        .values()
        .filter(|k| {
            k.rec.account == ctx.account() && k.rec.region == ctx.region && !k.is_deleted(ctx.now)
        })
        .map(|k| {
            (
                k.rec.key_id.clone(),
                json!({ "KeyId": k.rec.key_id, "KeyArn": k.rec.arn }),
            )
        })
        .collect();
    let (keys, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Keys".into(), json!(keys));
    Ok(paged(body, next))
}

fn validate_alias_name(name: &str) -> Result<(), ApiError> {
    let rest = name.strip_prefix("alias/").unwrap_or("");
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(ApiError::new(
            "NotAuthorizedException",
            "Cannot create, update or delete an alias with the reserved prefix alias/aws/",
        ));
    }
    Ok(())
}

/// The target of CreateAlias/UpdateAlias must be a key (not an alias) in the caller's account.
fn alias_target(ctx: &Ctx<'_>, st: &State, target: &str) -> Result<String, ApiError> {
    if target.starts_with("alias/") || (target.starts_with("arn:") && target.contains(":alias/")) {
        return Err(ApiError::validation(
            "TargetKeyId must be a key ID or key ARN, not an alias",
        ));
    }
    ctx.resolve(st, target, Scope::OwnAccount)
}

fn create_alias(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?.to_string();
    let target = input.str_req("TargetKeyId")?;
    validate_alias_name(&name)?;
    let mut st = ctx.inner.write();
    let id = alias_target(ctx, &st, target)?;
    let k = stored(&st, &id)?;
    ctx.authorize(k, "kms:CreateAlias", None, &[])?;
    require_not_pending(k)?;
    let slot = ctx.own_alias_slot(&name);
    if st.aliases.contains_key(&slot) {
        return Err(ApiError::new(
            "AlreadyExistsException",
            format!(
                "An alias with the name {} already exists",
                ctx.alias_arn(ctx.account(), &name)
            ),
        ));
    }
    st.aliases.insert(
        slot,
        AliasRecord {
            account: ctx.account().to_string(),
            region: ctx.region.clone(),
            name,
            target_key_id: id,
            creation_date: ctx.now,
            last_updated: ctx.now,
        },
    );
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

fn update_alias(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?;
    let target = input.str_req("TargetKeyId")?;
    validate_alias_name(name)?;
    let mut st = ctx.inner.write();
    let (slot, old) = ctx.own_alias(&st, name)?;
    let id = alias_target(ctx, &st, target)?;
    for kid in [&old, &id] {
        if let Some(k) = st.keys.get(kid) {
            ctx.authorize(k, "kms:UpdateAlias", None, &[])?;
            require_not_pending(k)?;
        }
    }
    if let Some(a) = st.aliases.get_mut(&slot) {
        a.target_key_id = id;
        a.last_updated = ctx.now;
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

fn delete_alias(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?;
    validate_alias_name(name)?;
    let mut st = ctx.inner.write();
    let (slot, target) = ctx.own_alias(&st, name)?;
    if let Some(k) = st.keys.get(&target) {
        ctx.authorize(k, "kms:DeleteAlias", None, &[])?;
    }
    st.aliases.remove(&slot);
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

fn list_aliases(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let filter = match input.str_opt("KeyId")? {
        Some(k) => {
            if k.starts_with("alias/") || k.contains(":alias/") {
                return Err(ApiError::validation("KeyId must be a key ID or key ARN"));
            }
            Some(ctx.resolve(&st, k, Scope::OwnAccount)?)
        }
        None => None,
    };
    let items: Vec<(String, Value)> = st
        .aliases
        .values()
        .filter(|a| a.account == ctx.account() && a.region == ctx.region)
        .filter(|a| filter.as_ref().is_none_or(|f| &a.target_key_id == f))
        .filter(|a| {
            st.keys
                .get(&a.target_key_id)
                .is_some_and(|k| !k.is_deleted(ctx.now))
        })
        .map(|a| {
            (
                a.name.clone(),
                json!({
                    "AliasName": a.name,
                    "AliasArn": ctx.alias_arn(&a.account, &a.name),
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": ts(a.creation_date),
                    "LastUpdatedDate": ts(a.last_updated),
                }),
            )
        })
        .collect();
    let (aliases, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Aliases".into(), json!(aliases));
    Ok(paged(body, next))
}

fn check_policy_name(input: &Input<'_>, required: bool) -> Result<(), ApiError> {
    let name = input.str_opt("PolicyName")?;
    match name {
        None if required => Err(ApiError::missing("policyName")),
        None | Some("default") => Ok(()),
        Some(other) => Err(ApiError::not_found(format!(
            "No such policy exists: {other}"
        ))),
    }
}

fn get_key_policy(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    check_policy_name(input, false)?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:GetKeyPolicy", None, &[])?;
    Ok(json!({ "Policy": k.rec.policy, "PolicyName": "default" }))
}

fn put_key_policy(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let policy_json = input.str_req("Policy")?.to_string();
    check_policy_name(input, false)?;
    let bypass = input
        .bool_opt("BypassPolicyLockoutSafetyCheck")?
        .unwrap_or(false);
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, Scope::OwnAccount)?;
    let k = stored(&st, &id)?;
    ctx.authorize(k, "kms:PutKeyPolicy", None, &[])?;
    let parsed = parse_policy(&policy_json)?;
    if !bypass {
        lockout(ctx, &parsed, &k.rec.arn, &k.rec.account)?;
    }
    if let Some(k) = st.keys.get_mut(&id) {
        k.rec.policy = policy_json;
        k.policy = Arc::new(parsed);
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

fn list_key_policies(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    input.limit()?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListKeyPolicies", None, &[])?;
    Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
}

/// Runs a mutation on one key (resolved in `scope`, authorized for `action`) and persists it.
fn mutate_key<T>(
    ctx: &Ctx<'_>,
    key_ref: &str,
    scope: Scope,
    action: &str,
    f: impl FnOnce(&Ctx<'_>, &mut Key) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, scope)?;
    ctx.authorize(stored(&st, &id)?, action, None, &[])?;
    let k = stored_mut(&mut st, &id)?;
    let out = f(ctx, k)?;
    ctx.inner.commit(st)?;
    Ok(out)
}

fn set_enabled(ctx: &Ctx<'_>, input: &Input<'_>, enable: bool) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let action = if enable {
        "kms:EnableKey"
    } else {
        "kms:DisableKey"
    };
    mutate_key(ctx, key_ref, Scope::OwnAccount, action, |_, k| {
        require_not_pending(k)?;
        k.rec.state = if enable {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        Ok(Value::Null)
    })
}

fn schedule_key_deletion(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let days = input.int_in("PendingWindowInDays", 7..=30)?.unwrap_or(30) as u32;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:ScheduleKeyDeletion",
        |ctx, k| {
            require_not_pending(k)?;
            let date = ctx.now + f64::from(days) * 86_400.0;
            k.rec.state = KeyState::PendingDeletion;
            k.rec.deletion_date = Some(date);
            k.rec.pending_window_days = Some(days);
            Ok(json!({
                "KeyId": k.rec.arn,
                "DeletionDate": ts(date),
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": days,
            }))
        },
    )
}

fn cancel_key_deletion(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:CancelKeyDeletion",
        |_, k| {
            if k.rec.state != KeyState::PendingDeletion {
                return Err(ApiError::invalid_state(format!(
                    "{} is not pending deletion.",
                    k.rec.arn
                )));
            }
            k.rec.state = KeyState::Disabled;
            k.rec.deletion_date = None;
            k.rec.pending_window_days = None;
            Ok(json!({ "KeyId": k.rec.arn }))
        },
    )
}

fn seal_under(
    ctx: &Ctx<'_>,
    k: &Key,
    enc_ctx: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let version = k
        .materials
        .len()
        .checked_sub(1)
        .ok_or_else(|| ApiError::internal("key has no material"))?;
    let header = BlobHeader {
        account: k.rec.account.clone(),
        region: ctx.region.clone(),
        key_id: k.rec.key_id.clone(),
        version: version as u32,
    };
    Ok(crypto::seal_blob(
        &k.materials[version],
        &header,
        enc_ctx,
        plaintext,
    ))
}

fn encrypt(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let plaintext = input.blob_req("Plaintext")?;
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length {}",
            if plaintext.is_empty() {
                "greater than or equal to 1"
            } else {
                "less than or equal to 4096"
            }
        )));
    }
    let enc_ctx = input.context("EncryptionContext")?;
    let alg = input.str_opt("EncryptionAlgorithm")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    authorize_crypto(ctx, k, "kms:Encrypt", "Encrypt", &enc_ctx)?;
    check_algorithm(k, alg)?;
    let blob = seal_under(ctx, k, &enc_ctx, &plaintext)?;
    Ok(
        json!({ "CiphertextBlob": b64(&blob), "KeyId": k.rec.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" }),
    )
}

/// Finds and authorizes the key a ciphertext names, then opens it. `requested` is the optional
/// KeyId the caller said it expects.
fn open_ciphertext<'s>(
    ctx: &Ctx<'_>,
    st: &'s State,
    blob: &[u8],
    enc_ctx: &BTreeMap<String, String>,
    requested: Option<&str>,
    action: &str,
) -> Result<(&'s Key, Zeroizing<Vec<u8>>), ApiError> {
    if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length between 1 and 6144",
        ));
    }
    let (header, header_bytes, sealed) =
        BlobHeader::parse(blob).ok_or_else(ApiError::invalid_ciphertext)?;
    if header.region != ctx.region {
        return Err(ApiError::invalid_ciphertext());
    }
    let k = match st.keys.get(&header.key_id) {
        Some(k)
            if k.rec.account == header.account
                && k.rec.region == header.region
                && !k.is_deleted(ctx.now) =>
        {
            k
        }
        _ => {
            return Err(ApiError::key_not_found(
                &ctx.key_arn(&header.account, &header.key_id),
            ));
        }
    };
    if let Some(r) = requested {
        let wanted = ctx.resolve(st, r, Scope::CrossAccount)?;
        if wanted != k.rec.key_id {
            return Err(ApiError::new(
                "IncorrectKeyException",
                "The key ID in the request does not identify a KMS key that can perform this operation.",
            ));
        }
    }
    authorize_crypto(ctx, k, action, action.trim_start_matches("kms:"), enc_ctx)?;
    let material = k
        .materials
        .get(header.version as usize)
        .ok_or_else(ApiError::invalid_ciphertext)?;
    let pt = crypto::open_blob(material, header_bytes, sealed, enc_ctx)
        .ok_or_else(ApiError::invalid_ciphertext)?;
    Ok((k, pt))
}

fn decrypt(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let blob = input.blob_req("CiphertextBlob")?;
    let enc_ctx = input.context("EncryptionContext")?;
    let requested = input.str_opt("KeyId")?;
    let alg = input.str_opt("EncryptionAlgorithm")?;
    let st = ctx.inner.read();
    let (k, pt) = open_ciphertext(ctx, &st, &blob, &enc_ctx, requested, "kms:Decrypt")?;
    check_algorithm(k, alg)?;
    Ok(
        json!({ "KeyId": k.rec.arn, "Plaintext": b64(&pt), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" }),
    )
}

fn re_encrypt(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let blob = input.blob_req("CiphertextBlob")?;
    let dest_ref = input.str_req("DestinationKeyId")?;
    let src_ctx = input.context("SourceEncryptionContext")?;
    let dst_ctx = input.context("DestinationEncryptionContext")?;
    let src_ref = input.str_opt("SourceKeyId")?;
    let src_alg = input.str_opt("SourceEncryptionAlgorithm")?;
    let dst_alg = input.str_opt("DestinationEncryptionAlgorithm")?;
    let st = ctx.inner.read();
    let (src, pt) = open_ciphertext(ctx, &st, &blob, &src_ctx, src_ref, "kms:ReEncryptFrom")?;
    check_algorithm(src, src_alg)?;
    let dst = ctx.key(&st, dest_ref, Scope::CrossAccount)?;
    authorize_crypto(ctx, dst, "kms:ReEncryptTo", "ReEncrypt", &dst_ctx)?;
    check_algorithm(dst, dst_alg)?;
    let out = seal_under(ctx, dst, &dst_ctx, &pt)?;
    Ok(json!({
        "CiphertextBlob": b64(&out),
        "SourceKeyId": src.rec.arn,
        "KeyId": dst.rec.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

fn data_key_len(input: &Input<'_>) -> Result<usize, ApiError> {
    match (input.str_opt("KeySpec")?, input.int_opt("NumberOfBytes")?) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "Please specify either number of bytes or key spec.",
        )),
        (None, None) => Err(ApiError::validation(
            "Please specify either number of bytes or key spec.",
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(other), None) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
        ))),
        (None, Some(n)) if (1..=1024).contains(&n) => Ok(n as usize),
        (None, Some(n)) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
        ))),
    }
}

fn generate_data_key(
    ctx: &Ctx<'_>,
    input: &Input<'_>,
    with_plaintext: bool,
) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let len = data_key_len(input)?;
    let enc_ctx = input.context("EncryptionContext")?;
    let (action, op) = if with_plaintext {
        ("kms:GenerateDataKey", "GenerateDataKey")
    } else {
        (
            "kms:GenerateDataKeyWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
        )
    };
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    authorize_crypto(ctx, k, action, op, &enc_ctx)?;
    let dk = crypto::random_bytes(len);
    let blob = seal_under(ctx, k, &enc_ctx, &dk)?;
    let mut out = json!({ "CiphertextBlob": b64(&blob), "KeyId": k.rec.arn });
    if with_plaintext {
        out["Plaintext"] = json!(b64(&dk));
    }
    Ok(out)
}

fn generate_random(input: &Input<'_>) -> Result<Value, ApiError> {
    if input.str_opt("CustomKeyStoreId")?.is_some() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "Custom key stores are not supported by keyplane's KMS",
        ));
    }
    let n = input
        .int_in("NumberOfBytes", 1..=1024)?
        .ok_or_else(|| ApiError::validation("NumberOfBytes is required."))? as usize;
    Ok(json!({ "Plaintext": b64(&crypto::random_bytes(n)) }))
}

fn valid_principal(p: &str) -> bool {
    (p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::"))
        && p.split(':').nth(4).is_some_and(crate::state::valid_account)
        && p.split(':').nth(5).is_some_and(|r| !r.is_empty())
        || p.ends_with(".amazonaws.com")
}

fn parse_constraints(input: &Input<'_>) -> Result<Option<GrantConstraints>, ApiError> {
    let Some(c) = input.get("Constraints") else {
        return Ok(None);
    };
    let obj = c
        .as_object()
        .ok_or_else(|| wrong_type("Constraints", "a structure"))?;
    let sub = Input(obj);
    let gc = GrantConstraints {
        encryption_context_equals: sub.map_opt("EncryptionContextEquals")?,
        encryption_context_subset: sub.map_opt("EncryptionContextSubset")?,
    };
    if gc.encryption_context_equals.is_none() && gc.encryption_context_subset.is_none() {
        return Ok(None);
    }
    Ok(Some(gc))
}

fn grant_json(k: &Key, g: &GrantRecord) -> Value {
    let mut v = json!({
        "KeyId": k.rec.arn,
        "GrantId": g.grant_id,
        "CreationDate": ts(g.creation_date),
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": format!("arn:aws:iam::{}:root", g.issuing_account),
        "Operations": g.operations,
    });
    if let Some(n) = &g.name {
        v["Name"] = json!(n);
    }
    if let Some(r) = &g.retiring_principal {
        v["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = &g.constraints {
        let mut cj = Map::new();
        if let Some(e) = &c.encryption_context_equals {
            cj.insert("EncryptionContextEquals".into(), json!(e));
        }
        if let Some(s) = &c.encryption_context_subset {
            cj.insert("EncryptionContextSubset".into(), json!(s));
        }
        v["Constraints"] = Value::Object(cj);
    }
    v
}

fn create_grant(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let grantee = input.str_req("GranteePrincipal")?.to_string();
    let operations = input
        .str_list_opt("Operations")?
        .ok_or_else(|| ApiError::missing("operations"))?;
    let retiring = input.str_opt("RetiringPrincipal")?.map(String::from);
    let name = input.str_opt("Name")?.map(String::from);
    let constraints = parse_constraints(input)?;
    if operations.is_empty() {
        return Err(ApiError::validation(
            "Operations must contain at least one grant operation",
        ));
    }
    for op in &operations {
        if !GRANT_OPERATIONS.contains(&op.as_str()) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '[{op}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                GRANT_OPERATIONS.join(", ")
            )));
        }
    }
    for p in std::iter::once(&grantee).chain(retiring.iter()) {
        if !valid_principal(p) {
            return Err(ApiError::validation(format!("Invalid principal: {p}")));
        }
    }
    if let Some(n) = &name
        && (n.is_empty()
            || n.len() > 256
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b)))
    {
        return Err(ApiError::validation(format!("Invalid grant name: {n}")));
    }
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, Scope::CrossAccount)?;
    {
        let k = stored(&st, &id)?;
        let mut extra = vec![
            ("kms:GrantOperations", operations.clone()),
            ("kms:GranteePrincipal", vec![grantee.clone()]),
            ("kms:GrantIsForAWSResource", vec!["false".to_string()]),
        ];
        if let Some(r) = &retiring {
            extra.push(("kms:RetiringPrincipal", vec![r.clone()]));
        }
        if let Some(parent) = ctx.authorize(k, "kms:CreateGrant", None, &extra)? {
            // A grant can only hand on what it has, under at least its own constraints.
            if !operations.iter().all(|o| parent.operations.contains(o))
                || (parent.constraints.is_some() && parent.constraints != constraints)
            {
                return Err(ApiError::access_denied(
                    &ctx.caller.arn,
                    "kms:CreateGrant",
                    &k.rec.arn,
                    false,
                ));
            }
        }
        require_not_pending(k)?;
        if let Some(n) = &name
            && let Some(g) = k.rec.grants.iter().find(|g| {
                g.name.as_deref() == Some(n.as_str())
                    && g.grantee_principal == grantee
                    && g.operations == operations
                    && g.retiring_principal == retiring
                    && g.constraints == constraints
            })
        {
            return Ok(json!({ "GrantId": g.grant_id, "GrantToken": g.grant_token }));
        }
    }
    let grant_id = hex::encode(&*crypto::random_bytes(32));
    let grant_token = format!(
        "KPGT{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*crypto::random_bytes(48))
    );
    let g = GrantRecord {
        grant_id: grant_id.clone(),
        grant_token: grant_token.clone(),
        name,
        grantee_principal: grantee,
        retiring_principal: retiring,
        operations,
        constraints,
        issuing_account: ctx.account().to_string(),
        creation_date: ctx.now,
    };
    if let Some(k) = st.keys.get_mut(&id) {
        k.rec.grants.push(g);
    }
    ctx.inner.commit(st)?;
    Ok(json!({ "GrantId": grant_id, "GrantToken": grant_token }))
}

fn list_grants(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let grant_id = input.str_opt("GrantId")?;
    let grantee = input.str_opt("GranteePrincipal")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:ListGrants", None, &[])?;
    let items: Vec<(String, Value)> = k
        .rec
        .grants
        .iter()
        .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
        .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
        .map(|g| (g.grant_id.clone(), grant_json(k, g)))
        .collect();
    let (grants, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Grants".into(), json!(grants));
    Ok(paged(body, next))
}

fn list_retirable_grants(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let principal = input.str_req("RetiringPrincipal")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let items: Vec<(String, Value)> = st
        .keys
        .values()
        .filter(|k| k.rec.region == ctx.region && !k.is_deleted(ctx.now))
        .flat_map(|k| {
            k.rec
                .grants
                .iter()
                .filter(|g| g.retiring_principal.as_deref() == Some(principal))
                .map(move |g| (g.grant_id.clone(), grant_json(k, g)))
        })
        .collect();
    let (grants, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Grants".into(), json!(grants));
    Ok(paged(body, next))
}

fn remove_grant(k: &mut Key, grant_id: &str) -> Result<(), ApiError> {
    let before = k.rec.grants.len();
    k.rec.grants.retain(|g| g.grant_id != grant_id);
    if k.rec.grants.len() == before {
        return Err(ApiError::new(
            "InvalidGrantIdException",
            format!("Grant ID {grant_id} not found"),
        ));
    }
    Ok(())
}

fn revoke_grant(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let grant_id = input.str_req("GrantId")?.to_string();
    mutate_key(
        ctx,
        key_ref,
        Scope::CrossAccount,
        "kms:RevokeGrant",
        |_, k| {
            remove_grant(k, &grant_id)?;
            Ok(Value::Null)
        },
    )
}

fn retire_grant(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let token = input.str_opt("GrantToken")?;
    let key_ref = input.str_opt("KeyId")?;
    let grant_id = input.str_opt("GrantId")?;
    let mut st = ctx.inner.write();
    let (key_id, grant_id) = match (token, key_ref, grant_id) {
        (Some(t), _, _) => st
            .keys
            .values()
            .filter(|k| !k.is_deleted(ctx.now))
            .find_map(|k| {
                k.rec
                    .grants
                    .iter()
                    .find(|g| g.grant_token == t)
                    .map(|g| (k.rec.key_id.clone(), g.grant_id.clone()))
            })
            .ok_or_else(|| ApiError::new("InvalidGrantTokenException", "Invalid grant token"))?,
        (None, Some(kr), Some(gid)) => {
            (ctx.resolve(&st, kr, Scope::CrossAccount)?, gid.to_string())
        }
        _ => {
            return Err(ApiError::validation(
                "Either GrantToken or both KeyId and GrantId must be specified",
            ));
        }
    };
    let k = stored(&st, &key_id)?;
    let g = k
        .rec
        .grants
        .iter()
        .find(|g| g.grant_id == grant_id)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidGrantIdException",
                format!("Grant ID {grant_id} not found"),
            )
        })?;
    let may = g
        .retiring_principal
        .as_deref()
        .is_some_and(|p| principal_matches(p, &ctx.caller))
        || principal_matches(&g.grantee_principal, &ctx.caller)
        || ctx.caller.account == g.issuing_account
            && ctx.authorize(k, "kms:RetireGrant", None, &[]).is_ok();
    if !may {
        return Err(ApiError::access_denied(
            &ctx.caller.arn,
            "kms:RetireGrant",
            &k.rec.arn,
            false,
        ));
    }
    if let Some(k) = st.keys.get_mut(&key_id) {
        remove_grant(k, &grant_id)?;
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

fn require_rotatable(k: &Key) -> Result<(), ApiError> {
    if !k.is_symmetric() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            format!(
                "{} key spec {} does not support automatic or on-demand rotation.",
                k.rec.arn, k.rec.key_spec
            ),
        ));
    }
    Ok(())
}

fn enable_key_rotation(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let period = input
        .int_in("RotationPeriodInDays", 90..=2560)?
        .unwrap_or(365) as u32;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:EnableKeyRotation",
        |ctx, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            k.rec.rotation.enabled = true;
            k.rec.rotation.period_days = period;
            k.rec.rotation.next_rotation = Some(ctx.now + f64::from(period) * 86_400.0);
            Ok(Value::Null)
        },
    )
}

fn disable_key_rotation(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:DisableKeyRotation",
        |_, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            k.rec.rotation.enabled = false;
            k.rec.rotation.next_rotation = None;
            Ok(Value::Null)
        },
    )
}

fn get_key_rotation_status(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:GetKeyRotationStatus", None, &[])?;
    require_rotatable(k)?;
    let r = &k.rec.rotation;
    let mut out = json!({ "KeyRotationEnabled": r.enabled, "KeyId": k.rec.arn });
    if r.enabled {
        out["RotationPeriodInDays"] = json!(r.period_days);
        if let Some(n) = r.next_rotation {
            out["NextRotationDate"] = ts(n);
        }
    }
    if let Some(s) = r.on_demand_started {
        out["OnDemandRotationStartDate"] = ts(s);
    }
    Ok(out)
}

/// AWS allows ten on-demand rotations per key.
const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

fn rotate_key_on_demand(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:RotateKeyOnDemand",
        |ctx, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            if k.rec.rotation.on_demand_count >= MAX_ON_DEMAND_ROTATIONS {
                return Err(ApiError::new(
                    "LimitExceededException",
                    format!(
                        "{} has reached the maximum number of on-demand rotations.",
                        k.rec.arn
                    ),
                ));
            }
            let (m, r) = new_material(ctx, &k.rec.arn, k.materials.len(), Some("ON_DEMAND"));
            k.materials.push(m);
            k.rec.materials.push(r);
            k.rec.rotation.on_demand_count += 1;
            k.rec.rotation.on_demand_started = Some(ctx.now);
            Ok(json!({ "KeyId": k.rec.arn }))
        },
    )
}

fn list_key_rotations(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListKeyRotations", None, &[])?;
    require_rotatable(k)?;
    let items: Vec<(String, Value)> = k
        .rec
        .materials
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.rotation_type.as_ref().map(|t| {
                (
                    format!("{i:010}"),
                    json!({ "KeyId": k.rec.arn, "RotationDate": ts(m.created), "RotationType": t }),
                )
            })
        })
        .collect();
    let (rotations, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Rotations".into(), json!(rotations));
    Ok(paged(body, next))
}

/// Gives a key a new material version on schedule (used by the background sweep).
pub(crate) fn auto_rotate(inner: &Inner, k: &mut Key, now: f64) {
    let r = &k.rec.rotation;
    let due =
        r.enabled && k.rec.state == KeyState::Enabled && r.next_rotation.is_some_and(|n| n <= now);
    if !due || !k.is_symmetric() {
        return;
    }
    let key = SecretKey::random();
    let sealed = inner
        .store
        .seal_material(&k.rec.arn, k.materials.len(), &key);
    k.materials.push(key);
    k.rec.materials.push(MaterialRecord {
        created: now,
        rotation_type: Some("AUTOMATIC".into()),
        sealed,
    });
    k.rec.rotation.next_rotation = Some(now + f64::from(k.rec.rotation.period_days) * 86_400.0);
}

fn tag_resource(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    if input.get("Tags").is_none() {
        return Err(ApiError::missing("tags"));
    }
    let tags = parse_tags(input)?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:TagResource",
        |_, k| {
            require_not_pending(k)?;
            for t in tags {
                match k.rec.tags.iter_mut().find(|x| x.key == t.key) {
                    Some(existing) => existing.value = t.value,
                    None => k.rec.tags.push(t),
                }
            }
            if k.rec.tags.len() > 50 {
                return Err(ApiError::new(
                    "TagException",
                    "A KMS key can have at most 50 tags",
                ));
            }
            Ok(Value::Null)
        },
    )
}

fn untag_resource(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let keys = input
        .str_list_opt("TagKeys")?
        .ok_or_else(|| ApiError::missing("tagKeys"))?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:UntagResource",
        |_, k| {
            require_not_pending(k)?;
            k.rec.tags.retain(|t| !keys.contains(&t.key));
            Ok(Value::Null)
        },
    )
}

fn list_resource_tags(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListResourceTags", None, &[])?;
    let items: Vec<(String, Value)> = k
        .rec
        .tags
        .iter()
        .map(|t| {
            (
                t.key.clone(),
                json!({ "TagKey": t.key, "TagValue": t.value }),
            )
        })
        .collect();
    let (tags, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Tags".into(), json!(tags));
    Ok(paged(body, next))
}

fn update_key_description(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let description = input.str_req("Description")?.to_string();
    if description.chars().count() > 8192 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:UpdateKeyDescription",
        |_, k| {
            require_not_pending(k)?;
            k.rec.description = description;
            Ok(Value::Null)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_integers_keep_aws_messages() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"PendingWindowInDays": 3, "NumberOfBytes": 2048, "Limit": 5}"#,
        )
        .unwrap();
        let input = Input(&m);
        let e = input.int_in("PendingWindowInDays", 7..=30).unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        assert_eq!(
            e.message,
            "1 validation error detected: Value '3' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
        );
        assert_eq!(
            generate_random(&input).unwrap_err().message,
            "1 validation error detected: Value '2048' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
        );
        assert_eq!(input.limit().unwrap(), 5);
        assert_eq!(Input(&Map::new()).limit().unwrap(), 100);
        assert_eq!(
            input.int_in("RotationPeriodInDays", 90..=2560).unwrap(),
            None
        );
    }
}
