//! Databases over the DevOps API: create (asynchronous provisioning), list, get, terminate,
//! their datacenters (one per region) and their keyspaces. The rules (which key a datacenter is bound to,
//! when a region may be added or removed) are the application's; these are its views.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use keyplane_app::App;
use keyplane_app::databases::{DatabaseDetail, DatabaseQuery, NewDatabase, NewRegion};
use keyplane_core::databases::DEFAULT_KEYSPACE;
use keyplane_core::regions::region_info;
use keyplane_core::{DatabaseStatus, DbType, Provider};
use keyplane_store::{Datacenter, KeyKind};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ts;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

/// A creation request as the original's `DatabaseInfoCreate` (and the fields its clients
/// send) spells it. Fields keyplane has no use for are accepted and ignored; a field of no
/// such spec is refused, naming it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDatabase {
    pub name: String,
    /// The initial keyspace; `default_keyspace` when absent, as the original names it.
    #[serde(default)]
    pub keyspace: Option<String>,
    /// AWS, GCP or AZURE (any case).
    pub cloud_provider: String,
    /// C10, C20, C40, D10, D20, D40 (classic) or serverless.
    pub tier: String,
    /// 1 to 12 for classic tiers; 1 for serverless (the default).
    #[serde(default = "one")]
    pub capacity_units: i32,
    pub region: String,
    /// "vector" for serverless vector databases; omitted for classic.
    pub db_type: Option<String>,
    /// Accepted and ignored: keyplane has no PCU groups.
    #[serde(default, rename = "pcuGroupUUID")]
    #[schema(value_type = Option<String>)]
    pub pcu_group_uuid: Option<IgnoredAny>,
    /// Accepted and ignored (older clients send it): data access uses application tokens.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub user: Option<IgnoredAny>,
    /// Accepted and ignored, never stored or logged (older clients send it).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<IgnoredAny>,
}

fn one() -> i32 {
    1
}

/// A region to add, as the original's `Datacenter` spells it (the terraform provider sends
/// `"status": ""` with it). Only tier, cloudProvider and region are used; the spec's other
/// fields are accepted and ignored, an unknown one is refused, naming it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddDatacenter {
    pub tier: String,
    pub cloud_provider: String,
    pub region: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub status: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<i32>)]
    pub capacity_units: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub id: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub region_zone: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub region_classification: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub grafana_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub cqlsh_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub graphql_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub data_endpoint_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub studio_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secure_bundle_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secure_bundle_internal_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secure_bundle_migration_proxy_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secure_bundle_migration_proxy_internal_url: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub streaming_tenant: Option<IgnoredAny>,
    #[serde(default, rename = "pcuGroupUUID")]
    #[schema(value_type = Option<String>)]
    pub pcu_group_uuid: Option<IgnoredAny>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// "customer" or "platform-managed".
    pub key_type: &'static str,
    /// The key ARN, or "platform-managed".
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// ACTIVE, SUSPENDED, … as the datacenter.
    pub state: DatabaseStatus,
    /// When the datacenter's data key was last rotated; null while it is the one it was
    /// deployed with.
    pub data_key_rotated_at: Option<String>,
    /// Present while its data key is being rotated.
    pub data_key_rotation: Option<DataKeyRotationView>,
}

/// A data-key rotation under way.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyRotationView {
    /// When it started; null when another process runs it.
    pub started_at: Option<String>,
    /// Share of the file re-encrypted so far (0 to 100); null when another process runs it.
    pub percent: Option<u8>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatacenterView {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub status: DatabaseStatus,
    pub cloud_provider: String,
    pub region: String,
    /// na, emea, apac or sa.
    pub region_zone: &'static str,
    pub message: String,
    pub encryption: Encryption,
    /// The Data API endpoint of this region.
    pub data_endpoint_url: String,
    pub date_created: String,
    pub termination_time: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseInfo {
    pub name: String,
    /// The initial keyspace.
    pub keyspace: String,
    /// Every keyspace, the initial one first.
    pub keyspaces: Vec<String>,
    /// The keyspaces beyond the initial one (what the terraform provider lists with it).
    pub additional_keyspaces: Vec<String>,
    pub cloud_provider: String,
    pub tier: String,
    pub capacity_units: i32,
    pub region: String,
    pub db_type: Option<String>,
    pub datacenters: Vec<DatacenterView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub owner_id: String,
    pub info: DatabaseInfo,
    pub creation_time: String,
    pub termination_time: Option<String>,
    /// When its data was last read or written, to within a minute; its creation time until
    /// then.
    pub last_usage_time: String,
    pub status: DatabaseStatus,
    pub storage: Storage,
    pub available_actions: Vec<&'static str>,
    pub message: String,
    /// The first region's Data API endpoint.
    pub data_endpoint_url: String,
    /// Whether the database is encrypted with customer keys (fixed at creation).
    pub customer_keyed: bool,
}

/// The storage figures of the original's shape; keyplane's are nominal.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    pub node_count: i32,
    pub replication_factor: i32,
    /// GB.
    pub total_storage: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub struct ListQuery {
    include: Option<String>,
    provider: Option<String>,
    limit: Option<u32>,
    starting_after: Option<Uuid>,
}

fn upper(p: Provider) -> String {
    p.as_str().to_ascii_uppercase()
}

pub fn dc_view(app: &App, dc: &Datacenter) -> DatacenterView {
    let config = &app.config;
    let rotation = app.data.rotating(dc).then(|| {
        let progress = app.data.rotation_progress(&dc.id);
        DataKeyRotationView {
            started_at: progress.as_ref().map(|p| ts(p.started_at)),
            percent: progress.as_ref().map(|p| p.percent),
        }
    });
    DatacenterView {
        id: dc.id.clone(),
        name: format!("dc-{}", dc.ordinal),
        tier: dc.tier.clone(),
        status: dc.status,
        cloud_provider: upper(dc.provider),
        region: dc.region.clone(),
        region_zone: region_info(dc.provider, &dc.region).zone.as_str(),
        message: dc.message.clone(),
        encryption: Encryption {
            key_type: match dc.key_kind {
                KeyKind::Customer => "customer",
                KeyKind::Platform => "platform-managed",
            },
            key_id: match dc.key_kind {
                KeyKind::Customer => dc.key_id.clone(),
                KeyKind::Platform => "platform-managed".to_string(),
            },
            state: dc.status,
            data_key_rotated_at: dc.data_key_rotated_at.map(ts),
            data_key_rotation: rotation,
        },
        data_endpoint_url: config.data_endpoint(dc.database_id, &dc.region),
        date_created: ts(dc.created_at),
        termination_time: dc.terminated_at.map(ts),
    }
}

fn actions(status: DatabaseStatus) -> Vec<&'static str> {
    match status {
        DatabaseStatus::Active => vec![
            "terminate",
            "addDatacenters",
            "terminateDatacenter",
            "addKeyspace",
            "removeKeyspace",
            "getCreds",
        ],
        DatabaseStatus::Terminated | DatabaseStatus::Terminating => vec![],
        _ => vec!["terminate"],
    }
}

pub fn view(app: &App, d: &DatabaseDetail) -> DatabaseView {
    let db = &d.database;
    let first_region = d
        .datacenters
        .first()
        .map(|d| d.region.clone())
        .unwrap_or_default();
    DatabaseView {
        id: db.id,
        org_id: db.org_id,
        owner_id: db.owner.clone(),
        info: DatabaseInfo {
            name: db.name.clone(),
            keyspace: db.keyspace.clone(),
            keyspaces: d.keyspaces.clone(),
            additional_keyspaces: d.keyspaces.iter().skip(1).cloned().collect(),
            cloud_provider: upper(db.provider),
            tier: db.tier.clone(),
            capacity_units: db.capacity_units,
            region: first_region.clone(),
            db_type: (db.db_type == DbType::Serverless).then(|| "vector".to_string()),
            datacenters: d.datacenters.iter().map(|dc| dc_view(app, dc)).collect(),
        },
        creation_time: ts(db.created_at),
        termination_time: db.terminated_at.map(ts),
        last_usage_time: ts(db.last_used_at.unwrap_or(db.created_at)),
        status: db.status,
        storage: Storage {
            node_count: 3,
            replication_factor: 3,
            total_storage: 20,
        },
        available_actions: actions(db.status),
        message: db.message.clone(),
        data_endpoint_url: app.config.data_endpoint(db.id, &first_region),
        customer_keyed: db.customer_keyed,
    }
}

/// Creates a database; provisioning continues in the background (PENDING → INITIALIZING →
/// ACTIVE). The response says which key will encrypt it.
#[utoipa::path(post, path = "/v2/databases", tag = "databases", security(("token" = [])),
    request_body = CreateDatabase,
    responses(
        (status = 201, description = "created; the Location header is its ID", body = DatabaseView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "the organization's database or datacenter quota is reached", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn create_database(
    State(app): State<App>,
    Auth(who): Auth,
    ApiJson(body): ApiJson<CreateDatabase>,
) -> ApiResult<(StatusCode, HeaderMap, Json<DatabaseView>)> {
    let req = NewDatabase {
        name: body.name,
        keyspace: body
            .keyspace
            .unwrap_or_else(|| DEFAULT_KEYSPACE.to_string()),
        cloud_provider: body.cloud_provider,
        tier: body.tier,
        capacity_units: body.capacity_units,
        region: body.region,
        db_type: body.db_type,
    };
    let created = app.databases().create(&who, &req).await?;
    let mut headers = HeaderMap::new();
    // The bare ID, as the original's DevOps API answers (clients such as astrapy take the
    // whole header as the new database's ID).
    if let Ok(v) = HeaderValue::from_str(&created.database.id.to_string()) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view(&app, &created))))
}

/// Lists the organization's databases (TERMINATED ones with `include=all` or `include=terminated`).
#[utoipa::path(get, path = "/v2/databases", tag = "databases", security(("token" = [])),
    params(
        ("include" = Option<String>, Query, description = "nonterminated (default), all, terminated, or one status in lower case (active, pending, …; suspending matches none)"),
        ("provider" = Option<String>, Query, description = "ALL, AWS, GCP or AZURE"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 25"),
        ("starting_after" = Option<Uuid>, Query, description = "the last database ID of the previous page"),
    ),
    responses(
        (status = 200, body = Vec<DatabaseView>),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn list_databases(
    State(app): State<App>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<DatabaseView>>> {
    let q = DatabaseQuery {
        include: q.include,
        provider: q.provider,
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let dbs = app.databases().list(&who, &q).await?;
    Ok(Json(dbs.iter().map(|d| view(&app, d)).collect()))
}

/// One database, with each datacenter's key (customer key ARN or platform-managed) and state.
#[utoipa::path(get, path = "/v2/databases/{id}", tag = "databases", security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = DatabaseView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn get_database(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DatabaseView>> {
    let d = app.databases().get(&who, id).await?;
    Ok(Json(view(&app, &d)))
}

/// Terminates a database: TERMINATING, then TERMINATED; its files and keys are forgotten.
#[utoipa::path(post, path = "/v2/databases/{id}/terminate", tag = "databases", security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 202),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ))]
pub async fn terminate_database(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    app.databases().terminate(&who, id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The database's datacenters, one per region.
#[utoipa::path(get, path = "/v2/databases/{id}/datacenters", tag = "databases", security(("token" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Vec<DatacenterView>),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn list_datacenters(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<DatacenterView>>> {
    let dcs = app.databases().datacenters(&who, id).await?;
    Ok(Json(dcs.iter().map(|d| dc_view(&app, d)).collect()))
}

/// Adds one region. A customer-keyed database needs a customer key registered there first.
#[utoipa::path(post, path = "/v2/databases/{id}/datacenters", tag = "databases", security(("token" = [])),
    params(("id" = Uuid, Path)),
    request_body = Vec<AddDatacenter>,
    responses(
        (status = 201),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
    ))]
pub async fn add_datacenter(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Vec<AddDatacenter>>,
) -> ApiResult<StatusCode> {
    let req: Vec<NewRegion> = body
        .into_iter()
        .map(|a| NewRegion {
            tier: a.tier,
            cloud_provider: a.cloud_provider,
            region: a.region,
        })
        .collect();
    app.databases().add_region(&who, id, &req).await?;
    Ok(StatusCode::CREATED)
}

/// Removes one region: the database is in MAINTENANCE while its files and data key are
/// deleted. Refused for the last region and during another region change.
#[utoipa::path(post, path = "/v2/databases/{id}/datacenters/{datacenterId}/terminate", tag = "databases",
    security(("token" = [])),
    params(("id" = Uuid, Path), ("datacenterId" = String, Path)),
    responses(
        (status = 202),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ))]
pub async fn terminate_datacenter(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath((id, dc_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<StatusCode> {
    app.databases()
        .terminate_datacenter(&who, id, &dc_id)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Moves the datacenter's data key to the key now registered for its region (after a
/// replacement): the data key is re-encrypted under the new key, proven to unwrap to the same
/// key, and only then recorded, so the datacenter is readable at every moment. A datacenter
/// already under the region's key is answered as it is.
#[utoipa::path(post, path = "/v2/databases/{id}/datacenters/{datacenterId}/rewrap", tag = "databases",
    security(("token" = [])),
    params(("id" = Uuid, Path), ("datacenterId" = String, Path)),
    responses(
        (status = 200, body = DatacenterView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn rewrap_datacenter(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath((id, dc_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<DatacenterView>> {
    let dc = app.keys().rewrap(&who, id, &dc_id).await?;
    Ok(Json(dc_view(&app, &dc)))
}

/// A data-key rotation, as answered.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedDataKeyView {
    pub datacenter: DatacenterView,
    /// Bytes of the file re-encrypted under the new data key.
    pub bytes: u64,
    /// From the request until the new key was in use, in milliseconds.
    pub took_ms: u64,
    /// How long the database's writes waited (the copy and the swap), in milliseconds.
    pub writes_paused_ms: u64,
    /// How long new reads of the datacenter waited (the swap), in milliseconds.
    pub reads_paused_ms: u64,
}

/// Rotates the datacenter's data key now (the schedule does it every 30 days by default):
/// a new data key is made under the datacenter's key and its file re-encrypted under it,
/// online. Reads go on meanwhile; writes to the database wait for the copy (the answer says
/// how long). A crash at any point leaves the file readable under exactly one of the two
/// data keys.
#[utoipa::path(post, path = "/v2/databases/{id}/datacenters/{datacenterId}/rotate-data-key", tag = "databases",
    security(("token" = [])),
    params(("id" = Uuid, Path), ("datacenterId" = String, Path)),
    responses(
        (status = 200, body = RotatedDataKeyView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn rotate_data_key(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath((id, dc_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<RotatedDataKeyView>> {
    let (dc, r) = app.data_keys().rotate(&who, id, &dc_id).await?;
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(Json(RotatedDataKeyView {
        datacenter: dc_view(&app, &dc),
        bytes: r.bytes,
        took_ms: ms(r.took),
        writes_paused_ms: ms(r.writes_paused),
        reads_paused_ms: ms(r.reads_paused),
    }))
}

#[derive(Deserialize)]
pub struct KeyspacePath {
    id: Uuid,
    #[serde(rename = "keyspaceName")]
    keyspace: String,
}

/// Adds a keyspace to the database, in every region (while it is ACTIVE). Adding one it has
/// already succeeds, as the original does.
#[utoipa::path(post, path = "/v2/databases/{id}/keyspaces/{keyspaceName}", tag = "databases",
    security(("token" = [])),
    params(("id" = Uuid, Path),
           ("keyspaceName" = String, Path, description = "a letter, then up to 47 letters, digits or '_'; not dse or system")),
    responses(
        (status = 201, description = "created (or there already)"),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "the database is not ACTIVE", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn add_keyspace(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<KeyspacePath>,
) -> ApiResult<StatusCode> {
    app.keyspaces()
        .create(&who, path.id, &path.keyspace)
        .await?;
    Ok(StatusCode::CREATED)
}

/// Removes a keyspace and every collection in it, in every region (while the database is
/// ACTIVE). The initial keyspace cannot be removed.
#[utoipa::path(delete, path = "/v2/databases/{id}/keyspaces/{keyspaceName}", tag = "databases",
    security(("token" = [])),
    params(("id" = Uuid, Path), ("keyspaceName" = String, Path)),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "a malformed name, or the initial keyspace", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "no such database or keyspace", body = crate::error::ErrorBody),
        (status = 409, description = "the database is not ACTIVE", body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn remove_keyspace(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(path): ApiPath<KeyspacePath>,
) -> ApiResult<StatusCode> {
    app.keyspaces().drop(&who, path.id, &path.keyspace).await?;
    Ok(StatusCode::NO_CONTENT)
}
