//! The Data API on a datacenter's encrypted store: `POST /db/{databaseId}-{region}/api/json/v1/{keyspace}`
//! for keyspace commands and `…/{keyspace}/{collection}` for collection commands, as existing
//! clients speak it. Reads are served by the region named in the endpoint; a write is applied
//! to every live region before it is acknowledged. A suspended region answers 503 with the
//! key and the reason.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::{DatabaseStatus, Permission};
use keyplane_docstore::{DocStore, DocStoreError, Query, UpdateOptions};
use keyplane_store::{Database, Datacenter};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::dataplane::DataError;
use crate::error::ApiError;
use crate::extract::ApiPath;

/// The most documents `countDocuments` counts before answering "more".
const COUNT_UPPER_BOUND: u64 = 1000;

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

/// A Data API error answer: `{"errors":[{"message","errorCode"}]}`.
pub struct DataApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for DataApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"errors": [{"message": self.message, "errorCode": self.code}]})),
        )
            .into_response()
    }
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> DataApiError {
    DataApiError { status, code, message: message.into() }
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
            DataError::Suspended(m) => err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_SUSPENDED", m),
            DataError::Unavailable(m) => err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", m),
            DataError::Kms(k) if k.kind.is_transient() => err(
                StatusCode::SERVICE_UNAVAILABLE,
                "KMS_UNAVAILABLE",
                "the key service did not answer; retry shortly",
            ),
            DataError::Doc(d) => doc_error(d),
            other => {
                tracing::error!(error = %other, "data API request failed");
                err(StatusCode::INTERNAL_SERVER_ERROR, "SERVER_INTERNAL_ERROR", "an internal error occurred; retry later")
            }
        }
    }
}

fn doc_error(e: DocStoreError) -> DataApiError {
    let code = match &e {
        DocStoreError::InvalidName(_) => "INVALID_ARGUMENT",
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
        _ => {
            tracing::error!(error = %e, "document store failure");
            return err(StatusCode::INTERNAL_SERVER_ERROR, "SERVER_INTERNAL_ERROR", "an internal error occurred; retry later");
        }
    };
    command_error(code, e.to_string())
}

type DataResult<T> = Result<T, DataApiError>;

/// The `Token` header (what Data API clients send) or `Authorization: Bearer`.
async fn caller(state: &AppState, headers: &HeaderMap) -> DataResult<Caller> {
    let raw = if let Some(t) = headers.get("token") {
        t.to_str().map_err(|_| ApiError::MalformedToken("the Token header is not ASCII".into()))?.to_string()
    } else if let Some(a) = headers.get(axum::http::header::AUTHORIZATION) {
        let a = a.to_str().map_err(|_| ApiError::MalformedToken("the Authorization header is not ASCII".into()))?;
        a.strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::MalformedToken("use 'Token: <token>' or 'Authorization: Bearer <token>'".into()))?
            .to_string()
    } else {
        return Err(ApiError::MissingToken.into());
    };
    Ok(Caller::from_token(state, &raw).await?)
}

/// `{databaseId}-{region}` → the database and the datacenter of that region.
async fn resolve(state: &AppState, caller: &Caller, endpoint: &str) -> DataResult<(Database, Vec<Datacenter>, Datacenter)> {
    let not_found = || err(StatusCode::NOT_FOUND, "DATABASE_NOT_FOUND", format!("no database endpoint {endpoint}"));
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
    let dcs: Vec<Datacenter> = state
        .store
        .list_datacenters(id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|d| d.terminated_at.is_none())
        .collect();
    let dc = dcs.iter().find(|d| d.region == region).cloned().ok_or_else(not_found)?;
    Ok((db, dcs, dc))
}

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
            Err(err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_SUSPENDED", reason))
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies a write to every live region, or to none when one cannot take it.
async fn write_all<T: Send + 'static>(
    state: &AppState,
    dcs: &[Datacenter],
    f: impl Fn(&DocStore) -> Result<T, DocStoreError> + Send + Sync + Clone + 'static,
) -> DataResult<T> {
    let lock = state.data.write_lock(&dcs[0].database_id).await;
    let _guard = lock.read().await;
    // Re-read under the lock: a region that just became ACTIVE must get this write.
    let fresh = state
        .store
        .list_datacenters(dcs[0].database_id)
        .await
        .map_err(ApiError::from)?;
    let live: Vec<Datacenter> = fresh.into_iter().filter(|d| d.terminated_at.is_none()).collect();
    if let Some(s) = live.iter().find(|d| d.status == DatabaseStatus::Suspended) {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "DATABASE_SUSPENDED",
            format!("region {} is suspended: {}", s.region, s.message),
        ));
    }
    let targets: Vec<&Datacenter> = live.iter().filter(|d| d.status == DatabaseStatus::Active).collect();
    let mut stores = Vec::with_capacity(targets.len());
    for dc in &targets {
        stores.push(open(state, dc).await?);
    }
    let mut result = None;
    for store in stores {
        let g = f.clone();
        result = Some(blocking(store, move |s| g(s)).await?);
    }
    result.ok_or_else(|| err(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", "no region of the database is ACTIVE"))
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn one_command(body: &Value) -> DataResult<(String, Value)> {
    match body.as_object() {
        Some(o) if o.len() == 1 => {
            let (k, v) = o.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
            Ok((k, if v.is_null() { json!({}) } else { v }))
        }
        _ => Err(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "the body must be one JSON object with exactly one command")),
    }
}

fn parse_body(bytes: &[u8]) -> DataResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("malformed JSON: {e}")))
}

/// Keyspace-level commands: createCollection, findCollections, deleteCollection.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"createCollection\":{\"name\":\"orders\"}}"),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 404, body = Object), (status = 503, body = Object)))]
pub async fn keyspace_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<KeyspacePath>,
    body: axum::body::Bytes,
) -> Result<Response, DataApiError> {
    let caller = caller(&state, &headers).await?;
    let (cmd, args) = one_command(&parse_body(&body)?)?;
    let write = matches!(cmd.as_str(), "createCollection" | "deleteCollection");
    caller
        .require(if write { Permission::DbWrite } else { Permission::DbRead })
        .map_err(DataApiError::from)?;
    let (_db, dcs, dc) = resolve(&state, &caller, &path.endpoint).await?;
    let ks = path.keyspace.clone();
    match cmd.as_str() {
        "createCollection" => {
            let name = args["name"].as_str().unwrap_or_default().to_string();
            let options = args.get("options").cloned();
            write_all(&state, &dcs, move |s| s.create_collection(&ks, &name, options.as_ref())).await?;
            Ok(ok(json!({"status": {"ok": 1}})))
        }
        "deleteCollection" => {
            let name = args["name"].as_str().unwrap_or_default().to_string();
            write_all(&state, &dcs, move |s| s.delete_collection(&ks, &name)).await?;
            Ok(ok(json!({"status": {"ok": 1}})))
        }
        "findCollections" => {
            let explain = args["options"]["explain"].as_bool().unwrap_or(false);
            let store = open(&state, &dc).await?;
            let colls = blocking(store, move |s| s.list_collections(&ks)).await?;
            let list: Vec<Value> = if explain {
                colls.into_iter().map(|(n, o)| json!({"name": n, "options": o})).collect()
            } else {
                colls.into_iter().map(|(n, _)| json!(n)).collect()
            };
            Ok(ok(json!({"status": {"collections": list}})))
        }
        other => Err(command_error("COMMAND_UNKNOWN", format!("no keyspace command {other:?}"))),
    }
}

/// Collection-level commands: insertOne, insertMany, findOne, find, countDocuments,
/// updateOne, updateMany, deleteOne, deleteMany.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}/{collection}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path), ("collection" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"insertOne\":{\"document\":{…}}}"),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 404, body = Object), (status = 503, body = Object)))]
pub async fn collection_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<CollectionPath>,
    body: axum::body::Bytes,
) -> Result<Response, DataApiError> {
    let caller = caller(&state, &headers).await?;
    let (cmd, args) = one_command(&parse_body(&body)?)?;
    let read = matches!(cmd.as_str(), "findOne" | "find" | "countDocuments" | "estimatedDocumentCount");
    caller
        .require(if read { Permission::DbRead } else { Permission::DbWrite })
        .map_err(DataApiError::from)?;
    let (_db, dcs, dc) = resolve(&state, &caller, &path.endpoint).await?;
    let (ks, coll) = (path.keyspace.clone(), path.collection.clone());
    let filter = args.get("filter").cloned().unwrap_or_else(|| json!({}));
    let sort = args.get("sort").cloned();
    let projection = args.get("projection").cloned();
    let opts = args.get("options").cloned().unwrap_or_else(|| json!({}));
    match cmd.as_str() {
        "insertOne" => {
            let doc = args.get("document").cloned().unwrap_or(Value::Null);
            let id = write_all(&state, &dcs, move |s| s.insert_one(&ks, &coll, doc.clone())).await?;
            Ok(ok(json!({"status": {"insertedIds": [id]}})))
        }
        "insertMany" => {
            let docs = args.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            let ordered = opts["ordered"].as_bool().unwrap_or(false);
            let results = write_all(&state, &dcs, move |s| s.insert_many(&ks, &coll, docs.clone(), ordered)).await?;
            let mut ids = vec![];
            let mut errors = vec![];
            for r in results {
                match r {
                    Ok(id) => ids.push(id),
                    Err(e) => errors.push(json!({"message": e.to_string(), "errorCode": "DOCUMENT_ALREADY_EXISTS"})),
                }
            }
            let mut out = json!({"status": {"insertedIds": ids}});
            if !errors.is_empty() {
                out["errors"] = json!(errors);
            }
            Ok(ok(out))
        }
        "findOne" => {
            let store = open(&state, &dc).await?;
            let doc = blocking(store, move |s| s.find_one(&ks, &coll, &filter, sort.as_ref(), projection.as_ref())).await?;
            Ok(ok(json!({"data": {"document": doc}})))
        }
        "find" => {
            let q = Query {
                filter,
                sort,
                projection,
                skip: opts["skip"].as_u64().unwrap_or(0),
                limit: opts["limit"].as_u64(),
                page_state: opts["pageState"].as_str().map(str::to_string),
                page_size: None,
            };
            let store = open(&state, &dc).await?;
            let page = blocking(store, move |s| s.find(&ks, &coll, &q)).await?;
            Ok(ok(json!({"data": {"documents": page.docs, "nextPageState": page.next_page_state}})))
        }
        "countDocuments" => {
            let store = open(&state, &dc).await?;
            let (n, more) = blocking(store, move |s| s.count(&ks, &coll, &filter, COUNT_UPPER_BOUND)).await?;
            let mut status = json!({"count": n});
            if more {
                status["moreData"] = json!(true);
            }
            Ok(ok(json!({"status": status})))
        }
        "estimatedDocumentCount" => {
            let store = open(&state, &dc).await?;
            let n = blocking(store, move |s| s.estimated_count(&ks, &coll)).await?;
            Ok(ok(json!({"status": {"count": n}})))
        }
        "deleteOne" => {
            let n = write_all(&state, &dcs, move |s| s.delete_one(&ks, &coll, &filter)).await?;
            Ok(ok(json!({"status": {"deletedCount": n}})))
        }
        "deleteMany" => {
            let n = write_all(&state, &dcs, move |s| s.delete_many(&ks, &coll, &filter)).await?;
            Ok(ok(json!({"status": {"deletedCount": n}})))
        }
        "updateOne" | "updateMany" => {
            let update = args.get("update").cloned().unwrap_or_else(|| json!({}));
            let upsert = opts["upsert"].as_bool().unwrap_or(false);
            let many = cmd == "updateMany";
            let r = write_all(&state, &dcs, move |s| {
                if many {
                    s.update_many(&ks, &coll, &filter, &update, upsert)
                } else {
                    s.update_one(&ks, &coll, &filter, &update, &UpdateOptions { upsert, sort: sort.clone() })
                }
            })
            .await?;
            let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
            if let Some(id) = r.upserted_id {
                status["upsertedId"] = id;
            }
            Ok(ok(json!({"status": status})))
        }
        other => Err(command_error("COMMAND_UNKNOWN", format!("no collection command {other:?}"))),
    }
}
