//! Every filter operator, dotted paths, arrays, typed values, and hostile input.

mod common;

use common::*;
use keyplane_docstore::DocStoreError;
use serde_json::{Value, json};

fn fixture() -> (tempfile::TempDir, keyplane_docstore::DocStore) {
    store_with(vec![
        json!({"_id": 1, "name": "ada", "age": 36, "tags": ["math", "eng"], "addr": {"city": "London", "zip": "N1"}, "active": true, "born": {"$date": -4_575_744_000_000i64}, "scores": [90, 75]}),
        json!({"_id": 2, "name": "grace", "age": 85, "tags": ["navy", "eng", "cobol"], "addr": {"city": "NYC"}, "active": false, "born": {"$date": -1_983_484_800_000i64}, "scores": [60]}),
        json!({"_id": 3, "name": "linus", "age": 28.5, "tags": [], "addr": {"city": "Helsinki", "zip": "00100"}, "active": true, "nick": null}),
        json!({"_id": "four", "name": "Bob", "age": "unknown", "tags": "eng", "uid": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}, "matrix": [[1, 2], [3]]}),
        json!({"_id": 5, "name": "eve", "nested": {"a": {"b": {"c": 42}}}, "items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}], "one": true}),
    ])
}

fn check(s: &keyplane_docstore::DocStore, filter: Value, want: Vec<Value>) {
    assert_eq!(ids(s, filter.clone()), want, "filter {filter}");
}

#[test]
fn equality_dotted_paths_and_types() {
    let (_d, s) = fixture();
    check(
        &s,
        json!({}),
        vec![json!(1), json!(2), json!(3), json!("four"), json!(5)],
    );
    check(&s, json!({"name": "ada"}), vec![json!(1)]);
    check(&s, json!({"name": "ADA"}), vec![]);
    check(&s, json!({"addr.city": "NYC"}), vec![json!(2)]);
    check(&s, json!({"nested.a.b.c": 42}), vec![json!(5)]);
    check(&s, json!({"nested.a.b.c": 42.0}), vec![json!(5)]);
    check(&s, json!({"age": 28.5}), vec![json!(3)]);
    check(&s, json!({"age": "unknown"}), vec![json!("four")]);
    check(&s, json!({"active": true}), vec![json!(1), json!(3)]);
    check(&s, json!({"active": false}), vec![json!(2)]);
    // true is not 1 and "36" is not 36.
    check(&s, json!({"one": 1}), vec![]);
    check(&s, json!({"age": "36"}), vec![]);
    // null matches a field holding null, not a missing one (the original reads `$eq null`
    // from the set of paths holding null: stargate/data-api IsNullCollectionFilter, the
    // shredder's query_null_values).
    check(&s, json!({"nick": null}), vec![json!(3)]);
    check(&s, json!({"addr": {"city": "NYC"}}), vec![json!(2)]);
    check(
        &s,
        json!({"addr": {"city": "London", "zip": "N1"}}),
        vec![json!(1)],
    );
    check(&s, json!({"items.1.sku": "y"}), vec![json!(5)]);
    check(&s, json!({"scores.0": 90}), vec![json!(1)]);
    check(&s, json!({"_id": "four"}), vec![json!("four")]);
    check(&s, json!({"_id": 2.0}), vec![json!(2)]);
    check(&s, json!({"_id": [1]}), vec![]);
}

#[test]
fn arrays_membership_all_size() {
    let (_d, s) = fixture();
    // Equality matches an element of an array field, and a scalar field too.
    check(
        &s,
        json!({"tags": "eng"}),
        vec![json!(1), json!(2), json!("four")],
    );
    check(&s, json!({"tags": "cobol"}), vec![json!(2)]);
    check(&s, json!({"tags": ["math", "eng"]}), vec![json!(1)]);
    check(&s, json!({"tags": ["eng", "math"]}), vec![]);
    check(&s, json!({"tags": []}), vec![json!(3)]);
    check(&s, json!({"matrix": [1, 2]}), vec![json!("four")]);
    check(&s, json!({"scores": {"$gt": 80}}), vec![json!(1)]);
    check(&s, json!({"scores": {"$lt": 70}}), vec![json!(2)]);
    check(
        &s,
        json!({"tags": {"$all": ["eng", "navy"]}}),
        vec![json!(2)],
    );
    check(
        &s,
        json!({"tags": {"$all": ["eng"]}}),
        vec![json!(1), json!(2), json!("four")],
    );
    check(&s, json!({"tags": {"$all": []}}), vec![]);
    check(&s, json!({"tags": {"$size": 3}}), vec![json!(2)]);
    check(&s, json!({"tags": {"$size": 0}}), vec![json!(3)]);
    check(&s, json!({"name": {"$size": 3}}), vec![]);
    check(&s, json!({"items": {"sku": "x", "qty": 2}}), vec![json!(5)]);
}

#[test]
fn comparison_and_set_operators() {
    let (_d, s) = fixture();
    check(&s, json!({"age": {"$gt": 36}}), vec![json!(2)]);
    check(&s, json!({"age": {"$gte": 36}}), vec![json!(1), json!(2)]);
    check(&s, json!({"age": {"$lt": 36}}), vec![json!(3)]);
    check(&s, json!({"age": {"$lte": 36}}), vec![json!(1), json!(3)]);
    check(&s, json!({"age": {"$gt": 30, "$lt": 50}}), vec![json!(1)]);
    check(&s, json!({"name": {"$gt": "f"}}), vec![json!(2), json!(3)]);
    check(&s, json!({"name": {"$lt": "a"}}), vec![json!("four")]);
    check(&s, json!({"age": {"$eq": 85}}), vec![json!(2)]);
    check(
        &s,
        json!({"age": {"$ne": 85}}),
        vec![json!(1), json!(3), json!("four"), json!(5)],
    );
    check(
        &s,
        json!({"tags": {"$ne": "eng"}}),
        vec![json!(3), json!(5)],
    );
    check(
        &s,
        json!({"name": {"$in": ["ada", "eve", "zed"]}}),
        vec![json!(1), json!(5)],
    );
    check(
        &s,
        json!({"tags": {"$in": ["navy", "math"]}}),
        vec![json!(1), json!(2)],
    );
    check(&s, json!({"name": {"$in": []}}), vec![]);
    check(
        &s,
        json!({"name": {"$nin": ["ada", "eve"]}}),
        vec![json!(2), json!(3), json!("four")],
    );
    check(
        &s,
        json!({"_id": {"$in": [1, "four", 99]}}),
        vec![json!(1), json!("four")],
    );
    check(
        &s,
        json!({"_id": {"$nin": [1, "four"]}}),
        vec![json!(2), json!(3), json!(5)],
    );
    check(
        &s,
        json!({"_id": {"$ne": 1}}),
        vec![json!(2), json!(3), json!("four"), json!(5)],
    );
    check(&s, json!({"nick": {"$exists": true}}), vec![json!(3)]);
    check(
        &s,
        json!({"addr.zip": {"$exists": false}}),
        vec![json!(2), json!("four"), json!(5)],
    );
    // `$not` is a logical operator in the original (a field-level `$not` is an unsupported
    // filter operator there), and it inverts `$gt` into `$lte`, which compares numbers only
    // (stargate/data-api FilterClauseBuilder.invertLogicalExpression, ValueComparisonOperator.invert).
    check(&s, json!({"$not": {"age": {"$gt": 30}}}), vec![json!(3)]);
}

#[test]
fn logical_operators() {
    let (_d, s) = fixture();
    check(
        &s,
        json!({"$or": [{"name": "ada"}, {"age": {"$gt": 80}}]}),
        vec![json!(1), json!(2)],
    );
    check(
        &s,
        json!({"$and": [{"tags": "eng"}, {"active": true}]}),
        vec![json!(1)],
    );
    check(
        &s,
        json!({"$not": {"tags": "eng"}}),
        vec![json!(3), json!(5)],
    );
    check(
        &s,
        json!({"$nor": [{"tags": "eng"}, {"_id": 5}]}),
        vec![json!(3)],
    );
    check(
        &s,
        json!({"$or": [{"$and": [{"addr.city": "London"}, {"age": 36}]}, {"name": "eve"}], "_id": {"$ne": 5}}),
        vec![json!(1)],
    );
    check(
        &s,
        json!({"active": true, "age": {"$lt": 30}}),
        vec![json!(3)],
    );
}

#[test]
fn typed_values() {
    let (_d, s) = fixture();
    check(
        &s,
        json!({"born": {"$date": -4_575_744_000_000i64}}),
        vec![json!(1)],
    );
    check(
        &s,
        json!({"born": {"$gt": {"$date": -3_000_000_000_000i64}}}),
        vec![json!(2)],
    );
    check(
        &s,
        json!({"born": {"$lt": {"$date": 0}}}),
        vec![json!(1), json!(2)],
    );
    check(
        &s,
        json!({"uid": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}}),
        vec![json!("four")],
    );
    check(
        &s,
        json!({"uid": {"$in": [{"$uuid": "123e4567-e89b-12d3-a456-426614174000"}]}}),
        vec![json!("four")],
    );
    // Typed _id values name documents too.
    s.insert_one(
        KS,
        C,
        json!({"_id": {"$uuid": "aaaaaaaa-e89b-12d3-a456-426614174000"}, "t": 1}),
    )
    .unwrap();
    check(
        &s,
        json!({"_id": {"$uuid": "aaaaaaaa-e89b-12d3-a456-426614174000"}}),
        vec![json!({"$uuid": "aaaaaaaa-e89b-12d3-a456-426614174000"})],
    );
    s.insert_one(KS, C, json!({"_id": {"$date": 5}, "t": 2}))
        .unwrap();
    assert!(s.get(KS, C, &json!({"$date": 5})).unwrap().is_some());
}

#[test]
fn bad_filters_are_clear_errors() {
    let (_d, s) = fixture();
    let q = |f: Value| {
        s.find(
            KS,
            C,
            &keyplane_docstore::Query {
                filter: f,
                ..Default::default()
            },
        )
    };
    assert!(
        matches!(q(json!({"a": {"$regex": "x"}})), Err(DocStoreError::UnknownOperator(ref o)) if o == "$regex")
    );
    // A top-level `$…` key that is no logical operator is an invalid path in the original
    // (FILTER_INVALID_EXPRESSION, CollectionFilterClauseBuilder.validateFilterClausePath), not
    // an unknown operator; it is still refused, naming it.
    assert!(
        matches!(q(json!({"$where": "1"})), Err(DocStoreError::InvalidFilter(ref r)) if r.message.contains("$where"))
    );
    // Booleans compare in the original (false < true); a null does not.
    assert!(q(json!({"a": {"$gt": true}})).is_ok());
    assert!(matches!(
        q(json!({"a": {"$gt": null}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"a": {"$in": 3}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"a": {"$exists": 1}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"a": {"$size": -1}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"$or": []})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"$and": {"a": 1}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"a": {"$gt": 1, "b": 2}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!([1])),
        Err(DocStoreError::InvalidFilter(_))
    ));
    assert!(matches!(
        q(json!({"a": {"$date": "x"}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    let big: Vec<Value> = (0..1001).map(Value::from).collect();
    assert!(matches!(
        q(json!({"a": {"$in": big}})),
        Err(DocStoreError::InvalidFilter(_))
    ));
    let mut deep = json!({"a": 1});
    for _ in 0..20 {
        deep = json!({"$and": [deep]});
    }
    assert!(matches!(q(deep), Err(DocStoreError::InvalidFilter(_))));
}

#[test]
fn injection_attempts_are_refused_or_harmless() {
    let (_d, s) = fixture();
    let q = |f: Value| {
        s.find(
            KS,
            C,
            &keyplane_docstore::Query {
                filter: f,
                ..Default::default()
            },
        )
    };
    // Paths the Data API cannot mean are refused by the path rules.
    for path in ["$.a", "a..b", ".a", "a.", "a&b", "&"] {
        let e = q(json!({ path: 1 })).unwrap_err();
        assert!(matches!(e, DocStoreError::InvalidFilter(_)), "{path}: {e}");
    }
    // Any other text is a field name the original accepts in documents, so it can be
    // queried; it is quoted and escaped in the SQL, where it matches nothing and breaks
    // nothing (the original accepts them: its only field-name rules are "not empty" and "no
    // leading '$'", FieldNamingRule).
    for path in [
        "a') OR 1=1 --",
        "a'",
        "a\"",
        "a]",
        "a b",
        "a;DROP TABLE meta",
        "a\\",
        "0",
        "a\" OR 1 --",
        "a\u{0}b",
    ] {
        assert!(q(json!({ path: 1 })).unwrap().docs.is_empty(), "{path}");
        assert!(
            q(json!({ path: {"$exists": false} })).unwrap().docs.len() == 5,
            "{path}"
        );
    }
    // Hostile values are bound parameters: they match nothing and break nothing.
    for v in [
        "' OR '1'='1",
        "\") OR 1=1 --",
        "x'); DROP TABLE meta; --",
        "%",
        "*",
    ] {
        assert!(q(json!({"name": v})).unwrap().docs.is_empty(), "{v}");
        assert!(
            q(json!({"name": {"$gt": v, "$lt": v}}))
                .unwrap()
                .docs
                .is_empty()
        );
        assert!(s.get(KS, C, &json!(v)).unwrap().is_none());
    }
    // A stored document whose text looks like SQL is just text.
    s.insert_one(
        KS,
        C,
        json!({"_id": "'; DROP TABLE meta; --", "name": "' OR 1=1 --"}),
    )
    .unwrap();
    assert_eq!(
        ids(&s, json!({"name": "' OR 1=1 --"})),
        vec![json!("'; DROP TABLE meta; --")]
    );
    assert_eq!(s.list_collections(KS).unwrap().len(), 1);
    // Sorts and projections follow the same path rules: a name is a name, a bad escape is
    // refused.
    assert!(
        s.find(
            KS,
            C,
            &keyplane_docstore::Query {
                sort: Some(json!({"a') --": 1})),
                ..Default::default()
            },
        )
        .is_ok()
    );
    let e = s
        .find(
            KS,
            C,
            &keyplane_docstore::Query {
                sort: Some(json!({"a&') --": 1})),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidSort(_)));
    let e = s
        .find(
            KS,
            C,
            &keyplane_docstore::Query {
                projection: Some(json!({"a&'": 1})),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidProjection(_)));
    assert_eq!(s.list_collections(KS).unwrap().len(), 1);
}

/// Dotted paths reach into arrays of objects, as in the Data API: `items.sku` is the `sku` of
/// every object in `items`, level by level, with every operator.
#[test]
fn dotted_paths_through_arrays_of_objects() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 7}]}),
        json!({"_id": 2, "items": [{"sku": "C3", "qty": 1}]}),
        // A plain object on the way is read as before.
        json!({"_id": 3, "items": {"sku": "A1", "qty": 3}}),
        // Two levels of arrays, and an object where an array might be.
        json!({"_id": 4, "orders": [{"lines": [{"sku": "A1"}]}, {"lines": {"sku": "Z9"}}]}),
        // The value reached is itself an array: its elements match.
        json!({"_id": 5, "items": [{"sku": ["A1", "D4"]}]}),
        // An array directly inside an array is not walked into (as in MongoDB).
        json!({"_id": 6, "items": [[{"sku": "A1"}]]}),
        // Scalars in the array have no fields.
        json!({"_id": 7, "items": ["A1", 5, null]}),
        json!({"_id": 8, "items": [{"qty": 4}]}),
        json!({"_id": 9}),
    ]);
    let none: Vec<Value> = vec![];
    let want = |v: &[i64]| v.iter().map(|i| json!(i)).collect::<Vec<_>>();
    check(&s, json!({"items.sku": "A1"}), want(&[1, 3, 5]));
    check(&s, json!({"items.sku": "B2"}), want(&[1]));
    check(&s, json!({"items.sku": {"$eq": "C3"}}), want(&[2]));
    check(&s, json!({"items.sku": "D4"}), want(&[5]));
    check(&s, json!({"items.sku": "nope"}), none.clone());
    check(
        &s,
        json!({"items.sku": {"$in": ["B2", "C3"]}}),
        want(&[1, 2]),
    );
    check(&s, json!({"items.sku": {"$in": ["D4", "Z9"]}}), want(&[5]));
    check(&s, json!({"items.qty": {"$gt": 5}}), want(&[1]));
    check(&s, json!({"items.qty": {"$gte": 3}}), want(&[1, 3, 8]));
    check(&s, json!({"items.qty": {"$lt": 2}}), want(&[2]));
    // Each condition may be met by a different element (no $elemMatch here).
    check(&s, json!({"items.qty": {"$gt": 5, "$lt": 3}}), want(&[1]));
    check(
        &s,
        json!({"items.sku": {"$exists": true}}),
        want(&[1, 2, 3, 5]),
    );
    check(
        &s,
        json!({"items.sku": {"$exists": false}}),
        want(&[4, 6, 7, 8, 9]),
    );
    check(
        &s,
        json!({"items.sku": {"$ne": "A1"}}),
        want(&[2, 4, 6, 7, 8, 9]),
    );
    check(
        &s,
        json!({"items.sku": {"$nin": ["A1", "C3"]}}),
        want(&[4, 6, 7, 8, 9]),
    );
    // The original's `$not` is logical (top-level), and inverts `$in` into `$nin`.
    check(
        &s,
        json!({"$not": {"items.sku": {"$in": ["A1"]}}}),
        want(&[2, 4, 6, 7, 8, 9]),
    );
    // null: a null value reached; neither a missing one nor a null array element (as the
    // original, see equality_dotted_paths_and_types).
    check(&s, json!({"items.sku": null}), none.clone());
    check(&s, json!({"items.sku": {"$size": 2}}), want(&[5]));
    check(&s, json!({"items.sku": {"$all": ["A1", "D4"]}}), want(&[5]));
    check(&s, json!({"items.sku": {"$all": ["A1", "B2"]}}), want(&[1]));
    check(&s, json!({"orders.lines.sku": "A1"}), want(&[4]));
    check(&s, json!({"orders.lines.sku": "Z9"}), want(&[4]));
    check(
        &s,
        json!({"orders.lines.sku": {"$exists": true}}),
        want(&[4]),
    );
    // An index still addresses one element, then the walk goes on from it.
    check(&s, json!({"items.1.sku": "B2"}), want(&[1]));
    check(&s, json!({"items.0.sku": "A1"}), want(&[1, 5, 6]));
    check(
        &s,
        json!({"$or": [{"items.sku": "C3"}, {"orders.lines.sku": "Z9"}]}),
        want(&[2, 4]),
    );
    // Counts, deletes and updates select through the same filters.
    assert_eq!(
        s.count(KS, C, &json!({"items.sku": "A1"}), 100).unwrap(),
        (3, false)
    );
    let r = s
        .update_many(
            KS,
            C,
            &json!({"items.sku": "A1"}),
            &json!({"$set": {"hit": true}}),
            false,
        )
        .unwrap();
    assert_eq!((r.matched, r.modified), (3, 3));
    assert_eq!(
        s.delete_many(KS, C, &json!({"orders.lines.sku": "Z9"}))
            .unwrap(),
        1
    );
}

/// The walk through arrays does not cost a dotted path its index when no array is on the
/// way (an index cannot serve the walk itself: SQLite has no multi-key indexes).
#[test]
fn dotted_paths_keep_their_index() {
    let docs = (0..500)
        .map(|i| json!({"_id": i, "addr": {"city": format!("c{i}"), "geo": {"lat": i}}, "items": [{"sku": format!("s{i}")}]}))
        .collect();
    let (_d, s) = store_with(docs);
    s.create_index(KS, C, "addr.city").unwrap();
    s.create_index(KS, C, "addr.geo.lat").unwrap();
    for (filter, want) in [
        (json!({"addr.city": "c7"}), vec![json!(7)]),
        (
            json!({"addr.city": {"$in": ["c8", "c9"]}}),
            vec![json!(8), json!(9)],
        ),
        (
            json!({"addr.geo.lat": {"$gte": 10, "$lt": 12}}),
            vec![json!(10), json!(11)],
        ),
    ] {
        let plan = s.explain(KS, C, &filter).unwrap();
        assert!(!plan.contains("SCAN d_"), "{filter}: {plan}");
        assert_eq!(ids(&s, filter.clone()), want, "{filter}");
    }
    assert_eq!(ids(&s, json!({"items.sku": "s9"})), vec![json!(9)]);
}

/// The largest filters the limits let through are answered or refused as invalid filters,
/// never left to fail inside SQLite (which the API would report as its own error).
#[test]
fn the_largest_filters_are_answered_or_refused_clearly() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "a": 5, "items": [{"sku": 7}]}),
        json!({"_id": 2, "a": 999, "items": [{"sku": 998}]}),
    ]);
    let list: Vec<Value> = (0..1000).map(Value::from).collect();
    let q = |f: Value| {
        s.find(
            KS,
            C,
            &keyplane_docstore::Query {
                filter: f,
                page_size: Some(100),
                ..Default::default()
            },
        )
        .map(|p| p.docs.iter().map(|d| d["_id"].clone()).collect::<Vec<_>>())
    };
    for field in ["a", "items.sku", "x.y.z.w"] {
        for op in ["$in", "$nin", "$all"] {
            let r = q(json!({field: {op: list}}));
            match r {
                Ok(_) => {}
                Err(DocStoreError::InvalidFilter(m)) => {
                    assert!(m.message.contains("too large"), "{field} {op}: {m}")
                }
                Err(e) => panic!("{field} {op}: {e:?}"),
            }
        }
        let many: Vec<Value> = (0..40).map(|_| json!({field: {"$in": list}})).collect();
        match q(json!({"$or": many})) {
            Ok(_) => {}
            Err(DocStoreError::InvalidFilter(m)) => {
                assert!(m.message.contains("too large"), "{field}: {m}")
            }
            Err(e) => panic!("{field} $or of $in: {e:?}"),
        }
    }
    assert_eq!(
        q(json!({"a": {"$in": list}})).unwrap(),
        vec![json!(1), json!(2)]
    );
    assert_eq!(
        q(json!({"a": {"$nin": list}})).unwrap(),
        Vec::<Value>::new()
    );
    assert_eq!(
        q(json!({"items.sku": {"$in": list}})).unwrap(),
        vec![json!(1), json!(2)]
    );
}
