//! The document store proper: one SQLite/SQLCipher connection per datacenter file.

use std::collections::HashMap;
use std::fs::{OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::Value as SqlValue;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params,
    params_from_iter,
};
use serde_json::{Map, Value};

use crate::code::DocStoreCode;
use crate::error::{DocStoreError, Refusal, Result, doc_err};
use crate::filter;
use crate::key::DataKey;
use crate::path::{FieldPath, PathUse};
use crate::projection::Projection;
use crate::update::Update;
use crate::validate::{self, CollectionRules, Prepared, id_key, is_typed_literal, with_id_first};

/// Largest serialized document accepted, in characters: the original's limit (4,000,000).
pub const MAX_DOCUMENT_BYTES: usize = validate::MAX_DOCUMENT_SIZE;
/// Deepest nesting of objects and arrays in a document (the document is level 1), a filter or
/// a path: the original's 16.
pub const MAX_DEPTH: usize = validate::MAX_DEPTH;
/// Most documents one `insert_many` call accepts, as the Data API's `insertMany`.
pub const MAX_INSERT_MANY: usize = 100;
/// Mode of a datacenter file and its -wal/-shm companions: owner-only, since the file is the
/// customer's data (encrypted, but its size and timing still say something).
pub const FILE_MODE: u32 = 0o600;
/// Page size of `find` when the caller does not choose one. The reference implementation
/// used 20 until May 2026 and 50 since; keyplane's clients (and the server's HTTP tests)
/// still page by 20.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page a caller may ask for; bounds the memory one call holds.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Documents one `updateMany` call updates before answering `moreData` and a
/// `nextPageState` (the original's page: its default read page size, 50).
pub const UPDATE_MANY_PAGE_SIZE: u64 = 50;
/// Documents one `deleteMany` call deletes before answering `moreData` (the original's
/// `maxDocumentDeleteCount`, 20); the client repeats the command until it is false.
pub const DELETE_MANY_PAGE_SIZE: u64 = 20;

const FORMAT: &str = "keyplane-docstore/1";
/// Rows read per step by `update_many`, so a large update never holds a collection in memory.
const UPDATE_CHUNK: i64 = 256;

/// A `find` request, in the Data API's terms.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: Value,
    pub sort: Option<Value>,
    pub projection: Option<Value>,
    pub skip: u64,
    /// Total documents over all pages; `None` is unlimited.
    pub limit: Option<u64>,
    /// `next_page_state` of the previous page.
    pub page_state: Option<String>,
    /// Documents per page; `None` is [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`].
    pub page_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub docs: Vec<Value>,
    pub next_page_state: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub upsert: bool,
    /// Which document `update_one`/`replace_one` picks when several match.
    pub sort: Option<Value>,
    /// The time `$currentDate` writes, in milliseconds since the epoch; `None` is the store's
    /// clock at the call. A command applied to several stores (regions) passes one time so
    /// they all write the same date.
    pub now_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateResult {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Value>,
}

/// How an `updateMany` page runs.
#[derive(Debug, Clone, Default)]
pub struct UpdateManyOptions {
    pub upsert: bool,
    /// `nextPageState` of the previous page of the same command; `None` starts at the first
    /// match (and only then may an upsert happen).
    pub page_state: Option<String>,
    /// As [`UpdateOptions::now_ms`].
    pub now_ms: Option<i64>,
    /// Documents per page; `None` is [`UPDATE_MANY_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`].
    pub page_size: Option<u64>,
}

/// One page of an `updateMany`: counts for this page, and where to continue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateManyPage {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Value>,
    /// More matches follow this page (`status.moreData`).
    pub more_data: bool,
    /// Where the next call continues (`status.nextPageState`); set exactly when `more_data`.
    /// It names a position in `_id` order, so it means the same in every region.
    pub next_page_state: Option<String>,
}

/// One page of a `deleteMany`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteManyPage {
    pub deleted: u64,
    /// More matches remain (`status.moreData`): the client sends the command again.
    pub more_data: bool,
    /// The filter was empty and the collection was emptied in one step; the original answers
    /// such a `deleteMany` with `deletedCount: -1`.
    pub all: bool,
}

/// What [`DocStore::select_ids`] chose: the `_id`s, in order, and where to continue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub ids: Vec<Value>,
    pub more_data: bool,
    pub next_page_state: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReturnDocument {
    #[default]
    Before,
    After,
}

#[derive(Debug, Clone, Default)]
pub struct FindOneAndOptions {
    pub sort: Option<Value>,
    pub projection: Option<Value>,
    pub upsert: bool,
    pub return_document: ReturnDocument,
    /// As [`UpdateOptions::now_ms`].
    pub now_ms: Option<i64>,
    /// The `_id` an upserted document gets when neither the filter, the update nor the
    /// replacement gives it one; `None` is a new UUID. A command applied to several stores
    /// (regions) passes one so they all insert the same document.
    pub upsert_id: Option<Value>,
}

/// A collection as the hot paths need it: its table and the rules its options set.
#[derive(Debug, Clone)]
struct Coll {
    tbl: i64,
    rules: Arc<CollectionRules>,
}

pub(crate) struct Inner {
    pub(crate) conn: Connection,
    /// (keyspace, collection) → table and rules, so hot paths skip the catalog lookup.
    colls: HashMap<(String, String), Coll>,
}

/// One datacenter's documents in one SQLCipher file.
///
/// All methods are synchronous and serialize on one connection; from async code call them in
/// `tokio::task::spawn_blocking` (the type is `Send + Sync`, share it with `Arc`).
pub struct DocStore {
    inner: Mutex<Inner>,
    path: PathBuf,
    encrypted: bool,
    /// Recording of writes for the database's other regions (`replica.rs`).
    pub(crate) replica: crate::replica::Replication,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

/// Finishes SQLCipher's process-wide start before any connection of this crate is used.
///
/// SQLite marks itself initialized before it runs SQLCipher's own start (`SQLITE_EXTRA_INIT`:
/// private heap, crypto provider, random seeds), so a thread opening its first connection
/// while another thread's first open is still inside that start gets "sqlcipher not
/// initialized" from `PRAGMA key` (seen as a failed `DocStore::create` when several tests, or
/// several datacenters at a server's start, open at once). The first caller completes the
/// start on an in-memory connection; everyone else waits for it here.
fn sqlcipher_ready() -> Result<()> {
    static READY: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            Connection::open_in_memory()
                .and_then(|c| {
                    c.execute_batch("PRAGMA key = 'start'; SELECT count(*) FROM sqlite_master;")
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| DocStoreError::Corrupt(format!("SQLCipher did not start: {e}")))
}

/// Turns on SQLCipher's memory security for the WHOLE process, irreversibly: every buffer
/// SQLite frees is wiped (and pages are mlocked), including buffers that held the key pragma's
/// text and decrypted pages. It is off by default because it is global and costly: measured
/// here, JSON-heavy queries (filters, scans) ran about 8 times slower, for every SQLite
/// database in the process, encrypted or not. SQLCipher wipes its own key material whether or
/// not this is on. Call it once at startup, before opening any store, if the deployment wants
/// it.
pub fn enable_memory_security() -> Result<()> {
    sqlcipher_ready()?;
    let conn = Connection::open_in_memory()?;
    conn.execute_batch("PRAGMA cipher_memory_security = ON;")?;
    let on: String = conn.query_row("PRAGMA cipher_memory_security", [], |r| r.get(0))?;
    if on == "1" {
        Ok(())
    } else {
        Err(DocStoreError::Corrupt(
            "SQLCipher refused cipher_memory_security".into(),
        ))
    }
}

/// Whether [`enable_memory_security`] (or anything else in the process) turned it on.
pub fn memory_security_enabled() -> bool {
    if sqlcipher_ready().is_err() {
        return false;
    }
    Connection::open_in_memory()
        .and_then(|c| {
            c.query_row("PRAGMA cipher_memory_security", [], |r| {
                r.get::<_, String>(0)
            })
        })
        .is_ok_and(|v| v == "1")
}

/// True when the file starts with SQLite's plaintext header, i.e. it is NOT encrypted.
pub fn is_plain_sqlite(path: impl AsRef<Path>) -> bool {
    let mut buf = [0u8; 16];
    match std::fs::File::open(path.as_ref()).and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => &buf == b"SQLite format 3\0",
        Err(_) => false,
    }
}

/// The original's rule for keyspace and collection names: 1 to 48 letters, digits and
/// underscores. keyplane also wants a letter first (its table catalog relies on it).
fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DocStoreError::InvalidName(Refusal::new(
            DocStoreCode::UnsupportedSchemaName,
            format!(
                "{kind} name '{}' must start with a letter and contain only letters, digits and \
                 underscores, 48 characters at most",
                name.chars().take(64).collect::<String>()
            ),
        )))
    }
}

fn doc_col(r: &rusqlite::Row<'_>, i: usize) -> Result<Value> {
    let text = r
        .get_ref(i)?
        .as_str()
        .map_err(|e| DocStoreError::Corrupt(e.to_string()))?;
    parse_doc(text)
}

fn parse_doc(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| DocStoreError::Corrupt(e.to_string()))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn is_not_a_db(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The options as stored, checked for what the store honours (`defaultId`, `indexing`).
fn normalize_options(options: Option<&Value>) -> Result<Value> {
    let v = match options {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(DocStoreError::InvalidCollectionOptions(Refusal::new(
                DocStoreCode::InvalidCreateCollectionOptions,
                "collection options must be an object",
            )));
        }
    };
    CollectionRules::from_options(&v).map_err(|why| {
        DocStoreError::InvalidCollectionOptions(Refusal::new(
            DocStoreCode::InvalidCreateCollectionOptions,
            format!("invalid collection options: {why}"),
        ))
    })?;
    Ok(v)
}

/// Page state: opaque to clients, but only positions inside the caller's own query, so a
/// tampered one can only move within results the caller may read anyway.
#[derive(Debug, Clone, PartialEq)]
enum PageState {
    /// Unsorted finds page by rowid: stable under concurrent inserts and O(page) per page.
    After { rid: i64, returned: u64 },
    /// Sorted finds page by offset.
    Offset { offset: u64, returned: u64 },
    /// Multi-document writes page by `_id` (the id column), a position every region shares.
    AfterId { key: String },
}

impl PageState {
    fn encode(&self) -> String {
        let s = match self {
            PageState::After { rid, returned } => format!("k{rid}:{returned}"),
            PageState::Offset { offset, returned } => format!("o{offset}:{returned}"),
            PageState::AfterId { key } => format!("i{key}"),
        };
        hex::encode(s)
    }

    fn decode(s: &str) -> Result<Self> {
        let bad = || DocStoreError::InvalidPageState;
        let raw = hex::decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (kind, rest) = text.split_at_checked(1).ok_or_else(bad)?;
        if kind == "i" {
            return if rest.is_empty() {
                Err(bad())
            } else {
                Ok(PageState::AfterId {
                    key: rest.to_owned(),
                })
            };
        }
        let (a, b) = rest.split_once(':').ok_or_else(bad)?;
        let returned: u64 = b.parse().map_err(|_| bad())?;
        match kind {
            "k" => Ok(PageState::After {
                rid: a.parse().map_err(|_| bad())?,
                returned,
            }),
            "o" => Ok(PageState::Offset {
                offset: a.parse().map_err(|_| bad())?,
                returned,
            }),
            _ => Err(bad()),
        }
    }

    /// The `_id` position of a multi-document write's page state (`None` to start).
    fn after_id(s: Option<&str>) -> Result<String> {
        match s
            .filter(|s| !s.is_empty())
            .map(PageState::decode)
            .transpose()?
        {
            None => Ok(String::new()),
            Some(PageState::AfterId { key }) => Ok(key),
            Some(_) => Err(DocStoreError::InvalidPageState),
        }
    }
}

/// An empty filter (`{}` or none): every document.
fn is_empty_filter(f: &Value) -> bool {
    match f {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl DocStore {
    /// Creates a new encrypted datacenter file; refuses to touch an existing one so that a
    /// retried provisioning step can never re-key or clobber data.
    pub fn create(path: impl AsRef<Path>, key: &DataKey) -> Result<Self> {
        Self::create_inner(path.as_ref(), Some(key))
    }

    /// Opens an existing encrypted file; [`DocStoreError::WrongKey`] when `key` does not decrypt it.
    pub fn open(path: impl AsRef<Path>, key: &DataKey) -> Result<Self> {
        Self::open_inner(path.as_ref(), Some(key))
    }

    /// An UNENCRYPTED store running the same code, for the overhead benchmark's baseline and
    /// nothing else: customer data must never be stored with it.
    pub fn create_plain(path: impl AsRef<Path>) -> Result<Self> {
        Self::create_inner(path.as_ref(), None)
    }

    /// Reopens a file made by [`DocStore::create_plain`]; benchmarks and tests only.
    pub fn open_plain(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(path.as_ref(), None)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Sets this store's page cache (default 64 MiB). Pages are decrypted once when read into
    /// the cache, so a cache that holds the working set makes reads cost the same as on a
    /// plain file; a cache smaller than the working set pays a decryption per miss.
    pub fn set_cache_size_mib(&self, mib: u32) -> Result<()> {
        let kib = i64::from(mib.max(1)) * 1024;
        self.lock()
            .conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib};"))?;
        Ok(())
    }

    fn create_inner(path: &Path, key: Option<&DataKey>) -> Result<Self> {
        // create_new makes "exists" an atomic check: two racing creators cannot both win.
        // Owner-only from the start, whatever the umask; SQLite gives the -wal, -shm and
        // -journal files the database file's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(_) => {
                if let Err(e) = std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)) {
                    let _ = std::fs::remove_file(path);
                    return Err(e.into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(DocStoreError::AlreadyExists(path.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        let result = Self::connect(path, key).and_then(|conn| {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE keyspaces (name TEXT PRIMARY KEY) WITHOUT ROWID;
                 CREATE TABLE collections (
                     tbl INTEGER PRIMARY KEY AUTOINCREMENT,
                     keyspace TEXT NOT NULL REFERENCES keyspaces(name) ON DELETE CASCADE,
                     name TEXT NOT NULL,
                     options TEXT NOT NULL,
                     UNIQUE (keyspace, name));
                 CREATE TABLE indexes (
                     ix INTEGER PRIMARY KEY AUTOINCREMENT,
                     tbl INTEGER NOT NULL REFERENCES collections(tbl) ON DELETE CASCADE,
                     path TEXT NOT NULL,
                     UNIQUE (tbl, path));
                 COMMIT;",
            )?;
            conn.execute("INSERT INTO meta (k, v) VALUES ('format', ?1)", [FORMAT])?;
            Ok(conn)
        });
        match result {
            Ok(conn) => {
                tracing::debug!(path = %path.display(), encrypted = key.is_some(), "docstore created");
                Ok(Self::wrap(conn, path, key.is_some()))
            }
            Err(e) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
                Err(e)
            }
        }
    }

    fn open_inner(path: &Path, key: Option<&DataKey>) -> Result<Self> {
        if !path.is_file() {
            return Err(DocStoreError::NotFound(path.display().to_string()));
        }
        let conn = Self::connect(path, key)?;
        let format: Option<String> = conn
            .query_row("SELECT v FROM meta WHERE k = 'format'", [], |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(..) => {
                    DocStoreError::Corrupt("not a keyplane document store".into())
                }
                other => DocStoreError::Sqlite(other),
            })
            .ok();
        if format.as_deref() != Some(FORMAT) {
            return Err(DocStoreError::Corrupt(format!(
                "not a {FORMAT} file: {}",
                path.display()
            )));
        }
        tracing::debug!(path = %path.display(), encrypted = key.is_some(), "docstore opened");
        Ok(Self::wrap(conn, path, key.is_some()))
    }

    fn wrap(conn: Connection, path: &Path, encrypted: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                conn,
                colls: HashMap::new(),
            }),
            path: path.to_owned(),
            encrypted,
            replica: crate::replica::Replication::new(),
        }
    }

    pub(crate) fn connect(path: &Path, key: Option<&DataKey>) -> Result<Connection> {
        sqlcipher_ready()?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        if let Some(key) = key {
            // Raw 256-bit key: no passphrase KDF, the data key IS the database key. The
            // statement text is built and dropped in wiped memory on our side (see
            // `enable_memory_security` for SQLite's side).
            conn.execute_batch(&key.pragma_statement())?;
            // Part of the file format (SQLCipher does not record it in the file): HMAC-SHA256
            // instead of SQLCipher 4's SHA512 default, which on CPUs with SHA extensions cuts
            // the per-page cost of encryption roughly in half. Still a 256-bit MAC.
            conn.execute_batch("PRAGMA cipher_hmac_algorithm = HMAC_SHA256;")?;
        }
        // The first read is where a wrong key shows: SQLCipher's page HMAC fails.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(_) => {}
            Err(e) if is_not_a_db(&e) => {
                return Err(if key.is_some() {
                    DocStoreError::WrongKey
                } else {
                    DocStoreError::Corrupt("not a plain SQLite file (encrypted?)".into())
                });
            }
            Err(e) => return Err(e.into()),
        }
        // WAL for concurrent-ish throughput, FULL so that an acknowledged write is on disk
        // (a WAL fsync per commit) and survives kill -9 and power loss.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DocStoreError::Corrupt(format!(
                "could not enable WAL (journal_mode {mode})"
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;",
        )?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(conn)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst an open transaction, which rusqlite's
        // Transaction drop rolled back; the connection is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---------------------------------------------------------------- keyspaces

    pub fn create_keyspace(&self, name: &str) -> Result<bool> {
        valid_name("keyspace", name)?;
        let g = self.lock();
        let n = g
            .conn
            .execute("INSERT OR IGNORE INTO keyspaces (name) VALUES (?1)", [name])?;
        Ok(n == 1)
    }

    pub fn list_keyspaces(&self) -> Result<Vec<String>> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare_cached("SELECT name FROM keyspaces ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Drops the keyspace and every collection in it.
    pub fn drop_keyspace(&self, name: &str) -> Result<bool> {
        let mut g = self.lock();
        let Inner { conn, colls } = &mut *g;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tbls: Vec<i64> = {
            let mut st = tx.prepare("SELECT tbl FROM collections WHERE keyspace = ?1")?;
            st.query_map([name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for t in &tbls {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS d_{t};"))?;
        }
        tx.execute("DELETE FROM collections WHERE keyspace = ?1", [name])?;
        let n = tx.execute("DELETE FROM keyspaces WHERE name = ?1", [name])?;
        tx.commit()?;
        colls.retain(|(ks, _), _| ks != name);
        Ok(n == 1)
    }

    // ---------------------------------------------------------------- collections

    /// Creates a collection; `Ok(false)` when it already exists with the same options (the
    /// Data API's `createCollection` is idempotent), `CollectionExists` when they differ.
    pub fn create_collection(
        &self,
        keyspace: &str,
        name: &str,
        options: Option<&Value>,
    ) -> Result<bool> {
        valid_name("keyspace", keyspace)?;
        valid_name("collection", name)?;
        let options = normalize_options(options)?;
        let mut g = self.lock();
        let Inner { conn, .. } = &mut *g;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        require_keyspace(&tx, keyspace)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT options FROM collections WHERE keyspace = ?1 AND name = ?2",
                [keyspace, name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(text) = existing {
            let old: Value = parse_doc(&text)?;
            return if old == options {
                Ok(false)
            } else {
                Err(DocStoreError::CollectionExists(name.to_owned()))
            };
        }
        tx.execute(
            "INSERT INTO collections (keyspace, name, options) VALUES (?1, ?2, ?3)",
            params![keyspace, name, options.to_string()],
        )?;
        let tbl = tx.last_insert_rowid();
        tx.execute_batch(&format!(
            "CREATE TABLE d_{tbl} (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);"
        ))?;
        tx.commit()?;
        Ok(true)
    }

    pub fn list_collections(&self, keyspace: &str) -> Result<Vec<(String, Value)>> {
        let g = self.lock();
        require_keyspace(&g.conn, keyspace)?;
        let mut st = g.conn.prepare_cached(
            "SELECT name, options FROM collections WHERE keyspace = ?1 ORDER BY name",
        )?;
        let rows = st
            .query_map([keyspace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(n, o)| Ok((n, parse_doc(&o)?)))
            .collect()
    }

    pub fn delete_collection(&self, keyspace: &str, name: &str) -> Result<bool> {
        let mut g = self.lock();
        let Inner { conn, colls } = &mut *g;
        colls.remove(&(keyspace.to_owned(), name.to_owned()));
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tbl: Option<i64> = tx
            .query_row(
                "SELECT tbl FROM collections WHERE keyspace = ?1 AND name = ?2",
                [keyspace, name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(tbl) = tbl else { return Ok(false) };
        tx.execute_batch(&format!("DROP TABLE IF EXISTS d_{tbl};"))?;
        tx.execute("DELETE FROM collections WHERE tbl = ?1", [tbl])?;
        tx.commit()?;
        Ok(true)
    }

    /// Adds expression indexes on a field so equality and range filters on it (including the
    /// array-membership branch) are served by an index instead of a scan. Idempotent. A path
    /// with a numeric segment is read by a computed path no index can serve.
    pub fn create_index(&self, keyspace: &str, collection: &str, path: &str) -> Result<bool> {
        let fp = FieldPath::parse(path, PathUse::Filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO indexes (tbl, path) VALUES (?1, ?2)",
            params![tbl, fp.raw],
        )?;
        if n == 1 {
            let ix = tx.last_insert_rowid();
            let jp = fp.sql().sql();
            tx.execute_batch(&format!(
                "CREATE INDEX x{ix}v ON d_{tbl} (json_extract(doc, {jp}));
                 CREATE INDEX x{ix}t ON d_{tbl} (json_type(doc, {jp}));"
            ))?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    pub fn list_indexes(&self, keyspace: &str, collection: &str) -> Result<Vec<String>> {
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let mut st = g
            .conn
            .prepare_cached("SELECT path FROM indexes WHERE tbl = ?1 ORDER BY path")?;
        let rows = st.query_map([tbl], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn coll(g: &mut Inner, keyspace: &str, collection: &str) -> Result<Coll> {
        let k = (keyspace.to_owned(), collection.to_owned());
        if let Some(c) = g.colls.get(&k) {
            return Ok(c.clone());
        }
        let (tbl, options): (i64, String) = g
            .conn
            .query_row(
                "SELECT tbl, options FROM collections WHERE keyspace = ?1 AND name = ?2",
                [keyspace, collection],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => {
                    DocStoreError::CollectionNotFound(collection.to_owned())
                }
                e => e.into(),
            })?;
        let rules = CollectionRules::from_options(&parse_doc(&options)?)
            .map_err(|why| DocStoreError::Corrupt(format!("collection options: {why}")))?;
        let c = Coll {
            tbl,
            rules: Arc::new(rules),
        };
        g.colls.insert(k, c.clone());
        Ok(c)
    }

    /// What a collection's options decide about its documents (its `defaultId` type, which
    /// fields it indexes).
    pub fn collection_rules(&self, keyspace: &str, collection: &str) -> Result<CollectionRules> {
        let mut g = self.lock();
        Ok((*Self::coll(&mut g, keyspace, collection)?.rules).clone())
    }

    /// A new `_id` of the collection's `defaultId` type. A command applied to several stores
    /// (regions) takes one here and puts it in the document, so every region stores the same.
    pub fn new_document_id(&self, keyspace: &str, collection: &str) -> Result<Value> {
        Ok(self
            .collection_rules(keyspace, collection)?
            .default_id
            .generate())
    }

    // ---------------------------------------------------------------- inserts

    /// Inserts one document and returns its `_id` once the commit is on disk. A document
    /// without `_id` gets one of the collection's `defaultId` type.
    pub fn insert_one(&self, keyspace: &str, collection: &str, doc: Value) -> Result<Value> {
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let p = validate::prepare(doc, &c.rules)?;
        insert_row(&g.conn, c.tbl, &p)?;
        Ok(p.id)
    }

    /// Inserts up to [`MAX_INSERT_MANY`] documents in ONE transaction (one fsync), reporting
    /// per document (each error names the document's `_id` where it has one). `ordered` stops
    /// at the first failure (later documents are not attempted and have no entry); unordered
    /// tries every document.
    pub fn insert_many(
        &self,
        keyspace: &str,
        collection: &str,
        docs: Vec<Value>,
        ordered: bool,
    ) -> Result<Vec<Result<Value>>> {
        if docs.len() > MAX_INSERT_MANY {
            return Err(DocStoreError::TooManyDocuments {
                count: docs.len(),
                limit: MAX_INSERT_MANY,
            });
        }
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let r = validate::prepare(doc, &c.rules)
                .and_then(|p| insert_row(&tx, c.tbl, &p).map(|()| p.id));
            let failed = r.is_err();
            out.push(r);
            if failed && ordered {
                break;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    // ---------------------------------------------------------------- reads

    pub fn get(&self, keyspace: &str, collection: &str, id: &Value) -> Result<Option<Value>> {
        let Ok(key) = id_key(id) else { return Ok(None) };
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let mut st = g
            .conn
            .prepare_cached(&format!("SELECT doc FROM d_{tbl} WHERE id = ?1"))?;
        let mut rows = st.query([key])?;
        match rows.next()? {
            Some(r) => Ok(Some(doc_col(r, 0)?)),
            None => Ok(None),
        }
    }

    pub fn find(&self, keyspace: &str, collection: &str, q: &Query) -> Result<Page> {
        let f = filter::compile(&q.filter)?;
        let sort = filter::compile_sort(q.sort.as_ref())?;
        let proj = Projection::parse(q.projection.as_ref())?;
        let page_size = q
            .page_size
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let state = q.page_state.as_deref().map(PageState::decode).transpose()?;
        let returned = match state {
            Some(PageState::After { returned, .. } | PageState::Offset { returned, .. }) => {
                returned
            }
            Some(PageState::AfterId { .. }) => return Err(DocStoreError::InvalidPageState),
            None => 0,
        };
        let want = match q.limit {
            Some(l) => page_size.min(l.saturating_sub(returned)),
            None => page_size,
        };
        if want == 0 {
            return Ok(Page::default());
        }
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let mut params = f.params;
        let (sql, offset) = if sort.is_empty() {
            let (after, offset) = match state {
                Some(PageState::After { rid, .. }) => (rid, 0),
                Some(_) => return Err(DocStoreError::InvalidPageState),
                None => (i64::MIN, q.skip),
            };
            params.push(SqlValue::Integer(after));
            (
                format!(
                    "SELECT rid, doc FROM d_{tbl} WHERE ({}) AND rid > ? ORDER BY rid LIMIT ? OFFSET ?",
                    f.sql
                ),
                offset,
            )
        } else {
            let offset = match state {
                Some(PageState::Offset { offset, .. }) => offset,
                Some(_) => return Err(DocStoreError::InvalidPageState),
                None => q.skip,
            };
            (
                format!(
                    "SELECT rid, doc FROM d_{tbl} WHERE ({}) ORDER BY {}, rid LIMIT ? OFFSET ?",
                    f.sql,
                    sort.join(", ")
                ),
                offset,
            )
        };
        // One extra row tells whether another page exists without a COUNT.
        params.push(SqlValue::Integer(to_i64(want + 1)));
        params.push(SqlValue::Integer(to_i64(offset)));
        let mut st = g.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params_from_iter(params))?;
        let mut docs = Vec::with_capacity(want as usize);
        let mut last_rid = 0i64;
        let mut more = false;
        while let Some(r) = rows.next()? {
            if docs.len() as u64 == want {
                more = true;
                break;
            }
            last_rid = r.get(0)?;
            let d = doc_col(r, 1)?;
            docs.push(project(proj.as_ref(), d));
        }
        let returned_now = returned + docs.len() as u64;
        let limit_left = q.limit.is_none_or(|l| returned_now < l);
        let next = (more && limit_left).then(|| {
            if sort.is_empty() {
                PageState::After {
                    rid: last_rid,
                    returned: returned_now,
                }
            } else {
                PageState::Offset {
                    offset: offset + docs.len() as u64,
                    returned: returned_now,
                }
            }
            .encode()
        });
        Ok(Page {
            docs,
            next_page_state: next,
        })
    }

    pub fn find_one(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        sort: Option<&Value>,
        projection: Option<&Value>,
    ) -> Result<Option<Value>> {
        let q = Query {
            filter: filter.clone(),
            sort: sort.cloned(),
            projection: projection.cloned(),
            limit: Some(1),
            ..Default::default()
        };
        Ok(self.find(keyspace, collection, &q)?.docs.into_iter().next())
    }

    /// Counts matches up to `upper_bound`; the flag says there were more (the Data API's
    /// `countDocuments` answers "more than N" rather than scanning everything).
    pub fn count(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        upper_bound: u64,
    ) -> Result<(u64, bool)> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let mut params = f.params;
        params.push(SqlValue::Integer(to_i64(upper_bound.saturating_add(1))));
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM d_{tbl} WHERE ({}) LIMIT ?)",
            f.sql
        );
        let mut st = g.conn.prepare_cached(&sql)?;
        let n: i64 = st.query_row(params_from_iter(params), |r| r.get(0))?;
        let n = n.max(0) as u64;
        Ok((n.min(upper_bound), n > upper_bound))
    }

    pub fn estimated_count(&self, keyspace: &str, collection: &str) -> Result<u64> {
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let n: i64 = g
            .conn
            .query_row(&format!("SELECT count(*) FROM d_{tbl}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The query plan SQLite chose for a filter (for tests and `explain`).
    pub fn explain(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<String> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT rid, doc FROM d_{tbl} WHERE ({})",
            f.sql
        );
        let mut st = g.conn.prepare(&sql)?;
        let rows = st
            .query_map(params_from_iter(f.params), |r| r.get::<_, String>(3))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.join("\n"))
    }

    /// The `_id`s a filter selects, in the sort's order (with ties, and without a sort, in
    /// `_id` order), at most `limit`, continuing after `page_state` (this call's earlier
    /// answer). A command applied to several stores (regions) can choose its documents once,
    /// here, and apply itself to exactly these `_id`s everywhere
    /// ([`DocStore::update_ids`], [`DocStore::delete_ids`]).
    pub fn select_ids(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        sort: Option<&Value>,
        limit: u64,
        page_state: Option<&str>,
    ) -> Result<Selection> {
        let f = filter::compile(filter)?;
        let sort = filter::compile_sort(sort)?;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let mut params = f.params;
        let sql = if sort.is_empty() {
            params.push(SqlValue::Text(PageState::after_id(page_state)?));
            format!(
                "SELECT id, doc FROM d_{tbl} WHERE ({}) AND id > ? ORDER BY id LIMIT ?",
                f.sql
            )
        } else {
            let offset = match page_state.filter(|s| !s.is_empty()).map(PageState::decode) {
                None => 0,
                Some(Ok(PageState::Offset { offset, .. })) => offset,
                Some(_) => return Err(DocStoreError::InvalidPageState),
            };
            format!(
                "SELECT id, doc FROM d_{tbl} WHERE ({}) ORDER BY {}, rid LIMIT ? OFFSET {}",
                f.sql,
                sort.join(", "),
                to_i64(offset)
            )
        };
        params.push(SqlValue::Integer(to_i64(limit + 1)));
        let mut st = g.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params_from_iter(params))?;
        let mut ids = Vec::new();
        let mut last_key = String::new();
        let mut more = false;
        while let Some(r) = rows.next()? {
            if ids.len() as u64 == limit {
                more = true;
                break;
            }
            last_key = r.get(0)?;
            let d = doc_col(r, 1)?;
            ids.push(d.get("_id").cloned().unwrap_or(Value::Null));
        }
        let next = more.then(|| {
            if sort.is_empty() {
                PageState::AfterId { key: last_key }.encode()
            } else {
                let done = match page_state.map(PageState::decode) {
                    Some(Ok(PageState::Offset { offset, .. })) => offset,
                    _ => 0,
                };
                let offset = done + ids.len() as u64;
                PageState::Offset {
                    offset,
                    returned: offset,
                }
                .encode()
            }
        });
        Ok(Selection {
            ids,
            more_data: more,
            next_page_state: next,
        })
    }

    // ---------------------------------------------------------------- writes

    pub fn update_one(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        opts: &UpdateOptions,
    ) -> Result<UpdateResult> {
        let change = Change::Update(Update::parse(update)?);
        Ok(self
            .modify_one(keyspace, collection, filter, &change, opts.into())?
            .0)
    }

    pub fn replace_one(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        replacement: Value,
        opts: &UpdateOptions,
    ) -> Result<UpdateResult> {
        let change = Change::Replace(replacement_doc(replacement)?);
        Ok(self
            .modify_one(keyspace, collection, filter, &change, opts.into())?
            .0)
    }

    pub fn find_one_and_update(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        opts: &FindOneAndOptions,
    ) -> Result<Option<Value>> {
        Ok(self
            .find_one_and_update_with_result(keyspace, collection, filter, update, opts)?
            .0)
    }

    /// [`DocStore::find_one_and_update`] that also says what it did: whether a document
    /// matched, whether the update actually changed it, and the `_id` of an upserted one.
    pub fn find_one_and_update_with_result(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        opts: &FindOneAndOptions,
    ) -> Result<(Option<Value>, UpdateResult)> {
        self.find_one_and(keyspace, collection, filter, opts, || {
            Ok(Change::Update(Update::parse(update)?))
        })
    }

    pub fn find_one_and_replace(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        replacement: Value,
        opts: &FindOneAndOptions,
    ) -> Result<Option<Value>> {
        Ok(self
            .find_one_and_replace_with_result(keyspace, collection, filter, replacement, opts)?
            .0)
    }

    /// [`DocStore::find_one_and_replace`] that also says what it did, as
    /// [`DocStore::find_one_and_update_with_result`].
    pub fn find_one_and_replace_with_result(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        replacement: Value,
        opts: &FindOneAndOptions,
    ) -> Result<(Option<Value>, UpdateResult)> {
        self.find_one_and(keyspace, collection, filter, opts, || {
            Ok(Change::Replace(replacement_doc(replacement)?))
        })
    }

    /// The find-one-and-update/replace family: [`DocStore::modify_one`], then the document
    /// the caller asked for, projected. The projection is checked before the change.
    fn find_one_and(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        opts: &FindOneAndOptions,
        change: impl FnOnce() -> Result<Change>,
    ) -> Result<(Option<Value>, UpdateResult)> {
        let proj = Projection::parse(opts.projection.as_ref())?;
        let change = change()?;
        let (r, before, after) =
            self.modify_one(keyspace, collection, filter, &change, opts.into())?;
        Ok((pick(before, after, opts.return_document, proj.as_ref()), r))
    }

    pub fn find_one_and_delete(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        sort: Option<&Value>,
        projection: Option<&Value>,
    ) -> Result<Option<Value>> {
        let f = filter::compile(filter)?;
        let sort = filter::compile_sort(sort)?;
        let proj = Projection::parse(projection)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = select_one(&tx, tbl, &f, &sort)?;
        let Some((rid, doc)) = found else {
            return Ok(None);
        };
        tx.execute(&format!("DELETE FROM d_{tbl} WHERE rid = ?1"), [rid])?;
        tx.commit()?;
        Ok(Some(project(proj.as_ref(), doc)))
    }

    /// Updates EVERY match in one transaction (keyplane's own bulk update, which the original
    /// does not have; the Data API's paged `updateMany` is [`DocStore::update_many_page`]).
    pub fn update_many(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        upsert: bool,
    ) -> Result<UpdateResult> {
        self.update_many_at(keyspace, collection, filter, update, upsert, now_ms())
    }

    /// [`DocStore::update_many`] with the time `$currentDate` writes (milliseconds since the
    /// epoch) chosen by the caller: every document of the command gets the same date, and so
    /// does every region the command is applied to.
    pub fn update_many_at(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        upsert: bool,
        now: i64,
    ) -> Result<UpdateResult> {
        let u = Update::parse(update)?;
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let tbl = c.tbl;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut result = UpdateResult::default();
        let sql = format!(
            "SELECT rid, doc FROM d_{tbl} WHERE ({}) AND rid > ? ORDER BY rid LIMIT {UPDATE_CHUNK}",
            f.sql
        );
        let mut after = i64::MIN;
        loop {
            let chunk: Vec<(i64, String)> = {
                let mut st = tx.prepare_cached(&sql)?;
                let mut params = f.params.clone();
                params.push(SqlValue::Integer(after));
                st.query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let Some(last) = chunk.last() else { break };
            after = last.0;
            for (rid, text) in &chunk {
                result.matched += 1;
                if update_row(&tx, &c, *rid, parse_doc(text)?, &u, now)? {
                    result.modified += 1;
                }
            }
            if (chunk.len() as i64) < UPDATE_CHUNK {
                break;
            }
        }
        if result.matched == 0 && upsert {
            result.upserted_id = Some(upsert_row(&tx, &c, filter, &u, now)?);
        }
        tx.commit()?;
        Ok(result)
    }

    /// One page of the Data API's `updateMany`, as the original pages it: up to
    /// [`UPDATE_MANY_PAGE_SIZE`] matches in `_id` order, then `more_data` and a
    /// `next_page_state` that the next call (the client sends the command again with it)
    /// continues from. An upsert happens only on the first page, when nothing matched.
    pub fn update_many_page(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        update: &Value,
        opts: &UpdateManyOptions,
    ) -> Result<UpdateManyPage> {
        let u = Update::parse(update)?;
        let f = filter::compile(filter)?;
        let page = opts
            .page_size
            .unwrap_or(UPDATE_MANY_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE);
        let after = PageState::after_id(opts.page_state.as_deref())?;
        let now = opts.now_ms.unwrap_or_else(now_ms);
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, String, String)> = {
            let mut st = tx.prepare_cached(&format!(
                "SELECT rid, id, doc FROM d_{} WHERE ({}) AND id > ? ORDER BY id LIMIT ?",
                c.tbl, f.sql
            ))?;
            let mut params = f.params.clone();
            params.push(SqlValue::Text(after));
            params.push(SqlValue::Integer(to_i64(page + 1)));
            st.query_map(params_from_iter(params), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        let more = rows.len() as u64 > page;
        let mut out = UpdateManyPage::default();
        let mut last_key = None;
        for (rid, key, text) in rows.into_iter().take(page as usize) {
            out.matched += 1;
            if update_row(&tx, &c, rid, parse_doc(&text)?, &u, now)? {
                out.modified += 1;
            }
            last_key = Some(key);
        }
        if out.matched == 0 && opts.upsert && opts.page_state.is_none() {
            out.upserted_id = Some(upsert_row(&tx, &c, filter, &u, now)?);
        }
        tx.commit()?;
        out.more_data = more;
        out.next_page_state = more
            .then(|| last_key.map(|key| PageState::AfterId { key }.encode()))
            .flatten();
        Ok(out)
    }

    /// Applies an update to the documents with these `_id`s (those that exist), in one
    /// transaction: the second half of a command whose documents were chosen by
    /// [`DocStore::select_ids`].
    pub fn update_ids(
        &self,
        keyspace: &str,
        collection: &str,
        ids: &[Value],
        update: &Value,
        now_ms: i64,
    ) -> Result<UpdateResult> {
        let u = Update::parse(update)?;
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut result = UpdateResult::default();
        for id in ids {
            let Ok(key) = id_key(id) else { continue };
            let row: Option<(i64, String)> = tx
                .prepare_cached(&format!("SELECT rid, doc FROM d_{} WHERE id = ?1", c.tbl))?
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((rid, text)) = row {
                result.matched += 1;
                if update_row(&tx, &c, rid, parse_doc(&text)?, &u, now_ms)? {
                    result.modified += 1;
                }
            }
        }
        tx.commit()?;
        Ok(result)
    }

    /// Deletes the documents with these `_id`s (those that exist) in one transaction; returns
    /// how many were deleted.
    pub fn delete_ids(&self, keyspace: &str, collection: &str, ids: &[Value]) -> Result<u64> {
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(&format!("DELETE FROM d_{tbl} WHERE id = ?1"))?;
            for id in ids {
                if let Ok(key) = id_key(id) {
                    n += st.execute([key])? as u64;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Deletes the first match in `_id` order (the same document in every region); a
    /// `deleteOne` with a sort goes through [`DocStore::find_one_and_delete`].
    pub fn delete_one(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<u64> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let sql = format!(
            "DELETE FROM d_{tbl} WHERE rid = (SELECT rid FROM d_{tbl} WHERE ({}) ORDER BY id LIMIT 1)",
            f.sql
        );
        let n = g.conn.execute(&sql, params_from_iter(f.params))?;
        Ok(n as u64)
    }

    /// Deletes EVERY match in one transaction (keyplane's own bulk delete; the Data API's
    /// paged `deleteMany` is [`DocStore::delete_many_page`]).
    pub fn delete_many(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<u64> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        let sql = format!("DELETE FROM d_{tbl} WHERE ({})", f.sql);
        let n = g.conn.execute(&sql, params_from_iter(f.params))?;
        Ok(n as u64)
    }

    /// One call of the Data API's `deleteMany`, as the original answers it: with an empty
    /// filter the whole collection is emptied at once (`all`, which the original reports as
    /// `deletedCount: -1`); otherwise up to [`DELETE_MANY_PAGE_SIZE`] matches are deleted, in
    /// `_id` order (the same ones in every region), and `more_data` says whether any remain.
    pub fn delete_many_page(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
    ) -> Result<DeleteManyPage> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::coll(&mut g, keyspace, collection)?.tbl;
        if is_empty_filter(filter) {
            let n = g.conn.execute(&format!("DELETE FROM d_{tbl}"), [])?;
            return Ok(DeleteManyPage {
                deleted: n as u64,
                more_data: false,
                all: true,
            });
        }
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rids: Vec<i64> = {
            let mut st = tx.prepare_cached(&format!(
                "SELECT rid FROM d_{tbl} WHERE ({}) ORDER BY id LIMIT ?",
                f.sql
            ))?;
            let mut params = f.params;
            params.push(SqlValue::Integer(to_i64(DELETE_MANY_PAGE_SIZE + 1)));
            st.query_map(params_from_iter(params), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let more = rids.len() as u64 > DELETE_MANY_PAGE_SIZE;
        let mut deleted = 0;
        {
            let mut st = tx.prepare_cached(&format!("DELETE FROM d_{tbl} WHERE rid = ?1"))?;
            for rid in rids.iter().take(DELETE_MANY_PAGE_SIZE as usize) {
                deleted += st.execute([rid])? as u64;
            }
        }
        tx.commit()?;
        Ok(DeleteManyPage {
            deleted,
            more_data: more,
            all: false,
        })
    }

    /// The shared path of every single-document modification: select (with sort), change,
    /// write back or upsert, all in one transaction. Returns the result and the document
    /// before and after.
    fn modify_one(
        &self,
        keyspace: &str,
        collection: &str,
        filter: &Value,
        change: &Change,
        how: ModifyOptions<'_>,
    ) -> Result<(UpdateResult, Option<Value>, Option<Value>)> {
        let ModifyOptions {
            sort,
            upsert,
            now,
            upsert_id,
        } = how;
        let f = filter::compile(filter)?;
        let sort = filter::compile_sort(sort)?;
        let now = now.unwrap_or_else(now_ms);
        let mut g = self.lock();
        let c = Self::coll(&mut g, keyspace, collection)?;
        let tbl = c.tbl;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = select_one(&tx, tbl, &f, &sort)?;
        let mut result = UpdateResult::default();
        let (before, after) = match found {
            Some((rid, before)) => {
                result.matched = 1;
                let old_id = before.get("_id").cloned().unwrap_or(Value::Null);
                let doc = match change {
                    Change::Update(u) => {
                        let mut d = before.clone();
                        u.apply(&mut d, false, now)
                            .map_err(|e| e.for_document(&old_id))?;
                        d
                    }
                    Change::Replace(r) => {
                        let mut m = r.clone();
                        if let Some(new_id) = m.get("_id")
                            && id_key(new_id)? != id_key(&old_id)?
                        {
                            return Err(DocStoreError::InvalidUpdate(Refusal {
                                code: DocStoreCode::DocumentReplaceDifferentDocid,
                                message: format!(
                                    "the replacement document and the document the filter matched have different '_id's: {} (replacement) vs {} (matched document)",
                                    crate::error::quote_json(new_id),
                                    crate::error::quote_json(&old_id)
                                ),
                                document_id: Some(old_id),
                            }));
                        }
                        m.shift_remove("_id");
                        Value::Object(with_id_first(m, Some(old_id)))
                    }
                };
                let doc = if doc != before {
                    let p = validate::prepare(doc, &c.rules)?;
                    tx.execute(
                        &format!("UPDATE d_{tbl} SET doc = ?1 WHERE rid = ?2"),
                        params![p.text, rid],
                    )?;
                    result.modified = 1;
                    p.doc
                } else {
                    doc
                };
                (Some(before), Some(doc))
            }
            None if upsert => {
                let doc = match change {
                    Change::Update(u) => {
                        let mut d = seed_from_filter(filter)?;
                        u.apply(&mut d, true, now)?;
                        d
                    }
                    Change::Replace(r) => {
                        let mut m = r.clone();
                        if !m.contains_key("_id")
                            && let Some(id) = seed_from_filter(filter)?.get("_id")
                        {
                            m.insert("_id".into(), id.clone());
                        }
                        Value::Object(m)
                    }
                };
                let doc = match (doc, upsert_id) {
                    (Value::Object(m), Some(id)) if !m.contains_key("_id") => {
                        Value::Object(with_id_first(m, Some(id.clone())))
                    }
                    (doc, _) => doc,
                };
                let p = validate::prepare(doc, &c.rules)?;
                insert_row(&tx, tbl, &p)?;
                result.upserted_id = Some(p.id.clone());
                (None, Some(p.doc))
            }
            None => (None, None),
        };
        tx.commit()?;
        Ok((result, before, after))
    }
}

/// Applies an update to one stored row and writes it back if it changed; says whether it did.
fn update_row(
    tx: &rusqlite::Transaction<'_>,
    c: &Coll,
    rid: i64,
    before: Value,
    u: &Update,
    now: i64,
) -> Result<bool> {
    let id = before.get("_id").cloned().unwrap_or(Value::Null);
    let mut doc = before.clone();
    u.apply(&mut doc, false, now)
        .map_err(|e| e.for_document(&id))?;
    if doc == before {
        return Ok(false);
    }
    let p = validate::prepare(doc, &c.rules)?;
    tx.prepare_cached(&format!("UPDATE d_{} SET doc = ?1 WHERE rid = ?2", c.tbl))?
        .execute(params![p.text, rid])?;
    Ok(true)
}

/// Inserts the document an upserting update creates; returns its `_id`.
fn upsert_row(
    tx: &rusqlite::Transaction<'_>,
    c: &Coll,
    filter: &Value,
    u: &Update,
    now: i64,
) -> Result<Value> {
    let mut doc = seed_from_filter(filter)?;
    u.apply(&mut doc, true, now)?;
    let p = validate::prepare(doc, &c.rules)?;
    insert_row(tx, c.tbl, &p)?;
    Ok(p.id)
}

enum Change {
    Update(Update),
    Replace(Map<String, Value>),
}

/// What [`UpdateOptions`] and [`FindOneAndOptions`] tell [`DocStore::modify_one`]: which
/// match to pick, whether and with which `_id` to upsert, and the `$currentDate` time.
struct ModifyOptions<'a> {
    sort: Option<&'a Value>,
    upsert: bool,
    now: Option<i64>,
    upsert_id: Option<&'a Value>,
}

impl<'a> From<&'a UpdateOptions> for ModifyOptions<'a> {
    fn from(o: &'a UpdateOptions) -> Self {
        Self {
            sort: o.sort.as_ref(),
            upsert: o.upsert,
            now: o.now_ms,
            upsert_id: None,
        }
    }
}

impl<'a> From<&'a FindOneAndOptions> for ModifyOptions<'a> {
    fn from(o: &'a FindOneAndOptions) -> Self {
        Self {
            sort: o.sort.as_ref(),
            upsert: o.upsert,
            now: o.now_ms,
            upsert_id: o.upsert_id.as_ref(),
        }
    }
}

/// A replacement is a document: it is validated as one when it is written (names, typed
/// values, limits), with the matched document's `_id`.
fn replacement_doc(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(doc_err(
            DocStoreCode::ShredBadDocumentType,
            format!(
                "bad document type: a replacement must be a JSON object, not {}",
                validate::type_name(&other)
            ),
        )),
    }
}

fn pick(
    before: Option<Value>,
    after: Option<Value>,
    which: ReturnDocument,
    proj: Option<&Projection>,
) -> Option<Value> {
    let d = match which {
        ReturnDocument::Before => before,
        ReturnDocument::After => after,
    }?;
    Some(project(proj, d))
}

fn project(proj: Option<&Projection>, doc: Value) -> Value {
    match proj {
        Some(p) => p.apply(doc),
        None => doc,
    }
}

/// The first match: in the sort's order (ties by `_id`), or without a sort in `_id` order, so
/// that every region applying the same command picks the same document.
fn select_one(
    tx: &rusqlite::Transaction<'_>,
    tbl: i64,
    f: &filter::SqlFilter,
    sort: &[String],
) -> Result<Option<(i64, Value)>> {
    let order = if sort.is_empty() {
        "id".to_owned()
    } else {
        format!("{}, rid", sort.join(", "))
    };
    let sql = format!(
        "SELECT rid, doc FROM d_{tbl} WHERE ({}) ORDER BY {order} LIMIT 1",
        f.sql
    );
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query(params_from_iter(f.params.iter()))?;
    match rows.next()? {
        Some(r) => Ok(Some((r.get(0)?, doc_col(r, 1)?))),
        None => Ok(None),
    }
}

fn require_keyspace(conn: &Connection, keyspace: &str) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM keyspaces WHERE name = ?1)",
        [keyspace],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(DocStoreError::KeyspaceNotFound(keyspace.to_owned()))
    }
}

/// Inserts one prepared document; a taken `_id` is [`DocStoreError::DuplicateId`].
fn insert_row(conn: &Connection, tbl: i64, p: &Prepared) -> Result<()> {
    let mut st = conn.prepare_cached(&format!("INSERT INTO d_{tbl} (id, doc) VALUES (?1, ?2)"))?;
    match st.execute(params![p.key, p.text]) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(DocStoreError::DuplicateId(Refusal {
            code: DocStoreCode::DocumentAlreadyExists,
            message: format!(
                "cannot insert the document: a document already exists with the given '_id' ({})",
                crate::error::quote_json(&p.id)
            ),
            document_id: Some(p.id.clone()),
        })),
        Err(e) => Err(e.into()),
    }
}

/// The document an upsert starts from: the filter's plain equalities (top level, `$eq`, and
/// inside `$and`), as the Data API does.
fn seed_from_filter(filter: &Value) -> Result<Value> {
    let mut doc = Value::Object(Map::new());
    fn walk(doc: &mut Value, m: &Map<String, Value>) -> Result<()> {
        for (k, v) in m {
            if k == "$and" {
                if let Value::Array(items) = v {
                    for it in items {
                        if let Value::Object(inner) = it {
                            walk(doc, inner)?;
                        }
                    }
                }
                continue;
            }
            if k.starts_with('$') {
                continue;
            }
            let val = match v {
                Value::Object(ops)
                    if ops.keys().any(|x| x.starts_with('$')) && !is_typed_literal(ops) =>
                {
                    match ops.get("$eq") {
                        Some(e) => e.clone(),
                        None => continue,
                    }
                }
                lit => lit.clone(),
            };
            let p = FieldPath::parse(k, PathUse::Filter)?;
            *crate::path::get_mut_create(doc, &p.segs, &p.raw)? = val;
        }
        Ok(())
    }
    if let Value::Object(m) = filter {
        walk(&mut doc, m)?;
    }
    Ok(doc)
}
