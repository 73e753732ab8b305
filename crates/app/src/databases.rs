//! Databases and their datacenters (one per region): create (provisioning continues as a
//! job), list, get, terminate, add a region, remove one. Each datacenter is bound, when it is
//! deployed and for good, to the organization's customer key for its (type, provider,
//! region), or to the platform's key where the organization has none; a database created on
//! a customer key needs one in every region it is deployed to. A serverless datacenter under a
//! customer key also takes a provider ID of the organization for itself (see
//! [`Databases::free_provider_id`]). Every change is audited.
use std::collections::HashMap;

use chrono::{SubsecRound, Utc};
use keyplane_core::audit::AuditAction;
use keyplane_core::databases::{check_add_region, check_keyspace, check_name, check_tier};
use keyplane_core::{DatabaseStatus, DbType, Permission, Provider};
use keyplane_store::{
    AddRegionOutcome, CreateOutcome, CustomerKey, Database, DatabaseFilter, Datacenter, JobKind,
    KeyKind, NewJob, RemoveRegionOutcome, StoreError, serverless_identity,
};
use uuid::Uuid;

use crate::App;
use crate::audit::record_result;
use crate::auth::Requester;
use crate::config::Config;
use crate::error::{AppError, AppResult, ConflictReason, ProviderIdShortage, Resource};
use crate::keys::problem_for;
use crate::keys::service::key_service;
use crate::keyspaces::all_keyspaces;
use crate::regions::check_region;

/// How often a serverless deployment chooses again after a concurrent one took the provider
/// ID it chose (each retry sees that one as taken, so this bounds only a storm of them).
const PROVIDER_ID_ATTEMPTS: usize = 6;

/// A database, its datacenters (terminated ones included, by ordinal) and its keyspaces.
#[derive(Debug, Clone)]
pub struct DatabaseDetail {
    pub database: Database,
    pub datacenters: Vec<Datacenter>,
    /// Every keyspace: the initial one (`database.keyspace`) first, then the others oldest
    /// first.
    pub keyspaces: Vec<String>,
}

impl DatabaseDetail {
    /// The datacenters not yet TERMINATED.
    pub fn live(&self) -> impl Iterator<Item = &Datacenter> {
        self.datacenters
            .iter()
            .filter(|d| d.terminated_at.is_none())
    }
}

/// A creation request, as the DevOps API takes it.
#[derive(Debug, Clone)]
pub struct NewDatabase {
    pub name: String,
    pub keyspace: String,
    /// AWS, GCP or AZURE.
    pub cloud_provider: String,
    pub tier: String,
    pub capacity_units: i32,
    pub region: String,
    /// "vector" for serverless vector databases; None for classic.
    pub db_type: Option<String>,
}

/// A region to add.
#[derive(Debug, Clone)]
pub struct NewRegion {
    pub tier: String,
    pub cloud_provider: String,
    pub region: String,
}

/// `GET /v2/databases`'s selectors, as given.
#[derive(Debug, Clone, Default)]
pub struct DatabaseQuery {
    /// nonterminated (default), all, terminated, or one status in lower case (`active`, …).
    pub include: Option<String>,
    /// ALL, AWS, GCP or AZURE.
    pub provider: Option<String>,
    /// 1 to 100, default 25.
    pub limit: Option<u32>,
    pub starting_after: Option<Uuid>,
}

/// Which key a datacenter deployed now in a (type, provider, region) would be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBinding {
    /// The organization's customer key (its ID).
    Customer(String),
    /// The platform's key for the region.
    Platform,
    /// Neither: nothing can be deployed there.
    None,
}

/// The organization's customer keys read once, to say for many regions which key a
/// deployment would get (a page asks about every region of the catalog).
pub struct KeyBindings {
    keys: Vec<CustomerKey>,
}

impl KeyBindings {
    pub fn binding(
        &self,
        config: &Config,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> KeyBinding {
        match self
            .keys
            .iter()
            .find(|k| k.db_type == db_type && k.provider == provider && k.region == region)
        {
            Some(k) => KeyBinding::Customer(k.key_id.clone()),
            None if config.platform_key(provider, region).is_some() => KeyBinding::Platform,
            None => KeyBinding::None,
        }
    }
}

/// The key a datacenter is bound to: (kind, key ID, the platform account acting on it).
type Binding = (KeyKind, String, String);

fn parse_cloud(s: &str) -> AppResult<Provider> {
    s.parse::<Provider>()
        .map_err(|e| AppError::invalid("cloudProvider", format!("cloudProvider: {e}")))
}

fn db_type_of(tier: &str, db_type: Option<&str>) -> AppResult<DbType> {
    match (tier.eq_ignore_ascii_case("serverless"), db_type) {
        (true, None | Some("vector")) => Ok(DbType::Serverless),
        (false, None) => Ok(DbType::Classic),
        (_, Some(other)) => Err(AppError::invalid(
            "dbType",
            format!(
                "dbType: {other:?} is not a database type; use \"vector\" (serverless) or omit it"
            ),
        )),
    }
}

/// A datacenter about to be deployed, bound to `binding`.
fn new_datacenter(db: &Database, ordinal: i32, region: &str, binding: Binding) -> Datacenter {
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
        pending_wrapped_data_key: None,
        data_key_rotated_at: None,
    }
}

fn provision_job(dc: &Datacenter) -> NewJob {
    NewJob {
        kind: JobKind::ProvisionDatacenter,
        database_id: dc.database_id,
        datacenter_id: Some(dc.id.clone()),
    }
}

pub struct Databases<'a>(pub(crate) &'a App);

impl Databases<'_> {
    async fn detail(&self, database: Database) -> AppResult<DatabaseDetail> {
        let datacenters = self.0.store.list_datacenters(database.id).await?;
        let additional = self.0.store.list_keyspaces(database.id).await?;
        Ok(DatabaseDetail {
            keyspaces: all_keyspaces(&database, &additional),
            database,
            datacenters,
        })
    }

    async fn find(&self, who: &Requester, id: Uuid) -> AppResult<Database> {
        self.0
            .store
            .get_database(who.org_id(), id)
            .await?
            .ok_or(AppError::NotFound(Resource::Database(id)))
    }

    /// Which key a datacenter deployed now in (type, provider, region) is bound to.
    async fn bind_key(
        &self,
        org: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> AppResult<Binding> {
        if let Some(k) = self
            .0
            .store
            .get_customer_key(org, db_type, provider, region)
            .await?
        {
            crate::keys::deployable(&k)?;
            return Ok((KeyKind::Customer, k.key_id, k.provider_account));
        }
        match self.0.config.platform_key(provider, region) {
            Some(p) => Ok((KeyKind::Platform, p.key_id.clone(), p.account.clone())),
            None => Err(AppError::NoPlatformKey {
                provider,
                region: region.to_string(),
            }),
        }
    }

    /// The provider ID a serverless datacenter under customer key `key_id` takes: the first of
    /// the organization's identities in the region that no live serverless datacenter holds
    /// and that the key lets in (asked of the key's service, as that identity). None left:
    /// refused with what the customer does about it.
    async fn free_provider_id(
        &self,
        org: Uuid,
        provider: Provider,
        region: &str,
        key_id: &str,
    ) -> AppResult<String> {
        let service = key_service(provider)?;
        let ids = self.0.accounts().identities(org, provider, region).await?;
        let live = self
            .0
            .store
            .live_datacenters_of_key(org, key_id, region)
            .await?;
        let holders: Vec<&Datacenter> = live
            .iter()
            .filter(|d| serverless_identity(d).is_some())
            .collect();
        let mut not_admitted = Vec::new();
        for id in &ids {
            if holders.iter().any(|d| d.provider_account == id.account_id) {
                continue;
            }
            let identity = id.in_region(region);
            let answer = match self.0.data.provider_for(&identity, org, key_id).await {
                Ok(kms) => service.admits(kms.as_ref(), key_id, org).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(true) => return Ok(id.account_id.clone()),
                Ok(false) => not_admitted.push((
                    id.principal.clone(),
                    service.how_to_admit(&id.principal, key_id),
                )),
                // The key itself refuses (disabled, deleted) or the KMS is down: nothing to do
                // with provider IDs, so say that instead.
                Err(e) if e.kind.is_transient() => {
                    return Err(AppError::KmsUnavailable(format!(
                        "the KMS did not answer while checking key {key_id} for this deployment; nothing was created, \
                         retry later"
                    )));
                }
                Err(e) => {
                    return Err(AppError::KeyCheckFailed(problem_for(
                        provider, &e.kind, key_id, &e.message,
                    )));
                }
            }
        }
        let mut held = Vec::new();
        for d in &holders {
            let name = self
                .0
                .store
                .get_database(org, d.database_id)
                .await?
                .map(|db| db.name)
                .unwrap_or_else(|| d.database_id.to_string());
            let principal = ids
                .iter()
                .find(|i| i.account_id == d.provider_account)
                .map(|i| i.principal.clone())
                .unwrap_or_else(|| d.provider_account.clone());
            held.push((principal, name));
        }
        Err(AppError::Conflict(ConflictReason::NoFreeProviderId(
            ProviderIdShortage {
                provider,
                region: region.to_string(),
                key_id: key_id.to_string(),
                held,
                not_admitted,
            },
        )))
    }

    /// The binding a datacenter of `db` in `region` deploys with: a serverless one under a
    /// customer key acts as a provider ID of its own.
    async fn binding_for(
        &self,
        db: &Database,
        region: &str,
        binding: &Binding,
    ) -> AppResult<Binding> {
        let (kind, key_id, account) = binding;
        // A login the customer gave (OpenBao) is the key's identity for every database:
        // there is no platform identity to give each one.
        if db.db_type == DbType::Serverless
            && *kind == KeyKind::Customer
            && !crate::logins::needs_login(db.provider)
        {
            let own = self
                .free_provider_id(db.org_id, db.provider, region, key_id)
                .await?;
            return Ok((*kind, key_id.clone(), own));
        }
        Ok((*kind, key_id.clone(), account.clone()))
    }

    /// Creates a database; provisioning continues in the background (PENDING →
    /// INITIALIZING → ACTIVE). The answer says which key will encrypt it.
    pub async fn create(&self, who: &Requester, req: &NewDatabase) -> AppResult<DatabaseDetail> {
        let place = format!("{} {}", req.cloud_provider.to_ascii_lowercase(), req.region);
        let res = self.create_checked(who, req).await;
        let (target, detail) = match &res {
            Ok(d) => {
                let enc = d
                    .datacenters
                    .first()
                    .map(|dc| match dc.key_kind {
                        KeyKind::Customer => format!("customer key {}", dc.key_id),
                        KeyKind::Platform => "platform-managed key platform-managed".to_string(),
                    })
                    .unwrap_or_default();
                (
                    d.database.id.to_string(),
                    format!("{} in {place}, {enc}", req.name),
                )
            }
            Err(_) => (req.name.clone(), place),
        };
        record_result(self.0, who, AuditAction::DbCreate, &target, &res, &detail).await;
        res
    }

    async fn create_checked(
        &self,
        who: &Requester,
        req: &NewDatabase,
    ) -> AppResult<DatabaseDetail> {
        who.require(Permission::OrgDbCreate)?;
        check_name(&req.name).map_err(|m| AppError::invalid("name", m))?;
        check_keyspace(&req.keyspace).map_err(|m| AppError::invalid("keyspace", m))?;
        let provider = parse_cloud(&req.cloud_provider)?;
        let db_type = db_type_of(&req.tier, req.db_type.as_deref())?;
        let tier = check_tier(db_type, &req.tier, req.capacity_units)
            .map_err(|m| AppError::invalid("tier", m))?;
        check_region(&self.0.config, &who.org, provider, &req.region)?;
        let org = who.org_id();
        let binding = self.bind_key(org, db_type, provider, &req.region).await?;
        let now = Utc::now().trunc_subsecs(3);
        let db = Database {
            id: Uuid::new_v4(),
            org_id: org,
            name: req.name.clone(),
            keyspace: req.keyspace.clone(),
            db_type,
            provider,
            tier,
            capacity_units: req.capacity_units,
            status: DatabaseStatus::Pending,
            message: String::new(),
            owner: who.client_id.clone(),
            customer_keyed: binding.0 == KeyKind::Customer,
            created_at: now,
            updated_at: now,
            terminated_at: None,
            last_used_at: None,
        };
        for attempt in 1.. {
            let dc = new_datacenter(
                &db,
                1,
                &req.region,
                self.binding_for(&db, &req.region, &binding).await?,
            );
            match self
                .0
                .store
                .create_database(&db, &dc, &provision_job(&dc), &self.0.config.quotas)
                .await
            {
                Ok(CreateOutcome::Created) => {}
                Ok(CreateOutcome::OverQuota(e)) => return Err(AppError::QuotaExceeded(e)),
                // A concurrent deployment took that provider ID first: choose again.
                Err(StoreError::ProviderIdTaken(_)) if attempt < PROVIDER_ID_ATTEMPTS => continue,
                Err(StoreError::ProviderIdTaken(_)) => {
                    return Err(AppError::Conflict(
                        ConflictReason::AccountAssignmentUnsettled,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            break;
        }
        self.detail(db).await
    }

    /// The organization's databases (TERMINATED ones with `include=all` or `terminated`).
    pub async fn list(&self, who: &Requester, q: &DatabaseQuery) -> AppResult<Vec<DatabaseDetail>> {
        who.require(Permission::OrgDbView)?;
        let limit = q.limit.unwrap_or(25);
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid_parameter(
                "limit",
                "limit: must be between 1 and 100",
            ));
        }
        let include = q.include.as_deref().map(str::to_ascii_lowercase);
        let (include_terminated, only_terminated, status) = match include.as_deref() {
            None | Some("nonterminated") => (false, false, None),
            Some("all") => (true, false, None),
            Some("terminated") => (true, true, None),
            // The original lists this one; no keyplane database is ever in it.
            Some("suspending") => return Ok(Vec::new()),
            Some(other) => match other.to_ascii_uppercase().parse::<DatabaseStatus>() {
                Ok(status) => (true, false, Some(status)),
                Err(_) => {
                    return Err(AppError::invalid_parameter(
                        "include",
                        format!(
                            "include: {:?}; use nonterminated, all, terminated or a status in lower case ({})",
                            other.chars().take(64).collect::<String>(),
                            DatabaseStatus::ALL
                                .iter()
                                .map(|s| s.as_str().to_ascii_lowercase())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            },
        };
        let provider =
            match q.provider.as_deref() {
                None => None,
                Some(p) if p.eq_ignore_ascii_case("all") => None,
                Some(p) => Some(p.parse::<Provider>().map_err(|e| {
                    AppError::invalid_parameter("provider", format!("provider: {e}"))
                })?),
            };
        let filter = DatabaseFilter {
            include_terminated,
            only_terminated,
            provider,
            status,
            starting_after: q.starting_after,
            limit,
        };
        let dbs = self.0.store.list_databases(who.org_id(), &filter).await?;
        // Three queries for the page, not two more per database (a portal tab polls this).
        let ids: Vec<Uuid> = dbs.iter().map(|d| d.id).collect();
        let mut datacenters: HashMap<Uuid, Vec<Datacenter>> = HashMap::new();
        for dc in self.0.store.list_datacenters_of(&ids).await? {
            datacenters.entry(dc.database_id).or_default().push(dc);
        }
        let mut keyspaces: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (db, name) in self.0.store.list_keyspaces_of(&ids).await? {
            keyspaces.entry(db).or_default().push(name);
        }
        Ok(dbs
            .into_iter()
            .map(|database| DatabaseDetail {
                keyspaces: all_keyspaces(
                    &database,
                    keyspaces.get(&database.id).map_or(&[][..], Vec::as_slice),
                ),
                datacenters: datacenters.remove(&database.id).unwrap_or_default(),
                database,
            })
            .collect())
    }

    /// One database, with each datacenter's key and state.
    pub async fn get(&self, who: &Requester, id: Uuid) -> AppResult<DatabaseDetail> {
        who.require(Permission::OrgDbView)?;
        let db = self.find(who, id).await?;
        self.detail(db).await
    }

    /// One of the organization's databases, for a form that then calls a change (which
    /// checks its own permission).
    pub async fn lookup(&self, who: &Requester, id: Uuid) -> AppResult<DatabaseDetail> {
        let db = self.find(who, id).await?;
        self.detail(db).await
    }

    /// The database's datacenters, one per region.
    pub async fn datacenters(&self, who: &Requester, id: Uuid) -> AppResult<Vec<Datacenter>> {
        who.require(Permission::OrgDbView)?;
        let db = self.find(who, id).await?;
        Ok(self.0.store.list_datacenters(db.id).await?)
    }

    /// Terminates a database: TERMINATING, then TERMINATED; its files and keys are deleted.
    pub async fn terminate(&self, who: &Requester, id: Uuid) -> AppResult<()> {
        let res = self.terminate_checked(who, id).await;
        record_result(
            self.0,
            who,
            AuditAction::DbTerminate,
            &id.to_string(),
            &res,
            "",
        )
        .await;
        res
    }

    async fn terminate_checked(&self, who: &Requester, id: Uuid) -> AppResult<()> {
        who.require(Permission::OrgDbTerminate)?;
        let db = self.find(who, id).await?;
        if matches!(
            db.status,
            DatabaseStatus::Terminating | DatabaseStatus::Terminated
        ) {
            return Ok(());
        }
        let job = NewJob {
            kind: JobKind::TerminateDatabase,
            database_id: id,
            datacenter_id: None,
        };
        self.0
            .store
            .enqueue_job(&job, Some((id, DatabaseStatus::Terminating)))
            .await?;
        Ok(())
    }

    /// Adds one region (one per request). A customer-keyed database needs a customer key
    /// registered there first.
    pub async fn add_region(&self, who: &Requester, id: Uuid, req: &[NewRegion]) -> AppResult<()> {
        let regions = req
            .iter()
            .map(|a| format!("{} {}", a.cloud_provider.to_ascii_lowercase(), a.region))
            .collect::<Vec<_>>()
            .join(", ");
        let res = self.add_region_checked(who, id, req).await;
        record_result(
            self.0,
            who,
            AuditAction::DbRegionAdd,
            &id.to_string(),
            &res,
            &regions,
        )
        .await;
        res
    }

    async fn add_region_checked(
        &self,
        who: &Requester,
        id: Uuid,
        req: &[NewRegion],
    ) -> AppResult<()> {
        who.require(Permission::OrgDbExpand)?;
        let [add] = req else {
            return Err(AppError::invalid(
                "datacenters",
                format!(
                    "send exactly one datacenter per request (got {})",
                    req.len()
                ),
            ));
        };
        let db = self.find(who, id).await?;
        let provider = parse_cloud(&add.cloud_provider)?;
        if provider != db.provider {
            return Err(AppError::ProviderMismatch {
                database: db.provider,
            });
        }
        check_tier(db.db_type, &add.tier, 1).map_err(|m| AppError::invalid("tier", m))?;
        check_region(&self.0.config, &who.org, provider, &add.region)?;
        let dcs = self.0.store.list_datacenters(id).await?;
        // The rule is applied again, atomically, by the store below; checked here first so
        // that a refusal is reported before the key binding is looked up.
        let live = dcs
            .iter()
            .filter(|d| d.terminated_at.is_none())
            .map(|d| d.region.as_str());
        check_add_region(db.status, live, &add.region)
            .map_err(|r| AppError::Conflict(ConflictReason::Region(r)))?;
        let binding = if db.customer_keyed {
            let key = self
                .0
                .store
                .get_customer_key(db.org_id, db.db_type, provider, &add.region)
                .await?
                .ok_or_else(|| AppError::NoCustomerKey {
                    db_type: db.db_type,
                    provider,
                    region: add.region.clone(),
                })?;
            crate::keys::deployable(&key)?;
            (KeyKind::Customer, key.key_id, key.provider_account)
        } else {
            self.bind_key(db.org_id, db.db_type, provider, &add.region)
                .await?
        };
        let ordinal = dcs.iter().map(|d| d.ordinal).max().unwrap_or(0) + 1;
        for attempt in 1.. {
            let dc = new_datacenter(
                &db,
                ordinal,
                &add.region,
                self.binding_for(&db, &add.region, &binding).await?,
            );
            return match self
                .0
                .store
                .add_datacenter(&dc, &provision_job(&dc), &self.0.config.quotas)
                .await
            {
                Ok(AddRegionOutcome::Added) => Ok(()),
                Ok(AddRegionOutcome::Refused(r)) => {
                    Err(AppError::Conflict(ConflictReason::Region(r)))
                }
                Ok(AddRegionOutcome::OverQuota(e)) => Err(AppError::QuotaExceeded(e)),
                // A concurrent deployment took that provider ID first: choose again.
                Err(StoreError::ProviderIdTaken(_)) if attempt < PROVIDER_ID_ATTEMPTS => continue,
                Err(StoreError::ProviderIdTaken(_)) => Err(AppError::Conflict(
                    ConflictReason::AccountAssignmentUnsettled,
                )),
                Err(e) => Err(e.into()),
            };
        }
        Err(AppError::bug("the deployment loop ended"))
    }

    /// Removes one region: the database goes to MAINTENANCE while the region's files and
    /// data key are deleted. Never the last region, never during another region change.
    pub async fn terminate_datacenter(
        &self,
        who: &Requester,
        id: Uuid,
        dc_id: &str,
    ) -> AppResult<()> {
        let res = self.terminate_datacenter_checked(who, id, dc_id).await;
        record_result(
            self.0,
            who,
            AuditAction::DbRegionTerminate,
            &format!("{id}/{dc_id}"),
            &res,
            "",
        )
        .await;
        res
    }

    async fn terminate_datacenter_checked(
        &self,
        who: &Requester,
        id: Uuid,
        dc_id: &str,
    ) -> AppResult<()> {
        who.require(Permission::OrgDbTerminate)?;
        let db = self.find(who, id).await?;
        let job = NewJob {
            kind: JobKind::TerminateDatacenter,
            database_id: db.id,
            datacenter_id: Some(dc_id.to_string()),
        };
        match self
            .0
            .store
            .remove_datacenter(who.org_id(), db.id, dc_id, &job)
            .await?
        {
            RemoveRegionOutcome::Requested | RemoveRegionOutcome::AlreadyRemoved => Ok(()),
            RemoveRegionOutcome::NoSuchDatacenter => {
                Err(AppError::NotFound(Resource::Datacenter {
                    database: id,
                    datacenter: dc_id.to_string(),
                }))
            }
            RemoveRegionOutcome::Refused(r) => Err(AppError::Conflict(ConflictReason::Region(r))),
        }
    }

    /// Which key a deployment would get, region by region (the portal's create and add
    /// region forms say so before anything is deployed).
    pub async fn key_bindings(&self, who: &Requester) -> KeyBindings {
        let keys = self
            .0
            .store
            .list_customer_keys(who.org_id(), None)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading customer keys");
                Vec::new()
            });
        KeyBindings { keys }
    }
}
