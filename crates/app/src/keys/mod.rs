//! Customer keys: register (every check before anything is stored), list, get one, its
//! status, a check on request, and the policy helper and checker (`policy`). One key per
//! (organization, database type, provider, region); replacing it (`replacement`) changes
//! the key new datacenters get, and each existing one moves only when it is rewrapped. What differs per key service (AWS
//! KMS, Google Cloud KMS) is behind [`service::KeyService`], chosen in one place.
mod aws;
mod azure;
mod gcp;
pub mod on_inaccessible;
mod openbao;
pub mod policy;
pub mod registration;
mod replacement;
mod revocation;
pub mod service;

use chrono::{SubsecRound, Utc};
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::key_state::{KeyRegionState, key_region_state};
use keyplane_core::{DbType, KeyStatus, Permission, Provider};
use keyplane_kms::{ErrorKind, KeyLogin, LoginCredential, PlatformIdentity};
use keyplane_store::{CustomerKey, KeyStatusUpdate};
use uuid::Uuid;

use crate::App;
use crate::audit::{reason_of, record_for};
use crate::auth::Requester;
use crate::error::{AppError, AppResult, ConflictReason, Resource};
use crate::regions::{check_region, parse_provider};
pub use registration::LiveCheckOutcome;
use registration::unsupported_type_message;
pub(crate) use revocation::{KeyCheckLocks, deployable};
use service::key_service;
pub use service::{AccessGrant, KeyFacts, ParsedKeyId, PolicyFindings, problem_for};

/// A key a request proposes for one provider: its ID as given, the region, and for a
/// service without a platform identity (OpenBao) the login its customer made for keyplane.
#[derive(Debug, Clone)]
pub struct ProposedKey {
    pub key_id: String,
    pub region: String,
    /// None: the login already stored with the key (or, for a replacement, with the slot's
    /// current key) is used.
    pub login: Option<KeyLogin>,
}

/// A registration request: the organization it is for and the provider objects it gave
/// (exactly one is accepted, as the original API takes it).
#[derive(Debug, Clone)]
pub struct KeyRegistration {
    pub org_id: Uuid,
    pub keys: Vec<(Provider, ProposedKey)>,
    /// Run every check, store nothing.
    pub dry_run: bool,
}

impl KeyRegistration {
    /// A request naming one key, as a form gives it (the portal's Add Key and Replace).
    pub fn one(org_id: Uuid, provider: Provider, key_id: &str, region: &str) -> KeyRegistration {
        KeyRegistration {
            org_id,
            keys: vec![(
                provider,
                ProposedKey {
                    key_id: key_id.to_string(),
                    region: region.to_string(),
                    login: None,
                },
            )],
            dry_run: false,
        }
    }
}

/// What a registration did.
#[derive(Debug, Clone)]
pub enum Registered {
    /// The key is stored, AVAILABLE; what its live check found.
    Stored(CustomerKey, LiveCheckOutcome),
    /// The same key was already registered for the slot: the same answer again.
    AlreadyRegistered(CustomerKey),
    /// Every check passed; nothing was stored.
    DryRun {
        key: CustomerKey,
        checks: LiveCheckOutcome,
    },
}

impl Registered {
    pub fn key(&self) -> &CustomerKey {
        match self {
            Registered::Stored(k, _) | Registered::AlreadyRegistered(k) => k,
            Registered::DryRun { key, .. } => key,
        }
    }

    /// The key version new data keys are wrapped with, when the check read it (GCP).
    pub fn primary_version(&self) -> Option<&str> {
        match self {
            Registered::Stored(_, checks) | Registered::DryRun { checks, .. } => {
                checks.primary_version.as_deref()
            }
            Registered::AlreadyRegistered(_) => None,
        }
    }
}

/// The JWT role customers are told to make for keyplane when they pick JWT auth.
pub const DEFAULT_OPENBAO_JWT_ROLE: &str = "auth/jwt/role/keyplane";

/// What a revoked key's status says in place of its service's facts.
pub const REVOKED_FACTS: &str =
    "not read while the key is revoked: keyplane makes no call to a revoked key";

/// A key's status, with what its service says of it now (primary version, rotation).
#[derive(Debug, Clone)]
pub struct KeyStatusDetail {
    pub key: CustomerKey,
    pub facts: Option<KeyFacts>,
    /// Why the facts could not be read (the KMS down, the access removed).
    pub facts_error: Option<String>,
    /// The live datacenters of the key's type encrypted under it: what a revoke suspends and
    /// what keeps it from being deregistered.
    pub datacenters: Vec<KeyUser>,
    /// Keys the slot held before a replacement that live datacenters are still under, until
    /// each is rewrapped.
    pub previous_keys: Vec<PreviousKey>,
    pub state: RegionState,
}

/// A key the slot no longer holds, and the live datacenters still under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    pub key_id: String,
    pub datacenters: Vec<KeyUser>,
}

/// A registered key and what uses its slot, as [`Keys::list_in_use`] lists it.
#[derive(Debug, Clone)]
pub struct KeyInUse {
    pub key: CustomerKey,
    /// The live datacenters under this key.
    pub datacenters: Vec<KeyUser>,
    /// Earlier keys of the slot that live datacenters still use.
    pub earlier: Vec<PreviousKey>,
    pub state: RegionState,
}

/// A live datacenter under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUser {
    pub database_id: Uuid,
    pub datacenter_id: String,
    pub status: keyplane_core::DatabaseStatus,
    pub updated_at: chrono::DateTime<Utc>,
    /// Its data key is being rotated (a new one recorded, the file not yet swapped).
    pub rotating: bool,
}

/// A region key's life state (`keyplane_core::key_state`), as of when, and the databases it
/// is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionState {
    pub state: KeyRegionState,
    /// The latest change behind it: the key's status change, or the last change of a
    /// datacenter it concerns.
    pub since: chrono::DateTime<Utc>,
    /// The databases of the datacenters it concerns (deploying ones for ENABLING, those still
    /// under an earlier key for REWRAPPING, …), each once.
    pub databases: Vec<Uuid>,
}

/// The state of `key` given the live datacenters of its slot.
pub fn region_state(
    key: &CustomerKey,
    current: &[KeyUser],
    earlier: &[PreviousKey],
) -> RegionState {
    let statuses: Vec<_> = current.iter().map(|u| u.status).collect();
    let earlier_users: Vec<&KeyUser> = earlier.iter().flat_map(|p| &p.datacenters).collect();
    let rotating = current.iter().filter(|u| u.rotating).count();
    let state = key_region_state(key.status, &statuses, earlier_users.len(), rotating);
    let concerned: Vec<&KeyUser> = current
        .iter()
        .filter(|u| state.concerns(u.status, true, u.rotating))
        .chain(
            earlier_users
                .into_iter()
                .filter(|u| state.concerns(u.status, false, u.rotating)),
        )
        .collect();
    let since = concerned
        .iter()
        .map(|u| u.updated_at)
        .chain([key.status_since])
        .max()
        .unwrap_or(key.status_since);
    let mut databases: Vec<Uuid> = concerned.iter().map(|u| u.database_id).collect();
    databases.sort();
    databases.dedup();
    RegionState {
        state,
        since,
        databases,
    }
}

/// What the Add Keys form shows once a region is chosen: the identity to trust and what to
/// grant it.
#[derive(Debug, Clone)]
pub struct Trust {
    pub identity: PlatformIdentity,
    /// The Cloud Provider ID shown: AWS the account, GCP the platform's project.
    pub provider_id: String,
    /// Every principal to let in (serverless: one per provider ID of the region).
    pub principals: Vec<String>,
    pub grant: AccessGrant,
}

/// A sentence naming the key and what is wrong with it, for statuses and refusals.
pub fn key_problem(kind: &ErrorKind, key: &str, detail: &str) -> String {
    match kind {
        ErrorKind::Disabled => format!("the key {key} is disabled; enable it to restore access"),
        ErrorKind::PendingDeletion => {
            format!(
                "the key {key} is scheduled for deletion; cancel the deletion and enable it to restore access"
            )
        }
        ErrorKind::NotFound => {
            format!("the key {key} no longer exists or is no longer visible to the platform")
        }
        ErrorKind::AccessDenied { action } => format!(
            "the key policy of {key} no longer lets the platform perform {}; restore the platform's statement",
            if action.is_empty() {
                "its operations"
            } else {
                action
            }
        ),
        ErrorKind::InvalidState => {
            format!("the key {key} is in a state that refuses use: {detail}")
        }
        ErrorKind::InvalidCiphertext => {
            format!("the key {key} can no longer unwrap this datacenter's data key")
        }
        ErrorKind::WrongKeyType | ErrorKind::WrongRegion => {
            format!("the key {key} cannot be used: {detail}")
        }
        ErrorKind::Retryable | ErrorKind::Unreachable => {
            format!("the KMS holding {key} has not answered: {detail}")
        }
        ErrorKind::Credentials | ErrorKind::Invalid | ErrorKind::Unsupported | ErrorKind::Other => {
            format!("the key {key} could not be used: {detail}")
        }
    }
}

/// A live check that failed on the platform's side (the KMS did not answer, or refused the
/// platform's own credentials), in every key service's words: `kms` names the service
/// ("the KMS", "Cloud KMS"), `step` the call that failed. Nothing the customer changes
/// fixes it, so the answer says so and the log keeps the credentials' detail.
fn platform_side_failure(e: &keyplane_kms::KmsError, kms: &str, key: &str, step: &str) -> AppError {
    if e.kind == ErrorKind::Credentials {
        tracing::error!(error = %e, kms, "the platform's credentials were refused");
        return AppError::KmsUnavailable(format!(
            "the platform could not authenticate to {kms}; nothing was stored. Retry later, or contact the \
             platform operator if this persists"
        ));
    }
    AppError::KmsUnavailable(format!(
        "{kms} did not answer while checking key {key} ({step}); nothing was stored, retry later"
    ))
}

/// The audit target of a request about a (type, provider, region) slot, as the request
/// named it.
/// The record of a key that just passed its live check: AVAILABLE, the check's summary as its
/// last check, bound to the organization.
fn checked_record(
    who: &Requester,
    db_type: DbType,
    provider: Provider,
    region: String,
    key_id: String,
    identity: &PlatformIdentity,
    checks: &LiveCheckOutcome,
) -> CustomerKey {
    let now = Utc::now().trunc_subsecs(3);
    CustomerKey {
        org_id: who.org_id(),
        db_type,
        provider,
        region,
        key_id,
        provider_account: identity.account_id.clone(),
        created_at: now,
        created_by: who.client_id.clone(),
        status: KeyStatus::Available,
        status_reason: None,
        status_since: now,
        last_check_at: Some(now),
        last_check_ok: Some(true),
        last_check_message: Some(format!(
            "registration check passed: {}{} ({} KMS calls){}",
            checks.passed.join(", "),
            if checks.refused_for_other_organizations.is_empty() {
                String::new()
            } else {
                format!(
                    "; refused for another organization: {}",
                    checks.refused_for_other_organizations.join(", ")
                )
            },
            checks.kms_calls,
            checks
                .primary_version
                .as_deref()
                .map(|v| format!("; primary version {v}"))
                .unwrap_or_default()
        )),
        bound_at: Some(now),
        binding_warning: None,
    }
}

fn slot_target(db_type: DbType, provider: &str, region: &str) -> String {
    format!("{db_type}/{provider}/{region}")
}

pub struct Keys<'a>(pub(crate) &'a App);

impl Keys<'_> {
    /// Checks the permission and records a refusal in the audit log.
    async fn require(
        &self,
        who: &Requester,
        p: Permission,
        action: AuditAction,
        target: &str,
    ) -> AppResult<()> {
        if let Err(e) = who.require(p) {
            record_for(
                self.0,
                who,
                action,
                target,
                AuditOutcome::Denied,
                &e.to_string(),
            )
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// Registers a key of `db_type` after every check, the live one included; the outcome
    /// is in the audit log either way.
    pub async fn register(
        &self,
        who: &Requester,
        db_type: DbType,
        req: &KeyRegistration,
    ) -> AppResult<Registered> {
        let action = if req.dry_run {
            AuditAction::CmkRegisterDryRun
        } else {
            AuditAction::CmkRegister
        };
        let raw_target = req
            .keys
            .first()
            .map(|(_, k)| format!("{db_type} {} {}", k.region, k.key_id))
            .unwrap_or_else(|| db_type.to_string());
        self.require(who, Permission::OrgCmkWrite, action, &raw_target)
            .await?;
        let result = self.register_checked(who, db_type, req).await;
        match &result {
            Ok(r) => {
                let k = r.key();
                let target = format!("{db_type}/{}/{} {}", k.provider, k.region, k.key_id);
                record_for(self.0, who, action, &target, AuditOutcome::Success, "").await
            }
            Err(e) => {
                record_for(
                    self.0,
                    who,
                    action,
                    &raw_target,
                    AuditOutcome::Failure,
                    &reason_of(e),
                )
                .await
            }
        }
        result
    }

    /// Everything before the live check: shape, organization, type/provider, region, key ID.
    fn validate(
        &self,
        who: &Requester,
        db_type: DbType,
        req: &KeyRegistration,
    ) -> AppResult<(Provider, String, ParsedKeyId)> {
        if req.org_id != who.org_id() {
            return Err(AppError::WrongOrganization {
                given: req.org_id,
                token_org: who.org_id(),
            });
        }
        let [(provider, key)] = req.keys.as_slice() else {
            return Err(AppError::invalid(
                "aws",
                format!(
                    "give exactly one provider object (\"aws\", \"gcp\", \"azure\" or \"openbao\"); this request has {}",
                    req.keys.len()
                ),
            ));
        };
        let provider = *provider;
        if key.key_id.trim().is_empty() {
            let (field, what) = match provider {
                Provider::Aws => ("aws.keyID", "its ARN"),
                Provider::Gcp => (
                    "gcp.keyID",
                    "its resource name, projects/P/locations/L/keyRings/R/cryptoKeys/K",
                ),
                Provider::Azure => ("azure.keyID", "its key identifier"),
                Provider::Openbao => (
                    "openbao.keyID",
                    "its Transit key URL, <address>/v1/<mount>/keys/<name>",
                ),
            };
            return Err(AppError::invalid(
                field,
                format!("{field}: give the key's ID ({what})"),
            ));
        }
        if !provider.supports(db_type) {
            return Err(AppError::KeyCheckFailed(unsupported_type_message(
                provider, db_type,
            )));
        }
        check_region(&self.0.config, &who.org, provider, &key.region).map_err(|e| match e {
            // For a registration, an unusable region is a refused key, not a missing page.
            AppError::RegionUnavailable(p) => AppError::KeyCheckFailed(p.to_string()),
            other => other,
        })?;
        let parsed = key_service(provider)?.parse(&self.0.config, &key.key_id, &key.region)?;
        Ok((provider, key.region.clone(), parsed))
    }

    async fn register_checked(
        &self,
        who: &Requester,
        db_type: DbType,
        req: &KeyRegistration,
    ) -> AppResult<Registered> {
        let (provider, region, parsed) = self.validate(who, db_type, req)?;
        let org = who.org_id();
        let key_id = parsed.stored();
        let store = &self.0.store;
        if let Some(existing) = store
            .get_customer_key(org, db_type, provider, &region)
            .await?
        {
            // Idempotent: the same registration answers the same.
            return if existing.key_id == key_id {
                Ok(Registered::AlreadyRegistered(existing))
            } else {
                Err(conflict(&existing))
            };
        }
        let identity = self
            .0
            .accounts()
            .platform_identity(org, provider, &region)
            .await?;
        let given = req.keys.first().and_then(|(_, k)| k.login.as_ref());
        let (identity, login) = self
            .login_for_check(org, identity, &key_id, given, None)
            .await?;
        let checks = {
            let lock = self.0.key_checks.of(&key_id);
            let _checking = lock.lock().await;
            key_service(provider)?
                .live_check(self.0, &identity, org, &parsed, login.as_ref())
                .await?
        };
        let record = checked_record(who, db_type, provider, region, key_id, &identity, &checks);
        if req.dry_run {
            return Ok(Registered::DryRun {
                key: record,
                checks,
            });
        }
        self.keep_login(org, provider, &record.key_id, login.as_ref())
            .await?;
        match store.insert_customer_key(&record).await? {
            None => Ok(Registered::Stored(record, checks)),
            // Another request registered a key for the same slot while this one checked.
            Some(existing) if existing.key_id == record.key_id => {
                Ok(Registered::AlreadyRegistered(existing))
            }
            Some(existing) => Err(conflict(&existing)),
        }
    }

    /// The organization's keys of one type (audited).
    pub async fn list(&self, who: &Requester, db_type: DbType) -> AppResult<Vec<CustomerKey>> {
        let action = AuditAction::CmkList;
        self.require(who, Permission::OrgCmkRead, action, db_type.as_str())
            .await?;
        let keys = self
            .0
            .store
            .list_customer_keys(who.org_id(), Some(db_type))
            .await?;
        record_for(
            self.0,
            who,
            action,
            db_type.as_str(),
            AuditOutcome::Success,
            &format!("{} keys", keys.len()),
        )
        .await;
        Ok(keys)
    }

    /// Every key of the organization, for the portal's Key Encryption page.
    pub async fn list_all(&self, who: &Requester) -> AppResult<Vec<CustomerKey>> {
        who.require(Permission::OrgCmkRead)?;
        Ok(self.0.store.list_customer_keys(who.org_id(), None).await?)
    }

    /// Every key of the organization with the live datacenters under it and the earlier
    /// keys of its slot that live datacenters still use: the portal says what a revoke
    /// suspends and what is left to rewrap. No call to any KMS.
    pub async fn list_in_use(&self, who: &Requester) -> AppResult<Vec<KeyInUse>> {
        let keys = self.list_all(who).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.key_in_use(key).await?);
        }
        Ok(out)
    }

    /// One slot's key and what uses it, as [`Self::list_in_use`] gives it (no KMS call, no
    /// audit entry: a page that asks before acting reads it).
    pub async fn in_use(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<KeyInUse> {
        who.require(Permission::OrgCmkRead)?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        let key = self
            .0
            .store
            .get_customer_key(who.org_id(), db_type, provider, region)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(Resource::CustomerKey {
                    db_type,
                    provider,
                    region: region.to_string(),
                })
            })?;
        self.key_in_use(key).await
    }

    async fn key_in_use(&self, key: CustomerKey) -> AppResult<KeyInUse> {
        let (datacenters, earlier) = self.users(&key).await?;
        Ok(KeyInUse {
            state: region_state(&key, &datacenters, &earlier),
            key,
            datacenters,
            earlier,
        })
    }

    async fn find(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
        action: AuditAction,
    ) -> AppResult<CustomerKey> {
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkRead, action, &target)
            .await?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        let found = self
            .0
            .store
            .get_customer_key(who.org_id(), db_type, provider, region)
            .await?;
        match found {
            Some(k) => {
                record_for(self.0, who, action, &target, AuditOutcome::Success, "").await;
                Ok(k)
            }
            None => {
                record_for(
                    self.0,
                    who,
                    action,
                    &target,
                    AuditOutcome::Failure,
                    "not registered",
                )
                .await;
                Err(AppError::NotFound(Resource::CustomerKey {
                    db_type,
                    provider,
                    region: region.to_string(),
                }))
            }
        }
    }

    /// The key registered for a provider and region.
    pub async fn get(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<CustomerKey> {
        self.find(who, db_type, provider, region, AuditAction::CmkGet)
            .await
    }

    /// The same, read for its status (audited as a status read), with what the key's
    /// service says of it now (GCP: its primary version and rotation).
    pub async fn status(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<KeyStatusDetail> {
        let key = self
            .find(who, db_type, provider, region, AuditAction::CmkStatus)
            .await?;
        Ok(self.with_facts(key).await)
    }

    /// The key's facts as its registered identity reads them; a failure is reported beside
    /// the status rather than failing the read.
    async fn with_facts(&self, key: CustomerKey) -> KeyStatusDetail {
        let app = self.0;
        // Revoked: keyplane makes no call to the key, not even to read its facts.
        let read = if key.status == KeyStatus::Revoked {
            Err(None)
        } else {
            async {
                let service = key_service(key.provider)?;
                let identity = self.key_identity(&key);
                let kms = app
                    .data
                    .provider_for(&identity, key.org_id, &key.key_id)
                    .await?;
                Ok::<_, AppError>(service.facts(kms.as_ref(), &key.key_id).await?)
            }
            .await
            .map_err(Some)
        };
        let (facts, facts_error) = match read {
            Err(None) => (None, Some(REVOKED_FACTS.to_string())),
            Ok(f) if f == KeyFacts::default() => (None, None),
            Ok(f) => (Some(f), None),
            Err(Some(e)) => {
                let why = match &e {
                    AppError::Kms(k) => problem_for(key.provider, &k.kind, &key.key_id, &k.message),
                    other => other.to_string(),
                };
                (None, Some(why))
            }
        };
        let (datacenters, previous_keys) = match self.users(&key).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, key = %key.key_id, "listing a key's datacenters failed");
                Default::default()
            }
        };
        KeyStatusDetail {
            state: region_state(&key, &datacenters, &previous_keys),
            key,
            facts,
            facts_error,
            datacenters,
            previous_keys,
        }
    }

    /// The live datacenters of the key's slot: those under the key, and those still under a
    /// key the slot held before, by key.
    async fn users(&self, key: &CustomerKey) -> AppResult<(Vec<KeyUser>, Vec<PreviousKey>)> {
        let dcs = self
            .0
            .store
            .live_datacenters_in_slot(key.org_id, key.db_type, key.provider, &key.region)
            .await?;
        let mut current = vec![];
        let mut previous: Vec<PreviousKey> = vec![];
        for dc in dcs {
            let user = KeyUser {
                database_id: dc.database_id,
                updated_at: dc.updated_at,
                rotating: dc.pending_wrapped_data_key.is_some(),
                datacenter_id: dc.id,
                status: dc.status,
            };
            if dc.key_id == key.key_id {
                current.push(user);
            } else if let Some(p) = previous.iter_mut().find(|p| p.key_id == dc.key_id) {
                p.datacenters.push(user);
            } else {
                previous.push(PreviousKey {
                    key_id: dc.key_id,
                    datacenters: vec![user],
                });
            }
        }
        previous.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        Ok((current, previous))
    }

    fn key_identity(&self, key: &CustomerKey) -> PlatformIdentity {
        self.0
            .config
            .identity(key.provider, &key.provider_account, &key.region)
    }

    /// The login a live check of `key_id` uses, where its service takes one, and the
    /// identity it acts as: the login's role, which the customer's policy is bound to (the
    /// platform's suggested role when the request names none). `given` is the request's;
    /// without it the key's stored login, then `fallback_key_id`'s (a replacement's current
    /// key, often on the same server), is used.
    pub(crate) async fn login_for_check(
        &self,
        org: Uuid,
        identity: PlatformIdentity,
        key_id: &str,
        given: Option<&KeyLogin>,
        fallback_key_id: Option<&str>,
    ) -> AppResult<(PlatformIdentity, Option<KeyLogin>)> {
        let provider = identity.provider;
        if !crate::logins::needs_login(provider) {
            return Ok((identity, None));
        }
        let app = self.0;
        let stored = |id: String| async move {
            crate::logins::stored(&app.store, &app.config, org, provider, &id)
                .await
                .map_err(|e| AppError::KeyCheckFailed(e.message))
        };
        let mut login = match given {
            Some(l) => l.clone(),
            None => match stored(key_id.to_string()).await? {
                Some(l) => l,
                None => match fallback_key_id {
                    Some(f) => stored(f.to_string()).await?,
                    None => None,
                }
                .ok_or_else(|| {
                    AppError::invalid(
                        "openbao.secretID",
                        "openbao: give the role ID and secret ID of the role keyplane logs in as (roleID, secretID)",
                    )
                })?,
            },
        };
        match &mut login.credential {
            LoginCredential::AppRole { role_id, secret_id } => {
                if role_id.trim().is_empty() || secret_id.trim().is_empty() {
                    return Err(AppError::invalid(
                        "openbao.secretID",
                        "openbao: roleID and secretID must not be empty",
                    ));
                }
                if login.role.trim().is_empty() {
                    login.role = identity.principal.clone();
                }
            }
            // The JWT names the organization the request is for, whatever the request said:
            // that is what the customer's role is bound to.
            LoginCredential::PlatformJwt { subject } => {
                *subject = org.to_string();
                if login.role.trim().is_empty() {
                    login.role = DEFAULT_OPENBAO_JWT_ROLE.to_string();
                }
            }
        }
        let role = keyplane_core::OpenbaoRole::from_provider_id(&login.role)
            .map_err(|e| AppError::invalid("openbao.role", format!("openbao.role: {e}")))?;
        login.role = role.provider_id();
        let identity = PlatformIdentity {
            account_id: login.role.clone(),
            principal: login.role.clone(),
            ..identity
        };
        Ok((identity, Some(login)))
    }

    /// Stores the login `key_id` passed its check with, sealed (the request's, or one
    /// carried over from the slot's previous key).
    pub(crate) async fn keep_login(
        &self,
        org: Uuid,
        provider: Provider,
        key_id: &str,
        login: Option<&KeyLogin>,
    ) -> AppResult<()> {
        let Some(login) = login else {
            return Ok(());
        };
        let sealed = crate::logins::seal(&self.0.config, org, provider, key_id, login)?;
        self.0
            .store
            .put_key_login(org, provider, key_id, &sealed, Utc::now())
            .await?;
        Ok(())
    }

    /// Checks the key now, as the key health monitor does (its datacenters, or the key
    /// itself while no database uses it), and returns it with the new status.
    pub async fn check_now(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<KeyStatusDetail> {
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkWrite, AuditAction::CmkCheck, &target)
            .await?;
        let key = self
            .find(who, db_type, provider, region, AuditAction::CmkCheck)
            .await?;
        let app = self.0;
        if key.status == KeyStatus::Revoked {
            // Nothing to check: a revoked key is not called until it is unrevoked.
            return Ok(self.with_facts(key).await);
        }
        let mine = app
            .store
            .live_datacenters_of_key(key.org_id, &key.key_id, &key.region)
            .await?;
        app.monitor().check_datacenters(&mine).await?;
        if key.bound_at.is_none() {
            app.monitor().check_binding(&key).await?;
        }
        if mine.is_empty() {
            // No database uses it yet: check the key itself as the platform.
            let service = key_service(key.provider)?;
            let identity = self.key_identity(&key);
            let result = match app
                .data
                .provider_for(&identity, key.org_id, &key.key_id)
                .await
            {
                Ok(kms) => service.health(kms.as_ref(), &key.key_id).await,
                Err(e) => Err(e),
            };
            let (ok, message) = match result {
                Ok(()) => (true, "the key is usable".to_string()),
                Err(e) => (false, service.problem(&e.kind, &key.key_id, &e.message)),
            };
            let (status, reason) = if ok {
                (KeyStatus::Available, None)
            } else {
                (KeyStatus::Inaccessible, Some(message.clone()))
            };
            app.store
                .update_customer_key_status(
                    key.org_id,
                    key.db_type,
                    key.provider,
                    &key.region,
                    &KeyStatusUpdate {
                        key_id: key.key_id.clone(),
                        status,
                        status_reason: reason,
                        checked_at: Utc::now(),
                        check_ok: ok,
                        check_message: message,
                    },
                )
                .await?;
        }
        let fresh = app
            .store
            .get_customer_key(key.org_id, key.db_type, key.provider, &key.region)
            .await?
            .unwrap_or(key);
        Ok(self.with_facts(fresh).await)
    }

    /// What the Add Keys form shows for a region: who to trust, and what to grant (for AWS,
    /// statements bound to the organization).
    pub async fn trust(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: Provider,
        region: &str,
        login: policy::LoginKind,
    ) -> AppResult<Trust> {
        who.require(Permission::OrgCmkWrite)?;
        let service = key_service(provider)?;
        let ids = self
            .0
            .accounts()
            .identities(who.org_id(), provider, region)
            .await?;
        let first = ids
            .first()
            .ok_or_else(|| AppError::bug("no provider account assigned"))?;
        let principals = policy::principals_for(db_type, &ids);
        let identity = first.in_region(region);
        match (login, provider) {
            (policy::LoginKind::AppRole, _) => Ok(Trust {
                identity,
                provider_id: first.provider_id.clone(),
                grant: service.grant(&self.0.config, &principals, who.org_id(), None),
                principals,
            }),
            // The JWT role is the identity the customer's policy names; keyplane signs in as it.
            (policy::LoginKind::Jwt, Provider::Openbao) => Ok(Trust {
                identity,
                provider_id: DEFAULT_OPENBAO_JWT_ROLE.to_string(),
                principals: vec![DEFAULT_OPENBAO_JWT_ROLE.to_string()],
                grant: openbao::jwt_grant(&self.0.config, who.org_id(), None)?,
            }),
            (policy::LoginKind::Jwt, other) => Err(AppError::invalid_parameter(
                "auth",
                format!("auth=jwt is for OpenBao keys, not {other}"),
            )),
        }
    }
}

fn conflict(existing: &CustomerKey) -> AppError {
    AppError::Conflict(ConflictReason::KeyAlreadyRegistered {
        db_type: existing.db_type,
        provider: existing.provider,
        region: existing.region.clone(),
        key_id: existing.key_id.clone(),
    })
}
