//! Replication between regions: a write recorded in one store (the primary) and applied by
//! `_id` to another, on encrypted files each with its own key; recovery after a "crash"
//! between the two commits; idempotence.

mod common;

use common::*;
use keyplane_docstore::{DocStore, FindOneAndOptions, Query, UpdateOptions};
use serde_json::{Value, json};

/// Two regions of one database: same keyspace and collection, different keys.
fn two_regions() -> (tempfile::TempDir, DocStore, DocStore) {
    let dir = tempfile::tempdir().unwrap();
    let a = DocStore::create(dir.path().join("a.db"), &key(1)).unwrap();
    let b = DocStore::create(dir.path().join("b.db"), &key(2)).unwrap();
    for s in [&a, &b] {
        s.create_keyspace(KS).unwrap();
        s.create_collection(KS, C, None).unwrap();
    }
    (dir, a, b)
}

/// Every document of every collection, in `_id` order, with the catalog.
fn snapshot(s: &DocStore) -> Value {
    let mut out = serde_json::Map::new();
    for ks in s.list_keyspaces().unwrap() {
        for (c, options) in s.list_collections(&ks).unwrap() {
            let mut docs = vec![];
            let mut q = Query {
                filter: json!({}),
                page_size: Some(1000),
                ..Default::default()
            };
            loop {
                let page = s.find(&ks, &c, &q).unwrap();
                docs.extend(page.docs);
                match page.next_page_state {
                    Some(p) => q.page_state = Some(p),
                    None => break,
                }
            }
            docs.sort_by_key(|d| d["_id"].to_string());
            out.insert(
                format!("{ks}.{c}"),
                json!({"options": options, "indexes": s.list_indexes(&ks, &c).unwrap(), "docs": docs}),
            );
        }
    }
    Value::Object(out)
}

/// One ordered write: recorded in `primary`, applied to `replica`.
fn write<T>(
    seq: u64,
    primary: &DocStore,
    replica: &DocStore,
    f: impl FnOnce(&DocStore) -> keyplane_docstore::Result<T>,
) -> keyplane_docstore::Result<T> {
    let r = primary.record(seq, f).unwrap();
    if r.changed {
        assert!(replica.apply_from(primary, seq).unwrap());
    }
    r.result
}

#[test]
fn every_kind_of_write_is_copied_by_id() {
    let (_d, a, b) = two_regions();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    let docs: Vec<Value> = (0..10)
        .map(|i| json!({"_id": format!("d{i}"), "rank": i % 3, "n": i}))
        .collect();
    write(next(), &a, &b, |s| s.insert_many(KS, C, docs.clone(), true)).unwrap();
    write(next(), &a, &b, |s| {
        s.update_many_at(
            KS,
            C,
            &json!({"rank": 1}),
            &json!({"$inc": {"n": 100}}),
            false,
            7,
        )
    })
    .unwrap();
    // A sorted pick with ties: the primary chooses, the replica copies that document.
    let fo = FindOneAndOptions {
        sort: Some(json!({"rank": 1})),
        ..Default::default()
    };
    let picked = write(next(), &a, &b, |s| {
        s.find_one_and_update(KS, C, &json!({}), &json!({"$set": {"picked": true}}), &fo)
    })
    .unwrap();
    assert!(picked.is_some());
    write(next(), &a, &b, |s| {
        s.update_one(
            KS,
            C,
            &json!({"_id": "new"}),
            &json!({"$set": {"up": 1}}),
            &UpdateOptions {
                upsert: true,
                ..Default::default()
            },
        )
    })
    .unwrap();
    write(next(), &a, &b, |s| {
        s.find_one_and_delete(KS, C, &json!({}), Some(&json!({"n": -1})), None)
    })
    .unwrap();
    write(next(), &a, &b, |s| {
        s.delete_many(KS, C, &json!({"rank": 2}))
    })
    .unwrap();
    // The catalog: a keyspace, a collection with options, an index; then a drop.
    write(next(), &a, &b, |s| s.create_keyspace("other")).unwrap();
    write(next(), &a, &b, |s| {
        s.create_collection("other", "vec", Some(&json!({"indexing": {"deny": ["x"]}})))
    })
    .unwrap();
    write(next(), &a, &b, |s| s.create_index(KS, C, "rank")).unwrap();
    write(next(), &a, &b, |s| {
        s.insert_one("other", "vec", json!({"_id": 1, "x": [1, 2]}))
    })
    .unwrap();
    write(next(), &a, &b, |s| s.create_collection(KS, "gone", None)).unwrap();
    write(next(), &a, &b, |s| s.delete_collection(KS, "gone")).unwrap();
    assert_eq!(snapshot(&a), snapshot(&b));
    let snap = snapshot(&a);
    assert_eq!(snap.as_object().unwrap().len(), 2, "{snap}");
    assert_eq!(snap[format!("{KS}.{C}")]["indexes"], json!(["rank"]));
    assert_eq!(a.replication_seq().unwrap(), 12);
    assert_eq!(b.replication_seq().unwrap(), 12);
}

#[test]
fn a_write_that_changes_nothing_records_nothing_and_errors_are_the_writes_own() {
    let (_d, a, b) = two_regions();
    let r = a
        .record(1, |s| {
            s.update_many_at(
                KS,
                C,
                &json!({"x": 1}),
                &json!({"$set": {"y": 1}}),
                false,
                0,
            )
        })
        .unwrap();
    assert!(!r.changed);
    assert_eq!(r.result.unwrap().matched, 0);
    write(1, &a, &b, |s| s.insert_one(KS, C, json!({"_id": "x"}))).unwrap();
    let r = a
        .record(2, |s| s.insert_one(KS, C, json!({"_id": "x"})))
        .unwrap();
    assert!(!r.changed, "a refused insert changes nothing");
    assert!(r.result.is_err());
    // An insertMany with one failure still inserted the others: those are copied.
    let r = a
        .record(2, |s| {
            s.insert_many(KS, C, vec![json!({"_id": "x"}), json!({"_id": "y"})], false)
        })
        .unwrap();
    assert!(r.changed);
    b.apply_from(&a, 2).unwrap();
    assert_eq!(snapshot(&a), snapshot(&b));
    // Writes outside `record` are not recorded (replica applies, copies).
    b.insert_one(KS, C, json!({"_id": "local"})).unwrap();
    assert!(!b.holds_record(3).unwrap());
}

#[test]
fn a_crash_between_the_regions_is_completed_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.db"), dir.path().join("b.db"));
    {
        let a = DocStore::create(&pa, &key(1)).unwrap();
        let b = DocStore::create(&pb, &key(2)).unwrap();
        for s in [&a, &b] {
            s.create_keyspace(KS).unwrap();
            s.create_collection(KS, C, None).unwrap();
        }
        for (seq, start) in (1..).zip((0..300).step_by(100)) {
            write(seq, &a, &b, |s| {
                s.insert_many(
                    KS,
                    C,
                    (start..start + 100)
                        .map(|i| json!({"_id": i, "v": 0}))
                        .collect(),
                    false,
                )
            })
            .unwrap();
        }
        // Write 4 commits in the primary; the process "dies" before the replica's commit.
        let r = a
            .record(4, |s| {
                s.update_many_at(KS, C, &json!({}), &json!({"$inc": {"v": 1}}), false, 0)
            })
            .unwrap();
        assert!(r.changed);
        assert_eq!(r.result.unwrap().modified, 300);
        a.record(4, |s| s.delete_many(KS, C, &json!({"_id": {"$lt": 5}})))
            .unwrap();
    }
    let a = DocStore::open(&pa, &key(1)).unwrap();
    let b = DocStore::open(&pb, &key(2)).unwrap();
    assert_eq!(
        (a.replication_seq().unwrap(), b.replication_seq().unwrap()),
        (4, 3)
    );
    assert!(a.holds_record(4).unwrap());
    assert!(!b.holds_record(4).unwrap());
    assert_ne!(snapshot(&a), snapshot(&b));
    // More than one chunk of documents (300 > the apply chunk) and deletions.
    assert!(b.apply_from(&a, 4).unwrap());
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(b.replication_seq().unwrap(), 4);
    // Again: nothing to do.
    assert!(!b.apply_from(&a, 4).unwrap());
    // The next write may have the other region as its primary; it ends a's old record.
    write(5, &b, &a, |s| s.insert_one(KS, C, json!({"_id": "z"}))).unwrap();
    assert!(!a.holds_record(4).unwrap());
    assert!(b.holds_record(5).unwrap());
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[test]
fn a_new_region_takes_its_sources_write_number() {
    let (dir, a, b) = two_regions();
    write(1, &a, &b, |s| s.insert_one(KS, C, json!({"_id": 1}))).unwrap();
    let c = DocStore::create(dir.path().join("c.db"), &key(3)).unwrap();
    c.copy_catalog_from(&a).unwrap();
    c.insert_one(KS, C, json!({"_id": 1})).unwrap();
    c.set_replication_seq(a.replication_seq().unwrap()).unwrap();
    assert_eq!(c.replication_seq().unwrap(), 1);
    write(2, &a, &c, |s| s.insert_one(KS, C, json!({"_id": 2}))).unwrap();
    b.apply_from(&a, 2).unwrap();
    assert_eq!(snapshot(&a), snapshot(&c));
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[test]
fn a_replica_never_gets_a_record_that_does_not_exist() {
    let (_d, a, b) = two_regions();
    let e = b.apply_from(&a, 1).unwrap_err();
    assert!(e.to_string().contains("no record"), "{e}");
}

#[test]
fn a_region_far_behind_is_resynced_whole() {
    let (dir, a, b) = two_regions();
    write(1, &a, &b, |s| {
        s.insert_one(KS, C, json!({"_id": 1, "v": 1}))
    })
    .unwrap();
    // b misses writes 2 and 3 and holds a document a never had.
    for seq in 2..=3 {
        a.record(seq, |s| s.insert_one(KS, C, json!({"_id": seq, "v": seq})))
            .unwrap();
    }
    a.record(4, |s| s.create_keyspace("more")).unwrap();
    b.insert_one(KS, C, json!({"_id": "stray"})).unwrap();
    assert_eq!(b.resync_from(&a).unwrap(), 3);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(b.replication_seq().unwrap(), 4);
    // A new, empty region the same way.
    let c = DocStore::create(dir.path().join("c.db"), &key(3)).unwrap();
    c.resync_from(&a).unwrap();
    assert_eq!(snapshot(&a), snapshot(&c));
    assert_eq!(c.replication_seq().unwrap(), 4);
}
