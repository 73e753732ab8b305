//! Inserts, updates (every operator), upserts, replace, find-one-and-*, deletes.

mod common;

use common::*;
use keyplane_docstore::{
    DocStoreError, FindOneAndOptions, ReturnDocument, UpdateOptions, UpdateResult,
};
use serde_json::{Value, json};

fn upd(s: &keyplane_docstore::DocStore, id: Value, update: Value) -> Value {
    let r = s
        .update_one(
            KS,
            C,
            &json!({"_id": id.clone()}),
            &update,
            &UpdateOptions::default(),
        )
        .unwrap();
    assert_eq!(r.matched, 1, "{update}");
    s.get(KS, C, &id).unwrap().unwrap()
}

#[test]
fn insert_one_generates_uuid_ids_and_refuses_duplicates() {
    let (_d, s) = store();
    let id = s.insert_one(KS, C, json!({"a": 1})).unwrap();
    let text = id.as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(text).unwrap().get_version_num(), 4);
    assert_eq!(s.get(KS, C, &id).unwrap().unwrap()["a"], json!(1));
    s.insert_one(KS, C, json!({"_id": "x"})).unwrap();
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": "x"})),
        Err(DocStoreError::DuplicateId(_))
    ));
    // 1 and 1.0 are the same _id.
    s.insert_one(KS, C, json!({"_id": 1})).unwrap();
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 1.0})),
        Err(DocStoreError::DuplicateId(_))
    ));
    assert!(matches!(
        s.insert_one(KS, C, json!([1])),
        Err(DocStoreError::InvalidDocument(_))
    ));
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": [1]})),
        Err(DocStoreError::InvalidDocument(_))
    ));
    assert!(matches!(
        s.insert_one(KS, C, json!({"$set": 1})),
        Err(DocStoreError::InvalidDocument(_))
    ));
    assert!(matches!(
        s.insert_one(KS, "nope", json!({})),
        Err(DocStoreError::CollectionNotFound(_))
    ));
}

#[test]
fn insert_many_ordered_and_unordered() {
    let (_d, s) = store();
    s.insert_one(KS, C, json!({"_id": 2})).unwrap();
    let docs = vec![
        json!({"_id": 1}),
        json!({"_id": 2}),
        json!({"_id": 3}),
        json!({"_id": 3}),
        json!({"_id": 4}),
    ];
    let r = s.insert_many(KS, C, docs.clone(), true).unwrap();
    assert_eq!(r.len(), 2, "ordered stops at the first error");
    assert_eq!(r[0].as_ref().unwrap(), &json!(1));
    assert!(matches!(r[1], Err(DocStoreError::DuplicateId(_))));
    assert!(s.get(KS, C, &json!(3)).unwrap().is_none());

    let docs = vec![
        json!({"_id": 10}),
        json!({"_id": 2}),
        json!({"_id": 11}),
        json!({"_id": 11}),
        json!("bad"),
        json!({"_id": 12}),
    ];
    let r = s.insert_many(KS, C, docs, false).unwrap();
    assert_eq!(r.len(), 6);
    assert!(r[0].is_ok() && r[2].is_ok() && r[5].is_ok());
    assert!(matches!(r[1], Err(DocStoreError::DuplicateId(_))));
    assert!(matches!(r[3], Err(DocStoreError::DuplicateId(_))));
    assert!(matches!(r[4], Err(DocStoreError::InvalidDocument(_))));
    assert_eq!(
        s.count(KS, C, &json!({}), 100).unwrap().0,
        5,
        "2 before + 10, 11, 12"
    );

    let many: Vec<Value> = (0..101).map(|i| json!({"_id": 1000 + i})).collect();
    assert!(matches!(
        s.insert_many(KS, C, many, false),
        Err(DocStoreError::TooManyDocuments {
            count: 101,
            limit: 100
        })
    ));
    let hundred: Vec<Value> = (0..100).map(|i| json!({"_id": 1000 + i})).collect();
    assert!(
        s.insert_many(KS, C, hundred, true)
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
}

#[test]
fn every_update_operator() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "a": 1, "arr": [1, 2], "o": {"x": 1}, "s": "str"}),
    ]);
    let id = json!(1);
    assert_eq!(
        upd(
            &s,
            id.clone(),
            json!({"$set": {"a": 5, "o.y.z": true, "new": [1]}})
        )["o"],
        json!({"x": 1, "y": {"z": true}})
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$unset": {"new": ""}})).get("new"),
        None
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$inc": {"a": 2, "cnt": 1}}))["a"],
        json!(7)
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$inc": {"a": 0.5}}))["a"],
        json!(7.5)
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$push": {"arr": 3}}))["arr"],
        json!([1, 2, 3])
    );
    assert_eq!(
        upd(
            &s,
            id.clone(),
            json!({"$push": {"arr": {"$each": [0, 0], "$position": 0}}})
        )["arr"],
        json!([0, 0, 1, 2, 3])
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$pop": {"arr": -1}}))["arr"],
        json!([0, 1, 2, 3])
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$pop": {"arr": 1}}))["arr"],
        json!([0, 1, 2])
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$addToSet": {"arr": 2}}))["arr"],
        json!([0, 1, 2])
    );
    assert_eq!(
        upd(
            &s,
            id.clone(),
            json!({"$addToSet": {"arr": {"$each": [2, 9, 9]}}})
        )["arr"],
        json!([0, 1, 2, 9])
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$push": {"fresh": "x"}}))["fresh"],
        json!(["x"])
    );
    let d = upd(&s, id.clone(), json!({"$rename": {"s": "t.u"}}));
    assert_eq!((d.get("s"), &d["t"]), (None, &json!({"u": "str"})));
    assert_eq!(
        upd(&s, id.clone(), json!({"$min": {"a": 3, "m": 10}}))["a"],
        json!(3)
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$min": {"a": 4}}))["a"],
        json!(3)
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$max": {"a": 8}}))["a"],
        json!(8)
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$max": {"a": 1}}))["a"],
        json!(8)
    );
    let d = upd(
        &s,
        id.clone(),
        json!({"$currentDate": {"when": true, "w2": {"$type": "date"}}}),
    );
    assert!(d["when"]["$date"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(d["w2"]["$date"].is_i64());
    assert_eq!(
        upd(&s, id.clone(), json!({"$setOnInsert": {"only": 1}})).get("only"),
        None
    );
    assert_eq!(
        upd(&s, id.clone(), json!({"$set": {"arr.1": "one"}}))["arr"],
        json!([0, "one", 2, 9])
    );

    let err = |u: Value| {
        s.update_one(KS, C, &json!({"_id": 1}), &u, &UpdateOptions::default())
            .unwrap_err()
    };
    // An unknown update operator is an update error in the original
    // (UNSUPPORTED_UPDATE_OPERATION, UpdateClauseDeserializer), not a filter one.
    assert!(
        matches!(err(json!({"$bogus": {"a": 1}})), DocStoreError::InvalidUpdate(ref r) if r.message.contains("$bogus"))
    );
    assert!(matches!(
        err(json!({"a": 1})),
        DocStoreError::InvalidUpdate(_)
    ));
    assert!(matches!(err(json!({})), DocStoreError::InvalidUpdate(_)));
    assert!(matches!(
        err(json!({"$set": {"_id": 2}})),
        DocStoreError::InvalidUpdate(_)
    ));
    assert!(matches!(
        err(json!({"$inc": {"a": "x"}})),
        DocStoreError::InvalidUpdate(_)
    ));
    assert!(matches!(
        err(json!({"$inc": {"s2": 1}, "$set": {"s2": 1}})),
        DocStoreError::InvalidUpdate(_)
    ));
    assert!(
        matches!(
            err(json!({"$inc": {"t": 1}})),
            DocStoreError::InvalidUpdate(_)
        ),
        "t is an object"
    );
    assert!(
        matches!(
            err(json!({"$push": {"a": 1}})),
            DocStoreError::InvalidUpdate(_)
        ),
        "a is a number"
    );
    assert!(matches!(
        err(json!({"$pop": {"arr": 2}})),
        DocStoreError::InvalidUpdate(_)
    ));
    // A failed update changed nothing.
    assert_eq!(s.get(KS, C, &json!(1)).unwrap().unwrap()["a"], json!(8));
}

#[test]
fn update_results_upserts_and_update_many() {
    let (_d, s) = store_with(
        (0..600)
            .map(|i| json!({"_id": i, "g": i % 3, "n": 0}))
            .collect(),
    );
    let r = s
        .update_many(KS, C, &json!({"g": 1}), &json!({"$inc": {"n": 1}}), false)
        .unwrap();
    assert_eq!(
        r,
        UpdateResult {
            matched: 200,
            modified: 200,
            upserted_id: None
        }
    );
    assert_eq!(s.count(KS, C, &json!({"n": 1}), 1000).unwrap().0, 200);
    // Same value: matched but not modified.
    let r = s
        .update_many(KS, C, &json!({"g": 2}), &json!({"$set": {"n": 0}}), false)
        .unwrap();
    assert_eq!((r.matched, r.modified), (200, 0));

    let r = s
        .update_one(
            KS,
            C,
            &json!({"name": "new", "tier": {"$eq": 2}, "z": {"$gt": 1}}),
            &json!({"$set": {"v": 1}, "$setOnInsert": {"created": true}}),
            &UpdateOptions {
                upsert: true,
                sort: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.matched, 0);
    let id = r.upserted_id.unwrap();
    let d = s.get(KS, C, &id).unwrap().unwrap();
    assert_eq!(
        (&d["name"], &d["tier"], &d["v"], &d["created"], d.get("z")),
        (&json!("new"), &json!(2), &json!(1), &json!(true), None)
    );
    let r = s
        .update_one(
            KS,
            C,
            &json!({"_id": "chosen"}),
            &json!({"$set": {"v": 1}}),
            &UpdateOptions {
                upsert: true,
                sort: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.upserted_id, Some(json!("chosen")));
    let r = s
        .update_many(
            KS,
            C,
            &json!({"kind": "k"}),
            &json!({"$set": {"v": 1}}),
            true,
        )
        .unwrap();
    assert!(r.upserted_id.is_some());
    assert_eq!(
        s.count(KS, C, &json!({"kind": "k", "v": 1}), 10).unwrap().0,
        1
    );

    // update_one with a sort picks the first in that order.
    s.update_one(
        KS,
        C,
        &json!({"g": 0}),
        &json!({"$set": {"top": true}}),
        &UpdateOptions {
            upsert: false,
            sort: Some(json!({"_id": -1})),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ids(&s, json!({"top": true})), vec![json!(597)]);
    let r = s
        .update_one(
            KS,
            C,
            &json!({"g": 99}),
            &json!({"$set": {"x": 1}}),
            &UpdateOptions::default(),
        )
        .unwrap();
    assert_eq!(r, UpdateResult::default());
}

#[test]
fn replace_and_find_one_and() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "a": 1, "k": "x"}),
        json!({"_id": 2, "a": 2, "k": "x"}),
    ]);
    let r = s
        .replace_one(
            KS,
            C,
            &json!({"_id": 1}),
            json!({"b": 2}),
            &UpdateOptions::default(),
        )
        .unwrap();
    assert_eq!((r.matched, r.modified), (1, 1));
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap(),
        json!({"_id": 1, "b": 2})
    );
    assert!(matches!(
        s.replace_one(
            KS,
            C,
            &json!({"_id": 1}),
            json!({"_id": 9}),
            &UpdateOptions::default()
        ),
        Err(DocStoreError::InvalidUpdate(_))
    ));
    let r = s
        .replace_one(
            KS,
            C,
            &json!({"_id": 7}),
            json!({"c": 3}),
            &UpdateOptions {
                upsert: true,
                sort: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.upserted_id, Some(json!(7)));

    let before = s
        .find_one_and_update(
            KS,
            C,
            &json!({"k": "x"}),
            &json!({"$inc": {"a": 10}}),
            &FindOneAndOptions {
                sort: Some(json!({"a": -1})),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(before, json!({"_id": 2, "a": 2, "k": "x"}));
    let after = s
        .find_one_and_update(
            KS,
            C,
            &json!({"_id": 2}),
            &json!({"$inc": {"a": 1}}),
            &FindOneAndOptions {
                return_document: ReturnDocument::After,
                projection: Some(json!({"a": 1})),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(after, json!({"_id": 2, "a": 13}));
    let none = s
        .find_one_and_update(
            KS,
            C,
            &json!({"_id": 50}),
            &json!({"$set": {"a": 1}}),
            &FindOneAndOptions {
                upsert: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(none, None, "returnDocument before of an upsert is nothing");
    let ins = s
        .find_one_and_update(
            KS,
            C,
            &json!({"_id": 51}),
            &json!({"$set": {"a": 1}}),
            &FindOneAndOptions {
                upsert: true,
                return_document: ReturnDocument::After,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(ins, Some(json!({"_id": 51, "a": 1})));

    let rep = s
        .find_one_and_replace(
            KS,
            C,
            &json!({"_id": 2}),
            json!({"z": 1}),
            &FindOneAndOptions {
                return_document: ReturnDocument::After,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rep, Some(json!({"_id": 2, "z": 1})));
    let del = s
        .find_one_and_delete(
            KS,
            C,
            &json!({}),
            Some(&json!({"_id": -1})),
            Some(&json!({"_id": 1})),
        )
        .unwrap();
    assert_eq!(del, Some(json!({"_id": 51})));
    assert!(s.get(KS, C, &json!(51)).unwrap().is_none());
}

#[test]
fn deletes() {
    let (_d, s) = store_with((0..30).map(|i| json!({"_id": i, "g": i % 3})).collect());
    assert_eq!(s.delete_one(KS, C, &json!({"g": 1})).unwrap(), 1);
    assert!(s.get(KS, C, &json!(1)).unwrap().is_none());
    assert_eq!(s.delete_one(KS, C, &json!({"g": 7})).unwrap(), 0);
    assert_eq!(s.delete_many(KS, C, &json!({"g": 1})).unwrap(), 9);
    assert_eq!(
        s.delete_many(KS, C, &json!({"_id": {"$in": [0, 3, 99]}}))
            .unwrap(),
        2
    );
    assert_eq!(s.delete_many(KS, C, &json!({})).unwrap(), 18);
    assert_eq!(s.estimated_count(KS, C).unwrap(), 0);
}

/// find-one-and-modify says whether the document actually changed, and `$currentDate` takes
/// the caller's time when given one.
#[test]
fn modified_counts_and_the_callers_clock() {
    let (_d, s) = store_with(vec![json!({"_id": 1, "a": 1}), json!({"_id": 2, "a": 1})]);
    let fo = FindOneAndOptions::default();
    let (doc, r) = s
        .find_one_and_update_with_result(KS, C, &json!({"_id": 1}), &json!({"$set": {"a": 1}}), &fo)
        .unwrap();
    assert_eq!(doc, Some(json!({"_id": 1, "a": 1})));
    assert_eq!(
        r,
        UpdateResult {
            matched: 1,
            modified: 0,
            upserted_id: None
        }
    );
    let (_, r) = s
        .find_one_and_update_with_result(KS, C, &json!({"_id": 1}), &json!({"$inc": {"a": 1}}), &fo)
        .unwrap();
    assert_eq!((r.matched, r.modified), (1, 1));
    let (doc, r) = s
        .find_one_and_update_with_result(KS, C, &json!({"_id": 9}), &json!({"$inc": {"a": 1}}), &fo)
        .unwrap();
    assert_eq!((doc, r), (None, UpdateResult::default()));
    let up = FindOneAndOptions {
        upsert: true,
        ..Default::default()
    };
    let (_, r) = s
        .find_one_and_update_with_result(KS, C, &json!({"_id": 9}), &json!({"$set": {"a": 0}}), &up)
        .unwrap();
    assert_eq!(
        r,
        UpdateResult {
            matched: 0,
            modified: 0,
            upserted_id: Some(json!(9))
        }
    );
    let (_, r) = s
        .find_one_and_replace_with_result(KS, C, &json!({"_id": 2}), json!({"a": 1}), &fo)
        .unwrap();
    assert_eq!(
        (r.matched, r.modified),
        (1, 0),
        "an identical replacement changes nothing"
    );
    let (_, r) = s
        .find_one_and_replace_with_result(KS, C, &json!({"_id": 2}), json!({"b": 1}), &fo)
        .unwrap();
    assert_eq!((r.matched, r.modified), (1, 1));

    // The caller's time, everywhere $currentDate is written.
    let r = s
        .update_many_at(
            KS,
            C,
            &json!({}),
            &json!({"$currentDate": {"at": true}}),
            false,
            1_234,
        )
        .unwrap();
    assert_eq!(r.matched, 3);
    for id in [1, 2, 9] {
        assert_eq!(
            s.get(KS, C, &json!(id)).unwrap().unwrap()["at"],
            json!({"$date": 1_234})
        );
    }
    let opts = UpdateOptions {
        now_ms: Some(5),
        ..Default::default()
    };
    s.update_one(
        KS,
        C,
        &json!({"_id": 1}),
        &json!({"$currentDate": {"at": true}}),
        &opts,
    )
    .unwrap();
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap()["at"],
        json!({"$date": 5})
    );
    let fo = FindOneAndOptions {
        now_ms: Some(7),
        return_document: ReturnDocument::After,
        ..Default::default()
    };
    let (doc, _) = s
        .find_one_and_update_with_result(
            KS,
            C,
            &json!({"_id": 2}),
            &json!({"$currentDate": {"at": true}}),
            &fo,
        )
        .unwrap();
    assert_eq!(doc.unwrap()["at"], json!({"$date": 7}));
    // Without one, the store's clock.
    s.update_one(
        KS,
        C,
        &json!({"_id": 9}),
        &json!({"$currentDate": {"at": true}}),
        &UpdateOptions::default(),
    )
    .unwrap();
    assert!(
        s.get(KS, C, &json!(9)).unwrap().unwrap()["at"]["$date"]
            .as_i64()
            .unwrap()
            > 1_600_000_000_000
    );

    // An upsert takes the caller's _id when nothing else names one; a match keeps its own.
    let fo = FindOneAndOptions {
        upsert: true,
        upsert_id: Some(json!("chosen")),
        return_document: ReturnDocument::After,
        ..Default::default()
    };
    let (doc, r) = s
        .find_one_and_replace_with_result(KS, C, &json!({"b": 42}), json!({"b": 43}), &fo)
        .unwrap();
    assert_eq!(doc, Some(json!({"_id": "chosen", "b": 43})));
    assert_eq!(r.upserted_id, Some(json!("chosen")));
    let (doc, r) = s
        .find_one_and_replace_with_result(KS, C, &json!({"b": 43}), json!({"b": 44}), &fo)
        .unwrap();
    assert_eq!(doc, Some(json!({"_id": "chosen", "b": 44})));
    assert_eq!(
        r,
        UpdateResult {
            matched: 1,
            modified: 1,
            upserted_id: None
        }
    );
    let (doc, _) = s
        .find_one_and_update_with_result(
            KS,
            C,
            &json!({"_id": "given"}),
            &json!({"$set": {"b": 1}}),
            &fo,
        )
        .unwrap();
    assert_eq!(doc.unwrap()["_id"], "given", "the filter's _id comes first");
}
