//! The Data API's three routes, one per level; everything else is `crate::data_api`.
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use keyplane_app::App;
use serde::Deserialize;

use crate::data_api::{self, Target};
use crate::extract::ApiPath;

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

/// Database commands: findKeyspaces, createKeyspace, dropKeyspace.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}")),
    request_body(content = Object, description = "one command, e.g. {\"findKeyspaces\":{}}", example = json!({"findKeyspaces": {}})),
    responses(
        (status = 200, description = "the command's answer, or its refusal in `errors`", body = Object),
        (status = 400, description = "not one JSON command", body = Object),
        (status = 401, body = Object), (status = 403, body = Object), (status = 404, body = Object),
        (status = 413, description = "larger than the limit", body = Object),
        (status = 503, description = "the region is suspended or unavailable", body = Object),
    ))]
pub async fn database_command(
    State(app): State<App>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<DatabasePath>,
    body: Body,
) -> Response {
    data_api::handle(&app, &headers, &path.endpoint, Target::Database, body).await
}

/// Keyspace commands: createCollection, findCollections, deleteCollection (and the database
/// commands, which clients built for older Data API versions send here).
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"createCollection\":{\"name\":\"orders\"}}", example = json!({"findCollections": {}})),
    responses(
        (status = 200, description = "the command's answer, or its refusal in `errors`", body = Object),
        (status = 400, description = "not one JSON command", body = Object),
        (status = 401, body = Object), (status = 403, body = Object), (status = 404, body = Object),
        (status = 413, description = "larger than the limit", body = Object),
        (status = 503, description = "the region is suspended or unavailable", body = Object),
    ))]
pub async fn keyspace_command(
    State(app): State<App>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<KeyspacePath>,
    body: Body,
) -> Response {
    let target = Target::Keyspace(path.keyspace);
    data_api::handle(&app, &headers, &path.endpoint, target, body).await
}

/// Collection commands: insertOne, insertMany, findOne, find, countDocuments,
/// estimatedDocumentCount, updateOne, updateMany, findOneAndUpdate, findOneAndReplace,
/// findOneAndDelete, deleteOne, deleteMany.
#[utoipa::path(post, path = "/db/{endpoint}/api/json/v1/{keyspace}/{collection}", tag = "data api",
    params(("endpoint" = String, Path, description = "{databaseId}-{region}"), ("keyspace" = String, Path), ("collection" = String, Path)),
    request_body(content = Object, description = "one command, e.g. {\"insertOne\":{\"document\":{…}}}", example = json!({"countDocuments": {"filter": {}, "upperBound": 1000}})),
    responses(
        (status = 200, description = "the command's answer, or its refusal in `errors`", body = Object),
        (status = 400, description = "not one JSON command", body = Object),
        (status = 401, body = Object), (status = 403, body = Object), (status = 404, body = Object),
        (status = 413, description = "larger than the limit", body = Object),
        (status = 503, description = "the region is suspended or unavailable", body = Object),
    ))]
pub async fn collection_command(
    State(app): State<App>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<CollectionPath>,
    body: Body,
) -> Response {
    let target = Target::Collection {
        keyspace: path.keyspace,
        collection: path.collection,
    };
    data_api::handle(&app, &headers, &path.endpoint, target, body).await
}
