//! The Data API on a datacenter's encrypted store, as existing clients (astrapy) speak it:
//! `POST /db/{databaseId}-{region}/api/json/v1` for database commands (keyspaces),
//! `…/v1/{keyspace}` for keyspace commands (collections) and `…/v1/{keyspace}/{collection}`
//! for document commands.
//!
//! Reads are served by the region named in the endpoint; a write is applied to every live
//! region before it is acknowledged, so anything a write would otherwise pick at random (a
//! generated `_id`) is picked here once and sent to every region.
//!
//! Statuses follow the Data API: a command that cannot be carried out answers 200 with
//! `errors`; only transport-level problems use other statuses (401 no or bad token, 403 a
//! token without the permission, 404 no such database endpoint, 400 a body that is not one
//! JSON command, 413 a body above [`MAX_REQUEST_BYTES`], 503 a suspended or unavailable
//! region, naming the key and the reason).
//!
//! Keyspaces: `findKeyspaces` works on every database; `createKeyspace` and `dropKeyspace`
//! only on serverless (vector) databases, as on Astra, where a classic database's keyspaces
//! are fixed by its deployment. The database's own keyspace cannot be dropped, so its
//! endpoint always has somewhere to point.
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::{DatabaseStatus, DbType, Permission};
use keyplane_docstore::{
    DocStore, DocStoreError, FindOneAndOptions, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_INSERT_MANY,
    Query, ReturnDocument, UpdateOptions,
};
use keyplane_store::{Database, Datacenter};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::dataplane::DataError;
use crate::error::ApiError;
use crate::extract::ApiPath;

/// The most documents `countDocuments` counts before answering `moreData` (the Data API's
/// default), so a count never scans an unbounded collection.
pub const MAX_COUNT: u64 = 1000;
/// Largest request body: a full `insertMany` of 100 documents fits; each document is further
/// limited to [`MAX_DOCUMENT_BYTES`] by the store. Read in full before parsing, so this also
/// bounds the memory one request can take.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
pub struct DatabasePath {
    endpoint: String,
}

#[derive(Deserialize)]
pub struct KeyspacePath {
    endpoint: String,
    keyspace: String,
}

#[derive(Deserialize)]
pub struct CollectionPath {
    endpoint: String,
    keyspace: String,
    collection: String,
}

// ------------------------------------------------------------------------------- errors

/// A Data API error answer: `{"errors":[{"message","errorCode","family","scope","title","id"}]}`,
/// the fields astrapy's error descriptors read.
#[derive(Debug)]
pub struct DataApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// One error object. `family` and `scope` are the Data API's grouping (clients branch on
/// them); `id` lets a customer quote one error in a support request.
fn error_item(status: StatusCode, code: &str, message: &str) -> Value {
    let family = if status.is_server_error() {
        "SERVER"
    } else {
        "REQUEST"
    };
    let scope = match code {
        "DOCUMENT_ALREADY_EXISTS"
        | "INVALID_DOCUMENT"
        | "DOC_SIZE_LIMIT_VIOLATION"
        | "DOC_DEPTH_LIMIT_VIOLATION"
        | "TOO_MANY_DOCUMENTS" => "DOCUMENT",
        "UNSUPPORTED_FILTER_OPERATION" | "INVALID_FILTER_EXPRESSION" => "FILTER",
        "INVALID_SORT_CLAUSE" => "SORT",
        "UNSUPPORTED_PROJECTION_PARAM" => "PROJECTION",
        "UNSUPPORTED_UPDATE_OPERATION" => "UPDATE",
        "KEYSPACE_DOES_NOT_EXIST"
        | "COLLECTION_NOT_EXIST"
        | "EXISTING_COLLECTION_DIFFERENT_SETTINGS"
        | "INVALID_NAME"
        | "UNSUPPORTED_COLLECTION_OPTION"
        | "KEYSPACE_COMMAND_NOT_ALLOWED" => "SCHEMA",
        "DATABASE_SUSPENDED"
        | "DATABASE_UNAVAILABLE"
        | "DATABASE_NOT_FOUND"
        | "KMS_UNAVAILABLE" => "DATABASE",
        "UNAUTHENTICATED_REQUEST" | "UNAUTHORIZED_REQUEST" => "AUTHENTICATION",
        _ => "",
    };
    let title = match code {
        "DOCUMENT_ALREADY_EXISTS" => "Document already exists with the given _id",
        "INVALID_DOCUMENT" => "Document is not valid",
        "DOC_SIZE_LIMIT_VIOLATION" => "Document size limit exceeded",
        "DOC_DEPTH_LIMIT_VIOLATION" => "Document nesting limit exceeded",
        "TOO_MANY_DOCUMENTS" => "Too many documents in one command",
        "UNSUPPORTED_FILTER_OPERATION" => "Unsupported filter operator",
        "INVALID_FILTER_EXPRESSION" => "Invalid filter expression",
        "INVALID_SORT_CLAUSE" => "Invalid sort clause",
        "UNSUPPORTED_PROJECTION_PARAM" => "Unsupported projection",
        "UNSUPPORTED_UPDATE_OPERATION" => "Unsupported update",
        "KEYSPACE_DOES_NOT_EXIST" => "Keyspace does not exist",
        "COLLECTION_NOT_EXIST" => "Collection does not exist",
        "EXISTING_COLLECTION_DIFFERENT_SETTINGS" => "Collection exists with different settings",
        "INVALID_NAME" => "Invalid name",
        "UNSUPPORTED_COLLECTION_OPTION" => "Unsupported collection option",
        "KEYSPACE_COMMAND_NOT_ALLOWED" => "Keyspace command not allowed",
        "INVALID_PAGE_STATE" => "Invalid page state",
        "COMMAND_UNKNOWN" => "Unknown command",
        "COMMAND_FIELD_INVALID" => "Invalid command field",
        "INVALID_REQUEST" => "Invalid request",
        "REQUEST_TOO_LARGE" => "Request too large",
        "DATABASE_SUSPENDED" => "Database suspended",
        "DATABASE_UNAVAILABLE" => "Database unavailable",
        "DATABASE_NOT_FOUND" => "Database not found",
        "KMS_UNAVAILABLE" => "Key service unavailable",
        "UNAUTHENTICATED_REQUEST" => "Unauthenticated request",
        "UNAUTHORIZED_REQUEST" => "Unauthorized request",
        _ => "Server error",
    };
    json!({"message": message, "errorCode": code, "family": family, "scope": scope, "title": title,
           "id": Uuid::new_v4().to_string()})
}

impl IntoResponse for DataApiError {
    fn into_response(self) -> Response {
        let item = error_item(self.status, self.code, &self.message);
        (self.status, Json(json!({ "errors": [item] }))).into_response()
    }
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> DataApiError {
    DataApiError {
        status,
        code,
        message: message.into(),
    }
}

/// Command errors are answered with 200, as the Data API does.
fn command_error(code: &'static str, message: impl Into<String>) -> DataApiError {
    err(StatusCode::OK, code, message)
}

impl From<ApiError> for DataApiError {
    fn from(e: ApiError) -> Self {
        let code = match e.status() {
            StatusCode::UNAUTHORIZED => "UNAUTHENTICATED_REQUEST",
            StatusCode::FORBIDDEN => "UNAUTHORIZED_REQUEST",
            StatusCode::NOT_FOUND => "DATABASE_NOT_FOUND",
            StatusCode::BAD_REQUEST => "INVALID_REQUEST",
            _ => "SERVER_INTERNAL_ERROR",
        };
        let message = e.public_message();
        if let ApiError::Internal(detail) = &e {
            tracing::error!(error = %detail, "data API request failed");
        }
        err(e.status(), code, message)
    }
}

impl From<DataError> for DataApiError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Suspended(m) => {
                err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_SUSPENDED", m)
            }
            DataError::Unavailable(m) => {
                err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", m)
            }
            DataError::Kms(k) if k.kind.is_transient() => err(
                StatusCode::SERVICE_UNAVAILABLE,
                "KMS_UNAVAILABLE",
                "the key service did not answer; retry shortly",
            ),
            DataError::Doc(d) => doc_error(d),
            other => {
                tracing::error!(error = %other, "data API request failed");
                err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SERVER_INTERNAL_ERROR",
                    "an internal error occurred; retry later",
                )
            }
        }
    }
}

/// The Data API code of a store error; `None` for failures that are keyplane's, not the caller's.
fn doc_code(e: &DocStoreError) -> Option<&'static str> {
    Some(match e {
        DocStoreError::InvalidName(_) => "INVALID_NAME",
        DocStoreError::KeyspaceNotFound(_) => "KEYSPACE_DOES_NOT_EXIST",
        DocStoreError::CollectionExists(_) => "EXISTING_COLLECTION_DIFFERENT_SETTINGS",
        DocStoreError::CollectionNotFound(_) => "COLLECTION_NOT_EXIST",
        DocStoreError::DuplicateId(_) => "DOCUMENT_ALREADY_EXISTS",
        DocStoreError::UnknownOperator(_) => "UNSUPPORTED_FILTER_OPERATION",
        DocStoreError::InvalidFilter(_) => "INVALID_FILTER_EXPRESSION",
        DocStoreError::InvalidSort(_) => "INVALID_SORT_CLAUSE",
        DocStoreError::InvalidProjection(_) => "UNSUPPORTED_PROJECTION_PARAM",
        DocStoreError::InvalidUpdate(_) => "UNSUPPORTED_UPDATE_OPERATION",
        DocStoreError::InvalidDocument(_) => "INVALID_DOCUMENT",
        DocStoreError::InvalidPageState => "INVALID_PAGE_STATE",
        DocStoreError::DocumentTooLarge { .. } => "DOC_SIZE_LIMIT_VIOLATION",
        DocStoreError::TooDeep { .. } => "DOC_DEPTH_LIMIT_VIOLATION",
        DocStoreError::TooManyDocuments { .. } => "TOO_MANY_DOCUMENTS",
        _ => return None,
    })
}

fn doc_error(e: DocStoreError) -> DataApiError {
    match doc_code(&e) {
        // An unknown update operator is reported by the store as an unknown operator too;
        // the message names it either way.
        Some(code) => command_error(code, e.to_string()),
        None => {
            tracing::error!(error = %e, "document store failure");
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SERVER_INTERNAL_ERROR",
                "an internal error occurred; retry later",
            )
        }
    }
}

type DataResult<T> = Result<T, DataApiError>;

// ------------------------------------------------------------------------ plumbing

/// The `Token` header (what Data API clients send) or `Authorization: Bearer`.
async fn caller(state: &AppState, headers: &HeaderMap) -> DataResult<Caller> {
    let raw = if let Some(t) = headers.get("token") {
        t.to_str()
            .map_err(|_| ApiError::MalformedToken("the Token header is not ASCII".into()))?
            .to_string()
    } else if let Some(a) = headers.get(axum::http::header::AUTHORIZATION) {
        let a = a.to_str().map_err(|_| {
            ApiError::MalformedToken("the Authorization header is not ASCII".into())
        })?;
        a.strip_prefix("Bearer ")
            .ok_or_else(|| {
                ApiError::MalformedToken(
                    "use 'Token: <token>' or 'Authorization: Bearer <token>'".into(),
                )
            })?
            .to_string()
    } else {
        return Err(ApiError::MissingToken.into());
    };
    Ok(Caller::from_token(state, &raw).await?)
}

/// `{databaseId}-{region}` → the database, its live datacenters and the one of that region.
///
/// A write takes the database's write lock (shared with other writes) before it lists the
/// datacenters: adding a region holds that lock alone while it copies the data and turns the
/// region ACTIVE, so a write listed under the lock cannot miss a region that just became
/// ACTIVE, and the one listing serves the whole command.
async fn resolve(
    state: &AppState,
    caller: &Caller,
    endpoint: &str,
    write: bool,
) -> DataResult<(Database, Vec<Datacenter>, Datacenter, Option<WriteGuard>)> {
    let not_found = || {
        err(
            StatusCode::NOT_FOUND,
            "DATABASE_NOT_FOUND",
            format!("no database endpoint {endpoint}"),
        )
    };
    if endpoint.len() < 38 || !endpoint.is_char_boundary(36) {
        return Err(not_found());
    }
    let (id, region) = endpoint.split_at(36);
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let region = region.strip_prefix('-').ok_or_else(not_found)?;
    let db = state
        .store
        .get_database(caller.org_id(), id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)?;
    // Only after the database is known to be the caller's, so unknown ids add no locks.
    let guard = if write {
        Some(state.data.write_lock(&db.id).await.read_owned().await)
    } else {
        None
    };
    let dcs: Vec<Datacenter> = state
        .store
        .list_datacenters(id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|d| d.terminated_at.is_none())
        .collect();
    let dc = dcs
        .iter()
        .find(|d| d.region == region)
        .cloned()
        .ok_or_else(not_found)?;
    Ok((db, dcs, dc, guard))
}

/// Held by a write command from before it lists the datacenters until it is answered.
type WriteGuard = tokio::sync::OwnedRwLockReadGuard<()>;

async fn blocking<T: Send + 'static>(
    store: Arc<DocStore>,
    f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
) -> DataResult<T> {
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| DataApiError::from(DataError::Task(e.to_string())))?
        .map_err(doc_error)
}

/// Opens a datacenter's store; a key the KMS now refuses suspends the datacenter at once.
async fn open(state: &AppState, dc: &Datacenter) -> DataResult<Arc<DocStore>> {
    match state.data.docstore(&dc.id).await {
        Ok(s) => Ok(s),
        Err(DataError::Kms(e)) if !e.kind.is_transient() => {
            let reason = crate::lifecycle::key_problem(&e.kind, &dc.key_id, &e.message);
            if let Err(se) = crate::monitor::suspend(state, dc, &reason).await {
                tracing::error!(error = %se, "suspending a datacenter failed");
            }
            Err(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_SUSPENDED",
                reason,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// A read on the endpoint's own region.
async fn read<T: Send + 'static>(
    state: &AppState,
    dc: &Datacenter,
    f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
) -> DataResult<T> {
    let store = open(state, dc).await?;
    blocking(store, f).await
}

/// Applies a write to every live region, or to none when one cannot take it. The regions
/// are the ones [`resolve`] listed under the database's write lock, which the command holds.
async fn write_all<T: Send + 'static>(
    ctx: &Ctx,
    f: impl Fn(&DocStore) -> Result<T, DocStoreError> + Send + Sync + Clone + 'static,
) -> DataResult<T> {
    let state = &ctx.state;
    if ctx.write_guard.is_none() {
        tracing::error!("a data API write ran without the database's write lock");
        return Err(err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_INTERNAL_ERROR",
            "an internal error occurred; retry later",
        ));
    }
    if let Some(s) = ctx
        .dcs
        .iter()
        .find(|d| d.status == DatabaseStatus::Suspended)
    {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_SUSPENDED",
            format!("region {} is suspended: {}", s.region, s.message),
        ));
    }
    let targets: Vec<&Datacenter> = ctx
        .dcs
        .iter()
        .filter(|d| d.status == DatabaseStatus::Active)
        .collect();
    let mut stores = Vec::with_capacity(targets.len());
    for dc in &targets {
        stores.push(open(state, dc).await?);
    }
    let mut result = None;
    for store in stores {
        let g = f.clone();
        result = Some(blocking(store, move |s| g(s)).await?);
    }
    result.ok_or_else(|| {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            "no region of the database is ACTIVE",
        )
    })
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn status_ok() -> Response {
    ok(json!({"status": {"ok": 1}}))
}

/// Reads the body under [`MAX_REQUEST_BYTES`] (the router's general 1 MiB limit is too small
/// for a full `insertMany`), so an oversized request is refused before it is buffered.
async fn read_body(body: Body) -> DataResult<Vec<u8>> {
    axum::body::to_bytes(body, MAX_REQUEST_BYTES).await.map(|b| b.to_vec()).map_err(|_| {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            format!(
                "the request body is larger than {MAX_REQUEST_BYTES} bytes (the Data API limit here); one \
                 document may be at most {MAX_DOCUMENT_BYTES} bytes and insertMany takes at most \
                 {MAX_INSERT_MANY} documents"
            ),
        )
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One parsed command: `{"<name>": {<fields>}}`.
struct Command {
    name: String,
    args: Map<String, Value>,
}

fn parse_command(bytes: &[u8]) -> DataResult<Command> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json stops at 128 levels; say so rather than "malformed".
        if e.to_string().contains("recursion limit") {
            command_error(
                "DOC_DEPTH_LIMIT_VIOLATION",
                format!("the request nests JSON more than 128 levels deep; documents may nest at most {MAX_DEPTH} levels"),
            )
        } else {
            err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("malformed JSON: {e}"))
        }
    })?;
    let Value::Object(o) = body else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!(
                "the body must be a JSON object holding one command, not {}",
                json_type(&body)
            ),
        ));
    };
    if o.len() != 1 {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!(
                "the body must hold exactly one command, e.g. {{\"findOne\":{{}}}}; it has {}",
                o.len()
            ),
        ));
    }
    let Some((name, args)) = o.into_iter().next() else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "the body holds no command",
        ));
    };
    let args = match args {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(command_error(
                "COMMAND_FIELD_INVALID",
                format!(
                    "the body of command '{name}' must be an object, not {}",
                    json_type(&other)
                ),
            ));
        }
    };
    Ok(Command { name, args })
}

fn field_error(cmd: &str, field: &str, want: &str, got: &Value) -> DataApiError {
    command_error(
        "COMMAND_FIELD_INVALID",
        format!("{cmd}: '{field}' must be {want}, not {}", json_type(got)),
    )
}

/// A command's fields or options, type-checked one by one so a wrong type is named.
struct Fields<'a> {
    /// `find` or `find.options`, for messages.
    at: String,
    m: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Refuses names the command does not know, so a typo is an error rather than ignored.
    fn only(&self, allowed: &[&str]) -> DataResult<()> {
        match self.m.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(command_error(
                "COMMAND_FIELD_INVALID",
                format!(
                    "{}: unknown field '{}'; known: {}",
                    self.at,
                    k.chars().take(64).collect::<String>(),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )),
        }
    }

    /// A present, non-null value.
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }

    fn object(&self, k: &str) -> DataResult<Option<Value>> {
        match self.get(k) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(v) => Err(field_error(&self.at, k, "an object", v)),
        }
    }

    fn required_object(&self, k: &str) -> DataResult<Value> {
        self.object(k)?.ok_or_else(|| {
            command_error(
                "COMMAND_FIELD_INVALID",
                format!("{}: '{k}' is required", self.at),
            )
        })
    }

    fn string(&self, k: &str) -> DataResult<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(field_error(&self.at, k, "a string", v)),
        }
    }

    fn required_string(&self, k: &str) -> DataResult<String> {
        self.string(k)?.ok_or_else(|| {
            command_error(
                "COMMAND_FIELD_INVALID",
                format!("{}: '{k}' is required", self.at),
            )
        })
    }

    fn bool(&self, k: &str) -> DataResult<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(field_error(&self.at, k, "true or false", v)),
        }
    }

    fn count(&self, k: &str) -> DataResult<Option<u64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| field_error(&self.at, k, "a non-negative integer", v)),
        }
    }
}

impl Command {
    fn fields(&self, allowed: &[&str]) -> DataResult<Fields<'_>> {
        let f = Fields {
            at: self.name.clone(),
            m: &self.args,
        };
        f.only(allowed)?;
        Ok(f)
    }

    /// The command's `options` object, limited to `allowed` names.
    fn options(&self, allowed: &[&str]) -> DataResult<Fields<'_>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let at = format!("{}.options", self.name);
        let m = match self.args.get("options") {
            None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
            Some(Value::Object(m)) => m,
            Some(v) => return Err(field_error(&self.name, "options", "an object", v)),
        };
        let f = Fields { at, m };
        f.only(allowed)?;
        Ok(f)
    }
}

fn unknown_command(name: &str, level: &str) -> DataApiError {
    let hint = if DATABASE_COMMANDS.contains(&name) {
        " (a database command: POST it to …/api/json/v1)".to_string()
    } else if KEYSPACE_COMMANDS.contains(&name) {
        " (a keyspace command: POST it to …/api/json/v1/{keyspace})".to_string()
    } else if COLLECTION_COMMANDS.contains(&name) {
        " (a collection command: POST it to …/api/json/v1/{keyspace}/{collection})".to_string()
    } else {
        String::new()
    };
    command_error(
        "COMMAND_UNKNOWN",
        format!(
            "no {level} command '{}'{hint}",
            name.chars().take(64).collect::<String>()
        ),
    )
}

const DATABASE_COMMANDS: &[&str] = &["findKeyspaces", "createKeyspace", "dropKeyspace"];
const KEYSPACE_COMMANDS: &[&str] = &["createCollection", "findCollections", "deleteCollection"];
const COLLECTION_COMMANDS: &[&str] = &[
    "insertOne",
    "insertMany",
    "findOne",
    "find",
    "countDocuments",
    "estimatedDocumentCount",
    "updateOne",
    "updateMany",
    "findOneAndUpdate",
    "findOneAndReplace",
    "findOneAndDelete",
    "deleteOne",
    "deleteMany",
];

/// Which commands change data (need `db-write`); everything else, unknown names included,
/// needs only `db-read`, so an unknown command is reported as unknown, not as forbidden.
fn is_write(name: &str) -> bool {
    !matches!(
        name,
        "findKeyspaces"
            | "findCollections"
            | "findOne"
            | "find"
            | "countDocuments"
            | "estimatedDocumentCount"
    ) && (DATABASE_COMMANDS.contains(&name)
        || KEYSPACE_COMMANDS.contains(&name)
        || COLLECTION_COMMANDS.contains(&name))
}

/// Everything a command needs once the request is authenticated and resolved.
struct Ctx {
    state: AppState,
    db: Database,
    /// The database's live (not terminated) datacenters; for a write, listed under its lock.
    dcs: Vec<Datacenter>,
    /// The endpoint's region.
    dc: Datacenter,
    write_guard: Option<WriteGuard>,
    /// The request's time (ms since the epoch): what `$currentDate` writes, the same in every
    /// document and every region the command touches.
    now_ms: i64,
}

/// Auth, body, permission and endpoint: the same steps for every level, in the order that
/// reveals least (no token → 401 before anything is parsed or looked up).
async fn prepare(
    state: AppState,
    headers: &HeaderMap,
    endpoint: &str,
    body: Body,
) -> DataResult<(Ctx, Command)> {
    let caller = caller(&state, headers).await?;
    let bytes = read_body(body).await?;
    let cmd = parse_command(&bytes)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let write = is_write(&cmd.name);
    caller
        .require(if write {
            Permission::DbWrite
        } else {
            Permission::DbRead
        })
        .map_err(DataApiError::from)?;
    let (db, dcs, dc, write_guard) = resolve(&state, &caller, endpoint, write).await?;
    Ok((
        Ctx {
            state,
            db,
            dcs,
            dc,
            write_guard,
            now_ms,
        },
        cmd,
    ))
}

fn respond(r: DataResult<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

// ----------------------------------------------------------------------- handlers

/// Database commands: findKeyspaces, createKeyspace, dropKeyspace.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}")),
    request_body(content = Object, description = "one command, e.g. {\"findKeyspaces\":{}}"),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 404, body = Object), (status = 503, body = Object)))]
pub async fn database_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<DatabasePath>,
    body: Body,
) -> Response {
    respond(
        async {
            let (ctx, cmd) = prepare(state, &headers, &path.endpoint, body).await?;
            match database_level(&ctx, &cmd).await? {
                Some(r) => Ok(r),
                None => Err(unknown_command(&cmd.name, "database")),
            }
        }
        .await,
    )
}

/// Keyspace commands: createCollection, findCollections, deleteCollection (and the database
/// commands, which clients built for older Data API versions send here).
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"createCollection\":{\"name\":\"orders\"}}"),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 404, body = Object), (status = 503, body = Object)))]
pub async fn keyspace_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<KeyspacePath>,
    body: Body,
) -> Response {
    respond(
        async {
            let (ctx, cmd) = prepare(state, &headers, &path.endpoint, body).await?;
            if let Some(r) = database_level(&ctx, &cmd).await? {
                return Ok(r);
            }
            keyspace_level(&ctx, &cmd, &path.keyspace).await
        }
        .await,
    )
}

/// Collection commands: insertOne, insertMany, findOne, find, countDocuments,
/// estimatedDocumentCount, updateOne, updateMany, findOneAndUpdate, findOneAndReplace,
/// findOneAndDelete, deleteOne, deleteMany.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}/{collection}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path), ("collection" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"insertOne\":{\"document\":{…}}}"),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 404, body = Object), (status = 413, body = Object), (status = 503, body = Object)))]
pub async fn collection_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<CollectionPath>,
    body: Body,
) -> Response {
    respond(
        async {
            let (ctx, cmd) = prepare(state, &headers, &path.endpoint, body).await?;
            collection_level(&ctx, &cmd, path.keyspace.clone(), path.collection.clone()).await
        }
        .await,
    )
}

/// `None` when the command is not a database command.
async fn database_level(ctx: &Ctx, cmd: &Command) -> DataResult<Option<Response>> {
    let state = &ctx.state;
    match cmd.name.as_str() {
        "findKeyspaces" => {
            cmd.fields(&["options"])?;
            cmd.options(&[])?;
            let list = read(state, &ctx.dc, |s| s.list_keyspaces()).await?;
            Ok(Some(ok(json!({"status": {"keyspaces": list}}))))
        }
        "createKeyspace" => {
            let f = cmd.fields(&["name", "options"])?;
            // Replication is the platform's business here; accepted so clients need not special-case.
            cmd.options(&["replication"])?;
            let name = f.required_string("name")?;
            keyspaces_allowed(&ctx.db, "createKeyspace")?;
            write_all(ctx, move |s| s.create_keyspace(&name)).await?;
            Ok(Some(status_ok()))
        }
        "dropKeyspace" => {
            let f = cmd.fields(&["name"])?;
            let name = f.required_string("name")?;
            keyspaces_allowed(&ctx.db, "dropKeyspace")?;
            if name == ctx.db.keyspace {
                return Err(command_error(
                    "KEYSPACE_COMMAND_NOT_ALLOWED",
                    format!("'{name}' is the database's default keyspace and cannot be dropped"),
                ));
            }
            write_all(ctx, move |s| s.drop_keyspace(&name)).await?;
            Ok(Some(status_ok()))
        }
        _ => Ok(None),
    }
}

fn keyspaces_allowed(db: &Database, what: &str) -> DataResult<()> {
    if db.db_type == DbType::Serverless {
        Ok(())
    } else {
        Err(command_error(
            "KEYSPACE_COMMAND_NOT_ALLOWED",
            format!(
                "{what} is available on serverless (vector) databases; the keyspaces of classic database '{}' \
                 are fixed at deployment",
                db.name
            ),
        ))
    }
}

/// Collection options keyplane's store honours. Vector, lexical and reranking collections
/// need search machinery the encrypted store does not have: refusing them is clearer than
/// creating a collection whose searches would all fail.
fn check_collection_options(options: &Value) -> DataResult<()> {
    let Value::Object(m) = options else {
        return Ok(());
    };
    for (k, v) in m {
        match k.as_str() {
            "indexing" => {
                // Every field is queryable here; allow/deny lists are kept for clients that
                // read them back, and change nothing.
                if !v.is_object() {
                    return Err(field_error(
                        "createCollection.options",
                        "indexing",
                        "an object",
                        v,
                    ));
                }
            }
            "defaultId" => {
                let t = v.get("type").and_then(Value::as_str).unwrap_or("uuid");
                if t != "uuid" {
                    return Err(command_error(
                        "UNSUPPORTED_COLLECTION_OPTION",
                        format!(
                            "defaultId type '{t}' is not supported; generated _ids are UUIDs (type \"uuid\")"
                        ),
                    ));
                }
            }
            "vector" | "lexical" | "rerank" => {
                // Clients may send them explicitly disabled.
                if v.get("enabled") == Some(&Value::Bool(false)) {
                    continue;
                }
                return Err(command_error(
                    "UNSUPPORTED_COLLECTION_OPTION",
                    format!(
                        "collection option '{k}' is not supported on keyplane's encrypted store"
                    ),
                ));
            }
            other => {
                return Err(command_error(
                    "UNSUPPORTED_COLLECTION_OPTION",
                    format!(
                        "unknown collection option '{}'; known: indexing, defaultId",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn keyspace_level(ctx: &Ctx, cmd: &Command, ks: &str) -> DataResult<Response> {
    let state = &ctx.state;
    let ks = ks.to_string();
    match cmd.name.as_str() {
        "createCollection" => {
            let f = cmd.fields(&["name", "options"])?;
            let name = f.required_string("name")?;
            let options = f.object("options")?;
            if let Some(o) = &options {
                check_collection_options(o)?;
            }
            write_all(ctx, move |s| {
                s.create_collection(&ks, &name, options.as_ref())
            })
            .await?;
            Ok(status_ok())
        }
        "deleteCollection" => {
            let f = cmd.fields(&["name"])?;
            let name = f.required_string("name")?;
            write_all(ctx, move |s| s.delete_collection(&ks, &name)).await?;
            Ok(status_ok())
        }
        "findCollections" => {
            cmd.fields(&["options"])?;
            let explain = cmd.options(&["explain"])?.bool("explain")?.unwrap_or(false);
            let colls = read(state, &ctx.dc, move |s| s.list_collections(&ks)).await?;
            let list: Vec<Value> = if explain {
                colls
                    .into_iter()
                    .map(|(n, o)| json!({"name": n, "options": o}))
                    .collect()
            } else {
                colls.into_iter().map(|(n, _)| json!(n)).collect()
            };
            Ok(ok(json!({"status": {"collections": list}})))
        }
        other => Err(unknown_command(other, "keyspace")),
    }
}

/// A document with an `_id`: the one it has, or a new UUID (the Data API's default id type),
/// chosen once so every region stores the same id.
fn with_id(doc: Value) -> Value {
    match doc {
        Value::Object(m) if !m.contains_key("_id") => {
            let mut out = Map::with_capacity(m.len() + 1);
            out.insert("_id".into(), Value::String(Uuid::new_v4().to_string()));
            out.extend(m);
            Value::Object(out)
        }
        other => other,
    }
}

/// The `_id` an upsert would take from the filter (equality on `_id`, also inside `$and`),
/// mirroring how the store seeds an upserted document.
fn filter_id(filter: &Value) -> Option<Value> {
    let m = filter.as_object()?;
    for (k, v) in m {
        if k == "$and" {
            if let Some(found) = v.as_array().and_then(|a| a.iter().find_map(filter_id)) {
                return Some(found);
            }
        } else if k == "_id" {
            match v {
                Value::Object(ops) if ops.keys().any(|o| o.starts_with('$')) => {
                    let literal = ops.len() == 1
                        && ops
                            .keys()
                            .any(|o| matches!(o.as_str(), "$date" | "$uuid" | "$objectId"));
                    if literal {
                        return Some(v.clone());
                    }
                    if let Some(e) = ops.get("$eq") {
                        return Some(e.clone());
                    }
                }
                other => return Some(other.clone()),
            }
        }
    }
    None
}

/// For an upserting update whose filter names no `_id`: adds `$setOnInsert: {_id: <uuid>}`
/// (unless the caller set one), so every region inserts the same id. Returns the update and
/// the id an insert would get.
fn upsert_update(update: Value, filter: &Value) -> (Value, Option<Value>) {
    let from_filter = filter_id(filter);
    let Value::Object(mut m) = update else {
        return (update, from_filter);
    };
    if m.is_empty() {
        return (Value::Object(m), from_filter);
    }
    let user_id = m.get("$setOnInsert").and_then(|s| s.get("_id")).cloned();
    if let Some(id) = user_id {
        return (Value::Object(m), Some(id));
    }
    if from_filter.is_some() {
        return (Value::Object(m), from_filter);
    }
    let id = Value::String(Uuid::new_v4().to_string());
    match m.get_mut("$setOnInsert") {
        Some(Value::Object(s)) => {
            s.insert("_id".into(), id.clone());
        }
        // A non-object $setOnInsert: the store names the mistake.
        Some(_) => return (Value::Object(m), None),
        None => {
            m.insert("$setOnInsert".into(), json!({"_id": id.clone()}));
        }
    }
    (Value::Object(m), Some(id))
}

fn return_document(opts: &Fields<'_>) -> DataResult<ReturnDocument> {
    match opts.get("returnDocument") {
        None => Ok(ReturnDocument::Before),
        Some(Value::String(s)) if s == "before" => Ok(ReturnDocument::Before),
        Some(Value::String(s)) if s == "after" => Ok(ReturnDocument::After),
        Some(v) => Err(command_error(
            "COMMAND_FIELD_INVALID",
            format!(
                "{}: 'returnDocument' must be \"before\" or \"after\", not {v}",
                opts.at
            ),
        )),
    }
}

async fn collection_level(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let state = &ctx.state;
    let name = cmd.name.as_str();
    match name {
        "insertOne" => {
            let f = cmd.fields(&["document"])?;
            let doc = with_id(f.required_object("document")?);
            let id = write_all(ctx, move |s| s.insert_one(&ks, &coll, doc.clone())).await?;
            Ok(ok(json!({"status": {"insertedIds": [id]}})))
        }
        "insertMany" => {
            let f = cmd.fields(&["documents", "options"])?;
            let opts = cmd.options(&["ordered", "returnDocumentResponses"])?;
            let docs = match f.get("documents") {
                Some(Value::Array(a)) => a.clone(),
                Some(v) => return Err(field_error(name, "documents", "an array of documents", v)),
                None => {
                    return Err(command_error(
                        "COMMAND_FIELD_INVALID",
                        "insertMany: 'documents' is required",
                    ));
                }
            };
            if docs.is_empty() {
                return Err(command_error(
                    "COMMAND_FIELD_INVALID",
                    "insertMany: 'documents' is empty",
                ));
            }
            if docs.len() > MAX_INSERT_MANY {
                return Err(command_error(
                    "TOO_MANY_DOCUMENTS",
                    format!(
                        "insertMany takes at most {MAX_INSERT_MANY} documents per command, got {}; send them in \
                         several commands (clients such as astrapy do)",
                        docs.len()
                    ),
                ));
            }
            // The Data API's default: unordered.
            let ordered = opts.bool("ordered")?.unwrap_or(false);
            let responses = opts.bool("returnDocumentResponses")?.unwrap_or(false);
            let docs: Vec<Value> = docs.into_iter().map(with_id).collect();
            let ids: Vec<Value> = docs
                .iter()
                .map(|d| d.get("_id").cloned().unwrap_or(Value::Null))
                .collect();
            let results = write_all(ctx, move |s| {
                s.insert_many(&ks, &coll, docs.clone(), ordered)
            })
            .await?;
            let mut inserted = vec![];
            let mut per_doc = vec![];
            let mut errors = vec![];
            for (i, id) in ids.into_iter().enumerate() {
                match results.get(i) {
                    Some(Ok(stored)) => {
                        inserted.push(stored.clone());
                        per_doc.push(json!({"_id": stored, "status": "OK"}));
                    }
                    Some(Err(e)) => {
                        let code = doc_code(e).unwrap_or("SERVER_INTERNAL_ERROR");
                        let msg = format!("document {i} (_id {id}): {e}");
                        per_doc
                            .push(json!({"_id": id, "status": "ERROR", "errorsIdx": errors.len()}));
                        errors.push(error_item(StatusCode::OK, code, &msg));
                    }
                    // Ordered inserts stop at the first failure; the rest were not attempted.
                    None => per_doc.push(json!({"_id": id, "status": "SKIPPED"})),
                }
            }
            let mut out = if responses {
                json!({"status": {"documentResponses": per_doc}})
            } else {
                json!({"status": {"insertedIds": inserted}})
            };
            if !errors.is_empty() {
                out["errors"] = json!(errors);
            }
            Ok(ok(out))
        }
        "findOne" => {
            let f = cmd.fields(&["filter", "sort", "projection", "options"])?;
            cmd.options(&["includeSimilarity", "includeSortVector"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let (sort, projection) = (f.object("sort")?, f.object("projection")?);
            let doc = read(state, &ctx.dc, move |s| {
                s.find_one(&ks, &coll, &filter, sort.as_ref(), projection.as_ref())
            })
            .await?;
            Ok(ok(json!({"data": {"document": doc}})))
        }
        "find" => {
            let f = cmd.fields(&["filter", "sort", "projection", "options"])?;
            // includeSimilarity/includeSortVector are accepted and ignored: no vector search here.
            let opts = cmd.options(&[
                "limit",
                "skip",
                "pageState",
                "includeSimilarity",
                "includeSortVector",
            ])?;
            opts.bool("includeSimilarity")?;
            opts.bool("includeSortVector")?;
            let q = Query {
                filter: f.object("filter")?.unwrap_or_else(|| json!({})),
                sort: f.object("sort")?,
                projection: f.object("projection")?,
                skip: opts.count("skip")?.unwrap_or(0),
                limit: opts.count("limit")?,
                page_state: opts.string("pageState")?.filter(|s| !s.is_empty()),
                page_size: None,
            };
            let page = read(state, &ctx.dc, move |s| s.find(&ks, &coll, &q)).await?;
            // nextPageState is always present (null on the last page): astrapy reads it unconditionally.
            Ok(ok(
                json!({"data": {"documents": page.docs, "nextPageState": page.next_page_state}}),
            ))
        }
        "countDocuments" => {
            let f = cmd.fields(&["filter", "options"])?;
            let opts = cmd.options(&["upperBound"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let bound = match opts.count("upperBound")? {
                None => MAX_COUNT,
                Some(0) => {
                    return Err(command_error(
                        "COMMAND_FIELD_INVALID",
                        "countDocuments.options: 'upperBound' must be at least 1",
                    ));
                }
                Some(b) => b.min(MAX_COUNT),
            };
            let (n, more) =
                read(state, &ctx.dc, move |s| s.count(&ks, &coll, &filter, bound)).await?;
            let mut status = json!({"count": n});
            if more {
                status["moreData"] = json!(true);
            }
            Ok(ok(json!({"status": status})))
        }
        "estimatedDocumentCount" => {
            cmd.fields(&["options"])?;
            cmd.options(&[])?;
            let n = read(state, &ctx.dc, move |s| s.estimated_count(&ks, &coll)).await?;
            Ok(ok(json!({"status": {"count": n}})))
        }
        "deleteOne" => {
            let f = cmd.fields(&["filter", "sort"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let sort = f.object("sort")?;
            let n = write_all(ctx, move |s| match &sort {
                // With a sort the document to delete is chosen by it.
                Some(sort) => Ok(u64::from(
                    s.find_one_and_delete(&ks, &coll, &filter, Some(sort), None)?
                        .is_some(),
                )),
                None => s.delete_one(&ks, &coll, &filter),
            })
            .await?;
            Ok(ok(json!({"status": {"deletedCount": n}})))
        }
        "deleteMany" => {
            let f = cmd.fields(&["filter"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            // One transaction deletes every match, so there is never "moreData".
            let n = write_all(ctx, move |s| s.delete_many(&ks, &coll, &filter)).await?;
            Ok(ok(json!({"status": {"deletedCount": n}})))
        }
        "findOneAndDelete" => {
            let f = cmd.fields(&["filter", "sort", "projection"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let (sort, projection) = (f.object("sort")?, f.object("projection")?);
            let doc = write_all(ctx, move |s| {
                s.find_one_and_delete(&ks, &coll, &filter, sort.as_ref(), projection.as_ref())
            })
            .await?;
            let n = u64::from(doc.is_some());
            Ok(ok(
                json!({"data": {"document": doc}, "status": {"deletedCount": n}}),
            ))
        }
        "updateOne" | "updateMany" => {
            let many = name == "updateMany";
            let f = if many {
                cmd.fields(&["filter", "update", "options"])?
            } else {
                cmd.fields(&["filter", "update", "sort", "options"])?
            };
            let opts = if many {
                cmd.options(&["upsert", "pageState"])?
            } else {
                cmd.options(&["upsert"])?
            };
            if many && opts.string("pageState")?.is_some_and(|s| !s.is_empty()) {
                return Err(command_error(
                    "INVALID_PAGE_STATE",
                    "updateMany updates every match in one command here and never returns a pageState",
                ));
            }
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let update = f.required_object("update")?;
            let sort = f.object("sort")?;
            let upsert = opts.bool("upsert")?.unwrap_or(false);
            let update = if upsert {
                upsert_update(update, &filter).0
            } else {
                update
            };
            let now_ms = ctx.now_ms;
            let r = write_all(ctx, move |s| {
                if many {
                    s.update_many_at(&ks, &coll, &filter, &update, upsert, now_ms)
                } else {
                    let opts = UpdateOptions {
                        upsert,
                        sort: sort.clone(),
                        now_ms: Some(now_ms),
                    };
                    s.update_one(&ks, &coll, &filter, &update, &opts)
                }
            })
            .await?;
            let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
            if let Some(id) = r.upserted_id {
                status["upsertedId"] = id;
            }
            Ok(ok(json!({"status": status})))
        }
        "findOneAndUpdate" | "findOneAndReplace" => {
            let replace = name == "findOneAndReplace";
            let body_field = if replace { "replacement" } else { "update" };
            let f = cmd.fields(&["filter", body_field, "sort", "projection", "options"])?;
            let opts = cmd.options(&["upsert", "returnDocument"])?;
            let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
            let change = f.required_object(body_field)?;
            let upsert = opts.bool("upsert")?.unwrap_or(false);
            let fo = FindOneAndOptions {
                sort: f.object("sort")?,
                projection: f.object("projection")?,
                upsert,
                return_document: return_document(&opts)?,
                now_ms: Some(ctx.now_ms),
                // An upsert whose filter and document name no `_id` inserts one chosen here, so
                // every region inserts the same.
                upsert_id: upsert.then(|| Value::String(Uuid::new_v4().to_string())),
            };
            let (doc, r) = if replace {
                write_all(ctx, move |s| {
                    s.find_one_and_replace_with_result(&ks, &coll, &filter, change.clone(), &fo)
                })
                .await?
            } else {
                let update = if upsert {
                    upsert_update(change, &filter).0
                } else {
                    change
                };
                write_all(ctx, move |s| {
                    s.find_one_and_update_with_result(&ks, &coll, &filter, &update, &fo)
                })
                .await?
            };
            // modifiedCount counts a document the command actually changed, not one it matched.
            let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
            if let Some(id) = r.upserted_id {
                status["upsertedId"] = id;
            }
            Ok(ok(json!({"data": {"document": doc}, "status": status})))
        }
        other => Err(unknown_command(other, "collection")),
    }
}
