//! Sort ties and ids as the original (issue 14, Data API 7): ties broken by `_id` ascending;
//! collections with a `defaultId` type generate those ids and return them typed; `_id` first
//! in stored and returned documents, after a replace too.

mod common;

use common::*;
use keyplane_docstore::{DefaultIdType, FindOneAndOptions, Query, ReturnDocument, UpdateOptions};
use serde_json::{Value, json};

fn sorted_ids(s: &keyplane_docstore::DocStore, sort: Value, page: u64) -> Vec<Value> {
    let mut q = Query {
        sort: Some(sort),
        page_size: Some(page),
        ..Default::default()
    };
    let mut out = vec![];
    loop {
        let p = s.find(KS, C, &q).unwrap();
        out.extend(p.docs.into_iter().map(|d| d["_id"].clone()));
        match p.next_page_state {
            Some(st) => q.page_state = Some(st),
            None => return out,
        }
    }
}

#[test]
fn sort_ties_are_broken_by_id_ascending() {
    // Inserted out of _id order; three values of v.
    let (_d, s) = store_with(
        [5, 3, 9, 1, 8, 2, 7, 4, 6, 0]
            .iter()
            .map(|i| json!({"_id": i, "v": i % 3}))
            .collect(),
    );
    let want: Vec<Value> = [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]
        .iter()
        .map(|i| json!(i))
        .collect();
    assert_eq!(sorted_ids(&s, json!({"v": 1}), 20), want);
    assert_eq!(sorted_ids(&s, json!({"v": 1}), 3), want, "across pages");
    // Descending by value, ties still ascending by _id.
    let want: Vec<Value> = [2, 5, 8, 1, 4, 7, 0, 3, 6, 9]
        .iter()
        .map(|i| json!(i))
        .collect();
    assert_eq!(sorted_ids(&s, json!({"v": -1}), 4), want);
    // A sort on a missing field ties everything: _id order.
    let all: Vec<Value> = (0..10).map(|i| json!(i)).collect();
    assert_eq!(sorted_ids(&s, json!({"missing": 1}), 20), all);
    // The document a sorted update picks is the first of that order.
    s.update_one(
        KS,
        C,
        &json!({}),
        &json!({"$set": {"picked": true}}),
        &UpdateOptions {
            sort: Some(json!({"v": -1})),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ids(&s, json!({"picked": true})), vec![json!(2)]);
}

fn version(id: &Value) -> usize {
    uuid::Uuid::parse_str(id["$uuid"].as_str().unwrap())
        .unwrap()
        .get_version_num()
}

#[test]
fn default_id_types_generate_typed_ids() {
    for (ty, check) in [
        ("uuid", Some(4)),
        ("uuidv6", Some(6)),
        ("uuidv7", Some(7)),
        ("objectId", None),
    ] {
        let (_d, s) = store_opts(json!({"defaultId": {"type": ty}}));
        assert_eq!(
            s.collection_rules(KS, C).unwrap().default_id,
            DefaultIdType::from_name(ty).unwrap()
        );
        let id = s.insert_one(KS, C, json!({"a": 1})).unwrap();
        let many = s
            .insert_many(KS, C, vec![json!({"a": 2}), json!({"a": 3})], true)
            .unwrap();
        let upserted = s
            .update_one(
                KS,
                C,
                &json!({"a": 4}),
                &json!({"$set": {"b": 1}}),
                &UpdateOptions {
                    upsert: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .upserted_id
            .unwrap();
        let chosen = s.new_document_id(KS, C).unwrap();
        for id in [
            &id,
            many[0].as_ref().unwrap(),
            many[1].as_ref().unwrap(),
            &upserted,
            &chosen,
        ] {
            match check {
                Some(v) => assert_eq!(version(id), v, "{ty}: {id}"),
                None => {
                    let o = id["$objectId"].as_str().unwrap();
                    assert!(
                        o.len() == 24 && o.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{o}"
                    );
                }
            }
        }
        // Stored typed, first, and found by the typed id.
        let d = s.get(KS, C, &id).unwrap().unwrap();
        assert_eq!(d.as_object().unwrap().keys().next().unwrap(), "_id");
        assert_eq!(d["_id"], id);
        assert_eq!(ids(&s, json!({"_id": id.clone()})), vec![id.clone()]);
        // Distinct.
        assert_ne!(id, chosen);
    }
    // Time-ordered types sort by creation.
    let (_d, s) = store_opts(json!({"defaultId": {"type": "uuidv7"}}));
    let a = s.insert_one(KS, C, json!({})).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let b = s.insert_one(KS, C, json!({})).unwrap();
    assert!(a["$uuid"].as_str().unwrap() < b["$uuid"].as_str().unwrap());
    // No defaultId: the original's legacy plain-string UUIDv4.
    let (_d, s) = store();
    let id = s.insert_one(KS, C, json!({})).unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id.as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(
        s.collection_rules(KS, C).unwrap().default_id,
        DefaultIdType::Legacy
    );
}

fn first_key(v: &Value) -> String {
    v.as_object()
        .unwrap()
        .keys()
        .next()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn id_comes_first_in_returned_documents() {
    let (_d, s) = store();
    s.insert_one(KS, C, json!({"a": 1, "_id": 5, "b": 2}))
        .unwrap();
    let d = s.get(KS, C, &json!(5)).unwrap().unwrap();
    assert_eq!(first_key(&d), "_id");
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"_id":5,"a":1,"b":2}"#
    );
    // A replacement, with or without the _id, keeps it first.
    s.replace_one(
        KS,
        C,
        &json!({"_id": 5}),
        json!({"c": 3, "d": 4}),
        &UpdateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&s.get(KS, C, &json!(5)).unwrap().unwrap()).unwrap(),
        r#"{"_id":5,"c":3,"d":4}"#
    );
    let after = s
        .find_one_and_replace(
            KS,
            C,
            &json!({"_id": 5}),
            json!({"e": 5, "_id": 5}),
            &FindOneAndOptions {
                return_document: ReturnDocument::After,
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(serde_json::to_string(&after).unwrap(), r#"{"_id":5,"e":5}"#);
    assert_eq!(
        serde_json::to_string(&s.get(KS, C, &json!(5)).unwrap().unwrap()).unwrap(),
        r#"{"_id":5,"e":5}"#
    );
    // Upserts from a filter, a replacement and an update.
    let r = s
        .replace_one(
            KS,
            C,
            &json!({"x": 1, "_id": 6}),
            json!({"y": 2}),
            &UpdateOptions {
                upsert: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.upserted_id, Some(json!(6)));
    assert_eq!(first_key(&s.get(KS, C, &json!(6)).unwrap().unwrap()), "_id");
    let up = s
        .find_one_and_update(
            KS,
            C,
            &json!({"k": "v", "_id": 7}),
            &json!({"$set": {"z": 1}}),
            &FindOneAndOptions {
                upsert: true,
                return_document: ReturnDocument::After,
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_string(&up).unwrap(),
        r#"{"_id":7,"k":"v","z":1}"#
    );
    // And after updates that touch other fields.
    s.update_one(
        KS,
        C,
        &json!({"_id": 7}),
        &json!({"$unset": {"k": ""}, "$set": {"a": 0}}),
        &UpdateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&s.get(KS, C, &json!(7)).unwrap().unwrap()).unwrap(),
        r#"{"_id":7,"z":1,"a":0}"#
    );
}
