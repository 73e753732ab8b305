//! The PostgreSQL backend: a deadpool pool of plain-TCP (NoTls) connections with cached
//! prepared statements. Owns the PostgreSQL schema migrations (`migrations/postgres/`) and
//! their cross-process locking.

use crate::{
    AccountAssignment, AddRegionOutcome, AuditEntry, CreateOutcome, CustomerKey, Database,
    DatabaseFilter, Datacenter, DeleteKeyOutcome, Enterprise, InaccessibleChoice, Job, KeyBinding,
    KeyStatusUpdate, Lease, NewAuditEntry, NewJob, NewPortalSession, Organization, PortalLogin,
    PortalSession, REMOVING_A_REGION, RemoveRegionOutcome, ReplaceKeyOutcome, Result, Rewrap,
    RewrapOutcome, Store, StoreError, TOKEN_COLUMN_COUNT, TokenRecord, alert_secs, choice_from,
    live_and_serving, now_ms, one_row, parse_audit_action, parse_audit_outcome, parse_db_status,
    parse_db_type, parse_job_kind, parse_job_state, parse_key_kind, parse_key_status,
    parse_provider, parse_role, revoked_like, serverless_identity, sql_limit, truncate_ms,
};
use crate::{
    AttemptResult, Delivery, DeliveryAttempt, DeliveryLog, DeliveryState, NewDelivery, Webhook,
    events_column, parse_events,
};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use keyplane_core::audit::{AuditFields, GENESIS, entry_hash};
use keyplane_core::databases::{check_add_region, check_remove_region};
use keyplane_core::keys::OnInaccessible;
use keyplane_core::{
    DatabaseStatus, DbType, KeyStatus, Provider, QuotaExceeded, QuotaKind, Quotas,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

/// Numbered migrations, applied in order, each in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_customer_keys_audit.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_databases.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_datacenters_by_key.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_job_leases_and_portal_sessions.sql"),
    ),
    (
        6,
        include_str!("../migrations/postgres/0006_keyspaces_last_use.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_key_binding_and_quotas.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_serverless_provider_ids.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_suspended_datacenters.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_terminated_datacenters.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_key_logins.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_on_inaccessible.sql"),
    ),
    (13, include_str!("../migrations/postgres/0013_webhooks.sql")),
    (
        14,
        include_str!("../migrations/postgres/0014_data_key_rotation.sql"),
    ),
    (
        15,
        include_str!("../migrations/postgres/0015_rotation_overdue.sql"),
    ),
];

/// Key of the transaction-scoped advisory lock that serializes migrations of one database
/// across processes ("kplane" in ASCII). Advisory locks are per database, so stores on other
/// databases of the same server do not wait on each other.
const MIGRATION_LOCK: i64 = 0x6b70_6c61_6e65;

/// Key of the transaction-scoped advisory lock that serializes audit appends across
/// connections and processes ("kpaudit" in ASCII): each append reads the chain's head and
/// writes the next link.
const AUDIT_LOCK: i64 = 0x006b_7061_7564_6974;

const POOL_SIZE: usize = 16;

/// Bounded so that readiness checks and requests fail instead of hanging while the server is
/// unreachable.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

type Regions = BTreeMap<Provider, Vec<String>>;

pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `url` names and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url.parse()?;
        // Fast recycling skips a round trip per checkout; a broken connection is still
        // noticed (the client reports closed) and replaced.
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Every row of one cached statement through a fallible mapper (as `collect` in the
    /// SQLite backend).
    async fn collect<T: Send>(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        map: impl Fn(&Row) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        client.query(&stmt, params).await?.iter().map(map).collect()
    }

    /// The row of one cached statement, if any, through a fallible mapper.
    async fn first<T: Send>(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        map: impl FnOnce(&Row) -> Result<T> + Send,
    ) -> Result<Option<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        client
            .query_opt(&stmt, params)
            .await?
            .as_ref()
            .map(map)
            .transpose()
    }

    /// Runs one cached statement; returns how many rows it changed.
    async fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }

    /// The outcome of a lease-fenced job update that changed `n` rows: Lost when the job
    /// exists (held by another replica, or not running), Err(NotFound) when it does not.
    async fn fenced(&self, id: i64, n: u64) -> Result<Lease> {
        if n == 1 {
            return Ok(Lease::Held);
        }
        match self
            .first("SELECT 1 FROM jobs WHERE id = $1", &[&id], |_| Ok(()))
            .await?
        {
            Some(()) => Ok(Lease::Lost),
            None => Err(StoreError::NotFound("job")),
        }
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        {
            // Two processes racing on CREATE TABLE IF NOT EXISTS can still collide in the
            // catalog; the lock makes the second one wait and then find the table.
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    BIGINT PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await?;
            tx.commit().await?;
        }
        for &(version, sql) in MIGRATIONS {
            apply_migration(&mut client, version, sql)
                .await
                .map_err(|e| StoreError::Migration {
                    version,
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }
}

/// Checks and applies under the advisory lock, in one transaction: a second process waits for
/// the first to commit and then sees the version as applied.
async fn apply_migration(client: &mut Object, version: i64, sql: &str) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = tx
        .query_opt(
            "SELECT 1 FROM schema_migrations WHERE version = $1",
            &[&version],
        )
        .await?
        .is_some();
    if !applied {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Keeps the driver's error (and its source) when that is what failed.
fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Postgres(e),
        other => StoreError::Pool(other.to_string()),
    }
}

/// Turns a foreign-key failure into NotFound(what): the caller named a parent that does not exist.
fn missing_parent(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::NotFound(what)
        } else {
            StoreError::Postgres(e)
        }
    }
}

fn enterprise_from_row(row: &Row) -> Result<Enterprise> {
    Ok(Enterprise {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        created_at: row.try_get(2)?,
    })
}

fn org_from_row(row: &Row, at: usize) -> Result<Organization> {
    let Json(unlocked_regions): Json<Regions> = row.try_get(at + 3)?;
    Ok(Organization {
        id: row.try_get(at)?,
        name: row.try_get(at + 1)?,
        enterprise_id: row.try_get(at + 2)?,
        unlocked_regions,
        created_at: row.try_get(at + 4)?,
    })
}

fn token_from_row(row: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        client_id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        role: parse_role(row.try_get(2)?)?,
        secret_hash: row.try_get(3)?,
        description: row.try_get(4)?,
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

fn assignment_from_row(row: &Row) -> Result<AccountAssignment> {
    Ok(AccountAssignment {
        org_id: row.try_get(0)?,
        provider: parse_provider(row.try_get(1)?)?,
        account_id: row.try_get(2)?,
        ordinal: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

fn customer_key_from_row(row: &Row) -> Result<CustomerKey> {
    Ok(CustomerKey {
        org_id: row.try_get(0)?,
        db_type: parse_db_type(row.try_get(1)?)?,
        provider: parse_provider(row.try_get(2)?)?,
        region: row.try_get(3)?,
        key_id: row.try_get(4)?,
        provider_account: row.try_get(5)?,
        created_at: row.try_get(6)?,
        created_by: row.try_get(7)?,
        status: parse_key_status(row.try_get(8)?)?,
        status_reason: row.try_get(9)?,
        status_since: row.try_get(10)?,
        last_check_at: row.try_get(11)?,
        last_check_ok: row.try_get(12)?,
        last_check_message: row.try_get(13)?,
        bound_at: row.try_get(14)?,
        binding_warning: row.try_get(15)?,
    })
}

/// The first of `kinds` whose quota one more would exceed, counted inside `tx` after locking
/// the organization's row: creations in one organization serialize on it (`FOR NO KEY
/// UPDATE` leaves the foreign-key checks of other inserts alone). Err(NotFound) when the
/// organization does not exist.
async fn over_quota(
    tx: &Transaction<'_>,
    org_id: Uuid,
    kinds: &[QuotaKind],
    quotas: &Quotas,
) -> Result<Option<QuotaExceeded>> {
    let counted: Vec<QuotaKind> = kinds
        .iter()
        .copied()
        .filter(|k| quotas.limit(*k) != u32::MAX)
        .collect();
    if counted.is_empty() {
        return Ok(None);
    }
    let lock = tx
        .prepare_cached("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .await?;
    tx.query_opt(&lock, &[&org_id])
        .await?
        .ok_or(StoreError::NotFound("organization"))?;
    for kind in counted {
        let sql = match kind {
            QuotaKind::Databases => {
                "SELECT COUNT(*) FROM databases WHERE org_id = $1 AND status <> 'TERMINATED'"
            }
            QuotaKind::Datacenters => {
                "SELECT COUNT(*) FROM datacenters WHERE org_id = $1 AND status <> 'TERMINATED'"
            }
            QuotaKind::Tokens => {
                "SELECT COUNT(*) FROM tokens WHERE org_id = $1 AND revoked_at IS NULL"
            }
        };
        let stmt = tx.prepare_cached(sql).await?;
        let n: i64 = tx.query_one(&stmt, &[&org_id]).await?.try_get(0)?;
        if let Err(e) = quotas.check(kind, u64::try_from(n).unwrap_or(0), 1) {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

fn audit_from_row(row: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: row.try_get(0)?,
        org_id: row.try_get(1)?,
        at: row.try_get(2)?,
        actor: row.try_get(3)?,
        action: parse_audit_action(row.try_get(4)?)?,
        target: row.try_get(5)?,
        outcome: parse_audit_outcome(row.try_get(6)?)?,
        reason: row.try_get(7)?,
        prev_hash: row.try_get(8)?,
        hash: row.try_get(9)?,
    })
}

fn webhook_from_row(row: &Row) -> Result<Webhook> {
    Ok(Webhook {
        id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        url: row.try_get(2)?,
        events: parse_events(row.try_get(3)?)?,
        sealed_secret: row.try_get(4)?,
        after_seq: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

fn delivery_from_row(row: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get(0)?,
        webhook_id: row.try_get(1)?,
        org_id: row.try_get(2)?,
        audit_seq: row.try_get(3)?,
        event: parse_audit_action(row.try_get(4)?)?,
        payload: row.try_get(5)?,
        state: DeliveryState::parse(row.try_get(6)?)?,
        attempts: row.try_get(7)?,
        next_attempt_at: row.try_get(8)?,
        last_status: row.try_get(9)?,
        last_error: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}

fn database_from_row(row: &Row) -> Result<Database> {
    Ok(Database {
        id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        name: row.try_get(2)?,
        keyspace: row.try_get(3)?,
        db_type: parse_db_type(row.try_get(4)?)?,
        provider: parse_provider(row.try_get(5)?)?,
        tier: row.try_get(6)?,
        capacity_units: row.try_get(7)?,
        status: parse_db_status(row.try_get(8)?)?,
        message: row.try_get(9)?,
        owner: row.try_get(10)?,
        customer_keyed: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
        terminated_at: row.try_get(14)?,
        last_used_at: row.try_get(15)?,
    })
}

fn datacenter_from_row(row: &Row) -> Result<Datacenter> {
    Ok(Datacenter {
        id: row.try_get(0)?,
        database_id: row.try_get(1)?,
        org_id: row.try_get(2)?,
        ordinal: row.try_get(3)?,
        provider: parse_provider(row.try_get(4)?)?,
        region: row.try_get(5)?,
        tier: row.try_get(6)?,
        status: parse_db_status(row.try_get(7)?)?,
        message: row.try_get(8)?,
        key_kind: parse_key_kind(row.try_get(9)?)?,
        key_id: row.try_get(10)?,
        provider_account: row.try_get(11)?,
        wrapped_data_key: row.try_get(12)?,
        kms_failing_since: row.try_get(13)?,
        created_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
        terminated_at: row.try_get(16)?,
        pending_wrapped_data_key: row.try_get(17)?,
        data_key_rotated_at: row.try_get(18)?,
    })
}

fn job_from_row(row: &Row) -> Result<Job> {
    Ok(Job {
        id: row.try_get(0)?,
        kind: parse_job_kind(row.try_get(1)?)?,
        database_id: row.try_get(2)?,
        datacenter_id: row.try_get(3)?,
        state: parse_job_state(row.try_get(4)?)?,
        attempts: row.try_get(5)?,
        last_error: row.try_get(6)?,
        not_before: row.try_get(7)?,
        created_at: row.try_get(8)?,
        lease_owner: row.try_get(9)?,
        lease_until: row.try_get(10)?,
        taken_over_from: row.try_get(11)?,
    })
}

fn portal_session_from_rows(rows: &[Row]) -> Result<Option<PortalSession>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut session = PortalSession {
        id_hash: first.try_get(0)?,
        current_org: first.try_get(1)?,
        logins: Vec::with_capacity(rows.len()),
        created_at: first.try_get(2)?,
        expires_at: first.try_get(3)?,
    };
    for row in rows {
        if let Some(org_id) = row.try_get::<_, Option<Uuid>>(4)? {
            session.logins.push(PortalLogin {
                org_id,
                client_id: row.try_get(5)?,
                added_at: row.try_get(6)?,
            });
        }
    }
    Ok(Some(session))
}

async fn insert_datacenter(tx: &Transaction<'_>, dc: &Datacenter) -> Result<()> {
    let stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO datacenters (",
            datacenter_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &dc.id,
            &dc.database_id,
            &dc.org_id,
            &dc.ordinal,
            &dc.provider.as_str(),
            &dc.region,
            &dc.tier,
            &dc.status.as_str(),
            &dc.message,
            &dc.key_kind.as_str(),
            &dc.key_id,
            &dc.provider_account,
            &dc.wrapped_data_key,
            &dc.kms_failing_since.map(truncate_ms),
            &truncate_ms(dc.created_at),
            &truncate_ms(dc.updated_at),
            &dc.terminated_at.map(truncate_ms),
            &dc.pending_wrapped_data_key,
            &dc.data_key_rotated_at.map(truncate_ms),
        ],
    )
    .await
    .map_err(missing_parent("database or organization"))?;
    if let Some(id) = serverless_identity(dc) {
        let stmt = tx
            .prepare_cached("UPDATE datacenters SET serverless_identity = $2 WHERE id = $1")
            .await?;
        tx.execute(&stmt, &[&dc.id, &id]).await.map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                StoreError::ProviderIdTaken(id.to_string())
            } else {
                StoreError::Postgres(e)
            }
        })?;
    }
    Ok(())
}

/// Inserts a pending job, due `now`; returns its id.
/// Locks the database's row for the rest of the transaction and returns its status: region
/// changes of one database serialize on it.
async fn lock_database(
    tx: &Transaction<'_>,
    org_id: Uuid,
    database_id: Uuid,
) -> Result<DatabaseStatus> {
    let lock = tx
        .prepare_cached("SELECT status FROM databases WHERE id = $1 AND org_id = $2 FOR UPDATE")
        .await?;
    let row = tx
        .query_opt(&lock, &[&database_id, &org_id])
        .await?
        .ok_or(StoreError::NotFound("database"))?;
    parse_db_status(row.try_get(0)?)
}

/// (status, region) of every datacenter of the database, for the region rules.
async fn region_rows(
    tx: &Transaction<'_>,
    database_id: Uuid,
) -> Result<Vec<(DatabaseStatus, String)>> {
    let stmt = tx
        .prepare_cached("SELECT status, region FROM datacenters WHERE database_id = $1")
        .await?;
    tx.query(&stmt, &[&database_id])
        .await?
        .iter()
        .map(|row| Ok((parse_db_status(row.try_get(0)?)?, row.try_get(1)?)))
        .collect()
}

async fn insert_job(tx: &Transaction<'_>, job: &NewJob, now: DateTime<Utc>) -> Result<i64> {
    let what = if job.datacenter_id.is_some() {
        "database or datacenter"
    } else {
        "database"
    };
    let stmt = tx
        .prepare_cached(
            "INSERT INTO jobs (kind, database_id, datacenter_id, state, attempts, last_error,
                 not_before, created_at, updated_at)
             VALUES ($1, $2, $3, 'pending', 0, '', $4, $4, $4) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &job.kind.as_str(),
                &job.database_id,
                &job.datacenter_id,
                &now,
            ],
        )
        .await
        .map_err(missing_parent(what))?;
    Ok(row.try_get(0)?)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT 1").await?;
        client.query_one(&stmt, &[]).await?;
        Ok(())
    }

    async fn create_enterprise(&self, name: &str) -> Result<Enterprise> {
        let enterprise = Enterprise {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("INSERT INTO enterprises (id, name, created_at) VALUES ($1, $2, $3)")
            .await?;
        client
            .execute(
                &stmt,
                &[&enterprise.id, &enterprise.name, &enterprise.created_at],
            )
            .await?;
        Ok(enterprise)
    }

    async fn get_enterprise(&self, id: Uuid) -> Result<Option<Enterprise>> {
        self.first(
            concat!(
                "SELECT ",
                enterprise_columns!(),
                " FROM enterprises WHERE id = $1"
            ),
            &[&id],
            enterprise_from_row,
        )
        .await
    }

    async fn list_enterprises(&self) -> Result<Vec<Enterprise>> {
        self.collect(
            concat!(
                "SELECT ",
                enterprise_columns!(),
                " FROM enterprises ORDER BY name, id"
            ),
            &[],
            enterprise_from_row,
        )
        .await
    }

    async fn create_org(&self, name: &str, enterprise_id: Option<Uuid>) -> Result<Organization> {
        let org = Organization {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            enterprise_id,
            unlocked_regions: BTreeMap::new(),
            created_at: now_ms(),
        };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO organizations (id, name, enterprise_id, unlocked_regions, created_at)
                 VALUES ($1, $2, $3, '{}'::jsonb, $4)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[&org.id, &org.name, &org.enterprise_id, &org.created_at],
            )
            .await
            .map_err(missing_parent("enterprise"))?;
        Ok(org)
    }

    async fn get_org(&self, id: Uuid) -> Result<Option<Organization>> {
        self.first(
            concat!(
                "SELECT ",
                org_columns!(),
                " FROM organizations o WHERE o.id = $1"
            ),
            &[&id],
            |row| org_from_row(row, 0),
        )
        .await
    }

    async fn list_orgs(&self, enterprise_id: Option<Uuid>) -> Result<Vec<Organization>> {
        let map = |row: &Row| org_from_row(row, 0);
        match enterprise_id {
            None => {
                self.collect(
                    concat!(
                        "SELECT ",
                        org_columns!(),
                        " FROM organizations o ORDER BY o.name, o.id"
                    ),
                    &[],
                    map,
                )
                .await
            }
            Some(ent) => {
                self.collect(
                    concat!(
                        "SELECT ",
                        org_columns!(),
                        " FROM organizations o WHERE o.enterprise_id = $1 ORDER BY o.name, o.id"
                    ),
                    &[&ent],
                    map,
                )
                .await
            }
        }
    }

    async fn set_unlocked_regions(
        &self,
        org_id: Uuid,
        provider: Provider,
        regions: Option<Vec<String>>,
    ) -> Result<()> {
        let client = self.client().await?;
        // One statement each way: the JSON is edited in place, so concurrent edits of two
        // providers of the same organization cannot overwrite each other.
        let changed = match regions {
            None => {
                let stmt = client
                    .prepare_cached(
                        "UPDATE organizations SET unlocked_regions = unlocked_regions - $2::text WHERE id = $1",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&org_id, &provider.as_str()])
                    .await?
            }
            Some(regions) => {
                let stmt = client
                    .prepare_cached(
                        "UPDATE organizations
                         SET unlocked_regions = jsonb_set(unlocked_regions, ARRAY[$2::text], $3::jsonb)
                         WHERE id = $1",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&org_id, &provider.as_str(), &Json(&regions)])
                    .await?
            }
        };
        one_row(changed, "organization")
    }

    async fn insert_token(&self, token: &TokenRecord, quotas: &Quotas) -> Result<CreateOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(e) = over_quota(&tx, token.org_id, &[QuotaKind::Tokens], quotas).await? {
            return Ok(CreateOutcome::OverQuota(e));
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO tokens (client_id, org_id, role, secret_hash, description, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &token.client_id,
                &token.org_id,
                &token.role.to_storage(),
                &token.secret_hash,
                &token.description,
                &truncate_ms(token.created_at),
                &token.revoked_at.map(truncate_ms),
            ],
        )
        .await
        .map_err(missing_parent("organization"))?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    async fn authenticate(&self, client_id: &str) -> Result<Option<(TokenRecord, Organization)>> {
        self.first(
            concat!(
                "SELECT ",
                token_columns!(),
                ", ",
                org_columns!(),
                " FROM tokens t JOIN organizations o ON o.id = t.org_id WHERE t.client_id = $1"
            ),
            &[&client_id],
            |row| Ok((token_from_row(row)?, org_from_row(row, TOKEN_COLUMN_COUNT)?)),
        )
        .await
    }

    async fn list_tokens(&self, org_id: Uuid) -> Result<Vec<TokenRecord>> {
        self.collect(
            concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens t WHERE t.org_id = $1 ORDER BY t.created_at DESC, t.client_id"
            ),
            &[&org_id],
            token_from_row,
        )
        .await
    }

    async fn revoke_token(&self, org_id: Uuid, client_id: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE tokens SET revoked_at = $3 WHERE org_id = $1 AND client_id = $2 AND revoked_at IS NULL",
            )
            .await?;
        let n = tx.execute(&stmt, &[&org_id, &client_id, &now_ms()]).await?;
        if n == 1 {
            // The portal sessions it signed in end with it (a session left without any login
            // is gone at its next request).
            let stmt = tx
                .prepare_cached("DELETE FROM portal_session_logins WHERE client_id = $1")
                .await?;
            tx.execute(&stmt, &[&client_id]).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn assigned_accounts(
        &self,
        org_id: Uuid,
        provider: Provider,
    ) -> Result<Vec<AccountAssignment>> {
        self.collect(
            "SELECT org_id, provider, account_id, ordinal, created_at FROM account_assignments
                 WHERE org_id = $1 AND provider = $2 ORDER BY ordinal",
            &[&org_id, &provider.as_str()],
            assignment_from_row,
        )
        .await
    }

    async fn account_usage(&self, provider: Provider) -> Result<BTreeMap<String, i64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT account_id, COUNT(*) FROM account_assignments WHERE provider = $1 GROUP BY account_id",
            )
            .await?;
        let mut usage = BTreeMap::new();
        for row in client.query(&stmt, &[&provider.as_str()]).await? {
            usage.insert(row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?);
        }
        Ok(usage)
    }

    async fn try_assign_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool> {
        let client = self.client().await?;
        // DO NOTHING without a target covers both unique constraints (ordinal and account)
        // and nothing else: a missing organization still fails.
        let stmt = client
            .prepare_cached(
                "INSERT INTO account_assignments (org_id, provider, account_id, ordinal, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .await?;
        let n = client
            .execute(
                &stmt,
                &[
                    &org_id,
                    &provider.as_str(),
                    &account_id,
                    &ordinal,
                    &now_ms(),
                ],
            )
            .await
            .map_err(missing_parent("organization"))?;
        Ok(n == 1)
    }

    async fn try_assign_exclusive_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Serializes assignments of this one identity across processes: the second waits
        // here, and its INSERT's fresh snapshot (READ COMMITTED) then sees the first's row.
        let lock = tx
            .prepare_cached(
                "SELECT pg_advisory_xact_lock(hashtextextended('keyplane-identity:' || $1 || ':' || $2, 0))",
            )
            .await?;
        tx.execute(&lock, &[&provider.as_str(), &account_id])
            .await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO account_assignments (org_id, provider, account_id, ordinal, created_at)
                 SELECT $1, $2, $3, $4, $5
                 WHERE NOT EXISTS (SELECT 1 FROM account_assignments
                                   WHERE provider = $2 AND account_id = $3 AND org_id <> $1)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &org_id,
                    &provider.as_str(),
                    &account_id,
                    &ordinal,
                    &now_ms(),
                ],
            )
            .await
            .map_err(missing_parent("organization"))?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        self.first(
            "SELECT value FROM settings WHERE key = $1",
            &[&key],
            |row| Ok(row.try_get(0)?),
        )
        .await
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let mut client = self.client().await?;
        // Two statements on purpose: under READ COMMITTED the SELECT takes a fresh snapshot and
        // so sees a value that a concurrent transaction committed while the INSERT waited on
        // it, which a single INSERT … RETURNING / CTE would not.
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .await?;
        tx.execute(&insert, &[&key, &value]).await?;
        let select = tx
            .prepare_cached("SELECT value FROM settings WHERE key = $1")
            .await?;
        let stored: String = tx.query_one(&select, &[&key]).await?.try_get(0)?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn put_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO key_logins (org_id, provider, key_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (org_id, provider, key_id) DO UPDATE SET sealed = excluded.sealed, \
                 updated_at = excluded.updated_at",
            )
            .await?;
        client
            .execute(&stmt, &[&org_id, &provider.as_str(), &key_id, &sealed, &at])
            .await?;
        Ok(())
    }

    async fn set_on_inaccessible(
        &self,
        org_id: Uuid,
        key_id: Option<&str>,
        choice: Option<OnInaccessible>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let key_id = key_id.unwrap_or("");
        let client = self.client().await?;
        match choice {
            Some(c) => {
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO on_inaccessible (org_id, key_id, action, alert_secs, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, key_id) DO UPDATE SET \
                         action = excluded.action, alert_secs = excluded.alert_secs, updated_at = excluded.updated_at",
                    )
                    .await?;
                client
                    .execute(
                        &stmt,
                        &[
                            &org_id,
                            &key_id,
                            &c.action(),
                            &alert_secs(c),
                            &truncate_ms(at),
                        ],
                    )
                    .await
                    .map_err(missing_parent("organization"))?;
            }
            None => {
                let stmt = client
                    .prepare_cached("DELETE FROM on_inaccessible WHERE org_id = $1 AND key_id = $2")
                    .await?;
                client.execute(&stmt, &[&org_id, &key_id]).await?;
            }
        }
        Ok(())
    }

    async fn on_inaccessible_choices(
        &self,
        org_id: Option<Uuid>,
    ) -> Result<Vec<InaccessibleChoice>> {
        let map = |row: &Row| {
            let key_id: String = row.try_get(1)?;
            Ok(InaccessibleChoice {
                org_id: row.try_get(0)?,
                key_id: Some(key_id).filter(|k| !k.is_empty()),
                choice: choice_from(row.try_get::<_, &str>(2)?, row.try_get(3)?)?,
                updated_at: row.try_get(4)?,
            })
        };
        match org_id {
            Some(org) => {
                self.collect(
                    "SELECT org_id, key_id, action, alert_secs, updated_at FROM on_inaccessible \
                     WHERE org_id = $1 ORDER BY key_id",
                    &[&org],
                    map,
                )
                .await
            }
            None => {
                self.collect(
                    "SELECT org_id, key_id, action, alert_secs, updated_at FROM on_inaccessible \
                     ORDER BY org_id, key_id",
                    &[],
                    map,
                )
                .await
            }
        }
    }

    async fn get_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.first(
            "SELECT sealed FROM key_logins WHERE org_id = $1 AND provider = $2 AND key_id = $3",
            &[&org_id, &provider.as_str(), &key_id],
            |row| Ok(row.try_get(0)?),
        )
        .await
    }

    async fn insert_customer_key(&self, key: &CustomerKey) -> Result<Option<CustomerKey>> {
        let mut client = self.client().await?;
        // Two statements, as in put_setting_if_absent: the SELECT's fresh snapshot sees a key
        // that a concurrent transaction committed while the INSERT waited on it.
        let tx = client.transaction().await?;
        let inserted = insert_key_row(&tx, key)
            .await
            .map_err(missing_parent("organization"))?;
        if inserted == 1 {
            tx.commit().await?;
            return Ok(None);
        }
        let select = tx
            .prepare_cached(concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4"
            ))
            .await?;
        let existing = tx
            .query_opt(
                &select,
                &[
                    &key.org_id,
                    &key.db_type.as_str(),
                    &key.provider.as_str(),
                    &key.region,
                ],
            )
            .await?
            .as_ref()
            .map(customer_key_from_row)
            .transpose()?
            .ok_or(StoreError::Corrupt(
                "customer key insert conflicted but no key is stored".to_owned(),
            ))?;
        tx.commit().await?;
        Ok(Some(existing))
    }

    async fn get_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Option<CustomerKey>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4"
            ))
            .await?;
        client
            .query_opt(
                &stmt,
                &[&org_id, &db_type.as_str(), &provider.as_str(), &region],
            )
            .await?
            .as_ref()
            .map(customer_key_from_row)
            .transpose()
    }

    async fn list_customer_keys(
        &self,
        org_id: Uuid,
        db_type: Option<DbType>,
    ) -> Result<Vec<CustomerKey>> {
        let client = self.client().await?;
        let rows = match db_type {
            None => {
                let stmt = client
                    .prepare_cached(concat!(
                        "SELECT ",
                        customer_key_columns!(),
                        " FROM customer_keys WHERE org_id = $1 ORDER BY db_type, provider, region"
                    ))
                    .await?;
                client.query(&stmt, &[&org_id]).await?
            }
            Some(db_type) => {
                let stmt = client
                    .prepare_cached(concat!(
                        "SELECT ",
                        customer_key_columns!(),
                        " FROM customer_keys WHERE org_id = $1 AND db_type = $2 ORDER BY db_type, provider, region"
                    ))
                    .await?;
                client.query(&stmt, &[&org_id, &db_type.as_str()]).await?
            }
        };
        rows.iter().map(customer_key_from_row).collect()
    }

    async fn update_customer_key_status(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool> {
        let client = self.client().await?;
        // Right-hand sides see the old row, so status_since compares with the old status.
        let stmt = client
            .prepare_cached(
                "UPDATE customer_keys SET
                     status_since = CASE WHEN status = $5 OR status = 'REVOKED'
                                    THEN status_since ELSE $7 END,
                     status = CASE WHEN status = 'REVOKED' THEN status ELSE $5 END,
                     status_reason = CASE WHEN status = 'REVOKED' THEN status_reason ELSE $6 END,
                     last_check_at = $7,
                     last_check_ok = $8,
                     last_check_message = $9
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                   AND key_id = $10",
            )
            .await?;
        let n = client
            .execute(
                &stmt,
                &[
                    &org_id,
                    &db_type.as_str(),
                    &provider.as_str(),
                    &region,
                    &update.status.as_str(),
                    &update.status_reason,
                    &truncate_ms(update.checked_at),
                    &update.check_ok,
                    &update.check_message,
                    &update.key_id,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let at = truncate_ms(at);
        let key = tx
            .prepare_cached(
                "UPDATE customer_keys SET
                     status_since = CASE WHEN status = 'REVOKED' THEN status_since ELSE $6 END,
                     status = 'REVOKED',
                     status_reason = $5
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                 RETURNING key_id",
            )
            .await?;
        let Some(row) = tx
            .query_opt(
                &key,
                &[
                    &org_id,
                    &db_type.as_str(),
                    &provider.as_str(),
                    &region,
                    &reason,
                    &at,
                ],
            )
            .await?
        else {
            return Ok(None);
        };
        let key_id: String = row.try_get(0)?;
        // One statement that locks and relabels every row, so a resume racing it either ran
        // before (and is suspended here) or sees this reason when it rechecks the row.
        let dcs = tx
            .prepare_cached(
                "UPDATE datacenters SET status = 'SUSPENDED', message = $6, updated_at = $7
                 WHERE org_id = $1 AND key_id = $2 AND region = $3 AND provider = $4
                   AND key_kind = 'customer'
                   AND status IN ('ACTIVE', 'MAINTENANCE', 'SUSPENDED', 'PENDING', 'INITIALIZING')
                   AND database_id IN (SELECT id FROM databases WHERE db_type = $5)
                 RETURNING id",
            )
            .await?;
        let rows = tx
            .query(
                &dcs,
                &[
                    &org_id,
                    &key_id,
                    &region,
                    &provider.as_str(),
                    &db_type.as_str(),
                    &reason,
                    &at,
                ],
            )
            .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        tx.commit().await?;
        ids.sort();
        Ok(Some(ids))
    }

    async fn delete_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<DeleteKeyOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (t, p) = (db_type.as_str(), provider.as_str());
        // The key's row locked first; the datacenters are then read by a statement of their
        // own, whose snapshot sees every creation that committed before the lock was taken.
        let key = tx
            .prepare_cached(concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4",
                " FOR UPDATE"
            ))
            .await?;
        let Some(row) = tx.query_opt(&key, &[&org_id, &t, &p, &region]).await? else {
            return Ok(DeleteKeyOutcome::NotRegistered);
        };
        let key = customer_key_from_row(&row)?;
        let users = tx
            .prepare_cached(
                "SELECT id FROM datacenters
                 WHERE org_id = $1 AND key_id = $2 AND region = $3 AND provider = $4
                   AND key_kind = 'customer' AND status <> 'TERMINATED'
                   AND database_id IN (SELECT id FROM databases WHERE db_type = $5)
                 ORDER BY id",
            )
            .await?;
        let users = tx
            .query(&users, &[&org_id, &key.key_id, &region, &p, &t])
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if !users.is_empty() {
            return Ok(DeleteKeyOutcome::InUse(users));
        }
        let delete = tx
            .prepare_cached(
                "DELETE FROM customer_keys
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4",
            )
            .await?;
        tx.execute(&delete, &[&org_id, &t, &p, &region]).await?;
        // The key's login goes with its last use: no slot and no live datacenter left.
        let forget = tx
            .prepare_cached(
                "DELETE FROM key_logins WHERE org_id = $1 AND provider = $2 AND key_id = $3
                   AND NOT EXISTS (SELECT 1 FROM customer_keys
                                   WHERE org_id = $1 AND provider = $2 AND key_id = $3)
                   AND NOT EXISTS (SELECT 1 FROM datacenters
                                   WHERE org_id = $1 AND provider = $2 AND key_id = $3
                                     AND status <> 'TERMINATED')",
            )
            .await?;
        tx.execute(&forget, &[&org_id, &p, &key.key_id]).await?;
        tx.commit().await?;
        Ok(DeleteKeyOutcome::Deleted(Box::new(key)))
    }

    async fn replace_customer_key(
        &self,
        expected_key_id: &str,
        new: &CustomerKey,
    ) -> Result<ReplaceKeyOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (t, p) = (new.db_type.as_str(), new.provider.as_str());
        // The slot's row locked: a concurrent revoke, replace or deregistration waits.
        let select = tx
            .prepare_cached(concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4",
                " FOR UPDATE"
            ))
            .await?;
        let Some(row) = tx
            .query_opt(&select, &[&new.org_id, &t, &p, &new.region])
            .await?
        else {
            return Ok(ReplaceKeyOutcome::NotRegistered);
        };
        let current = customer_key_from_row(&row)?;
        if current.key_id != expected_key_id {
            return Ok(ReplaceKeyOutcome::Changed(Box::new(current)));
        }
        if current.status == KeyStatus::Revoked {
            return Ok(ReplaceKeyOutcome::Revoked(Box::new(current)));
        }
        // The slot's row is written whole, as a registration writes it.
        let delete = tx
            .prepare_cached(
                "DELETE FROM customer_keys
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4",
            )
            .await?;
        tx.execute(&delete, &[&new.org_id, &t, &p, &new.region])
            .await?;
        insert_key_row(&tx, new).await?;
        tx.commit().await?;
        Ok(ReplaceKeyOutcome::Replaced(Box::new(current)))
    }

    async fn rewrap_datacenter(&self, rewrap: &Rewrap) -> Result<RewrapOutcome> {
        let r = rewrap;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let columns = concat!(
            "SELECT ",
            datacenter_columns!(),
            " FROM datacenters WHERE id = $1 AND terminated_at IS NULL AND key_kind = 'customer'"
        );
        // Its slot first (a datacenter's organization, provider and region never change)...
        let read = tx.prepare_cached(columns).await?;
        let Some(row) = tx.query_opt(&read, &[&r.datacenter_id]).await? else {
            return Ok(RewrapOutcome::Stale);
        };
        let dc = datacenter_from_row(&row)?;
        let (t, p) = (r.db_type.as_str(), dc.provider.as_str());
        // ...then the slot's key row locked before the datacenter's, in the order a revoke
        // takes them, so the two never deadlock: a revoke that commits first is seen here, and
        // one that comes after sees this datacenter under the key it revokes.
        let key = tx
            .prepare_cached(
                "SELECT key_id, status FROM customer_keys
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4 FOR UPDATE",
            )
            .await?;
        let destination = tx
            .query_opt(&key, &[&dc.org_id, &t, &p, &dc.region])
            .await?;
        match destination {
            Some(row)
                if row.try_get::<_, String>(0)? == r.to_key_id
                    && row.try_get::<_, String>(1)? != KeyStatus::Revoked.as_str() => {}
            _ => return Ok(RewrapOutcome::DestinationChanged),
        }
        let lock = tx.prepare_cached(&format!("{columns} FOR UPDATE")).await?;
        let Some(row) = tx.query_opt(&lock, &[&r.datacenter_id]).await? else {
            return Ok(RewrapOutcome::Stale);
        };
        let dc = datacenter_from_row(&row)?;
        // A data key mid-rotation is not moved: the pending one is wrapped under the old key.
        if dc.key_id != r.from_key_id
            || dc.wrapped_data_key.as_deref() != Some(r.from_wrapped.as_slice())
            || dc.pending_wrapped_data_key.is_some()
        {
            return Ok(RewrapOutcome::Stale);
        }
        let now = now_ms();
        let swap = tx
            .prepare_cached(
                "UPDATE datacenters SET key_id = $2, provider_account = $3, wrapped_data_key = $4,
                     updated_at = $5
                 WHERE id = $1",
            )
            .await?;
        tx.execute(
            &swap,
            &[
                &r.datacenter_id,
                &r.to_key_id,
                &r.to_account,
                &r.to_wrapped,
                &now,
            ],
        )
        .await?;
        let in_use = tx
            .prepare_cached(
                "UPDATE customer_keys SET status = 'IN_USE', status_since = $5
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                   AND status = 'AVAILABLE'",
            )
            .await?;
        tx.execute(&in_use, &[&dc.org_id, &t, &p, &dc.region, &now])
            .await?;
        tx.commit().await?;
        Ok(RewrapOutcome::Rewrapped)
    }

    async fn unrevoke_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let key = tx
            .prepare_cached(
                "UPDATE customer_keys SET
                     status_since = $7,
                     status = $5,
                     status_reason = $6,
                     last_check_at = $7,
                     last_check_ok = $8,
                     last_check_message = $9
                 WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                   AND status = 'REVOKED'
                 RETURNING key_id",
            )
            .await?;
        let Some(row) = tx
            .query_opt(
                &key,
                &[
                    &org_id,
                    &db_type.as_str(),
                    &provider.as_str(),
                    &region,
                    &update.status.as_str(),
                    &update.status_reason,
                    &truncate_ms(update.checked_at),
                    &update.check_ok,
                    &update.check_message,
                ],
            )
            .await?
        else {
            return Ok(false);
        };
        let key_id: String = row.try_get(0)?;
        // Still suspended, no longer for the revoke: the check that follows resumes them.
        let relabel = tx
            .prepare_cached(
                "UPDATE datacenters SET message = $6, updated_at = $7
                 WHERE org_id = $1 AND key_id = $2 AND region = $3 AND provider = $4
                   AND key_kind = 'customer' AND status = 'SUSPENDED' AND message LIKE $8
                   AND database_id IN (SELECT id FROM databases WHERE db_type = $5)",
            )
            .await?;
        tx.execute(
            &relabel,
            &[
                &org_id,
                &key_id,
                &region,
                &provider.as_str(),
                &db_type.as_str(),
                &keyplane_core::keys::UNREVOKED_REASON,
                &now_ms(),
                &revoked_like(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoked_customer_keys(&self) -> Result<Vec<CustomerKey>> {
        self.collect(
            concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE status = 'REVOKED' ORDER BY org_id, db_type, provider, region"
            ),
            &[],
            customer_key_from_row,
        )
        .await
    }

    async fn unbound_customer_keys(&self) -> Result<Vec<CustomerKey>> {
        self.collect(
            concat!(
                "SELECT ",
                customer_key_columns!(),
                " FROM customer_keys WHERE bound_at IS NULL ORDER BY org_id, db_type, provider, region"
            ),
            &[],
            customer_key_from_row,
        )
        .await
    }

    async fn record_key_binding(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        binding: &KeyBinding,
    ) -> Result<bool> {
        let (t, p) = (db_type.as_str(), provider.as_str());
        let n = match binding {
            KeyBinding::Bound { at } => {
                self.execute(
                    "UPDATE customer_keys SET bound_at = $5, binding_warning = NULL
                     WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                       AND bound_at IS NULL",
                    &[&org_id, &t, &p, &region, &truncate_ms(*at)],
                )
                .await?
            }
            KeyBinding::Unbound { warning } => {
                self.execute(
                    "UPDATE customer_keys SET binding_warning = $5
                     WHERE org_id = $1 AND db_type = $2 AND provider = $3 AND region = $4
                       AND bound_at IS NULL AND binding_warning IS NULL",
                    &[&org_id, &t, &p, &region, warning],
                )
                .await?
            }
        };
        Ok(n == 1)
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Held until commit: the next append waits here, and its SELECT (a fresh snapshot
        // under READ COMMITTED) then sees this one's row.
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await?;
        tx.execute(&lock, &[&AUDIT_LOCK]).await?;
        let head = tx
            .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .await?;
        let (seq, prev_hash) = match tx.query_opt(&head, &[]).await? {
            Some(row) => (row.try_get::<_, i64>(0)? + 1, row.try_get::<_, String>(1)?),
            None => (1, GENESIS.to_owned()),
        };
        let at = now_ms();
        let at_text = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let org_text = entry.org_id.to_string();
        let hash = entry_hash(
            &prev_hash,
            &AuditFields {
                seq,
                org_id: &org_text,
                at: &at_text,
                actor: &entry.actor,
                action: entry.action.as_str(),
                target: &entry.target,
                outcome: entry.outcome.as_str(),
                reason: &entry.reason,
            },
        );
        let insert = tx
            .prepare_cached(concat!(
                "INSERT INTO audit_log (",
                audit_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .await?;
        tx.execute(
            &insert,
            &[
                &seq,
                &entry.org_id,
                &at,
                &entry.actor,
                &entry.action.as_str(),
                &entry.target,
                &entry.outcome.as_str(),
                &entry.reason,
                &prev_hash,
                &hash,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            seq,
            org_id: entry.org_id,
            at,
            actor: entry.actor.clone(),
            action: entry.action,
            target: entry.target.clone(),
            outcome: entry.outcome,
            reason: entry.reason.clone(),
            prev_hash,
            hash,
        })
    }

    async fn list_audit(
        &self,
        org_id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE org_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ))
            .await?;
        client
            .query(
                &stmt,
                &[&org_id, &before.unwrap_or(i64::MAX), &sql_limit(limit)],
            )
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        self.collect(
            concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            ),
            &[&after, &sql_limit(limit)],
            audit_from_row,
        )
        .await
    }
    async fn create_database(
        &self,
        db: &Database,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<CreateOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(e) = over_quota(
            &tx,
            db.org_id,
            &[QuotaKind::Databases, QuotaKind::Datacenters],
            quotas,
        )
        .await?
        {
            return Ok(CreateOutcome::OverQuota(e));
        }
        let stmt = tx
            .prepare_cached(concat!(
                "INSERT INTO databases (",
                database_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ))
            .await?;
        tx.execute(
            &stmt,
            &[
                &db.id,
                &db.org_id,
                &db.name,
                &db.keyspace,
                &db.db_type.as_str(),
                &db.provider.as_str(),
                &db.tier,
                &db.capacity_units,
                &db.status.as_str(),
                &db.message,
                &db.owner,
                &db.customer_keyed,
                &truncate_ms(db.created_at),
                &truncate_ms(db.updated_at),
                &db.terminated_at.map(truncate_ms),
                &db.last_used_at.map(truncate_ms),
            ],
        )
        .await
        .map_err(missing_parent("organization"))?;
        insert_datacenter(&tx, dc).await?;
        insert_job(&tx, job, now_ms()).await?;
        tx.commit().await?;
        Ok(CreateOutcome::Created)
    }

    async fn get_database(&self, org_id: Uuid, id: Uuid) -> Result<Option<Database>> {
        self.first(
            concat!(
                "SELECT ",
                database_columns!(),
                " FROM databases WHERE id = $1 AND org_id = $2"
            ),
            &[&id, &org_id],
            database_from_row,
        )
        .await
    }

    async fn list_databases(&self, org_id: Uuid, filter: &DatabaseFilter) -> Result<Vec<Database>> {
        let client = self.client().await?;
        // One static statement for every filter combination. A `starting_after` that names no
        // database of the organization yields an empty page.
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                database_columns!(),
                " FROM databases
                 WHERE org_id = $1
                   AND CASE WHEN $2::boolean THEN status = 'TERMINATED'
                            WHEN $3::boolean THEN true
                            ELSE status <> 'TERMINATED' END
                   AND ($4::text IS NULL OR provider = $4)
                   AND ($5::uuid IS NULL OR (created_at, id) >
                        (SELECT created_at, id FROM databases WHERE id = $5 AND org_id = $1))
                   AND ($7::text IS NULL OR status = $7)
                 ORDER BY created_at, id
                 LIMIT $6"
            ))
            .await?;
        client
            .query(
                &stmt,
                &[
                    &org_id,
                    &filter.only_terminated,
                    &filter.include_terminated,
                    &filter.provider.map(Provider::as_str),
                    &filter.starting_after,
                    &sql_limit(filter.limit),
                    &filter.status.map(DatabaseStatus::as_str),
                ],
            )
            .await?
            .iter()
            .map(database_from_row)
            .collect()
    }

    async fn set_database_status(
        &self,
        id: Uuid,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()> {
        let n = self
            .execute(
                "UPDATE databases SET status = $2, message = $3, updated_at = $4 WHERE id = $1",
                &[&id, &status.as_str(), &message, &now_ms()],
            )
            .await?;
        one_row(n, "database")
    }

    async fn mark_database_terminated(&self, id: Uuid) -> Result<()> {
        // A re-run keeps the first termination time.
        let n = self
            .execute(
                "UPDATE databases SET status = 'TERMINATED', updated_at = $2,
                     terminated_at = COALESCE(terminated_at, $2)
                 WHERE id = $1",
                &[&id, &now_ms()],
            )
            .await?;
        one_row(n, "database")
    }

    async fn record_database_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.execute(
            "UPDATE databases SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            &[&id, &truncate_ms(at)],
        )
        .await?;
        Ok(())
    }

    async fn list_keyspaces(&self, database_id: Uuid) -> Result<Vec<String>> {
        self.collect(
            "SELECT name FROM database_keyspaces WHERE database_id = $1
             ORDER BY created_at, name",
            &[&database_id],
            |row| Ok(row.try_get(0)?),
        )
        .await
    }

    async fn list_keyspaces_of(&self, database_ids: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
        self.collect(
            "SELECT database_id, name FROM database_keyspaces WHERE database_id = ANY($1)
             ORDER BY database_id, created_at, name",
            &[&database_ids],
            |row| Ok((row.try_get(0)?, row.try_get(1)?)),
        )
        .await
    }

    async fn add_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool> {
        let n = self
            .execute(
                "INSERT INTO database_keyspaces (database_id, name, created_at)
                 VALUES ($1, $2, $3) ON CONFLICT (database_id, name) DO NOTHING",
                &[&database_id, &name, &now_ms()],
            )
            .await
            .map_err(|e| match e {
                StoreError::Postgres(e) => missing_parent("database")(e),
                other => other,
            })?;
        Ok(n == 1)
    }

    async fn remove_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool> {
        let n = self
            .execute(
                "DELETE FROM database_keyspaces WHERE database_id = $1 AND name = $2",
                &[&database_id, &name],
            )
            .await?;
        Ok(n == 1)
    }

    async fn list_datacenters(&self, database_id: Uuid) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE database_id = $1 ORDER BY ordinal"
            ),
            &[&database_id],
            datacenter_from_row,
        )
        .await
    }

    async fn list_datacenters_of(&self, database_ids: &[Uuid]) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE database_id = ANY($1) ORDER BY database_id, ordinal"
            ),
            &[&database_ids],
            datacenter_from_row,
        )
        .await
    }

    async fn get_datacenter(&self, id: &str) -> Result<Option<Datacenter>> {
        self.first(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE id = $1"
            ),
            &[&id],
            datacenter_from_row,
        )
        .await
    }

    async fn add_datacenter(
        &self,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<AddRegionOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The organization first, then the database: the order every creation takes, so
        // concurrent ones never wait on each other in a cycle.
        let quota = over_quota(&tx, dc.org_id, &[QuotaKind::Datacenters], quotas).await?;
        // The row lock serializes region changes of one database: a concurrent one waits
        // here and then applies the rule to what this one left.
        let status = lock_database(&tx, dc.org_id, dc.database_id).await?;
        let rows = region_rows(&tx, dc.database_id).await?;
        let (live, _) = live_and_serving(&rows);
        if let Err(refusal) = check_add_region(status, live, &dc.region) {
            return Ok(AddRegionOutcome::Refused(refusal));
        }
        if let Some(e) = quota {
            return Ok(AddRegionOutcome::OverQuota(e));
        }
        let now = now_ms();
        insert_datacenter(&tx, dc).await?;
        let maintenance = tx
            .prepare_cached(
                "UPDATE databases SET status = 'MAINTENANCE', updated_at = $2 WHERE id = $1",
            )
            .await?;
        tx.execute(&maintenance, &[&dc.database_id, &now]).await?;
        insert_job(&tx, job, now).await?;
        tx.commit().await?;
        Ok(AddRegionOutcome::Added)
    }

    async fn remove_datacenter(
        &self,
        org_id: Uuid,
        database_id: Uuid,
        datacenter_id: &str,
        job: &NewJob,
    ) -> Result<RemoveRegionOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let status = lock_database(&tx, org_id, database_id).await?;
        let rows = region_rows(&tx, database_id).await?;
        let this = tx
            .prepare_cached("SELECT status FROM datacenters WHERE id = $1 AND database_id = $2")
            .await?;
        let Some(row) = tx.query_opt(&this, &[&datacenter_id, &database_id]).await? else {
            return Ok(RemoveRegionOutcome::NoSuchDatacenter);
        };
        if matches!(
            parse_db_status(row.try_get(0)?)?,
            DatabaseStatus::Terminated | DatabaseStatus::Terminating
        ) {
            return Ok(RemoveRegionOutcome::AlreadyRemoved);
        }
        let (_, serving) = live_and_serving(&rows);
        if let Err(refusal) = check_remove_region(status, serving) {
            return Ok(RemoveRegionOutcome::Refused(refusal));
        }
        let now = now_ms();
        let terminating = tx
            .prepare_cached(
                "UPDATE datacenters SET status = 'TERMINATING', updated_at = $2 WHERE id = $1",
            )
            .await?;
        tx.execute(&terminating, &[&datacenter_id, &now]).await?;
        let maintenance = tx
            .prepare_cached(
                "UPDATE databases SET status = 'MAINTENANCE', message = $2, updated_at = $3 WHERE id = $1",
            )
            .await?;
        tx.execute(&maintenance, &[&database_id, &REMOVING_A_REGION, &now])
            .await?;
        insert_job(&tx, job, now).await?;
        tx.commit().await?;
        Ok(RemoveRegionOutcome::Requested)
    }

    async fn set_datacenter_status(
        &self,
        id: &str,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()> {
        let n = self
            .execute(
                "UPDATE datacenters SET status = $2, message = $3, updated_at = $4 WHERE id = $1",
                &[&id, &status.as_str(), &message, &now_ms()],
            )
            .await?;
        one_row(n, "datacenter")
    }

    async fn resume_datacenter(&self, id: &str) -> Result<bool> {
        // The key's row says the key is revoked once the revoke committed; while the revoke
        // is being written, the row recheck after its lock sees the datacenter's new reason.
        let n = self
            .execute(
                "UPDATE datacenters SET status = 'ACTIVE', message = '', updated_at = $2
                 WHERE id = $1 AND status = 'SUSPENDED' AND message NOT LIKE $3
                   AND NOT EXISTS (
                     SELECT 1 FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
                     WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
                       AND k.provider = datacenters.provider AND k.region = datacenters.region
                       AND k.key_id = datacenters.key_id AND k.status = 'REVOKED')",
                &[&id, &now_ms(), &revoked_like()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn activate_datacenter(&self, id: &str) -> Result<DatabaseStatus> {
        // A revoke that relabelled this row first is seen by the row recheck after its lock
        // (the reason); one that committed before this statement, by the key's row.
        let row = self
            .first(
                "UPDATE datacenters SET
                     status = CASE WHEN message LIKE $3 OR EXISTS (
                         SELECT 1 FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
                         WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
                           AND k.provider = datacenters.provider AND k.region = datacenters.region
                           AND k.key_id = datacenters.key_id AND k.status = 'REVOKED')
                       THEN 'SUSPENDED' ELSE 'ACTIVE' END,
                     message = CASE WHEN message LIKE $3 THEN message ELSE COALESCE((
                         SELECT k.status_reason FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
                         WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
                           AND k.provider = datacenters.provider AND k.region = datacenters.region
                           AND k.key_id = datacenters.key_id AND k.status = 'REVOKED'), '') END,
                     updated_at = $2
                 WHERE id = $1
                 RETURNING status",
                &[&id, &now_ms(), &revoked_like()],
                |r| parse_db_status(r.try_get(0)?),
            )
            .await?;
        row.ok_or(StoreError::NotFound("datacenter"))
    }

    async fn suspended_datacenters(&self) -> Result<Vec<(String, String)>> {
        self.collect(
            "SELECT id, message FROM datacenters WHERE status = 'SUSPENDED' ORDER BY id",
            &[],
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
        .await
    }

    async fn terminated_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        self.collect(
            "SELECT id FROM datacenters
             WHERE status = 'TERMINATED' AND terminated_at > $1 ORDER BY id",
            &[&since],
            |r| Ok(r.try_get(0)?),
        )
        .await
    }

    async fn begin_data_key_rotation(&self, id: &str, current: &[u8], next: &[u8]) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE datacenters SET pending_wrapped_data_key = $3, updated_at = $4
                 WHERE id = $1 AND wrapped_data_key = $2 AND pending_wrapped_data_key IS NULL
                   AND terminated_at IS NULL",
                &[&id, &current, &next, &now_ms()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn finish_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE datacenters SET wrapped_data_key = pending_wrapped_data_key,
                     pending_wrapped_data_key = NULL, data_key_rotated_at = $3, updated_at = $3
                 WHERE id = $1 AND pending_wrapped_data_key = $2 AND terminated_at IS NULL",
                &[&id, &next, &now_ms()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn abandon_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE datacenters SET pending_wrapped_data_key = NULL, updated_at = $3
                 WHERE id = $1 AND pending_wrapped_data_key = $2",
                &[&id, &next, &now_ms()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn data_keys_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters
                 WHERE status = 'ACTIVE' AND terminated_at IS NULL
                   AND wrapped_data_key IS NOT NULL
                   AND (pending_wrapped_data_key IS NOT NULL
                        OR COALESCE(data_key_rotated_at, created_at) < $1)
                 ORDER BY COALESCE(data_key_rotated_at, created_at), id LIMIT $2"
            ),
            &[&before, &i64::from(limit)],
            datacenter_from_row,
        )
        .await
    }

    async fn set_rotation_overdue(
        &self,
        org_id: Uuid,
        key_id: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        let n = match reason {
            Some(r) => {
                self.execute(
                    "INSERT INTO key_rotation_overdue (org_id, key_id, reason, since)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, key_id) DO NOTHING",
                    &[&org_id, &key_id, &r, &now_ms()],
                )
                .await?
            }
            None => {
                self.execute(
                    "DELETE FROM key_rotation_overdue WHERE org_id = $1 AND key_id = $2",
                    &[&org_id, &key_id],
                )
                .await?
            }
        };
        Ok(n == 1)
    }

    async fn set_wrapped_data_key(&self, id: &str, wrapped: &[u8]) -> Result<bool> {
        let client = self.client().await?;
        // Never on a terminated datacenter: its key was shredded and must stay so.
        let stmt = client
            .prepare_cached(
                "UPDATE datacenters SET wrapped_data_key = $2, updated_at = $3
                 WHERE id = $1 AND wrapped_data_key IS NULL AND terminated_at IS NULL",
            )
            .await?;
        if client.execute(&stmt, &[&id, &wrapped, &now_ms()]).await? == 1 {
            return Ok(true);
        }
        let exists = client
            .prepare_cached("SELECT 1 FROM datacenters WHERE id = $1")
            .await?;
        if client.query_opt(&exists, &[&id]).await?.is_some() {
            Ok(false)
        } else {
            Err(StoreError::NotFound("datacenter"))
        }
    }

    async fn set_kms_failing_since(&self, id: &str, since: Option<DateTime<Utc>>) -> Result<()> {
        let n = self
            .execute(
                "UPDATE datacenters SET kms_failing_since = $2, updated_at = $3 WHERE id = $1",
                &[&id, &since.map(truncate_ms), &now_ms()],
            )
            .await?;
        one_row(n, "datacenter")
    }

    async fn erase_deleted(&self) -> Result<bool> {
        // Dead row versions and WAL segments are PostgreSQL's to reclaim; nothing here can
        // overwrite them.
        Ok(false)
    }

    async fn mark_datacenter_terminated(&self, id: &str) -> Result<()> {
        // Crypto-shredding: the wrapped data key goes with the datacenter. A re-run keeps the
        // first termination time.
        let n = self
            .execute(
                "UPDATE datacenters SET status = 'TERMINATED', wrapped_data_key = NULL,
                     pending_wrapped_data_key = NULL, kms_failing_since = NULL, updated_at = $2,
                     terminated_at = COALESCE(terminated_at, $2)
                 WHERE id = $1",
                &[&id, &now_ms()],
            )
            .await?;
        one_row(n, "datacenter")
    }

    async fn live_customer_datacenters(&self) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE key_kind = 'customer' AND status <> 'TERMINATED' ORDER BY id"
            ),
            &[],
            datacenter_from_row,
        )
        .await
    }

    async fn live_datacenters_of_key(
        &self,
        org_id: Uuid,
        key_id: &str,
        region: &str,
    ) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE org_id = $1 AND key_id = $2 AND region = $3",
                " AND key_kind = 'customer' AND status <> 'TERMINATED' ORDER BY id"
            ),
            &[&org_id, &key_id, &region],
            datacenter_from_row,
        )
        .await
    }

    async fn live_datacenters_in_slot(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Vec<Datacenter>> {
        self.collect(
            concat!(
                "SELECT ",
                datacenter_columns!(),
                " FROM datacenters WHERE org_id = $1 AND region = $2 AND provider = $3",
                " AND key_kind = 'customer' AND status <> 'TERMINATED'",
                " AND database_id IN (SELECT id FROM databases WHERE db_type = $4) ORDER BY id"
            ),
            &[&org_id, &region, &provider.as_str(), &db_type.as_str()],
            datacenter_from_row,
        )
        .await
    }

    async fn enqueue_job(
        &self,
        job: &NewJob,
        db_status: Option<(Uuid, DatabaseStatus)>,
    ) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        if let Some((db_id, status)) = db_status {
            let stmt = tx
                .prepare_cached("UPDATE databases SET status = $2, updated_at = $3 WHERE id = $1")
                .await?;
            let n = tx.execute(&stmt, &[&db_id, &status.as_str(), &now]).await?;
            one_row(n, "database")?;
        }
        let id = insert_job(&tx, job, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        // SKIP LOCKED: a concurrent claimer passes over the row another one is taking instead
        // of waiting for it (and never takes the same one); the locked row is re-checked
        // against the condition once locked, so a job another replica just claimed (lease
        // renewed) is not taken. SET reads the row as it was: `taken_over_from` is the
        // previous holder when the job was running.
        self.first(
            concat!(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $3,
                     lease_until = $4,
                     taken_over_from = CASE WHEN state = 'running' THEN lease_owner END,
                     updated_at = $2
                 WHERE id = (SELECT id FROM jobs
                             WHERE (state = 'pending' AND not_before <= $1)
                                OR (state = 'running' AND lease_until <= $1)
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING ",
                job_columns!()
            ),
            &[
                &truncate_ms(now),
                &now_ms(),
                &owner,
                &truncate_ms(lease_until),
            ],
            job_from_row,
        )
        .await
    }

    async fn renew_job_lease(&self, id: i64, owner: &str, until: DateTime<Utc>) -> Result<Lease> {
        let n = self
            .execute(
                "UPDATE jobs SET lease_until = $3, updated_at = $4
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &truncate_ms(until), &now_ms()],
            )
            .await?;
        self.fenced(id, n).await
    }

    async fn finish_job(&self, id: i64, owner: &str) -> Result<Lease> {
        let n = self
            .execute(
                "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &now_ms()],
            )
            .await?;
        self.fenced(id, n).await
    }

    async fn fail_job(&self, id: i64, owner: &str, error: &str) -> Result<Lease> {
        let n = self
            .execute(
                "UPDATE jobs SET state = 'failed', last_error = $3, lease_until = NULL, updated_at = $4
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &error, &now_ms()],
            )
            .await?;
        self.fenced(id, n).await
    }

    async fn retry_job(
        &self,
        id: i64,
        owner: &str,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<Lease> {
        let n = self
            .execute(
                "UPDATE jobs SET state = 'pending', not_before = $3, last_error = $4,
                     lease_until = NULL, updated_at = $5
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &truncate_ms(not_before), &error, &now_ms()],
            )
            .await?;
        self.fenced(id, n).await
    }

    async fn expire_job_leases(&self, now: DateTime<Utc>) -> Result<u64> {
        let now = truncate_ms(now);
        self.execute(
            "UPDATE jobs SET lease_until = $1, updated_at = $1
             WHERE state = 'running' AND (lease_until IS NULL OR lease_until > $1)",
            &[&now],
        )
        .await
    }

    async fn create_portal_session(&self, session: &NewPortalSession) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let created = truncate_ms(session.created_at);
        let stmt = tx
            .prepare_cached("DELETE FROM portal_sessions WHERE expires_at <= $1")
            .await?;
        tx.execute(&stmt, &[&created]).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO portal_sessions (id_hash, current_org, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &session.id_hash.as_slice(),
                &session.org_id,
                &created,
                &truncate_ms(session.expires_at),
            ],
        )
        .await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO portal_session_logins (session_hash, org_id, client_id, added_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &session.id_hash.as_slice(),
                &session.org_id,
                &session.client_id,
                &created,
            ],
        )
        .await
        .map_err(missing_parent("organization or token"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_portal_session(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<PortalSession>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT s.id_hash, s.current_org, s.created_at, s.expires_at,
                        l.org_id, l.client_id, l.added_at
                 FROM portal_sessions s
                 LEFT JOIN portal_session_logins l ON l.session_hash = s.id_hash
                 WHERE s.id_hash = $1 AND s.expires_at > $2
                 ORDER BY l.added_at, l.org_id",
            )
            .await?;
        let rows = client.query(&stmt, &[&id_hash, &truncate_ms(now)]).await?;
        portal_session_from_rows(&rows)
    }

    async fn add_portal_login(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = truncate_ms(now);
        let stmt = tx
            .prepare_cached(
                "UPDATE portal_sessions SET current_org = $2 WHERE id_hash = $1 AND expires_at > $3",
            )
            .await?;
        if tx.execute(&stmt, &[&id_hash, &org_id, &now]).await? == 0 {
            return Ok(false);
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO portal_session_logins (session_hash, org_id, client_id, added_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (session_hash, org_id)
                 DO UPDATE SET client_id = excluded.client_id, added_at = excluded.added_at",
            )
            .await?;
        tx.execute(&stmt, &[&id_hash, &org_id, &client_id, &now])
            .await
            .map_err(missing_parent("organization or token"))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn switch_portal_org(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE portal_sessions SET current_org = $2
                 WHERE id_hash = $1 AND expires_at > $3
                   AND EXISTS (SELECT 1 FROM portal_session_logins
                               WHERE session_hash = $1 AND org_id = $2)",
                &[&id_hash, &org_id, &truncate_ms(now)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn remove_portal_login(&self, id_hash: &[u8], org_id: Uuid) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The session row first, so that two removals at once serialize on it.
        let stmt = tx
            .prepare_cached("SELECT 1 FROM portal_sessions WHERE id_hash = $1 FOR UPDATE")
            .await?;
        if tx.query_opt(&stmt, &[&id_hash]).await?.is_none() {
            return Ok(false);
        }
        let stmt = tx
            .prepare_cached(
                "DELETE FROM portal_session_logins WHERE session_hash = $1 AND org_id = $2",
            )
            .await?;
        tx.execute(&stmt, &[&id_hash, &org_id]).await?;
        let stmt = tx
            .prepare_cached("SELECT COUNT(*) FROM portal_session_logins WHERE session_hash = $1")
            .await?;
        let left: i64 = tx.query_one(&stmt, &[&id_hash]).await?.try_get(0)?;
        if left == 0 {
            let stmt = tx
                .prepare_cached("DELETE FROM portal_sessions WHERE id_hash = $1")
                .await?;
            tx.execute(&stmt, &[&id_hash]).await?;
        }
        tx.commit().await?;
        Ok(left > 0)
    }

    async fn delete_portal_session(&self, id_hash: &[u8]) -> Result<()> {
        self.execute(
            "DELETE FROM portal_sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await?;
        Ok(())
    }

    async fn create_webhook(&self, webhook: &Webhook, max_per_org: u32) -> Result<Option<Webhook>> {
        let mut w = webhook.clone();
        w.created_at = truncate_ms(w.created_at);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Concurrent creations for one organization serialize on its row, so none overshoots.
        let lock = tx
            .prepare_cached("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
            .await?;
        if tx.query_opt(&lock, &[&w.org_id]).await?.is_none() {
            return Err(StoreError::NotFound("organization"));
        }
        let count = tx
            .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE org_id = $1")
            .await?;
        let n: i64 = tx.query_one(&count, &[&w.org_id]).await?.try_get(0)?;
        if n >= i64::from(max_per_org) {
            return Ok(None);
        }
        let head = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
            .await?;
        w.after_seq = tx.query_one(&head, &[]).await?.try_get(0)?;
        let insert = tx
            .prepare_cached(concat!(
                "INSERT INTO webhooks (",
                webhook_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .await?;
        tx.execute(
            &insert,
            &[
                &w.id,
                &w.org_id,
                &w.url,
                &events_column(&w.events),
                &w.sealed_secret,
                &w.after_seq,
                &w.created_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(w))
    }

    async fn list_webhooks(&self, org_id: Option<Uuid>) -> Result<Vec<Webhook>> {
        match org_id {
            Some(org) => {
                self.collect(
                    concat!(
                        "SELECT ",
                        webhook_columns!(),
                        " FROM webhooks WHERE org_id = $1 ORDER BY created_at, id"
                    ),
                    &[&org],
                    webhook_from_row,
                )
                .await
            }
            None => {
                self.collect(
                    concat!(
                        "SELECT ",
                        webhook_columns!(),
                        " FROM webhooks ORDER BY created_at, id"
                    ),
                    &[],
                    webhook_from_row,
                )
                .await
            }
        }
    }

    async fn delete_webhook(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let attempts = tx
            .prepare_cached(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                     (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                      WHERE w.id = $1 AND w.org_id = $2)",
            )
            .await?;
        tx.execute(&attempts, &[&id, &org_id]).await?;
        let deliveries = tx
            .prepare_cached(
                "DELETE FROM webhook_deliveries WHERE webhook_id =
                     (SELECT id FROM webhooks WHERE id = $1 AND org_id = $2)",
            )
            .await?;
        tx.execute(&deliveries, &[&id, &org_id]).await?;
        let hook = tx
            .prepare_cached("DELETE FROM webhooks WHERE id = $1 AND org_id = $2")
            .await?;
        let n = tx.execute(&hook, &[&id, &org_id]).await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn webhook_cursor(&self) -> Result<i64> {
        let row = self
            .first("SELECT seq FROM webhook_cursor WHERE id = 1", &[], |r| {
                Ok(r.try_get::<_, i64>(0)?)
            })
            .await?;
        row.ok_or(StoreError::NotFound("webhook cursor"))
    }

    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // A concurrent mover waits on the row, then finds the cursor no longer at `from`.
        let cursor = tx
            .prepare_cached("UPDATE webhook_cursor SET seq = $2 WHERE id = 1 AND seq = $1")
            .await?;
        if tx.execute(&cursor, &[&from, &to]).await? == 0 {
            return Ok(false);
        }
        let at = truncate_ms(at);
        let insert = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (webhook_id, org_id, audit_seq, event, payload, state,
                     attempts, next_attempt_at, created_at, updated_at)
                 SELECT id, org_id, $2, $3, $4, 'pending', 0, $5, $5, $5 FROM webhooks WHERE id = $1
                 ON CONFLICT (webhook_id, audit_seq) DO NOTHING",
            )
            .await?;
        for d in deliveries {
            tx.execute(
                &insert,
                &[
                    &d.webhook_id,
                    &d.audit_seq,
                    &d.event.as_str(),
                    &d.payload,
                    &at,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        // SKIP LOCKED: a concurrent claimer passes over the rows another one is taking, and
        // the locked rows are re-checked once locked.
        self.collect(
            concat!(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2
                 WHERE id IN (SELECT id FROM webhook_deliveries
                              WHERE state = 'pending' AND next_attempt_at <= $1
                              ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING ",
                delivery_columns!()
            ),
            &[
                &truncate_ms(now),
                &truncate_ms(lease_until),
                &sql_limit(limit),
            ],
            delivery_from_row,
        )
        .await
    }

    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool> {
        let r = result;
        let at = truncate_ms(r.attempt.at);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let update = tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, last_status = $5,
                     last_error = $6, updated_at = $7
                 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            )
            .await?;
        let n = tx
            .execute(
                &update,
                &[
                    &r.delivery_id,
                    &r.attempt.attempt,
                    &r.next.as_str(),
                    &truncate_ms(r.next_attempt_at),
                    &r.attempt.status,
                    &r.attempt.error,
                    &at,
                ],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error, millis)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &r.delivery_id,
                &r.attempt.attempt,
                &at,
                &r.attempt.status,
                &r.attempt.error,
                &r.attempt.millis,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = truncate_ms(before);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let attempts = tx
            .prepare_cached(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                     (SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < $1)",
            )
            .await?;
        tx.execute(&attempts, &[&before]).await?;
        let deliveries = tx
            .prepare_cached(
                "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < $1",
            )
            .await?;
        let n = tx.execute(&deliveries, &[&before]).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn list_deliveries(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        limit: u32,
    ) -> Result<Vec<DeliveryLog>> {
        let deliveries = self
            .collect(
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 AND org_id = $2
                     ORDER BY audit_seq DESC, id DESC LIMIT $3"
                ),
                &[&webhook_id, &org_id, &sql_limit(limit)],
                delivery_from_row,
            )
            .await?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let attempts = self
            .collect(
                "SELECT delivery_id, attempt, at, status, error, millis FROM webhook_attempts
                 WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
                &[&ids],
                |row| {
                    Ok((
                        row.try_get::<_, i64>(0)?,
                        DeliveryAttempt {
                            attempt: row.try_get(1)?,
                            at: row.try_get(2)?,
                            status: row.try_get(3)?,
                            error: row.try_get(4)?,
                            millis: row.try_get(5)?,
                        },
                    ))
                },
            )
            .await?;
        Ok(deliveries
            .into_iter()
            .map(|delivery| {
                let attempts = attempts
                    .iter()
                    .filter(|(id, _)| *id == delivery.id)
                    .map(|(_, a)| a.clone())
                    .collect();
                DeliveryLog { delivery, attempts }
            })
            .collect())
    }
}

/// Writes a customer key's row; 0 when the slot already holds one.
async fn insert_key_row(
    tx: &Transaction<'_>,
    key: &CustomerKey,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO customer_keys (org_id, db_type, provider, region, key_id, provider_account,
                 created_at, created_by, status, status_reason, status_since, last_check_at,
                 last_check_ok, last_check_message, bound_at, binding_warning)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (org_id, db_type, provider, region) DO NOTHING",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &key.org_id,
            &key.db_type.as_str(),
            &key.provider.as_str(),
            &key.region,
            &key.key_id,
            &key.provider_account,
            &truncate_ms(key.created_at),
            &key.created_by,
            &key.status.as_str(),
            &key.status_reason,
            &truncate_ms(key.status_since),
            &key.last_check_at.map(truncate_ms),
            &key.last_check_ok,
            &key.last_check_message,
            &key.bound_at.map(truncate_ms),
            &key.binding_warning,
        ],
    )
    .await
}
