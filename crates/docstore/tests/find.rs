//! Sort, projection, skip, limit and paging.

mod common;

use common::*;
use keyplane_docstore::{DEFAULT_PAGE_SIZE, DocStoreError, Query};
use serde_json::{Value, json};

fn all_pages(s: &keyplane_docstore::DocStore, mut q: Query) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let p = s.find(KS, C, &q).unwrap();
        pages += 1;
        assert!(p.docs.len() as u64 <= q.page_size.unwrap_or(DEFAULT_PAGE_SIZE));
        out.extend(p.docs);
        match p.next_page_state {
            Some(st) => q.page_state = Some(st),
            None => return (out, pages),
        }
        assert!(pages < 1000);
    }
}

#[test]
fn default_page_is_20_and_paging_visits_everything_once() {
    let (_d, s) = store_with((0..95).map(|i| json!({"_id": i, "n": i % 10})).collect());
    let first = s.find(KS, C, &Query::default()).unwrap();
    assert_eq!(first.docs.len(), 20);
    assert!(first.next_page_state.is_some());
    let (docs, pages) = all_pages(&s, Query::default());
    assert_eq!(pages, 5);
    let got: Vec<i64> = docs.iter().map(|d| d["_id"].as_i64().unwrap()).collect();
    assert_eq!(got, (0..95).collect::<Vec<_>>());

    // Filter + paging.
    let (docs, _) = all_pages(
        &s,
        Query {
            filter: json!({"n": 3}),
            page_size: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(docs.len(), 10);

    // Sorted paging: by n descending, then insertion order.
    let (docs, pages) = all_pages(
        &s,
        Query {
            sort: Some(json!({"n": -1})),
            ..Default::default()
        },
    );
    assert_eq!(pages, 5);
    assert_eq!(docs.len(), 95);
    let ns: Vec<i64> = docs.iter().map(|d| d["n"].as_i64().unwrap()).collect();
    assert!(ns.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(docs[0]["_id"], json!(9));

    // Bad page state.
    let e = s
        .find(
            KS,
            C,
            &Query {
                page_state: Some("zz".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidPageState));
}

#[test]
fn skip_and_limit() {
    let (_d, s) = store_with((0..50).map(|i| json!({"_id": i})).collect());
    let q = Query {
        skip: 5,
        limit: Some(3),
        ..Default::default()
    };
    let p = s.find(KS, C, &q).unwrap();
    assert_eq!(
        p.docs.iter().map(|d| d["_id"].clone()).collect::<Vec<_>>(),
        vec![json!(5), json!(6), json!(7)]
    );
    assert!(p.next_page_state.is_none());
    // A limit larger than a page pages, and stops at the limit.
    let (docs, pages) = all_pages(
        &s,
        Query {
            limit: Some(45),
            skip: 2,
            ..Default::default()
        },
    );
    assert_eq!(docs.len(), 45);
    assert_eq!(pages, 3);
    assert_eq!(docs[0]["_id"], json!(2));
    assert!(
        s.find(
            KS,
            C,
            &Query {
                limit: Some(0),
                ..Default::default()
            }
        )
        .unwrap()
        .docs
        .is_empty()
    );
    let (docs, _) = all_pages(
        &s,
        Query {
            sort: Some(json!({"_id": -1})),
            skip: 10,
            limit: Some(25),
            ..Default::default()
        },
    );
    assert_eq!(docs.len(), 25);
    assert_eq!(docs[0]["_id"], json!(39));
    assert_eq!(docs[24]["_id"], json!(15));
}

#[test]
fn sort_orders_types_and_multiple_keys() {
    let (_d, s) = store_with(vec![
        json!({"_id": "a", "v": "b", "g": 1}),
        json!({"_id": "b", "v": 10, "g": 2}),
        json!({"_id": "c", "g": 1}),
        json!({"_id": "d", "v": 2.5, "g": 2}),
        json!({"_id": "e", "v": {"$date": 1000}, "g": 1}),
        json!({"_id": "f", "v": {"$date": 20}, "g": 2}),
        json!({"_id": "g", "v": "a", "g": 1}),
        json!({"_id": "h", "v": true, "g": 2}),
    ]);
    let sorted = |sort: Value| -> Vec<Value> {
        s.find(
            KS,
            C,
            &Query {
                sort: Some(sort),
                ..Default::default()
            },
        )
        .unwrap()
        .docs
        .into_iter()
        .map(|d| d["_id"].clone())
        .collect()
    };
    // missing < numbers < strings < booleans < dates (dates by millis, not text).
    assert_eq!(
        sorted(json!({"v": 1})),
        vec![
            json!("c"),
            json!("d"),
            json!("b"),
            json!("g"),
            json!("a"),
            json!("h"),
            json!("f"),
            json!("e")
        ]
    );
    assert_eq!(sorted(json!({"v": -1}))[0], json!("e"));
    assert_eq!(
        sorted(json!({"g": -1, "_id": 1})),
        vec![
            json!("b"),
            json!("d"),
            json!("f"),
            json!("h"),
            json!("a"),
            json!("c"),
            json!("e"),
            json!("g")
        ]
    );
    let e = s
        .find(
            KS,
            C,
            &Query {
                sort: Some(json!({"v": 2})),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidSort(_)));
    let e = s
        .find(
            KS,
            C,
            &Query {
                sort: Some(json!({"$vector": [0.1]})),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidSort(_)));
}

#[test]
fn projections() {
    let doc = json!({"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "arr": [1, 2, 3, 4, 5]});
    let (_d, s) = store_with(vec![doc.clone()]);
    let proj = |p: Value| {
        s.find_one(KS, C, &json!({}), None, Some(&p))
            .unwrap()
            .unwrap()
    };
    assert_eq!(proj(json!({"a": 1})), json!({"_id": 1, "a": 1}));
    assert_eq!(proj(json!({"a": true, "_id": 0})), json!({"a": 1}));
    assert_eq!(proj(json!({"b.c": 1})), json!({"_id": 1, "b": {"c": 2}}));
    assert_eq!(proj(json!({"b": 0, "arr": 0})), json!({"_id": 1, "a": 1}));
    assert_eq!(
        proj(json!({"b.d": 0, "_id": 0})),
        json!({"a": 1, "b": {"c": 2}, "arr": [1, 2, 3, 4, 5]})
    );
    assert_eq!(proj(json!({"*": 1})), doc);
    assert_eq!(proj(json!({"*": 0})), json!({}));
    assert_eq!(
        proj(json!({"arr": {"$slice": 2}})),
        json!({"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "arr": [1, 2]})
    );
    assert_eq!(
        proj(json!({"arr": {"$slice": -2}, "a": 1})),
        json!({"_id": 1, "a": 1, "arr": [4, 5]})
    );
    assert_eq!(
        proj(json!({"arr": {"$slice": [1, 2]}, "_id": 0, "a": 1})),
        json!({"a": 1, "arr": [2, 3]})
    );
    assert_eq!(proj(json!({"missing": 1})), json!({"_id": 1}));
    let bad = |p: Value| {
        s.find(
            KS,
            C,
            &Query {
                projection: Some(p),
                ..Default::default()
            },
        )
        .unwrap_err()
    };
    assert!(matches!(
        bad(json!({"a": 1, "b": 0})),
        DocStoreError::InvalidProjection(_)
    ));
    assert!(matches!(
        bad(json!({"a": "yes"})),
        DocStoreError::InvalidProjection(_)
    ));
    assert!(matches!(
        bad(json!({"*": 1, "a": 1})),
        DocStoreError::InvalidProjection(_)
    ));
}

/// A field name that meets an array projects through it, element by element, as the Data
/// API does: `items.sku` keeps `sku` of each object element.
#[test]
fn projections_reach_into_arrays_of_objects() {
    let doc = json!({"_id": 1, "name": "o1",
        "items": [{"sku": "A1", "qty": 2, "tags": [{"t": "x", "w": 1}]}, {"qty": 5}, 7, {"sku": "B2", "qty": 1}]});
    let (_d, s) = store_with(vec![doc.clone()]);
    let proj = |p: Value| {
        s.find_one(KS, C, &json!({}), None, Some(&p))
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        proj(json!({"items.sku": 1})),
        json!({"_id": 1, "items": [{"sku": "A1"}, {}, {"sku": "B2"}]})
    );
    assert_eq!(
        proj(json!({"items.sku": 1, "items.qty": 1, "_id": 0})),
        json!({"items": [{"sku": "A1", "qty": 2}, {"qty": 5}, {"sku": "B2", "qty": 1}]})
    );
    assert_eq!(
        proj(json!({"items.tags.t": 1, "name": 1, "_id": 0})),
        json!({"name": "o1", "items": [{"tags": [{"t": "x"}]}, {}, {}]})
    );
    assert_eq!(
        proj(json!({"items.qty": 0, "items.tags": 0})),
        json!({"_id": 1, "name": "o1", "items": [{"sku": "A1"}, {}, 7, {"sku": "B2"}]})
    );
    // A plain index path keeps its meaning.
    assert_eq!(
        proj(json!({"items.1.qty": 0, "name": 0, "_id": 0}))["items"][1],
        json!({})
    );
}

#[test]
fn count_and_estimated_count() {
    let (_d, s) = store_with(
        (0..150)
            .map(|i| json!({"_id": i, "even": i % 2 == 0}))
            .collect(),
    );
    assert_eq!(s.count(KS, C, &json!({}), 1000).unwrap(), (150, false));
    assert_eq!(s.count(KS, C, &json!({}), 100).unwrap(), (100, true));
    assert_eq!(
        s.count(KS, C, &json!({"even": true}), 75).unwrap(),
        (75, false)
    );
    assert_eq!(
        s.count(KS, C, &json!({"even": true}), 74).unwrap(),
        (74, true)
    );
    assert_eq!(s.estimated_count(KS, C).unwrap(), 150);
}
