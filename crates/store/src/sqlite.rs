//! The SQLite backend: one file in WAL mode, one writer connection and a few reader
//! connections. Writes and multi-row reads run on tokio's blocking pool; lookups by key of a
//! row or a few run in place, where they cannot wait on a lock: the readers' busy timeout is
//! zero there, and a lookup that finds the file busy is run again on the blocking pool with
//! the usual timeout (see `read_point`). Owns the SQLite schema migrations
//! (`migrations/sqlite/`).

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
use keyplane_core::audit::{AuditFields, GENESIS, entry_hash};
use keyplane_core::databases::{check_add_region, check_remove_region};
use keyplane_core::keys::OnInaccessible;
use keyplane_core::{DatabaseStatus, DbType, KeyStatus, Provider, QuotaKind, Quotas};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;
use uuid::Uuid;

/// Numbered migrations, applied in order, each in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_customer_keys_audit.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_databases.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_datacenters_by_key.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_job_leases_and_portal_sessions.sql"),
    ),
    (
        6,
        include_str!("../migrations/sqlite/0006_keyspaces_last_use.sql"),
    ),
    (
        7,
        include_str!("../migrations/sqlite/0007_key_binding_and_quotas.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_serverless_provider_ids.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_suspended_datacenters.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_terminated_datacenters.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_key_logins.sql")),
    (
        12,
        include_str!("../migrations/sqlite/0012_on_inaccessible.sql"),
    ),
    (13, include_str!("../migrations/sqlite/0013_webhooks.sql")),
    (
        14,
        include_str!("../migrations/sqlite/0014_data_key_rotation.sql"),
    ),
    (
        15,
        include_str!("../migrations/sqlite/0015_rotation_overdue.sql"),
    ),
];

/// Readers run in parallel under WAL; more than a few buys nothing on the small machines
/// keyplane targets and each one holds its own page cache and statement cache.
const READERS: usize = 4;

/// Enough for every statement this module prepares, so `prepare_cached` never evicts.
const STATEMENT_CACHE: usize = 64;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// SQLite admits one writer at a time anyway; one connection behind a mutex makes writers
    /// queue in-process instead of spinning on SQLITE_BUSY.
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path`
    /// and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let path = path.to_path_buf();
        let inner = tokio::task::spawn_blocking(move || Inner::open(path))
            .await
            .map_err(join_error)??;
        Ok(SqliteStore {
            inner: Arc::new(inner),
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader();
            // Here, on the blocking pool, a reader may wait for a lock; in place it may not.
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let result = f(&conn);
            conn.busy_timeout(Duration::ZERO)?;
            result
        })
        .await
        .map_err(join_error)?
    }

    /// For lookups by key of one row or a few (a few microseconds on a cached page): runs `f`
    /// right here on the async worker when a reader is free, since the hand-off to the
    /// blocking pool and back costs more than the query itself (it capped `authenticate` near
    /// 70k/s on two cores, mostly in context switches). It never waits there: the reader's
    /// busy timeout is zero, so a file locked by someone else (a checkpoint, another process,
    /// WAL recovery) answers SQLITE_BUSY at once and the lookup is run again on the blocking
    /// pool, where waiting is harmless; so is a lookup that finds every reader busy.
    async fn read_point<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        if let Some(conn) = self.inner.free_reader() {
            match f(&conn) {
                Err(e) if is_busy(&e) => {}
                done => return done,
            }
        }
        self.read(f).await
    }

    /// Runs `f` in an IMMEDIATE transaction: it takes the write lock up front, so a
    /// read-then-write inside `f` cannot fail half way with SQLITE_BUSY when another process
    /// shares the file.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(join_error)?
    }
}

/// Activates a provisioned datacenter, or suspends it with its key's revocation reason (the
/// right-hand sides see the row before the update).
const ACTIVATE_DATACENTER_SQLITE: &str = "UPDATE datacenters SET
         status = CASE WHEN message LIKE ?3 OR EXISTS (
             SELECT 1 FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
             WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
               AND k.provider = datacenters.provider AND k.region = datacenters.region
               AND k.key_id = datacenters.key_id AND k.status = 'REVOKED')
           THEN 'SUSPENDED' ELSE 'ACTIVE' END,
         message = CASE WHEN message LIKE ?3 THEN message ELSE COALESCE((
             SELECT k.status_reason FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
             WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
               AND k.provider = datacenters.provider AND k.region = datacenters.region
               AND k.key_id = datacenters.key_id AND k.status = 'REVOKED'), '') END,
         updated_at = ?2
     WHERE id = ?1
     RETURNING status";

/// Resumes a suspended datacenter unless its key is revoked: the key's row says so once the
/// revoke committed, the datacenter's own reason says so while it is being written.
const RESUME_DATACENTER_SQLITE: &str =
    "UPDATE datacenters SET status = 'ACTIVE', message = '', updated_at = ?2
     WHERE id = ?1 AND status = 'SUSPENDED' AND message NOT LIKE ?3
       AND NOT EXISTS (
         SELECT 1 FROM customer_keys k JOIN databases d ON d.id = datacenters.database_id
         WHERE k.org_id = datacenters.org_id AND k.db_type = d.db_type
           AND k.provider = datacenters.provider AND k.region = datacenters.region
           AND k.key_id = datacenters.key_id AND k.status = 'REVOKED')";

impl Inner {
    fn open(path: PathBuf) -> Result<Inner> {
        // Every connection of an in-memory database would be a database of its own, so the
        // readers would never see what the writer wrote.
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Err(StoreError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "SQLite store needs a file path, not an in-memory database",
                ),
            });
        }
        crate::files::prepare_database_file(&path)?;
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        // Deleted content is overwritten with zeros rather than left in free space: a
        // terminated datacenter's wrapped data key must not survive in the file.
        let _: i64 =
            writer.pragma_update_and_check(None, "secure_delete", true, |row| row.get(0))?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems cannot do WAL; the store still works, with readers and the
            // writer blocking each other.
            tracing::warn!(path = %path.display(), mode, "SQLite database is not in WAL mode");
        }
        migrate(&mut writer)?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&conn)?;
            // Readers run in place on async workers (`read_point`), where they must not wait.
            conn.busy_timeout(Duration::ZERO)?;
            // A reader that tried to write would take the file's write lock behind the
            // writer's back.
            conn.pragma_update(None, "query_only", true)?;
            readers.push(Mutex::new(conn));
        }
        Ok(Inner {
            path,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn free_reader(&self) -> Option<MutexGuard<'_, Connection>> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).find_map(|i| match self.readers[(start + i) % n].try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    /// A free reader if there is one, else waits for the next in rotation.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        match self.free_reader() {
            Some(guard) => guard,
            None => lock(
                &self.readers
                    [self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len()],
            ),
        }
    }
}

/// A panic while a connection was held cannot leave it inside a transaction (rusqlite's
/// `Transaction` rolls back on drop), so a poisoned connection is still good to use.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Without the query-planner stability guarantee, this SQLite build (STAT4) re-prepares a
    // cached statement whenever a bound value changes, which made every `authenticate` parse
    // its SQL again. The plans here do not depend on the values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY NOT NULL,
                 applied_at TEXT NOT NULL
             ) STRICT",
        )?;
        tx.commit()?;
    }
    for &(version, sql) in MIGRATIONS {
        apply_migration(conn, version, sql).map_err(|e| StoreError::Migration {
            version,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Checks and applies under one IMMEDIATE transaction, so that two processes opening the
/// same new file apply each migration once.
fn apply_migration(conn: &mut Connection, version: i64, sql: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied = tx
        .query_row(
            "SELECT 1 FROM schema_migrations WHERE version = ?1",
            [version],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !applied {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, format_ts(now_ms())],
        )?;
        tracing::info!(version, "applied SQLite migration");
    }
    tx.commit()?;
    Ok(())
}

/// SQLite's "the file is locked by someone else": retried where waiting is allowed.
fn is_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite(e) if matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    ))
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Task(e.to_string())
}

fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

/// Database IDs as the JSON array that `json_each` reads, so one cached statement takes a
/// list of any length.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::Value::from(ids.iter().map(Uuid::to_string).collect::<Vec<_>>()).to_string()
}

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

fn parse_regions(s: &str) -> Result<BTreeMap<Provider, Vec<String>>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("unlocked_regions {s:?}: {e}")))
}

/// Turns a foreign-key failure into NotFound(what): the caller named a parent that does not exist.
fn missing_parent(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error() {
        Some(err) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
            StoreError::NotFound(what)
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Borrows a text column without copying it (the hot `authenticate` path parses several).
fn text<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r str> {
    let value = row.get_ref(idx)?;
    value.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), Box::new(e)).into()
    })
}

fn opt_text<'r>(row: &'r Row<'_>, idx: usize) -> Result<Option<&'r str>> {
    let value = row.get_ref(idx)?;
    value.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), Box::new(e)).into()
    })
}

fn enterprise_from_row(row: &Row<'_>) -> Result<Enterprise> {
    Ok(Enterprise {
        id: parse_uuid(text(row, 0)?)?,
        name: row.get(1)?,
        created_at: parse_ts(text(row, 2)?)?,
    })
}

fn org_from_row(row: &Row<'_>, at: usize) -> Result<Organization> {
    Ok(Organization {
        id: parse_uuid(text(row, at)?)?,
        name: row.get(at + 1)?,
        enterprise_id: opt_text(row, at + 2)?.map(parse_uuid).transpose()?,
        unlocked_regions: parse_regions(text(row, at + 3)?)?,
        created_at: parse_ts(text(row, at + 4)?)?,
    })
}

fn token_from_row(row: &Row<'_>) -> Result<TokenRecord> {
    Ok(TokenRecord {
        client_id: row.get(0)?,
        org_id: parse_uuid(text(row, 1)?)?,
        role: parse_role(text(row, 2)?)?,
        secret_hash: row.get(3)?,
        description: row.get(4)?,
        created_at: parse_ts(text(row, 5)?)?,
        revoked_at: opt_text(row, 6)?.map(parse_ts).transpose()?,
    })
}

fn assignment_from_row(row: &Row<'_>) -> Result<AccountAssignment> {
    Ok(AccountAssignment {
        org_id: parse_uuid(text(row, 0)?)?,
        provider: parse_provider(text(row, 1)?)?,
        account_id: row.get(2)?,
        ordinal: row.get(3)?,
        created_at: parse_ts(text(row, 4)?)?,
    })
}

fn customer_key_from_row(row: &Row<'_>) -> Result<CustomerKey> {
    Ok(CustomerKey {
        org_id: parse_uuid(text(row, 0)?)?,
        db_type: parse_db_type(text(row, 1)?)?,
        provider: parse_provider(text(row, 2)?)?,
        region: row.get(3)?,
        key_id: row.get(4)?,
        provider_account: row.get(5)?,
        created_at: parse_ts(text(row, 6)?)?,
        created_by: row.get(7)?,
        status: parse_key_status(text(row, 8)?)?,
        status_reason: row.get(9)?,
        status_since: parse_ts(text(row, 10)?)?,
        last_check_at: opt_text(row, 11)?.map(parse_ts).transpose()?,
        last_check_ok: row.get(12)?,
        last_check_message: row.get(13)?,
        bound_at: opt_text(row, 14)?.map(parse_ts).transpose()?,
        binding_warning: row.get(15)?,
    })
}

/// How many `kind` the organization holds now, read inside the transaction that adds more;
/// None when `quotas` sets no limit (nothing to count).
fn in_use(
    tx: &rusqlite::Transaction<'_>,
    org_id: Uuid,
    kind: QuotaKind,
    quotas: &Quotas,
) -> Result<Option<u64>> {
    if quotas.limit(kind) == u32::MAX {
        return Ok(None);
    }
    let sql = match kind {
        QuotaKind::Databases => {
            "SELECT COUNT(*) FROM databases WHERE org_id = ?1 AND status <> 'TERMINATED'"
        }
        QuotaKind::Datacenters => {
            "SELECT COUNT(*) FROM datacenters WHERE org_id = ?1 AND status <> 'TERMINATED'"
        }
        QuotaKind::Tokens => "SELECT COUNT(*) FROM tokens WHERE org_id = ?1 AND revoked_at IS NULL",
    };
    let n: i64 = tx
        .prepare_cached(sql)?
        .query_row([org_id.to_string()], |row| row.get(0))?;
    Ok(Some(u64::try_from(n).unwrap_or(0)))
}

/// The first of `kinds` whose quota one more would exceed.
fn over_quota(
    tx: &rusqlite::Transaction<'_>,
    org_id: Uuid,
    kinds: &[QuotaKind],
    quotas: &Quotas,
) -> Result<Option<keyplane_core::QuotaExceeded>> {
    for &kind in kinds {
        if let Some(n) = in_use(tx, org_id, kind, quotas)?
            && let Err(e) = quotas.check(kind, n, 1)
        {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

fn audit_from_row(row: &Row<'_>) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: row.get(0)?,
        org_id: parse_uuid(text(row, 1)?)?,
        at: parse_ts(text(row, 2)?)?,
        actor: row.get(3)?,
        action: parse_audit_action(text(row, 4)?)?,
        target: row.get(5)?,
        outcome: parse_audit_outcome(text(row, 6)?)?,
        reason: row.get(7)?,
        prev_hash: row.get(8)?,
        hash: row.get(9)?,
    })
}

/// Collects every row of a query through a fallible mapper (rusqlite's own mappers can only
/// fail with rusqlite errors).
fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

fn first<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

fn database_from_row(row: &Row<'_>) -> Result<Database> {
    Ok(Database {
        id: parse_uuid(text(row, 0)?)?,
        org_id: parse_uuid(text(row, 1)?)?,
        name: row.get(2)?,
        keyspace: row.get(3)?,
        db_type: parse_db_type(text(row, 4)?)?,
        provider: parse_provider(text(row, 5)?)?,
        tier: row.get(6)?,
        capacity_units: row.get(7)?,
        status: parse_db_status(text(row, 8)?)?,
        message: row.get(9)?,
        owner: row.get(10)?,
        customer_keyed: row.get(11)?,
        created_at: parse_ts(text(row, 12)?)?,
        updated_at: parse_ts(text(row, 13)?)?,
        terminated_at: opt_text(row, 14)?.map(parse_ts).transpose()?,
        last_used_at: opt_text(row, 15)?.map(parse_ts).transpose()?,
    })
}

fn datacenter_from_row(row: &Row<'_>) -> Result<Datacenter> {
    Ok(Datacenter {
        id: row.get(0)?,
        database_id: parse_uuid(text(row, 1)?)?,
        org_id: parse_uuid(text(row, 2)?)?,
        ordinal: row.get(3)?,
        provider: parse_provider(text(row, 4)?)?,
        region: row.get(5)?,
        tier: row.get(6)?,
        status: parse_db_status(text(row, 7)?)?,
        message: row.get(8)?,
        key_kind: parse_key_kind(text(row, 9)?)?,
        key_id: row.get(10)?,
        provider_account: row.get(11)?,
        wrapped_data_key: row.get(12)?,
        kms_failing_since: opt_text(row, 13)?.map(parse_ts).transpose()?,
        created_at: parse_ts(text(row, 14)?)?,
        updated_at: parse_ts(text(row, 15)?)?,
        terminated_at: opt_text(row, 16)?.map(parse_ts).transpose()?,
        pending_wrapped_data_key: row.get(17)?,
        data_key_rotated_at: opt_text(row, 18)?.map(parse_ts).transpose()?,
    })
}

fn job_from_row(row: &Row<'_>) -> Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        kind: parse_job_kind(text(row, 1)?)?,
        database_id: parse_uuid(text(row, 2)?)?,
        datacenter_id: row.get(3)?,
        state: parse_job_state(text(row, 4)?)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
        not_before: parse_ts(text(row, 7)?)?,
        created_at: parse_ts(text(row, 8)?)?,
        lease_owner: row.get(9)?,
        lease_until: opt_text(row, 10)?.map(parse_ts).transpose()?,
        taken_over_from: row.get(11)?,
    })
}

/// Errs NotFound("job") when no job has that id, else Lost: a fenced update that changed no
/// row found the job held by another replica (or not running).
fn lease_lost(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Lease> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        Ok(Lease::Lost)
    } else {
        Err(StoreError::NotFound("job"))
    }
}

/// The outcome of a lease-fenced job update that changed `n` rows.
fn fenced(tx: &rusqlite::Transaction<'_>, id: i64, n: usize) -> Result<Lease> {
    if n == 1 {
        Ok(Lease::Held)
    } else {
        lease_lost(tx, id)
    }
}

fn portal_session_from_rows(rows: Vec<SessionRow>) -> Option<PortalSession> {
    let first = rows.first()?;
    let mut session = PortalSession {
        id_hash: first.id_hash.clone(),
        current_org: first.current_org,
        logins: Vec::with_capacity(rows.len()),
        created_at: first.created_at,
        expires_at: first.expires_at,
    };
    for row in rows {
        if let Some(login) = row.login {
            session.logins.push(login);
        }
    }
    Some(session)
}

/// One row of a session joined with one of its logins (none for a session without logins).
struct SessionRow {
    id_hash: Vec<u8>,
    current_org: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    login: Option<PortalLogin>,
}

fn session_row(row: &Row<'_>) -> Result<SessionRow> {
    let login = match opt_text(row, 4)? {
        Some(org) => Some(PortalLogin {
            org_id: parse_uuid(org)?,
            client_id: row.get(5)?,
            added_at: parse_ts(text(row, 6)?)?,
        }),
        None => None,
    };
    Ok(SessionRow {
        id_hash: row.get(0)?,
        current_org: opt_text(row, 1)?.map(parse_uuid).transpose()?,
        created_at: parse_ts(text(row, 2)?)?,
        expires_at: parse_ts(text(row, 3)?)?,
        login,
    })
}

fn insert_datacenter(tx: &rusqlite::Transaction<'_>, dc: &Datacenter) -> Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO datacenters (",
        datacenter_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))?
    .execute(params![
        dc.id,
        dc.database_id.to_string(),
        dc.org_id.to_string(),
        dc.ordinal,
        dc.provider.as_str(),
        dc.region,
        dc.tier,
        dc.status.as_str(),
        dc.message,
        dc.key_kind.as_str(),
        dc.key_id,
        dc.provider_account,
        dc.wrapped_data_key,
        dc.kms_failing_since.map(|t| format_ts(truncate_ms(t))),
        format_ts(truncate_ms(dc.created_at)),
        format_ts(truncate_ms(dc.updated_at)),
        dc.terminated_at.map(|t| format_ts(truncate_ms(t))),
        dc.pending_wrapped_data_key,
        dc.data_key_rotated_at.map(|t| format_ts(truncate_ms(t))),
    ])
    .map_err(missing_parent("database or organization"))?;
    if let Some(id) = serverless_identity(dc) {
        tx.prepare_cached("UPDATE datacenters SET serverless_identity = ?2 WHERE id = ?1")?
            .execute(params![dc.id, id])
            .map_err(|e| match e.sqlite_error() {
                Some(err) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                    StoreError::ProviderIdTaken(id.to_string())
                }
                _ => StoreError::Sqlite(e),
            })?;
    }
    Ok(())
}

/// Inserts a pending job, due now; returns its id.
fn insert_job(tx: &rusqlite::Transaction<'_>, job: &NewJob, now: &str) -> Result<i64> {
    let what = if job.datacenter_id.is_some() {
        "database or datacenter"
    } else {
        "database"
    };
    let id = tx
        .prepare_cached(
            "INSERT INTO jobs (kind, database_id, datacenter_id, state, attempts, last_error,
                 not_before, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'pending', 0, '', ?4, ?4, ?4) RETURNING id",
        )?
        .query_row(
            params![
                job.kind.as_str(),
                job.database_id.to_string(),
                job.datacenter_id,
                now
            ],
            |row| row.get(0),
        )
        .map_err(missing_parent(what))?;
    Ok(id)
}

/// The database's status, read inside the transaction that is about to change its regions.
fn database_status(
    tx: &rusqlite::Transaction<'_>,
    org_id: Uuid,
    database_id: Uuid,
) -> Result<DatabaseStatus> {
    let status = tx
        .prepare_cached("SELECT status FROM databases WHERE id = ?1 AND org_id = ?2")?
        .query_row(
            params![database_id.to_string(), org_id.to_string()],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("database"))?;
    parse_db_status(&status)
}

/// (status, region) of every datacenter of the database, for the region rules.
fn region_rows(
    tx: &rusqlite::Transaction<'_>,
    database_id: Uuid,
) -> Result<Vec<(DatabaseStatus, String)>> {
    collect(
        tx,
        "SELECT status, region FROM datacenters WHERE database_id = ?1",
        [database_id.to_string()],
        |row| Ok((parse_db_status(text(row, 0)?)?, row.get(1)?)),
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.read_point(|conn| {
            conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn create_enterprise(&self, name: &str) -> Result<Enterprise> {
        let enterprise = Enterprise {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let row = enterprise.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO enterprises (id, name, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                row.id.to_string(),
                row.name,
                format_ts(row.created_at)
            ])?;
            Ok(())
        })
        .await?;
        Ok(enterprise)
    }

    async fn get_enterprise(&self, id: Uuid) -> Result<Option<Enterprise>> {
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    enterprise_columns!(),
                    " FROM enterprises WHERE id = ?1"
                ),
                [id.to_string()],
                enterprise_from_row,
            )
        })
        .await
    }

    async fn list_enterprises(&self) -> Result<Vec<Enterprise>> {
        self.read(|conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    enterprise_columns!(),
                    " FROM enterprises ORDER BY name, id"
                ),
                [],
                enterprise_from_row,
            )
        })
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
        let row = org.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO organizations (id, name, enterprise_id, unlocked_regions, created_at)
                 VALUES (?1, ?2, ?3, '{}', ?4)",
            )?
            .execute(params![
                row.id.to_string(),
                row.name,
                row.enterprise_id.map(|id| id.to_string()),
                format_ts(row.created_at)
            ])
            .map_err(missing_parent("enterprise"))?;
            Ok(())
        })
        .await?;
        Ok(org)
    }

    async fn get_org(&self, id: Uuid) -> Result<Option<Organization>> {
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    org_columns!(),
                    " FROM organizations o WHERE o.id = ?1"
                ),
                [id.to_string()],
                |row| org_from_row(row, 0),
            )
        })
        .await
    }

    async fn list_orgs(&self, enterprise_id: Option<Uuid>) -> Result<Vec<Organization>> {
        self.read(move |conn| match enterprise_id {
            None => collect(
                conn,
                concat!(
                    "SELECT ",
                    org_columns!(),
                    " FROM organizations o ORDER BY o.name, o.id"
                ),
                [],
                |row| org_from_row(row, 0),
            ),
            Some(ent) => collect(
                conn,
                concat!(
                    "SELECT ",
                    org_columns!(),
                    " FROM organizations o WHERE o.enterprise_id = ?1 ORDER BY o.name, o.id"
                ),
                [ent.to_string()],
                |row| org_from_row(row, 0),
            ),
        })
        .await
    }

    async fn set_unlocked_regions(
        &self,
        org_id: Uuid,
        provider: Provider,
        regions: Option<Vec<String>>,
    ) -> Result<()> {
        // Provider names are plain lower-case words, safe inside a JSON path.
        let path = format!("$.{}", provider.as_str());
        let regions = regions
            .map(|r| serde_json::to_string(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("regions do not serialize: {e}")))?;
        let changed = self
            .write(move |tx| {
                let n = match regions {
                    None => tx
                        .prepare_cached(
                            "UPDATE organizations SET unlocked_regions = json_remove(unlocked_regions, ?2) WHERE id = ?1",
                        )?
                        .execute(params![org_id.to_string(), path])?,
                    Some(json) => tx
                        .prepare_cached(
                            "UPDATE organizations SET unlocked_regions = json_set(unlocked_regions, ?2, json(?3))
                             WHERE id = ?1",
                        )?
                        .execute(params![org_id.to_string(), path, json])?,
                };
                Ok(n)
            })
            .await?;
        one_row(changed, "organization")
    }

    async fn insert_token(&self, token: &TokenRecord, quotas: &Quotas) -> Result<CreateOutcome> {
        let token = token.clone();
        let quotas = *quotas;
        self.write(move |tx| {
            // The IMMEDIATE transaction holds the write lock: no insert interleaves the count.
            if let Some(e) = over_quota(tx, token.org_id, &[QuotaKind::Tokens], &quotas)? {
                return Ok(CreateOutcome::OverQuota(e));
            }
            tx.prepare_cached(
                "INSERT INTO tokens (client_id, org_id, role, secret_hash, description, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                token.client_id,
                token.org_id.to_string(),
                token.role.to_storage(),
                token.secret_hash,
                token.description,
                format_ts(truncate_ms(token.created_at)),
                token.revoked_at.map(|t| format_ts(truncate_ms(t))),
            ])
            .map_err(missing_parent("organization"))?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn authenticate(&self, client_id: &str) -> Result<Option<(TokenRecord, Organization)>> {
        let client_id = client_id.to_owned();
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    token_columns!(),
                    ", ",
                    org_columns!(),
                    "
                     FROM tokens t JOIN organizations o ON o.id = t.org_id
                     WHERE t.client_id = ?1"
                ),
                [&client_id],
                |row| Ok((token_from_row(row)?, org_from_row(row, TOKEN_COLUMN_COUNT)?)),
            )
        })
        .await
    }

    async fn list_tokens(&self, org_id: Uuid) -> Result<Vec<TokenRecord>> {
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    token_columns!(),
                    " FROM tokens t WHERE t.org_id = ?1 ORDER BY t.created_at DESC, t.client_id"
                ),
                [org_id.to_string()],
                token_from_row,
            )
        })
        .await
    }

    async fn revoke_token(&self, org_id: Uuid, client_id: &str) -> Result<bool> {
        let client_id = client_id.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE tokens SET revoked_at = ?3
                     WHERE org_id = ?1 AND client_id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![org_id.to_string(), client_id, format_ts(now_ms())])?;
            if n == 1 {
                // The portal sessions it signed in end with it (a session left without any
                // login is gone at its next request).
                tx.prepare_cached("DELETE FROM portal_session_logins WHERE client_id = ?1")?
                    .execute([&client_id])?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn assigned_accounts(
        &self,
        org_id: Uuid,
        provider: Provider,
    ) -> Result<Vec<AccountAssignment>> {
        self.read(move |conn| {
            collect(
                conn,
                "SELECT org_id, provider, account_id, ordinal, created_at FROM account_assignments
                 WHERE org_id = ?1 AND provider = ?2 ORDER BY ordinal",
                params![org_id.to_string(), provider.as_str()],
                assignment_from_row,
            )
        })
        .await
    }

    async fn account_usage(&self, provider: Provider) -> Result<BTreeMap<String, i64>> {
        self.read(move |conn| {
            let rows = collect(
                conn,
                "SELECT account_id, COUNT(*) FROM account_assignments WHERE provider = ?1 GROUP BY account_id",
                [provider.as_str()],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )?;
            Ok(rows.into_iter().collect())
        })
        .await
    }

    async fn try_assign_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool> {
        let account_id = account_id.to_owned();
        self.write(move |tx| {
            // DO NOTHING covers both unique constraints (ordinal and account) and nothing else:
            // a missing organization still fails.
            let n = tx
                .prepare_cached(
                    "INSERT INTO account_assignments (org_id, provider, account_id, ordinal, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![org_id.to_string(), provider.as_str(), account_id, ordinal, format_ts(now_ms())])
                .map_err(missing_parent("organization"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn try_assign_exclusive_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool> {
        let account_id = account_id.to_owned();
        // The IMMEDIATE transaction serializes writers, so no other organization's
        // assignment can appear between the check and the insert.
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO account_assignments (org_id, provider, account_id, ordinal, created_at)
                     SELECT ?1, ?2, ?3, ?4, ?5
                     WHERE NOT EXISTS (SELECT 1 FROM account_assignments
                                       WHERE provider = ?2 AND account_id = ?3 AND org_id <> ?1)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![org_id.to_string(), provider.as_str(), account_id, ordinal, format_ts(now_ms())])
                .map_err(missing_parent("organization"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read_point(move |conn| {
            first(
                conn,
                "SELECT value FROM settings WHERE key = ?1",
                [&key],
                |row| Ok(row.get(0)?),
            )
        })
        .await
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let key = key.to_owned();
        let value = value.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![key, value])?;
            Ok(tx
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |row| row.get(0))?)
        })
        .await
    }

    async fn put_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (key_id, sealed) = (key_id.to_owned(), sealed.to_vec());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO key_logins (org_id, provider, key_id, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (org_id, provider, key_id) DO UPDATE SET sealed = excluded.sealed, \
                 updated_at = excluded.updated_at",
            )?
            .execute(params![
                org_id.to_string(),
                provider.as_str(),
                key_id,
                sealed,
                format_ts(at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn set_on_inaccessible(
        &self,
        org_id: Uuid,
        key_id: Option<&str>,
        choice: Option<OnInaccessible>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let key_id = key_id.unwrap_or("").to_owned();
        self.write(move |tx| {
            match choice {
                Some(c) => tx
                    .prepare_cached(
                        "INSERT INTO on_inaccessible (org_id, key_id, action, alert_secs, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (org_id, key_id) DO UPDATE SET \
                         action = excluded.action, alert_secs = excluded.alert_secs, updated_at = excluded.updated_at",
                    )?
                    .execute(params![
                        org_id.to_string(),
                        key_id,
                        c.action(),
                        alert_secs(c),
                        format_ts(at)
                    ])
                    .map_err(missing_parent("organization"))?,
                None => tx
                    .prepare_cached("DELETE FROM on_inaccessible WHERE org_id = ?1 AND key_id = ?2")?
                    .execute(params![org_id.to_string(), key_id])?,
            };
            Ok(())
        })
        .await
    }

    async fn on_inaccessible_choices(
        &self,
        org_id: Option<Uuid>,
    ) -> Result<Vec<InaccessibleChoice>> {
        self.read(move |conn| {
            let map = |row: &Row<'_>| {
                Ok(InaccessibleChoice {
                    org_id: parse_uuid(text(row, 0)?)?,
                    key_id: Some(text(row, 1)?.to_string()).filter(|k| !k.is_empty()),
                    choice: choice_from(text(row, 2)?, row.get(3)?)?,
                    updated_at: parse_ts(text(row, 4)?)?,
                })
            };
            match org_id {
                Some(org) => collect(
                    conn,
                    "SELECT org_id, key_id, action, alert_secs, updated_at FROM on_inaccessible \
                     WHERE org_id = ?1 ORDER BY key_id",
                    [org.to_string()],
                    map,
                ),
                None => collect(
                    conn,
                    "SELECT org_id, key_id, action, alert_secs, updated_at FROM on_inaccessible \
                     ORDER BY org_id, key_id",
                    [],
                    map,
                ),
            }
        })
        .await
    }

    async fn get_key_login(
        &self,
        org_id: Uuid,
        provider: Provider,
        key_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let key_id = key_id.to_owned();
        self.read_point(move |conn| {
            first(
                conn,
                "SELECT sealed FROM key_logins WHERE org_id = ?1 AND provider = ?2 AND key_id = ?3",
                params![org_id.to_string(), provider.as_str(), key_id],
                |row| Ok(row.get(0)?),
            )
        })
        .await
    }

    async fn insert_customer_key(&self, key: &CustomerKey) -> Result<Option<CustomerKey>> {
        let key = key.clone();
        self.write(move |tx| {
            let inserted = insert_key_row(tx, &key).map_err(missing_parent("organization"))?;
            if inserted == 1 {
                return Ok(None);
            }
            let existing = first(
                tx,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4"
                ),
                params![
                    key.org_id.to_string(),
                    key.db_type.as_str(),
                    key.provider.as_str(),
                    key.region
                ],
                customer_key_from_row,
            )?;
            existing
                .map(Some)
                .ok_or(StoreError::Corrupt(
                    "customer key insert conflicted but no key is stored".to_owned(),
                ))
        })
        .await
    }

    async fn get_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Option<CustomerKey>> {
        let region = region.to_owned();
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4"
                ),
                params![
                    org_id.to_string(),
                    db_type.as_str(),
                    provider.as_str(),
                    region
                ],
                customer_key_from_row,
            )
        })
        .await
    }

    async fn list_customer_keys(
        &self,
        org_id: Uuid,
        db_type: Option<DbType>,
    ) -> Result<Vec<CustomerKey>> {
        self.read(move |conn| match db_type {
            None => collect(
                conn,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 ORDER BY db_type, provider, region"
                ),
                [org_id.to_string()],
                customer_key_from_row,
            ),
            Some(db_type) => collect(
                conn,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 AND db_type = ?2 ORDER BY db_type, provider, region"
                ),
                params![org_id.to_string(), db_type.as_str()],
                customer_key_from_row,
            ),
        })
        .await
    }

    async fn update_customer_key_status(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool> {
        let region = region.to_owned();
        let update = update.clone();
        self.write(move |tx| {
            // Right-hand sides see the old row, so status_since compares with the old status.
            let n = tx
                .prepare_cached(
                    "UPDATE customer_keys SET
                         status_since = CASE WHEN status = ?5 OR status = 'REVOKED'
                                        THEN status_since ELSE ?7 END,
                         status = CASE WHEN status = 'REVOKED' THEN status ELSE ?5 END,
                         status_reason = CASE WHEN status = 'REVOKED' THEN status_reason ELSE ?6 END,
                         last_check_at = ?7,
                         last_check_ok = ?8,
                         last_check_message = ?9
                     WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4
                       AND key_id = ?10",
                )?
                .execute(params![
                    org_id.to_string(),
                    db_type.as_str(),
                    provider.as_str(),
                    region,
                    update.status.as_str(),
                    update.status_reason,
                    format_ts(truncate_ms(update.checked_at)),
                    update.check_ok,
                    update.check_message,
                    update.key_id,
                ])?;
            Ok(n == 1)
        })
        .await
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
        let (region, reason) = (region.to_owned(), reason.to_owned());
        self.write(move |tx| {
            let at = format_ts(truncate_ms(at));
            let org = org_id.to_string();
            let n = tx
                .prepare_cached(
                    "UPDATE customer_keys SET
                         status_since = CASE WHEN status = 'REVOKED' THEN status_since ELSE ?6 END,
                         status = 'REVOKED',
                         status_reason = ?5
                     WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4",
                )?
                .execute(params![
                    org,
                    db_type.as_str(),
                    provider.as_str(),
                    region,
                    reason,
                    at
                ])?;
            if n == 0 {
                return Ok(None);
            }
            let key_id: String = tx
                .prepare_cached(
                    "SELECT key_id FROM customer_keys
                     WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4",
                )?
                .query_row(
                    params![org, db_type.as_str(), provider.as_str(), region],
                    |r| r.get(0),
                )?;
            let mut stmt = tx.prepare_cached(
                "UPDATE datacenters SET status = 'SUSPENDED', message = ?6, updated_at = ?7
                 WHERE org_id = ?1 AND key_id = ?2 AND region = ?3 AND provider = ?4
                   AND key_kind = 'customer'
                   AND status IN ('ACTIVE', 'MAINTENANCE', 'SUSPENDED', 'PENDING', 'INITIALIZING')
                   AND database_id IN (SELECT id FROM databases WHERE db_type = ?5)
                 RETURNING id",
            )?;
            let mut rows = stmt.query(params![
                org,
                key_id,
                region,
                provider.as_str(),
                db_type.as_str(),
                reason,
                at
            ])?;
            let mut ids = Vec::new();
            while let Some(row) = rows.next()? {
                ids.push(row.get::<_, String>(0)?);
            }
            ids.sort();
            Ok(Some(ids))
        })
        .await
    }

    async fn delete_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<DeleteKeyOutcome> {
        let region = region.to_owned();
        self.write(move |tx| {
            let org = org_id.to_string();
            let slot = params![org, db_type.as_str(), provider.as_str(), region];
            let Some(key) = first(
                tx,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4"
                ),
                slot,
                customer_key_from_row,
            )?
            else {
                return Ok(DeleteKeyOutcome::NotRegistered);
            };
            let users = collect(
                tx,
                "SELECT id FROM datacenters
                 WHERE org_id = ?1 AND key_id = ?2 AND region = ?3 AND provider = ?4
                   AND key_kind = 'customer' AND status <> 'TERMINATED'
                   AND database_id IN (SELECT id FROM databases WHERE db_type = ?5)
                 ORDER BY id",
                params![org, key.key_id, region, provider.as_str(), db_type.as_str()],
                |r| Ok(r.get::<_, String>(0)?),
            )?;
            if !users.is_empty() {
                return Ok(DeleteKeyOutcome::InUse(users));
            }
            tx.prepare_cached(
                "DELETE FROM customer_keys
                 WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4",
            )?
            .execute(slot)?;
            // The key's login goes with its last use: no slot and no live datacenter left.
            tx.prepare_cached(
                "DELETE FROM key_logins WHERE org_id = ?1 AND provider = ?2 AND key_id = ?3
                   AND NOT EXISTS (SELECT 1 FROM customer_keys
                                   WHERE org_id = ?1 AND provider = ?2 AND key_id = ?3)
                   AND NOT EXISTS (SELECT 1 FROM datacenters
                                   WHERE org_id = ?1 AND provider = ?2 AND key_id = ?3
                                     AND status <> 'TERMINATED')",
            )?
            .execute(params![org, provider.as_str(), key.key_id])?;
            Ok(DeleteKeyOutcome::Deleted(Box::new(key)))
        })
        .await
    }

    async fn replace_customer_key(
        &self,
        expected_key_id: &str,
        new: &CustomerKey,
    ) -> Result<ReplaceKeyOutcome> {
        let (expected, new) = (expected_key_id.to_owned(), new.clone());
        self.write(move |tx| {
            let org = new.org_id.to_string();
            let Some(current) = first(
                tx,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4"
                ),
                params![org, new.db_type.as_str(), new.provider.as_str(), new.region],
                customer_key_from_row,
            )?
            else {
                return Ok(ReplaceKeyOutcome::NotRegistered);
            };
            if current.key_id != expected {
                return Ok(ReplaceKeyOutcome::Changed(Box::new(current)));
            }
            if current.status == KeyStatus::Revoked {
                return Ok(ReplaceKeyOutcome::Revoked(Box::new(current)));
            }
            // The slot's row is written whole, as a registration writes it.
            tx.prepare_cached(
                "DELETE FROM customer_keys
                 WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4",
            )?
            .execute(params![org, new.db_type.as_str(), new.provider.as_str(), new.region])?;
            insert_key_row(tx, &new)?;
            Ok(ReplaceKeyOutcome::Replaced(Box::new(current)))
        })
        .await
    }

    async fn rewrap_datacenter(&self, rewrap: &Rewrap) -> Result<RewrapOutcome> {
        let r = rewrap.clone();
        self.write(move |tx| {
            let Some(dc) = first(
                tx,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE id = ?1 AND terminated_at IS NULL AND key_kind = 'customer'"
                ),
                params![r.datacenter_id],
                datacenter_from_row,
            )?
            else {
                return Ok(RewrapOutcome::Stale);
            };
            // A data key mid-rotation is not moved: the pending one is wrapped under the old key.
            if dc.key_id != r.from_key_id
                || dc.wrapped_data_key.as_deref() != Some(r.from_wrapped.as_slice())
                || dc.pending_wrapped_data_key.is_some()
            {
                return Ok(RewrapOutcome::Stale);
            }
            let org = dc.org_id.to_string();
            let destination: Option<(String, String)> = tx
                .prepare_cached(
                    "SELECT key_id, status FROM customer_keys
                     WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4",
                )?
                .query_row(
                    params![org, r.db_type.as_str(), dc.provider.as_str(), dc.region],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match destination {
                Some((key, status)) if key == r.to_key_id && status != KeyStatus::Revoked.as_str() => {}
                _ => return Ok(RewrapOutcome::DestinationChanged),
            }
            let now = format_ts(now_ms());
            tx.prepare_cached(
                "UPDATE datacenters SET key_id = ?2, provider_account = ?3, wrapped_data_key = ?4,
                     updated_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![r.datacenter_id, r.to_key_id, r.to_account, r.to_wrapped, now])?;
            tx.prepare_cached(
                "UPDATE customer_keys SET status = 'IN_USE', status_since = ?5
                 WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4
                   AND status = 'AVAILABLE'",
            )?
            .execute(params![org, r.db_type.as_str(), dc.provider.as_str(), dc.region, now])?;
            Ok(RewrapOutcome::Rewrapped)
        })
        .await
    }

    async fn unrevoke_customer_key(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
        update: &KeyStatusUpdate,
    ) -> Result<bool> {
        let region = region.to_owned();
        let update = update.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE customer_keys SET
                         status_since = ?7,
                         status = ?5,
                         status_reason = ?6,
                         last_check_at = ?7,
                         last_check_ok = ?8,
                         last_check_message = ?9
                     WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4
                       AND status = 'REVOKED'
                     RETURNING key_id",
                )?
                .query_row(
                    params![
                        org_id.to_string(),
                        db_type.as_str(),
                        provider.as_str(),
                        region,
                        update.status.as_str(),
                        update.status_reason,
                        format_ts(truncate_ms(update.checked_at)),
                        update.check_ok,
                        update.check_message,
                    ],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            let Some(key_id) = n else {
                return Ok(false);
            };
            // Still suspended, no longer for the revoke: the check that follows resumes them.
            tx.prepare_cached(
                "UPDATE datacenters SET message = ?6, updated_at = ?7
                 WHERE org_id = ?1 AND key_id = ?2 AND region = ?3 AND provider = ?4
                   AND key_kind = 'customer' AND status = 'SUSPENDED' AND message LIKE ?8
                   AND database_id IN (SELECT id FROM databases WHERE db_type = ?5)",
            )?
            .execute(params![
                org_id.to_string(),
                key_id,
                region,
                provider.as_str(),
                db_type.as_str(),
                keyplane_core::keys::UNREVOKED_REASON,
                format_ts(now_ms()),
                revoked_like(),
            ])?;
            Ok(true)
        })
        .await
    }

    async fn revoked_customer_keys(&self) -> Result<Vec<CustomerKey>> {
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE status = 'REVOKED' ORDER BY org_id, db_type, provider, region"
                ),
                [],
                customer_key_from_row,
            )
        })
        .await
    }

    async fn unbound_customer_keys(&self) -> Result<Vec<CustomerKey>> {
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    customer_key_columns!(),
                    " FROM customer_keys WHERE bound_at IS NULL ORDER BY org_id, db_type, provider, region"
                ),
                [],
                customer_key_from_row,
            )
        })
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
        let region = region.to_owned();
        let binding = binding.clone();
        self.write(move |tx| {
            let (org, t, p) = (org_id.to_string(), db_type.as_str(), provider.as_str());
            let n = match &binding {
                KeyBinding::Bound { at } => tx
                    .prepare_cached(
                        "UPDATE customer_keys SET bound_at = ?5, binding_warning = NULL
                         WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4
                           AND bound_at IS NULL",
                    )?
                    .execute(params![org, t, p, region, format_ts(truncate_ms(*at))])?,
                KeyBinding::Unbound { warning } => tx
                    .prepare_cached(
                        "UPDATE customer_keys SET binding_warning = ?5
                         WHERE org_id = ?1 AND db_type = ?2 AND provider = ?3 AND region = ?4
                           AND bound_at IS NULL AND binding_warning IS NULL",
                    )?
                    .execute(params![org, t, p, region, warning])?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let entry = entry.clone();
        // The IMMEDIATE transaction holds the file's write lock from its first statement, so
        // appends (from this process or another) serialize on the chain's head.
        self.write(move |tx| {
            let last: Option<(i64, String)> = tx
                .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (seq, prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => (1, GENESIS.to_owned()),
            };
            let at = now_ms();
            let at_text = format_ts(at);
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
            tx.prepare_cached(concat!(
                "INSERT INTO audit_log (",
                audit_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                seq,
                org_text,
                at_text,
                entry.actor,
                entry.action.as_str(),
                entry.target,
                entry.outcome.as_str(),
                entry.reason,
                prev_hash,
                hash,
            ])?;
            Ok(AuditEntry {
                seq,
                org_id: entry.org_id,
                at,
                actor: entry.actor,
                action: entry.action,
                target: entry.target,
                outcome: entry.outcome,
                reason: entry.reason,
                prev_hash,
                hash,
            })
        })
        .await
    }

    async fn list_audit(
        &self,
        org_id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE org_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                ),
                params![
                    org_id.to_string(),
                    before.unwrap_or(i64::MAX),
                    sql_limit(limit)
                ],
                audit_from_row,
            )
        })
        .await
    }

    async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ),
                params![after, sql_limit(limit)],
                audit_from_row,
            )
        })
        .await
    }
    async fn create_database(
        &self,
        db: &Database,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<CreateOutcome> {
        let (db, dc, job, quotas) = (db.clone(), dc.clone(), job.clone(), *quotas);
        self.write(move |tx| {
            // The IMMEDIATE transaction holds the write lock: no creation interleaves the count.
            if let Some(e) = over_quota(
                tx,
                db.org_id,
                &[QuotaKind::Databases, QuotaKind::Datacenters],
                &quotas,
            )? {
                return Ok(CreateOutcome::OverQuota(e));
            }
            tx.prepare_cached(concat!(
                "INSERT INTO databases (",
                database_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))?
            .execute(params![
                db.id.to_string(),
                db.org_id.to_string(),
                db.name,
                db.keyspace,
                db.db_type.as_str(),
                db.provider.as_str(),
                db.tier,
                db.capacity_units,
                db.status.as_str(),
                db.message,
                db.owner,
                db.customer_keyed,
                format_ts(truncate_ms(db.created_at)),
                format_ts(truncate_ms(db.updated_at)),
                db.terminated_at.map(|t| format_ts(truncate_ms(t))),
                db.last_used_at.map(|t| format_ts(truncate_ms(t))),
            ])
            .map_err(missing_parent("organization"))?;
            insert_datacenter(tx, &dc)?;
            insert_job(tx, &job, &format_ts(now_ms()))?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn get_database(&self, org_id: Uuid, id: Uuid) -> Result<Option<Database>> {
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    database_columns!(),
                    " FROM databases WHERE id = ?1 AND org_id = ?2"
                ),
                params![id.to_string(), org_id.to_string()],
                database_from_row,
            )
        })
        .await
    }

    async fn list_databases(&self, org_id: Uuid, filter: &DatabaseFilter) -> Result<Vec<Database>> {
        let filter = filter.clone();
        self.read(move |conn| {
            // One static statement for every filter combination. A `starting_after` that names
            // no database of the organization yields an empty page.
            collect(
                conn,
                concat!(
                    "SELECT ",
                    database_columns!(),
                    " FROM databases
                     WHERE org_id = ?1
                       AND CASE WHEN ?2 THEN status = 'TERMINATED'
                                WHEN ?3 THEN 1
                                ELSE status <> 'TERMINATED' END
                       AND (?4 IS NULL OR provider = ?4)
                       AND (?5 IS NULL OR (created_at, id) >
                            (SELECT created_at, id FROM databases WHERE id = ?5 AND org_id = ?1))
                       AND (?7 IS NULL OR status = ?7)
                     ORDER BY created_at, id
                     LIMIT ?6"
                ),
                params![
                    org_id.to_string(),
                    filter.only_terminated,
                    filter.include_terminated,
                    filter.provider.map(Provider::as_str),
                    filter.starting_after.map(|id| id.to_string()),
                    sql_limit(filter.limit),
                    filter.status.map(DatabaseStatus::as_str),
                ],
                database_from_row,
            )
        })
        .await
    }

    async fn set_database_status(
        &self,
        id: Uuid,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()> {
        let message = message.to_owned();
        let n = self
            .write(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE databases SET status = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
                    )?
                    .execute(params![
                        id.to_string(),
                        status.as_str(),
                        message,
                        format_ts(now_ms())
                    ])?)
            })
            .await?;
        one_row(n, "database")
    }

    async fn mark_database_terminated(&self, id: Uuid) -> Result<()> {
        let n = self
            .write(move |tx| {
                // A re-run keeps the first termination time.
                Ok(tx
                    .prepare_cached(
                        "UPDATE databases SET status = 'TERMINATED', updated_at = ?2,
                             terminated_at = COALESCE(terminated_at, ?2)
                         WHERE id = ?1",
                    )?
                    .execute(params![id.to_string(), format_ts(now_ms())])?)
            })
            .await?;
        one_row(n, "database")
    }

    async fn record_database_use(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.write(move |tx| {
            // The stored text is fixed-width RFC 3339 in UTC, so it compares as time does.
            tx.prepare_cached(
                "UPDATE databases SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )?
            .execute(params![id.to_string(), format_ts(truncate_ms(at))])?;
            Ok(())
        })
        .await
    }

    async fn list_keyspaces(&self, database_id: Uuid) -> Result<Vec<String>> {
        self.read_point(move |conn| {
            collect(
                conn,
                "SELECT name FROM database_keyspaces WHERE database_id = ?1
                 ORDER BY created_at, name",
                [database_id.to_string()],
                |row| Ok(row.get(0)?),
            )
        })
        .await
    }

    async fn list_keyspaces_of(&self, database_ids: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
        let ids = id_list(database_ids);
        self.read_point(move |conn| {
            collect(
                conn,
                "SELECT database_id, name FROM database_keyspaces
                 WHERE database_id IN (SELECT value FROM json_each(?1))
                 ORDER BY database_id, created_at, name",
                [&ids],
                |row| Ok((parse_uuid(&row.get::<_, String>(0)?)?, row.get(1)?)),
            )
        })
        .await
    }

    async fn add_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO database_keyspaces (database_id, name, created_at)
                     VALUES (?1, ?2, ?3) ON CONFLICT (database_id, name) DO NOTHING",
                )?
                .execute(params![database_id.to_string(), name, format_ts(now_ms())])
                .map_err(missing_parent("database"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_keyspace(&self, database_id: Uuid, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM database_keyspaces WHERE database_id = ?1 AND name = ?2",
                )?
                .execute(params![database_id.to_string(), name])?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_datacenters(&self, database_id: Uuid) -> Result<Vec<Datacenter>> {
        // On every data request and job step, and a few rows at most (one per region), read
        // off the unique (database_id, ordinal) index: a point lookup in cost.
        self.read_point(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE database_id = ?1 ORDER BY ordinal"
                ),
                [database_id.to_string()],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn list_datacenters_of(&self, database_ids: &[Uuid]) -> Result<Vec<Datacenter>> {
        let ids = id_list(database_ids);
        self.read_point(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE database_id IN (SELECT value FROM json_each(?1))",
                    " ORDER BY database_id, ordinal"
                ),
                [&ids],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn get_datacenter(&self, id: &str) -> Result<Option<Datacenter>> {
        let id = id.to_owned();
        self.read_point(move |conn| {
            first(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE id = ?1"
                ),
                [&id],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn add_datacenter(
        &self,
        dc: &Datacenter,
        job: &NewJob,
        quotas: &Quotas,
    ) -> Result<AddRegionOutcome> {
        let (dc, job, quotas) = (dc.clone(), job.clone(), *quotas);
        // The IMMEDIATE transaction holds the write lock from the first read, so the rule is
        // applied to the state the writes change: no other writer interleaves.
        self.write(move |tx| {
            let status = database_status(tx, dc.org_id, dc.database_id)?;
            let rows = region_rows(tx, dc.database_id)?;
            let (live, _) = live_and_serving(&rows);
            if let Err(refusal) = check_add_region(status, live, &dc.region) {
                return Ok(AddRegionOutcome::Refused(refusal));
            }
            if let Some(e) = over_quota(tx, dc.org_id, &[QuotaKind::Datacenters], &quotas)? {
                return Ok(AddRegionOutcome::OverQuota(e));
            }
            let now = format_ts(now_ms());
            insert_datacenter(tx, &dc)?;
            tx.prepare_cached(
                "UPDATE databases SET status = 'MAINTENANCE', updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![dc.database_id.to_string(), now])?;
            insert_job(tx, &job, &now)?;
            Ok(AddRegionOutcome::Added)
        })
        .await
    }

    async fn remove_datacenter(
        &self,
        org_id: Uuid,
        database_id: Uuid,
        datacenter_id: &str,
        job: &NewJob,
    ) -> Result<RemoveRegionOutcome> {
        let (dc_id, job) = (datacenter_id.to_owned(), job.clone());
        self.write(move |tx| {
            let status = database_status(tx, org_id, database_id)?;
            let Some(dc_status) = tx
                .prepare_cached("SELECT status FROM datacenters WHERE id = ?1 AND database_id = ?2")?
                .query_row(params![dc_id, database_id.to_string()], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?
            else {
                return Ok(RemoveRegionOutcome::NoSuchDatacenter);
            };
            if matches!(
                parse_db_status(&dc_status)?,
                DatabaseStatus::Terminated | DatabaseStatus::Terminating
            ) {
                return Ok(RemoveRegionOutcome::AlreadyRemoved);
            }
            let rows = region_rows(tx, database_id)?;
            let (_, serving) = live_and_serving(&rows);
            if let Err(refusal) = check_remove_region(status, serving) {
                return Ok(RemoveRegionOutcome::Refused(refusal));
            }
            let now = format_ts(now_ms());
            tx.prepare_cached(
                "UPDATE datacenters SET status = 'TERMINATING', updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![dc_id, now])?;
            tx.prepare_cached(
                "UPDATE databases SET status = 'MAINTENANCE', message = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![database_id.to_string(), REMOVING_A_REGION, now])?;
            insert_job(tx, &job, &now)?;
            Ok(RemoveRegionOutcome::Requested)
        })
        .await
    }

    async fn set_datacenter_status(
        &self,
        id: &str,
        status: DatabaseStatus,
        message: &str,
    ) -> Result<()> {
        let (id, message) = (id.to_owned(), message.to_owned());
        let n = self
            .write(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE datacenters SET status = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
                    )?
                    .execute(params![id, status.as_str(), message, format_ts(now_ms())])?)
            })
            .await?;
        one_row(n, "datacenter")
    }

    async fn resume_datacenter(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(RESUME_DATACENTER_SQLITE)?
                .execute(params![id, format_ts(now_ms()), revoked_like()])?;
            Ok(n == 1)
        })
        .await
    }

    async fn activate_datacenter(&self, id: &str) -> Result<DatabaseStatus> {
        let id = id.to_owned();
        self.write(move |tx| {
            let status: Option<String> = tx
                .prepare_cached(ACTIVATE_DATACENTER_SQLITE)?
                .query_row(params![id, format_ts(now_ms()), revoked_like()], |r| {
                    r.get(0)
                })
                .optional()?;
            match status {
                Some(s) => parse_db_status(&s),
                None => Err(StoreError::NotFound("datacenter")),
            }
        })
        .await
    }

    async fn suspended_datacenters(&self) -> Result<Vec<(String, String)>> {
        self.read(move |conn| {
            collect(
                conn,
                "SELECT id, message FROM datacenters WHERE status = 'SUSPENDED' ORDER BY id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }

    async fn terminated_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let since = format_ts(since);
        self.read(move |conn| {
            collect(
                conn,
                "SELECT id FROM datacenters
                 WHERE status = 'TERMINATED' AND terminated_at > ?1 ORDER BY id",
                params![since],
                |r| Ok(r.get(0)?),
            )
        })
        .await
    }

    async fn begin_data_key_rotation(&self, id: &str, current: &[u8], next: &[u8]) -> Result<bool> {
        let (id, current, next) = (id.to_owned(), current.to_vec(), next.to_vec());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE datacenters SET pending_wrapped_data_key = ?3, updated_at = ?4
                     WHERE id = ?1 AND wrapped_data_key = ?2 AND pending_wrapped_data_key IS NULL
                       AND terminated_at IS NULL",
                )?
                .execute(params![id, current, next, format_ts(now_ms())])?;
            Ok(n == 1)
        })
        .await
    }

    async fn finish_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool> {
        let (id, next) = (id.to_owned(), next.to_vec());
        self.write(move |tx| {
            let now = format_ts(now_ms());
            let n = tx
                .prepare_cached(
                    "UPDATE datacenters SET wrapped_data_key = pending_wrapped_data_key,
                         pending_wrapped_data_key = NULL, data_key_rotated_at = ?3, updated_at = ?3
                     WHERE id = ?1 AND pending_wrapped_data_key = ?2 AND terminated_at IS NULL",
                )?
                .execute(params![id, next, now])?;
            Ok(n == 1)
        })
        .await
    }

    async fn abandon_data_key_rotation(&self, id: &str, next: &[u8]) -> Result<bool> {
        let (id, next) = (id.to_owned(), next.to_vec());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE datacenters SET pending_wrapped_data_key = NULL, updated_at = ?3
                     WHERE id = ?1 AND pending_wrapped_data_key = ?2",
                )?
                .execute(params![id, next, format_ts(now_ms())])?;
            Ok(n == 1)
        })
        .await
    }

    async fn data_keys_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<Datacenter>> {
        let before = format_ts(before);
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters
                     WHERE status = 'ACTIVE' AND terminated_at IS NULL
                       AND wrapped_data_key IS NOT NULL
                       AND (pending_wrapped_data_key IS NOT NULL
                            OR COALESCE(data_key_rotated_at, created_at) < ?1)
                     ORDER BY COALESCE(data_key_rotated_at, created_at), id LIMIT ?2"
                ),
                params![before, limit],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn set_rotation_overdue(
        &self,
        org_id: Uuid,
        key_id: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        let (org, key, reason) = (
            org_id.to_string(),
            key_id.to_owned(),
            reason.map(str::to_owned),
        );
        self.write(move |tx| {
            let n = match &reason {
                Some(r) => tx
                    .prepare_cached(
                        "INSERT INTO key_rotation_overdue (org_id, key_id, reason, since)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (org_id, key_id) DO NOTHING",
                    )?
                    .execute(params![org, key, r, format_ts(now_ms())])?,
                None => tx
                    .prepare_cached(
                        "DELETE FROM key_rotation_overdue WHERE org_id = ?1 AND key_id = ?2",
                    )?
                    .execute(params![org, key])?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn set_wrapped_data_key(&self, id: &str, wrapped: &[u8]) -> Result<bool> {
        let (id, wrapped) = (id.to_owned(), wrapped.to_vec());
        self.write(move |tx| {
            // Never on a terminated datacenter: its key was shredded and must stay so.
            let n = tx
                .prepare_cached(
                    "UPDATE datacenters SET wrapped_data_key = ?2, updated_at = ?3
                     WHERE id = ?1 AND wrapped_data_key IS NULL AND terminated_at IS NULL",
                )?
                .execute(params![id, wrapped, format_ts(now_ms())])?;
            if n == 1 {
                return Ok(true);
            }
            let exists = tx
                .prepare_cached("SELECT 1 FROM datacenters WHERE id = ?1")?
                .exists([&id])?;
            if exists {
                Ok(false)
            } else {
                Err(StoreError::NotFound("datacenter"))
            }
        })
        .await
    }

    async fn set_kms_failing_since(&self, id: &str, since: Option<DateTime<Utc>>) -> Result<()> {
        let id = id.to_owned();
        let n = self
            .write(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE datacenters SET kms_failing_since = ?2, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        since.map(|t| format_ts(truncate_ms(t))),
                        format_ts(now_ms())
                    ])?)
            })
            .await?;
        one_row(n, "datacenter")
    }

    async fn mark_datacenter_terminated(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        let n = self
            .write(move |tx| {
                // Crypto-shredding: the wrapped data key goes with the datacenter. A re-run
                // keeps the first termination time.
                Ok(tx
                    .prepare_cached(
                        "UPDATE datacenters SET status = 'TERMINATED', wrapped_data_key = NULL,
                             pending_wrapped_data_key = NULL, kms_failing_since = NULL, updated_at = ?2,
                             terminated_at = COALESCE(terminated_at, ?2)
                         WHERE id = ?1",
                    )?
                    .execute(params![id, format_ts(now_ms())])?)
            })
            .await?;
        one_row(n, "datacenter")
    }

    async fn erase_deleted(&self) -> Result<bool> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // On the writer, so no write of this process lands between; readers still in
            // the log are waited for (busy timeout), and if one outlasts it the log is kept.
            let conn = lock(&inner.writer);
            let busy: i64 =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
            Ok(busy == 0)
        })
        .await
        .map_err(join_error)?
    }

    async fn live_customer_datacenters(&self) -> Result<Vec<Datacenter>> {
        self.read(|conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE key_kind = 'customer' AND status <> 'TERMINATED' ORDER BY id"
                ),
                [],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn live_datacenters_of_key(
        &self,
        org_id: Uuid,
        key_id: &str,
        region: &str,
    ) -> Result<Vec<Datacenter>> {
        let (key_id, region) = (key_id.to_string(), region.to_string());
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE org_id = ?1 AND key_id = ?2 AND region = ?3",
                    " AND key_kind = 'customer' AND status <> 'TERMINATED' ORDER BY id"
                ),
                params![org_id.to_string(), key_id, region],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn live_datacenters_in_slot(
        &self,
        org_id: Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> Result<Vec<Datacenter>> {
        let region = region.to_string();
        self.read(move |conn| {
            collect(
                conn,
                concat!(
                    "SELECT ",
                    datacenter_columns!(),
                    " FROM datacenters WHERE org_id = ?1 AND region = ?2 AND provider = ?3",
                    " AND key_kind = 'customer' AND status <> 'TERMINATED'",
                    " AND database_id IN (SELECT id FROM databases WHERE db_type = ?4) ORDER BY id"
                ),
                params![
                    org_id.to_string(),
                    region,
                    provider.as_str(),
                    db_type.as_str()
                ],
                datacenter_from_row,
            )
        })
        .await
    }

    async fn enqueue_job(
        &self,
        job: &NewJob,
        db_status: Option<(Uuid, DatabaseStatus)>,
    ) -> Result<i64> {
        let job = job.clone();
        self.write(move |tx| {
            let now = format_ts(now_ms());
            if let Some((db_id, status)) = db_status {
                let n = tx
                    .prepare_cached(
                        "UPDATE databases SET status = ?2, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![db_id.to_string(), status.as_str(), now])?;
                one_row(n, "database")?;
            }
            insert_job(tx, &job, &now)
        })
        .await
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let owner = owner.to_owned();
        // One UPDATE … RETURNING inside the write transaction, so two claimers serialize and
        // never take the same job. SET reads the row as it was: `taken_over_from` is the
        // previous holder when the job was running.
        self.write(move |tx| {
            first(
                tx,
                concat!(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?3,
                         lease_until = ?4,
                         taken_over_from = CASE WHEN state = 'running' THEN lease_owner END,
                         updated_at = ?2
                     WHERE id = (SELECT id FROM jobs
                                 WHERE (state = 'pending' AND not_before <= ?1)
                                    OR (state = 'running' AND lease_until <= ?1)
                                 ORDER BY id LIMIT 1)
                     RETURNING ",
                    job_columns!()
                ),
                params![
                    format_ts(truncate_ms(now)),
                    format_ts(now_ms()),
                    owner,
                    format_ts(truncate_ms(lease_until))
                ],
                job_from_row,
            )
        })
        .await
    }

    async fn renew_job_lease(&self, id: i64, owner: &str, until: DateTime<Utc>) -> Result<Lease> {
        let owner = owner.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET lease_until = ?3, updated_at = ?4
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                )?
                .execute(params![
                    id,
                    owner,
                    format_ts(truncate_ms(until)),
                    format_ts(now_ms()),
                ])?;
            fenced(tx, id, n)
        })
        .await
    }

    async fn finish_job(&self, id: i64, owner: &str) -> Result<Lease> {
        let owner = owner.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = ?3
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                )?
                .execute(params![id, owner, format_ts(now_ms())])?;
            fenced(tx, id, n)
        })
        .await
    }

    async fn fail_job(&self, id: i64, owner: &str, error: &str) -> Result<Lease> {
        let (owner, error) = (owner.to_owned(), error.to_owned());
        self.write(move |tx| {
            let n = tx.prepare_cached("UPDATE jobs SET state = 'failed', last_error = ?3, lease_until = NULL, updated_at = ?4
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'")?.execute(params![id, owner, error, format_ts(now_ms())])?;
            fenced(tx, id, n)
        })
        .await
    }

    async fn retry_job(
        &self,
        id: i64,
        owner: &str,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<Lease> {
        let (owner, error) = (owner.to_owned(), error.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'pending', not_before = ?3, last_error = ?4,
                     lease_until = NULL, updated_at = ?5
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                )?
                .execute(params![
                    id,
                    owner,
                    format_ts(truncate_ms(not_before)),
                    error,
                    format_ts(now_ms()),
                ])?;
            fenced(tx, id, n)
        })
        .await
    }

    async fn expire_job_leases(&self, now: DateTime<Utc>) -> Result<u64> {
        let n = self
            .write(move |tx| {
                let now = format_ts(truncate_ms(now));
                Ok(tx
                    .prepare_cached(
                        "UPDATE jobs SET lease_until = ?1, updated_at = ?1
                         WHERE state = 'running' AND (lease_until IS NULL OR lease_until > ?1)",
                    )?
                    .execute([now])?)
            })
            .await?;
        Ok(n as u64)
    }

    async fn create_portal_session(&self, session: &NewPortalSession) -> Result<()> {
        let s = session.clone();
        self.write(move |tx| {
            let created = format_ts(truncate_ms(s.created_at));
            tx.prepare_cached("DELETE FROM portal_sessions WHERE expires_at <= ?1")?
                .execute([&created])?;
            tx.prepare_cached(
                "INSERT INTO portal_sessions (id_hash, current_org, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                s.id_hash.as_slice(),
                s.org_id.to_string(),
                created,
                format_ts(truncate_ms(s.expires_at))
            ])?;
            tx.prepare_cached(
                "INSERT INTO portal_session_logins (session_hash, org_id, client_id, added_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                s.id_hash.as_slice(),
                s.org_id.to_string(),
                s.client_id,
                created
            ])
            .map_err(missing_parent("organization or token"))?;
            Ok(())
        })
        .await
    }

    async fn get_portal_session(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<PortalSession>> {
        let id_hash = id_hash.to_vec();
        // Every portal request reads its session: a lookup by key of a row or a few.
        self.read_point(move |conn| {
            let rows = collect(
                conn,
                "SELECT s.id_hash, s.current_org, s.created_at, s.expires_at,
                        l.org_id, l.client_id, l.added_at
                 FROM portal_sessions s
                 LEFT JOIN portal_session_logins l ON l.session_hash = s.id_hash
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2
                 ORDER BY l.added_at, l.org_id",
                params![id_hash, format_ts(truncate_ms(now))],
                session_row,
            )?;
            Ok(portal_session_from_rows(rows))
        })
        .await
    }

    async fn add_portal_login(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (id_hash, client_id) = (id_hash.to_vec(), client_id.to_owned());
        self.write(move |tx| {
            let now = format_ts(truncate_ms(now));
            let live = tx
                .prepare_cached(
                    "UPDATE portal_sessions SET current_org = ?2 WHERE id_hash = ?1 AND expires_at > ?3",
                )?
                .execute(params![id_hash, org_id.to_string(), now])?;
            if live == 0 {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO portal_session_logins (session_hash, org_id, client_id, added_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (session_hash, org_id)
                 DO UPDATE SET client_id = excluded.client_id, added_at = excluded.added_at",
            )?
            .execute(params![id_hash, org_id.to_string(), client_id, now])
            .map_err(missing_parent("organization or token"))?;
            Ok(true)
        })
        .await
    }

    async fn switch_portal_org(
        &self,
        id_hash: &[u8],
        org_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let id_hash = id_hash.to_vec();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE portal_sessions SET current_org = ?2
                     WHERE id_hash = ?1 AND expires_at > ?3
                       AND EXISTS (SELECT 1 FROM portal_session_logins
                                   WHERE session_hash = ?1 AND org_id = ?2)",
                )?
                .execute(params![
                    id_hash,
                    org_id.to_string(),
                    format_ts(truncate_ms(now))
                ])?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_portal_login(&self, id_hash: &[u8], org_id: Uuid) -> Result<bool> {
        let id_hash = id_hash.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM portal_session_logins WHERE session_hash = ?1 AND org_id = ?2",
            )?
            .execute(params![id_hash, org_id.to_string()])?;
            let left: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM portal_session_logins WHERE session_hash = ?1",
                )?
                .query_row([&id_hash], |row| row.get(0))?;
            if left == 0 {
                tx.prepare_cached("DELETE FROM portal_sessions WHERE id_hash = ?1")?
                    .execute([&id_hash])?;
            }
            Ok(left > 0)
        })
        .await
    }

    async fn delete_portal_session(&self, id_hash: &[u8]) -> Result<()> {
        let id_hash = id_hash.to_vec();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM portal_sessions WHERE id_hash = ?1")?
                .execute([id_hash])?;
            Ok(())
        })
        .await
    }

    async fn create_webhook(&self, webhook: &Webhook, max_per_org: u32) -> Result<Option<Webhook>> {
        let mut w = webhook.clone();
        self.write(move |tx| {
            let count: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE org_id = ?1")?
                .query_row([w.org_id.to_string()], |r| r.get(0))?;
            if count >= i64::from(max_per_org) {
                return Ok(None);
            }
            w.after_seq = tx
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit_log")?
                .query_row([], |r| r.get(0))?;
            tx.prepare_cached(concat!(
                "INSERT INTO webhooks (",
                webhook_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                w.id.to_string(),
                w.org_id.to_string(),
                w.url,
                events_column(&w.events),
                w.sealed_secret,
                w.after_seq,
                format_ts(truncate_ms(w.created_at)),
            ])
            .map_err(missing_parent("organization"))?;
            w.created_at = truncate_ms(w.created_at);
            Ok(Some(w))
        })
        .await
    }

    async fn list_webhooks(&self, org_id: Option<Uuid>) -> Result<Vec<Webhook>> {
        self.read(move |conn| match org_id {
            Some(org) => collect(
                conn,
                concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks WHERE org_id = ?1 ORDER BY created_at, id"
                ),
                [org.to_string()],
                webhook_from_row,
            ),
            None => collect(
                conn,
                concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhooks ORDER BY created_at, id"
                ),
                [],
                webhook_from_row,
            ),
        })
        .await
    }

    async fn delete_webhook(&self, org_id: Uuid, id: Uuid) -> Result<bool> {
        self.write(move |tx| {
            let (org, id) = (org_id.to_string(), id.to_string());
            tx.prepare_cached(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                     (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                      WHERE w.id = ?1 AND w.org_id = ?2)",
            )?
            .execute(params![id, org])?;
            tx.prepare_cached(
                "DELETE FROM webhook_deliveries WHERE webhook_id =
                     (SELECT id FROM webhooks WHERE id = ?1 AND org_id = ?2)",
            )?
            .execute(params![id, org])?;
            let n = tx
                .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND org_id = ?2")?
                .execute(params![id, org])?;
            Ok(n == 1)
        })
        .await
    }

    async fn webhook_cursor(&self) -> Result<i64> {
        self.read_point(|conn| {
            Ok(conn
                .prepare_cached("SELECT seq FROM webhook_cursor WHERE id = 1")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let deliveries = deliveries.to_vec();
        self.write(move |tx| {
            let moved = tx
                .prepare_cached("UPDATE webhook_cursor SET seq = ?2 WHERE id = 1 AND seq = ?1")?
                .execute(params![from, to])?;
            if moved == 0 {
                return Ok(false);
            }
            let at = format_ts(truncate_ms(at));
            let mut insert = tx.prepare_cached(
                "INSERT INTO webhook_deliveries (webhook_id, org_id, audit_seq, event, payload, state,
                     attempts, next_attempt_at, created_at, updated_at)
                 SELECT id, org_id, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5 FROM webhooks WHERE id = ?1
                 ON CONFLICT (webhook_id, audit_seq) DO NOTHING",
            )?;
            for d in &deliveries {
                insert.execute(params![
                    d.webhook_id.to_string(),
                    d.audit_seq,
                    d.event.as_str(),
                    d.payload,
                    at
                ])?;
            }
            Ok(true)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        // One UPDATE … RETURNING in the write transaction: two claimers serialize and never
        // take the same delivery.
        self.write(move |tx| {
            collect(
                tx,
                concat!(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM webhook_deliveries
                                  WHERE state = 'pending' AND next_attempt_at <= ?1
                                  ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING ",
                    delivery_columns!()
                ),
                params![
                    format_ts(truncate_ms(now)),
                    format_ts(truncate_ms(lease_until)),
                    sql_limit(limit)
                ],
                delivery_from_row,
            )
        })
        .await
    }

    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool> {
        let r = result.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = ?3, next_attempt_at = ?4, last_status = ?5,
                         last_error = ?6, updated_at = ?7
                     WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                )?
                .execute(params![
                    r.delivery_id,
                    r.attempt.attempt,
                    r.next.as_str(),
                    format_ts(truncate_ms(r.next_attempt_at)),
                    r.attempt.status,
                    r.attempt.error,
                    format_ts(truncate_ms(r.attempt.at)),
                ])?;
            if n == 0 {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error, millis)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
            )?
            .execute(params![
                r.delivery_id,
                r.attempt.attempt,
                format_ts(truncate_ms(r.attempt.at)),
                r.attempt.status,
                r.attempt.error,
                r.attempt.millis,
            ])?;
            Ok(true)
        })
        .await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        let before = format_ts(truncate_ms(before));
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                     (SELECT id FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < ?1)",
            )?
            .execute([&before])?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < ?1",
                )?
                .execute([&before])?;
            Ok(n as u64)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        limit: u32,
    ) -> Result<Vec<DeliveryLog>> {
        self.read(move |conn| {
            let deliveries = collect(
                conn,
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE webhook_id = ?1 AND org_id = ?2
                     ORDER BY audit_seq DESC, id DESC LIMIT ?3"
                ),
                params![webhook_id.to_string(), org_id.to_string(), sql_limit(limit)],
                delivery_from_row,
            )?;
            deliveries
                .into_iter()
                .map(|delivery| {
                    let attempts = collect(
                        conn,
                        "SELECT attempt, at, status, error, millis FROM webhook_attempts
                         WHERE delivery_id = ?1 ORDER BY attempt",
                        [delivery.id],
                        |row| {
                            Ok(DeliveryAttempt {
                                attempt: row.get(0)?,
                                at: parse_ts(text(row, 1)?)?,
                                status: row.get(2)?,
                                error: row.get(3)?,
                                millis: row.get(4)?,
                            })
                        },
                    )?;
                    Ok(DeliveryLog { delivery, attempts })
                })
                .collect()
        })
        .await
    }
}

fn webhook_from_row(row: &Row<'_>) -> Result<Webhook> {
    Ok(Webhook {
        id: parse_uuid(text(row, 0)?)?,
        org_id: parse_uuid(text(row, 1)?)?,
        url: row.get(2)?,
        events: parse_events(text(row, 3)?)?,
        sealed_secret: row.get(4)?,
        after_seq: row.get(5)?,
        created_at: parse_ts(text(row, 6)?)?,
    })
}

fn delivery_from_row(row: &Row<'_>) -> Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        webhook_id: parse_uuid(text(row, 1)?)?,
        org_id: parse_uuid(text(row, 2)?)?,
        audit_seq: row.get(3)?,
        event: parse_audit_action(text(row, 4)?)?,
        payload: row.get(5)?,
        state: DeliveryState::parse(text(row, 6)?)?,
        attempts: row.get(7)?,
        next_attempt_at: parse_ts(text(row, 8)?)?,
        last_status: row.get(9)?,
        last_error: row.get(10)?,
        created_at: parse_ts(text(row, 11)?)?,
        updated_at: parse_ts(text(row, 12)?)?,
    })
}

/// Writes a customer key's row; 0 when the slot already holds one.
fn insert_key_row(tx: &rusqlite::Transaction<'_>, key: &CustomerKey) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO customer_keys (org_id, db_type, provider, region, key_id, provider_account,
             created_at, created_by, status, status_reason, status_since, last_check_at,
             last_check_ok, last_check_message, bound_at, binding_warning)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (org_id, db_type, provider, region) DO NOTHING",
    )?
    .execute(params![
        key.org_id.to_string(),
        key.db_type.as_str(),
        key.provider.as_str(),
        key.region,
        key.key_id,
        key.provider_account,
        format_ts(truncate_ms(key.created_at)),
        key.created_by,
        key.status.as_str(),
        key.status_reason,
        format_ts(truncate_ms(key.status_since)),
        key.last_check_at.map(|t| format_ts(truncate_ms(t))),
        key.last_check_ok,
        key.last_check_message,
        key.bound_at.map(|t| format_ts(truncate_ms(t))),
        key.binding_warning,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup in place that finds the file locked (SQLITE_BUSY, which a WAL reader sees in
    /// rare moments such as another process's WAL recovery: not producible on demand here, so
    /// the closure returns it itself the first time) is run again on the blocking pool, and
    /// the in-place readers never wait for a lock.
    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_lookup_in_place_is_retried_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("k.db")).await.unwrap();
        let runtime_thread = std::thread::current().id();
        let calls = Arc::new(Mutex::new(vec![]));
        let seen = calls.clone();
        let value = store
            .read_point(move |conn| {
                let timeout: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
                let mut seen = seen.lock().unwrap();
                seen.push((std::thread::current().id(), timeout));
                if seen.len() == 1 {
                    return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        None,
                    )));
                }
                Ok(42)
            })
            .await
            .unwrap();
        assert_eq!(value, 42);
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], (runtime_thread, 0), "in place, without waiting");
        assert_ne!(calls[1].0, runtime_thread, "then on the blocking pool");
        assert_eq!(
            calls[1].1,
            BUSY_TIMEOUT.as_millis() as i64,
            "where it may wait"
        );
        // Other errors are not retried.
        let n = Arc::new(Mutex::new(0));
        let m = n.clone();
        let e = store
            .read_point(move |_| -> Result<()> {
                *m.lock().unwrap() += 1;
                Err(StoreError::Corrupt("x".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)));
        assert_eq!(*n.lock().unwrap(), 1);
        // And the reader used on the blocking pool is back to a zero timeout.
        let t: i64 = store
            .read_point(|conn| Ok(conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(t, 0);
    }
}
