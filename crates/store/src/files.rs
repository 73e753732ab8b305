//! Owner-only files and folders for the SQLite store: the database holds token hashes, key
//! registrations and the audit log, so nobody but the service's user may read it, whatever the
//! process's umask.
//!
//! SQLite creates the `-wal`, `-shm` and `-journal` files with the database file's own mode,
//! so creating the database file owner-only (before SQLite can create it with the umask's
//! mode) covers all of them.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// Mode of the database file and its `-wal`/`-shm` companions.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder the store creates for its file.
pub const DIR_MODE: u32 = 0o700;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and every missing parent owner-only (0700). Folders that already exist are
/// left as they are: they may be shared, such as the current directory or `/tmp`.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in missing.iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(d) {
            Ok(()) => {}
            // Another process made it meanwhile; it is not ours to change.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(d)(e)),
        }
        // The umask may have taken bits the mode asked for; set it exactly.
        std::fs::set_permissions(d, Permissions::from_mode(DIR_MODE)).map_err(io(d))?;
    }
    Ok(())
}

/// Makes sure the database file at `path` exists and is owner-only before SQLite opens it:
/// creates it empty (SQLite's way of starting a new database) with [`FILE_MODE`], or narrows
/// an existing database file and its companions left readable by others (by an earlier
/// version or a loose umask), logging what it changed.
pub fn prepare_database_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => {
            std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)).map_err(io(path))?;
            return Ok(());
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path)(e)),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & !FILE_MODE != 0 {
            std::fs::set_permissions(&p, Permissions::from_mode(mode & FILE_MODE))
                .map_err(io(&p))?;
            tracing::info!(path = %p.display(), from = format!("{mode:o}"), to = format!("{:o}", mode & FILE_MODE),
                "narrowed the store file's permissions to its owner");
        }
    }
    Ok(())
}
