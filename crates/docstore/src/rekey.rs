//! Data-key rotation of a datacenter file: a whole copy of it under a new key, made with
//! SQLCipher's `sqlcipher_export` from a connection of its own (so the store's connection
//! keeps serving reads meanwhile), checked, and then put in the original's place by the
//! caller. The copy never replaces the file in place: until the caller's rename, the file is
//! whole under the old key; after it, whole under the new one.
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::error::{DocStoreError, Result};
use crate::key::DataKey;
use crate::store::{DocStore, FILE_MODE};

/// A finished, checked copy of a store under a new key, and the connection it was made from
/// (the last one open on the source once the caller closed the store).
pub struct RekeyedCopy {
    source: PathBuf,
    copy: PathBuf,
    conn: Connection,
}

impl std::fmt::Debug for RekeyedCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyedCopy")
            .field("source", &self.source)
            .field("copy", &self.copy)
            .finish_non_exhaustive()
    }
}

/// Every table of a store file and its row count, in name order: what a copy must hold.
fn table_counts(conn: &Connection, schema: &str) -> Result<Vec<(String, i64)>> {
    let names: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM \"{schema}\".sqlite_master WHERE type = 'table' ORDER BY name"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let n: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM \"{schema}\".\"{}\"",
                name.replace('"', "\"\"")
            ),
            [],
            |r| r.get(0),
        )?;
        out.push((name, n));
    }
    Ok(out)
}

/// `x'<hex>'`, SQLCipher's raw-key form, in wiped memory.
fn raw_key_literal(key: &DataKey) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = Zeroizing::new(String::with_capacity(67));
    s.push_str("x'");
    for b in key.expose_secret().iter() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0x0f) as usize] as char);
    }
    s.push('\'');
    s
}

impl DocStore {
    /// Copies the store at `source` (opened with `key`) to `copy`, encrypted with `new_key`,
    /// and checks the copy: it holds the same tables with the same row counts, and opens under
    /// `new_key` as a store. The caller keeps every writer off `source` from before this call
    /// until it has put the copy in place (readers may go on). A `copy` left by an earlier,
    /// interrupted attempt is replaced.
    pub fn export_rekeyed(
        source: &Path,
        key: &DataKey,
        copy: &Path,
        new_key: &DataKey,
    ) -> Result<RekeyedCopy> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = copy.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::remove_file(PathBuf::from(p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Owner-only from the start, as a created store.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(copy)?;
        std::fs::set_permissions(copy, Permissions::from_mode(FILE_MODE))?;
        let result = Self::export_into(source, key, copy, new_key);
        if result.is_err() {
            let _ = std::fs::remove_file(copy);
            let mut journal = copy.as_os_str().to_owned();
            journal.push("-journal");
            let _ = std::fs::remove_file(PathBuf::from(journal));
        }
        result
    }

    fn export_into(
        source: &Path,
        key: &DataKey,
        copy: &Path,
        new_key: &DataKey,
    ) -> Result<RekeyedCopy> {
        // The source's own settings (key, HMAC, WAL) through the same connect as a store's.
        let conn = Self::connect(source, Some(key))?;
        let path = copy
            .to_str()
            .ok_or_else(|| DocStoreError::Corrupt(format!("{} is not UTF-8", copy.display())))?;
        let literal = raw_key_literal(new_key);
        conn.execute(
            "ATTACH DATABASE ?1 AS rekeyed KEY ?2",
            rusqlite::params![path, literal.as_str()],
        )?;
        // Part of the file format, as in `connect`; set before the copy's first page is made.
        conn.execute_batch(
            "PRAGMA rekeyed.cipher_hmac_algorithm = HMAC_SHA256;
             SELECT sqlcipher_export('rekeyed');",
        )?;
        let want = table_counts(&conn, "main")?;
        let got = table_counts(&conn, "rekeyed")?;
        conn.execute_batch("DETACH DATABASE rekeyed;")?;
        std::fs::File::open(copy)?.sync_all()?;
        if want != got {
            return Err(DocStoreError::Corrupt(format!(
                "the copy under the new key differs from {} ({} tables copied of {})",
                source.display(),
                got.len(),
                want.len()
            )));
        }
        // The copy stands alone: it opens under the new key as a store (its first pages and
        // catalog decrypt and authenticate with the new key and the file's HMAC setting).
        drop(Self::open(copy, new_key)?);
        Ok(RekeyedCopy {
            source: source.to_owned(),
            copy: copy.to_owned(),
            conn,
        })
    }
}

impl RekeyedCopy {
    /// The copy's path.
    pub fn copy(&self) -> &Path {
        &self.copy
    }

    /// Once every other connection to the source is closed: folds the source's WAL back into
    /// it and removes it, so that no WAL written under the old key is left beside the file
    /// the copy replaces (SQLite would replay it onto the new file). Errors when another
    /// connection still holds the source.
    pub fn release_source(self) -> Result<()> {
        // Nothing else should hold the file by now: a short wait, not the store's 5 s.
        self.conn
            .busy_timeout(std::time::Duration::from_millis(500))?;
        let (busy, _, _): (i64, i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        if busy != 0 {
            return Err(DocStoreError::Corrupt(format!(
                "{} is still in use; its WAL could not be folded in",
                self.source.display()
            )));
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(DocStoreError::Corrupt(format!(
                "{} kept journal mode {mode}",
                self.source.display()
            )));
        }
        drop(self.conn);
        let mut wal = self.source.as_os_str().to_owned();
        wal.push("-wal");
        if Path::new(&wal).exists() {
            return Err(DocStoreError::Corrupt(format!(
                "{} still has a WAL",
                self.source.display()
            )));
        }
        Ok(())
    }
}
