//! The SQLite store's files are owner-only whatever the umask: the database file, its -wal and
//! -shm companions, and the folders the store creates for them. One test in its own binary,
//! because the umask is process-wide.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keyplane_store::{SqliteStore, Store};
use rustix::fs::Mode;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens a store at a path under two missing folders, writes (so WAL creates -wal and -shm),
/// and checks every mode while the store is open.
async fn check_under_umask(umask: u32) {
    rustix::process::umask(Mode::from_bits_truncate(umask));
    let tmp = tempfile::tempdir().unwrap();
    let tmp_mode = mode(tmp.path());
    let db = tmp.path().join("data").join("sub").join("keyplane.db");
    let store = SqliteStore::open(&db).await.unwrap();
    store.create_org("file modes", None).await.unwrap();
    for p in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_eq!(mode(&p), 0o600, "{} under umask {umask:03o}", p.display());
    }
    for d in [tmp.path().join("data"), tmp.path().join("data").join("sub")] {
        assert_eq!(mode(&d), 0o700, "{} under umask {umask:03o}", d.display());
    }
    assert_eq!(
        mode(tmp.path()),
        tmp_mode,
        "an existing folder is not ours to change"
    );
    drop(store);

    // A store file left readable by others (an earlier version, a loose umask) is narrowed
    // when it is opened again, companions included.
    for p in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let store = SqliteStore::open(&db).await.unwrap();
    assert_eq!(store.list_orgs(None).await.unwrap().len(), 1);
    assert_eq!(mode(&db), 0o600, "reopened under umask {umask:03o}");
    for p in [with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[tokio::test]
async fn store_files_and_folders_are_owner_only_whatever_the_umask() {
    let before = rustix::process::umask(Mode::from_bits_truncate(0o022));
    check_under_umask(0o022).await;
    // The most permissive umask: nothing but the store's own modes decides.
    check_under_umask(0o000).await;
    rustix::process::umask(before);
}
