//! Filter semantics exactly as the original (issue 14, Data API 3): null versus missing with
//! `$eq`, `$ne`, `$in` and `$nin`; `$not` inverting as the original inverts; operators inside a
//! sub-document refused; invalid typed literals refused; comparisons on booleans.

mod common;

use common::*;
use keyplane_docstore::DocStoreCode as C_;
use serde_json::{Value, json};

fn want(v: &[i64]) -> Vec<Value> {
    v.iter().map(|i| json!(i)).collect()
}

#[test]
fn null_matches_null_not_missing_and_ne_null_matches_the_rest() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "f": null}),
        json!({"_id": 2, "f": 1}),
        json!({"_id": 3}),
        json!({"_id": 4, "f": [null, 1]}),
        json!({"_id": 5, "f": {"x": null}}),
        json!({"_id": 6, "f": "null"}),
    ]);
    assert_eq!(ids(&s, json!({"f": null})), want(&[1]));
    assert_eq!(ids(&s, json!({"f": {"$eq": null}})), want(&[1]));
    assert_eq!(ids(&s, json!({"f": {"$ne": null}})), want(&[2, 3, 4, 5, 6]));
    assert_eq!(ids(&s, json!({"f": {"$in": [null]}})), want(&[1, 4]));
    assert_eq!(ids(&s, json!({"f": {"$in": [null, 1]}})), want(&[1, 2, 4]));
    assert_eq!(ids(&s, json!({"f": {"$nin": [null]}})), want(&[2, 3, 5, 6]));
    assert_eq!(
        ids(&s, json!({"f": {"$exists": true}})),
        want(&[1, 2, 4, 5, 6])
    );
    assert_eq!(ids(&s, json!({"f.x": null})), want(&[5]));
    assert_eq!(
        ids(&s, json!({"$not": {"f": null}})),
        want(&[2, 3, 4, 5, 6])
    );
    assert_eq!(ids(&s, json!({"$not": {"f": {"$ne": null}}})), want(&[1]));
    // $ne of a value keeps documents without the field.
    assert_eq!(ids(&s, json!({"f": {"$ne": 1}})), want(&[1, 3, 5, 6]));
}

#[test]
fn not_inverts_as_the_original() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "age": 20, "tags": ["a", "b"]}),
        json!({"_id": 2, "age": 40, "tags": []}),
        json!({"_id": 3, "age": "x"}),
        json!({"_id": 4}),
    ]);
    // A range turns into the opposite range of the same type: documents without a number
    // there match neither.
    assert_eq!(ids(&s, json!({"$not": {"age": {"$gt": 30}}})), want(&[1]));
    assert_eq!(ids(&s, json!({"$not": {"age": {"$lte": 20}}})), want(&[2]));
    assert_eq!(
        ids(&s, json!({"$not": {"age": {"$lt": "y"}}})),
        Vec::<Value>::new()
    );
    // Everything else is its complement, missing fields included.
    assert_eq!(ids(&s, json!({"$not": {"age": 20}})), want(&[2, 3, 4]));
    assert_eq!(
        ids(&s, json!({"$not": {"age": {"$in": [20, 40]}}})),
        want(&[3, 4])
    );
    assert_eq!(
        ids(&s, json!({"$not": {"age": {"$nin": [20, 40]}}})),
        want(&[1, 2])
    );
    assert_eq!(
        ids(&s, json!({"$not": {"age": {"$exists": true}}})),
        want(&[4])
    );
    assert_eq!(
        ids(&s, json!({"$not": {"tags": {"$size": 0}}})),
        want(&[1, 3, 4])
    );
    assert_eq!(
        ids(&s, json!({"$not": {"tags": {"$all": ["a", "b"]}}})),
        want(&[2, 3, 4])
    );
    // De Morgan through $and and $or, and $not of $not.
    assert_eq!(
        ids(&s, json!({"$not": {"$or": [{"age": 20}, {"age": 40}]}})),
        want(&[3, 4])
    );
    assert_eq!(
        ids(
            &s,
            json!({"$not": {"$and": [{"age": {"$gte": 20}}, {"age": {"$lte": 30}}]}})
        ),
        want(&[2])
    );
    assert_eq!(
        ids(&s, json!({"$not": {"age": 20, "tags": "a"}})),
        want(&[2, 3, 4])
    );
    assert_eq!(ids(&s, json!({"$not": {"$not": {"age": 20}}})), want(&[1]));
    // The original knows no field-level $not.
    assert_eq!(
        code(find(&s, json!({"age": {"$not": {"$gt": 30}}}))),
        C_::FilterUnsupportedOperator
    );
}

#[test]
fn operators_inside_sub_document_equality_are_refused() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "address": {"street": "Main", "since": {"$date": 5}}}),
    ]);
    for f in [
        json!({"address": {"street": {"$gt": "A"}}}),
        json!({"address": {"street": {"$xx": 1}}}),
        json!({"address": {"$eq": {"street": {"$ne": "x"}}}}),
        json!({"address": {"$in": [{"street": {"$exists": true}}]}}),
        json!({"address": {"$eq": [{"$gt": 1}]}}),
        json!({"address": {"street": "Main", "$gt": 1}}),
    ] {
        assert_eq!(
            code(find(&s, f.clone())),
            C_::FilterInvalidExpression,
            "{f}"
        );
    }
    // Typed values are values, in a sub-document too.
    assert_eq!(
        ids(
            &s,
            json!({"address": {"street": "Main", "since": {"$date": 5}}})
        ),
        want(&[1])
    );
}

#[test]
fn invalid_typed_literals_are_refused() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "d": {"$date": 1000}, "u": {"$uuid": "123E4567-E89B-12D3-A456-426614174000"}, "o": {"$objectId": "5f3E5B7A9C1D2E3F4A5B6C7D"}}),
    ]);
    for (f, c) in [
        (
            json!({"d": {"$date": "2024-01-01"}}),
            C_::FilterInvalidExpression,
        ),
        (json!({"d": {"$date": 1.5}}), C_::FilterInvalidExpression),
        (
            json!({"d": {"$gt": {"$date": true}}}),
            C_::FilterInvalidExpression,
        ),
        (
            json!({"d": {"$in": [{"$date": "x"}]}}),
            C_::FilterInvalidExpression,
        ),
        (
            json!({"u": {"$uuid": "not-a-uuid"}}),
            C_::ShredBadEjsonValue,
        ),
        (json!({"u": {"$uuid": 5}}), C_::ShredBadEjsonValue),
        (json!({"o": {"$objectId": "xyz"}}), C_::ShredBadEjsonValue),
        (
            json!({"o": {"$ne": {"$objectId": "5f3e"}}}),
            C_::ShredBadEjsonValue,
        ),
        (json!({"_id": {"$uuid": "nope"}}), C_::ShredBadDocidType),
        (
            json!({"_id": {"$in": [1, {"$objectId": "nope"}]}}),
            C_::ShredBadDocidType,
        ),
        (json!({"_id": {"a": 1}}), C_::ShredBadDocidType),
        (json!({"_id": ""}), C_::ShredBadDocidValue),
    ] {
        assert_eq!(code(find(&s, f.clone())), c, "{f}");
    }
    // Valid ones match, UUIDs and ObjectIds whatever their case (the original compares their
    // canonical form).
    assert_eq!(ids(&s, json!({"d": {"$date": 1000}})), want(&[1]));
    assert_eq!(
        ids(
            &s,
            json!({"u": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}})
        ),
        want(&[1])
    );
    assert_eq!(
        ids(
            &s,
            json!({"o": {"$in": [{"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}]}})
        ),
        want(&[1])
    );
}

#[test]
fn comparisons_on_booleans() {
    let (_d, s) = store_with(vec![
        json!({"_id": 1, "b": true}),
        json!({"_id": 2, "b": false}),
        json!({"_id": 3, "b": 1}),
        json!({"_id": 4, "b": "true"}),
        json!({"_id": 5}),
        json!({"_id": 6, "b": [false, true]}),
    ]);
    assert_eq!(ids(&s, json!({"b": {"$gt": false}})), want(&[1, 6]));
    assert_eq!(ids(&s, json!({"b": {"$gte": false}})), want(&[1, 2, 6]));
    assert_eq!(ids(&s, json!({"b": {"$lt": true}})), want(&[2, 6]));
    assert_eq!(ids(&s, json!({"b": {"$lte": false}})), want(&[2, 6]));
    assert_eq!(ids(&s, json!({"b": {"$gt": true}})), Vec::<Value>::new());
    assert_eq!(
        ids(&s, json!({"$not": {"b": {"$gt": false}}})),
        want(&[2, 6])
    );
}
