//! The document store proper: one SQLite/SQLCipher connection per datacenter file.

use std::collections::HashMap;
use std::fs::{OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::Value as SqlValue;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params,
    params_from_iter,
};
use serde_json::{Map, Value};

use crate::error::{DocStoreError, Result};
use crate::filter::{self, is_typed_literal};
use crate::key::DataKey;
use crate::path::FieldPath;
use crate::projection::Projection;
use crate::update::Update;

/// Largest serialized document accepted (the Data API also limits documents; 1 MiB keeps one
/// document well inside SQLite's comfortable row sizes).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Deepest nesting of objects and arrays in a document, a filter or a path.
pub const MAX_DEPTH: usize = 16;
/// Most documents one `insert_many` call accepts, as the Data API's `insertMany`.
pub const MAX_INSERT_MANY: usize = 100;
/// Mode of a datacenter file and its -wal/-shm companions: owner-only, since the file is the
/// customer's data (encrypted, but its size and timing still say something).
pub const FILE_MODE: u32 = 0o600;
/// Page size of `find` when the caller does not choose one, as the Data API.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page a caller may ask for; bounds the memory one call holds.
pub const MAX_PAGE_SIZE: u64 = 1000;

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

struct Inner {
    conn: Connection,
    /// (keyspace, collection) → table number, so hot paths skip the catalog lookup.
    colls: HashMap<(String, String), i64>,
}

/// One datacenter's documents in one SQLCipher file.
///
/// All methods are synchronous and serialize on one connection; from async code call them in
/// `tokio::task::spawn_blocking` (the type is `Send + Sync`, share it with `Arc`).
pub struct DocStore {
    inner: Mutex<Inner>,
    path: PathBuf,
    encrypted: bool,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

/// Turns on SQLCipher's memory security for the WHOLE process, irreversibly: every buffer
/// SQLite frees is wiped (and pages are mlocked), including buffers that held the key pragma's
/// text and decrypted pages. It is off by default because it is global and costly: measured
/// here, JSON-heavy queries (filters, scans) ran about 8 times slower, for every SQLite
/// database in the process, encrypted or not. SQLCipher wipes its own key material whether or
/// not this is on. Call it once at startup, before opening any store, if the deployment wants
/// it.
pub fn enable_memory_security() -> Result<()> {
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

fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DocStoreError::InvalidName(format!(
            "{kind} name '{}' must start with a letter and contain only letters, digits and \
             underscores, 48 characters at most",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// The text stored in the `id` column for an `_id` value. Numbers are normalized so that
/// `1` and `1.0` name the same document.
pub(crate) fn id_key(v: &Value) -> Result<String> {
    let bad = || {
        DocStoreError::InvalidDocument(
            "_id must be a string, number, boolean, null, $date, $uuid or $objectId".into(),
        )
    };
    match v {
        Value::String(_) | Value::Bool(_) | Value::Null => Ok(v.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i.to_string());
            }
            if let Some(u) = n.as_u64() {
                return Ok(u.to_string());
            }
            let f = n.as_f64().ok_or_else(bad)?;
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Ok((f as i64).to_string())
            } else {
                Ok(n.to_string())
            }
        }
        Value::Object(m) if is_typed_literal(m) => {
            let ok = match (m.get("$date"), m.get("$uuid"), m.get("$objectId")) {
                (Some(d), _, _) => d.is_number(),
                (_, Some(u), _) => u.is_string(),
                (_, _, Some(o)) => o.is_string(),
                _ => false,
            };
            if ok { Ok(v.to_string()) } else { Err(bad()) }
        }
        _ => Err(bad()),
    }
}

fn check_depth_and_keys(v: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(DocStoreError::TooDeep { limit: MAX_DEPTH });
    }
    match v {
        Value::Object(m) => {
            let typed = is_typed_literal(m);
            for (k, child) in m {
                if k.is_empty() {
                    return Err(DocStoreError::InvalidDocument(
                        "field names cannot be empty".into(),
                    ));
                }
                if k.starts_with('$') && !typed {
                    return Err(DocStoreError::InvalidDocument(format!(
                        "field name '{}' cannot start with '$'",
                        k.chars().take(64).collect::<String>()
                    )));
                }
                check_depth_and_keys(child, depth + 1)?;
            }
        }
        Value::Array(a) => {
            for child in a {
                check_depth_and_keys(child, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Validates a document for storage and returns (its `_id`, the id column text, the JSON
/// text); assigns a UUID v4 `_id` when it has none, as the Data API does.
fn prepare_doc(doc: Value) -> Result<(Value, String, String)> {
    let Value::Object(mut m) = doc else {
        return Err(DocStoreError::InvalidDocument(
            "a document must be a JSON object".into(),
        ));
    };
    if !m.contains_key("_id") {
        m = with_id_first(m, Value::String(uuid::Uuid::new_v4().to_string()));
    }
    finish_doc(Value::Object(m))
}

/// `m` with `_id` set to `id` as its first field, where clients expect to see a generated one.
fn with_id_first(m: Map<String, Value>, id: Value) -> Map<String, Value> {
    let mut with_id = Map::with_capacity(m.len() + 1);
    with_id.insert("_id".into(), id);
    with_id.extend(m);
    with_id
}

fn finish_doc(doc: Value) -> Result<(Value, String, String)> {
    check_depth_and_keys(&doc, 1)?;
    let id = doc.get("_id").cloned().unwrap_or(Value::Null);
    let key = id_key(&id)?;
    let text =
        serde_json::to_string(&doc).map_err(|e| DocStoreError::InvalidDocument(e.to_string()))?;
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocStoreError::DocumentTooLarge {
            size: text.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok((id, key, text))
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

fn normalize_options(options: Option<&Value>) -> Result<Value> {
    match options {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(DocStoreError::InvalidDocument(
            "collection options must be an object".into(),
        )),
    }
}

/// Page state: opaque to clients, but only positions inside the caller's own query, so a
/// tampered one can only move within results the caller may read anyway.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PageState {
    /// Unsorted finds page by rowid: stable under concurrent inserts and O(page) per page.
    After { rid: i64, returned: u64 },
    /// Sorted finds page by offset.
    Offset { offset: u64, returned: u64 },
}

impl PageState {
    fn encode(self) -> String {
        let s = match self {
            PageState::After { rid, returned } => format!("k{rid}:{returned}"),
            PageState::Offset { offset, returned } => format!("o{offset}:{returned}"),
        };
        hex::encode(s)
    }

    fn decode(s: &str) -> Result<Self> {
        let bad = || DocStoreError::InvalidPageState;
        let raw = hex::decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (kind, rest) = text.split_at_checked(1).ok_or_else(bad)?;
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
        }
    }

    fn connect(path: &Path, key: Option<&DataKey>) -> Result<Connection> {
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
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
    /// array-membership branch) are served by an index instead of a scan. Idempotent.
    pub fn create_index(&self, keyspace: &str, collection: &str, path: &str) -> Result<bool> {
        let fp = FieldPath::parse(path, DocStoreError::InvalidFilter)?;
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO indexes (tbl, path) VALUES (?1, ?2)",
            params![tbl, fp.raw],
        )?;
        if n == 1 {
            let ix = tx.last_insert_rowid();
            let jp = fp.json_path();
            tx.execute_batch(&format!(
                "CREATE INDEX x{ix}v ON d_{tbl} (json_extract(doc, '{jp}'));
                 CREATE INDEX x{ix}t ON d_{tbl} (json_type(doc, '{jp}'));"
            ))?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    pub fn list_indexes(&self, keyspace: &str, collection: &str) -> Result<Vec<String>> {
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let mut st = g
            .conn
            .prepare_cached("SELECT path FROM indexes WHERE tbl = ?1 ORDER BY path")?;
        let rows = st.query_map([tbl], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn tbl(g: &mut Inner, keyspace: &str, collection: &str) -> Result<i64> {
        let k = (keyspace.to_owned(), collection.to_owned());
        if let Some(t) = g.colls.get(&k) {
            return Ok(*t);
        }
        let t: i64 = g
            .conn
            .query_row(
                "SELECT tbl FROM collections WHERE keyspace = ?1 AND name = ?2",
                [keyspace, collection],
                |r| r.get(0),
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => {
                    DocStoreError::CollectionNotFound(collection.to_owned())
                }
                e => e.into(),
            })?;
        g.colls.insert(k, t);
        Ok(t)
    }

    // ---------------------------------------------------------------- inserts

    /// Inserts one document and returns its `_id` once the commit is on disk.
    pub fn insert_one(&self, keyspace: &str, collection: &str, doc: Value) -> Result<Value> {
        let (id, key, text) = prepare_doc(doc)?;
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        insert_row(&g.conn, tbl, &key, &text)?;
        Ok(id)
    }

    /// Inserts up to [`MAX_INSERT_MANY`] documents in ONE transaction (one fsync), reporting
    /// per document. `ordered` stops at the first failure (later documents are not attempted
    /// and have no entry); unordered tries every document.
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let r = prepare_doc(doc)
                .and_then(|(id, key, text)| insert_row(&tx, tbl, &key, &text).map(|()| id));
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let mut params = f.params;
        let (sql, offset) = if sort.is_empty() {
            let (after, offset) = match state {
                Some(PageState::After { rid, .. }) => (rid, 0),
                Some(PageState::Offset { .. }) => return Err(DocStoreError::InvalidPageState),
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
                Some(PageState::After { .. }) => return Err(DocStoreError::InvalidPageState),
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let n: i64 = g
            .conn
            .query_row(&format!("SELECT count(*) FROM d_{tbl}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The query plan SQLite chose for a filter (for tests and `explain`).
    pub fn explain(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<String> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
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
            let mut upd =
                tx.prepare_cached(&format!("UPDATE d_{tbl} SET doc = ?1 WHERE rid = ?2"))?;
            for (rid, text) in &chunk {
                let before = parse_doc(text)?;
                let mut doc = before.clone();
                u.apply(&mut doc, false, now)?;
                result.matched += 1;
                if doc != before {
                    let (_, _, new_text) = finish_doc(doc)?;
                    upd.execute(params![new_text, rid])?;
                    result.modified += 1;
                }
            }
            if (chunk.len() as i64) < UPDATE_CHUNK {
                break;
            }
        }
        if result.matched == 0 && upsert {
            let mut doc = seed_from_filter(filter)?;
            u.apply(&mut doc, true, now)?;
            let (id, key, text) = prepare_doc(doc)?;
            insert_row(&tx, tbl, &key, &text)?;
            result.upserted_id = Some(id);
        }
        tx.commit()?;
        Ok(result)
    }

    /// Deletes the first match in insertion order; a `deleteOne` with a sort goes through
    /// [`DocStore::find_one_and_delete`].
    pub fn delete_one(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<u64> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let sql = format!(
            "DELETE FROM d_{tbl} WHERE rid = (SELECT rid FROM d_{tbl} WHERE ({}) ORDER BY rid LIMIT 1)",
            f.sql
        );
        let n = g.conn.execute(&sql, params_from_iter(f.params))?;
        Ok(n as u64)
    }

    pub fn delete_many(&self, keyspace: &str, collection: &str, filter: &Value) -> Result<u64> {
        let f = filter::compile(filter)?;
        let mut g = self.lock();
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let sql = format!("DELETE FROM d_{tbl} WHERE ({})", f.sql);
        let n = g.conn.execute(&sql, params_from_iter(f.params))?;
        Ok(n as u64)
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
        let tbl = Self::tbl(&mut g, keyspace, collection)?;
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = select_one(&tx, tbl, &f, &sort)?;
        let mut result = UpdateResult::default();
        let (before, after) = match found {
            Some((rid, before)) => {
                result.matched = 1;
                let doc = match change {
                    Change::Update(u) => {
                        let mut d = before.clone();
                        u.apply(&mut d, false, now)?;
                        d
                    }
                    Change::Replace(r) => {
                        let old_id = before.get("_id").cloned().unwrap_or(Value::Null);
                        let mut m = r.clone();
                        if let Some(new_id) = m.get("_id")
                            && id_key(new_id)? != id_key(&old_id)?
                        {
                            return Err(DocStoreError::InvalidUpdate(
                                "a replacement cannot change _id".into(),
                            ));
                        }
                        m.insert("_id".into(), old_id);
                        Value::Object(m)
                    }
                };
                if doc != before {
                    let (_, _, text) = finish_doc(doc.clone())?;
                    tx.execute(
                        &format!("UPDATE d_{tbl} SET doc = ?1 WHERE rid = ?2"),
                        params![text, rid],
                    )?;
                    result.modified = 1;
                }
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
                        Value::Object(with_id_first(m, id.clone()))
                    }
                    (doc, _) => doc,
                };
                let (id, key, text) = prepare_doc(doc)?;
                insert_row(&tx, tbl, &key, &text)?;
                result.upserted_id = Some(id);
                (None, parse_doc(&text).ok())
            }
            None => (None, None),
        };
        tx.commit()?;
        Ok((result, before, after))
    }
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

fn replacement_doc(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| k.starts_with('$') && *k != "_id") {
                return Err(DocStoreError::InvalidUpdate(format!(
                    "a replacement document cannot contain operators ('{k}')"
                )));
            }
            Ok(m)
        }
        _ => Err(DocStoreError::InvalidUpdate(
            "a replacement must be a JSON object".into(),
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

fn select_one(
    tx: &rusqlite::Transaction<'_>,
    tbl: i64,
    f: &filter::SqlFilter,
    sort: &[String],
) -> Result<Option<(i64, Value)>> {
    let order = if sort.is_empty() {
        "rid".to_owned()
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
fn insert_row(conn: &Connection, tbl: i64, key: &str, text: &str) -> Result<()> {
    let mut st = conn.prepare_cached(&format!("INSERT INTO d_{tbl} (id, doc) VALUES (?1, ?2)"))?;
    match st.execute(params![key, text]) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(DocStoreError::DuplicateId(key.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// The document an upsert starts from: the filter's plain equalities (top level, `$eq`, and
/// inside `$and`), as MongoDB and the Data API do.
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
            let p = FieldPath::parse(k, DocStoreError::InvalidFilter)?;
            *crate::path::get_mut_create(doc, &p.segs)? = val;
        }
        Ok(())
    }
    if let Value::Object(m) = filter {
        walk(&mut doc, m)?;
    }
    Ok(doc)
}
