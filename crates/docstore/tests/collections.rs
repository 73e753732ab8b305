//! Keyspaces, collections, names and indexes.

mod common;

use common::*;
use keyplane_docstore::{DocStore, DocStoreError};
use serde_json::json;

#[test]
fn keyspaces_and_collections_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocStore::create(dir.path().join("x.db"), &key(1)).unwrap();
    assert!(s.list_keyspaces().unwrap().is_empty());
    assert!(s.create_keyspace("app").unwrap());
    assert!(!s.create_keyspace("app").unwrap());
    assert!(s.create_keyspace("other").unwrap());
    assert_eq!(s.list_keyspaces().unwrap(), vec!["app", "other"]);

    assert!(matches!(
        s.create_collection("missing", "c", None),
        Err(DocStoreError::KeyspaceNotFound(_))
    ));
    let opts = json!({"indexing": {"deny": ["blob"]}});
    assert!(s.create_collection("app", "users", Some(&opts)).unwrap());
    assert!(
        !s.create_collection("app", "users", Some(&opts)).unwrap(),
        "same options: idempotent"
    );
    assert!(matches!(
        s.create_collection("app", "users", None),
        Err(DocStoreError::CollectionExists(_))
    ));
    assert!(s.create_collection("app", "orders", None).unwrap());
    assert_eq!(
        s.list_collections("app").unwrap(),
        vec![
            ("orders".to_string(), json!({})),
            ("users".to_string(), opts.clone())
        ]
    );

    s.insert_one("app", "users", json!({"_id": 1})).unwrap();
    assert!(s.delete_collection("app", "users").unwrap());
    assert!(!s.delete_collection("app", "users").unwrap());
    assert!(matches!(
        s.get("app", "users", &json!(1)),
        Err(DocStoreError::CollectionNotFound(_))
    ));
    // Re-created collections start empty.
    s.create_collection("app", "users", None).unwrap();
    assert_eq!(s.get("app", "users", &json!(1)).unwrap(), None);

    // Same collection name in two keyspaces: separate data.
    s.create_collection("other", "users", None).unwrap();
    s.insert_one("other", "users", json!({"_id": 1, "ks": "other"}))
        .unwrap();
    assert_eq!(s.get("app", "users", &json!(1)).unwrap(), None);

    assert!(s.drop_keyspace("other").unwrap());
    assert!(!s.drop_keyspace("other").unwrap());
    assert_eq!(s.list_keyspaces().unwrap(), vec!["app"]);
    assert!(matches!(
        s.list_collections("other"),
        Err(DocStoreError::KeyspaceNotFound(_))
    ));
}

#[test]
fn name_rules() {
    let (_d, s) = store();
    for bad in [
        "",
        "1abc",
        "_x",
        "a-b",
        "a b",
        "a.b",
        "é",
        "x'; DROP TABLE meta; --",
        &"a".repeat(49),
    ] {
        let e = s.create_collection(KS, bad, None).unwrap_err();
        assert!(
            matches!(e, DocStoreError::InvalidName(ref m) if m.message.contains("letter")),
            "{bad}: {e}"
        );
        assert!(
            matches!(s.create_keyspace(bad), Err(DocStoreError::InvalidName(_))),
            "{bad}"
        );
    }
    for good in ["a", "A1_b", &"a".repeat(48)] {
        assert!(s.create_collection(KS, good, None).unwrap(), "{good}");
    }
}

#[test]
fn create_index_is_used_by_filters() {
    let docs = (0..2000)
        .map(|i| json!({"_id": i, "city": format!("c{}", i % 100), "n": i}))
        .collect();
    let (_d, s) = store_with(docs);
    let before = s.explain(KS, C, &json!({"city": "c7"})).unwrap();
    assert!(before.contains("SCAN"), "{before}");
    assert!(s.create_index(KS, C, "city").unwrap());
    assert!(!s.create_index(KS, C, "city").unwrap());
    assert_eq!(s.list_indexes(KS, C).unwrap(), vec!["city"]);
    let plan = s.explain(KS, C, &json!({"city": "c7"})).unwrap();
    eprintln!("{plan}");
    assert!(
        !plan.contains("SCAN d_"),
        "equality should use the index: {plan}"
    );
    assert_eq!(ids(&s, json!({"city": "c7"})).len(), 20);

    s.create_index(KS, C, "n").unwrap();
    let plan = s
        .explain(KS, C, &json!({"n": {"$gte": 10, "$lt": 20}}))
        .unwrap();
    assert!(
        !plan.contains("SCAN d_"),
        "range should use the index: {plan}"
    );
    assert_eq!(ids(&s, json!({"n": {"$gte": 10, "$lt": 20}})).len(), 10);

    // _id lookups always use the primary key.
    let plan = s.explain(KS, C, &json!({"_id": 5})).unwrap();
    assert!(!plan.contains("SCAN d_"), "{plan}");
    // Any field name can be indexed (it is quoted in the SQL); a bad escape cannot.
    assert!(s.create_index(KS, C, "odd'path").unwrap());
    assert!(s.create_index(KS, C, "bad&path").is_err());
}
