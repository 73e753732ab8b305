//! The built-in KMS's Google Cloud KMS surface: REST v1 (`/v1/projects/*/locations/*/keyRings…`)
//! with the paths, JSON and errors the official clients use, on the same port, store and root
//! key as the AWS surface.
//!
//! It owns: bearer-token identities (IAM members, each with a dev token written to
//! `credentials.json`) and the projects they own; key rings; crypto keys with versions in the
//! states ENABLED, DISABLED, DESTROY_SCHEDULED and DESTROYED, primary versions and rotation;
//! encrypt/decrypt with additional authenticated data, ciphertexts bound to their key and
//! naming their version; and IAM policies on key rings and keys, enforced on every call with
//! `keyplane_core::policy::gcp`'s role table (a project's owners hold every permission in it).
//!
//! One file per operation group: [`key_rings`], [`crypto_keys`], [`versions`], [`crypto`],
//! [`iam`]. Not supported (answered UNIMPLEMENTED or refused with a reason): asymmetric and
//! MAC operations, raw encryption, import jobs, EKM, Autokey, IAM conditions and custom roles.

mod crypto;
mod crypto_keys;
mod error;
mod iam;
mod key_rings;
pub(crate) mod state;
mod versions;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use keyplane_core::Provider;
use keyplane_core::regions::default_regions;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{DevKms, Inner};
use error::{Code, GcpError};
use state::{GcpIdentity, GcpState, token_hash};

/// The sample customer: owns [`GCP_CUSTOMER_PROJECT`], where it creates its key rings and keys.
pub const GCP_CUSTOMER: &str = "user:admin@customer.example";
pub const GCP_CUSTOMER_PROJECT: &str = "customer-project";
/// The platform's service account (the default GCP provider account): holds nothing on a
/// customer's key until the customer binds it.
pub const GCP_PLATFORM: &str =
    "serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com";
/// The platform's own project, owned by [`GCP_PLATFORM`] (for platform-managed keys).
pub const GCP_PLATFORM_PROJECT: &str = "keyplane-dev";

/// Multi-region locations accepted besides the catalog's regions.
const MULTI_REGIONS: [&str; 4] = ["global", "us", "europe", "asia"];
/// Largest plaintext and additional authenticated data Cloud KMS accepts (64 KiB).
pub(crate) const MAX_DATA: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/v1/{*path}", any(handle))
        .route("/_admin/gcp/identities", post(add_identity))
}

/// Who is calling, when, and how the answer spells enums.
pub(crate) struct Ctx<'a> {
    pub inner: &'a Inner,
    pub member: String,
    pub now: f64,
    /// `$alt=json;enum-encoding=int`: the official clients ask for enums as numbers.
    pub int_enums: bool,
    pub query: HashMap<String, String>,
}

impl Ctx<'_> {
    pub fn enum_value(&self, name: &str, number: i64) -> Value {
        if self.int_enums {
            Value::from(number)
        } else {
            Value::from(name)
        }
    }
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
    pub fn query_bool(&self, name: &str) -> Result<bool, GcpError> {
        match self.query(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(GcpError::invalid(format!(
                "Invalid value at '{}' (TYPE_BOOL), \"{v}\"",
                snake(name)
            ))),
        }
    }
}

/// A resource the path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Res {
    Location {
        project: String,
        location: String,
    },
    KeyRing {
        project: String,
        name: String,
    },
    Key {
        project: String,
        ring: String,
        name: String,
    },
    Version {
        project: String,
        ring: String,
        key: String,
        id: String,
    },
}

impl Res {
    pub fn project(&self) -> &str {
        match self {
            Res::Location { project, .. }
            | Res::KeyRing { project, .. }
            | Res::Key { project, .. }
            | Res::Version { project, .. } => project,
        }
    }
}

/// Parses `projects/P/locations/L[/keyRings[/R[/cryptoKeys[/K[/cryptoKeyVersions[/V]]]]]]`
/// into the resource and whether the path ends at its child collection.
fn parse_path(path: &str) -> Option<(Res, bool)> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 4 || parts[0] != "projects" || parts[2] != "locations" {
        return None;
    }
    let nonempty = parts.iter().all(|p| !p.is_empty());
    if !nonempty {
        return None;
    }
    let project = parts[1].to_string();
    let location = || Res::Location {
        project: project.clone(),
        location: parts[3].to_string(),
    };
    let ring = || parts[..6].join("/");
    let key = || parts[..8].join("/");
    Some(match parts.len() {
        5 if parts[4] == "keyRings" => (location(), true),
        6 if parts[4] == "keyRings" => (
            Res::KeyRing {
                project: project.clone(),
                name: ring(),
            },
            false,
        ),
        7 if parts[4] == "keyRings" && parts[6] == "cryptoKeys" => (
            Res::KeyRing {
                project: project.clone(),
                name: ring(),
            },
            true,
        ),
        8 if parts[4] == "keyRings" && parts[6] == "cryptoKeys" => (
            Res::Key {
                project: project.clone(),
                ring: ring(),
                name: key(),
            },
            false,
        ),
        9 if parts[4] == "keyRings"
            && parts[6] == "cryptoKeys"
            && parts[8] == "cryptoKeyVersions" =>
        {
            (
                Res::Key {
                    project: project.clone(),
                    ring: ring(),
                    name: key(),
                },
                true,
            )
        }
        10 if parts[4] == "keyRings"
            && parts[6] == "cryptoKeys"
            && parts[8] == "cryptoKeyVersions" =>
        {
            (
                Res::Version {
                    project: project.clone(),
                    ring: ring(),
                    key: key(),
                    id: parts[9].to_string(),
                },
                false,
            )
        }
        _ => return None,
    })
}

/// Verbs of the real API this server does not implement.
const UNSUPPORTED_VERBS: [&str; 9] = [
    "asymmetricSign",
    "asymmetricDecrypt",
    "macSign",
    "macVerify",
    "rawEncrypt",
    "rawDecrypt",
    "getPublicKey",
    "import",
    "decapsulate",
];

async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = authenticate(&inner, &headers).and_then(|member| {
        let int_enums = query
            .get("$alt")
            .is_some_and(|a| a.contains("enum-encoding=int"));
        let ctx = Ctx {
            inner: &inner,
            member,
            now: inner.now(),
            int_enums,
            query,
        };
        dispatch(&ctx, &method, uri.path(), &body)
    });
    match result {
        Ok(v) => {
            let mut r = v.to_string().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=UTF-8"),
            );
            r
        }
        Err(e) => {
            if e.code == Code::Internal {
                tracing::error!(message = %e.message, "devkms gcp internal error");
            } else {
                tracing::debug!(status = e.code.name(), message = %e.message, "devkms gcp request refused");
            }
            e.into_response()
        }
    }
}

fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<String, GcpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(GcpError::unauthenticated)?;
    let st = inner.read();
    st.gcp
        .identities
        .get(&token_hash(token))
        .map(|i| i.member.clone())
        .ok_or_else(GcpError::unauthenticated)
}

fn dispatch(ctx: &Ctx<'_>, method: &Method, path: &str, body: &[u8]) -> Result<Value, GcpError> {
    let path = path.replace("%3A", ":").replace("%3a", ":");
    let not_found = || {
        GcpError::new(
            Code::NotFound,
            format!("The requested URL {path} was not found on this server."),
        )
    };
    let rest = path.strip_prefix("/v1/").ok_or_else(not_found)?;
    let (name, verb) = match rest.rsplit_once(':') {
        Some((n, v)) if !v.contains('/') => (n, Some(v)),
        _ => (rest, None),
    };
    let (res, collection) = parse_path(name).ok_or_else(not_found)?;
    let body = || Body::parse(body);
    use Method as M;
    match (&res, collection, verb, method) {
        (Res::Location { .. }, true, None, &M::POST) => key_rings::create(ctx, &res, &body()?),
        (Res::Location { .. }, true, None, &M::GET) => key_rings::list(ctx, &res),
        (Res::KeyRing { .. }, false, None, &M::GET) => key_rings::get(ctx, &res),
        (Res::KeyRing { .. }, true, None, &M::POST) => crypto_keys::create(ctx, &res, &body()?),
        (Res::KeyRing { .. }, true, None, &M::GET) => crypto_keys::list(ctx, &res),
        (Res::Key { .. }, false, None, &M::GET) => crypto_keys::get(ctx, &res),
        (Res::Key { .. }, false, None, &M::PATCH) => crypto_keys::patch(ctx, &res, &body()?),
        (Res::Key { .. }, false, Some("updatePrimaryVersion"), &M::POST) => {
            crypto_keys::update_primary(ctx, &res, &body()?)
        }
        (Res::Key { .. } | Res::Version { .. }, false, Some("encrypt"), &M::POST) => {
            crypto::encrypt(ctx, &res, &body()?)
        }
        (Res::Key { .. }, false, Some("decrypt"), &M::POST) => crypto::decrypt(ctx, &res, &body()?),
        (Res::Key { .. }, true, None, &M::POST) => versions::create(ctx, &res, &body()?),
        (Res::Key { .. }, true, None, &M::GET) => versions::list(ctx, &res),
        (Res::Version { .. }, false, None, &M::GET) => versions::get(ctx, &res),
        (Res::Version { .. }, false, None, &M::PATCH) => versions::patch(ctx, &res, &body()?),
        (Res::Version { .. }, false, Some("destroy"), &M::POST) => {
            versions::destroy(ctx, &res, &body()?)
        }
        (Res::Version { .. }, false, Some("restore"), &M::POST) => {
            versions::restore(ctx, &res, &body()?)
        }
        (
            Res::KeyRing { .. } | Res::Key { .. },
            false,
            Some("getIamPolicy"),
            &M::GET | &M::POST,
        ) => iam::get_policy(ctx, &res),
        (Res::KeyRing { .. } | Res::Key { .. }, false, Some("setIamPolicy"), &M::POST) => {
            iam::set_policy(ctx, &res, &body()?)
        }
        (Res::KeyRing { .. } | Res::Key { .. }, false, Some("testIamPermissions"), &M::POST) => {
            iam::test_permissions(ctx, &res, &body()?)
        }
        (_, _, Some(v), _) if UNSUPPORTED_VERBS.contains(&v) => Err(GcpError::new(
            Code::Unimplemented,
            format!(
                "{v} is not implemented by keyplane's built-in KMS (only symmetric ENCRYPT_DECRYPT keys are)"
            ),
        )),
        _ => Err(not_found()),
    }
}

/// `fooBar` → `foo_bar`: Google's JSON accepts both spellings of a field.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A request body: a JSON object whose fields are read by their JSON (lowerCamel) or proto
/// (snake_case) names, with proto3 JSON's encodings.
pub(crate) struct Body(Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, GcpError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err(GcpError::invalid(
                "Invalid JSON payload received. Expected an object.",
            )),
            Err(e) => Err(GcpError::invalid(format!(
                "Invalid JSON payload received. {e}"
            ))),
        }
    }

    pub fn from_value(v: &Value) -> Result<Body, GcpError> {
        match v {
            Value::Object(m) => Ok(Body(m.clone())),
            Value::Null => Ok(Body(Map::new())),
            _ => Err(GcpError::invalid(
                "Invalid JSON payload received. Expected an object.",
            )),
        }
    }

    /// Refuses fields the message does not have, as Google's front end does.
    pub fn only(&self, known: &[&str]) -> Result<(), GcpError> {
        for k in self.0.keys() {
            if !known.iter().any(|n| n == k || snake(n) == *k) {
                return Err(GcpError::invalid(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
                )));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .get(name)
            .or_else(|| self.0.get(&snake(name)))
            .filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>, GcpError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(GcpError::invalid(format!(
                "Invalid value at '{}' (TYPE_STRING), {v}",
                snake(name)
            ))),
        }
    }

    pub fn bytes(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, GcpError> {
        let Some(s) = self.str(name)? else {
            return Ok(None);
        };
        decode_bytes(s).map(Some).ok_or_else(|| {
            GcpError::invalid(format!(
                "Invalid value at '{}' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
                snake(name),
                s.chars().take(16).collect::<String>()
            ))
        })
    }

    /// An int64 (or Int64Value): a JSON number or a decimal string.
    pub fn int64(&self, name: &str) -> Result<Option<i64>, GcpError> {
        let bad = |v: &Value| {
            GcpError::invalid(format!(
                "Invalid value at '{}' (TYPE_INT64), {v}",
                snake(name)
            ))
        };
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(&Value::Number(n.clone()))),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| bad(&Value::from(s.as_str()))),
            Some(v) => Err(bad(v)),
        }
    }

    /// An enum given by name or by number, looked up in `table` (name, number, value).
    pub fn enumeration<T: Copy>(
        &self,
        name: &str,
        type_name: &str,
        table: &[(&str, i64, T)],
    ) -> Result<Option<T>, GcpError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let found = match v {
            Value::String(s) => table.iter().find(|(n, _, _)| n == s),
            Value::Number(n) => table.iter().find(|(_, i, _)| Some(*i) == n.as_i64()),
            _ => None,
        };
        found.map(|(_, _, t)| Some(*t)).ok_or_else(|| {
            GcpError::invalid(format!(
                "Invalid value at '{}' (type.googleapis.com/{type_name}), {v}",
                snake(name)
            ))
        })
    }
}

/// Standard or URL-safe base64, padded or not (proto3 JSON accepts all four).
pub(crate) fn decode_bytes(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let trimmed = s.trim_end_matches('=');
    let padded = format!("{trimmed}{}", "=".repeat((4 - trimmed.len() % 4) % 4));
    STANDARD
        .decode(&padded)
        .or_else(|_| URL_SAFE.decode(&padded))
        .ok()
        .map(Zeroizing::new)
}

pub(crate) fn encode_bytes(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// A Timestamp in RFC 3339, as proto3 JSON writes it.
pub(crate) fn timestamp(t: f64) -> Value {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9) as u32;
    let s = chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    Value::from(s)
}

pub(crate) fn parse_timestamp(field: &str, s: &str) -> Result<f64, GcpError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp() as f64 + f64::from(d.timestamp_subsec_nanos()) / 1e9)
        .map_err(|_| {
            GcpError::invalid(format!(
                "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Timestamp), Field '{field}', Invalid time format: \"{s}\""
            ))
        })
}

/// A Duration (`"86400s"`, `"1.5s"`), in whole seconds.
pub(crate) fn parse_duration(field: &str, s: &str) -> Result<u64, GcpError> {
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n.round() as u64)
        .ok_or_else(|| {
            GcpError::invalid(format!(
                "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), Field '{field}', Illegal duration format; duration must end with 's': \"{s}\""
            ))
        })
}

pub(crate) fn duration(secs: u64) -> Value {
    Value::from(format!("{secs}s"))
}

/// Key ring, key and version IDs: 1-63 letters, digits, `_` or `-`.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn valid_location(location: &str) -> bool {
    MULTI_REGIONS.contains(&location) || default_regions(Provider::Gcp).contains(&location)
}

/// One page of `items` by `pageSize` (0 or absent: up to 1000, the server's default) and
/// `pageToken` (the offset as a decimal string).
pub(crate) fn page<T: Clone>(
    ctx: &Ctx<'_>,
    items: &[T],
) -> Result<(Vec<T>, Option<String>), GcpError> {
    let size = match ctx.query("pageSize") {
        None => 1000,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| {
                GcpError::invalid(format!(
                    "Invalid value at 'page_size' (TYPE_INT32), \"{s}\""
                ))
            })?
            .clamp(0, 1000),
    };
    let size = if size == 0 { 1000 } else { size };
    let start = match ctx.query("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| GcpError::invalid("Invalid page token."))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// A fresh dev token: 40 random hex digits after a prefix that says what it is.
fn new_token() -> Zeroizing<String> {
    Zeroizing::new(format!(
        "kpgcp-{}",
        hex::encode(&*crate::crypto::random_bytes(20))
    ))
}

/// Validates an IAM member of a bearer-token identity: `user:`, `serviceAccount:` or
/// `group:` followed by an email address.
fn valid_member(member: &str) -> bool {
    let Some((kind, email)) = member.split_once(':') else {
        return false;
    };
    matches!(kind, "user" | "serviceAccount" | "group")
        && email.len() <= 254
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && d.contains('.')
                && email
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@.-_+".contains(&b))
        })
}

/// Creates the identity if it does not exist yet (adding any new owned projects) and returns
/// its token.
pub(crate) fn ensure_identity(
    st: &mut GcpState,
    member: &str,
    owned_projects: &[String],
) -> Result<Zeroizing<String>, crate::DevKmsError> {
    if !valid_member(member) {
        return Err(crate::DevKmsError::InvalidIdentity(format!(
            "{member:?} is not an IAM member of the form user:EMAIL, serviceAccount:EMAIL or group:EMAIL"
        )));
    }
    if let Some(p) = owned_projects
        .iter()
        .find(|p| !keyplane_core::gcp::is_valid_project(p))
    {
        return Err(crate::DevKmsError::InvalidIdentity(format!(
            "{p:?} is not a project ID"
        )));
    }
    if let Some(i) = st.identities.values_mut().find(|i| i.member == member) {
        for p in owned_projects {
            if !i.owned_projects.contains(p) {
                i.owned_projects.push(p.clone());
            }
        }
        return Ok(i.token.clone());
    }
    let token = new_token();
    st.identities.insert(
        token_hash(&token),
        GcpIdentity {
            member: member.to_string(),
            owned_projects: owned_projects.to_vec(),
            token: token.clone(),
        },
    );
    Ok(token)
}

/// The default identities: the sample customer owning its project, the platform's service
/// account owning the platform's project.
pub(crate) fn ensure_defaults(st: &mut GcpState) -> Result<(), crate::DevKmsError> {
    ensure_identity(st, GCP_CUSTOMER, &[GCP_CUSTOMER_PROJECT.to_string()])?;
    ensure_identity(st, GCP_PLATFORM, &[GCP_PLATFORM_PROJECT.to_string()])?;
    Ok(())
}

/// Performs due automatic rotations and destroys versions whose destruction date passed; true
/// if anything changed.
pub(crate) fn sweep(inner: &Inner, st: &mut GcpState, now: f64) -> bool {
    let mut changed = false;
    for k in st.keys.values_mut() {
        changed |= versions::finish_destruction(k, now);
        changed |= crypto_keys::auto_rotate(inner, k, now);
    }
    changed
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddIdentity {
    member: String,
    #[serde(default)]
    owned_projects: Vec<String>,
}

/// `POST /_admin/gcp/identities` `{"member":"serviceAccount:x@p.iam.gserviceaccount.com",
/// "ownedProjects":["p"]}` → the identity's token (201 when created, 200 when it existed).
async fn add_identity(
    AxState(inner): AxState<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::admin::on_blocking_pool(move || add_identity_blocking(inner, headers, body)).await
}

/// Writes `credentials.json` and the state (fsyncs): on the blocking pool.
fn add_identity_blocking(inner: Arc<Inner>, headers: HeaderMap, body: Bytes) -> Response {
    use axum::Json;
    use axum::http::StatusCode;
    let refuse = |status: StatusCode, message: String| {
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    };
    if !crate::admin::token_ok(&inner, &headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong x-keyplane-admin-token".into(),
        );
    }
    let req: AddIdentity = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("bad identity request: {e}"),
            );
        }
    };
    let mut st = inner.write();
    let existed = st.gcp.identity_by_member(&req.member).is_some();
    let token = match ensure_identity(&mut st.gcp, &req.member, &req.owned_projects) {
        Ok(t) => t,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let owned = st
        .gcp
        .identity_by_member(&req.member)
        .map(|i| i.owned_projects.clone())
        .unwrap_or_default();
    if let Err(e) = inner.store.write_credentials(&st) {
        tracing::warn!(error = %e, "devkms could not rewrite credentials.json");
    }
    if inner.commit(st).is_err() {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not persist state".into(),
        );
    }
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        Json(serde_json::json!({
            "member": req.member,
            "ownedProjects": owned,
            "token": token.as_str(),
        })),
    )
        .into_response()
}

impl DevKms {
    /// The bearer token of a Cloud KMS identity, by IAM member (`user:admin@customer.example`,
    /// `serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com`).
    pub fn gcp_token(&self, member: &str) -> Option<Zeroizing<String>> {
        self.inner
            .read()
            .gcp
            .identity_by_member(member)
            .map(|i| i.token.clone())
    }

    /// Adds a Cloud KMS identity (or more owned projects to an existing one), persists it and
    /// rewrites `credentials.json`; returns its bearer token.
    pub fn add_gcp_identity(
        &self,
        member: &str,
        owned_projects: &[String],
    ) -> Result<Zeroizing<String>, crate::DevKmsError> {
        let mut st = self.inner.write();
        let token = ensure_identity(&mut st.gcp, member, owned_projects)?;
        self.inner.store.write_credentials(&st)?;
        self.inner
            .commit(st)
            .map_err(|e| crate::DevKmsError::InvalidIdentity(e.message))?;
        Ok(token)
    }
}
