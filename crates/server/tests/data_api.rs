//! The Data API over raw HTTP against a real server (built-in KMS, worker, monitor): every
//! command and operator family, paging, every bad-input class, auth, and suspension.
mod common;

use std::time::{Duration, Instant};

use common::{TestServer, register_key, send, wait_status};
use keyplane_app::Config;
use serde_json::{Value, json};

const REGION: &str = "us-east-2";

async fn server() -> TestServer {
    TestServer::with_config(Config {
        key_check_interval: Duration::from_millis(300),
        kms_grace_period: Duration::from_secs(3600),
        data_key_ttl: Duration::from_secs(300),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    })
    .await
}

async fn create_db(s: &TestServer, body: Value) -> String {
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    loc.rsplit('/').next().unwrap().to_string()
}

async fn classic_db(s: &TestServer, name: &str) -> String {
    create_db(
        s,
        json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                        "capacityUnits": 1, "region": REGION}),
    )
    .await
}

/// A ready classic database with collection `c` in keyspace `shop`.
async fn ready(s: &TestServer) -> String {
    let db = classic_db(s, "data").await;
    wait_status(s, &db, "ACTIVE").await;
    ok(s, &db, "", json!({"createCollection": {"name": "c"}})).await;
    db
}

/// A command with the admin token against `…/api/json/v1/shop{path}`.
async fn data(s: &TestServer, db: &str, path: &str, cmd: Value) -> (u16, Value) {
    data_as(s, &s.admin, db, path, cmd).await
}

async fn data_as(s: &TestServer, token: &str, db: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("/db/{db}-{REGION}/api/json/v1/shop{path}");
    send(s.req("POST", &url, None).header("Token", token).json(&cmd)).await
}

/// A command that must succeed: 200 and no errors.
async fn ok(s: &TestServer, db: &str, path: &str, cmd: Value) -> Value {
    let (st, body) = data(s, db, path, cmd.clone()).await;
    assert_eq!(st, 200, "{cmd} → {body}");
    assert!(body.get("errors").is_none(), "{cmd} → {body}");
    body
}

/// A command that must fail with 200 and one error of `code`; returns the message.
async fn fails(s: &TestServer, db: &str, path: &str, cmd: Value, code: &str) -> String {
    let (st, body) = data(s, db, path, cmd.clone()).await;
    assert_eq!(st, 200, "{cmd} → {body}");
    error_of(&body, code)
}

fn error_of(body: &Value, code: &str) -> String {
    let e = &body["errors"][0];
    assert_eq!(e["errorCode"], code, "{body}");
    for f in ["message", "family", "scope", "title", "id"] {
        assert!(e[f].is_string(), "error field {f} missing: {body}");
    }
    e["message"].as_str().unwrap().to_string()
}

fn ids(docs: &Value) -> Vec<Value> {
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].clone())
        .collect()
}

#[tokio::test]
async fn keyspace_commands() {
    let s = server().await;
    let db = classic_db(&s, "ks").await;
    wait_status(&s, &db, "ACTIVE").await;
    // Names, idempotency, options.
    ok(&s, &db, "", json!({"createCollection": {"name": "orders"}})).await;
    ok(&s, &db, "", json!({"createCollection": {"name": "orders"}})).await;
    fails(
        &s,
        &db,
        "",
        json!({"createCollection": {"name": "orders", "options": {"indexing": {"deny": ["x"]}}}}),
        "EXISTING_COLLECTION_DIFFERENT_SETTINGS",
    )
    .await;
    ok(&s, &db, "", json!({"createCollection": {"name": "idx", "options": {"indexing": {"deny": ["blob"]}, "defaultId": {"type": "uuid"}}}})).await;
    for bad in ["1x", "a-b", "", &"x".repeat(49)] {
        let msg = fails(
            &s,
            &db,
            "",
            json!({"createCollection": {"name": bad}}),
            "UNSUPPORTED_SCHEMA_NAME",
        )
        .await;
        assert!(msg.contains("letter"), "{msg}");
    }
    fails(
        &s,
        &db,
        "",
        json!({"createCollection": {"name": "v", "options": {"vector": {"dimension": 3}}}}),
        "INVALID_CREATE_COLLECTION_OPTIONS",
    )
    .await;
    fails(
        &s,
        &db,
        "",
        json!({"createCollection": {"name": "v", "options": {"defaultId": {"type": "snowflake"}}}}),
        "INVALID_CREATE_COLLECTION_OPTIONS",
    )
    .await;
    fails(
        &s,
        &db,
        "",
        json!({"createCollection": {"name": "v", "options": {"colour": 1}}}),
        "INVALID_CREATE_COLLECTION_OPTIONS",
    )
    .await;
    fails(
        &s,
        &db,
        "",
        json!({"createCollection": {}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
    let body = ok(&s, &db, "", json!({"findCollections": {}})).await;
    assert_eq!(body["status"]["collections"], json!(["idx", "orders"]));
    let body = ok(
        &s,
        &db,
        "",
        json!({"findCollections": {"options": {"explain": true}}}),
    )
    .await;
    assert_eq!(body["status"]["collections"][0]["name"], "idx");
    assert_eq!(
        body["status"]["collections"][0]["options"]["indexing"],
        json!({"deny": ["blob"]})
    );
    assert_eq!(
        body["status"]["collections"][1],
        json!({"name": "orders", "options": {}})
    );
    ok(&s, &db, "", json!({"deleteCollection": {"name": "orders"}})).await;
    fails(
        &s,
        &db,
        "/orders",
        json!({"findOne": {}}),
        "UNKNOWN_COLLECTION_OR_TABLE",
    )
    .await;
    // A keyspace that does not exist.
    let (st, body) = send(
        s.req("POST", &format!("/db/{db}-{REGION}/api/json/v1/nope"), None)
            .header("Token", &s.admin)
            .json(&json!({"findCollections": {}})),
    )
    .await;
    assert_eq!(st, 200);
    error_of(&body, "UNKNOWN_KEYSPACE");

    // Keyspaces: listed everywhere; created/dropped only on serverless databases.
    let body = ok(&s, &db, "", json!({"findKeyspaces": {}})).await;
    assert_eq!(body["status"]["keyspaces"], json!(["shop"]));
    let msg = fails(
        &s,
        &db,
        "",
        json!({"createKeyspace": {"name": "other"}}),
        "KEYSPACE_COMMAND_NOT_ALLOWED",
    )
    .await;
    assert!(msg.contains("serverless"), "{msg}");
    let vdb = create_db(
        &s,
        json!({"name": "vec", "keyspace": "shop", "cloudProvider": "AWS", "tier": "serverless",
                                   "capacityUnits": 1, "region": REGION, "dbType": "vector"}),
    )
    .await;
    wait_status(&s, &vdb, "ACTIVE").await;
    ok(&s, &vdb, "", json!({"createKeyspace": {"name": "other", "options": {"replication": {"class": "SimpleStrategy"}}}})).await;
    ok(&s, &vdb, "", json!({"createKeyspace": {"name": "other"}})).await;
    let body = ok(&s, &vdb, "", json!({"findKeyspaces": {}})).await;
    assert_eq!(body["status"]["keyspaces"], json!(["other", "shop"]));
    fails(
        &s,
        &vdb,
        "",
        json!({"dropKeyspace": {"name": "shop"}}),
        "KEYSPACE_COMMAND_NOT_ALLOWED",
    )
    .await;
    ok(&s, &vdb, "", json!({"dropKeyspace": {"name": "other"}})).await;
    let body = ok(&s, &vdb, "", json!({"findKeyspaces": {}})).await;
    assert_eq!(body["status"]["keyspaces"], json!(["shop"]));
    fails(
        &s,
        &vdb,
        "",
        json!({"createKeyspace": {"name": "bad-name"}}),
        "UNSUPPORTED_SCHEMA_NAME",
    )
    .await;
    // A collection command at the keyspace level says where it belongs.
    let msg = fails(
        &s,
        &db,
        "",
        json!({"insertOne": {"document": {}}}),
        "COMMAND_UNKNOWN",
    )
    .await;
    assert!(msg.contains("collection command"), "{msg}");
}

#[tokio::test]
async fn inserts_ids_and_per_document_errors() {
    let s = server().await;
    let db = ready(&s).await;
    let body = ok(&s, &db, "/c", json!({"insertOne": {"document": {"a": 1}}})).await;
    let id = body["status"]["insertedIds"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "generated _id is a UUID: {id}"
    );
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"_id": id}}})).await;
    assert_eq!(body["data"]["document"]["a"], 1);
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"_id": id, "a": 2}}}),
        "DOCUMENT_ALREADY_EXISTS",
    )
    .await;
    assert!(msg.contains(&id), "{msg}");

    // Unordered (the default): every document is tried; errors point at their documents.
    let docs = json!([{"_id": 1}, {"_id": 1}, {"_id": 2}, {"_id": 3, "$bad": 1}, {"_id": 4}]);
    let (st, body) = data(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": docs, "options": {"returnDocumentResponses": true}}}),
    )
    .await;
    assert_eq!(st, 200);
    let r = &body["status"]["documentResponses"];
    let statuses: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["OK", "ERROR", "OK", "ERROR", "OK"], "{body}");
    assert_eq!(r[1]["errorsIdx"], 0);
    assert_eq!(r[3]["errorsIdx"], 1);
    assert_eq!(body["errors"][0]["errorCode"], "DOCUMENT_ALREADY_EXISTS");
    assert_eq!(body["errors"][1]["errorCode"], "SHRED_BAD_FIELD_NAME");
    // Ordered: stops at the first failure, the rest are SKIPPED; without documentResponses,
    // insertedIds lists what went in.
    let (_, body) = data(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": [{"_id": 10}, {"_id": 1}, {"_id": 11}],
        "options": {"ordered": true, "returnDocumentResponses": true}}}),
    )
    .await;
    let statuses: Vec<&str> = body["status"]["documentResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["OK", "ERROR", "SKIPPED"], "{body}");
    let (_, body) = data(&s, &db, "/c", json!({"insertMany": {"documents": [{"_id": 20}, {"x": 1}], "options": {"ordered": false}}})).await;
    assert_eq!(
        body["status"]["insertedIds"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert!(body.get("errors").is_none());
    // Limits.
    let many: Vec<Value> = (0..101).map(|i| json!({"i": i})).collect();
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": many}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
    assert!(msg.contains("100"), "{msg}");
    fails(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": []}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
    let hundred: Vec<Value> = (0..100).map(|i| json!({"i": i})).collect();
    let body = ok(&s, &db, "/c", json!({"insertMany": {"documents": hundred}})).await;
    assert_eq!(body["status"]["insertedIds"].as_array().unwrap().len(), 100);
    let body = ok(&s, &db, "/c", json!({"estimatedDocumentCount": {}})).await;
    assert_eq!(body["status"]["count"], 107);
}

#[tokio::test]
async fn filters_sorts_projections_and_counts() {
    let s = server().await;
    let db = ready(&s).await;
    let docs = json!([
        {"_id": "a", "n": 1, "tags": ["x", "y"], "addr": {"city": "Oslo"}, "when": {"$date": 1_000}, "u": {"$uuid": "6f1f3c2e-6a2b-4c8e-9a54-1e1d3b6f0a01"}},
        {"_id": "b", "n": 2, "tags": ["y"], "addr": {"city": "Rome"}, "when": {"$date": 2_000}},
        {"_id": "c", "n": 3, "tags": [], "addr": {"city": "Oslo"}, "opt": null},
        {"_id": "d", "n": 4, "tags": ["x", "y", "z"], "s": "text"},
    ]);
    ok(&s, &db, "/c", json!({"insertMany": {"documents": docs}})).await;
    let cases = [
        (json!({"n": 2}), vec!["b"]),
        (json!({"n": {"$eq": 2}}), vec!["b"]),
        (json!({"n": {"$ne": 2}}), vec!["a", "c", "d"]),
        (json!({"n": {"$in": [1, 4]}}), vec!["a", "d"]),
        (json!({"n": {"$nin": [1, 4]}}), vec!["b", "c"]),
        (json!({"n": {"$gt": 2}}), vec!["c", "d"]),
        (json!({"n": {"$gte": 2, "$lt": 4}}), vec!["b", "c"]),
        (json!({"n": {"$lte": 1}}), vec!["a"]),
        (json!({"s": {"$exists": true}}), vec!["d"]),
        (json!({"s": {"$exists": false}}), vec!["a", "b", "c"]),
        (json!({"tags": {"$all": ["x", "y"]}}), vec!["a", "d"]),
        (json!({"tags": {"$size": 0}}), vec!["c"]),
        (json!({"tags": "y"}), vec!["a", "b", "d"]),
        (json!({"addr.city": "Oslo"}), vec!["a", "c"]),
        (json!({"$or": [{"n": 1}, {"n": 4}]}), vec!["a", "d"]),
        (
            json!({"$and": [{"addr.city": "Oslo"}, {"n": {"$gt": 1}}]}),
            vec!["c"],
        ),
        (json!({"$not": {"n": {"$lt": 3}}}), vec!["c", "d"]),
        (json!({"when": {"$gt": {"$date": 1_500}}}), vec!["b"]),
        (
            json!({"u": {"$uuid": "6f1f3c2e-6a2b-4c8e-9a54-1e1d3b6f0a01"}}),
            vec!["a"],
        ),
    ];
    for (filter, want) in cases {
        let body = ok(&s, &db, "/c", json!({"find": {"filter": filter.clone()}})).await;
        let got: Vec<Value> = ids(&body["data"]["documents"]);
        let want: Vec<Value> = want.into_iter().map(Value::from).collect();
        assert_eq!(got, want, "filter {filter}");
        let body = ok(
            &s,
            &db,
            "/c",
            json!({"countDocuments": {"filter": filter.clone()}}),
        )
        .await;
        assert_eq!(body["status"]["count"], want.len(), "count {filter}");
    }
    // Sort, projection, skip, limit; includeSortVector is accepted and ignored.
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"find": {"sort": {"n": -1}, "projection": {"n": 1},
        "options": {"skip": 1, "limit": 2, "includeSortVector": false}}}),
    )
    .await;
    assert_eq!(
        body["data"]["documents"],
        json!([{"_id": "c", "n": 3}, {"_id": "b", "n": 2}])
    );
    assert_eq!(body["data"]["nextPageState"], Value::Null);
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"addr.city": "Oslo"}, "sort": {"n": -1}, "projection": {"addr": 0, "tags": 0}}})).await;
    assert_eq!(body["data"]["document"]["_id"], "c");
    assert!(body["data"]["document"].get("addr").is_none());
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"n": 99}}})).await;
    assert_eq!(body["data"]["document"], Value::Null);
    // Types round-trip as the Data API encodes them.
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"_id": "a"}}})).await;
    assert_eq!(body["data"]["document"]["when"], json!({"$date": 1000}));
    // countDocuments bounds.
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"countDocuments": {"options": {"upperBound": 2}}}),
    )
    .await;
    assert_eq!(body["status"], json!({"count": 2, "moreData": true}));
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"countDocuments": {"filter": {}, "options": {"upperBound": 4}}}),
    )
    .await;
    assert_eq!(body["status"], json!({"count": 4}));
    // Unknown operators are the API's error, naming the operator.
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"find": {"filter": {"n": {"$regex": "x"}}}}),
        "FILTER_UNSUPPORTED_OPERATOR",
    )
    .await;
    assert!(msg.contains("$regex"), "{msg}");
    fails(
        &s,
        &db,
        "/c",
        json!({"find": {"sort": {"n": 2}}}),
        "SORT_CLAUSE_VALUE_INVALID",
    )
    .await;
    fails(
        &s,
        &db,
        "/c",
        json!({"find": {"sort": {"$vector": [0.1, 0.2]}}}),
        "VECTOR_SEARCH_NOT_SUPPORTED",
    )
    .await;
    fails(
        &s,
        &db,
        "/c",
        json!({"find": {"projection": {"a": 1, "b": 0}}}),
        "UNSUPPORTED_PROJECTION_PARAM",
    )
    .await;
}

#[tokio::test]
async fn updates_replaces_and_deletes() {
    let s = server().await;
    let db = ready(&s).await;
    ok(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": [
        {"_id": 1, "n": 1, "arr": [1, 2, 3], "old": "x", "g": "a"},
        {"_id": 2, "n": 5, "arr": [], "g": "a"},
        {"_id": 3, "n": 9, "g": "b"}]}}),
    )
    .await;
    let body = ok(&s, &db, "/c", json!({"updateOne": {"filter": {"_id": 1}, "update": {
        "$set": {"s": "v", "deep.x": 1}, "$inc": {"n": 2}, "$push": {"arr": 4}, "$rename": {"old": "new"},
        "$currentDate": {"at": true}}}})).await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 1})
    );
    let d = ok(&s, &db, "/c", json!({"findOne": {"filter": {"_id": 1}}})).await["data"]["document"]
        .clone();
    assert_eq!(
        (
            d["n"].clone(),
            d["arr"].clone(),
            d["new"].clone(),
            d["deep"]["x"].clone()
        ),
        (json!(3), json!([1, 2, 3, 4]), json!("x"), json!(1))
    );
    assert!(d["at"]["$date"].is_number(), "{d}");
    ok(&s, &db, "/c", json!({"updateOne": {"filter": {"_id": 1}, "update": {"$pop": {"arr": 1}, "$addToSet": {"tags": "t"}, "$unset": {"s": ""}, "$min": {"n": 0}, "$max": {"hi": 7}}}})).await;
    let d = ok(&s, &db, "/c", json!({"findOne": {"filter": {"_id": 1}}})).await["data"]["document"]
        .clone();
    assert_eq!(
        (
            d["arr"].clone(),
            d["tags"].clone(),
            d.get("s").cloned(),
            d["n"].clone(),
            d["hi"].clone()
        ),
        (json!([1, 2, 3]), json!(["t"]), None, json!(0), json!(7))
    );
    // updateMany, upsert with a generated _id and $setOnInsert.
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"updateMany": {"filter": {"g": "a"}, "update": {"$set": {"seen": true}}}}),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 2, "modifiedCount": 2})
    );
    let body = ok(&s, &db, "/c", json!({"updateMany": {"filter": {"g": "zz"}, "update": {"$set": {"k": 1}, "$setOnInsert": {"fresh": true}}, "options": {"upsert": true}}})).await;
    let up = body["status"]["upsertedId"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&up).is_ok(), "{body}");
    let d =
        ok(&s, &db, "/c", json!({"findOne": {"filter": {"_id": up}}})).await["data"]["document"]
            .clone();
    assert_eq!(
        (d["g"].clone(), d["k"].clone(), d["fresh"].clone()),
        (json!("zz"), json!(1), json!(true))
    );
    let body = ok(&s, &db, "/c", json!({"updateOne": {"filter": {"_id": "named"}, "update": {"$set": {"k": 2}}, "options": {"upsert": true}}})).await;
    assert_eq!(body["status"]["upsertedId"], "named");
    // findOneAndUpdate: returnDocument, sort, projection, upsert.
    let body = ok(&s, &db, "/c", json!({"findOneAndUpdate": {"filter": {"g": "a"}, "sort": {"n": -1}, "update": {"$inc": {"n": 100}},
        "projection": {"n": 1}, "options": {"returnDocument": "after"}}})).await;
    assert_eq!(body["data"]["document"], json!({"_id": 2, "n": 105}));
    assert_eq!(body["status"]["matchedCount"], 1);
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOneAndUpdate": {"filter": {"_id": 3}, "update": {"$set": {"n": 10}}}}),
    )
    .await;
    assert_eq!(body["data"]["document"]["n"], 9, "before by default");
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOneAndUpdate": {"filter": {"g": "new"}, "update": {"$set": {"n": 1}},
        "options": {"upsert": true, "returnDocument": "after"}}}),
    )
    .await;
    assert_eq!(body["status"]["matchedCount"], 0);
    assert_eq!(
        body["status"]["upsertedId"], body["data"]["document"]["_id"],
        "{body}"
    );
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOneAndUpdate": {"filter": {"g": "none"}, "update": {"$set": {"n": 1}}}}),
    )
    .await;
    assert_eq!(body["data"]["document"], Value::Null);
    assert_eq!(body["status"]["matchedCount"], 0);
    // findOneAndReplace keeps the _id; an upsert without one gets a UUID.
    let body = ok(&s, &db, "/c", json!({"findOneAndReplace": {"filter": {"_id": 3}, "replacement": {"only": 1}, "options": {"returnDocument": "after"}}})).await;
    assert_eq!(body["data"]["document"], json!({"_id": 3, "only": 1}));
    let body = ok(&s, &db, "/c", json!({"findOneAndReplace": {"filter": {"only": 42}, "replacement": {"only": 43}, "options": {"upsert": true}}})).await;
    assert_eq!(body["data"]["document"], Value::Null);
    let rid = body["status"]["upsertedId"].as_str().unwrap().to_string();
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"only": 43}}})).await;
    assert_eq!(body["data"]["document"]["_id"], rid.as_str());
    fails(
        &s,
        &db,
        "/c",
        json!({"findOneAndReplace": {"filter": {"_id": 3}, "replacement": {"_id": 4}}}),
        "DOCUMENT_REPLACE_DIFFERENT_DOCID",
    )
    .await;
    // Unknown update operators and _id changes are the API's errors.
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"updateOne": {"filter": {}, "update": {"$bogus": {"n": 2}}}}),
        "UNSUPPORTED_UPDATE_OPERATION",
    )
    .await;
    assert!(msg.contains("$bogus"), "{msg}");
    fails(
        &s,
        &db,
        "/c",
        json!({"updateOne": {"filter": {}, "update": {"$set": {"_id": 9}}}}),
        "UNSUPPORTED_UPDATE_OPERATOR_FOR_DOC_ID",
    )
    .await;
    fails(
        &s,
        &db,
        "/c",
        json!({"updateOne": {"filter": {}, "update": {}}}),
        "UNSUPPORTED_UPDATE_OPERATION",
    )
    .await;
    fails(&s, &db, "/c", json!({"findOneAndUpdate": {"filter": {}, "update": {"$set": {"a": 1}}, "options": {"returnDocument": "later"}}}), "COMMAND_FIELD_VALUE_INVALID").await;
    // Deletes.
    let body = ok(&s, &db, "/c", json!({"findOneAndDelete": {"filter": {"g": "a"}, "sort": {"n": 1}, "projection": {"g": 1}}})).await;
    assert_eq!(body["data"]["document"], json!({"_id": 1, "g": "a"}));
    assert_eq!(body["status"]["deletedCount"], 1);
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOneAndDelete": {"filter": {"g": "nothing"}}}),
    )
    .await;
    assert_eq!(
        (
            body["data"]["document"].clone(),
            body["status"]["deletedCount"].clone()
        ),
        (Value::Null, json!(0))
    );
    let body = ok(&s, &db, "/c", json!({"deleteOne": {"filter": {"_id": 2}}})).await;
    assert_eq!(body["status"]["deletedCount"], 1);
    let body = ok(&s, &db, "/c", json!({"deleteOne": {"filter": {"_id": 2}}})).await;
    assert_eq!(body["status"]["deletedCount"], 0);
    let before = ok(&s, &db, "/c", json!({"countDocuments": {}})).await["status"]["count"]
        .as_u64()
        .unwrap();
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"deleteOne": {"filter": {}, "sort": {"k": -1}}}),
    )
    .await;
    assert_eq!(body["status"]["deletedCount"], 1);
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOne": {"filter": {"_id": "named"}}}),
    )
    .await;
    assert_eq!(
        body["data"]["document"],
        Value::Null,
        "the sort picked the highest k"
    );
    // An empty filter empties the collection at once; the original answers -1 for it.
    assert!(before > 1);
    let body = ok(&s, &db, "/c", json!({"deleteMany": {"filter": {}}})).await;
    assert_eq!(body["status"], json!({"deletedCount": -1}));
    let body = ok(&s, &db, "/c", json!({"countDocuments": {}})).await;
    assert_eq!(body["status"]["count"], 0);
}

#[tokio::test]
async fn find_streams_pages() {
    let s = server().await;
    let db = ready(&s).await;
    for chunk in 0..5 {
        let docs: Vec<Value> = (0..100)
            .map(|i| json!({"_id": chunk * 100 + i, "n": chunk * 100 + i, "even": i % 2 == 0}))
            .collect();
        ok(&s, &db, "/c", json!({"insertMany": {"documents": docs}})).await;
    }
    // Unsorted, filtered: pages of 20 until nextPageState is null.
    let mut seen = vec![];
    let mut state: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut opts = json!({});
        if let Some(p) = &state {
            opts["pageState"] = json!(p);
        }
        let body = ok(
            &s,
            &db,
            "/c",
            json!({"find": {"filter": {"even": true}, "options": opts}}),
        )
        .await;
        let docs = body["data"]["documents"].as_array().unwrap();
        assert!(docs.len() <= 20);
        seen.extend(docs.iter().map(|d| d["n"].as_u64().unwrap()));
        pages += 1;
        match body["data"]["nextPageState"].as_str() {
            Some(p) => state = Some(p.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 13);
    assert_eq!(seen, (0..500).filter(|n| n % 2 == 0).collect::<Vec<u64>>());
    // Sorted with a limit across pages, as astrapy sends it (limit and skip repeated).
    let mut got = vec![];
    let mut state: Option<String> = None;
    loop {
        let mut opts = json!({"limit": 45, "skip": 5});
        if let Some(p) = &state {
            opts["pageState"] = json!(p);
        }
        let body = ok(
            &s,
            &db,
            "/c",
            json!({"find": {"sort": {"n": -1}, "projection": {"n": 1}, "options": opts}}),
        )
        .await;
        got.extend(
            body["data"]["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["n"].as_u64().unwrap()),
        );
        match body["data"]["nextPageState"].as_str() {
            Some(p) => state = Some(p.to_string()),
            None => break,
        }
    }
    assert_eq!(got, (450..495).rev().collect::<Vec<u64>>());
    fails(
        &s,
        &db,
        "/c",
        json!({"find": {"options": {"pageState": "zz-not-a-state"}}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
    let body = ok(&s, &db, "/c", json!({"countDocuments": {}})).await;
    assert_eq!(body["status"]["count"], 500);
    ok(&s, &db, "/c", json!({"insertMany": {"documents": (500..1101).take(100).map(|i| json!({"_id": i})).collect::<Vec<_>>()}})).await;
    for start in (600..1101).step_by(100) {
        let docs: Vec<Value> = (start..(start + 100).min(1101))
            .map(|i| json!({"_id": i}))
            .collect();
        ok(&s, &db, "/c", json!({"insertMany": {"documents": docs}})).await;
    }
    let body = ok(&s, &db, "/c", json!({"countDocuments": {}})).await;
    assert_eq!(body["status"], json!({"count": 1000, "moreData": true}));
}

#[tokio::test]
async fn every_bad_input_is_a_clear_error() {
    let s = server().await;
    let db = ready(&s).await;
    let url = format!("/db/{db}-{REGION}/api/json/v1/shop/c");
    let raw = |body: &'static str| {
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .header("content-type", "application/json")
            .body(body)
    };
    // Malformed JSON, not an object, not exactly one command.
    // As the original, these are command errors (200) with its codes.
    for (body, code, want) in [
        ("{\"find\":", "REQUEST_NOT_JSON", "not valid JSON"),
        ("[1]", "REQUEST_STRUCTURE_MISMATCH", "JSON object"),
        ("{}", "REQUEST_STRUCTURE_MISMATCH", "exactly one command"),
        (
            "{\"find\":{},\"findOne\":{}}",
            "REQUEST_STRUCTURE_MISMATCH",
            "exactly one command",
        ),
        ("{\"find\":[]}", "REQUEST_STRUCTURE_MISMATCH", "'find'"),
    ] {
        let (st, resp) = send(raw(body)).await;
        assert_eq!(st, 200, "{body}: {resp}");
        let msg = error_of(&resp, code);
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // Wrong types name the field.
    let wrong = [
        json!({"find": {"options": {"limit": -1}}}),
        json!({"find": {"options": {"skip": "1"}}}),
        json!({"find": {"options": []}}),
        json!({"insertMany": {"documents": {"a": 1}}}),
        json!({"insertMany": {"documents": [{}], "options": {"ordered": "yes"}}}),
        json!({"insertOne": {"document": [1]}}),
        json!({"insertOne": {}}),
        json!({"updateOne": {"filter": {}, "update": {"$set": {"a": 1}}, "options": {"upsert": 1}}}),
        json!({"countDocuments": {"options": {"upperBound": 0}}}),
    ];
    for cmd in wrong {
        let msg = fails(&s, &db, "/c", cmd.clone(), "COMMAND_FIELD_VALUE_INVALID").await;
        assert!(msg.contains('\''), "{cmd}: {msg}");
    }
    // A clause of the wrong type is the clause's error, as the original answers it.
    fails(
        &s,
        &db,
        "/c",
        json!({"find": {"filter": "x"}}),
        "FILTER_UNSUPPORTED_DATA_TYPE",
    )
    .await;
    // Unknown fields are named as unknown.
    for cmd in [
        json!({"find": {"filters": {}}}),
        json!({"find": {"options": {"limt": 1}}}),
    ] {
        let msg = fails(&s, &db, "/c", cmd.clone(), "COMMAND_FIELD_UNKNOWN").await;
        assert!(msg.contains('\''), "{cmd}: {msg}");
    }
    let msg = fails(&s, &db, "/c", json!({"findAll": {}}), "COMMAND_UNKNOWN").await;
    assert!(msg.contains("findAll"), "{msg}");
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"createCollection": {"name": "x"}}),
        "COMMAND_UNKNOWN",
    )
    .await;
    assert!(msg.contains("keyspace command"), "{msg}");
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"find": {"filter": {"$where": "1"}}}),
        "FILTER_INVALID_EXPRESSION",
    )
    .await;
    assert!(msg.contains("$where"), "{msg}");
    // Oversized document: the store's limit, stated.
    let big = "x".repeat(keyplane_docstore::MAX_DOCUMENT_BYTES + 10);
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"big": big}}}),
        "SHRED_DOC_LIMIT_VIOLATION",
    )
    .await;
    assert!(
        msg.contains(&keyplane_docstore::MAX_DOCUMENT_BYTES.to_string()),
        "{msg}"
    );
    // Oversized request: refused before it is read in full.
    let huge = "y".repeat(keyplane_server::data_api::MAX_REQUEST_BYTES + 1);
    let (st, resp) = data(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"big": huge}}}),
    )
    .await;
    assert_eq!(st, 413, "{resp}");
    let msg = error_of(&resp, "REQUEST_TOO_LARGE");
    assert!(
        msg.contains(&keyplane_server::data_api::MAX_REQUEST_BYTES.to_string()),
        "{msg}"
    );
    // Deep nesting: in a document, in a filter, and beyond what the parser takes.
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!({"d": deep});
    }
    let msg = fails(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"x": deep.clone()}}}),
        "SHRED_DOC_LIMIT_VIOLATION",
    )
    .await;
    assert!(msg.contains("16"), "{msg}");
    let mut deep_filter = json!({"n": 1});
    for _ in 0..20 {
        deep_filter = json!({"$or": [deep_filter, {"n": 2}]});
    }
    let (st, resp) = data(&s, &db, "/c", json!({"find": {"filter": deep_filter}})).await;
    assert_eq!(st, 200);
    let code = resp["errors"][0]["errorCode"]
        .as_str()
        .unwrap_or_else(|| panic!("{resp}"));
    assert!(
        code == "FILTER_INVALID_EXPRESSION" || code == "SHRED_DOC_LIMIT_VIOLATION",
        "{resp}"
    );
    let abyss = format!(
        "{{\"insertOne\":{{\"document\":{{\"x\":{}1{}}}}}}}",
        "[".repeat(300),
        "]".repeat(300)
    );
    let (st, resp) = send(
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .body(abyss),
    )
    .await;
    assert_eq!(st, 200, "{resp}");
    error_of(&resp, "SHRED_DOC_LIMIT_VIOLATION");
    // Bad _id types, $-fields.
    fails(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"_id": [1]}}}),
        "SHRED_BAD_DOCID_TYPE",
    )
    .await;
    fails(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"$set": 1}}}),
        "SHRED_BAD_FIELD_NAME",
    )
    .await;
    // None of it hurt the collection.
    let body = ok(&s, &db, "/c", json!({"estimatedDocumentCount": {}})).await;
    assert_eq!(body["status"]["count"], 0);
}

#[tokio::test]
async fn auth_and_endpoints() {
    let s = server().await;
    let db = ready(&s).await;
    let url = format!("/db/{db}-{REGION}/api/json/v1/shop/c");
    let cmd = json!({"findOne": {}});
    let (st, body) = send(s.req("POST", &url, None).json(&cmd)).await;
    assert_eq!(st, 401, "{body}");
    error_of(&body, "UNAUTHENTICATED_REQUEST");
    let (st, body) = send(
        s.req("POST", &url, None)
            .header("Token", "AstraCS:nope:nope")
            .json(&cmd),
    )
    .await;
    assert_eq!(st, 401, "{body}");
    // Authorization: Bearer works as well as Token.
    let (st, body) = send(
        s.req("POST", &url, None)
            .header("Authorization", format!("Bearer {}", s.admin))
            .json(&cmd),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    // Another organization's token does not learn the database exists.
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_admin = s.token(other.id, keyplane_core::Role::OrgAdmin).await;
    let (st, body) = data_as(&s, &other_admin, &db, "/c", cmd.clone()).await;
    assert_eq!(st, 404, "{body}");
    error_of(&body, "DATABASE_NOT_FOUND");
    // Unknown endpoints.
    for ep in [
        format!("{db}-mars-1"),
        "not-a-database".to_string(),
        format!("{}-{REGION}", uuid::Uuid::new_v4()),
    ] {
        let (st, body) = send(
            s.req("POST", &format!("/db/{ep}/api/json/v1/shop/c"), None)
                .header("Token", &s.admin)
                .json(&cmd),
        )
        .await;
        assert_eq!(st, 404, "{ep}: {body}");
    }
    // A read-only token reads but cannot write.
    let ro = s.token(s.org, keyplane_core::Role::ReadOnly).await;
    let (st, _) = data_as(&s, &ro, &db, "/c", json!({"find": {}})).await;
    assert_eq!(st, 200);
    for (path, w) in [
        ("/c", json!({"insertOne": {"document": {}}})),
        ("/c", json!({"deleteMany": {}})),
        ("", json!({"createCollection": {"name": "z"}})),
        ("", json!({"deleteCollection": {"name": "c"}})),
    ] {
        let (st, body) = data_as(&s, &ro, &db, path, w.clone()).await;
        assert_eq!(st, 403, "{w}: {body}");
        error_of(&body, "UNAUTHORIZED_REQUEST");
    }
}

#[tokio::test]
async fn a_suspended_database_answers_every_command_with_the_key() {
    let s = server().await;
    let arn = register_key(&s, REGION).await;
    let db = ready(&s).await;
    ok(
        &s,
        &db,
        "/c",
        json!({"insertOne": {"document": {"_id": "k"}}}),
    )
    .await;
    s.kms
        .customer(REGION)
        .disable_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    wait_status(&s, &db, "SUSPENDED").await;
    for (path, cmd) in [
        ("/c", json!({"findOne": {}})),
        ("/c", json!({"insertOne": {"document": {}}})),
        ("/c", json!({"countDocuments": {}})),
        ("", json!({"findCollections": {}})),
    ] {
        let (st, body) = data(&s, &db, path, cmd.clone()).await;
        assert_eq!(st, 503, "{cmd}: {body}");
        let msg = error_of(&body, "DATABASE_SUSPENDED");
        assert!(msg.contains(&arn) && msg.contains("disabled"), "{msg}");
        assert_eq!(body["errors"][0]["family"], "SERVER");
    }
}

/// findOneAndUpdate and findOneAndReplace count a document as modified only when the command
/// changed it, as updateOne does.
#[tokio::test]
async fn find_one_and_modify_counts_only_real_changes() {
    let s = server().await;
    let db = ready(&s).await;
    ok(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": [{"_id": 1, "a": 1}, {"_id": 2, "a": 1}]}}),
    )
    .await;
    let fou = |filter: Value, update: Value, options: Value| json!({"findOneAndUpdate": {"filter": filter, "update": update, "options": options}});
    // The same value again: matched, not modified.
    let body = ok(
        &s,
        &db,
        "/c",
        fou(json!({"_id": 1}), json!({"$set": {"a": 1}}), json!({})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 0})
    );
    assert_eq!(body["data"]["document"], json!({"_id": 1, "a": 1}));
    let body = ok(
        &s,
        &db,
        "/c",
        fou(
            json!({"_id": 1}),
            json!({"$max": {"a": 0}}),
            json!({"returnDocument": "after"}),
        ),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 0})
    );
    let body = ok(
        &s,
        &db,
        "/c",
        fou(
            json!({"_id": 1}),
            json!({"$inc": {"a": 1}}),
            json!({"returnDocument": "after"}),
        ),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 1})
    );
    assert_eq!(body["data"]["document"], json!({"_id": 1, "a": 2}));
    let body = ok(
        &s,
        &db,
        "/c",
        fou(json!({"_id": 9}), json!({"$inc": {"a": 1}}), json!({})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 0, "modifiedCount": 0})
    );
    // An upsert inserts: nothing matched or modified, the new _id reported.
    let body = ok(
        &s,
        &db,
        "/c",
        fou(
            json!({"k": "new"}),
            json!({"$set": {"a": 5}}),
            json!({"upsert": true, "returnDocument": "after"}),
        ),
    )
    .await;
    assert_eq!(
        (
            body["status"]["matchedCount"].clone(),
            body["status"]["modifiedCount"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(
        body["status"]["upsertedId"], body["data"]["document"]["_id"],
        "{body}"
    );
    // The same upsert again matches the document it made, and changes nothing.
    let body = ok(
        &s,
        &db,
        "/c",
        fou(
            json!({"k": "new"}),
            json!({"$set": {"a": 5}}),
            json!({"upsert": true}),
        ),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 0})
    );

    let far = |filter: Value, replacement: Value, options: Value| json!({"findOneAndReplace": {"filter": filter, "replacement": replacement, "options": options}});
    let body = ok(
        &s,
        &db,
        "/c",
        far(json!({"_id": 2}), json!({"a": 1}), json!({})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 0}),
        "an identical replacement"
    );
    let body = ok(
        &s,
        &db,
        "/c",
        far(json!({"_id": 2}), json!({"_id": 2, "a": 1}), json!({})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 0}),
        "naming its own _id"
    );
    let body = ok(
        &s,
        &db,
        "/c",
        far(
            json!({"_id": 2}),
            json!({"b": 1}),
            json!({"returnDocument": "after"}),
        ),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 1})
    );
    assert_eq!(body["data"]["document"], json!({"_id": 2, "b": 1}));
    let body = ok(
        &s,
        &db,
        "/c",
        far(json!({"_id": 9}), json!({"b": 1}), json!({})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 0, "modifiedCount": 0})
    );
    // A replacing upsert without any _id gets a UUID, the one in the status.
    let body = ok(
        &s,
        &db,
        "/c",
        far(
            json!({"r": 1}),
            json!({"r": 2}),
            json!({"upsert": true, "returnDocument": "after"}),
        ),
    )
    .await;
    assert_eq!(
        (
            body["status"]["matchedCount"].clone(),
            body["status"]["modifiedCount"].clone()
        ),
        (json!(0), json!(0))
    );
    let id = body["status"]["upsertedId"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{body}");
    assert_eq!(body["data"]["document"], json!({"_id": id, "r": 2}));
    let body = ok(
        &s,
        &db,
        "/c",
        far(json!({"r": 2}), json!({"r": 3}), json!({"upsert": true})),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 1, "modifiedCount": 1})
    );
    let body = ok(&s, &db, "/c", json!({"findOne": {"filter": {"r": 3}}})).await;
    assert_eq!(body["data"]["document"]["_id"], id.as_str());
}

/// `$currentDate` writes the request's time: one date for every document a command updates and
/// every region it reaches.
#[tokio::test]
async fn current_date_is_one_time_per_command() {
    let s = server().await;
    let db = ready(&s).await;
    let docs: Vec<Value> = (0..300).map(|i| json!({"_id": i, "g": i % 2})).collect();
    for chunk in docs.chunks(100) {
        ok(&s, &db, "/c", json!({"insertMany": {"documents": chunk}})).await;
    }
    // A second region, which every write reaches too.
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        let dcs = view["info"]["datacenters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if view["status"] == "ACTIVE"
            && dcs.len() == 2
            && dcs.iter().all(|d| d["status"] == "ACTIVE")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second region never became ACTIVE: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = chrono_ms();
    // One full page of updateMany (50 documents; more are paged, one command per page).
    let body = ok(&s, &db, "/c", json!({"updateMany": {"filter": {"g": 0, "_id": {"$lt": 100}}, "update": {"$currentDate": {"at": true}, "$set": {"seen": 1}}}})).await;
    let end = chrono_ms();
    assert_eq!(
        body["status"],
        json!({"matchedCount": 50, "modifiedCount": 50})
    );
    let mut dates = std::collections::BTreeSet::new();
    for region in [REGION, "eu-west-1"] {
        let url = format!("/db/{db}-{region}/api/json/v1/shop/c");
        let mut state: Option<String> = None;
        let mut n = 0;
        loop {
            let mut opts = json!({});
            if let Some(p) = &state {
                opts["pageState"] = json!(p);
            }
            let cmd =
                json!({"find": {"filter": {"seen": 1}, "projection": {"at": 1}, "options": opts}});
            let (st, body) = send(
                s.req("POST", &url, None)
                    .header("Token", &s.admin)
                    .json(&cmd),
            )
            .await;
            assert_eq!(st, 200, "{body}");
            for d in body["data"]["documents"].as_array().unwrap() {
                dates.insert(
                    d["at"]["$date"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("no date: {d}")),
                );
                n += 1;
            }
            match body["data"]["nextPageState"].as_str() {
                Some(p) => state = Some(p.to_string()),
                None => break,
            }
        }
        assert_eq!(n, 50, "{region}");
    }
    assert_eq!(
        dates.len(),
        1,
        "one date across documents and regions: {dates:?}"
    );
    let at = *dates.iter().next().unwrap();
    assert!(start <= at && at <= end, "{start} <= {at} <= {end}");
    // updateOne and findOneAndUpdate (and an upsert) write the request's time as well.
    let body = ok(&s, &db, "/c", json!({"findOneAndUpdate": {"filter": {"_id": 1}, "update": {"$currentDate": {"at": {"$type": "date"}}}, "options": {"returnDocument": "after"}}})).await;
    assert!(body["data"]["document"]["at"]["$date"].as_i64().unwrap() >= at);
    let body = ok(&s, &db, "/c", json!({"updateOne": {"filter": {"_id": "up"}, "update": {"$currentDate": {"at": true}}, "options": {"upsert": true}}})).await;
    assert_eq!(body["status"]["upsertedId"], "up");
    let mut seen = vec![];
    for region in [REGION, "eu-west-1"] {
        let url = format!("/db/{db}-{region}/api/json/v1/shop/c");
        let (_, body) = send(
            s.req("POST", &url, None)
                .header("Token", &s.admin)
                .json(&json!({"findOne": {"filter": {"_id": "up"}}})),
        )
        .await;
        seen.push(body["data"]["document"]["at"].clone());
    }
    assert!(seen[0]["$date"].is_i64(), "{seen:?}");
    assert_eq!(
        seen[0], seen[1],
        "the upserted document has the same date in both regions"
    );
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Dotted paths reach into arrays of objects: `items.sku` matches any item's sku, with every
/// operator, in find, count, update and delete.
#[tokio::test]
async fn dotted_paths_match_through_arrays_of_objects() {
    let s = server().await;
    let db = ready(&s).await;
    ok(
        &s,
        &db,
        "/c",
        json!({"insertMany": {"documents": [
        {"_id": 1, "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 7}]},
        {"_id": 2, "items": [{"sku": "C3", "qty": 1}]},
        {"_id": 3, "items": {"sku": "A1", "qty": 3}},
        {"_id": 4, "orders": [{"lines": [{"sku": "A1"}]}]},
        {"_id": 5, "items": [{"qty": 9}]},
        {"_id": 6}]}}),
    )
    .await;
    let find = |filter: Value| json!({"find": {"filter": filter, "projection": {"_id": 1}}});
    for (filter, want) in [
        (json!({"items.sku": "A1"}), json!([1, 3])),
        (json!({"items.sku": "B2"}), json!([1])),
        (json!({"items.sku": {"$in": ["B2", "C3"]}}), json!([1, 2])),
        (json!({"items.sku": {"$nin": ["A1"]}}), json!([2, 4, 5, 6])),
        (json!({"items.sku": {"$ne": "C3"}}), json!([1, 3, 4, 5, 6])),
        (json!({"items.qty": {"$gt": 5}}), json!([1, 5])),
        (json!({"items.qty": {"$gte": 1, "$lte": 2}}), json!([1, 2])),
        (json!({"items.sku": {"$exists": true}}), json!([1, 2, 3])),
        (json!({"items.sku": {"$exists": false}}), json!([4, 5, 6])),
        (json!({"orders.lines.sku": "A1"}), json!([4])),
        (
            json!({"$or": [{"items.sku": "C3"}, {"orders.lines.sku": "A1"}]}),
            json!([2, 4]),
        ),
    ] {
        let body = ok(&s, &db, "/c", find(filter.clone())).await;
        assert_eq!(json!(ids(&body["data"]["documents"])), want, "{filter}");
    }
    // The same paths project through the arrays.
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOne": {"filter": {"_id": 1}, "projection": {"items.sku": 1, "_id": 0}}}),
    )
    .await;
    assert_eq!(
        body["data"]["document"],
        json!({"items": [{"sku": "A1"}, {"sku": "B2"}]})
    );
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOne": {"filter": {"_id": 1}, "projection": {"items.qty": 0}}}),
    )
    .await;
    assert_eq!(
        body["data"]["document"],
        json!({"_id": 1, "items": [{"sku": "A1"}, {"sku": "B2"}]})
    );
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"countDocuments": {"filter": {"items.sku": "A1"}}}),
    )
    .await;
    assert_eq!(body["status"]["count"], 2);
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"findOne": {"filter": {"items.qty": {"$lt": 2}}}}),
    )
    .await;
    assert_eq!(body["data"]["document"]["_id"], 2);
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"updateMany": {"filter": {"items.sku": "A1"}, "update": {"$set": {"hasA1": true}}}}),
    )
    .await;
    assert_eq!(
        body["status"],
        json!({"matchedCount": 2, "modifiedCount": 2})
    );
    let body = ok(
        &s,
        &db,
        "/c",
        json!({"deleteMany": {"filter": {"items.sku": {"$in": ["C3"]}}}}),
    )
    .await;
    assert_eq!(body["status"]["deletedCount"], 1);
    let body = ok(&s, &db, "/c", json!({"countDocuments": {}})).await;
    assert_eq!(body["status"]["count"], 5);
    // The largest lists are answered; a filter past what SQLite can bind is refused clearly.
    let list: Vec<Value> = (0..1000).map(|i| json!(format!("A{i}"))).collect();
    let body = ok(&s, &db, "/c", find(json!({"items.sku": {"$in": list}}))).await;
    assert_eq!(json!(ids(&body["data"]["documents"])), json!([1, 3]));
    let body = ok(&s, &db, "/c", find(json!({"n": {"$nin": list}}))).await;
    assert_eq!(body["data"]["documents"].as_array().map(Vec::len), Some(5));
    let many: Vec<Value> = (0..40)
        .map(|_| json!({"items.sku": {"$in": list}}))
        .collect();
    let msg = fails(
        &s,
        &db,
        "/c",
        find(json!({"$or": many})),
        "FILTER_INVALID_EXPRESSION",
    )
    .await;
    assert!(msg.contains("too large"), "{msg}");
}
