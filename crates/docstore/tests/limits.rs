//! Document limits, and that the store is usable from many threads.

mod common;

use std::sync::Arc;

use common::*;
use keyplane_docstore::{DocStoreError, MAX_DEPTH, MAX_DOCUMENT_BYTES, UpdateOptions};
use serde_json::{Value, json};

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels - 1 {
        v = json!({ "a": v });
    }
    v
}

#[test]
fn size_and_depth_limits() {
    let (_d, s) = store();
    let big = "x".repeat(MAX_DOCUMENT_BYTES);
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 1, "big": big})),
        Err(DocStoreError::DocumentTooLarge {
            limit: MAX_DOCUMENT_BYTES,
            ..
        })
    ));
    // Just under the limit (in strings under the original's 8,000-byte limit per string).
    let chunk = "x".repeat(7_990);
    let n = (MAX_DOCUMENT_BYTES - 3_500) / (chunk.len() + 3);
    let almost: Vec<&str> = vec![chunk.as_str(); n];
    s.insert_one(KS, C, json!({"_id": 1, "big": almost, "more": ""}))
        .unwrap();
    // An update that grows a document past the limit is refused too.
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$set": {"more": "y".repeat(7_900)}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::DocumentTooLarge { .. }));

    // nested(n) has n-1 object levels plus the scalar; the document itself is level 1 and
    // only objects and arrays are levels (the original's FullDocValidator), so
    // {"d": nested(MAX_DEPTH)} has exactly MAX_DEPTH levels and is accepted.
    s.insert_one(KS, C, json!({"_id": 2, "d": nested(MAX_DEPTH)}))
        .unwrap();
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 3, "d": nested(MAX_DEPTH + 1)})),
        Err(DocStoreError::TooDeep {
            limit: MAX_DEPTH,
            ..
        })
    ));
    let mut arr = json!(1);
    for _ in 0..MAX_DEPTH {
        arr = json!([arr]);
    }
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 4, "d": arr})),
        Err(DocStoreError::TooDeep { .. })
    ));
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 2}),
            &json!({"$set": {"d": nested(MAX_DEPTH + 2)}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(e, DocStoreError::TooDeep { .. }));
}

#[test]
fn shared_across_threads() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    s.insert_one(KS, C, json!({"_id": format!("{t}-{i}"), "t": t}))
                        .unwrap();
                    assert!(s.get(KS, C, &json!(format!("{t}-{i}"))).unwrap().is_some());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.count(KS, C, &json!({}), 1000).unwrap(), (200, false));
}

#[tokio::test]
async fn usable_from_async_via_spawn_blocking() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let s2 = s.clone();
    let id = tokio::task::spawn_blocking(move || s2.insert_one(KS, C, json!({"x": 1})))
        .await
        .unwrap()
        .unwrap();
    assert!(s.get(KS, C, &id).unwrap().is_some());
}
