//! Customer keys: register (with every check before anything is stored), list, get one,
//! its status, a check now, and the policy helper (the statements to paste, and a checker
//! for a whole key policy). Classic and serverless routes share one implementation.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplane_app::App;
use keyplane_app::keys::{KeyRegistration, LiveCheckOutcome, ProposedKey, Registered};
use keyplane_core::policy::CheckReport;
use keyplane_core::{DbType, KeyStatus, Provider};
use keyplane_store::CustomerKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RegionPath, ts};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

#[derive(Deserialize, Serialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderKey {
    /// AWS: the key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID). GCP: projects/P/locations/L/keyRings/R/cryptoKeys/K.
    #[serde(rename = "keyID")]
    pub key_id: String,
    pub region: String,
}

/// One provider object per request, as the original API takes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    #[serde(rename = "orgId")]
    pub org_id: Uuid,
    pub aws: Option<ProviderKey>,
    pub gcp: Option<ProviderKey>,
    pub azure: Option<ProviderKey>,
}

/// A registered key, in the original API's shape.
#[derive(Serialize, Deserialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    #[serde(rename = "orgId")]
    pub org_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<ProviderKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<ProviderKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<ProviderKey>,
}

/// A list item, in the original API's PascalCase.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyListItem {
    #[serde(rename = "OrganizationID")]
    pub organization_id: Uuid,
    #[serde(rename = "CloudProvider")]
    pub cloud_provider: Provider,
    #[serde(rename = "KeyID")]
    pub key_id: String,
    #[serde(rename = "Region")]
    pub region: String,
}

/// What the live check did.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    /// The actions performed successfully, in order.
    pub passed: Vec<String>,
    /// How many KMS calls the check made.
    pub kms_calls: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunResult {
    pub dry_run: bool,
    pub valid: bool,
    pub key: KeyView,
    pub checks: CheckOutcome,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCheck {
    pub at: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatusView {
    pub key: KeyView,
    pub database_type: DbType,
    pub status: KeyStatus,
    /// Why the key is INACCESSIBLE.
    pub reason: Option<String>,
    pub since: String,
    pub last_check: Option<LastCheck>,
    pub registered_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyHelp {
    pub provider_id: String,
    /// The principal the key policy must allow.
    pub principal: String,
    /// The statements to add to the key policy, in order: use of the key, then grants for
    /// persistent resources.
    #[schema(value_type = Vec<Object>)]
    pub statements: Vec<serde_json::Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCheckResult {
    pub verdict: &'static str,
    pub principal: String,
    #[serde(flatten)]
    pub report: CheckReport,
}

#[derive(Deserialize, Default)]
pub struct RegisterQuery {
    #[serde(rename = "dryRun", default)]
    dry_run: bool,
}

#[derive(Deserialize, Default)]
pub struct CheckQuery {
    /// The key the policy is (or will be) attached to; pins the key's account.
    #[serde(rename = "keyID")]
    key_id: Option<String>,
}

fn view(k: &CustomerKey) -> KeyView {
    let pk = Some(ProviderKey {
        key_id: k.key_id.clone(),
        region: k.region.clone(),
    });
    let only = |p: Provider| if k.provider == p { pk.clone() } else { None };
    KeyView {
        org_id: k.org_id,
        aws: only(Provider::Aws),
        gcp: only(Provider::Gcp),
        azure: only(Provider::Azure),
    }
}

fn status_view(k: &CustomerKey) -> KeyStatusView {
    KeyStatusView {
        key: view(k),
        database_type: k.db_type,
        status: k.status,
        reason: k.status_reason.clone(),
        since: ts(k.status_since),
        last_check: k.last_check_at.map(|at| LastCheck {
            at: ts(at),
            ok: k.last_check_ok.unwrap_or(false),
            message: k.last_check_message.clone().unwrap_or_default(),
        }),
        registered_at: ts(k.created_at),
    }
}

fn checks_view(c: LiveCheckOutcome) -> CheckOutcome {
    CheckOutcome {
        passed: c.passed,
        kms_calls: c.kms_calls,
    }
}

/// The request body as the application takes it: the provider objects given, in order.
fn registration(body: RegisterKey, dry_run: bool) -> KeyRegistration {
    let keys = [
        (Provider::Aws, body.aws),
        (Provider::Gcp, body.gcp),
        (Provider::Azure, body.azure),
    ]
    .into_iter()
    .filter_map(|(p, k)| {
        k.map(|k| {
            (
                p,
                ProposedKey {
                    key_id: k.key_id,
                    region: k.region,
                },
            )
        })
    })
    .collect();
    KeyRegistration {
        org_id: body.org_id,
        keys,
        dry_run,
    }
}

async fn register(
    app: App,
    who: keyplane_app::Requester,
    db_type: DbType,
    dry_run: bool,
    body: RegisterKey,
) -> ApiResult<Response> {
    let registered = app
        .keys()
        .register(&who, db_type, &registration(body, dry_run))
        .await?;
    Ok(match registered {
        Registered::Stored(k) | Registered::AlreadyRegistered(k) => {
            (StatusCode::CREATED, Json(view(&k))).into_response()
        }
        Registered::DryRun { key, checks } => (
            StatusCode::OK,
            Json(DryRunResult {
                dry_run: true,
                valid: true,
                key: view(&key),
                checks: checks_view(checks),
            }),
        )
            .into_response(),
    })
}

async fn list(
    app: App,
    who: keyplane_app::Requester,
    db_type: DbType,
) -> ApiResult<Json<Vec<KeyListItem>>> {
    let keys = app.keys().list(&who, db_type).await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyListItem {
                organization_id: k.org_id,
                cloud_provider: k.provider,
                key_id: k.key_id,
                region: k.region,
            })
            .collect(),
    ))
}

macro_rules! key_routes {
    ($db:expr, $prefix:literal, $tag:literal, $register:ident, $list:ident, $get:ident, $status:ident, $check:ident) => {
        /// Registers a customer key after checking, as the platform's role, every action it needs.
        /// `?dryRun=true` runs every check and stores nothing.
        #[utoipa::path(post, path = $prefix, tag = $tag, security(("token" = [])),
            params(("dryRun" = Option<bool>, Query, description = "run every check, store nothing")),
            request_body = RegisterKey,
            responses(
                (status = 201, body = KeyView), (status = 200, body = DryRunResult),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
                (status = 422, body = crate::error::ErrorBody), (status = 501, body = crate::error::ErrorBody),
                (status = 503, body = crate::error::ErrorBody),
            ))]
        pub async fn $register(
            State(app): State<App>,
            Auth(who): Auth,
            ApiQuery(q): ApiQuery<RegisterQuery>,
            ApiJson(body): ApiJson<RegisterKey>,
        ) -> ApiResult<Response> {
            register(app, who, $db, q.dry_run, body).await
        }

        /// Lists the organization's registered keys.
        #[utoipa::path(get, path = $prefix, tag = $tag, security(("token" = [])),
            responses(
                (status = 200, body = Vec<KeyListItem>),
                (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
            ))]
        pub async fn $list(State(app): State<App>, Auth(who): Auth) -> ApiResult<Json<Vec<KeyListItem>>> {
            list(app, who, $db).await
        }

        /// The key registered for a provider and region.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}"), tag = $tag, security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $get(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyView>> {
            Ok(Json(view(&app.keys().get(&who, $db, &path.provider, &path.region).await?)))
        }

        /// The key's status (AVAILABLE, IN_USE, INACCESSIBLE) and its last check.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}/status"), tag = $tag, security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $status(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&app.keys().status(&who, $db, &path.provider, &path.region).await?)))
        }

        /// Checks the key now (as the key health monitor does) and returns its status.
        #[utoipa::path(post, path = concat!($prefix, "/provider/{provider}/region/{region}/check"), tag = $tag,
            security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $check(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&app.keys().check_now(&who, $db, &path.provider, &path.region).await?)))
        }
    };
}

key_routes!(
    DbType::Classic,
    "/v2/kms/classic",
    "customer keys",
    register_classic,
    list_classic,
    get_classic,
    status_classic,
    check_classic
);
key_routes!(
    DbType::Serverless,
    "/v2/kms",
    "customer keys",
    register_serverless,
    list_serverless,
    get_serverless,
    status_serverless,
    check_serverless
);

/// Registers a serverless key (alias of `POST /v2/kms`).
#[utoipa::path(post, path = "/v2/kms/serverless", tag = "customer keys", security(("token" = [])),
    params(("dryRun" = Option<bool>, Query, description = "run every check, store nothing")),
    request_body = RegisterKey,
    responses(
        (status = 201, body = KeyView), (status = 200, body = DryRunResult),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 501, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn register_serverless_alias(
    State(app): State<App>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<RegisterQuery>,
    ApiJson(body): ApiJson<RegisterKey>,
) -> ApiResult<Response> {
    register(app, who, DbType::Serverless, q.dry_run, body).await
}

macro_rules! policy_routes {
    ($db:expr, $prefix:literal, $help:ident, $check:ident) => {
        /// The key-policy statements to paste, with the organization's provider ID filled in.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}/policy"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = PolicyHelp),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 501, body = crate::error::ErrorBody),
            ))]
        pub async fn $help(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<PolicyHelp>> {
            let h = app.keys().policy_help(&who, $db, &path.provider, &path.region).await?;
            Ok(Json(PolicyHelp {
                provider_id: h.provider_id,
                principal: h.principal,
                statements: h.statements,
            }))
        }

        /// Checks a whole key policy document: which actions the platform's role would be denied, and why.
        #[utoipa::path(post, path = concat!($prefix, "/provider/{provider}/region/{region}/policy/check"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path),
                   ("keyID" = Option<String>, Query, description = "the key ARN the policy is for")),
            request_body(content = Object, description = "the key policy document"),
            responses(
                (status = 200, body = PolicyCheckResult),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 501, body = crate::error::ErrorBody),
            ))]
        pub async fn $check(
            State(app): State<App>,
            Auth(who): Auth,
            ApiPath(path): ApiPath<RegionPath>,
            ApiQuery(q): ApiQuery<CheckQuery>,
            ApiJson(doc): ApiJson<serde_json::Value>,
        ) -> ApiResult<Json<PolicyCheckResult>> {
            let r = app
                .keys()
                .policy_check(&who, $db, &path.provider, &path.region, q.key_id.as_deref(), &doc)
                .await?;
            Ok(Json(PolicyCheckResult {
                verdict: if r.report.verdict_ok { "ok" } else { "insufficient" },
                principal: r.principal,
                report: r.report,
            }))
        }
    };
}

policy_routes!(
    DbType::Classic,
    "/v2/kms/classic",
    policy_classic,
    check_policy_classic
);
policy_routes!(
    DbType::Serverless,
    "/v2/kms/serverless",
    policy_serverless,
    check_policy_serverless
);
