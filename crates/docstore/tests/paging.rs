//! Multi-document writes in pages, as the original (issue 14, Data API 5): `updateMany`
//! updates a page of matches and answers `moreData` and a `nextPageState` to continue from;
//! `deleteMany` deletes a page and answers `moreData`, and with an empty filter empties the
//! collection at once. The pages are positions in `_id` order, so a command applied to
//! several regions selects the same documents everywhere (also through the
//! `select_ids` + `update_ids`/`delete_ids` primitives).

mod common;

use common::*;
use keyplane_docstore::{
    DELETE_MANY_PAGE_SIZE, DocStore, DocStoreCode as C_, DocStoreError, Query,
    UPDATE_MANY_PAGE_SIZE, UpdateManyOptions,
};
use serde_json::{Value, json};

fn docs(n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"_id": i, "g": i % 2, "n": 0}))
        .collect()
}

#[test]
fn update_many_works_in_pages_as_the_original() {
    assert_eq!(UPDATE_MANY_PAGE_SIZE, 50);
    let (_d, s) = store_with(docs(240));
    let filter = json!({"g": 0}); // 120 matches
    let update = json!({"$inc": {"n": 1}});
    let mut opts = UpdateManyOptions::default();
    let mut pages = vec![];
    loop {
        let p = s.update_many_page(KS, C, &filter, &update, &opts).unwrap();
        assert_eq!(p.more_data, p.next_page_state.is_some());
        pages.push((p.matched, p.modified, p.more_data));
        match p.next_page_state {
            Some(st) => opts.page_state = Some(st),
            None => break,
        }
    }
    assert_eq!(pages, vec![(50, 50, true), (50, 50, true), (20, 20, false)]);
    // Every match updated exactly once, nothing else touched.
    assert_eq!(
        s.count(KS, C, &json!({"n": 1}), 1000).unwrap(),
        (120, false)
    );
    assert_eq!(
        s.count(KS, C, &json!({"n": 0}), 1000).unwrap(),
        (120, false)
    );
    // A page that ends exactly at the last match says there is no more.
    let (_d, s) = store_with(docs(100));
    let p = s
        .update_many_page(
            KS,
            C,
            &json!({"g": 1}),
            &update,
            &UpdateManyOptions::default(),
        )
        .unwrap();
    assert_eq!(
        (p.matched, p.more_data, p.next_page_state),
        (50, false, None)
    );
    // Bad or foreign page states are refused.
    let e = s
        .update_many_page(
            KS,
            C,
            &filter,
            &update,
            &UpdateManyOptions {
                page_state: Some("zz".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::InvalidPageState));
    let find_state = s
        .find(KS, C, &Query::default())
        .unwrap()
        .next_page_state
        .unwrap();
    assert_eq!(
        code(s.update_many_page(
            KS,
            C,
            &filter,
            &update,
            &UpdateManyOptions {
                page_state: Some(find_state),
                ..Default::default()
            },
        )),
        C_::CommandFieldValueInvalid
    );
}

#[test]
fn update_many_upserts_only_on_a_first_page_that_matched_nothing() {
    let (_d, s) = store_with(docs(60));
    let u = json!({"$set": {"k": 1}});
    let first = s
        .update_many_page(
            KS,
            C,
            &json!({"g": 0}),
            &u,
            &UpdateManyOptions {
                upsert: true,
                page_size: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((first.matched, first.upserted_id.clone()), (10, None));
    let p = s
        .update_many_page(
            KS,
            C,
            &json!({"kind": "new"}),
            &u,
            &UpdateManyOptions {
                upsert: true,
                now_ms: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let id = p.upserted_id.expect("upserted");
    assert_eq!((p.matched, p.modified, p.more_data), (0, 0, false));
    let d = s.get(KS, C, &id).unwrap().unwrap();
    assert_eq!((&d["kind"], &d["k"]), (&json!("new"), &json!(1)));
    // A later page that finds nothing does not upsert.
    let past_end = s
        .update_many_page(
            KS,
            C,
            &json!({"g": 0}),
            &u,
            &UpdateManyOptions {
                upsert: true,
                page_state: first.next_page_state.clone(),
                page_size: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((past_end.matched, past_end.upserted_id), (20, None));
}

#[test]
fn delete_many_works_in_pages_and_an_empty_filter_empties_the_collection() {
    assert_eq!(DELETE_MANY_PAGE_SIZE, 20);
    let (_d, s) = store_with(docs(90));
    let mut pages = vec![];
    loop {
        let p = s.delete_many_page(KS, C, &json!({"g": 1})).unwrap();
        assert!(!p.all);
        pages.push((p.deleted, p.more_data));
        if !p.more_data {
            break;
        }
    }
    assert_eq!(pages, vec![(20, true), (20, true), (5, false)]);
    assert_eq!(s.count(KS, C, &json!({"g": 1}), 1000).unwrap().0, 0);
    assert_eq!(s.count(KS, C, &json!({}), 1000).unwrap().0, 45);
    // Exactly a page: no more data.
    let p = s
        .delete_many_page(KS, C, &json!({"_id": {"$lt": 40}}))
        .unwrap();
    assert_eq!((p.deleted, p.more_data), (20, false));
    // No match.
    let p = s.delete_many_page(KS, C, &json!({"g": 7})).unwrap();
    assert_eq!((p.deleted, p.more_data, p.all), (0, false, false));
    // Empty filter: everything at once, which the original reports as deletedCount -1.
    for f in [json!({}), Value::Null] {
        let (_d, s) = store_with(docs(130));
        let p = s.delete_many_page(KS, C, &f).unwrap();
        assert_eq!((p.deleted, p.more_data, p.all), (130, false, true));
        assert_eq!(s.estimated_count(KS, C).unwrap(), 0);
    }
}

/// The same documents inserted in another order into a second store (another region): the
/// pages select the same `_id`s in both, by page state or by the id primitives.
#[test]
fn pages_and_id_selections_mean_the_same_in_every_region() {
    let all = docs(150);
    let (_d1, a) = store_with(all.clone());
    let (_d2, b) = store_with(all.into_iter().rev().collect());
    let filter = json!({"g": 0});
    let update = json!({"$set": {"seen": true}});
    // updateMany page by page on `a`, continuing on `b` with `a`'s page state.
    let p1 = a
        .update_many_page(KS, C, &filter, &update, &UpdateManyOptions::default())
        .unwrap();
    let opts = UpdateManyOptions {
        page_state: p1.next_page_state.clone(),
        ..Default::default()
    };
    b.update_many_page(KS, C, &filter, &update, &UpdateManyOptions::default())
        .unwrap();
    let p2a = a.update_many_page(KS, C, &filter, &update, &opts).unwrap();
    let p2b = b.update_many_page(KS, C, &filter, &update, &opts).unwrap();
    assert_eq!(p2a, p2b);
    let seen = |s: &DocStore| {
        let mut v = ids(s, json!({"seen": true}));
        v.sort_by_key(|x| x.as_i64());
        v
    };
    assert_eq!(seen(&a), seen(&b));
    assert_eq!(seen(&a).len(), 75);
    // deleteMany pages delete the same documents in both.
    a.delete_many_page(KS, C, &json!({"g": 1})).unwrap();
    b.delete_many_page(KS, C, &json!({"g": 1})).unwrap();
    let left = |s: &DocStore| {
        let mut v = ids(s, json!({"g": 1}));
        v.sort_by_key(|x| x.as_i64());
        v
    };
    assert_eq!(left(&a), left(&b));
    // select_ids on one store, applied by _id to both.
    let mut chosen = vec![];
    let mut state: Option<String> = None;
    loop {
        let sel = a
            .select_ids(KS, C, &json!({"g": 0}), None, 7, state.as_deref())
            .unwrap();
        assert!(sel.ids.len() <= 7);
        chosen.extend(sel.ids);
        match sel.next_page_state {
            Some(st) => state = Some(st),
            None => break,
        }
    }
    assert_eq!(chosen.len(), 75);
    let mut sorted = chosen.clone();
    sorted.sort_by_key(|v| v.to_string());
    assert_eq!(chosen, sorted, "_id order");
    let first_ten = &chosen[..10];
    for s in [&a, &b] {
        let r = s
            .update_ids(KS, C, first_ten, &json!({"$inc": {"n": 5}}), 7)
            .unwrap();
        assert_eq!((r.matched, r.modified), (10, 10));
        assert_eq!(s.delete_ids(KS, C, &chosen[10..20]).unwrap(), 10);
        assert_eq!(s.delete_ids(KS, C, &chosen[10..20]).unwrap(), 0);
    }
    assert_eq!(
        ids(&a, json!({"n": 5})).len(),
        ids(&b, json!({"n": 5})).len()
    );
    // A sorted selection follows the sort (ties by _id).
    let sel = a
        .select_ids(KS, C, &json!({}), Some(&json!({"g": -1})), 3, None)
        .unwrap();
    assert!(sel.more_data);
    let next = a
        .select_ids(
            KS,
            C,
            &json!({}),
            Some(&json!({"g": -1})),
            3,
            sel.next_page_state.as_deref(),
        )
        .unwrap();
    assert_eq!(sel.ids.len() + next.ids.len(), 6);
    assert!(sel.ids.iter().all(|id| !next.ids.contains(id)));
}

/// Eight clients paging through `updateMany` and `deleteMany` at once: every page is one
/// transaction, so each client updates every match exactly once and the deletes add up.
#[test]
fn paged_writes_from_eight_threads() {
    let (_d, s) = store_with(docs(300));
    let s = std::sync::Arc::new(s);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut opts = UpdateManyOptions::default();
                let mut matched = 0;
                loop {
                    let p = s
                        .update_many_page(KS, C, &json!({}), &json!({"$inc": {"n": 1}}), &opts)
                        .unwrap();
                    matched += p.matched;
                    match p.next_page_state {
                        Some(st) => opts.page_state = Some(st),
                        None => return matched,
                    }
                }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 300);
    }
    assert_eq!(
        s.count(KS, C, &json!({"n": 8}), 1000).unwrap(),
        (300, false)
    );
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut deleted = 0;
                loop {
                    let p = s.delete_many_page(KS, C, &json!({"g": 0})).unwrap();
                    deleted += p.deleted;
                    if !p.more_data {
                        return deleted;
                    }
                }
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 150);
    assert_eq!(s.count(KS, C, &json!({}), 1000).unwrap(), (150, false));
}
