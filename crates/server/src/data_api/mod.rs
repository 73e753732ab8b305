//! The Data API on a datacenter's encrypted store, as existing clients (astrapy) speak it:
//! `POST /db/{databaseId}-{region}/api/json/v1` for database commands (keyspaces),
//! `…/v1/{keyspace}` for keyspace commands (collections) and `…/v1/{keyspace}/{collection}`
//! for document commands. This module is the request envelope and the dispatch; `command`
//! parses the envelope, `errors` is the error model, and one file per command family
//! carries the commands: `collections` (keyspaces and collections), `insert`, `find`
//! (find, findOne, counts), `update` (update, replace, findOneAnd{Update,Replace}) and
//! `delete`. The reads and writes themselves, across regions, are the application's
//! ([`keyplane_app::dataplane::access`]).
//!
//! A write is applied to every live region before it is acknowledged, so anything a write
//! would otherwise pick at random (a generated `_id`) is picked here once and sent to every
//! region.
//!
//! Statuses follow the Data API: a command that cannot be carried out answers 200 with
//! `errors`; only transport-level problems use other statuses (401 no or bad token, 403 a
//! token without the permission, 404 no such database endpoint, 400 a body that is not one
//! JSON command, 413 a body above [`MAX_REQUEST_BYTES`], 503 a suspended or unavailable
//! region, naming the key and the reason).
mod collections;
mod command;
mod delete;
pub mod errors;
mod find;
mod insert;
mod update;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_app::dataplane::access::Endpoint;
use keyplane_app::{App, AppError};
use keyplane_docstore::{MAX_DOCUMENT_BYTES, MAX_INSERT_MANY};
use serde_json::{Value, json};

use command::{Command, CommandName, Level, parse_command, unknown_command};
pub use errors::{DataApiError, DataApiErrorCode};

/// The most documents `countDocuments` counts before answering `moreData` (the Data API's
/// default), so a count never scans an unbounded collection.
pub const MAX_COUNT: u64 = 1000;
/// Largest request body: a full `insertMany` of 100 documents fits; each document is further
/// limited to [`MAX_DOCUMENT_BYTES`] by the store. Read in full before parsing, so this also
/// bounds the memory one request can take.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

type DataResult<T> = Result<T, DataApiError>;

/// Where a command was posted, with the path's names.
pub enum Target {
    Database,
    Keyspace(String),
    Collection {
        keyspace: String,
        collection: String,
    },
}

/// Everything a command needs once the request is authenticated and resolved.
struct Ctx {
    endpoint: Endpoint,
    /// The request's time (ms since the epoch): what `$currentDate` writes, the same in every
    /// document and every region the command touches.
    now_ms: i64,
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn status_ok() -> Response {
    ok(json!({"status": {"ok": 1}}))
}

/// The `Token` header (what Data API clients send) or `Authorization: Bearer`.
fn raw_token(headers: &HeaderMap) -> DataResult<String> {
    let malformed = |m: &str| DataApiError::from(AppError::MalformedToken(m.to_string()));
    if let Some(t) = headers.get("token") {
        return Ok(t
            .to_str()
            .map_err(|_| malformed("the Token header is not ASCII"))?
            .to_string());
    }
    let Some(a) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(DataApiError::new(
            DataApiErrorCode::UnauthenticatedRequest,
            crate::error::MISSING_TOKEN,
        ));
    };
    let a = a
        .to_str()
        .map_err(|_| malformed("the Authorization header is not ASCII"))?;
    Ok(a.strip_prefix("Bearer ")
        .ok_or_else(|| malformed("use 'Token: <token>' or 'Authorization: Bearer <token>'"))?
        .to_string())
}

/// Reads the body under [`MAX_REQUEST_BYTES`] (the router's general 1 MiB limit is too small
/// for a full `insertMany`), so an oversized request is refused before it is buffered.
async fn read_body(body: Body) -> DataResult<Vec<u8>> {
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            DataApiError::new(
                DataApiErrorCode::RequestTooLarge,
                format!(
                    "the request body is larger than {MAX_REQUEST_BYTES} bytes (the Data API limit here); one \
                     document may be at most {MAX_DOCUMENT_BYTES} bytes and insertMany takes at most \
                     {MAX_INSERT_MANY} documents"
                ),
            )
        })
}

/// Auth, body, permission and endpoint: the same steps for every level, in the order that
/// reveals least (no token → 401 before anything is parsed or looked up).
async fn prepare(
    app: &App,
    headers: &HeaderMap,
    endpoint: &str,
    body: Body,
) -> DataResult<(Ctx, Command)> {
    let who = app.authenticate(&raw_token(headers)?).await?;
    app.serves_data()?;
    let bytes = read_body(body).await?;
    let cmd = parse_command(&bytes)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let endpoint = app.open_endpoint(&who, endpoint, cmd.writes()).await?;
    Ok((Ctx { endpoint, now_ms }, cmd))
}

/// Runs one command posted to `endpoint` at `target`; every failure is a Data API answer.
pub async fn handle(
    app: &App,
    headers: &HeaderMap,
    endpoint: &str,
    target: Target,
    body: Body,
) -> Response {
    let run = async {
        let (ctx, cmd) = prepare(app, headers, endpoint, body).await?;
        match target {
            Target::Database => collections::database_level(&ctx, &cmd)
                .await?
                .ok_or_else(|| unknown_command(&cmd, Level::Database)),
            // Clients built for older Data API versions send database commands here.
            Target::Keyspace(ks) => match collections::database_level(&ctx, &cmd).await? {
                Some(r) => Ok(r),
                None => collections::keyspace_level(&ctx, &cmd, ks).await,
            },
            Target::Collection {
                keyspace,
                collection,
            } => collection_level(&ctx, &cmd, keyspace, collection).await,
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn collection_level(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    use CommandName::*;
    match cmd.known {
        Some(InsertOne) => insert::insert_one(ctx, cmd, ks, coll).await,
        Some(InsertMany) => insert::insert_many(ctx, cmd, ks, coll).await,
        Some(FindOne) => find::find_one(ctx, cmd, ks, coll).await,
        Some(Find) => find::find(ctx, cmd, ks, coll).await,
        Some(CountDocuments) => find::count_documents(ctx, cmd, ks, coll).await,
        Some(EstimatedDocumentCount) => find::estimated_document_count(ctx, cmd, ks, coll).await,
        Some(DeleteOne) => delete::delete_one(ctx, cmd, ks, coll).await,
        Some(DeleteMany) => delete::delete_many(ctx, cmd, ks, coll).await,
        Some(FindOneAndDelete) => delete::find_one_and_delete(ctx, cmd, ks, coll).await,
        Some(UpdateOne) => update::update(ctx, cmd, ks, coll, false).await,
        Some(UpdateMany) => update::update(ctx, cmd, ks, coll, true).await,
        Some(FindOneAndUpdate) => update::find_one_and(ctx, cmd, ks, coll, false).await,
        Some(FindOneAndReplace) => update::find_one_and(ctx, cmd, ks, coll, true).await,
        _ => Err(unknown_command(cmd, Level::Collection)),
    }
}
