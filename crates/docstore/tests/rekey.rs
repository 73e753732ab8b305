//! Data-key rotation's file step: a copy under a new key holds every document, opens only
//! under the new key, reads in the store's format, and replaces the original once the
//! original's WAL is folded back in.

mod common;

use common::*;
use keyplane_docstore::{DocStore, DocStoreError};
use serde_json::json;

#[test]
fn a_rekeyed_copy_holds_everything_and_opens_only_under_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    let copy = dir.path().join("dc.db.rotating");
    let store = DocStore::create(&path, &key(1)).unwrap();
    store.create_keyspace("app").unwrap();
    store.create_collection("app", "users", None).unwrap();
    for i in 0..500 {
        store
            .insert_one(
                "app",
                "users",
                json!({"_id": i, "name": format!("user {i}")}),
            )
            .unwrap();
    }
    store.create_index("app", "users", "name").unwrap();
    // The store stays open (its WAL holds the latest writes) while the copy is made.
    let rekeyed = DocStore::export_rekeyed(&path, &key(1), &copy, &key(2)).unwrap();
    assert_eq!(rekeyed.copy(), copy.as_path());
    // Reads go on through the open store meanwhile.
    assert_eq!(store.estimated_count("app", "users").unwrap(), 500);
    // Refused while the store still holds the source: its WAL cannot be folded in.
    let early =
        DocStore::export_rekeyed(&path, &key(1), &dir.path().join("early"), &key(2)).unwrap();
    assert!(early.release_source().is_err());
    drop(store);
    rekeyed.release_source().unwrap();
    assert!(!dir.path().join("dc.db-wal").exists());
    std::fs::rename(&copy, &path).unwrap();

    assert!(matches!(
        DocStore::open(&path, &key(1)),
        Err(DocStoreError::WrongKey)
    ));
    let s = DocStore::open(&path, &key(2)).unwrap();
    assert_eq!(s.estimated_count("app", "users").unwrap(), 500);
    assert_eq!(
        s.get("app", "users", &json!(7)).unwrap(),
        Some(json!({"_id": 7, "name": "user 7"}))
    );
    assert_eq!(s.list_indexes("app", "users").unwrap().len(), 1);
    // Writable and durable under the new key.
    s.insert_one("app", "users", json!({"_id": "after"}))
        .unwrap();
    drop(s);
    let s = DocStore::open(&path, &key(2)).unwrap();
    assert!(s.get("app", "users", &json!("after")).unwrap().is_some());
    assert!(!all_plain(dir.path(), b"user 7"));
}

#[test]
fn a_failed_copy_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    let copy = dir.path().join("dc.db.rotating");
    drop(DocStore::create(&path, &key(1)).unwrap());
    // The wrong key for the source: nothing copied, no copy file left.
    let err = DocStore::export_rekeyed(&path, &key(9), &copy, &key(2)).unwrap_err();
    assert!(matches!(err, DocStoreError::WrongKey), "{err:?}");
    assert!(!copy.exists());
    // A leftover of an interrupted attempt is replaced, not refused.
    std::fs::write(&copy, b"half a copy").unwrap();
    let r = DocStore::export_rekeyed(&path, &key(1), &copy, &key(2)).unwrap();
    r.release_source().unwrap();
    assert!(DocStore::open(&copy, &key(2)).is_ok());
}

fn all_plain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        p.is_file()
            && std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
    })
}
