//! One `keyplane serve` per data dir. A SQLite store and the datacenter files in a data dir
//! belong to one process: a second one would run the same jobs and open the same files. So
//! `serve` takes an exclusive advisory lock (`flock`, through `std::fs::File::try_lock`) on
//! `<data-dir>/serve.lock` for its whole life, and a second `serve` on the same dir exits at
//! start with a message naming the holder. The kernel drops the lock when the holder's
//! process ends, however it ends (kill -9 included), so no stale lock is ever left to clean.
//! A SQLite file configured outside the data dir gets a lock file of its own beside it.
//!
//! Admin commands take no lock: each is a few short transactions, which SQLite's own locking
//! serializes with the server's.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file in a data dir.
pub const LOCK_FILE: &str = "serve.lock";

/// Held locks; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ServeLocks {
    _files: Vec<File>,
}

/// Takes the data dir's lock, and the SQLite file's when that file lives elsewhere.
pub fn lock_for_serve(
    data_dir: &Path,
    sqlite_file: Option<&Path>,
    replica_id: &str,
) -> anyhow::Result<ServeLocks> {
    let mut files = vec![lock(
        &data_dir.join(LOCK_FILE),
        "data dir",
        data_dir,
        replica_id,
    )?];
    if let Some(db) = sqlite_file {
        let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
        let same = match dir {
            Some(dir) => same_dir(dir, data_dir),
            None => same_dir(Path::new("."), data_dir),
        };
        if !same {
            let mut name = db.as_os_str().to_owned();
            name.push(".serve.lock");
            files.push(lock(&PathBuf::from(name), "SQLite store", db, replica_id)?);
        }
    }
    Ok(ServeLocks { _files: files })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn lock(path: &Path, what: &str, guarded: &Path, replica_id: &str) -> anyhow::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_string()
            } else {
                holder.to_string()
            };
            bail!(
                "another `keyplane serve` ({holder}) is using the {what} {} (it holds {}). One process \
                 serves a data dir: its SQLite store and datacenter files are that process's alone. Stop \
                 the other one, or give this one another --data-dir; several processes share one store \
                 only on PostgreSQL (--database-url postgres://…, each with its own --data-dir)",
                guarded.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    // Who holds it, for the message a second process prints.
    let note = format!(
        "pid {}, replica {replica_id}, since {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(note.as_bytes()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_dir_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            lock_for_serve(dir.path(), Some(&dir.path().join("keyplane.db")), "r1").unwrap();
        assert_eq!(
            first._files.len(),
            1,
            "the SQLite file in the data dir shares its lock"
        );
        let err = format!("{:#}", lock_for_serve(dir.path(), None, "r2").unwrap_err());
        assert!(err.contains("another `keyplane serve`"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("replica r1"), "{err}");
        assert!(err.contains("--data-dir"), "{err}");
        drop(first);
        lock_for_serve(dir.path(), None, "r3").unwrap();
    }

    #[test]
    fn a_sqlite_file_elsewhere_is_locked_too() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let db = b.path().join("shared.db");
        let _held = lock_for_serve(a.path(), Some(&db), "r1").unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            lock_for_serve(other.path(), Some(&db), "r2").unwrap_err()
        );
        assert!(err.contains("SQLite store"), "{err}");
        assert!(err.contains("shared.db"), "{err}");
    }
}
