//! Every refusal carries the original Data API's error code (issue 14, Data API 1): filters,
//! sorts, projections, updates, documents and schema, one typed code each; keyplane's own
//! failures carry none. Per-document errors name the document's `_id`.

mod common;

use std::collections::HashSet;

use common::*;
use keyplane_docstore::{
    CodeScope, DataKey, DocStore, DocStoreCode as C_, DocStoreError, FindOneAndOptions, Query,
    UpdateOptions,
};
use serde_json::{Value, json};

fn fixture() -> (tempfile::TempDir, DocStore) {
    store_with(vec![
        json!({"_id": 1, "a": 1, "s": "str", "o": {"x": 1}, "arr": [1, 2]}),
        json!({"_id": 2, "a": 2}),
    ])
}

#[test]
fn filter_errors_carry_the_original_codes() {
    let (_d, s) = fixture();
    let f = |v: Value| code(find(&s, v));
    assert_eq!(
        f(json!({"a": {"$regex": "x"}})),
        C_::FilterUnsupportedOperator
    );
    assert_eq!(
        f(json!({"a": {"$not": {"$eq": 1}}})),
        C_::FilterUnsupportedOperator
    );
    assert_eq!(f(json!({"$where": "1"})), C_::FilterInvalidExpression);
    assert_eq!(f(json!([1])), C_::FilterUnsupportedDataType);
    assert_eq!(f(json!("a")), C_::FilterUnsupportedDataType);
    assert_eq!(f(json!({"$and": [1]})), C_::FilterUnsupportedDataType);
    assert_eq!(f(json!({"a": {"$in": 3}})), C_::FilterInvalidExpression);
    assert_eq!(f(json!({"a": {"$exists": 1}})), C_::FilterInvalidExpression);
    assert_eq!(f(json!({"a": {"$size": -1}})), C_::FilterInvalidExpression);
    assert_eq!(f(json!({"a": {"$gt": [1]}})), C_::FilterInvalidExpression);
    assert_eq!(f(json!({"a&x": 1})), C_::FilterInvalidExpression);
    assert_eq!(f(json!({"": 1})), C_::FilterInvalidExpression);
    // The scope the server reports with it.
    assert_eq!(C_::FilterInvalidExpression.scope(), CodeScope::Filter);
    assert_eq!(
        C_::FilterInvalidExpression.as_str(),
        "FILTER_INVALID_EXPRESSION"
    );
}

#[test]
fn sort_and_projection_errors_carry_the_original_codes() {
    let (_d, s) = fixture();
    let sort = |v: Value| {
        code(s.find(
            KS,
            C,
            &Query {
                sort: Some(v),
                ..Default::default()
            },
        ))
    };
    assert_eq!(sort(json!({"a": 2})), C_::SortClauseValueInvalid);
    assert_eq!(sort(json!({"a": "up"})), C_::SortClauseValueInvalid);
    assert_eq!(sort(json!([1])), C_::SortClauseInvalid);
    assert_eq!(sort(json!({"$x": 1})), C_::SortClausePathInvalid);
    assert_eq!(sort(json!({"a&b": 1})), C_::SortClausePathInvalid);
    assert_eq!(sort(json!({"": 1})), C_::SortClausePathInvalid);
    assert_eq!(
        sort(json!({"$vector": [0.1]})),
        C_::VectorSearchNotSupported
    );
    assert_eq!(
        sort(json!({"$lexical": "x"})),
        C_::LexicalNotEnabledForCollection
    );
    let proj = |v: Value| {
        code(s.find(
            KS,
            C,
            &Query {
                projection: Some(v),
                ..Default::default()
            },
        ))
    };
    assert_eq!(proj(json!({"a": "yes"})), C_::UnsupportedProjectionParam);
    assert_eq!(
        proj(json!({"a": 1, "o": 0})),
        C_::UnsupportedProjectionParam
    );
    assert_eq!(proj(json!({"price&": 1})), C_::UnsupportedProjectionParam);
    assert_eq!(
        proj(json!({"a": {"$elemMatch": 1}})),
        C_::UnsupportedProjectionParam
    );
    assert_eq!(proj(json!([1])), C_::UnsupportedProjectionDefinition);
}

#[test]
fn update_errors_carry_the_original_codes() {
    let (_d, s) = fixture();
    let u = |v: Value| code(s.update_one(KS, C, &json!({"_id": 1}), &v, &UpdateOptions::default()));
    // An unknown operator is an update error, not a filter one.
    assert_eq!(
        u(json!({"$bogus": {"a": 1}})),
        C_::UnsupportedUpdateOperation
    );
    assert_eq!(
        u(json!({"$pullAll": {"a": [1]}})),
        C_::UnsupportedUpdateOperation
    );
    assert_eq!(u(json!({"a": 1})), C_::UnsupportedUpdateOperation);
    assert_eq!(u(json!({"$set": 1})), C_::UnsupportedUpdateDataType);
    assert_eq!(u(json!([1])), C_::UnsupportedUpdateDataType);
    assert_eq!(
        u(json!({"$inc": {"a": "x"}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$pop": {"arr": 2}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$currentDate": {"t": false}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$set": {"a": 1}, "$inc": {"a": 1}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$set": {"o": 1}, "$inc": {"o.x": 1}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$push": {"$each": [1]}})),
        C_::UnsupportedUpdateOperationParam
    );
    assert_eq!(
        u(json!({"$push": {"arr": {"$each": [1], "$slice": 2}}})),
        C_::UnsupportedUpdateOperationModifier
    );
    assert_eq!(
        u(json!({"$inc": {"$x": 1}})),
        C_::UnsupportedUpdateOperationModifier
    );
    assert_eq!(
        u(json!({"$inc": {"s": 1}})),
        C_::UnsupportedUpdateOperationTarget
    );
    assert_eq!(
        u(json!({"$push": {"a": 1}})),
        C_::UnsupportedUpdateOperationTarget
    );
    assert_eq!(
        u(json!({"$pop": {"s": 1}})),
        C_::UnsupportedUpdateOperationTarget
    );
    assert_eq!(
        u(json!({"$set": {"s.x": 1}})),
        C_::UnsupportedUpdateOperationPath
    );
    assert_eq!(
        u(json!({"$set": {"a&b": 1}})),
        C_::UnsupportedUpdateOperationPath
    );
    assert_eq!(
        u(json!({"$rename": {"a": "a"}})),
        C_::UnsupportedUpdateOperationPath
    );
    assert_eq!(
        u(json!({"$set": {"_id": 2}})),
        C_::UnsupportedUpdateOperatorForDocId
    );
    assert_eq!(
        u(json!({"$unset": {"_id": 1}})),
        C_::UnsupportedUpdateOperatorForDocId
    );
    assert_eq!(
        u(json!({"$rename": {"a": "_id"}})),
        C_::UnsupportedUpdateOperatorForDocId
    );
    // The failed updates changed nothing.
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap(),
        json!({"_id": 1, "a": 1, "s": "str", "o": {"x": 1}, "arr": [1, 2]})
    );
    // A replacement naming another _id.
    let e = s
        .find_one_and_replace(
            KS,
            C,
            &json!({"_id": 1}),
            json!({"_id": 9, "b": 1}),
            &FindOneAndOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::DocumentReplaceDifferentDocid));
    assert_eq!(e.document_id(), Some(&json!(1)));
    // An update that breaks the document is refused with the document's code and _id.
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 2}),
            &json!({"$set": {"d": {"$date": "2024-01-01"}}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::ShredBadEjsonValue));
    assert_eq!(e.document_id(), Some(&json!(2)));
}

#[test]
fn document_errors_carry_codes_and_document_ids() {
    let (_d, s) = store();
    s.insert_one(KS, C, json!({"_id": "ok"})).unwrap();
    let r = s
        .insert_many(
            KS,
            C,
            vec![
                json!({"_id": "fresh"}),
                json!({"_id": "bad", "$username": "x"}),
                json!({"_id": "ok"}),
                json!({"_id": "d", "when": {"$date": "x"}}),
                json!({"_id": [1]}),
                json!(5),
                json!({"_id": ""}),
                json!({"_id": "nested", "a": {"": 1}}),
            ],
            false,
        )
        .unwrap();
    let errs: Vec<(C_, Option<Value>)> = r
        .iter()
        .filter_map(|x| x.as_ref().err())
        .map(|e| (e.code().unwrap(), e.document_id().cloned()))
        .collect();
    assert_eq!(
        errs,
        vec![
            (C_::ShredBadFieldName, Some(json!("bad"))),
            (C_::DocumentAlreadyExists, Some(json!("ok"))),
            (C_::ShredBadEjsonValue, Some(json!("d"))),
            // An _id that is not one names no document.
            (C_::ShredBadDocidType, None),
            (C_::ShredBadDocumentType, None),
            (C_::ShredBadDocidValue, None),
            (C_::ShredBadFieldName, Some(json!("nested"))),
        ]
    );
    assert!(r[0].is_ok());
    assert_eq!(C_::ShredBadFieldName.scope(), CodeScope::Document);
    let many: Vec<Value> = (0..101).map(|i| json!({"_id": i})).collect();
    assert_eq!(
        code(s.insert_many(KS, C, many, true)),
        C_::CommandFieldValueInvalid
    );
}

#[test]
fn schema_errors_carry_the_original_codes() {
    let (_d, s) = store();
    assert_eq!(
        code(s.get(KS, "nope", &json!(1))),
        C_::UnknownCollectionOrTable
    );
    assert_eq!(code(s.list_collections("nope")), C_::UnknownKeyspace);
    assert_eq!(
        code(s.create_collection(KS, "a-b", None)),
        C_::UnsupportedSchemaName
    );
    assert_eq!(
        code(s.create_collection(KS, C, Some(&json!({"defaultId": {"type": "uuid"}})))),
        C_::ExistingCollectionDifferentSettings
    );
    assert_eq!(
        code(s.create_collection(KS, "x", Some(&json!({"defaultId": {"type": "uuid9"}})))),
        C_::InvalidCreateCollectionOptions
    );
    assert_eq!(
        code(s.create_collection(KS, "y", Some(&json!({"indexing": {"allow": 1}})))),
        C_::InvalidCreateCollectionOptions
    );
    assert_eq!(
        code(find_page_state(&s, "zz")),
        C_::CommandFieldValueInvalid
    );
}

fn find_page_state(s: &DocStore, st: &str) -> keyplane_docstore::Result<keyplane_docstore::Page> {
    s.find(
        KS,
        C,
        &Query {
            page_state: Some(st.into()),
            ..Default::default()
        },
    )
}

#[test]
fn keyplanes_own_failures_have_no_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.db");
    drop(DocStore::create(&p, &key(1)).unwrap());
    let wrong = DocStore::open(&p, &key(2)).unwrap_err();
    assert!(matches!(wrong, DocStoreError::WrongKey));
    assert_eq!(wrong.code(), None);
    assert_eq!(
        DocStore::open(dir.path().join("none.db"), &key(1))
            .unwrap_err()
            .code(),
        None
    );
    assert_eq!(DataKey::from_slice(&[1, 2]).unwrap_err().code(), None);
}

#[test]
fn codes_have_distinct_wire_names() {
    let names: HashSet<&str> = C_::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), C_::ALL.len());
    for c in C_::ALL {
        assert!(
            c.as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{c}"
        );
        assert_eq!(c.to_string(), c.as_str());
    }
    assert_eq!(C_::CommandAcceptsNoOptions.scope().as_str(), "");
    assert_eq!(C_::ShredBadDocidType.as_str(), "SHRED_BAD_DOCID_TYPE");
}
