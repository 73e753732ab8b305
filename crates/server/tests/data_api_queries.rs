//! Queries over HTTP as the original answers them (issue 14, Data API 2, 3 and 7): `&.`/`&&`
//! path escapes and names with `/` `:`, numeric keys, null versus missing with `$ne`/`$not`,
//! operators inside sub-document equality, invalid typed literals, comparisons on booleans,
//! sort ties broken by `_id`, and `includeSortVector`. On a customer-keyed database.
mod common;

use common::data::{DataDb, nums};
use serde_json::{Value, json};

#[tokio::test]
async fn escaped_paths_and_names_with_slashes_and_colons_everywhere() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [
        {"_id": 1, "app.kubernetes.io/name": "web", "price.usd": 5, "a&b": 1, "urn:x": "p", "meta": {"k.v": "s"}},
        {"_id": 2, "app": {"kubernetes": {"io/name": "api"}}, "price": {"usd": 7}, "a&b": 2, "urn:x": "q"},
        {"_id": 3, "app.kubernetes.io/name": "db", "price.usd": 1}
    ], "options": {"ordered": true}}}))
    .await;
    // Filters.
    assert_eq!(
        d.ids(json!({"app&.kubernetes&.io/name": "web"})).await,
        nums(&[1])
    );
    assert_eq!(
        d.ids(json!({"app.kubernetes.io/name": "api"})).await,
        nums(&[2])
    );
    assert_eq!(d.ids(json!({"price&.usd": {"$gt": 2}})).await, nums(&[1]));
    assert_eq!(d.ids(json!({"price.usd": {"$gt": 2}})).await, nums(&[2]));
    assert_eq!(d.ids(json!({"a&&b": {"$in": [2]}})).await, nums(&[2]));
    assert_eq!(d.ids(json!({"urn:x": "q"})).await, nums(&[2]));
    assert_eq!(d.ids(json!({"meta.k&.v": "s"})).await, nums(&[1]));
    // Sort.
    let body = d
        .c(json!({"find": {"filter": {"price&.usd": {"$exists": true}}, "sort": {"price&.usd": -1}}}))
        .await;
    let got: Vec<Value> = body["data"]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["_id"].clone())
        .collect();
    assert_eq!(got, nums(&[1, 3]));
    // Projection.
    let body = d
        .c(json!({"findOne": {"filter": {"_id": 1}, "projection": {"price&.usd": 1, "meta.k&.v": 1, "urn:x": 1}}}))
        .await;
    assert_eq!(
        body["data"]["document"],
        json!({"_id": 1, "price.usd": 5, "urn:x": "p", "meta": {"k.v": "s"}})
    );
    // Updates.
    d.c(json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"app&.kubernetes&.io/name": "web2", "urn:y": 1}, "$inc": {"a&&b": 10}}}}))
        .await;
    let body = d.c(json!({"findOne": {"filter": {"_id": 1}}})).await;
    let doc = &body["data"]["document"];
    assert_eq!(doc["app.kubernetes.io/name"], "web2", "{doc}");
    assert_eq!(doc["a&b"], 11, "{doc}");
    assert_eq!(doc["urn:y"], 1, "{doc}");
    assert!(doc.get("app").is_none(), "no nested field was made: {doc}");
    // A lone `&` or an empty segment is refused with the clause's code.
    d.fails(
        json!({"find": {"filter": {"a&b": 1}}}),
        "FILTER_INVALID_EXPRESSION",
    )
    .await;
    d.fails(
        json!({"find": {"sort": {"a&b": 1}}}),
        "SORT_CLAUSE_PATH_INVALID",
    )
    .await;
    d.fails(
        json!({"find": {"projection": {"a..b": 1}}}),
        "UNSUPPORTED_PROJECTION_PARAM",
    )
    .await;
    d.fails(
        json!({"updateOne": {"filter": {}, "update": {"$set": {"a&": 1}}}}),
        "UNSUPPORTED_UPDATE_OPERATION_PATH",
    )
    .await;
}

#[tokio::test]
async fn what_insert_accepts_can_be_queried() {
    let d = DataDb::start().await;
    let names = [
        "app.kubernetes.io/name",
        "a:b",
        "with space",
        "quote'd",
        "dq\"",
        "back\\slash",
        "tab\t",
        "ünï",
        "0",
        "01",
        "[0]",
        "a$b",
        "' OR 1=1 --",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut doc = serde_json::Map::new();
        doc.insert("_id".into(), json!(i));
        doc.insert((*name).into(), json!(i * 10));
        d.c(json!({"insertOne": {"document": doc}})).await;
    }
    for (i, name) in names.iter().enumerate() {
        let path = name.replace('&', "&&").replace('.', "&.");
        let mut f = serde_json::Map::new();
        f.insert(path.clone(), json!(i * 10));
        assert_eq!(d.ids(Value::Object(f)).await, nums(&[i as i64]), "{name}");
        let mut p = serde_json::Map::new();
        p.insert(path, json!(1));
        let body = d
            .c(json!({"findOne": {"filter": {"_id": i}, "projection": p}}))
            .await;
        assert_eq!(body["data"]["document"][name], json!(i * 10), "{name}");
    }
}

#[tokio::test]
async fn numeric_segments_reach_object_keys_and_array_elements() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [
        {"_id": 1, "obj": {"1": "key"}},
        {"_id": 2, "obj": ["a", "elem"]},
        {"_id": 3, "obj": {"2": "other"}}
    ]}}))
    .await;
    assert_eq!(d.ids(json!({"obj.1": "key"})).await, nums(&[1]));
    assert_eq!(d.ids(json!({"obj.1": "elem"})).await, nums(&[2]));
    assert_eq!(
        d.ids(json!({"obj.1": {"$exists": true}})).await,
        nums(&[1, 2])
    );
    d.c(json!({"updateOne": {"filter": {"_id": 1}, "update": {"$set": {"obj.1": "k2"}}}}))
        .await;
    assert_eq!(d.ids(json!({"obj.1": "k2"})).await, nums(&[1]));
}

#[tokio::test]
async fn null_versus_missing_and_not_as_the_original() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [
        {"_id": 1, "f": null, "age": 20},
        {"_id": 2, "f": 1, "age": 40},
        {"_id": 3, "age": "x"},
        {"_id": 4, "f": [null, 1]},
        {"_id": 5, "f": "null"}
    ]}}))
    .await;
    assert_eq!(d.ids(json!({"f": null})).await, nums(&[1]));
    assert_eq!(
        d.ids(json!({"f": {"$ne": null}})).await,
        nums(&[2, 3, 4, 5])
    );
    assert_eq!(d.ids(json!({"f": {"$in": [null]}})).await, nums(&[1, 4]));
    assert_eq!(
        d.ids(json!({"f": {"$nin": [null]}})).await,
        nums(&[2, 3, 5])
    );
    assert_eq!(
        d.ids(json!({"$not": {"f": null}})).await,
        nums(&[2, 3, 4, 5])
    );
    assert_eq!(
        d.ids(json!({"$not": {"f": {"$ne": null}}})).await,
        nums(&[1])
    );
    // $not of a range is the opposite range, on numbers only.
    assert_eq!(
        d.ids(json!({"$not": {"age": {"$gt": 30}}})).await,
        nums(&[1])
    );
    assert_eq!(
        d.ids(json!({"$not": {"age": 20}})).await,
        nums(&[2, 3, 4, 5])
    );
    assert_eq!(
        d.ids(json!({"$not": {"$or": [{"age": 20}, {"age": 40}]}}))
            .await,
        nums(&[3, 4, 5])
    );
    assert_eq!(
        d.ids(json!({"$not": {"age": {"$exists": true}}})).await,
        nums(&[4, 5])
    );
    // There is no field-level $not in the original.
    d.fails(
        json!({"find": {"filter": {"age": {"$not": {"$gt": 30}}}}}),
        "FILTER_UNSUPPORTED_OPERATOR",
    )
    .await;
}

#[tokio::test]
async fn operators_inside_sub_documents_and_invalid_literals_are_refused() {
    let d = DataDb::start().await;
    d.c(json!({"insertOne": {"document": {"_id": 1, "address": {"street": "Main", "since": {"$date": 5}},
        "u": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}, "o": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}}}}))
        .await;
    for f in [
        json!({"address": {"street": {"$gt": "A"}}}),
        json!({"address": {"$eq": {"street": {"$ne": "x"}}}}),
        json!({"address": {"$in": [{"street": {"$exists": true}}]}}),
        json!({"address": {"street": "Main", "$gt": 1}}),
    ] {
        d.fails(json!({"find": {"filter": f}}), "FILTER_INVALID_EXPRESSION")
            .await;
    }
    // Typed values inside a sub-document are values.
    assert_eq!(
        d.ids(json!({"address": {"street": "Main", "since": {"$date": 5}}}))
            .await,
        nums(&[1])
    );
    for (f, code) in [
        (
            json!({"d": {"$date": "2024-01-01"}}),
            "FILTER_INVALID_EXPRESSION",
        ),
        (json!({"d": {"$date": 1.5}}), "FILTER_INVALID_EXPRESSION"),
        (
            json!({"u": {"$uuid": "not-a-uuid"}}),
            "SHRED_BAD_EJSON_VALUE",
        ),
        (json!({"o": {"$objectId": "xyz"}}), "SHRED_BAD_EJSON_VALUE"),
        (json!({"_id": {"$uuid": "nope"}}), "SHRED_BAD_DOCID_TYPE"),
        (json!({"_id": ""}), "SHRED_BAD_DOCID_VALUE"),
    ] {
        d.fails(json!({"find": {"filter": f}}), code).await;
    }
    // Valid ones match, whatever their case.
    assert_eq!(
        d.ids(json!({"u": {"$uuid": "123E4567-E89B-12D3-A456-426614174000"}}))
            .await,
        nums(&[1])
    );
    assert_eq!(
        d.ids(json!({"o": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}}))
            .await,
        nums(&[1])
    );
}

#[tokio::test]
async fn comparisons_on_booleans() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [
        {"_id": 1, "b": true}, {"_id": 2, "b": false}, {"_id": 3, "b": 1},
        {"_id": 4, "b": "true"}, {"_id": 5}
    ]}}))
    .await;
    assert_eq!(d.ids(json!({"b": {"$gt": false}})).await, nums(&[1]));
    assert_eq!(d.ids(json!({"b": {"$gte": false}})).await, nums(&[1, 2]));
    assert_eq!(d.ids(json!({"b": {"$lt": true}})).await, nums(&[2]));
    assert!(d.ids(json!({"b": {"$gt": true}})).await.is_empty());
    d.fails(
        json!({"find": {"filter": {"b": {"$gt": null}}}}),
        "FILTER_INVALID_EXPRESSION",
    )
    .await;
}

#[tokio::test]
async fn sort_ties_are_broken_by_id_ascending() {
    let d = DataDb::start().await;
    let docs: Vec<Value> = [5, 3, 9, 1, 8, 2, 7, 4, 6, 0]
        .iter()
        .map(|i| json!({"_id": i, "v": i % 3}))
        .collect();
    for doc in docs {
        d.c(json!({"insertOne": {"document": doc}})).await;
    }
    let sorted = |body: Value| -> Vec<Value> {
        body["data"]["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["_id"].clone())
            .collect()
    };
    let body = d.c(json!({"find": {"sort": {"v": 1}}})).await;
    assert_eq!(sorted(body), nums(&[0, 3, 6, 9, 1, 4, 7, 2, 5, 8]));
    let body = d.c(json!({"find": {"sort": {"v": -1}}})).await;
    assert_eq!(sorted(body), nums(&[2, 5, 8, 1, 4, 7, 0, 3, 6, 9]));
    let body = d.c(json!({"find": {"sort": {"missing": 1}}})).await;
    assert_eq!(sorted(body), nums(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    // The document a sorted command picks is the first of that order.
    let body = d
        .c(json!({"findOneAndUpdate": {"filter": {}, "sort": {"v": -1}, "update": {"$set": {"p": 1}}}}))
        .await;
    assert_eq!(body["data"]["document"]["_id"], 2);
    let body = d.c(json!({"findOne": {"sort": {"v": 1}}})).await;
    assert_eq!(body["data"]["document"]["_id"], 0);
}

#[tokio::test]
async fn include_sort_vector_is_answered_as_for_a_collection_without_vectors() {
    let d = DataDb::start().await;
    d.c(json!({"insertMany": {"documents": [{"_id": 1}, {"_id": 2}]}}))
        .await;
    let body = d
        .c(json!({"find": {"options": {"includeSortVector": true}}}))
        .await;
    assert_eq!(body["status"], json!({"sortVector": null}), "{body}");
    assert_eq!(body["data"]["documents"].as_array().unwrap().len(), 2);
    let body = d
        .c(json!({"findOne": {"sort": {"_id": -1}, "options": {"includeSortVector": true}}}))
        .await;
    assert_eq!(body["status"], json!({"sortVector": null}), "{body}");
    assert_eq!(body["data"]["document"]["_id"], 2);
    // Without the option there is no status.
    let body = d.c(json!({"find": {}})).await;
    assert!(body.get("status").is_none(), "{body}");
    d.fails(
        json!({"find": {"options": {"includeSortVector": "yes"}}}),
        "COMMAND_FIELD_VALUE_INVALID",
    )
    .await;
}
