//! keyplane's persistent state: organizations, enterprises, tokens, provider-account
//! assignments, customer keys, the hash-chained audit log, databases with their datacenters,
//! the background job queue (leased, so that several processes on one PostgreSQL share it),
//! the portal's sessions, and webhooks with their outbox of deliveries, behind one [`Store`] trait with a SQLite and a PostgreSQL
//! implementation.
//!
//! Every write is one transaction; schema migrations run when a store is opened. Rules that
//! must hold under concurrency (region changes, quotas, exclusive identities) are applied
//! inside the transaction that makes the change. The SQLite
//! file, its `-wal`/`-shm` companions and any folder created for them are owner-only.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::databases::RegionChangeRefusal;
use keyplane_core::keys::OnInaccessible;
use keyplane_core::{DatabaseStatus, DbType, KeyStatus, Provider, QuotaExceeded, Quotas, Role};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub use webhooks::{
    AttemptResult, Delivery, DeliveryAttempt, DeliveryLog, DeliveryState, NewDelivery, Webhook,
};
pub(crate) use webhooks::{events_column, parse_events};

// Column lists shared by both backends, as macros so that every query stays a `&'static str`
// (`concat!`): both statement caches are keyed by the SQL text and nothing is formatted per
// call. Defined before the backend modules so that they are in scope there.
macro_rules! enterprise_columns {
    () => {
        "id, name, created_at"
    };
}
macro_rules! org_columns {
    () => {
        "o.id, o.name, o.enterprise_id, o.unlocked_regions, o.created_at"
    };
}
macro_rules! token_columns {
    () => {
        "t.client_id, t.org_id, t.role, t.secret_hash, t.description, t.created_at, t.revoked_at"
    };
}
/// How many columns `token_columns!` names: where the organization's start in `authenticate`.
const TOKEN_COLUMN_COUNT: usize = 7;
macro_rules! customer_key_columns {
    () => {
        "org_id, db_type, provider, region, key_id, provider_account, created_at, created_by, \
         status, status_reason, status_since, last_check_at, last_check_ok, last_check_message, \
         bound_at, binding_warning"
    };
}
macro_rules! audit_columns {
    () => {
        "seq, org_id, at, actor, action, target, outcome, reason, prev_hash, hash"
    };
}
macro_rules! webhook_columns {
    () => {
        "id, org_id, url, events, sealed_secret, after_seq, created_at"
    };
}
macro_rules! delivery_columns {
    () => {
        "id, webhook_id, org_id, audit_seq, event, payload, state, attempts, next_attempt_at, \
         last_status, last_error, created_at, updated_at"
    };
}
macro_rules! database_columns {
    () => {
        "id, org_id, name, keyspace, db_type, provider, tier, capacity_units, status, message, \
         owner, customer_keyed, created_at, updated_at, terminated_at, last_used_at"
    };
}
macro_rules! datacenter_columns {
    () => {
        "id, database_id, org_id, ordinal, provider, region, tier, status, message, key_kind, \
         key_id, provider_account, wrapped_data_key, kms_failing_since, created_at, updated_at, \
         terminated_at, pending_wrapped_data_key, data_key_rotated_at"
    };
}
macro_rules! job_columns {
    () => {
        "id, kind, database_id, datacenter_id, state, attempts, last_error, not_before, created_at, \
         lease_owner, lease_until, taken_over_from"
    };
}

mod files;
mod postgres;
mod sqlite;
mod webhooks;

pub use files::{DIR_MODE, FILE_MODE, create_private_dir};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What an organization chose an inaccessible key to do, for all its keys (`key_id` None) or
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InaccessibleChoice {
    pub org_id: Uuid,
    pub key_id: Option<String>,
    pub choice: OnInaccessible,
    pub updated_at: DateTime<Utc>,
}

/// The stored duration column of a choice.
pub(crate) fn alert_secs(c: OnInaccessible) -> Option<i64> {
    match c {
        OnInaccessible::Suspend => None,
        OnInaccessible::AlertOnly { for_secs } => Some(i64::from(for_secs)),
    }
}

/// A stored choice read back; any duration that fits is accepted (the bound is the
/// application's, checked when the choice is made).
pub(crate) fn choice_from(action: &str, secs: Option<i64>) -> Result<OnInaccessible> {
    OnInaccessible::from_parts(action, secs, u32::MAX)
        .map_err(|e| StoreError::Corrupt(format!("on_inaccessible: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: Box<StoreError>,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A serverless datacenter under a customer key names a provider ID that another live
    /// serverless datacenter of the organization holds in the region (see
    /// [`serverless_identity`]).
    #[error("provider ID {0} is already held by another serverless database in the region")]
    ProviderIdTaken(String),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enterprise {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub enterprise_id: Option<Uuid>,
    /// Per provider, the regions unlocked for this organization. A provider absent from the
    /// map has every catalog region unlocked (the default).
    pub unlocked_regions: BTreeMap<Provider, Vec<String>>,
    pub created_at: DateTime<Utc>,
}

/// A stored application token: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub client_id: String,
    pub org_id: Uuid,
    /// Stored in [`Role::to_storage`] form; a stored role that does not parse is corruption.
    pub role: Role,
    pub secret_hash: Vec<u8>,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A platform cloud account assigned to an organization. `ordinal` orders an
/// organization's assignments per provider (0 is the first one ever chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAssignment {
    pub org_id: Uuid,
    pub provider: Provider,
    pub account_id: String,
    pub ordinal: i64,
    pub created_at: DateTime<Utc>,
}

/// A customer key registered for (organization, database type, provider, region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerKey {
    pub org_id: Uuid,
    pub db_type: DbType,
    pub provider: Provider,
    pub region: String,
    /// For AWS, the key ARN.
    pub key_id: String,
    /// The platform account that validated it and acts on it.
    pub provider_account: String,
    pub created_at: DateTime<Utc>,
    /// The client ID of the token that registered it.
    pub created_by: String,
    pub status: KeyStatus,
    /// Why the key is INACCESSIBLE (None otherwise).
    pub status_reason: Option<String>,
    pub status_since: DateTime<Utc>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub last_check_ok: Option<bool>,
    pub last_check_message: Option<String>,
    /// When the platform proved that the key's policy refuses every other organization
    /// (registration does; the key monitor does for keys registered before it did). None:
    /// not proven yet.
    pub bound_at: Option<DateTime<Utc>>,
    /// The key monitor's warning while the key's policy lets the platform use it for any
    /// organization. The key keeps working; it is not a status.
    pub binding_warning: Option<String>,
}

/// What checking a key's organization binding found (see [`Store::record_key_binding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBinding {
    /// The key's policy refuses other organizations.
    Bound { at: DateTime<Utc> },
    /// The key's policy lets the platform use it for any organization; the warning to show.
    Unbound { warning: String },
}

/// What a revoked key's datacenters' reason starts with, as a LIKE pattern: resuming refuses
/// such a datacenter.
pub(crate) fn revoked_like() -> String {
    format!("{}%", keyplane_core::keys::REVOKED_REASON)
}

/// A new status and check result for a registered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatusUpdate {
    /// The key the check was about: a result for a key the slot no longer holds (replaced
    /// while it was checked) is not recorded on the slot's new key.
    pub key_id: String,
    pub status: KeyStatus,
    pub status_reason: Option<String>,
    pub checked_at: DateTime<Utc>,
    pub check_ok: bool,
    pub check_message: String,
}

/// An audit entry to append. The store assigns `seq`, `at` and the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub org_id: Uuid,
    /// Who: e.g. `token:<client id>` or `system:key-monitor`.
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub outcome: AuditOutcome,
    pub reason: String,
}

/// A stored audit entry. `hash` = [`keyplane_core::audit::entry_hash`] over `prev_hash`
/// and the fields, so entries form one chain across all organizations in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub org_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub outcome: AuditOutcome,
    pub reason: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A database of an organization. Its datacenters (one per region) hold the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub keyspace: String,
    pub db_type: DbType,
    pub provider: Provider,
    pub tier: String,
    pub capacity_units: i32,
    pub status: DatabaseStatus,
    /// Why the status is what it is (empty when ACTIVE).
    pub message: String,
    /// Client ID of the token that created it.
    pub owner: String,
    /// Whether its first datacenter was bound to a customer key: every region added later
    /// must then have a customer key too.
    pub customer_keyed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// When its data was last read or written (recorded at most about once a minute, so it
    /// lags by up to that much); None until first used.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How a datacenter's data key is wrapped. Fixed when the datacenter is deployed, never
/// changed afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The organization's customer key for (type, provider, region).
    Customer,
    /// The platform's own key for the region.
    Platform,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Customer => "customer",
            KeyKind::Platform => "platform",
        }
    }

    /// The inverse of [`KeyKind::as_str`].
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "customer" => Some(KeyKind::Customer),
            "platform" => Some(KeyKind::Platform),
            _ => None,
        }
    }
}

/// One region of a database. ID: `<database id>-<ordinal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datacenter {
    pub id: String,
    pub database_id: Uuid,
    pub org_id: Uuid,
    pub ordinal: i32,
    pub provider: Provider,
    pub region: String,
    pub tier: String,
    pub status: DatabaseStatus,
    pub message: String,
    pub key_kind: KeyKind,
    /// The key ARN the data key is wrapped under.
    pub key_id: String,
    /// The platform account that acts on that key.
    pub provider_account: String,
    /// The data key as the KMS wrapped it; None until provisioning generated it.
    pub wrapped_data_key: Option<Vec<u8>>,
    /// When a transient KMS failure was first seen and not yet cleared (grace period).
    pub kms_failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// The next data key while a rotation re-encrypts the file (wrapped under `key_id`);
    /// after a crash the file opens under this one or the key of record, never neither.
    pub pending_wrapped_data_key: Option<Vec<u8>>,
    /// When the data key of record was last rotated (None: never, it dates from creation).
    pub data_key_rotated_at: Option<DateTime<Utc>>,
}

/// Work the background worker does. Its progress lives in the rows it changes, so a job
/// re-run after a crash resumes where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    ProvisionDatacenter,
    TerminateDatacenter,
    TerminateDatabase,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ProvisionDatacenter => "provision_datacenter",
            JobKind::TerminateDatacenter => "terminate_datacenter",
            JobKind::TerminateDatabase => "terminate_database",
        }
    }

    /// The inverse of [`JobKind::as_str`].
    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "provision_datacenter" => Some(JobKind::ProvisionDatacenter),
            "terminate_datacenter" => Some(JobKind::TerminateDatacenter),
            "terminate_database" => Some(JobKind::TerminateDatabase),
            _ => None,
        }
    }
}

/// Where a job is in its life. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its `not_before` and a worker.
    Pending,
    /// Claimed by a worker, which holds its lease (`lease_owner` until `lease_until`) and
    /// renews it while it works. A job whose lease passed (its worker died or stalled) is
    /// claimable again.
    Running,
    Done,
    /// Given up: a permanent error, or too many transient ones.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// The inverse of [`JobState::as_str`].
    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "pending" => Some(JobState::Pending),
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

/// What a creation under a quota did ([`Store::create_database`], [`Store::insert_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The organization already holds as many as its quota allows; nothing was stored.
    OverQuota(QuotaExceeded),
}

/// What [`Store::add_datacenter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRegionOutcome {
    /// The datacenter is stored, the database is in MAINTENANCE and the job is queued.
    Added,
    /// The rule ([`keyplane_core::databases::check_add_region`]) refused it; nothing changed.
    Refused(RegionChangeRefusal),
    /// The organization already holds as many datacenters as its quota allows; nothing
    /// changed.
    OverQuota(QuotaExceeded),
}

/// What [`Store::delete_customer_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteKeyOutcome {
    /// The key is no longer registered; this is what it was.
    Deleted(Box<CustomerKey>),
    NotRegistered,
    /// Live datacenters of the key's type are encrypted under it (their IDs); nothing changed.
    InUse(Vec<String>),
}

/// What [`Store::replace_customer_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceKeyOutcome {
    /// The slot holds the new key; this is the key it held.
    Replaced(Box<CustomerKey>),
    NotRegistered,
    /// The slot's key is revoked: a revocation is ended by unrevoking, never by replacing.
    Revoked(Box<CustomerKey>),
    /// The slot no longer holds the key the replacement was checked against (a concurrent
    /// change); this is what it holds.
    Changed(Box<CustomerKey>),
}

/// A datacenter's data key moved from one customer key to another: what
/// [`Store::rewrap_datacenter`] swaps, if the datacenter still holds `from_wrapped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub datacenter_id: String,
    pub db_type: DbType,
    pub from_key_id: String,
    pub from_wrapped: Vec<u8>,
    pub to_key_id: String,
    pub to_account: String,
    pub to_wrapped: Vec<u8>,
}

/// What [`Store::rewrap_datacenter`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapOutcome {
    /// The datacenter's key of record is the new one; the old wrapped key is gone.
    Rewrapped,
    /// The datacenter is terminated, or no longer holds the wrapped key the rewrap started
    /// from (another rewrap won); nothing changed.
    Stale,
    /// The region's key is no longer the destination, or it is revoked; nothing changed.
    DestinationChanged,
}

/// What [`Store::remove_datacenter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveRegionOutcome {
    /// The datacenter is TERMINATING, the database in MAINTENANCE and the job queued.
    Requested,
    /// The datacenter is already TERMINATING or TERMINATED; nothing changed.
    AlreadyRemoved,
    /// The database has no datacenter with that ID.
    NoSuchDatacenter,
    /// The rule ([`keyplane_core::databases::check_remove_region`]) refused it; nothing
    /// changed.
    Refused(RegionChangeRefusal),
}

/// The message a database in MAINTENANCE carries while a region is being removed.
pub const REMOVING_A_REGION: &str = "removing a region";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: JobKind,
    pub database_id: Uuid,
    pub datacenter_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub database_id: Uuid,
    pub datacenter_id: Option<String>,
    pub state: JobState,
    pub attempts: i32,
    pub last_error: String,
    pub not_before: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The replica that holds (or last held) the job's lease.
    pub lease_owner: Option<String>,
    /// Until when `lease_owner` holds it; renewed while the job runs.
    pub lease_until: Option<DateTime<Utc>>,
    /// Whose expired lease the latest claim took the job over from (None when it was
    /// claimed from the queue).
    pub taken_over_from: Option<String>,
}

/// Whether a replica still held a job's lease when it renewed it or recorded the job's
/// outcome. A replica that lost it (another one took the job over) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// Another replica took the job over, or the job is no longer running.
    Lost,
}

/// A portal session to store. The random ID its cookie carries is never stored, only its
/// SHA-256; no token secret is stored at all (the session signs in by client ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPortalSession {
    pub id_hash: [u8; 32],
    /// The organization and token (client ID) it was started with.
    pub org_id: Uuid,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A stored portal session: the organizations it signed in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    pub id_hash: Vec<u8>,
    /// The organization the pages act on, when its login is still there.
    pub current_org: Option<Uuid>,
    /// Oldest first (a login added again moves to the end).
    pub logins: Vec<PortalLogin>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One organization a portal session signed in to, and the token that speaks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLogin {
    pub org_id: Uuid,
    pub client_id: String,
    pub added_at: DateTime<Utc>,
}

/// Filters of `GET /v2/databases`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseFilter {
    /// Include TERMINATED databases.
    pub include_terminated: bool,
    /// Only TERMINATED ones (the API's `include=terminated`).
    pub only_terminated: bool,
    pub provider: Option<Provider>,
    /// Only databases in this status (the API's `include=<status>`); TERMINATED ones need
    /// `include_terminated` too.
    pub status: Option<DatabaseStatus>,
    /// Page after this ID (ordering: created_at, then id).
    pub starting_after: Option<Uuid>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "sqlite" or "postgres", for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Succeeds when the store answers a trivial query (readiness).
    async fn ping(&self) -> Result<()>;

    async fn create_enterprise(&self, name: &str) -> Result<Enterprise>;
    async fn get_enterprise(&self, id: Uuid) -> Result<Option<Enterprise>>;
    async fn list_enterprises(&self) -> Result<Vec<Enterprise>>;

    async fn create_org(&self, name: &str, enterprise_id: Option<Uuid>) -> Result<Organization>;
    async fn get_org(&self, id: Uuid) -> Result<Option<Organization>>;
    /// All organizations, or those of one enterprise, ordered by name.
    async fn list_orgs(&self, enterprise_id: Option<Uuid>) -> Result<Vec<Organization>>;
    /// `None` unlocks every catalog region of the provider again. Err(NotFound) when the
    /// organization does not exist.
    async fn set_unlocked_regions(
        &self,
        org_id: Uuid,
        provider: Provider,
        regions: Option<Vec<String>>,
    ) -> Result<()>;

    /// Stores the token unless the organization already holds `quotas.tokens` unrevoked
    /// ones, counted in the transaction that inserts (so concurrent inserts cannot overshoot).
    async fn insert_token(&self, token: &TokenRecord, quotas: &Quotas) -> Result<CreateOutcome>;
    /// The token and its organization in one round trip: this runs on every request.
    async fn authenticate(&self, client_id: &str) -> Result<Option<(TokenRecord, Organization)>>;
    /// Tokens of an organization, newest first, revoked ones included.
    async fn list_tokens(&self, org_id: Uuid) -> Result<Vec<TokenRecord>>;
    /// Marks the token revoked and ends its portal logins, in one transaction. False when the
    /// organization has no such unrevoked token.
    async fn revoke_token(&self, org_id: Uuid, client_id: &str) -> Result<bool>;

    /// The organization's assignments for a provider, by ordinal.
    async fn assigned_accounts(
        &self,
        org_id: Uuid,
        provider: Provider,
    ) -> Result<Vec<AccountAssignment>>;
    /// How many organizations each account is assigned to, to spread new assignments.
    async fn account_usage(&self, provider: Provider) -> Result<BTreeMap<String, i64>>;
    /// Inserts the assignment at `ordinal` unless that ordinal (or that account) is already
    /// taken for the organization and provider. Returns false on such a conflict, so that two
    /// racing first requests settle on one account: the loser re-reads.
    async fn try_assign_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool>;

    /// Inserts the assignment at `ordinal`, as [`Store::try_assign_account`] does, and only if
    /// no other organization holds `account_id` of the provider: identities of providers
    /// without a context condition are never shared. Concurrent calls for one account admit
    /// exactly one organization. Returns false when refused.
    async fn try_assign_exclusive_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool>;

    /// Small named values the process keeps across restarts (e.g. the dev bootstrap).
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless `key` already has one; returns the value now stored.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String>;
    /// Inserts the key unless one is registered for its (organization, type, provider,
    /// region): then returns that one and changes nothing.
    async fn insert_customer_key(&self, key: &CustomerKey) -> Result<Option<CustomerKey>>;
    async fn get_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Option<CustomerKey>>;
    /// The organization's keys (of one type, or all), ordered by type, provider, region.
    async fn list_customer_keys(
        &self,
        org_id: Uuid,
        db_type: Option<DbType>,
    ) -> Result<Vec<CustomerKey>>;
    /// Records a check result; `status_since` changes only when the status does. False when
    /// no such key is registered.
    async fn update_customer_key_status(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool>;
    /// Revokes a key in one transaction: its status becomes REVOKED (reason `reason`, since
    /// `at`) and every live datacenter of its type under it that serves, is suspended or is
    /// being provisioned (ACTIVE, MAINTENANCE, SUSPENDED, PENDING, INITIALIZING) becomes
    /// SUSPENDED with `reason` (one being provisioned then stays so when it is activated). Returns the IDs of
    /// the datacenters it suspended or re-labelled; None when no such key is registered. A key
    /// already revoked is left as it is (its datacenters are suspended again all the same).
    async fn revoke_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>>;
    /// Deregisters a key in one transaction, unless a live (not TERMINATED) datacenter of
    /// its type is encrypted under it: the rule that data never loses its registered key.
    async fn delete_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<DeleteKeyOutcome>;
    /// Replaces the slot's key by `new` (its check results, AVAILABLE) in one transaction,
    /// if the slot still holds `expected_key_id` and it is not revoked. Datacenters keep the
    /// key they are encrypted under.
    async fn replace_customer_key(
        &self,
        expected_key_id: &str,
        new: &CustomerKey,
    ) -> Result<ReplaceKeyOutcome>;
    /// Moves a datacenter's key of record to `rewrap.to_*` in one transaction, if it still
    /// holds `from_wrapped` under `from_key_id` and the region's key (of its type) is
    /// `to_key_id` and not revoked; that key becomes IN_USE if it was AVAILABLE. The old
    /// wrapped key is overwritten in the same statement: the datacenter is always under
    /// exactly one key.
    async fn rewrap_datacenter(&self, rewrap: &Rewrap) -> Result<RewrapOutcome>;
    /// Ends a revocation: a REVOKED key takes `update`'s status and check. False when the key
    /// is not registered or not revoked (a concurrent unrevoke won).
    async fn unrevoke_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool>;
    /// Stores (or replaces) the sealed login the organization gave with `key_id`.
    async fn put_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Sets (`Some`) or clears (`None`) what an inaccessible key does, for the organization
    /// (`key_id` None) or one of its keys.
    async fn set_on_inaccessible(
        &self,
        org_id: Uuid,
        key_id: Option<&str>,
        choice: Option<OnInaccessible>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The choices of one organization, or of every organization (the key monitor's read).
    async fn on_inaccessible_choices(
        &self,
        org_id: Option<Uuid>,
    ) -> Result<Vec<InaccessibleChoice>>;
    /// The sealed login the organization gave with `key_id`, if any.
    async fn get_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
    ) -> Result<Option<Vec<u8>>>;
    /// Every organization's revoked keys, for the key monitor.
    async fn revoked_customer_keys(&self) -> Result<Vec<CustomerKey>>;
    /// Every organization's keys whose binding is not proven yet (`bound_at` is None), for the
    /// key monitor.
    async fn unbound_customer_keys(&self) -> Result<Vec<CustomerKey>>;
    /// Records a binding check of a key whose binding was not proven yet. `Bound` sets
    /// `bound_at` and clears any warning; `Unbound` sets the warning unless one is set. True
    /// when this call changed the key (the proof, or the warning's first appearance), in the
    /// statement that changes it, so concurrent monitors report each change once.
    async fn record_key_binding(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        binding: &KeyBinding,
    ) -> Result<bool>;

    /// Appends to the hash chain atomically (concurrent appends serialize) and returns the entry.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry>;
    /// An organization's entries with `seq < before` (all when None), newest first.
    async fn list_audit(
        &self,
        org_id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;
    /// Every organization's entries with `seq > after`, oldest first, for chain verification.
    async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>>;
    /// The database, its first datacenter and the job that provisions it, in one transaction
    /// that first counts the organization's live databases and datacenters against `quotas`
    /// (concurrent creations serialize on the organization, so none overshoots).
    /// Err(NotFound) when the organization does not exist.
    async fn create_database(
        &self,
        db: &Database,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<CreateOutcome>;
    async fn get_database(&self, org_id: Uuid, id: Uuid) -> Result<Option<Database>>;
    /// By creation time then id, after `starting_after`, at most `limit`.
    async fn list_databases(&self, org_id: Uuid, filter: &DatabaseFilter) -> Result<Vec<Database>>;
    async fn set_database_status(
        &self,
        id: Uuid,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()>;
    async fn mark_database_terminated(&self, id: Uuid) -> Result<()>;
    /// Records that the database's data was used at `at`. An `at` older than the one recorded
    /// changes nothing (uses are recorded off the request path, in any order), and neither
    /// does an unknown database.
    async fn record_database_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// The database's keyspaces beyond its initial one (`Database::keyspace`), oldest first.
    async fn list_keyspaces(&self, database_id: Uuid) -> Result<Vec<String>>;
    /// The keyspaces beyond the initial one of every database of `database_ids`, as
    /// `(database, name)`, each database's oldest first, in one query.
    async fn list_keyspaces_of(&self, database_ids: &[Uuid]) -> Result<Vec<(Uuid, String)>>;
    /// Records a keyspace of the database; false when it was recorded already.
    async fn add_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool>;
    /// Forgets a keyspace of the database; false when it was not recorded.
    async fn remove_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool>;

    /// A database's datacenters by ordinal, terminated ones included.
    async fn list_datacenters(&self, database_id: Uuid) -> Result<Vec<Datacenter>>;
    /// The datacenters of every database of `database_ids` (each one's by ordinal, terminated
    /// ones included) in one query, so a listing page costs the same whatever its length.
    async fn list_datacenters_of(&self, database_ids: &[Uuid]) -> Result<Vec<Datacenter>>;
    async fn get_datacenter(&self, id: &str) -> Result<Option<Datacenter>>;
    /// Adds a region: inserts the datacenter, puts the database in MAINTENANCE and enqueues
    /// the job, in one transaction that first applies
    /// [`keyplane_core::databases::check_add_region`] to the database as it is then, so
    /// concurrent region changes cannot both pass, and counts the organization's live
    /// datacenters against `quotas`. Err(NotFound) when the organization has no such
    /// database.
    async fn add_datacenter(
        &self,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<AddRegionOutcome>;
    /// Removes a region: marks the datacenter TERMINATING, puts the database in MAINTENANCE
    /// and enqueues `job` (which deletes the files and marks it TERMINATED), in one
    /// transaction that first applies [`keyplane_core::databases::check_remove_region`], so
    /// no mix of concurrent requests removes the last region or two regions at once.
    /// Err(NotFound) when the organization has no such database.
    async fn remove_datacenter(
        &self,
        org_id: Uuid,
        database_id: Uuid,
        datacenter_id: &str,
        job: &NewJob,
    ) -> Result<RemoveRegionOutcome>;
    async fn set_datacenter_status(
        &self,
        id: &str,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()>;
    /// Sets a SUSPENDED datacenter ACTIVE, unless the key it is registered under for its
    /// database's type is REVOKED: the rule that a revoked key's data stays suspended lives
    /// in the statement that resumes, so a check that raced a revoke cannot undo it. True
    /// when it resumed.
    async fn resume_datacenter(&self, id: &str) -> Result<bool>;
    /// Ends a datacenter's provisioning: ACTIVE, or SUSPENDED with its key's revocation reason
    /// when the key it is registered under is revoked (a revoke that came while it was being
    /// provisioned): a datacenter never starts serving under a revoked key. Returns the
    /// status it took.
    async fn activate_datacenter(&self, id: &str) -> Result<DatabaseStatus>;
    /// Every SUSPENDED datacenter with its reason: what each process's data plane refuses.
    async fn suspended_datacenters(&self) -> Result<Vec<(String, String)>>;
    /// The datacenters terminated after `since`: every process drops what it still holds of
    /// one (an open file, its data key) at its next suspension sync.
    async fn terminated_since(&self, since: DateTime<Utc>) -> Result<Vec<String>>;
    /// Stores the wrapped data key once; false when one is already stored (the caller
    /// must then use that one, so a re-run job never orphans data).
    async fn set_wrapped_data_key(&self, id: &str, wrapped: &[u8]) -> Result<bool>;
    /// Records `next`, a rotation's new data key (wrapped under the datacenter's key), if the
    /// datacenter is not terminated, still holds `current` as its key of record, and has no
    /// rotation pending. False otherwise: nothing changed.
    async fn begin_data_key_rotation(&self, id: &str, current: &[u8], next: &[u8]) -> Result<bool>;
    /// Makes the pending `next` the key of record, rotated now, if it is still the pending
    /// one; the old wrapped key is overwritten in the same statement.
    async fn finish_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool>;
    /// Forgets the pending `next` (the file stayed under the key of record), if it is still
    /// the pending one.
    async fn abandon_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool>;
    /// ACTIVE datacenters with a data key last rotated (or made) before `before`, or with a
    /// rotation left pending by a crash: the oldest first, at most `limit`.
    async fn data_keys_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Datacenter>>;
    /// Records whether the organization's key has an automatic rotation past due: `Some`
    /// with the reason adds the record unless one is there, `None` removes it. True when
    /// this call changed it (so its alert is raised once, by whichever process saw it first).
    async fn set_rotation_overdue(
        &self,
        org_id: Uuid,
        key_id: &str,
        reason: Option<&str>,
    ) -> Result<bool>;
    async fn set_kms_failing_since(&self, id: &str, since: Option<DateTime<Utc>>) -> Result<()>;
    async fn mark_datacenter_terminated(&self, id: &str) -> Result<()>;
    /// Erases the copies of deleted values the engine still keeps, so a terminated
    /// datacenter's wrapped data key (and the old one a rewrap replaced) is gone from the
    /// store's files, not just from its rows. SQLite zeroes freed space as it deletes
    /// (`secure_delete`); this empties its write-ahead log, which still holds earlier page
    /// images. True when nothing is left; false when readers kept the log in use (the next
    /// call finishes it), or when the engine cannot: PostgreSQL keeps dead row versions
    /// until VACUUM reuses their space and its WAL until recycled, which the operator's
    /// storage encryption must cover.
    async fn erase_deleted(&self) -> Result<bool>;
    /// Every live (not TERMINATED) customer-keyed datacenter of every organization: what the
    /// key health monitor checks.
    async fn live_customer_datacenters(&self) -> Result<Vec<Datacenter>>;
    /// The live datacenters of one organization whose data keys are wrapped by `key_id` in
    /// `region`: what checking that key touches.
    async fn live_datacenters_of_key(
        &self,
        org_id: Uuid,
        key_id: &str,
        region: &str,
    ) -> Result<Vec<Datacenter>>;

    /// The live customer-keyed datacenters of one organization's databases of `db_type` in a
    /// region, whatever key they are under (the slot's, or one it held before a replacement).
    async fn live_datacenters_in_slot(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Vec<Datacenter>>;

    /// Enqueues work outside a creation (e.g. termination); with the status change in one
    /// transaction.
    async fn enqueue_job(
        &self,
        job: &NewJob,
        db_status: Option<(Uuid, DatabaseStatus)>,
    ) -> Result<i64>;
    /// Takes the oldest job that is due: pending with its `not_before` passed, or running
    /// under a lease that passed (`lease_until <= now`: its replica died or stalled). Marks it
    /// running under `owner`'s lease until `lease_until`, counts the attempt and records whose
    /// lease it took over. Two claimers (threads or processes) never get one job.
    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Extends `owner`'s lease of a running job to `until`. Lost when another replica took the
    /// job over or it is no longer running; Err(NotFound) for no such job.
    async fn renew_job_lease(&self, id: i64, owner: &str, until: DateTime<Utc>) -> Result<Lease>;
    /// Done. Only the lease's owner records an outcome (Lost otherwise, and nothing changes),
    /// even after its lease passed if no one took the job over meanwhile.
    async fn finish_job(&self, id: i64, owner: &str) -> Result<Lease>;
    /// Given up, with the error. Fenced by the lease as [`Store::finish_job`] is.
    async fn fail_job(&self, id: i64, owner: &str, error: &str) -> Result<Lease>;
    /// Back in the queue with a delay (retry), the lease released. Fenced as
    /// [`Store::finish_job`] is.
    async fn retry_job(
        &self,
        id: i64,
        owner: &str,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<Lease>;
    /// Ends every running job's lease at `now`, so the next claim resumes it. Only for a
    /// process that knows no other one runs jobs on this store (SQLite, whose data dir
    /// `keyplane serve` locks): its restart resumes the jobs of the run that died without
    /// waiting out their leases. Never for a shared PostgreSQL store, where a running job's
    /// lease may be a live replica's. Returns how many.
    async fn expire_job_leases(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Stores a new portal session with its first login, and deletes the sessions that
    /// expired by its `created_at`. Err(NotFound) for an unknown organization or token.
    async fn create_portal_session(&self, session: &NewPortalSession) -> Result<()>;
    /// The session with that ID hash unless it expired by `now`.
    async fn get_portal_session(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<PortalSession>>;
    /// Adds (or renews) the session's login to `org_id` with `client_id`'s token and makes
    /// that organization current. False when no session with that ID hash is live at `now`.
    async fn add_portal_login(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Makes `org_id` current. False when the session is not live at `now` or has no login
    /// to that organization.
    async fn switch_portal_org(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Drops the session's login to `org_id` (its token stopped working). Returns whether the
    /// session still has a login; a session left with none is deleted.
    async fn remove_portal_login(&self, id_hash: &[u8], org_id: Uuid) -> Result<bool>;
    /// Signs out: deletes the session and its logins.
    async fn delete_portal_session(&self, id_hash: &[u8]) -> Result<()>;

    /// Stores a webhook whose `after_seq` is set here to the audit log's last sequence number
    /// (so it is sent only what happens from now on), unless the organization already has
    /// `max_per_org`: then None. Counted and inserted in one transaction.
    async fn create_webhook(&self, webhook: &Webhook, max_per_org: u32) -> Result<Option<Webhook>>;
    /// An organization's webhooks (every organization's when None), oldest first.
    async fn list_webhooks(&self, org_id: Option<Uuid>) -> Result<Vec<Webhook>>;
    /// Removes a webhook of the organization with its deliveries; false when there is none.
    async fn delete_webhook(&self, org_id: Uuid, id: Uuid) -> Result<bool>;
    /// The last audit sequence number turned into deliveries.
    async fn webhook_cursor(&self) -> Result<i64>;
    /// Moves the cursor from `from` to `to` and creates `deliveries` (those of audit entries
    /// in `(from, to]`), in one transaction; false, creating nothing, when the cursor is no
    /// longer at `from` (another process moved it). A delivery whose webhook was deleted in the
    /// meantime is skipped.
    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Claims up to `limit` pending deliveries due at `now`: each one's attempt count goes up
    /// and its next attempt moves to `lease_until`, so no other process attempts it before
    /// then (and does if this one dies).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records an attempt and what follows; ignored (false) when the delivery is no longer
    /// pending at that attempt (its claim expired and another process claimed it again, or
    /// its webhook was deleted).
    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool>;
    /// Removes delivered and given-up deliveries last changed before `before`, with their
    /// attempts; how many.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64>;
    /// A webhook's latest `limit` deliveries, newest first, each with its attempts.
    async fn list_deliveries(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        limit: u32,
    ) -> Result<Vec<DeliveryLog>>;
}

pub type DynStore = Arc<dyn Store>;

/// The provider ID a datacenter holds alone: a serverless database's datacenter under a
/// customer key takes one of the organization's provider IDs for itself (the customer trusts
/// one provider ID per serverless database), so no two live ones of an organization share one
/// in a region. Stored beside the datacenter and unique among the live ones, so that two
/// concurrent deployments can never take the same.
/// A key used with its customer's own login (OpenBao) has no platform identity to hand out:
/// every database under it uses that login.
pub fn serverless_identity(dc: &Datacenter) -> Option<&str> {
    (dc.key_kind == KeyKind::Customer
        && dc.tier == "serverless"
        && dc.provider.identity_model() != keyplane_core::IdentityModel::CustomerCredentials)
        .then_some(dc.provider_account.as_str())
}

/// Both backends keep milliseconds only (SQLite's text format and the API's JSON), so values
/// are cut to milliseconds before they are written: what is read back then equals what was
/// handed out.
pub(crate) fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(t, 3)
}

pub(crate) fn now_ms() -> DateTime<Utc> {
    truncate_ms(Utc::now())
}

// Stored text back into values, for both backends: a value that does not parse is corruption.
pub(crate) fn parse_provider(s: &str) -> Result<Provider> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("provider: {e}")))
}

pub(crate) fn parse_db_type(s: &str) -> Result<DbType> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("db_type: {e}")))
}

pub(crate) fn parse_key_status(s: &str) -> Result<KeyStatus> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("key status: {e}")))
}

pub(crate) fn parse_db_status(s: &str) -> Result<DatabaseStatus> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("database status: {e}")))
}

pub(crate) fn parse_key_kind(s: &str) -> Result<KeyKind> {
    KeyKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("key kind {s:?}")))
}

pub(crate) fn parse_job_kind(s: &str) -> Result<JobKind> {
    JobKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job kind {s:?}")))
}

pub(crate) fn parse_job_state(s: &str) -> Result<JobState> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("job state {s:?}")))
}

pub(crate) fn parse_role(s: &str) -> Result<Role> {
    Role::parse(s).map_err(|e| StoreError::Corrupt(format!("token role: {e}")))
}

pub(crate) fn parse_audit_action(s: &str) -> Result<AuditAction> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("audit action: {e}")))
}

pub(crate) fn parse_audit_outcome(s: &str) -> Result<AuditOutcome> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("audit outcome: {e}")))
}

/// The region rules' view of a database's datacenters, given as (status, region) rows: the
/// regions of those not TERMINATED, and how many still serve (neither TERMINATED nor
/// TERMINATING).
pub(crate) fn live_and_serving(rows: &[(DatabaseStatus, String)]) -> (Vec<&str>, usize) {
    let live: Vec<&str> = rows
        .iter()
        .filter(|(status, _)| *status != DatabaseStatus::Terminated)
        .map(|(_, region)| region.as_str())
        .collect();
    let serving = rows
        .iter()
        .filter(|(status, _)| {
            !matches!(
                status,
                DatabaseStatus::Terminated | DatabaseStatus::Terminating
            )
        })
        .count();
    (live, serving)
}

/// SQL LIMIT takes a signed integer; every u32 fits.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    i64::from(limit)
}

/// Errs NotFound(what) when no row changed (`n` is the driver's count of changed rows).
pub(crate) fn one_row<N: Default + PartialEq>(n: N, what: &'static str) -> Result<()> {
    if n == N::default() {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

/// The SQLite file a store URL names, or None for PostgreSQL (see [`open`]).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        None
    } else {
        Some(std::path::PathBuf::from(
            url.strip_prefix("sqlite://").unwrap_or(url),
        ))
    }
}

/// Opens the store a URL names: `postgres://…`/`postgresql://…`, or `sqlite://PATH` /
/// a plain file path for SQLite. Runs migrations.
pub async fn open(url: &str) -> Result<DynStore> {
    match sqlite_path(url) {
        None => Ok(Arc::new(PostgresStore::connect(url).await?)),
        Some(path) => Ok(Arc::new(SqliteStore::open(&path).await?)),
    }
}
