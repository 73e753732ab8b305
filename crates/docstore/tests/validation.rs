//! Values and names validated at insert as the original validates them (issue 14, Data API 6):
//! typed values that are not what they say, as values and as `_id`; field names with NUL,
//! over the length limit, empty or starting with `$`; duplicate keys (detected while parsing);
//! `"a.b"` next to `{"a":{"b":…}}`; nesting counted in levels as the message says; and the
//! original's size limits.

mod common;

use common::*;
use keyplane_docstore::{
    DocStoreCode as C_, DocStoreError, MAX_ARRAY_LEN, MAX_DEPTH, MAX_DOC_PROPERTIES,
    MAX_DOCUMENT_BYTES, MAX_OBJECT_PROPERTIES, MAX_PROPERTY_PATH_LEN, MAX_STRING_BYTES,
    check_json_text, parse_json,
};
use serde_json::{Map, Value, json};

#[test]
fn invalid_typed_values_are_refused_at_insert_and_not_stored() {
    let (_d, s) = store();
    let big_date = parse_json(br#"{"d": {"$date": 99999999999999999999}}"#).unwrap();
    for (doc, c) in [
        (
            json!({"d": {"$date": "2024-01-01T00:00:00Z"}}),
            C_::ShredBadEjsonValue,
        ),
        (json!({"d": {"$date": 1.5}}), C_::ShredBadEjsonValue),
        (json!({"d": {"$date": 1e30}}), C_::ShredBadEjsonValue),
        (big_date, C_::ShredBadEjsonValue),
        (json!({"d": [{"$date": false}]}), C_::ShredBadEjsonValue),
        (
            json!({"u": {"$uuid": "not-a-uuid"}}),
            C_::ShredBadEjsonValue,
        ),
        (
            json!({"u": {"$uuid": "123e4567e89b12d3a456426614174000"}}),
            C_::ShredBadEjsonValue,
        ),
        (json!({"u": {"$uuid": 42}}), C_::ShredBadEjsonValue),
        (
            json!({"o": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7"}}),
            C_::ShredBadEjsonValue,
        ),
        (
            json!({"o": {"deep": {"$objectId": "zzzzzzzzzzzzzzzzzzzzzzzz"}}}),
            C_::ShredBadEjsonValue,
        ),
        (json!({"_id": {"$uuid": "nope"}}), C_::ShredBadDocidType),
        (json!({"_id": {"$objectId": "nope"}}), C_::ShredBadDocidType),
        (json!({"_id": {"$date": "2024"}}), C_::ShredBadDocidType),
        (json!({"_id": {"a": 1}}), C_::ShredBadDocidType),
        (json!({"_id": [1]}), C_::ShredBadDocidType),
        (json!({"_id": ""}), C_::ShredBadDocidValue),
        (json!({"x": {"$unknown": 1}}), C_::ShredBadFieldName),
        (json!({"x": {"$date": 1, "y": 2}}), C_::ShredBadFieldName),
    ] {
        assert_eq!(code(s.insert_one(KS, C, doc.clone())), c, "{doc}");
    }
    assert_eq!(s.estimated_count(KS, C).unwrap(), 0, "nothing stored");
    // Valid ones are stored, and typed ids are one id whatever their case.
    s.insert_one(
        KS,
        C,
        json!({"_id": {"$uuid": "123E4567-E89B-12D3-A456-426614174000"}, "d": {"$date": -5}}),
    )
    .unwrap();
    assert_eq!(
        code(s.insert_one(
            KS,
            C,
            json!({"_id": {"$uuid": "123e4567-e89b-12d3-a456-426614174000"}})
        )),
        C_::DocumentAlreadyExists
    );
    s.insert_one(
        KS,
        C,
        json!({"_id": {"$objectId": "5f3e5b7a9c1d2e3f4a5b6c7d"}}),
    )
    .unwrap();
}

#[test]
fn field_names_as_the_original() {
    let (_d, s) = store();
    for doc in [
        json!({"": 1}),
        json!({"a": {"": 1}}),
        json!({"$id": 1}),
        json!({"a": [{"$b": 1}]}),
    ] {
        assert_eq!(
            code(s.insert_one(KS, C, doc.clone())),
            C_::ShredBadFieldName,
            "{doc}"
        );
    }
    // NUL, and any other character, is allowed in a name (the original's only rules are the
    // two above), and the field can be queried.
    s.insert_one(KS, C, json!({"_id": 1, "a\u{0}b": "nul", "x$": 1}))
        .unwrap();
    assert_eq!(ids(&s, json!({"a\u{0}b": "nul"})), vec![json!(1)]);
    // Names count against the original's limit on a property's path (1,000 characters).
    let at = "n".repeat(MAX_PROPERTY_PATH_LEN);
    s.insert_one(KS, C, json!({"_id": 2, at.clone(): 1}))
        .unwrap();
    assert_eq!(ids(&s, json!({ at.clone(): 1 })), vec![json!(2)]);
    let over = "n".repeat(MAX_PROPERTY_PATH_LEN + 1);
    let e = s.insert_one(KS, C, json!({"_id": 3, over: 1})).unwrap_err();
    assert_eq!(e.code(), Some(C_::ShredDocLimitViolation));
    assert_eq!(e.document_id(), Some(&json!(3)));
    // Array positions do not count (the original leaves them out), and such a field can still
    // be named, position included.
    let inner = "i".repeat(MAX_PROPERTY_PATH_LEN - "arr.".len());
    s.insert_one(KS, C, json!({"_id": 5, "arr": [{ inner.clone(): 7 }]}))
        .unwrap();
    assert_eq!(
        ids(&s, json!({ format!("arr.0.{inner}"): 7 })),
        vec![json!(5)]
    );
    // The path counts: a nested name that is short on its own.
    let half = "h".repeat(MAX_PROPERTY_PATH_LEN / 2);
    assert_eq!(
        code(s.insert_one(
            KS,
            C,
            json!({"_id": 4, half.clone(): {half.clone(): {"x": 1}}})
        )),
        C_::ShredDocLimitViolation
    );
    // UTF-16 units, as the original counts String.length().
    let wide = "😀".repeat(MAX_PROPERTY_PATH_LEN / 2 + 1);
    assert_eq!(
        code(s.insert_one(KS, C, json!({ wide: 1 }))),
        C_::ShredDocLimitViolation
    );
}

#[test]
fn duplicate_keys_are_detected_while_parsing() {
    for text in [
        r#"{"a": 1, "a": 2}"#,
        r#"{"insertOne": {"document": {"x": {"y": 1, "y": 1}}}}"#,
        r#"{"a": 1, "\u0061": 2}"#,
        r#"[{"k": [], "k": {}}]"#,
    ] {
        let e = parse_json(text.as_bytes()).unwrap_err();
        assert_eq!(e.code(), Some(C_::RequestNotJson), "{text}");
        assert!(matches!(e, DocStoreError::InvalidJson(_)));
        assert!(e.to_string().contains("duplicate"), "{e}");
        assert!(check_json_text(text).is_err());
    }
    // The same key in different objects is fine, and so is a repeated value.
    let v = parse_json(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 1}], "c": "a"}"#).unwrap();
    assert_eq!(
        v,
        json!({"a": {"a": 1}, "b": [{"a": 1}, {"a": 1}], "c": "a"})
    );
    check_json_text("{}").unwrap();
    // Malformed JSON, and nesting past what a request may hold.
    for bad in ["{", "{\"a\":}", "[1,]", "nul", "{\"a\":1} x", ""] {
        assert_eq!(
            parse_json(bad.as_bytes()).unwrap_err().code(),
            Some(C_::RequestNotJson),
            "{bad}"
        );
    }
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    assert_eq!(
        parse_json(deep.as_bytes()).unwrap_err().code(),
        Some(C_::ShredDocLimitViolation)
    );
    assert!(parse_json(&[0xff, 0xfe]).is_err());
}

#[test]
fn a_dotted_name_and_the_nested_path_it_looks_like_are_different_fields() {
    let (_d, s) = store();
    s.insert_one(KS, C, json!({"_id": 1, "a.b": 1, "a": {"b": 2}}))
        .unwrap();
    s.insert_one(KS, C, json!({"_id": 2, "a.b": 2})).unwrap();
    assert_eq!(ids(&s, json!({"a&.b": 1})), vec![json!(1)]);
    assert_eq!(ids(&s, json!({"a.b": 2})), vec![json!(1)]);
    assert_eq!(ids(&s, json!({"a&.b": 2})), vec![json!(2)]);
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap(),
        json!({"_id": 1, "a.b": 1, "a": {"b": 2}})
    );
}

fn nested(levels: usize) -> Value {
    // `levels` levels of objects below the document.
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

#[test]
fn nesting_counts_levels_as_the_message_says() {
    let (_d, s) = store();
    // The document is level 1: 15 more levels make 16, the limit, accepted.
    s.insert_one(KS, C, json!({"_id": 1, "d": nested(MAX_DEPTH - 1)}))
        .unwrap();
    let e = s
        .insert_one(KS, C, json!({"_id": 2, "d": nested(MAX_DEPTH)}))
        .unwrap_err();
    assert!(matches!(
        e,
        DocStoreError::TooDeep {
            limit: MAX_DEPTH,
            ..
        }
    ));
    assert!(
        e.to_string().contains(&format!("({MAX_DEPTH} levels)")),
        "{e}"
    );
    assert_eq!(e.code(), Some(C_::ShredDocLimitViolation));
    assert_eq!(e.document_id(), Some(&json!(2)));
    // Arrays are levels too, scalars are not.
    let mut arr = json!("leaf");
    for _ in 0..MAX_DEPTH - 1 {
        arr = json!([arr]);
    }
    s.insert_one(KS, C, json!({"_id": 3, "d": arr.clone()}))
        .unwrap();
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 4, "d": [arr]})),
        Err(DocStoreError::TooDeep { .. })
    ));
}

#[test]
fn the_original_limits() {
    let (_d, s) = store();
    let ok_str = "s".repeat(MAX_STRING_BYTES);
    s.insert_one(KS, C, json!({"_id": 1, "s": ok_str})).unwrap();
    let limit = |doc: Value| code(s.insert_one(KS, C, doc));
    // Strings in bytes: 4,001 two-byte characters are 8,002 bytes.
    assert_eq!(
        limit(json!({"s": "é".repeat(MAX_STRING_BYTES / 2 + 1)})),
        C_::ShredDocLimitViolation
    );
    assert_eq!(
        limit(json!({"s": ["x".repeat(MAX_STRING_BYTES + 1)]})),
        C_::ShredDocLimitViolation
    );
    let arr: Vec<u32> = (0..MAX_ARRAY_LEN as u32).collect();
    s.insert_one(KS, C, json!({"_id": 2, "arr": arr})).unwrap();
    let arr: Vec<u32> = (0..=MAX_ARRAY_LEN as u32).collect();
    assert_eq!(limit(json!({"arr": arr})), C_::ShredDocLimitViolation);
    let obj: Map<String, Value> = (0..MAX_OBJECT_PROPERTIES)
        .map(|i| (format!("k{i}"), json!(i)))
        .collect();
    s.insert_one(KS, C, json!({"_id": 3, "o": obj})).unwrap();
    let obj: Map<String, Value> = (0..=MAX_OBJECT_PROPERTIES)
        .map(|i| (format!("k{i}"), json!(i)))
        .collect();
    assert_eq!(limit(json!({"o": obj})), C_::ShredDocLimitViolation);
    // Properties of the whole document (every object's, the document's own included).
    let half: Map<String, Value> = (0..MAX_DOC_PROPERTIES / 2)
        .map(|i| (format!("k{i}"), json!(i)))
        .collect();
    assert_eq!(
        limit(json!({"a": half.clone(), "b": half})),
        C_::ShredDocLimitViolation
    );
    // The document size: the original's 4,000,000 characters.
    assert_eq!(MAX_DOCUMENT_BYTES, 4_000_000);
    let chunk = "c".repeat(7_990);
    let parts: Vec<&str> = vec![chunk.as_str(); 501];
    assert!(matches!(
        s.insert_one(KS, C, json!({"_id": 5, "p": parts})),
        Err(DocStoreError::DocumentTooLarge {
            limit: MAX_DOCUMENT_BYTES,
            ..
        })
    ));
}

#[test]
fn value_limits_apply_to_indexed_fields_only() {
    let big = "b".repeat(MAX_STRING_BYTES * 4);
    let many: Vec<u32> = (0..MAX_ARRAY_LEN as u32 * 2).collect();
    let (_d, s) = store_opts(json!({"indexing": {"deny": ["blob", "meta.raw"]}}));
    s.insert_one(
        KS,
        C,
        json!({"_id": 1, "blob": {"x": big, "l": many}, "meta": {"raw": big, "ok": 1}}),
    )
    .unwrap();
    assert_eq!(
        code(s.insert_one(KS, C, json!({"_id": 2, "meta": {"cooked": big}}))),
        C_::ShredDocLimitViolation
    );
    let (_d, s) = store_opts(json!({"indexing": {"allow": ["name", "tags"]}}));
    s.insert_one(
        KS,
        C,
        json!({"_id": 1, "name": "n", "body": big, "tags": ["t"]}),
    )
    .unwrap();
    assert_eq!(
        code(s.insert_one(KS, C, json!({"_id": 2, "name": big}))),
        C_::ShredDocLimitViolation
    );
    // Structure and names are checked everywhere.
    assert_eq!(
        code(s.insert_one(KS, C, json!({"_id": 3, "body": {"$x": 1}}))),
        C_::ShredBadFieldName
    );
}
