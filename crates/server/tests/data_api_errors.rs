//! The Data API's error answers over HTTP, as the original gives them (issue 14, Data API 1
//! and 5): every family of refusal by the original's code name, `errors[].documentIds`,
//! `insertOne` failures with `status.insertedIds: []`, `"options": {}` where the original
//! accepts it and `COMMAND_ACCEPTS_NO_OPTIONS` where it does not, and bodies read strictly.
//! On a customer-keyed database of a real server.
mod common;

use common::data::{DataDb, error_of};
use serde_json::json;

#[tokio::test]
async fn refusals_carry_the_original_codes_by_name() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [{"_id": 1, "n": 1, "s": "x"}, {"_id": 2, "n": 2}]}}))
        .await;
    for (cmd, code, scope) in [
        // Filters.
        (
            json!({"find": {"filter": {"n": {"$regex": "x"}}}}),
            "FILTER_UNSUPPORTED_OPERATOR",
            "FILTER",
        ),
        (
            json!({"find": {"filter": {"$where": "1"}}}),
            "FILTER_INVALID_EXPRESSION",
            "FILTER",
        ),
        (
            json!({"find": {"filter": {"$and": [1]}}}),
            "FILTER_UNSUPPORTED_DATA_TYPE",
            "FILTER",
        ),
        (
            json!({"find": {"filter": "x"}}),
            "FILTER_UNSUPPORTED_DATA_TYPE",
            "FILTER",
        ),
        (
            json!({"deleteMany": {"filter": [1]}}),
            "FILTER_UNSUPPORTED_DATA_TYPE",
            "FILTER",
        ),
        // Sorts.
        (
            json!({"find": {"sort": [1]}}),
            "SORT_CLAUSE_INVALID",
            "SORT",
        ),
        (
            json!({"find": {"sort": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1, "h": 1, "i": 1, "j": 1, "k": 1}}}),
            "SORT_CLAUSE_INVALID",
            "SORT",
        ),
        (
            json!({"find": {"sort": {"a..b": 1}}}),
            "SORT_CLAUSE_PATH_INVALID",
            "SORT",
        ),
        (
            json!({"find": {"sort": {"n": 2}}}),
            "SORT_CLAUSE_VALUE_INVALID",
            "SORT",
        ),
        // Projections.
        (
            json!({"find": {"projection": {"n": 1, "s": 0}}}),
            "UNSUPPORTED_PROJECTION_PARAM",
            "PROJECTION",
        ),
        (
            json!({"findOne": {"projection": "n"}}),
            "UNSUPPORTED_PROJECTION_DEFINITION",
            "PROJECTION",
        ),
        // Command fields.
        (
            json!({"find": {"options": {"limit": "3"}}}),
            "COMMAND_FIELD_VALUE_INVALID",
            "",
        ),
        (json!({"find": {"filtre": {}}}), "COMMAND_FIELD_UNKNOWN", ""),
        (json!({"frobnicate": {}}), "COMMAND_UNKNOWN", ""),
        (
            json!({"deleteMany": {"filter": {}, "options": {"x": 1}}}),
            "COMMAND_ACCEPTS_NO_OPTIONS",
            "",
        ),
        // Documents.
        (
            json!({"insertOne": {"document": {"$x": 1}}}),
            "SHRED_BAD_FIELD_NAME",
            "DOCUMENT",
        ),
        (
            json!({"insertOne": {"document": {"_id": [1]}}}),
            "SHRED_BAD_DOCID_TYPE",
            "DOCUMENT",
        ),
        (
            json!({"insertOne": {"document": {"_id": ""}}}),
            "SHRED_BAD_DOCID_VALUE",
            "DOCUMENT",
        ),
        (
            json!({"insertOne": {"document": {"_id": 1}}}),
            "DOCUMENT_ALREADY_EXISTS",
            "DOCUMENT",
        ),
        (
            json!({"findOneAndReplace": {"filter": {"_id": 1}, "replacement": {"_id": 9}}}),
            "DOCUMENT_REPLACE_DIFFERENT_DOCID",
            "DOCUMENT",
        ),
        // Updates.
        (
            json!({"updateOne": {"filter": {"_id": 1}, "update": {"$bogus": {"n": 1}}}}),
            "UNSUPPORTED_UPDATE_OPERATION",
            "UPDATE",
        ),
        (
            json!({"updateOne": {"filter": {"_id": 1}, "update": {"$inc": {"n": "1"}}}}),
            "UNSUPPORTED_UPDATE_OPERATION_PARAM",
            "UPDATE",
        ),
        (
            json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"a..b": 1}}}}),
            "UNSUPPORTED_UPDATE_OPERATION_PATH",
            "UPDATE",
        ),
        (
            json!({"updateOne": {"filter": {"_id": 1}, "update": {"$inc": {"s": 1}}}}),
            "UNSUPPORTED_UPDATE_OPERATION_TARGET",
            "UPDATE",
        ),
        (
            json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"_id": 5}}}}),
            "UNSUPPORTED_UPDATE_OPERATOR_FOR_DOC_ID",
            "UPDATE",
        ),
    ] {
        let e = d.fails(cmd.clone(), code).await;
        assert_eq!(e["scope"], scope, "{cmd} → {e}");
        assert_eq!(e["family"], "REQUEST", "{cmd} → {e}");
    }
    // Schema: unknown collection and keyspace, bad names, bad options.
    let (_, body) = d.send("/nope", json!({"findOne": {}})).await;
    error_of(
        &body,
        "UNKNOWN_COLLECTION_OR_TABLE",
        &json!("findOne on nope"),
    );
    let (_, body) = d.send("/bad-name", json!({"findOne": {}})).await;
    assert!(body["errors"][0]["errorCode"].is_string(), "{body}");
    let (_, body) = d
        .send("", json!({"createCollection": {"name": "bad-name"}}))
        .await;
    error_of(&body, "UNSUPPORTED_SCHEMA_NAME", &json!("bad-name"));
    // A malformed `indexing` content is the store's refusal: never a 500.
    let (st, body) = d
        .send(
            "",
            json!({"createCollection": {"name": "i", "options": {"indexing": {"deny": "x"}}}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    error_of(
        &body,
        "INVALID_CREATE_COLLECTION_OPTIONS",
        &json!("indexing"),
    );
    let (_, body) = d
        .send(
            "",
            json!({"createCollection": {"name": "c", "options": {"defaultId": {"type": "objectId"}}}}),
        )
        .await;
    error_of(
        &body,
        "EXISTING_COLLECTION_DIFFERENT_SETTINGS",
        &json!("c again"),
    );
    // Nothing changed the documents.
    assert_eq!(d.ids(json!({})).await, common::data::nums(&[1, 2]));
}

#[tokio::test]
async fn per_document_errors_name_their_documents() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": "a"}}})).await;
    let e = d
        .fails(
            json!({"insertOne": {"document": {"_id": "a", "n": 1}}}),
            "DOCUMENT_ALREADY_EXISTS",
        )
        .await;
    assert_eq!(e["documentIds"], json!(["a"]), "{e}");
    let (st, body) = d
        .send(
            "/c",
            json!({"insertMany": {"documents": [{"_id": "b"}, {"_id": "a"}, {"_id": "c", "$bad": 1}]}}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        body["errors"][0]["errorCode"], "DOCUMENT_ALREADY_EXISTS",
        "{body}"
    );
    assert_eq!(body["errors"][0]["documentIds"], json!(["a"]), "{body}");
    assert_eq!(
        body["errors"][1]["errorCode"], "SHRED_BAD_FIELD_NAME",
        "{body}"
    );
    assert_eq!(body["errors"][1]["documentIds"], json!(["c"]), "{body}");
    assert_eq!(body["status"]["insertedIds"], json!(["b"]), "{body}");
}

#[tokio::test]
async fn insert_one_failures_carry_empty_inserted_ids() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": 1}}})).await;
    for (doc, code) in [
        (json!({"_id": 1}), "DOCUMENT_ALREADY_EXISTS"),
        (json!({"$bad": 1}), "SHRED_BAD_FIELD_NAME"),
        (
            json!({"d": {"$date": "2024-01-01"}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
    ] {
        let (st, body) = d
            .send("/c", json!({"insertOne": {"document": doc.clone()}}))
            .await;
        assert_eq!(st, 200);
        error_of(&body, code, &doc);
        assert_eq!(body["status"], json!({"insertedIds": []}), "{doc} → {body}");
    }
    // Into a collection that does not exist, too.
    let (_, body) = d
        .send("/nope", json!({"insertOne": {"document": {"a": 1}}}))
        .await;
    error_of(&body, "UNKNOWN_COLLECTION_OR_TABLE", &json!("nope"));
    assert_eq!(body["status"], json!({"insertedIds": []}), "{body}");
}

#[tokio::test]
async fn options_are_accepted_where_the_original_accepts_them() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": 1, "n": 1}, "options": {}}}))
        .await;
    d.c(json!({"insertOne": {"document": {"_id": 2}, "options": null}}))
        .await;
    // Commands without options take `{}` and nothing else.
    for cmd in [
        json!({"deleteOne": {"filter": {"_id": 9}, "options": {}}}),
        json!({"deleteMany": {"filter": {"_id": 9}, "options": {}}}),
        json!({"estimatedDocumentCount": {"options": {}}}),
        json!({"countDocuments": {"filter": {}, "options": {}}}),
    ] {
        d.c(cmd).await;
    }
    for (path, cmd) in [
        ("", json!({"findKeyspaces": {"options": {}}})),
        ("", json!({"findCollections": {"options": {}}})),
        (
            "",
            json!({"deleteCollection": {"name": "gone", "options": {}}}),
        ),
        (
            "",
            json!({"createCollection": {"name": "o", "options": {}}}),
        ),
    ] {
        d.ok(path, cmd).await;
    }
    for cmd in [
        json!({"insertOne": {"document": {"_id": 3}, "options": {"ordered": true}}}),
        json!({"deleteOne": {"filter": {}, "options": {"sort": {}}}}),
        json!({"deleteMany": {"filter": {}, "options": {"limit": 1}}}),
        json!({"estimatedDocumentCount": {"options": {"x": 1}}}),
        json!({"insertOne": {"document": {"_id": 3}, "options": []}}),
    ] {
        let e = d.fails(cmd.clone(), "COMMAND_ACCEPTS_NO_OPTIONS").await;
        let name = cmd.as_object().unwrap().keys().next().unwrap().clone();
        assert!(e["message"].as_str().unwrap().contains(&name), "{e}");
    }
    for (path, cmd) in [
        ("", json!({"findKeyspaces": {"options": {"x": 1}}})),
        (
            "",
            json!({"deleteCollection": {"name": "c", "options": {"x": 1}}}),
        ),
    ] {
        let (_, body) = d.send(path, cmd.clone()).await;
        error_of(&body, "COMMAND_ACCEPTS_NO_OPTIONS", &cmd);
    }
    // Commands with options take `{}` too.
    for cmd in [
        json!({"find": {"options": {}}}),
        json!({"findOne": {"options": {}}}),
        json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"a": 1}}, "options": {}}}),
        json!({"updateMany": {"filter": {}, "update": {"$set": {"a": 1}}, "options": {}}}),
        json!({"findOneAndUpdate": {"filter": {}, "update": {"$set": {"a": 2}}, "options": {}}}),
        json!({"findOneAndReplace": {"filter": {"_id": 2}, "replacement": {"b": 1}, "options": {}}}),
        json!({"insertMany": {"documents": [{"_id": 4}], "options": {}}}),
    ] {
        d.c(cmd).await;
    }
    // The insert with refused options did not happen; the collection `c` is still there.
    assert_eq!(d.ids(json!({})).await, common::data::nums(&[1, 2, 4]));
}

#[tokio::test]
async fn bodies_are_read_strictly() {
    let d = DataDb::start().await;
    for body in [
        r#"{"insertOne": {"document": {"a": 1, "a": 2}}}"#,
        r#"{"insertOne": {"document": {"x": {"a": 1, "\u0061": 2}}}}"#,
        r#"{"find": {"filter": {"n": 1}, "filter": {}}}"#,
        r#"{"find": {"filter": "#,
    ] {
        let (st, text) = d.raw("/c", body).await;
        assert_eq!(st, 200, "{body} → {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        error_of(&v, "REQUEST_NOT_JSON", &json!(body));
    }
    // A number longer than the original's limit (100 characters), in a document or a filter.
    for body in [
        format!(
            r#"{{"insertOne": {{"document": {{"n": {}}}}}}}"#,
            "1".repeat(101)
        ),
        format!(
            r#"{{"find": {{"filter": {{"n": 0.{}}}}}}}"#,
            "5".repeat(100)
        ),
    ] {
        let (st, text) = d.raw("/c", &body).await;
        assert_eq!(st, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let e = error_of(&v, "SHRED_DOC_LIMIT_VIOLATION", &json!(body));
        assert!(e["message"].as_str().unwrap().contains("(100)"), "{e}");
    }
    // Not one command.
    for body in [
        "[1]",
        "{}",
        r#"{"find": {}, "findOne": {}}"#,
        r#"{"find": 1}"#,
    ] {
        let (st, text) = d.raw("/c", body).await;
        assert_eq!(st, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        error_of(&v, "REQUEST_STRUCTURE_MISMATCH", &json!(body));
    }
    // Nothing was written.
    assert!(d.ids(json!({})).await.is_empty());
}
