//! Customer keys: register (with every check before anything is stored), list, get one,
//! its status, and the policy helper (the statements to paste, and a checker for a whole
//! key policy). Classic and serverless routes share one implementation.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SubsecRound, Utc};
use keyplane_core::policy::{
    CheckReport, KeyPolicy, check_policy, platform_requirements, recommended_statements,
};
use keyplane_core::{AwsKeyArn, DbType, KeyStatus, Permission, Provider};
use keyplane_store::CustomerKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::{self, DENIED, FAILURE, SUCCESS};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::regions::{check_region, parse_provider};
use crate::registration::{
    CheckOutcome, live_check_aws, platform_identity, unsupported_type_message,
};
use keyplane_core::audit::AuditAction;

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
    pub(crate) key_id: Option<String>,
}

#[derive(Deserialize)]
pub struct RegionPath {
    pub(crate) provider: String,
    pub(crate) region: String,
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn view(k: &CustomerKey) -> KeyView {
    let pk = Some(ProviderKey {
        key_id: k.key_id.clone(),
        region: k.region.clone(),
    });
    KeyView {
        org_id: k.org_id,
        aws: if k.provider == Provider::Aws {
            pk.clone()
        } else {
            None
        },
        gcp: if k.provider == Provider::Gcp {
            pk.clone()
        } else {
            None
        },
        azure: if k.provider == Provider::Azure {
            pk
        } else {
            None
        },
    }
}

fn target(db_type: DbType, provider: Provider, region: &str, key: &str) -> String {
    format!("{db_type}/{provider}/{region} {key}")
        .trim_end()
        .to_string()
}

/// Checks the permission and records a refusal in the audit log.
async fn require(
    state: &AppState,
    caller: &Caller,
    p: Permission,
    action: AuditAction,
    target: &str,
) -> ApiResult<()> {
    if let Err(e) = caller.require(p) {
        audit::record(state, caller, action, target, DENIED, &e.to_string()).await;
        return Err(e);
    }
    Ok(())
}

fn region_error(e: ApiError) -> ApiError {
    match e {
        ApiError::RegionUnavailable(m) => ApiError::Unprocessable(m),
        other => other,
    }
}

/// Everything before the live check: shape, organization, type/provider, region, ARN.
fn validate(
    caller: &Caller,
    state: &AppState,
    db_type: DbType,
    body: &RegisterKey,
) -> ApiResult<(Provider, ProviderKey)> {
    if body.org_id != caller.org_id() {
        return Err(ApiError::OtherOrganization(format!(
            "orgId {} is not the organization of your token ({}); register keys for your own organization",
            body.org_id,
            caller.org_id()
        )));
    }
    let given: Vec<(Provider, &ProviderKey)> = [
        (Provider::Aws, body.aws.as_ref()),
        (Provider::Gcp, body.gcp.as_ref()),
        (Provider::Azure, body.azure.as_ref()),
    ]
    .into_iter()
    .filter_map(|(p, k)| k.map(|k| (p, k)))
    .collect();
    let [(provider, key)] = given.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "give exactly one provider object (\"aws\", \"gcp\" or \"azure\"); this request has {}",
            given.len()
        )));
    };
    let (provider, key) = (*provider, (*key).clone());
    if key.key_id.trim().is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{provider}.keyID: give the key's ID (for AWS, its ARN)"
        )));
    }
    if !provider.supports(db_type) {
        return Err(ApiError::Unprocessable(unsupported_type_message(
            provider, db_type,
        )));
    }
    check_region(&state.config, &caller.org, provider, &key.region).map_err(region_error)?;
    if provider != Provider::Aws {
        return Err(ApiError::NotImplemented(format!(
            "{provider} customer keys are not supported yet: keyplane cannot check a {provider} key, so it does not \
             accept one. Use an AWS KMS key, or wait for the {provider} adapter"
        )));
    }
    let arn: AwsKeyArn = key
        .key_id
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("aws.keyID: {e}")))?;
    if arn.region != key.region {
        return Err(ApiError::Unprocessable(format!(
            "the key ARN is in region {} but the request registers it for {}: a key must be in the region of the \
             databases it encrypts. Create a key in {} and register that one",
            arn.region, key.region, key.region
        )));
    }
    Ok((
        provider,
        ProviderKey {
            key_id: arn.to_string(),
            region: key.region,
        },
    ))
}

async fn register(
    state: AppState,
    caller: Caller,
    db_type: DbType,
    dry_run: bool,
    body: RegisterKey,
) -> ApiResult<Response> {
    let action = if dry_run {
        AuditAction::CmkRegisterDryRun
    } else {
        AuditAction::CmkRegister
    };
    let raw_target = [&body.aws, &body.gcp, &body.azure]
        .iter()
        .find_map(|k| {
            k.as_ref()
                .map(|k| format!("{db_type} {} {}", k.region, k.key_id))
        })
        .unwrap_or_else(|| db_type.to_string());
    require(
        &state,
        &caller,
        Permission::OrgCmkWrite,
        action,
        &raw_target,
    )
    .await?;
    let result = register_checked(&state, &caller, db_type, dry_run, body).await;
    match &result {
        Ok((t, _)) => audit::record(&state, &caller, action, t, SUCCESS, "").await,
        Err(e) => {
            audit::record(
                &state,
                &caller,
                action,
                &raw_target,
                FAILURE,
                &e.public_message(),
            )
            .await
        }
    }
    result.map(|(_, r)| r)
}

async fn register_checked(
    state: &AppState,
    caller: &Caller,
    db_type: DbType,
    dry_run: bool,
    body: RegisterKey,
) -> ApiResult<(String, Response)> {
    let (provider, key) = validate(caller, state, db_type, &body)?;
    let org = caller.org_id();
    let tgt = target(db_type, provider, &key.region, &key.key_id);

    if let Some(existing) = state
        .store
        .get_customer_key(org, db_type, provider, &key.region)
        .await?
    {
        return if existing.key_id == key.key_id {
            // Idempotent: the same registration answers the same.
            Ok((
                tgt,
                (StatusCode::CREATED, Json(view(&existing))).into_response(),
            ))
        } else {
            Err(conflict(&existing))
        };
    }

    let arn: AwsKeyArn = key
        .key_id
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("aws.keyID: {e}")))?;
    let identity = platform_identity(state, org, provider, &key.region).await?;
    let checks = live_check_aws(state, &identity, org, &arn).await?;
    let now = Utc::now().trunc_subsecs(3);
    let record = CustomerKey {
        org_id: org,
        db_type,
        provider,
        region: key.region.clone(),
        key_id: key.key_id.clone(),
        provider_account: identity.account_id.clone(),
        created_at: now,
        created_by: caller.client_id.clone(),
        status: KeyStatus::Available,
        status_reason: None,
        status_since: now,
        last_check_at: Some(now),
        last_check_ok: Some(true),
        last_check_message: Some(format!(
            "registration check passed: {} ({} KMS calls)",
            checks.passed.join(", "),
            checks.kms_calls
        )),
    };
    if dry_run {
        return Ok((
            tgt,
            (
                StatusCode::OK,
                Json(DryRunResult {
                    dry_run: true,
                    valid: true,
                    key: view(&record),
                    checks,
                }),
            )
                .into_response(),
        ));
    }
    match state.store.insert_customer_key(&record).await? {
        None => Ok((
            tgt,
            (StatusCode::CREATED, Json(view(&record))).into_response(),
        )),
        // Another request registered a key for the same slot while we were checking.
        Some(existing) if existing.key_id == record.key_id => Ok((
            tgt,
            (StatusCode::CREATED, Json(view(&existing))).into_response(),
        )),
        Some(existing) => Err(conflict(&existing)),
    }
}

fn conflict(existing: &CustomerKey) -> ApiError {
    ApiError::Conflict(format!(
        "a {} key is already registered for {} {}: {}. Keys cannot be replaced or removed through the API, because \
         databases may already be encrypted under it; contact support to change it",
        existing.db_type, existing.provider, existing.region, existing.key_id
    ))
}

async fn list(
    state: AppState,
    caller: Caller,
    db_type: DbType,
) -> ApiResult<Json<Vec<KeyListItem>>> {
    let action = AuditAction::CmkList;
    require(
        &state,
        &caller,
        Permission::OrgCmkRead,
        action,
        db_type.as_str(),
    )
    .await?;
    let keys = state
        .store
        .list_customer_keys(caller.org_id(), Some(db_type))
        .await?;
    audit::record(
        &state,
        &caller,
        action,
        db_type.as_str(),
        SUCCESS,
        &format!("{} keys", keys.len()),
    )
    .await;
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

async fn find(
    state: &AppState,
    caller: &Caller,
    db_type: DbType,
    path: &RegionPath,
    action: AuditAction,
) -> ApiResult<CustomerKey> {
    let tgt = format!("{db_type}/{}/{}", path.provider, path.region);
    require(state, caller, Permission::OrgCmkRead, action, &tgt).await?;
    let provider = parse_provider(&path.provider)?;
    check_region(&state.config, &caller.org, provider, &path.region)?;
    let found = state
        .store
        .get_customer_key(caller.org_id(), db_type, provider, &path.region)
        .await?;
    match found {
        Some(k) => {
            audit::record(state, caller, action, &tgt, SUCCESS, "").await;
            Ok(k)
        }
        None => {
            let route = if db_type == DbType::Classic {
                "/v2/kms/classic"
            } else {
                "/v2/kms"
            };
            audit::record(state, caller, action, &tgt, FAILURE, "not registered").await;
            Err(ApiError::NotFound(format!(
                "no {db_type} customer key is registered for {provider} {}; register one with POST {route}",
                path.region
            )))
        }
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

async fn policy_help(
    state: &AppState,
    caller: &Caller,
    db_type: DbType,
    path: &RegionPath,
) -> ApiResult<PolicyHelp> {
    let tgt = format!("{db_type}/{}/{}", path.provider, path.region);
    require(
        state,
        caller,
        Permission::OrgCmkRead,
        AuditAction::CmkPolicy,
        &tgt,
    )
    .await?;
    let provider = parse_provider(&path.provider)?;
    check_region(&state.config, &caller.org, provider, &path.region)?;
    if provider != Provider::Aws {
        return Err(ApiError::NotImplemented(format!(
            "the policy helper covers AWS key policies only; {provider} keys are not supported yet"
        )));
    }
    let identity = platform_identity(state, caller.org_id(), provider, &path.region).await?;
    audit::record(state, caller, AuditAction::CmkPolicy, &tgt, SUCCESS, "").await;
    Ok(PolicyHelp {
        provider_id: identity.account_id.clone(),
        statements: recommended_statements(&identity.principal),
        principal: identity.principal,
    })
}

/// The account a policy's key lives in: from the key ARN when given, else the account
/// whose root the policy trusts (AWS's default statement), else unknown.
fn key_account_of(policy: &KeyPolicy, key_arn: Option<&AwsKeyArn>) -> String {
    if let Some(arn) = key_arn {
        return arn.account.clone();
    }
    for st in &policy.statements {
        for entry in &st.principal.entries {
            if let keyplane_core::policy::PrincipalEntry::Aws(p) = entry
                && let Some(acct) = p
                    .strip_prefix("arn:aws:iam::")
                    .and_then(|r| r.strip_suffix(":root"))
            {
                return acct.to_string();
            }
        }
    }
    "000000000000".to_string()
}

pub(crate) async fn policy_check(
    state: &AppState,
    caller: &Caller,
    db_type: DbType,
    path: &RegionPath,
    query: &CheckQuery,
    doc: serde_json::Value,
) -> ApiResult<PolicyCheckResult> {
    let tgt = format!("{db_type}/{}/{}", path.provider, path.region);
    require(
        state,
        caller,
        Permission::OrgCmkRead,
        AuditAction::CmkPolicyCheck,
        &tgt,
    )
    .await?;
    let provider = parse_provider(&path.provider)?;
    check_region(&state.config, &caller.org, provider, &path.region)?;
    if provider != Provider::Aws {
        return Err(ApiError::NotImplemented(format!(
            "the policy checker covers AWS key policies only; {provider} keys are not supported yet"
        )));
    }
    let key_arn = match &query.key_id {
        Some(k) => Some(
            k.parse::<AwsKeyArn>()
                .map_err(|e| ApiError::BadParameter(format!("keyID: {e}")))?,
        ),
        None => None,
    };
    let text = serde_json::to_string(&doc).map_err(ApiError::internal)?;
    let policy = KeyPolicy::parse(&text)
        .map_err(|e| ApiError::BadRequest(format!("the key policy is malformed: {e}")))?;
    let identity = platform_identity(state, caller.org_id(), provider, &path.region).await?;
    let account = key_account_of(&policy, key_arn.as_ref());
    let arn = key_arn.map(|a| a.to_string()).unwrap_or_else(|| {
        format!(
            "arn:aws:kms:{}:{account}:key/00000000-0000-0000-0000-000000000000",
            path.region
        )
    });
    let reqs = platform_requirements(&caller.org_id().to_string());
    let report = check_policy(&policy, &identity.principal, &account, &arn, &reqs);
    let verdict = if report.verdict_ok {
        "ok"
    } else {
        "insufficient"
    };
    let reason = report
        .findings
        .iter()
        .map(|f| f.action.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    audit::record(
        state,
        caller,
        AuditAction::CmkPolicyCheck,
        &tgt,
        if report.verdict_ok { SUCCESS } else { FAILURE },
        &reason,
    )
    .await;
    Ok(PolicyCheckResult {
        verdict,
        principal: identity.principal,
        report,
    })
}

macro_rules! key_routes {
    ($db:expr, $prefix:literal, $tag:literal, $register:ident, $list:ident, $get:ident, $status:ident) => {
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
            State(state): State<AppState>,
            caller: Caller,
            ApiQuery(q): ApiQuery<RegisterQuery>,
            ApiJson(body): ApiJson<RegisterKey>,
        ) -> ApiResult<Response> {
            register(state, caller, $db, q.dry_run, body).await
        }

        /// Lists the organization's registered keys.
        #[utoipa::path(get, path = $prefix, tag = $tag, security(("token" = [])),
            responses(
                (status = 200, body = Vec<KeyListItem>),
                (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
            ))]
        pub async fn $list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<KeyListItem>>> {
            list(state, caller, $db).await
        }

        /// The key registered for a provider and region.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}"), tag = $tag, security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $get(State(state): State<AppState>, caller: Caller, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyView>> {
            Ok(Json(view(&find(&state, &caller, $db, &path, AuditAction::CmkGet).await?)))
        }

        /// The key's status (AVAILABLE, IN_USE, INACCESSIBLE) and its last check.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}/status"), tag = $tag, security(("token" = [])),
            params(("provider" = String, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $status(State(state): State<AppState>, caller: Caller, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&find(&state, &caller, $db, &path, AuditAction::CmkStatus).await?)))
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
    status_classic
);
key_routes!(
    DbType::Serverless,
    "/v2/kms",
    "customer keys",
    register_serverless,
    list_serverless,
    get_serverless,
    status_serverless
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
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RegisterQuery>,
    ApiJson(body): ApiJson<RegisterKey>,
) -> ApiResult<Response> {
    register(state, caller, DbType::Serverless, q.dry_run, body).await
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
        pub async fn $help(State(state): State<AppState>, caller: Caller, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<PolicyHelp>> {
            Ok(Json(policy_help(&state, &caller, $db, &path).await?))
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
            State(state): State<AppState>,
            caller: Caller,
            ApiPath(path): ApiPath<RegionPath>,
            ApiQuery(q): ApiQuery<CheckQuery>,
            ApiJson(doc): ApiJson<serde_json::Value>,
        ) -> ApiResult<Json<PolicyCheckResult>> {
            Ok(Json(policy_check(&state, &caller, $db, &path, &q, doc).await?))
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

async fn check_now(
    state: &AppState,
    caller: &Caller,
    db_type: DbType,
    path: &RegionPath,
) -> ApiResult<KeyStatusView> {
    let tgt = format!("{db_type}/{}/{}", path.provider, path.region);
    require(
        state,
        caller,
        Permission::OrgCmkWrite,
        AuditAction::CmkCheck,
        &tgt,
    )
    .await?;
    let key = find(state, caller, db_type, path, AuditAction::CmkCheck).await?;
    let mine = state
        .store
        .live_datacenters_of_key(key.org_id, &key.key_id, &key.region)
        .await?;
    crate::monitor::check_datacenters(state, &mine)
        .await
        .map_err(ApiError::internal)?;
    if mine.is_empty() {
        // No database uses it yet: check the key itself as the platform.
        let identity = platform_identity(state, key.org_id, key.provider, &key.region).await?;
        let now = Utc::now();
        let result = match state.kms.connect(&identity) {
            Ok(kms) => kms.describe_key(&key.key_id).await.map(|d| d.state),
            Err(e) => Err(e),
        };
        let (ok, message) = match result {
            Ok(keyplane_kms::KeyState::Enabled) => (true, "the key is usable".to_string()),
            Ok(other) => (false, format!("the key is {other:?}")),
            Err(e) => (
                false,
                crate::lifecycle::key_problem(&e.kind, &key.key_id, &e.message),
            ),
        };
        let (status, reason) = if ok {
            (KeyStatus::Available, None)
        } else {
            (KeyStatus::Inaccessible, Some(message.clone()))
        };
        state
            .store
            .update_customer_key_status(
                key.org_id,
                key.db_type,
                key.provider,
                &key.region,
                &keyplane_store::KeyStatusUpdate {
                    status,
                    status_reason: reason,
                    checked_at: now,
                    check_ok: ok,
                    check_message: message,
                },
            )
            .await?;
    }
    let fresh = state
        .store
        .get_customer_key(key.org_id, key.db_type, key.provider, &key.region)
        .await?
        .unwrap_or(key);
    Ok(status_view(&fresh))
}

/// Checks the key now (as the key health monitor does) and returns its status.
#[utoipa::path(post, path = "/v2/kms/classic/provider/{provider}/region/{region}/check", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = String, Path), ("region" = String, Path)),
    responses(
        (status = 200, body = KeyStatusView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn check_classic(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<KeyStatusView>> {
    Ok(Json(
        check_now(&state, &caller, DbType::Classic, &path).await?,
    ))
}

/// Checks the serverless key now and returns its status.
#[utoipa::path(post, path = "/v2/kms/provider/{provider}/region/{region}/check", tag = "customer keys",
    security(("token" = [])),
    params(("provider" = String, Path), ("region" = String, Path)),
    responses(
        (status = 200, body = KeyStatusView),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn check_serverless(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<RegionPath>,
) -> ApiResult<Json<KeyStatusView>> {
    Ok(Json(
        check_now(&state, &caller, DbType::Serverless, &path).await?,
    ))
}
