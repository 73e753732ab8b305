//! Documents validated at insert over HTTP as the original validates them (issue 14, Data API
//! 6 and 7): `$date`/`$uuid`/`$objectId` values that are not one refused (as values and as
//! `_id`) and not stored; field names (empty, `$`-led, NUL, over the path limit); duplicate
//! keys; `"a.b"` beside `{"a":{"b":…}}`; the nesting limit counting levels as its message says;
//! `_id` first in returned documents. On a customer-keyed database.
mod common;

use common::data::{DataDb, nums};
use keyplane_docstore::{MAX_DEPTH, MAX_PROPERTY_PATH_LEN};
use serde_json::{Value, json};

#[tokio::test]
async fn invalid_typed_values_are_refused_at_insert_and_not_stored() {
    let d = DataDb::start().await;
    for (doc, code) in [
        (
            json!({"_id": 1, "d": {"$date": "2024-01-01T00:00:00Z"}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 2, "d": {"$date": 1.5}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 3, "d": {"$date": 1e30}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 4, "d": [{"$date": false}]}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 5, "u": {"$uuid": "not-a-uuid"}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 6, "u": {"$uuid": 42}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (
            json!({"_id": 7, "o": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7"}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (json!({"_id": {"$uuid": "nope"}}), "SHRED_BAD_DOCID_TYPE"),
        (
            json!({"_id": {"$objectId": "nope"}}),
            "SHRED_BAD_DOCID_TYPE",
        ),
        (json!({"_id": {"$date": "2024"}}), "SHRED_BAD_DOCID_TYPE"),
        (json!({"_id": {"a": 1}}), "SHRED_BAD_DOCID_TYPE"),
    ] {
        let e = d
            .fails(json!({"insertOne": {"document": doc.clone()}}), code)
            .await;
        assert_eq!(e["scope"], "DOCUMENT", "{e}");
    }
    // insertMany refuses them per document and stores the rest.
    let (_, body) = d
        .send(
            "/c",
            json!({"insertMany": {"documents": [{"_id": 10, "d": {"$date": "x"}}, {"_id": 11, "d": {"$date": 7}}]}}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["errorCode"], "SHRED_BAD_EJSON_VALUE",
        "{body}"
    );
    assert_eq!(body["status"]["insertedIds"], json!([11]), "{body}");
    // Nothing refused was stored (so nothing sorts as if it were a value).
    let body = d.c(json!({"find": {"sort": {"d": 1}}})).await;
    assert_eq!(
        body["data"]["documents"],
        json!([{"_id": 11, "d": {"$date": 7}}])
    );
    // Valid typed ids and values are stored and found.
    d.c(json!({"insertOne": {"document": {"_id": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}, "d": {"$date": -5}}}}))
        .await;
    d.c(json!({"insertOne": {"document": {"_id": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}}}}))
        .await;
    let body = d
        .c(json!({"findOne": {"filter": {"_id": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}}}}))
        .await;
    assert_eq!(
        body["data"]["document"],
        json!({"_id": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}})
    );
}

#[tokio::test]
async fn field_names_as_the_original() {
    let d = DataDb::start().await;
    for doc in [
        json!({"": 1}),
        json!({"a": {"": 1}}),
        json!({"$id": 1}),
        json!({"a": [{"$b": 1}]}),
    ] {
        d.fails(
            json!({"insertOne": {"document": doc}}),
            "SHRED_BAD_FIELD_NAME",
        )
        .await;
    }
    // NUL is allowed in a name, and the field can be queried.
    d.c(json!({"insertOne": {"document": {"_id": 1, "a\u{0}b": "nul", "x$": 1}}}))
        .await;
    assert_eq!(d.ids(json!({"a\u{0}b": "nul"})).await, nums(&[1]));
    // The original's limit on a property's path: 1,000 characters, nested names included.
    let at = "n".repeat(MAX_PROPERTY_PATH_LEN);
    d.c(json!({"insertOne": {"document": {"_id": 2, at.clone(): 1}}}))
        .await;
    assert_eq!(d.ids(json!({ at: 1 })).await, nums(&[2]));
    let over = "n".repeat(MAX_PROPERTY_PATH_LEN + 1);
    let e = d
        .fails(
            json!({"insertOne": {"document": {"_id": 3, over: 1}}}),
            "SHRED_DOC_LIMIT_VIOLATION",
        )
        .await;
    assert_eq!(e["documentIds"], json!([3]), "{e}");
    let half = "h".repeat(MAX_PROPERTY_PATH_LEN / 2);
    d.fails(
        json!({"insertOne": {"document": {"_id": 4, half.clone(): {half: {"x": 1}}}}}),
        "SHRED_DOC_LIMIT_VIOLATION",
    )
    .await;
    assert_eq!(d.ids(json!({})).await, nums(&[1, 2]));
}

#[tokio::test]
async fn duplicate_keys_are_refused_and_dotted_names_are_their_own_fields() {
    let d = DataDb::start().await;
    for body in [
        r#"{"insertOne": {"document": {"_id": 1, "a": 1, "a": 1}}}"#,
        r#"{"insertOne": {"document": {"_id": 1, "b": [{"a": 1, "a": 2}]}}}"#,
        r#"{"insertMany": {"documents": [{"_id": 1, "x": {"k": 1, "\u006b": 2}}]}}"#,
    ] {
        let (st, text) = d.raw("/c", body).await;
        assert_eq!(st, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["errors"][0]["errorCode"], "REQUEST_NOT_JSON",
            "{body} → {v}"
        );
    }
    // Repeating a name in different objects is fine.
    d.c(json!({"insertOne": {"document": {"_id": 9, "a": {"a": 1}, "b": [{"a": 1}, {"a": 1}]}}}))
        .await;
    // "a.b" and {"a": {"b": …}} are two fields, each addressable.
    d.c(json!({"insertOne": {"document": {"_id": 1, "a.b": 1, "a": {"b": 2}}}}))
        .await;
    d.c(json!({"insertOne": {"document": {"_id": 2, "a.b": 2}}}))
        .await;
    assert_eq!(d.ids(json!({"a&.b": 1})).await, nums(&[1]));
    assert_eq!(d.ids(json!({"a.b": 2})).await, nums(&[1]));
    assert_eq!(d.ids(json!({"a&.b": 2})).await, nums(&[2]));
    let body = d.c(json!({"findOne": {"filter": {"_id": 1}}})).await;
    assert_eq!(
        body["data"]["document"],
        json!({"_id": 1, "a.b": 1, "a": {"b": 2}})
    );
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test]
async fn nesting_counts_levels_as_the_message_says() {
    let d = DataDb::start().await;
    // The document is level 1: 15 more make the stated limit, 16, which is accepted.
    d.c(json!({"insertOne": {"document": {"_id": 1, "d": nested(MAX_DEPTH - 1)}}}))
        .await;
    let e = d
        .fails(
            json!({"insertOne": {"document": {"_id": 2, "d": nested(MAX_DEPTH)}}}),
            "SHRED_DOC_LIMIT_VIOLATION",
        )
        .await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("({MAX_DEPTH} levels)")), "{msg}");
    assert_eq!(e["documentIds"], json!([2]), "{e}");
    // An update that would nest too deep is refused the same way.
    d.fails(
        json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"d": nested(MAX_DEPTH)}}}}),
        "SHRED_DOC_LIMIT_VIOLATION",
    )
    .await;
    assert_eq!(d.ids(json!({})).await, nums(&[1]));
}

#[tokio::test]
async fn id_comes_first_in_returned_documents() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"z": 1, "_id": "k", "a": 2}}}))
        .await;
    let (_, text) = d
        .raw("/c", r#"{"findOne": {"filter": {"_id": "k"}}}"#)
        .await;
    assert!(
        text.contains(r#"{"document":{"_id":"k","z":1,"a":2}}"#),
        "{text}"
    );
    // After a replace (the replacement names _id last, or not at all).
    d.c(
        json!({"findOneAndReplace": {"filter": {"_id": "k"}, "replacement": {"b": 1, "_id": "k"}}}),
    )
    .await;
    let (_, text) = d
        .raw("/c", r#"{"findOne": {"filter": {"_id": "k"}}}"#)
        .await;
    assert!(text.contains(r#"{"document":{"_id":"k","b":1}}"#), "{text}");
    let (_, text) = d
        .raw(
            "/c",
            r#"{"findOneAndReplace": {"filter": {"_id": "k"}, "replacement": {"c": 3}, "options": {"returnDocument": "after"}}}"#,
        )
        .await;
    assert!(text.contains(r#"{"document":{"_id":"k","c":3}}"#), "{text}");
    // And after an update adding fields.
    d.c(json!({"updateOne": {"filter": {"_id": "k"}, "update": {"$set": {"a": 0}}}}))
        .await;
    let (_, text) = d.raw("/c", r#"{"find": {}}"#).await;
    assert!(text.contains(r#"{"_id":"k","c":3,"a":0}"#), "{text}");
}
