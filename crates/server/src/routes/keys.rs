//! Customer keys: register (with every check before anything is stored), list, get one,
//! its status, a check now, and the policy helper (the statements to paste, and a checker
//! for a whole key policy). Classic and serverless routes share one implementation.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplane_app::App;
use keyplane_app::keys::policy::LoginKind;
use keyplane_app::keys::{
    AccessGrant, KeyRegistration, KeyStatusDetail, LiveCheckOutcome, PolicyFindings, ProposedKey,
    Registered,
};
use keyplane_core::policy::CheckReport;
use keyplane_core::policy::azure::{
    AzureAccessPolicyHelp, AzureAccessReport, AzureRoleAssignmentHelp,
};
use keyplane_core::policy::gcp::IamCheckReport;
use keyplane_core::policy::openbao::{OpenbaoPolicyHelp, TransitCheckReport};
use keyplane_core::{DbType, KeyStatus, Provider};
use keyplane_kms::{KeyLogin, LoginCredential};
use keyplane_store::CustomerKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{RegionPath, ts};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

#[derive(Deserialize, Serialize, utoipa::ToSchema, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderKey {
    /// AWS: the key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID). GCP: projects/P/locations/L/keyRings/R/cryptoKeys/K,
    /// or a version of it (…/cryptoKeyVersions/V); the key is stored without the version. Azure
    /// (serverless only): the key identifier https://VAULT.vault.azure.net/keys/NAME, versionless
    /// preferred (a version given is dropped: encryption follows the key's current version).
    #[serde(rename = "keyID")]
    pub key_id: String,
    pub region: String,
}

/// How keyplane logs in to the customer's OpenBao for a key.
#[derive(Deserialize, utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OpenbaoAuth {
    /// An AppRole role: `roleID` and `secretID` are given.
    #[default]
    Approle,
    /// A JWT auth role bound to the organization, trusting keyplane's signing key
    /// (`GET …/policy?auth=jwt` prints what to configure); nothing secret is given.
    Jwt,
}

/// An OpenBao / Vault Transit key (a keyplane extension) and the login keyplane uses it
/// with. A role ID and secret ID are sealed at rest and never returned by any answer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenbaoKeyBody {
    /// The key's API URL: `<address>/v1/[<namespace>/]<mount>/keys/<name>`.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// The platform's region (site) the key is for: Transit keys have none of their own.
    pub region: String,
    /// The role's path, `auth/<mount>/role/<name>`; default: the provider ID the accounts
    /// route shows (`auth/approle/role/keyplane`).
    #[serde(default)]
    pub role: Option<String>,
    /// The role's role ID. With `secretID`; both absent: the login stored with the key (a
    /// replacement: with the slot's current key) is used.
    #[serde(rename = "roleID", default)]
    pub role_id: Option<String>,
    #[serde(rename = "secretID", default)]
    pub secret_id: Option<String>,
    /// PEM certificates to trust, alone, for a server whose certificate a private CA signed.
    #[serde(rename = "caCertificate", default)]
    pub ca_certificate: Option<String>,
    /// `approle` (the default) or `jwt`.
    #[serde(default)]
    pub auth: OpenbaoAuth,
}

impl std::fmt::Debug for OpenbaoKeyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenbaoKeyBody")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("role", &self.role)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl OpenbaoKeyBody {
    /// The proposed key, the login wiped on drop from here on.
    fn proposed(self) -> Result<ProposedKey, keyplane_app::AppError> {
        let secrets_given = self.role_id.is_some() || self.secret_id.is_some();
        let login = match self.auth {
            OpenbaoAuth::Jwt if secrets_given => {
                return Err(keyplane_app::AppError::Invalid {
                    field: "openbao.auth",
                    message: "openbao: a JWT role takes no roleID or secretID (keyplane signs its own JWTs); \
                              give auth \"approle\" to log in with them"
                        .into(),
                });
            }
            OpenbaoAuth::Jwt => Some(KeyLogin {
                role: self.role.unwrap_or_default(),
                // The application names the request's organization here.
                credential: LoginCredential::PlatformJwt {
                    subject: String::new(),
                },
                ca_bundle_pem: self.ca_certificate,
            }),
            OpenbaoAuth::Approle => secrets_given.then(|| KeyLogin {
                role: self.role.unwrap_or_default(),
                credential: LoginCredential::AppRole {
                    role_id: Zeroizing::new(self.role_id.unwrap_or_default()),
                    secret_id: Zeroizing::new(self.secret_id.unwrap_or_default()),
                },
                ca_bundle_pem: self.ca_certificate,
            }),
        };
        Ok(ProposedKey {
            key_id: self.key_id,
            region: self.region,
            login,
        })
    }
}

/// One provider object per request, as the original API takes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    /// The token's organization when absent; another organization is refused.
    #[serde(rename = "orgId", default)]
    pub org_id: Option<Uuid>,
    pub aws: Option<ProviderKey>,
    pub gcp: Option<ProviderKey>,
    pub azure: Option<ProviderKey>,
    pub openbao: Option<OpenbaoKeyBody>,
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
    /// An OpenBao Transit key: its ID and region only (its login is never returned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openbao: Option<ProviderKey>,
    /// In a registration's answer (GCP): the key version new data keys are wrapped with. The
    /// key is stored without a version, so rotating it changes nothing for the platform.
    #[serde(
        rename = "primaryVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_version: Option<String>,
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
    /// The actions the key refused for another organization's encryption context: the proof
    /// that it is bound to this organization.
    pub refused_for_another_organization: Vec<String>,
    /// How many KMS calls the check made.
    pub kms_calls: u32,
    /// GCP: the key's primary version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_version: Option<String>,
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

/// A live datacenter encrypted under the key.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyUserView {
    pub database_id: Uuid,
    pub datacenter_id: String,
    /// The datacenter's status (ACTIVE, SUSPENDED, …), as `GET /v2/databases/{id}` spells it.
    pub status: String,
}

/// A key the slot held before, and the live datacenters still under it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviousKeyView {
    #[serde(rename = "keyID")]
    pub key_id: String,
    pub datacenters: Vec<KeyUserView>,
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
    /// The platform proved that the key's policy refuses every other organization (at
    /// registration, or the key monitor did for a key registered before registration proved
    /// it).
    pub bound_to_organization: bool,
    /// Set while the key's policy lets the platform use it for any organization (a key
    /// registered before registration proved the binding): what to add to the policy. The
    /// key keeps working; it is not a status.
    pub warning: Option<String>,
    /// The live datacenters of the key's type encrypted under it (what a revoke suspends;
    /// a key is deregistered only once there are none).
    pub datacenters: Vec<KeyUserView>,
    /// Keys this slot held before a replacement that live datacenters are still encrypted
    /// under; each leaves when its datacenters are rewrapped
    /// (`POST /v2/databases/{id}/datacenters/{datacenterId}/rewrap`).
    pub previous_keys: Vec<PreviousKeyView>,
    /// GCP: the version that encrypts new data keys now. Data wrapped under earlier versions
    /// stays readable while they are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_version: Option<String>,
    /// Its state: ENABLED, DISABLED, DESTROY_SCHEDULED, DESTROYED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_version_state: Option<String>,
    /// The key's own rotation, as its service reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationView>,
    /// Why the key service's facts could not be read just now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts_error: Option<String>,
    /// The region's key in its life: ENABLING, ENABLED, REWRAPPING, REVOKING, REVOKED,
    /// INACCESSIBLE (the reason is `reason`) or ENABLE_FAILED, since when, and the databases
    /// that state is about.
    pub lifecycle: LifecycleView,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleView {
    pub state: keyplane_core::key_state::KeyRegionState,
    pub since: String,
    pub databases: Vec<uuid::Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// Automatic rotation is on.
    pub automatic: bool,
    pub period_days: Option<u32>,
    /// When the current primary version was created (RFC 3339).
    pub last_rotated_at: Option<String>,
    pub next_rotation_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyHelp {
    /// AWS: the platform's account; GCP: the platform's project.
    pub provider_id: String,
    /// The (first) principal the policy must allow.
    pub principal: String,
    /// Every principal the policy must allow (serverless: one per provider ID of the region).
    pub principals: Vec<String>,
    /// AWS: the statements to add to the key policy, in order: use of the key (for this
    /// organization only), describing it, grants carrying this organization's context, and
    /// listing and revoking them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub statements: Option<Vec<serde_json::Value>>,
    /// GCP: the bindings to add to the key's IAM policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub bindings: Option<Vec<serde_json::Value>>,
    /// GCP: the gcloud commands that add them (the key's parts as placeholders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcloud_commands: Option<Vec<String>>,
    /// Azure: the key the help is for (`keyID` as given, else a placeholder).
    #[serde(rename = "keyID", skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Azure: the role assignment to make on the key, for the (first) platform application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_assignment: Option<AzureRoleAssignmentHelp>,
    /// Azure: the ARM body of every role assignment to make (one per application).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub role_assignments: Option<Vec<serde_json::Value>>,
    /// Azure: the equivalent entry of the vault's access policies, for vaults that use them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_policy: Option<AzureAccessPolicyHelp>,
    /// Azure: the commands that make the grant (`az`, or `keyplane kms azure` for the built-in
    /// vault), in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
    /// OpenBao: the policy to write, what each path is for, and the `bao` commands that write
    /// it, bind it to the role and print the role ID and a secret ID (also in `commands`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openbao: Option<OpenbaoPolicyHelp>,
}

impl PolicyHelp {
    /// The answer for `advice`, each service's grant in its own fields.
    fn of(h: keyplane_app::keys::policy::PolicyAdvice) -> PolicyHelp {
        let mut help = PolicyHelp {
            provider_id: h.provider_id,
            principal: h.principal,
            principals: h.principals,
            statements: None,
            bindings: None,
            gcloud_commands: None,
            key_id: None,
            role_assignment: None,
            role_assignments: None,
            access_policy: None,
            commands: None,
            notes: None,
            openbao: None,
        };
        match h.grant {
            AccessGrant::AwsStatements(s) => help.statements = Some(s),
            AccessGrant::GcpBindings { bindings, commands } => {
                help.bindings = Some(bindings);
                help.gcloud_commands = Some(commands);
            }
            AccessGrant::Azure(apps) => {
                help.role_assignments = Some(
                    apps.iter()
                        .map(|a| a.role_assignment.json.clone())
                        .collect(),
                );
                help.commands = Some(apps.iter().flat_map(|a| a.commands.clone()).collect());
                if let Some(first) = apps.into_iter().next() {
                    help.key_id = Some(first.key_id);
                    help.role_assignment = Some(first.role_assignment);
                    help.access_policy = first.access_policy;
                    help.notes = Some(first.notes);
                }
            }
            AccessGrant::Openbao(policy) => {
                help.commands = Some(policy.commands.iter().map(|c| c.to_string()).collect());
                help.openbao = Some(*policy);
            }
        }
        help
    }
}

/// What a policy check found, in the key service's terms.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PolicyReport {
    /// An AWS key policy, evaluated for the platform's role.
    Aws(CheckReport),
    /// A GCP IAM policy, per service account.
    Gcp(IamCheckReport),
    /// Azure role assignments or access policies, for the platform's application.
    Azure(AzureAccessReport),
    /// An OpenBao / Vault policy, for the key's paths.
    Openbao(TransitCheckReport),
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCheckResult {
    /// `ok` (registration's live check would pass), `insufficient` (an action is denied: see
    /// `findings`) or `unbound` (everything is allowed, but for any organization too: see
    /// `organization_findings`; registration refuses such a key).
    pub verdict: &'static str,
    pub principal: String,
    #[serde(flatten)]
    pub report: PolicyReport,
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
    /// OpenBao: the help for an AppRole role (default) or a JWT role.
    #[serde(default)]
    auth: OpenbaoAuth,
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
        openbao: only(Provider::Openbao),
        primary_version: None,
    }
}

fn status_view(d: &KeyStatusDetail) -> KeyStatusView {
    let k = &d.key;
    let facts = d.facts.clone().unwrap_or_default();
    KeyStatusView {
        primary_version: facts.primary_version,
        primary_version_state: facts.primary_state,
        rotation: facts.rotation.map(|r| RotationView {
            automatic: r.enabled,
            period_days: r.period_days,
            last_rotated_at: r.last_rotated_at,
            next_rotation_at: r.next_rotation_at,
        }),
        facts_error: d.facts_error.clone(),
        lifecycle: LifecycleView {
            state: d.state.state,
            since: ts(d.state.since),
            databases: d.state.databases.clone(),
        },
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
        bound_to_organization: k.bound_at.is_some(),
        warning: k.binding_warning.clone(),
        datacenters: d.datacenters.iter().map(user_view).collect(),
        previous_keys: d
            .previous_keys
            .iter()
            .map(|p| PreviousKeyView {
                key_id: p.key_id.clone(),
                datacenters: p.datacenters.iter().map(user_view).collect(),
            })
            .collect(),
    }
}

fn user_view(u: &keyplane_app::keys::KeyUser) -> KeyUserView {
    KeyUserView {
        database_id: u.database_id,
        datacenter_id: u.datacenter_id.clone(),
        status: u.status.as_str().to_string(),
    }
}

fn checks_view(c: LiveCheckOutcome) -> CheckOutcome {
    CheckOutcome {
        passed: c.passed,
        refused_for_another_organization: c.refused_for_other_organizations,
        kms_calls: c.kms_calls,
        primary_version: c.primary_version,
    }
}

/// The request body as the application takes it: the provider objects given, in order, for
/// the organization named (the token's when none is).
fn registration(
    body: RegisterKey,
    token_org: Uuid,
    dry_run: bool,
) -> Result<KeyRegistration, keyplane_app::AppError> {
    let mut keys: Vec<(Provider, ProposedKey)> = [
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
                    login: None,
                },
            )
        })
    })
    .collect();
    if let Some(k) = body.openbao {
        keys.push((Provider::Openbao, k.proposed()?));
    }
    Ok(KeyRegistration {
        org_id: body.org_id.unwrap_or(token_org),
        keys,
        dry_run,
    })
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
        .register(&who, db_type, &registration(body, who.org_id(), dry_run)?)
        .await?;
    let primary_version = registered.primary_version().map(str::to_string);
    Ok(match registered {
        Registered::Stored(k, _) | Registered::AlreadyRegistered(k) => {
            let mut v = view(&k);
            v.primary_version = primary_version;
            (StatusCode::CREATED, Json(v)).into_response()
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
    ($db:expr, $prefix:literal, $tag:literal, $register:ident, $list:ident, $get:ident, $status:ident, $check:ident, $revoke:ident, $unrevoke:ident, $deregister:ident, $replace:ident) => {
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
            params(("provider" = Provider, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $get(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyView>> {
            Ok(Json(view(&app.keys().get(&who, $db, &path.provider, &path.region).await?)))
        }

        /// The key's status (AVAILABLE, IN_USE, INACCESSIBLE, REVOKED) and its last check.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}/status"), tag = $tag, security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path)),
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
            params(("provider" = Provider, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $check(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&app.keys().check_now(&who, $db, &path.provider, &path.region).await?)))
        }

        /// Revokes the platform's use of the key, whatever the KMS allows: the key becomes
        /// REVOKED and every datacenter under it SUSPENDED ("revoked by the customer"), its data
        /// key dropped, on every keyplane process within a second; no database is deployed under
        /// it. Idempotent. Undo with `…/unrevoke`.
        #[utoipa::path(post, path = concat!($prefix, "/provider/{provider}/region/{region}/revoke"), tag = $tag,
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $revoke(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&app.keys().revoke(&who, $db, &path.provider, &path.region).await?)))
        }

        /// Deregisters the key: allowed once no live datacenter of its type is encrypted under
        /// it (409 naming them otherwise), which frees the slot for another key.
        #[utoipa::path(delete, path = concat!($prefix, "/provider/{provider}/region/{region}"), tag = $tag,
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path)),
            responses(
                (status = 204, description = "deregistered"),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 409, body = crate::error::ErrorBody),
            ))]
        pub async fn $deregister(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<StatusCode> {
            app.keys().deregister(&who, $db, &path.provider, &path.region).await?;
            Ok(StatusCode::NO_CONTENT)
        }

        /// Replaces the slot's key by the one in the body (the registration's body, for this
        /// provider and region), after the same live check as a registration. New datacenters
        /// get the new key; existing ones stay under the key they are encrypted under, listed in
        /// `previousKeys`, until each is rewrapped. The same key again changes nothing; a
        /// revoked key is unrevoked, not replaced (409). `?dryRun=true` checks, stores nothing.
        #[utoipa::path(put, path = concat!($prefix, "/provider/{provider}/region/{region}"), tag = $tag,
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path),
                ("dryRun" = Option<bool>, Query, description = "run every check, store nothing")),
            request_body = RegisterKey,
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
                (status = 501, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
            ))]
        pub async fn $replace(
            State(app): State<App>,
            Auth(who): Auth,
            ApiPath(path): ApiPath<RegionPath>,
            ApiQuery(q): ApiQuery<RegisterQuery>,
            ApiJson(body): ApiJson<RegisterKey>,
        ) -> ApiResult<Json<KeyStatusView>> {
            let req = registration(body, who.org_id(), q.dry_run)?;
            Ok(Json(status_view(&app.keys().replace(&who, $db, &path.provider, &path.region, &req).await?)))
        }

        /// Ends a revocation once the registration's live check of the key passes (422 with the
        /// reason, the key still revoked, when it fails); its datacenters are then checked and
        /// resume. A key that is not revoked is answered as it is.
        #[utoipa::path(post, path = concat!($prefix, "/provider/{provider}/region/{region}/unrevoke"), tag = $tag,
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = KeyStatusView),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 422, body = crate::error::ErrorBody), (status = 501, body = crate::error::ErrorBody),
                (status = 503, body = crate::error::ErrorBody),
            ))]
        pub async fn $unrevoke(State(app): State<App>, Auth(who): Auth, ApiPath(path): ApiPath<RegionPath>) -> ApiResult<Json<KeyStatusView>> {
            Ok(Json(status_view(&app.keys().unrevoke(&who, $db, &path.provider, &path.region).await?)))
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
    check_classic,
    revoke_classic,
    unrevoke_classic,
    deregister_classic,
    replace_classic
);
key_routes!(
    DbType::Serverless,
    "/v2/kms",
    "customer keys",
    register_serverless,
    list_serverless,
    get_serverless,
    status_serverless,
    check_serverless,
    revoke_serverless,
    unrevoke_serverless,
    deregister_serverless,
    replace_serverless
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
        /// What to grant on the key, with the organization's provider IDs filled in: AWS the
        /// key-policy statements, every use bound to the organization
        /// (`kms:EncryptionContext:organization`); GCP the IAM bindings and gcloud commands;
        /// Azure the role assignment on the key (`keyID`), its access-policy equivalent and
        /// the commands.
        #[utoipa::path(get, path = concat!($prefix, "/provider/{provider}/region/{region}/policy"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path),
                   ("keyID" = Option<String>, Query, description = "the key the help names (Azure: the role assignment's scope)"),
                   ("auth" = Option<OpenbaoAuth>, Query, description = "OpenBao: approle (default) or jwt, the login the help sets up")),
            responses(
                (status = 200, body = PolicyHelp),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
                (status = 501, body = crate::error::ErrorBody),
            ))]
        pub async fn $help(
            State(app): State<App>,
            Auth(who): Auth,
            ApiPath(path): ApiPath<RegionPath>,
            ApiQuery(q): ApiQuery<CheckQuery>,
        ) -> ApiResult<Json<PolicyHelp>> {
            let h = app
                .keys()
                .policy_help(&who, $db, &path.provider, &path.region, q.key_id.as_deref(), match q.auth {
                    OpenbaoAuth::Approle => LoginKind::AppRole,
                    OpenbaoAuth::Jwt => LoginKind::Jwt,
                })
                .await?;
            Ok(Json(PolicyHelp::of(h)))
        }

        /// Checks a whole access policy: AWS a key policy (which actions the platform's role
        /// would be denied, and why, and which it could perform for another organization,
        /// `organization_findings`), GCP a key's `getIamPolicy` output (what each service
        /// account lacks).
        #[utoipa::path(post, path = concat!($prefix, "/provider/{provider}/region/{region}/policy/check"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = Provider, Path), ("region" = String, Path),
                   ("keyID" = Option<String>, Query, description = "the key (AWS ARN, GCP key name) the policy is for")),
            request_body(content = Object, description = "the key policy document (AWS) or the key's IAM policy (GCP getIamPolicy output)"),
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
                verdict: r.verdict().as_str(),
                principal: r.principal,
                report: match r.findings {
                    PolicyFindings::Aws(report) => PolicyReport::Aws(report),
                    PolicyFindings::Gcp(report) => PolicyReport::Gcp(report),
                    PolicyFindings::Azure(report) => PolicyReport::Azure(report),
                    PolicyFindings::Openbao(report) => PolicyReport::Openbao(report),
                },
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
