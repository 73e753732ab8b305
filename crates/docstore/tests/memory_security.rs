//! Memory security is process-wide and irreversible, so it gets its own test binary.

mod common;

use common::*;
use keyplane_docstore::{DocStore, enable_memory_security, memory_security_enabled};
use serde_json::json;

#[test]
fn memory_security_can_be_enabled_and_stores_still_work() {
    assert!(!memory_security_enabled(), "off unless a deployment asks");
    enable_memory_security().unwrap();
    assert!(memory_security_enabled());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    let s = DocStore::create(&path, &key(4)).unwrap();
    s.create_keyspace(KS).unwrap();
    s.create_collection(KS, C, None).unwrap();
    s.insert_one(KS, C, json!({"_id": 1})).unwrap();
    drop(s);
    assert!(
        DocStore::open(&path, &key(4))
            .unwrap()
            .get(KS, C, &json!(1))
            .unwrap()
            .is_some()
    );
}
