//! Replication between the files of one database's regions: a write runs in ONE region (the
//! primary of that write), which records, in the same SQLite transaction as the write, which
//! documents it touched (by `_id`) and whether it changed the catalog, under the database's
//! next write number. Every other region is then made equal to the primary for exactly those
//! documents: each is copied by `_id` (or deleted where the primary no longer has it). So the
//! documents a command touches are chosen once, by its filter and sort in the primary, and
//! every region ends up with the same bytes for them.
//!
//! The record lives in the primary's own file (encrypted with its key, nothing in plaintext
//! anywhere) and stays there until the next write of the database, so a crash between the
//! primary's commit and a replica's is completed on recovery: [`DocStore::replication_seq`]
//! tells how far each region got, and [`DocStore::apply_from`] brings a region that is one
//! write behind up to the primary. Applying is idempotent: a region that already has a write
//! number skips it.
//!
//! How the record is made: TEMP triggers on this connection's document and catalog tables
//! (they exist only in this process's connection, not in the file), active only while
//! [`DocStore::record`] runs, so no write method of the store needs to know about
//! replication and writes made outside `record` (replica applies, the copy into a new region)
//! record nothing.
//!
//! The caller orders the writes: one recorded write per database at a time, each applied to
//! every region before the next starts (keyplane's data plane holds a per-database lock).
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use crate::error::{DocStoreError, Result};
use crate::store::DocStore;

/// The `tbl` of the record row that says "this write changed keyspaces, collections or
/// indexes" (document tables are numbered from 1).
const CATALOG: i64 = 0;
/// Documents copied per replica transaction, so a large `updateMany` is applied without holding
/// all its documents in memory; the write number is set by the last one.
const APPLY_CHUNK: i64 = 256;
const SEQ_KEY: &str = "replication_seq";

/// The per-connection side of recording: the write number the triggers record under (`-1`
/// when not recording) and the document tables that already have triggers.
#[derive(Debug, Default)]
pub(crate) struct Replication {
    recording: Arc<AtomicI64>,
    state: Mutex<TriggerState>,
}

#[derive(Debug, Default)]
struct TriggerState {
    /// The record table exists and the `redo_seq()` function and catalog triggers are set up.
    ready: bool,
    /// Document tables whose triggers exist on this connection.
    tables: HashSet<i64>,
}

/// What [`DocStore::record`] saw: the write's own result, and whether it changed anything
/// that other regions must copy (an error after a partial change still counts).
#[derive(Debug)]
pub struct Recorded<T> {
    pub result: Result<T>,
    pub changed: bool,
}

/// Resets the recording flag even if the write panics.
struct RecordingGuard<'a>(&'a AtomicI64);

impl Drop for RecordingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(-1, Ordering::SeqCst);
    }
}

fn to_seq(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| DocStoreError::Corrupt(format!("write number {n} too large")))
}

impl Replication {
    pub(crate) fn new() -> Replication {
        Replication {
            recording: Arc::new(AtomicI64::new(-1)),
            state: Mutex::new(TriggerState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TriggerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record table, and on this connection the `redo_seq()` function and the triggers
    /// of the catalog and of every document table.
    fn prepare(&self, conn: &Connection) -> Result<()> {
        let mut st = self.state();
        if !st.ready {
            ensure_schema(conn)?;
            let flag = self.recording.clone();
            conn.create_scalar_function(
                "redo_seq",
                0,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
                move |_| {
                    let v = flag.load(Ordering::SeqCst);
                    Ok((v >= 0).then_some(v))
                },
            )?;
            let mut sql = String::new();
            for table in ["keyspaces", "collections", "indexes"] {
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    sql.push_str(&format!(
                        "CREATE TEMP TRIGGER IF NOT EXISTS redo_{table}_{event} AFTER {event} ON main.{table} \
                         WHEN redo_seq() IS NOT NULL BEGIN \
                         DELETE FROM redo WHERE seq < redo_seq(); \
                         INSERT OR IGNORE INTO redo (seq, tbl, id) VALUES (redo_seq(), {CATALOG}, ''); END;"
                    ));
                }
            }
            conn.execute_batch(&sql)?;
            st.ready = true;
        }
        let tables: Vec<i64> = {
            let mut q = conn.prepare_cached("SELECT tbl FROM collections")?;
            q.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for t in tables {
            if st.tables.contains(&t) {
                continue;
            }
            let mut sql = String::new();
            for (event, row) in [
                ("INSERT", "NEW"),
                ("UPDATE OF doc", "NEW"),
                ("DELETE", "OLD"),
            ] {
                let name = event.split(' ').next().unwrap_or(event);
                sql.push_str(&format!(
                    "CREATE TEMP TRIGGER IF NOT EXISTS redo_d{t}_{name} AFTER {event} ON main.d_{t} \
                     WHEN redo_seq() IS NOT NULL BEGIN \
                     DELETE FROM redo WHERE seq < redo_seq(); \
                     INSERT OR IGNORE INTO redo (seq, tbl, id) VALUES (redo_seq(), {t}, {row}.id); END;"
                ));
            }
            conn.execute_batch(&sql)?;
            st.tables.insert(t);
        }
        Ok(())
    }
}

/// The record table (created on first use, so files of single-region databases never get one).
fn ensure_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS redo (
             seq INTEGER NOT NULL,
             tbl INTEGER NOT NULL,
             id TEXT NOT NULL,
             PRIMARY KEY (seq, tbl, id)) WITHOUT ROWID;",
    )?;
    Ok(())
}

fn stored_seq(conn: &Connection) -> Result<i64> {
    let applied: Option<String> = conn
        .query_row("SELECT v FROM meta WHERE k = ?1", [SEQ_KEY], |r| r.get(0))
        .optional()?;
    let applied = match applied {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| DocStoreError::Corrupt(format!("{SEQ_KEY} {v:?}")))?,
        None => 0,
    };
    let recorded: Option<i64> = conn.query_row("SELECT max(seq) FROM redo", [], |r| r.get(0))?;
    Ok(applied.max(recorded.unwrap_or(0)))
}

/// A collection of the catalog: its table, keyspace and name.
#[derive(Debug, Clone)]
struct CollectionRef {
    keyspace: String,
    name: String,
}

fn collections_by_table(conn: &Connection) -> Result<BTreeMap<i64, CollectionRef>> {
    let mut q = conn.prepare_cached("SELECT tbl, keyspace, name FROM collections")?;
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                CollectionRef {
                    keyspace: r.get(1)?,
                    name: r.get(2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    Ok(rows)
}

fn table_of(conn: &Connection, keyspace: &str, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT tbl FROM collections WHERE keyspace = ?1 AND name = ?2",
            [keyspace, name],
            |r| r.get(0),
        )
        .optional()?)
}

/// One chunk of a replica's apply: documents to store (in the primary's insertion order) and
/// ids to delete, for one collection.
struct Chunk {
    puts: Vec<(String, String)>,
    deletes: Vec<String>,
}

impl DocStore {
    /// Runs `f` (one write command on this store) recording, in the same transaction as each
    /// change it makes, the `_id` of every document it inserts, updates or deletes, and whether
    /// it changed the catalog, under write number `seq`. The triggers also delete the records
    /// of older writes in that transaction: they were applied everywhere before this write was
    /// allowed to start.
    ///
    /// The caller runs one recorded write per database at a time; see the module docs.
    pub fn record<T>(
        &self,
        seq: u64,
        f: impl FnOnce(&DocStore) -> Result<T>,
    ) -> Result<Recorded<T>> {
        let seq = to_seq(seq)?;
        {
            let g = self.lock();
            self.replica.prepare(&g.conn)?;
        }
        let result = {
            self.replica.recording.store(seq, Ordering::SeqCst);
            let _reset = RecordingGuard(&self.replica.recording);
            f(self)
        };
        let changed = {
            let g = self.lock();
            g.conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM redo WHERE seq = ?1)",
                    [seq],
                    |r| r.get::<_, bool>(0),
                )
                .map_err(DocStoreError::from)?
        };
        Ok(Recorded { result, changed })
    }

    /// The number of the last write this region has: recorded here as the primary of that
    /// write, or applied from its primary. 0 for a region that never took part in replication.
    pub fn replication_seq(&self) -> Result<u64> {
        let g = self.lock();
        ensure_schema(&g.conn)?;
        let n = stored_seq(&g.conn)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Whether this region holds the record of write `seq`, i.e. was its primary and can
    /// complete it in the other regions.
    pub fn holds_record(&self, seq: u64) -> Result<bool> {
        let seq = to_seq(seq)?;
        let g = self.lock();
        ensure_schema(&g.conn)?;
        Ok(g.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM redo WHERE seq = ?1)",
            [seq],
            |r| r.get::<_, bool>(0),
        )?)
    }

    /// Sets this region's write number without applying anything: for a region that just got a
    /// full copy of the database (a new region), which is then as far as its source.
    pub fn set_replication_seq(&self, seq: u64) -> Result<()> {
        let seq = to_seq(seq)?;
        let g = self.lock();
        ensure_schema(&g.conn)?;
        g.conn.execute(
            "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            params![SEQ_KEY, seq.to_string()],
        )?;
        Ok(())
    }

    /// Makes this region equal to `primary` for everything write `seq` touched there: the
    /// catalog if it changed, then each recorded document copied by `_id` (deleted where the
    /// primary no longer has it), in chunks; the last chunk's transaction sets this region's
    /// write number to `seq`. `Ok(false)` when this region already had `seq`.
    ///
    /// `primary` must not change meanwhile (the caller's per-database order guarantees it), so
    /// its current documents ARE the write's result, also when this runs on recovery after a
    /// crash.
    pub fn apply_from(&self, primary: &DocStore, seq: u64) -> Result<bool> {
        let seq_i = to_seq(seq)?;
        if self.replication_seq()? >= seq {
            return Ok(false);
        }
        let (tables, primary_colls) = {
            let g = primary.lock();
            ensure_schema(&g.conn)?;
            let mut q = g
                .conn
                .prepare_cached("SELECT DISTINCT tbl FROM redo WHERE seq = ?1 ORDER BY tbl")?;
            let tables: Vec<i64> = q
                .query_map([seq_i], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            (tables, collections_by_table(&g.conn)?)
        };
        if tables.is_empty() {
            return Err(DocStoreError::Corrupt(format!(
                "{} holds no record of write {seq}",
                primary.path().display()
            )));
        }
        if tables.first() == Some(&CATALOG) {
            self.copy_catalog_from(primary)?;
        }
        let mut work: Vec<(i64, i64)> = vec![];
        for t in tables.iter().filter(|t| **t != CATALOG) {
            // A collection the primary dropped after writing to it in this same write: the
            // catalog copy dropped it here too.
            let Some(c) = primary_colls.get(t) else {
                continue;
            };
            let here = {
                let g = self.lock();
                table_of(&g.conn, &c.keyspace, &c.name)?
            };
            let here = here.ok_or_else(|| {
                DocStoreError::Corrupt(format!(
                    "collection {}.{} is missing in {}",
                    c.keyspace,
                    c.name,
                    self.path().display()
                ))
            })?;
            work.push((*t, here));
        }
        // Chunks go out one behind, so the last one also sets the write number: a typical
        // write is ONE transaction (one fsync) here, as it was in the primary.
        let mut pending: Option<(i64, Chunk)> = None;
        let mut emit = |tbl: i64, chunk: Chunk| -> Result<()> {
            if let Some((t, c)) = pending.replace((tbl, chunk)) {
                self.apply_chunk(t, c, None)?;
            }
            Ok(())
        };
        for (from, to) in work {
            // Deletions first (ids the primary no longer has), then the documents in the
            // primary's insertion order, so a new document gets the same relative place here.
            let mut after_id = String::new();
            loop {
                let deletes: Vec<String> = {
                    let g = primary.lock();
                    let mut q = g.conn.prepare_cached(&format!(
                        "SELECT r.id FROM redo r WHERE r.seq = ?1 AND r.tbl = ?2 AND r.id > ?3 \
                         AND NOT EXISTS (SELECT 1 FROM d_{from} d WHERE d.id = r.id) \
                         ORDER BY r.id LIMIT {APPLY_CHUNK}"
                    ))?;
                    q.query_map(params![seq_i, from, after_id], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let Some(last) = deletes.last().cloned() else {
                    break;
                };
                let full = deletes.len() as i64 == APPLY_CHUNK;
                emit(
                    to,
                    Chunk {
                        puts: vec![],
                        deletes,
                    },
                )?;
                if !full {
                    break;
                }
                after_id = last;
            }
            let mut after_rid = i64::MIN;
            loop {
                let rows: Vec<(i64, String, String)> = {
                    let g = primary.lock();
                    let mut q = g.conn.prepare_cached(&format!(
                        "SELECT d.rid, d.id, d.doc FROM redo r JOIN d_{from} d ON d.id = r.id \
                         WHERE r.seq = ?1 AND r.tbl = ?2 AND d.rid > ?3 ORDER BY d.rid LIMIT {APPLY_CHUNK}"
                    ))?;
                    q.query_map(params![seq_i, from, after_rid], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?
                };
                let Some(last) = rows.last().map(|r| r.0) else {
                    break;
                };
                let full = rows.len() as i64 == APPLY_CHUNK;
                emit(
                    to,
                    Chunk {
                        puts: rows.into_iter().map(|(_, id, doc)| (id, doc)).collect(),
                        deletes: vec![],
                    },
                )?;
                if !full {
                    break;
                }
                after_rid = last;
            }
        }
        // The last chunk sets the write number and ends this region's own older records: until
        // it commits, recovery applies the write again (idempotently).
        let (t, c) = pending.unwrap_or((
            0,
            Chunk {
                puts: vec![],
                deletes: vec![],
            },
        ));
        self.apply_chunk(t, c, Some(seq_i))?;
        Ok(true)
    }

    fn apply_chunk(&self, tbl: i64, chunk: Chunk, finish: Option<i64>) -> Result<()> {
        let mut g = self.lock();
        let tx = g
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !chunk.deletes.is_empty() {
            let mut del = tx.prepare_cached(&format!("DELETE FROM d_{tbl} WHERE id = ?1"))?;
            for id in &chunk.deletes {
                del.execute([id])?;
            }
        }
        if !chunk.puts.is_empty() {
            let mut put = tx.prepare_cached(&format!(
                "INSERT INTO d_{tbl} (id, doc) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
            ))?;
            for (id, doc) in &chunk.puts {
                put.execute(params![id, doc])?;
            }
        }
        if let Some(seq) = finish {
            ensure_schema(&tx)?;
            tx.execute(
                "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                params![SEQ_KEY, seq.to_string()],
            )?;
            tx.execute("DELETE FROM redo WHERE seq < ?1", [seq])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes this store a full copy of `primary` (catalog, every document by `_id`, nothing
    /// else) and gives it `primary`'s write number: how a new region gets the database, and how
    /// a region that fell further behind than one write is repaired. Documents are copied in
    /// chunks, in the primary's insertion order; ids only this store has are deleted after.
    /// Returns the documents copied.
    pub fn resync_from(&self, primary: &DocStore) -> Result<u64> {
        let seq = primary.replication_seq()?;
        self.copy_catalog_from(primary)?;
        let mut copied = 0u64;
        let theirs = {
            let g = primary.lock();
            collections_by_table(&g.conn)?
        };
        for (from, c) in theirs {
            let to = {
                let g = self.lock();
                table_of(&g.conn, &c.keyspace, &c.name)?
            }
            .ok_or_else(|| {
                DocStoreError::Corrupt(format!("collection {}.{} not copied", c.keyspace, c.name))
            })?;
            let mut after_rid = i64::MIN;
            loop {
                let rows: Vec<(i64, String, String)> = {
                    let g = primary.lock();
                    let mut q = g.conn.prepare_cached(&format!(
                        "SELECT rid, id, doc FROM d_{from} WHERE rid > ?1 ORDER BY rid LIMIT {APPLY_CHUNK}"
                    ))?;
                    q.query_map([after_rid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let Some(last) = rows.last().map(|r| r.0) else {
                    break;
                };
                let full = rows.len() as i64 == APPLY_CHUNK;
                copied += rows.len() as u64;
                self.apply_chunk(
                    to,
                    Chunk {
                        puts: rows.into_iter().map(|(_, id, doc)| (id, doc)).collect(),
                        deletes: vec![],
                    },
                    None,
                )?;
                if !full {
                    break;
                }
                after_rid = last;
            }
            // Ids this store has and the primary does not.
            let mut after_id = String::new();
            loop {
                let ids: Vec<String> = {
                    let g = self.lock();
                    let mut q = g.conn.prepare_cached(&format!(
                        "SELECT id FROM d_{to} WHERE id > ?1 ORDER BY id LIMIT {APPLY_CHUNK}"
                    ))?;
                    q.query_map([&after_id], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?
                };
                let Some(last) = ids.last().cloned() else {
                    break;
                };
                let full = ids.len() as i64 == APPLY_CHUNK;
                let extra: Vec<String> = {
                    let g = primary.lock();
                    let mut q = g
                        .conn
                        .prepare_cached(&format!("SELECT 1 FROM d_{from} WHERE id = ?1"))?;
                    let mut extra = vec![];
                    for id in ids {
                        if !q.exists([&id])? {
                            extra.push(id);
                        }
                    }
                    extra
                };
                if !extra.is_empty() {
                    self.apply_chunk(
                        to,
                        Chunk {
                            puts: vec![],
                            deletes: extra,
                        },
                        None,
                    )?;
                }
                if !full {
                    break;
                }
                after_id = last;
            }
        }
        self.apply_chunk(
            0,
            Chunk {
                puts: vec![],
                deletes: vec![],
            },
            Some(to_seq(seq)?),
        )?;
        Ok(copied)
    }

    /// Makes this store's keyspaces, collections (with their options) and indexes those of
    /// `primary`. Through the store's own methods, so each change is made as a command would
    /// make it; each is idempotent, so an interrupted copy is finished by the next one.
    pub fn copy_catalog_from(&self, primary: &DocStore) -> Result<()> {
        let wanted: BTreeSet<String> = primary.list_keyspaces()?.into_iter().collect();
        for ks in self.list_keyspaces()? {
            if !wanted.contains(&ks) {
                self.drop_keyspace(&ks)?;
            }
        }
        for ks in &wanted {
            self.create_keyspace(ks)?;
            let theirs: BTreeMap<String, Value> =
                primary.list_collections(ks)?.into_iter().collect();
            for (name, options) in self.list_collections(ks)? {
                match theirs.get(&name) {
                    None => {
                        self.delete_collection(ks, &name)?;
                    }
                    Some(o) if *o != options => {
                        return Err(DocStoreError::Corrupt(format!(
                            "collection {ks}.{name} has other options in {} than in {}",
                            self.path().display(),
                            primary.path().display()
                        )));
                    }
                    Some(_) => {}
                }
            }
            for (name, options) in &theirs {
                let opts = (!options.is_null()).then_some(options);
                self.create_collection(ks, name, opts)?;
                for path in primary.list_indexes(ks, name)? {
                    self.create_index(ks, name, &path)?;
                }
            }
        }
        Ok(())
    }
}
