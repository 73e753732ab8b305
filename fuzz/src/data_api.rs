//! The Data API's filter, sort, projection and update parsers, through the document store's
//! public entry points on a temporary unencrypted store (the parsers are the same; encryption
//! would only slow each run down). Every input is refused with an error or answered
//! consistently.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use keyplane_docstore::{DocStore, FindOneAndOptions, Query, ReturnDocument, UpdateOptions};
use serde_json::{Value, json};

const KS: &str = "app";
const COLL: &str = "c";

/// The documents every run starts from: scalars of each type, nested objects, arrays of
/// scalars and of objects, dates, and missing fields.
fn seed_docs() -> Vec<Value> {
    vec![
        json!({"_id": 1, "name": "Ada", "age": 36, "tags": ["a", "b"], "addr": {"city": "London", "zip": "N1"}}),
        json!({"_id": 2, "name": "Bob", "age": 7.5, "tags": [], "items": [{"sku": "A1", "n": 2}, {"sku": "B2", "n": 1}]}),
        json!({"_id": "three", "name": null, "ok": true, "when": {"$date": 1_700_000_000_000_i64}}),
        json!({"_id": 4, "name": "Émile", "age": -1, "tags": ["b", "c", "c"], "nested": {"a": {"b": {"c": [1, 2, 3]}}}}),
        json!({"_id": 5, "age": 1e300, "ok": false, "items": [{"sku": "A1"}], "s": "x".repeat(64)}),
        json!({"_id": 6, "name": "", "tags": [[1, 2], {"k": "v"}], "age": 0}),
        json!({"_id": 7}),
    ]
}

fn store() -> &'static DocStore {
    static STORE: OnceLock<(tempfile::TempDir, DocStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = DocStore::create_plain(dir.path().join("fuzz.db")).expect("store");
            s.create_keyspace(KS).expect("keyspace");
            (dir, s)
        })
        .1
}

/// A fresh collection holding [`seed_docs`].
fn reset(s: &DocStore) {
    let _ = s.delete_collection(KS, COLL);
    s.create_collection(KS, COLL, None).expect("collection");
    s.insert_many(KS, COLL, seed_docs(), true)
        .expect("seed docs");
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| d["_id"].to_string()).collect()
}

fn all_docs(s: &DocStore, filter: &Value) -> Option<Vec<Value>> {
    let q = Query {
        filter: filter.clone(),
        page_size: Some(1000),
        ..Query::default()
    };
    s.find(KS, COLL, &q).ok().map(|p| p.docs)
}

/// `{"filter": F, "sort": S, "projection": P, "update": U}`, or any other JSON value taken as
/// the filter (find) or the update (update).
fn parts(data: &[u8]) -> Option<(Value, Option<Value>, Option<Value>, Option<Value>)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    match v {
        Value::Object(ref m)
            if m.keys()
                .any(|k| ["filter", "sort", "projection", "update"].contains(&k.as_str())) =>
        {
            Some((
                m.get("filter").cloned().unwrap_or_else(|| json!({})),
                m.get("sort").cloned(),
                m.get("projection").cloned(),
                m.get("update").cloned(),
            ))
        }
        other => Some((other.clone(), None, None, Some(other))),
    }
}

/// find with a filter, sort and projection: read-only, so the collection is seeded once.
/// Invariants: a sort reorders but never changes which documents match; count agrees with
/// find; projected results are objects.
pub fn find(data: &[u8]) {
    let Some((filter, sort, projection, _)) = parts(data) else {
        return;
    };
    let s = store();
    static SEEDED: OnceLock<()> = OnceLock::new();
    SEEDED.get_or_init(|| reset(s));

    let plain = all_docs(s, &filter);
    if let Some(docs) = &plain {
        assert!(docs.len() <= seed_docs().len());
        for d in docs {
            assert!(d.is_object() && d.get("_id").is_some(), "{d}");
        }
        if let Ok((n, _)) = s.count(KS, COLL, &filter, 1000) {
            assert_eq!(
                n as usize,
                docs.len(),
                "count and find disagree on {filter}"
            );
        }
    }
    let q = Query {
        filter: filter.clone(),
        sort: sort.clone(),
        projection: projection.clone(),
        page_size: Some(1000),
        ..Query::default()
    };
    if let Ok(page) = s.find(KS, COLL, &q) {
        for d in &page.docs {
            assert!(d.is_object(), "{d}");
        }
        if projection.is_none()
            && let Some(docs) = &plain
        {
            assert_eq!(
                ids(&page.docs),
                ids(docs),
                "sort {sort:?} changed the matches of {filter}"
            );
        }
    }
    let _ = s.find_one(KS, COLL, &filter, sort.as_ref(), projection.as_ref());
}

/// update_many / update_one / find_one_and_update on a freshly seeded collection.
/// Invariants: modified ≤ matched ≤ documents; without upsert the set of `_id`s never
/// changes; every document stays an object with its `_id`.
pub fn update(data: &[u8]) {
    let Some((filter, sort, projection, Some(update))) = parts(data) else {
        return;
    };
    let s = store();
    reset(s);
    let before = all_docs(s, &json!({})).expect("all documents");
    let n = before.len() as u64;
    if let Ok(r) = s.update_many(KS, COLL, &filter, &update, false) {
        assert!(r.modified <= r.matched && r.matched <= n, "{r:?}");
        assert!(r.upserted_id.is_none());
    }
    let opts = UpdateOptions {
        sort: sort.clone(),
        now_ms: Some(1_700_000_000_000),
        ..UpdateOptions::default()
    };
    if let Ok(r) = s.update_one(KS, COLL, &filter, &update, &opts) {
        assert!(r.modified <= r.matched && r.matched <= 1, "{r:?}");
    }
    let fo = FindOneAndOptions {
        sort,
        projection,
        return_document: ReturnDocument::After,
        now_ms: Some(1_700_000_000_000),
        ..FindOneAndOptions::default()
    };
    if let Ok(Some(d)) = s.find_one_and_update(KS, COLL, &filter, &update, &fo) {
        assert!(d.is_object(), "{d}");
    }
    let after = all_docs(s, &json!({})).expect("all documents");
    assert_eq!(
        ids(&after),
        ids(&before),
        "{update} changed the set of _ids"
    );
    for d in &after {
        assert!(d.is_object() && d.get("_id").is_some(), "{d}");
    }
}
