//! Databases over the DevOps API: create (asynchronous provisioning), list, get, terminate,
//! and their datacenters (one per region). Each datacenter is bound, when it is deployed and
//! for good, to the organization's customer key for its (type, provider, region), or to the
//! platform's key where the organization has none.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{SubsecRound, Utc};
use keyplane_core::databases::{check_keyspace, check_name, check_tier};
use keyplane_core::{DatabaseStatus, DbType, Permission, Provider};
use keyplane_store::{Database, DatabaseFilter, Datacenter, JobKind, KeyKind, NewJob};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::regions::check_region;

/// Records a database change in the organization's audit log: success, or the refusal and
/// its reason (a permission refusal as `denied`).
async fn audit<T>(
    state: &AppState,
    caller: &Caller,
    action: keyplane_core::audit::AuditAction,
    target: &str,
    res: &ApiResult<T>,
    detail: &str,
) {
    use crate::audit::{DENIED, FAILURE, SUCCESS, record};
    match res {
        Ok(_) => record(state, caller, action, target, SUCCESS, detail).await,
        Err(e @ ApiError::Forbidden(_)) => {
            record(state, caller, action, target, DENIED, &e.public_message()).await
        }
        Err(e) => record(state, caller, action, target, FAILURE, &e.public_message()).await,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDatabase {
    pub name: String,
    pub keyspace: String,
    /// AWS, GCP or AZURE.
    pub cloud_provider: String,
    pub tier: String,
    #[serde(default = "one")]
    pub capacity_units: i32,
    pub region: String,
    /// "vector" for serverless vector databases; omitted for classic.
    pub db_type: Option<String>,
}

fn one() -> i32 {
    1
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddDatacenter {
    pub tier: String,
    pub cloud_provider: String,
    pub region: String,
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
    pub keyspace: String,
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
    pub status: DatabaseStatus,
    #[schema(value_type = Object)]
    pub storage: serde_json::Value,
    pub available_actions: Vec<&'static str>,
    pub message: String,
    /// The first region's Data API endpoint.
    pub data_endpoint_url: String,
    /// Whether the database is encrypted with customer keys (fixed at creation).
    pub customer_keyed: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub struct ListQuery {
    include: Option<String>,
    provider: Option<String>,
    limit: Option<u32>,
    starting_after: Option<Uuid>,
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn upper(p: Provider) -> String {
    p.as_str().to_ascii_uppercase()
}

pub fn data_endpoint(state: &AppState, db: Uuid, region: &str) -> String {
    format!(
        "{}/db/{db}-{region}",
        state.config.public_url.trim_end_matches('/')
    )
}

fn dc_view(state: &AppState, dc: &Datacenter) -> DatacenterView {
    DatacenterView {
        id: dc.id.clone(),
        name: format!("dc-{}", dc.ordinal),
        tier: dc.tier.clone(),
        status: dc.status,
        cloud_provider: upper(dc.provider),
        region: dc.region.clone(),
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
        },
        data_endpoint_url: data_endpoint(state, dc.database_id, &dc.region),
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
            "getCreds",
        ],
        DatabaseStatus::Terminated | DatabaseStatus::Terminating => vec![],
        _ => vec!["terminate"],
    }
}

async fn view(state: &AppState, db: &Database) -> ApiResult<DatabaseView> {
    let dcs = state.store.list_datacenters(db.id).await?;
    let first_region = dcs.first().map(|d| d.region.clone()).unwrap_or_default();
    Ok(DatabaseView {
        id: db.id,
        org_id: db.org_id,
        owner_id: db.owner.clone(),
        info: DatabaseInfo {
            name: db.name.clone(),
            keyspace: db.keyspace.clone(),
            cloud_provider: upper(db.provider),
            tier: db.tier.clone(),
            capacity_units: db.capacity_units,
            region: first_region.clone(),
            db_type: (db.db_type == DbType::Serverless).then(|| "vector".to_string()),
            datacenters: dcs.iter().map(|d| dc_view(state, d)).collect(),
        },
        creation_time: ts(db.created_at),
        termination_time: db.terminated_at.map(ts),
        status: db.status,
        storage: serde_json::json!({"nodeCount": 3, "replicationFactor": 3, "totalStorage": 20}),
        available_actions: actions(db.status),
        message: db.message.clone(),
        data_endpoint_url: data_endpoint(state, db.id, &first_region),
        customer_keyed: db.customer_keyed,
    })
}

/// Which key a datacenter deployed now in (type, provider, region) is bound to.
async fn bind_key(
    state: &AppState,
    org: Uuid,
    db_type: DbType,
    provider: Provider,
    region: &str,
) -> ApiResult<(KeyKind, String, String)> {
    if let Some(k) = state
        .store
        .get_customer_key(org, db_type, provider, region)
        .await?
    {
        return Ok((KeyKind::Customer, k.key_id, k.provider_account));
    }
    match state.config.platform_key(provider, region) {
        Some(p) => Ok((KeyKind::Platform, p.key_id.clone(), p.account.clone())),
        None => Err(ApiError::Unavailable(format!(
            "the platform has no encryption key for {provider} {region}; contact the platform operator"
        ))),
    }
}

/// A datacenter about to be deployed, bound to `binding` (kind, key, platform account).
fn new_datacenter(
    db: &Database,
    ordinal: i32,
    region: &str,
    binding: (KeyKind, String, String),
) -> Datacenter {
    let (key_kind, key_id, provider_account) = binding;
    let now = Utc::now().trunc_subsecs(3);
    Datacenter {
        id: format!("{}-{ordinal}", db.id),
        database_id: db.id,
        org_id: db.org_id,
        ordinal,
        provider: db.provider,
        region: region.to_string(),
        tier: db.tier.clone(),
        status: DatabaseStatus::Pending,
        message: String::new(),
        key_kind,
        key_id,
        provider_account,
        wrapped_data_key: None,
        kms_failing_since: None,
        created_at: now,
        updated_at: now,
        terminated_at: None,
    }
}

fn provision_job(dc: &Datacenter) -> NewJob {
    NewJob {
        kind: JobKind::ProvisionDatacenter,
        database_id: dc.database_id,
        datacenter_id: Some(dc.id.clone()),
    }
}

fn parse_cloud(s: &str) -> ApiResult<Provider> {
    s.parse::<Provider>()
        .map_err(|e| ApiError::BadRequest(format!("cloudProvider: {e}")))
}

fn db_type_of(tier: &str, db_type: Option<&str>) -> ApiResult<DbType> {
    match (tier.eq_ignore_ascii_case("serverless"), db_type) {
        (true, None | Some("vector")) => Ok(DbType::Serverless),
        (false, None) => Ok(DbType::Classic),
        (_, Some(other)) => Err(ApiError::BadRequest(format!(
            "dbType: {other:?} is not a database type; use \"vector\" (serverless) or omit it"
        ))),
    }
}

fn no_customer_key(db_type: DbType, provider: Provider, region: &str) -> ApiError {
    let route = if db_type == DbType::Classic {
        "/v2/kms/classic"
    } else {
        "/v2/kms"
    };
    ApiError::Unprocessable(format!(
        "this database is encrypted with customer keys, and no {db_type} customer key is registered for \
         {provider} {region}: register one with POST {route} (region {region}), then add the region"
    ))
}

/// Creates a database; provisioning continues in the background (PENDING → INITIALIZING →
/// ACTIVE). The response says which key will encrypt it.
#[utoipa::path(post, path = "/v2/databases", tag = "databases", security(("token" = [])),
    request_body = CreateDatabase,
    responses(
        (status = 201, description = "created; the Location header is its ID", body = DatabaseView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn create_database(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateDatabase>,
) -> ApiResult<(StatusCode, HeaderMap, Json<DatabaseView>)> {
    let name = body.name.clone();
    let place = format!(
        "{} {}",
        body.cloud_provider.to_ascii_lowercase(),
        body.region
    );
    let res = create_database_inner(&state, &caller, body).await;
    let (target, detail) = match &res {
        Ok((_, _, Json(v))) => {
            let enc = v
                .info
                .datacenters
                .first()
                .map(|d| format!("{} key {}", d.encryption.key_type, d.encryption.key_id))
                .unwrap_or_default();
            (v.id.to_string(), format!("{name} in {place}, {enc}"))
        }
        Err(_) => (name.clone(), place),
    };
    audit(
        &state,
        &caller,
        keyplane_core::audit::AuditAction::DbCreate,
        &target,
        &res,
        &detail,
    )
    .await;
    res
}

async fn create_database_inner(
    state: &AppState,
    caller: &Caller,
    body: CreateDatabase,
) -> ApiResult<(StatusCode, HeaderMap, Json<DatabaseView>)> {
    caller.require(Permission::OrgDbCreate)?;
    check_name(&body.name).map_err(ApiError::BadRequest)?;
    check_keyspace(&body.keyspace).map_err(ApiError::BadRequest)?;
    let provider = parse_cloud(&body.cloud_provider)?;
    let db_type = db_type_of(&body.tier, body.db_type.as_deref())?;
    let tier =
        check_tier(db_type, &body.tier, body.capacity_units).map_err(ApiError::BadRequest)?;
    check_region(&state.config, &caller.org, provider, &body.region)?;
    let org = caller.org_id();
    let (key_kind, key_id, account) = bind_key(state, org, db_type, provider, &body.region).await?;
    let now = Utc::now().trunc_subsecs(3);
    let id = Uuid::new_v4();
    let db = Database {
        id,
        org_id: org,
        name: body.name.clone(),
        keyspace: body.keyspace.clone(),
        db_type,
        provider,
        tier: tier.clone(),
        capacity_units: body.capacity_units,
        status: DatabaseStatus::Pending,
        message: String::new(),
        owner: caller.client_id.clone(),
        customer_keyed: key_kind == KeyKind::Customer,
        created_at: now,
        updated_at: now,
        terminated_at: None,
    };
    let dc = new_datacenter(&db, 1, &body.region, (key_kind, key_id, account));
    state
        .store
        .create_database(&db, &dc, &provision_job(&dc))
        .await?;
    let mut headers = HeaderMap::new();
    // The bare ID, as the original's DevOps API answers (clients such as astrapy take the
    // whole header as the new database's ID).
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view(state, &db).await?)))
}

/// Lists the organization's databases (TERMINATED ones with `include=all` or `include=terminated`).
#[utoipa::path(get, path = "/v2/databases", tag = "databases", security(("token" = [])),
    params(
        ("include" = Option<String>, Query, description = "nonterminated (default), all, or terminated"),
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
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<DatabaseView>>> {
    caller.require(Permission::OrgDbView)?;
    let limit = q.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadParameter(
            "limit: must be between 1 and 100".into(),
        ));
    }
    let (include_terminated, only_terminated) =
        match q.include.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("nonterminated") => (false, false),
            Some("all") => (true, false),
            Some("terminated") => (true, true),
            Some(other) => {
                return Err(ApiError::BadParameter(format!(
                    "include: {other:?}; use nonterminated, all or terminated"
                )));
            }
        };
    let provider = match q.provider.as_deref() {
        None => None,
        Some(p) if p.eq_ignore_ascii_case("all") => None,
        Some(p) => Some(
            p.parse::<Provider>()
                .map_err(|e| ApiError::BadParameter(format!("provider: {e}")))?,
        ),
    };
    let filter = DatabaseFilter {
        include_terminated,
        only_terminated,
        provider,
        starting_after: q.starting_after,
        limit,
    };
    let dbs = state.store.list_databases(caller.org_id(), &filter).await?;
    let mut out = Vec::with_capacity(dbs.len());
    for db in &dbs {
        out.push(view(&state, db).await?);
    }
    Ok(Json(out))
}

async fn find(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Database> {
    state
        .store
        .get_database(caller.org_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("database {id} not found")))
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
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DatabaseView>> {
    caller.require(Permission::OrgDbView)?;
    let db = find(&state, &caller, id).await?;
    Ok(Json(view(&state, &db).await?))
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
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let res = terminate_database_inner(&state, &caller, id).await;
    audit(
        &state,
        &caller,
        keyplane_core::audit::AuditAction::DbTerminate,
        &id.to_string(),
        &res,
        "",
    )
    .await;
    res
}

async fn terminate_database_inner(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> ApiResult<StatusCode> {
    caller.require(Permission::OrgDbTerminate)?;
    let db = find(state, caller, id).await?;
    if matches!(
        db.status,
        DatabaseStatus::Terminating | DatabaseStatus::Terminated
    ) {
        return Ok(StatusCode::ACCEPTED);
    }
    let job = NewJob {
        kind: JobKind::TerminateDatabase,
        database_id: id,
        datacenter_id: None,
    };
    state
        .store
        .enqueue_job(&job, Some((id, DatabaseStatus::Terminating)))
        .await?;
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
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<DatacenterView>>> {
    caller.require(Permission::OrgDbView)?;
    let db = find(&state, &caller, id).await?;
    let dcs = state.store.list_datacenters(db.id).await?;
    Ok(Json(dcs.iter().map(|d| dc_view(&state, d)).collect()))
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
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Vec<AddDatacenter>>,
) -> ApiResult<StatusCode> {
    let regions = body
        .iter()
        .map(|a| format!("{} {}", a.cloud_provider.to_ascii_lowercase(), a.region))
        .collect::<Vec<_>>()
        .join(", ");
    let res = add_datacenter_inner(&state, &caller, id, body).await;
    audit(
        &state,
        &caller,
        keyplane_core::audit::AuditAction::DbRegionAdd,
        &id.to_string(),
        &res,
        &regions,
    )
    .await;
    res
}

async fn add_datacenter_inner(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    body: Vec<AddDatacenter>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::OrgDbExpand)?;
    let [add] = body.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "send exactly one datacenter per request (got {})",
            body.len()
        )));
    };
    let db = find(state, caller, id).await?;
    let provider = parse_cloud(&add.cloud_provider)?;
    if provider != db.provider {
        return Err(ApiError::Unprocessable(format!(
            "the database runs on {}; a region of another provider cannot be added",
            upper(db.provider)
        )));
    }
    check_tier(db.db_type, &add.tier, 1).map_err(ApiError::BadRequest)?;
    check_region(&state.config, &caller.org, provider, &add.region)?;
    if db.status != DatabaseStatus::Active {
        return Err(ApiError::Conflict(format!(
            "the database is {}; regions can be added or removed only when it is ACTIVE",
            db.status
        )));
    }
    let dcs = state.store.list_datacenters(id).await?;
    if dcs
        .iter()
        .any(|d| d.terminated_at.is_none() && d.region == add.region)
    {
        return Err(ApiError::Conflict(format!(
            "the database already has a datacenter in {}",
            add.region
        )));
    }
    let (key_kind, key_id, account) = if db.customer_keyed {
        let key = state
            .store
            .get_customer_key(db.org_id, db.db_type, provider, &add.region)
            .await?
            .ok_or_else(|| no_customer_key(db.db_type, provider, &add.region))?;
        (KeyKind::Customer, key.key_id, key.provider_account)
    } else {
        bind_key(state, db.org_id, db.db_type, provider, &add.region).await?
    };
    let ordinal = dcs.iter().map(|d| d.ordinal).max().unwrap_or(0) + 1;
    let dc = new_datacenter(&db, ordinal, &add.region, (key_kind, key_id, account));
    if let keyplane_store::AddRegionOutcome::Refused(why) =
        state.store.add_datacenter(&dc, &provision_job(&dc)).await?
    {
        return Err(ApiError::Conflict(why.to_string()));
    }
    Ok(StatusCode::CREATED)
}

/// Removes one region: its files and data key are deleted.
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
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, dc_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<StatusCode> {
    let res = terminate_datacenter_inner(&state, &caller, id, dc_id.clone()).await;
    audit(
        &state,
        &caller,
        keyplane_core::audit::AuditAction::DbRegionTerminate,
        &format!("{id}/{dc_id}"),
        &res,
        "",
    )
    .await;
    res
}

async fn terminate_datacenter_inner(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    dc_id: String,
) -> ApiResult<StatusCode> {
    caller.require(Permission::OrgDbTerminate)?;
    let db = find(state, caller, id).await?;
    let dcs = state.store.list_datacenters(id).await?;
    let Some(dc) = dcs.iter().find(|d| d.id == dc_id) else {
        return Err(ApiError::NotFound(format!(
            "datacenter {dc_id} not found in database {id}"
        )));
    };
    if dc.terminated_at.is_some() {
        return Ok(StatusCode::ACCEPTED);
    }
    if db.status == DatabaseStatus::Maintenance {
        return Err(ApiError::Conflict(
            "the database is in MAINTENANCE; regions can be added or removed only when it is ACTIVE".into(),
        ));
    }
    if dcs.iter().filter(|d| d.terminated_at.is_none()).count() < 2 {
        return Err(ApiError::Conflict(
            "this is the database's last region; terminate the database instead".into(),
        ));
    }
    let job = NewJob {
        kind: JobKind::TerminateDatacenter,
        database_id: id,
        datacenter_id: Some(dc_id),
    };
    state.store.enqueue_job(&job, None).await?;
    Ok(StatusCode::ACCEPTED)
}
