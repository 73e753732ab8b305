//! The first stores of a process, opened from many threads at the same instant: SQLite marks
//! itself initialized before SQLCipher's own start has finished, so without the store's start
//! gate a thread could reach `PRAGMA key` too early and fail with "sqlcipher not
//! initialized" (seen as failed `DocStore::create` calls in the test suite). Alone in its test
//! binary, so it really is the process's first use of SQLite.

mod common;

use std::sync::{Arc, Barrier};

use common::key;
use keyplane_docstore::DocStore;
use serde_json::json;

#[test]
fn the_first_stores_open_from_many_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = 32;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let path = dir.path().join(format!("{i}.db"));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let s = DocStore::create(&path, &key(i as u8))?;
                s.create_keyspace("ks")?;
                s.create_collection("ks", "c", None)?;
                s.insert_one("ks", "c", json!({"_id": i}))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap().unwrap(), json!(i), "store {i}");
    }
}
