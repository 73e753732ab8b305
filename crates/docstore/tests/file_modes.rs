//! A datacenter file and its -wal/-shm companions are created owner-only whatever the umask.
//! One test in its own binary, because the umask is process-wide. (The datacenter's folder is
//! created by the data plane, not by this crate.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keyplane_docstore::{DataKey, DocStore, FILE_MODE};
use rustix::fs::Mode;
use serde_json::json;

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

#[test]
fn datacenter_files_are_owner_only_whatever_the_umask() {
    assert_eq!(FILE_MODE, 0o600);
    let before = rustix::process::umask(Mode::from_bits_truncate(0o022));
    for umask in [0o022, 0o000] {
        rustix::process::umask(Mode::from_bits_truncate(umask));
        let dir = tempfile::tempdir().unwrap();
        for (name, store) in [
            (
                "dc.db",
                DocStore::create(
                    dir.path().join("dc.db"),
                    &DataKey::from_slice(&[7; 32]).unwrap(),
                ),
            ),
            (
                "plain.db",
                DocStore::create_plain(dir.path().join("plain.db")),
            ),
        ] {
            let store = store.unwrap();
            store.create_keyspace("app").unwrap();
            store.create_collection("app", "c", None).unwrap();
            store.insert_one("app", "c", json!({"_id": 1})).unwrap();
            let path = dir.path().join(name);
            for p in [
                path.clone(),
                with_suffix(&path, "-wal"),
                with_suffix(&path, "-shm"),
            ] {
                assert_eq!(
                    format!("{:o}", mode(&p)),
                    "600",
                    "{} under umask {umask:03o}",
                    p.display()
                );
            }
        }
    }
    rustix::process::umask(before);
}
