#![allow(dead_code)]

use keyplane_docstore::{DataKey, DocStore};
use serde_json::Value;

pub const KS: &str = "ks";
pub const C: &str = "c";

pub fn key(seed: u8) -> DataKey {
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(seed))
        .collect();
    DataKey::from_slice(&bytes).unwrap()
}

/// A fresh encrypted store with keyspace `ks` and collection `c`.
pub fn store() -> (tempfile::TempDir, DocStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = DocStore::create(dir.path().join("dc.db"), &key(1)).unwrap();
    s.create_keyspace(KS).unwrap();
    s.create_collection(KS, C, None).unwrap();
    (dir, s)
}

pub fn store_with(docs: Vec<Value>) -> (tempfile::TempDir, DocStore) {
    let (d, s) = store();
    for chunk in docs.chunks(100) {
        for r in s.insert_many(KS, C, chunk.to_vec(), true).unwrap() {
            r.unwrap();
        }
    }
    (d, s)
}

/// `_id`s of all matches of a filter, in insertion order.
pub fn ids(s: &DocStore, filter: Value) -> Vec<Value> {
    let q = keyplane_docstore::Query {
        filter,
        page_size: Some(1000),
        ..Default::default()
    };
    s.find(KS, C, &q)
        .unwrap()
        .docs
        .into_iter()
        .map(|d| d["_id"].clone())
        .collect()
}

/// The original Data API code of a refusal (panics on keyplane's own failures).
pub fn code<T: std::fmt::Debug>(
    r: keyplane_docstore::Result<T>,
) -> keyplane_docstore::DocStoreCode {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("no Data API code for {e:?}")),
    }
}

/// `find` with just a filter (and a big page).
pub fn find(s: &DocStore, filter: Value) -> keyplane_docstore::Result<keyplane_docstore::Page> {
    s.find(
        KS,
        C,
        &keyplane_docstore::Query {
            filter,
            page_size: Some(1000),
            ..Default::default()
        },
    )
}

/// A fresh store whose collection `c` was created with `options`.
pub fn store_opts(options: Value) -> (tempfile::TempDir, DocStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = DocStore::create(dir.path().join("dc.db"), &key(1)).unwrap();
    s.create_keyspace(KS).unwrap();
    s.create_collection(KS, C, Some(&options)).unwrap();
    (dir, s)
}
