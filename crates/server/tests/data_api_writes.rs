//! Writes over HTTP as the original makes them (issue 14, Data API 4, 5 and 7): `$mul`,
//! unknown update operators as update errors, numbers kept exactly and their length limit,
//! `$date` needing a number, `updateMany`/`deleteMany` in pages (`moreData`, `nextPageState`,
//! `deletedCount: -1` for an empty filter) keeping every region identical, and typed default
//! ids. On a customer-keyed database.
mod common;

use common::data::{DataDb, REGION, SECOND_REGION, nums};
use keyplane_docstore::{DELETE_MANY_PAGE_SIZE, UPDATE_MANY_PAGE_SIZE};
use serde_json::{Value, json};

#[tokio::test]
async fn mul_and_unknown_update_operators() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": 1, "a": 1.5, "i": 7, "s": "x"}}}))
        .await;
    let body = d
        .c(json!({"updateOne": {"filter": {"_id": 1}, "update": {"$mul": {"a": 2, "i": -3, "new": 5}}}}))
        .await;
    assert_eq!(body["status"]["modifiedCount"], 1);
    let (_, text) = d.raw("/c", r#"{"findOne": {"filter": {"_id": 1}}}"#).await;
    assert!(
        text.contains(r#""a":3.0"#) && text.contains(r#""i":-21"#) && text.contains(r#""new":0"#),
        "{text}"
    );
    let body = d
        .c(json!({"updateOne": {"filter": {"_id": 1}, "update": {"$mul": {"i": 1}}}}))
        .await;
    assert_eq!(
        body["status"]["modifiedCount"], 0,
        "times one changes nothing"
    );
    d.fails(
        json!({"updateOne": {"filter": {"_id": 1}, "update": {"$mul": {"s": 2}}}}),
        "UNSUPPORTED_UPDATE_OPERATION_TARGET",
    )
    .await;
    for u in [
        json!({"$bogus": {"a": 1}}),
        json!({"$pull": {"a": 1}}),
        json!({"$set": {"a": 1}, "$addToSett": {"b": 1}}),
    ] {
        for cmd in [
            json!({"updateOne": {"filter": {"_id": 1}, "update": u.clone()}}),
            json!({"updateMany": {"filter": {}, "update": u.clone()}}),
            json!({"findOneAndUpdate": {"filter": {}, "update": u.clone()}}),
        ] {
            let e = d.fails(cmd, "UNSUPPORTED_UPDATE_OPERATION").await;
            assert_eq!(e["scope"], "UPDATE", "{e}");
        }
    }
}

#[tokio::test]
async fn numbers_keep_their_exact_value_within_the_original_limit() {
    let d = DataDb::start().await;
    let doc = r#"{"_id":1,"big":12345678901234567890123,"dec":3.14159265358979323846264338327950288419716939937510,"tiny":-0.000000000000000000000001,"neg":-98765432109876543210987654321}"#;
    let (st, text) = d
        .raw("/c", &format!(r#"{{"insertOne": {{"document": {doc}}}}}"#))
        .await;
    assert_eq!(st, 200, "{text}");
    let (_, text) = d.raw("/c", r#"{"findOne": {"filter": {"_id": 1}}}"#).await;
    assert!(text.contains(doc), "read back as written: {text}");
    // Arithmetic is exact.
    d.raw(
        "/c",
        r#"{"updateOne": {"filter": {"_id": 1}, "update": {"$inc": {"big": 1, "neg": -1}, "$set": {"x": 0.1}}}}"#,
    )
    .await;
    d.raw(
        "/c",
        r#"{"updateOne": {"filter": {"_id": 1}, "update": {"$inc": {"x": 0.2}}}}"#,
    )
    .await;
    let (_, text) = d.raw("/c", r#"{"findOne": {"filter": {"_id": 1}}}"#).await;
    assert!(
        text.contains(r#""big":12345678901234567890124"#)
            && text.contains(r#""neg":-98765432109876543210987654322"#)
            && text.contains(r#""x":0.3"#),
        "{text}"
    );
    // The length limit: 100 characters is fine, more is refused, in documents and updates.
    let hundred = "9".repeat(100);
    let (_, text) = d
        .raw(
            "/c",
            &format!(r#"{{"insertOne": {{"document": {{"_id": 2, "n": {hundred}}}}}}}"#),
        )
        .await;
    assert!(text.contains(r#""insertedIds":[2]"#), "{text}");
    for body in [
        format!(
            r#"{{"insertOne": {{"document": {{"_id": 3, "n": {}}}}}}}"#,
            "1".repeat(101)
        ),
        format!(
            r#"{{"updateOne": {{"filter": {{"_id": 2}}, "update": {{"$inc": {{"n": {}}}}}}}}}"#,
            "1".repeat(101)
        ),
        // A product longer than the limit.
        format!(
            r#"{{"updateOne": {{"filter": {{"_id": 2}}, "update": {{"$mul": {{"n": {}}}}}}}}}"#,
            "9".repeat(50)
        ),
    ] {
        let (_, text) = d.raw("/c", &body).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["errors"][0]["errorCode"], "SHRED_DOC_LIMIT_VIOLATION",
            "{body} → {v}"
        );
    }
    let (_, text) = d.raw("/c", r#"{"findOne": {"filter": {"_id": 2}}}"#).await;
    assert!(
        text.contains(&format!(r#""n":{hundred}"#)),
        "unchanged: {text}"
    );
    assert_eq!(d.ids(json!({})).await, nums(&[1, 2]));
}

#[tokio::test]
async fn date_with_a_non_numeric_value_is_refused_in_updates() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": 1, "d": {"$date": 5}}}}))
        .await;
    for u in [
        json!({"$set": {"d": {"$date": "2024-01-01"}}}),
        json!({"$set": {"x": {"y": {"$date": 1.5}}}}),
        json!({"$push": {"arr": {"$date": "x"}}}),
    ] {
        d.fails(
            json!({"updateOne": {"filter": {"_id": 1}, "update": u}}),
            "SHRED_BAD_EJSON_VALUE",
        )
        .await;
    }
    d.fails(
        json!({"updateOne": {"filter": {"_id": 2}, "update": {"$setOnInsert": {"d": {"$date": "x"}}}, "options": {"upsert": true}}}),
        "SHRED_BAD_EJSON_VALUE",
    )
    .await;
    let body = d.c(json!({"find": {}})).await;
    assert_eq!(
        body["data"]["documents"],
        json!([{"_id": 1, "d": {"$date": 5}}])
    );
}

/// One `updateMany` run to its end, page by page as a client does; the pages' statuses.
async fn update_many_pages(d: &DataDb, filter: Value, update: Value) -> Vec<Value> {
    let mut pages = vec![];
    let mut state: Option<String> = None;
    loop {
        let mut opts = json!({});
        if let Some(p) = &state {
            opts["pageState"] = json!(p);
        }
        let body = d
            .c(json!({"updateMany": {"filter": filter, "update": update, "options": opts}}))
            .await;
        let st = body["status"].clone();
        pages.push(st.clone());
        match st["nextPageState"].as_str() {
            Some(p) => {
                assert_eq!(st["moreData"], true, "{st}");
                state = Some(p.to_string());
            }
            None => {
                assert!(st.get("moreData").is_none(), "{st}");
                return pages;
            }
        }
    }
}

#[tokio::test]
async fn update_many_and_delete_many_work_in_pages_in_every_region() {
    let d = DataDb::start().await;
    let page = UPDATE_MANY_PAGE_SIZE as i64;
    let n = 2 * page + 7;
    let docs: Vec<Value> = (0..n).map(|i| json!({"_id": i, "g": i % 2})).collect();
    for chunk in docs.chunks(100) {
        d.c(json!({"insertMany": {"documents": chunk}})).await;
    }
    d.add_second_region().await;
    // Every document, in pages of the original's size.
    let pages = update_many_pages(&d, json!({}), json!({"$inc": {"seen": 1}})).await;
    let counts: Vec<i64> = pages
        .iter()
        .map(|p| p["matchedCount"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![page, page, 7]);
    for p in &pages {
        assert_eq!(p["matchedCount"], p["modifiedCount"], "{p}");
    }
    // Exactly one page's worth of matches: no moreData.
    let pages = update_many_pages(
        &d,
        json!({"_id": {"$lt": page}}),
        json!({"$set": {"first": true}}),
    )
    .await;
    assert_eq!(
        pages,
        vec![json!({"matchedCount": page, "modifiedCount": page})]
    );
    // A page state from one command does not upsert.
    let body = d
        .c(json!({"updateMany": {"filter": {"g": 0}, "update": {"$set": {"h": 1}}, "options": {"upsert": true}}}))
        .await;
    assert_eq!(body["status"]["matchedCount"], page);
    assert!(body["status"].get("upsertedId").is_none());
    let state = body["status"]["nextPageState"]
        .as_str()
        .unwrap()
        .to_string();
    let body = d
        .c(json!({"updateMany": {"filter": {"g": 0}, "update": {"$set": {"h": 1}}, "options": {"upsert": true, "pageState": state}}}))
        .await;
    assert_eq!(body["status"]["matchedCount"], n / 2 + 1 - page);
    d.fails(
        json!({"updateMany": {"filter": {}, "update": {"$set": {"h": 1}}, "options": {"pageState": "zz"}}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
    // Both regions hold the same documents, each updated exactly once per command.
    let here = d.all_in(REGION).await;
    assert_eq!(here.len() as i64, n);
    assert!(here.iter().all(|x| x["seen"] == 1), "{here:?}");
    assert_eq!(here, d.all_in(SECOND_REGION).await);

    // deleteMany: one page of the original's size per command while more remain.
    let del = DELETE_MANY_PAGE_SIZE as i64;
    let odd = n / 2;
    let mut deleted = vec![];
    loop {
        let body = d.c(json!({"deleteMany": {"filter": {"g": 1}}})).await;
        let st = body["status"].clone();
        deleted.push(st["deletedCount"].as_i64().unwrap());
        if st.get("moreData").is_none() {
            break;
        }
        assert_eq!(st["moreData"], true, "{st}");
    }
    let mut want = vec![del; (odd / del) as usize];
    if odd % del != 0 {
        want.push(odd % del);
    }
    assert_eq!(deleted, want);
    let here = d.all_in(REGION).await;
    assert_eq!(here.len() as i64, n - odd);
    assert_eq!(here, d.all_in(SECOND_REGION).await);
    // An empty filter empties the collection at once: deletedCount -1, as the original.
    let body = d.c(json!({"deleteMany": {}})).await;
    assert_eq!(body["status"], json!({"deletedCount": -1}));
    assert!(d.all_in(REGION).await.is_empty());
    assert!(d.all_in(SECOND_REGION).await.is_empty());
    let body = d.c(json!({"deleteMany": {"filter": {}}})).await;
    assert_eq!(body["status"], json!({"deletedCount": -1}));
}

fn is_uuid_version(id: &Value, version: usize) -> bool {
    id["$uuid"]
        .as_str()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .is_some_and(|u| u.get_version_num() == version)
}

fn is_object_id(id: &Value) -> bool {
    id["$objectId"]
        .as_str()
        .is_some_and(|s| s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn typed_default_ids_are_generated_and_returned_typed() {
    let d = DataDb::start().await;
    d.add_second_region().await;
    type Check = fn(&Value) -> bool;
    let cases: [(&str, Check); 5] = [
        ("uuid", |v| is_uuid_version(v, 4)),
        ("uuidv6", |v| is_uuid_version(v, 6)),
        ("uuidv7", |v| is_uuid_version(v, 7)),
        ("objectId", is_object_id),
        ("", |v| {
            v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
        }),
    ];
    for (i, (t, check)) in cases.iter().enumerate() {
        let coll = format!("t{i}");
        d.ok(
            "",
            json!({"createCollection": {"name": coll, "options": {"defaultId": {"type": t}}}}),
        )
        .await;
        let path = format!("/{coll}");
        let body = d
            .ok(&path, json!({"insertOne": {"document": {"a": 1}}}))
            .await;
        let id = body["status"]["insertedIds"][0].clone();
        assert!(check(&id), "{t}: {id}");
        let body = d
            .ok(
                &path,
                json!({"insertMany": {"documents": [{"a": 2}, {"_id": "mine", "a": 3}, {"a": 4}], "options": {"ordered": true}}}),
            )
            .await;
        let ids = body["status"]["insertedIds"].as_array().unwrap().clone();
        assert!(check(&ids[0]) && check(&ids[2]), "{t}: {ids:?}");
        assert_eq!(ids[1], "mine");
        // Upserts take the collection's type too.
        let body = d
            .ok(
                &path,
                json!({"updateOne": {"filter": {"a": 9}, "update": {"$set": {"b": 1}}, "options": {"upsert": true}}}),
            )
            .await;
        let up = body["status"]["upsertedId"].clone();
        assert!(check(&up), "{t}: {up}");
        let body = d
            .ok(
                &path,
                json!({"findOneAndUpdate": {"filter": {"a": 10}, "update": {"$set": {"b": 1}}, "options": {"upsert": true, "returnDocument": "after"}}}),
            )
            .await;
        assert!(check(&body["data"]["document"]["_id"]), "{t}: {body}");
        let body = d
            .ok(
                &path,
                json!({"findOneAndReplace": {"filter": {"a": 11}, "replacement": {"b": 2}, "options": {"upsert": true, "returnDocument": "after"}}}),
            )
            .await;
        assert!(check(&body["data"]["document"]["_id"]), "{t}: {body}");
        // The returned id finds the document, and every region stored the same id.
        let body = d
            .ok(&path, json!({"findOne": {"filter": {"_id": id}}}))
            .await;
        assert_eq!(body["data"]["document"]["a"], 1, "{t}: {body}");
        let (_, there) = d
            .send_in(SECOND_REGION, &path, json!({"find": {"sort": {"_id": 1}}}))
            .await;
        let (_, here) = d.send(&path, json!({"find": {"sort": {"_id": 1}}})).await;
        assert_eq!(here["data"]["documents"].as_array().unwrap().len(), 7);
        assert_eq!(here["data"], there["data"], "{t}");
    }
}
