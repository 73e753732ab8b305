//! Paths as the original writes them (issue 14, Data API 2): `&.` and `&&` escape a dot and an
//! ampersand inside a field name, and any field name insert accepts — `/`, `:`, `-`, quotes,
//! backslashes, spaces, NUL, non-ASCII, digits only — can be named in filters, sorts,
//! projections and updates.

mod common;

use common::*;
use keyplane_docstore::{
    DocStoreCode as C_, FindOneAndOptions, Query, ReturnDocument, UpdateOptions, encode_segment,
};
use serde_json::{Value, json};

fn upd(s: &keyplane_docstore::DocStore, id: i64, update: Value) -> Value {
    let r = s
        .update_one(
            KS,
            C,
            &json!({"_id": id}),
            &update,
            &UpdateOptions::default(),
        )
        .unwrap();
    assert_eq!(r.matched, 1, "{update}");
    s.get(KS, C, &json!(id)).unwrap().unwrap()
}

#[test]
fn escapes_name_dotted_and_ampersand_fields_everywhere() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "app.kubernetes.io/name": "web", "price.usd": 5, "a&b": 1, "metadata": {"shape.kind": "square"}}),
        json!({"_id": 2, "app": {"kubernetes": {"io/name": "api"}}, "price": {"usd": 7}, "a&b": 2}),
        json!({"_id": 3, "app.kubernetes.io/name": "db", "price.usd": 1}),
    ]);
    let f = |v: Value| ids(&s, v);
    assert_eq!(
        f(json!({"app&.kubernetes&.io/name": "web"})),
        vec![json!(1)]
    );
    // Unescaped dots walk into objects, as ever.
    assert_eq!(f(json!({"app.kubernetes.io/name": "api"})), vec![json!(2)]);
    assert_eq!(f(json!({"price&.usd": {"$gt": 2}})), vec![json!(1)]);
    assert_eq!(f(json!({"price.usd": {"$gt": 2}})), vec![json!(2)]);
    assert_eq!(f(json!({"a&&b": {"$in": [2]}})), vec![json!(2)]);
    assert_eq!(f(json!({"metadata.shape&.kind": "square"})), vec![json!(1)]);
    assert_eq!(f(json!({"price&.usd": {"$exists": false}})), vec![json!(2)]);
    // Sort by an escaped name.
    let sorted: Vec<Value> = s
        .find(
            KS,
            C,
            &Query {
                filter: json!({"price&.usd": {"$exists": true}}),
                sort: Some(json!({"price&.usd": -1})),
                ..Default::default()
            },
        )
        .unwrap()
        .docs
        .iter()
        .map(|d| d["_id"].clone())
        .collect();
    assert_eq!(sorted, vec![json!(1), json!(3)]);
    // Projection.
    let p = s
        .find_one(
            KS,
            C,
            &json!({"_id": 1}),
            None,
            Some(&json!({"price&.usd": 1, "metadata.shape&.kind": 1})),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        p,
        json!({"_id": 1, "price.usd": 5, "metadata": {"shape.kind": "square"}})
    );
    // Updates.
    let d = upd(
        &s,
        1,
        json!({"$set": {"price&.usd": 6}, "$inc": {"a&&b": 10}}),
    );
    assert_eq!((&d["price.usd"], &d["a&b"]), (&json!(6), &json!(11)));
    assert!(d.get("price").is_none(), "{d}");
    let d = upd(&s, 1, json!({"$unset": {"app&.kubernetes&.io/name": ""}}));
    assert!(d.get("app.kubernetes.io/name").is_none(), "{d}");
    let d = upd(&s, 3, json!({"$rename": {"price&.usd": "cost&.eur"}}));
    assert_eq!(
        d,
        json!({"_id": 3, "app.kubernetes.io/name": "db", "cost.eur": 1})
    );
    // A lone '&' is refused in every clause, by that clause's code.
    assert_eq!(
        code(find(&s, json!({"price&usd": 1}))),
        C_::FilterInvalidExpression
    );
    assert_eq!(
        code(s.find(
            KS,
            C,
            &Query {
                sort: Some(json!({"price&usd": 1})),
                ..Default::default()
            }
        )),
        C_::SortClausePathInvalid
    );
    assert_eq!(
        code(s.find_one(KS, C, &json!({}), None, Some(&json!({"price&": 1})))),
        C_::UnsupportedProjectionParam
    );
    assert_eq!(
        code(s.update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$set": {"price&usd": 7}}),
            &UpdateOptions::default()
        )),
        C_::UnsupportedUpdateOperationPath
    );
}

/// Whatever insert accepts can always be queried: for each odd field name, a filter, a sort, a
/// projection and updates reach it through its escaped path.
#[test]
fn every_field_name_insert_accepts_can_be_queried() {
    let names = [
        "app.kubernetes.io/name",
        "a:b",
        "a-b",
        "with space",
        "it's",
        "say \"hi\"",
        "back\\slash",
        "nul\u{0}byte",
        "new\nline",
        "tab\there",
        "ünïcödé ✓",
        "[0]",
        "$.not.root".trim_start_matches('$'),
        "a$b",
        "0",
        "01",
        "a&b&&c",
        "..dots..",
        "'); DROP TABLE meta; --",
        "\"); DROP TABLE meta; --",
    ];
    let long = "l".repeat(990);
    let mut all: Vec<&str> = names.to_vec();
    all.push(&long);
    let (_d, s) = store();
    for (i, name) in all.iter().enumerate() {
        s.insert_one(
            KS,
            C,
            json!({"_id": i, *name: i, "nested": {*name: {"v": i}}}),
        )
        .unwrap_or_else(|e| panic!("insert {name:?}: {e}"));
    }
    for (i, name) in all.iter().enumerate() {
        let p = encode_segment(name);
        assert_eq!(ids(&s, json!({ p.clone(): i })), vec![json!(i)], "{name:?}");
        assert_eq!(
            ids(
                &s,
                json!({ format!("nested.{p}.v"): {"$gte": i, "$lte": i} })
            ),
            vec![json!(i)],
            "{name:?}"
        );
        assert_eq!(
            ids(&s, json!({ p.clone(): {"$exists": true} })),
            vec![json!(i)],
            "{name:?}"
        );
        let first = s
            .find(
                KS,
                C,
                &Query {
                    sort: Some(json!({ p.clone(): -1 })),
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .unwrap()
            .docs;
        assert_eq!(first[0]["_id"], json!(i), "sort by {name:?}");
        let proj = s
            .find_one(
                KS,
                C,
                &json!({"_id": i}),
                None,
                Some(&json!({ p.clone(): 1 })),
            )
            .unwrap()
            .unwrap();
        assert_eq!(proj, json!({"_id": i, *name: i}), "{name:?}");
        let after = s
            .find_one_and_update(
                KS,
                C,
                &json!({ p.clone(): i }),
                &json!({"$inc": { p.clone(): 1000 }, "$set": { format!("nested.{p}.w"): true }}),
                &FindOneAndOptions {
                    return_document: ReturnDocument::After,
                    ..Default::default()
                },
            )
            .unwrap()
            .unwrap_or_else(|| panic!("update {name:?}"));
        assert_eq!(after[*name], json!(i + 1000), "{name:?}");
        assert_eq!(
            after["nested"][*name],
            json!({"v": i, "w": true}),
            "{name:?}"
        );
        s.create_index(KS, C, &p).unwrap();
        assert_eq!(
            ids(&s, json!({ p.clone(): i + 1000 })),
            vec![json!(i)],
            "{name:?}"
        );
    }
    // The catalog is intact.
    assert_eq!(s.list_collections(KS).unwrap().len(), 1);
}

/// A segment of digits names an object's field of that name or an array's element, whichever
/// the value on the way is (the original writes both as `obj.1`); `01` is only a name.
#[test]
fn numeric_segments_reach_object_keys_and_array_elements() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "obj": {"1": "x"}}),
        json!({"_id": 2, "obj": ["a", "x"]}),
        json!({"_id": 3, "obj": {"01": "x"}}),
        json!({"_id": 4, "m": {"0": {"1": "y"}}}),
        json!({"_id": 5, "m": [{"1": "y"}]}),
        json!({"_id": 6, "m": [[0, "y"]]}),
        json!({"_id": 7, "obj": {"1": "a"}}),
    ]);
    assert_eq!(ids(&s, json!({"obj.1": "x"})), vec![json!(1), json!(2)]);
    assert_eq!(ids(&s, json!({"obj.01": "x"})), vec![json!(3)]);
    assert_eq!(
        ids(&s, json!({"m.0.1": "y"})),
        vec![json!(4), json!(5), json!(6)]
    );
    assert_eq!(
        ids(&s, json!({"obj.1": {"$exists": true}})),
        vec![json!(1), json!(2), json!(7)]
    );
    assert_eq!(
        ids(&s, json!({"obj.1": {"$gt": "m"}})),
        vec![json!(1), json!(2)]
    );
    let sorted: Vec<Value> = s
        .find(
            KS,
            C,
            &Query {
                filter: json!({"obj.1": {"$exists": true}}),
                sort: Some(json!({"obj.1": 1})),
                ..Default::default()
            },
        )
        .unwrap()
        .docs
        .iter()
        .map(|d| d["_id"].clone())
        .collect();
    assert_eq!(sorted, vec![json!(7), json!(1), json!(2)]);
    // Updates through the same paths: a field of an object, an element of an array.
    let r = s
        .update_many(
            KS,
            C,
            &json!({"obj.1": "x"}),
            &json!({"$set": {"obj.1": "z"}}),
            false,
        )
        .unwrap();
    assert_eq!(r.modified, 2);
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap()["obj"],
        json!({"1": "z"})
    );
    assert_eq!(
        s.get(KS, C, &json!(2)).unwrap().unwrap()["obj"],
        json!(["a", "z"])
    );
    // And projections.
    assert_eq!(
        s.find_one(
            KS,
            C,
            &json!({"_id": 4}),
            None,
            Some(&json!({"m.0.1": 1, "_id": 0}))
        )
        .unwrap()
        .unwrap(),
        json!({"m": {"0": {"1": "y"}}})
    );
}
