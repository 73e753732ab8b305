//! Updates and numbers as the original (issue 14, Data API 4): `$mul`; unknown update
//! operators are update errors; numbers keep their exact value (the original stores and
//! computes with BigDecimal), within its limit on number length; `$date` needs a number.

mod common;

use common::*;
use keyplane_docstore::{
    DocStoreCode as C_, DocStoreError, MAX_NUMBER_LEN, UpdateOptions, parse_json,
};
use serde_json::{Value, json};

fn upd(s: &keyplane_docstore::DocStore, id: i64, update: Value) -> keyplane_docstore::UpdateResult {
    s.update_one(
        KS,
        C,
        &json!({"_id": id}),
        &update,
        &UpdateOptions::default(),
    )
    .unwrap()
}

fn text_of(s: &keyplane_docstore::DocStore, id: i64, field: &str) -> String {
    s.get(KS, C, &json!(id)).unwrap().unwrap()[field].to_string()
}

#[test]
fn mul_multiplies_exactly() {
    let (_d, s) = store_with(vec![json!({"_id": 1, "a": 1.5, "z": 0, "s": "x", "i": 7})]);
    assert_eq!(upd(&s, 1, json!({"$mul": {"a": 2}})).modified, 1);
    assert_eq!(text_of(&s, 1, "a"), "3.0");
    upd(&s, 1, json!({"$mul": {"a": 0.1}}));
    assert_eq!(text_of(&s, 1, "a"), "0.30");
    upd(&s, 1, json!({"$mul": {"i": -3, "new": 5}}));
    assert_eq!(text_of(&s, 1, "i"), "-21");
    // A missing field becomes zero.
    assert_eq!(text_of(&s, 1, "new"), "0");
    // Zero times anything, and anything times one, change nothing.
    assert_eq!(upd(&s, 1, json!({"$mul": {"z": 5}})).modified, 0);
    assert_eq!(upd(&s, 1, json!({"$mul": {"i": 1}})).modified, 0);
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$mul": {"s": 2}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::UnsupportedUpdateOperationTarget));
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$mul": {"a": "2"}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::UnsupportedUpdateOperationParam));
    assert_eq!(
        code(s.update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$mul": {"_id": 2}}),
            &UpdateOptions::default()
        )),
        C_::UnsupportedUpdateOperatorForDocId
    );
}

#[test]
fn unknown_update_operators_are_update_errors() {
    let (_d, s) = store_with(vec![json!({"_id": 1})]);
    for u in [
        json!({"$bogus": {"a": 1}}),
        json!({"$pull": {"a": 1}}),
        json!({"$set": {"a": 1}, "$addToSett": {"b": 1}}),
    ] {
        let e = s
            .update_one(KS, C, &json!({"_id": 1}), &u, &UpdateOptions::default())
            .unwrap_err();
        assert!(matches!(e, DocStoreError::InvalidUpdate(_)), "{u}: {e:?}");
        assert_eq!(e.code(), Some(C_::UnsupportedUpdateOperation), "{u}");
        let e = s.update_many(KS, C, &json!({}), &u, false).unwrap_err();
        assert_eq!(e.code(), Some(C_::UnsupportedUpdateOperation), "{u}");
    }
}

#[test]
fn numbers_keep_their_exact_value() {
    let (_d, s) = store();
    let text = r#"{"_id": 1, "big": 12345678901234567890123, "dec": 3.14159265358979323846264338327950288419716939937510, "tiny": -0.000000000000000000000001, "sci": 2.0635595263889274e-35, "neg": -98765432109876543210987654321}"#;
    let doc = parse_json(text.as_bytes()).unwrap();
    s.insert_one(KS, C, doc).unwrap();
    let got = serde_json::to_string(&s.get(KS, C, &json!(1)).unwrap().unwrap()).unwrap();
    assert_eq!(
        got,
        r#"{"_id":1,"big":12345678901234567890123,"dec":3.14159265358979323846264338327950288419716939937510,"tiny":-0.000000000000000000000001,"sci":2.0635595263889274e-35,"neg":-98765432109876543210987654321}"#
    );
    // Arithmetic is exact too: BigInteger and BigDecimal in the original.
    upd(&s, 1, json!({"$inc": {"big": 1, "neg": -1}}));
    assert_eq!(text_of(&s, 1, "big"), "12345678901234567890124");
    assert_eq!(text_of(&s, 1, "neg"), "-98765432109876543210987654322");
    s.update_one(
        KS,
        C,
        &json!({"_id": 1}),
        &parse_json(br#"{"$set": {"x": 0.1}, "$inc": {"dec": 0.00000000000000000000000000000000000000000000000001}}"#).unwrap(),
        &UpdateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        text_of(&s, 1, "dec"),
        "3.14159265358979323846264338327950288419716939937511"
    );
    upd(&s, 1, json!({"$inc": {"x": 0.2}}));
    assert_eq!(text_of(&s, 1, "x"), "0.3");
    // $min/$max compare exactly: 12345678901234567890124 > 12345678901234567890123 although
    // both are the same f64.
    s.update_one(
        KS,
        C,
        &json!({"_id": 1}),
        &parse_json(br#"{"$max": {"big": 12345678901234567890123}}"#).unwrap(),
        &UpdateOptions::default(),
    )
    .unwrap();
    assert_eq!(text_of(&s, 1, "big"), "12345678901234567890124");
}

#[test]
fn numbers_longer_than_the_original_limit_are_refused() {
    let ok = format!("{{\"_id\": 1, \"n\": {}}}", "9".repeat(MAX_NUMBER_LEN));
    let long = format!("{{\"_id\": 2, \"n\": {}}}", "9".repeat(MAX_NUMBER_LEN + 10));
    let e = parse_json(long.as_bytes()).unwrap_err();
    assert_eq!(e.code(), Some(C_::ShredDocLimitViolation));
    assert!(
        e.to_string().contains("(110)") && e.to_string().contains("(100)"),
        "{e}"
    );
    let (_d, s) = store();
    s.insert_one(KS, C, parse_json(ok.as_bytes()).unwrap())
        .unwrap();
    // A number built in code (not parsed by parse_json) meets the same limit at insert.
    let n: serde_json::Number = "1".repeat(MAX_NUMBER_LEN + 1).parse().unwrap();
    assert_eq!(
        code(s.insert_one(KS, C, json!({"_id": 3, "n": n}))),
        C_::ShredDocLimitViolation
    );
    // So is an update parameter that long, before anything is computed.
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &json!({"$inc": {"n": n.clone()}}),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::ShredDocLimitViolation));
    // And an update whose result would be longer is refused, the document unchanged.
    let e = s
        .update_one(
            KS,
            C,
            &json!({"_id": 1}),
            &parse_json(format!("{{\"$mul\": {{\"n\": {}}}}}", "9".repeat(50)).as_bytes()).unwrap(),
            &UpdateOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(C_::ShredDocLimitViolation));
    assert_eq!(text_of(&s, 1, "n"), "9".repeat(MAX_NUMBER_LEN));
}

#[test]
fn date_with_a_non_numeric_value_is_refused_in_updates() {
    let (_d, s) = store_with(vec![json!({"_id": 1, "d": {"$date": 5}})]);
    for v in [json!("2024-01-01"), json!(1.5), json!(true), json!(null)] {
        for u in [
            json!({"$set": {"d": {"$date": v.clone()}}}),
            json!({"$set": {"e.f": [{"$date": v.clone()}]}}),
            json!({"$setOnInsert": {"d": {"$date": v.clone()}}, "$set": {"x": 1}}),
            json!({"$push": {"l": {"$date": v.clone()}}}),
        ] {
            let r = s.update_one(
                KS,
                C,
                &json!({"_id": {"$in": [1, 2]}}),
                &u,
                &UpdateOptions {
                    upsert: false,
                    ..Default::default()
                },
            );
            if u.get("$setOnInsert").is_some() {
                // Not applied to an existing document: nothing to refuse.
                assert!(r.is_ok(), "{u}");
                continue;
            }
            assert_eq!(code(r), C_::ShredBadEjsonValue, "{u}");
        }
        // An upsert applies $setOnInsert, and is refused.
        let r = s.update_one(
            KS,
            C,
            &json!({"_id": 9}),
            &json!({"$setOnInsert": {"d": {"$date": v.clone()}}}),
            &UpdateOptions {
                upsert: true,
                ..Default::default()
            },
        );
        assert_eq!(code(r), C_::ShredBadEjsonValue, "{v}");
    }
    assert_eq!(s.count(KS, C, &json!({}), 10).unwrap().0, 1);
    assert_eq!(
        s.get(KS, C, &json!(1)).unwrap().unwrap(),
        json!({"_id": 1, "d": {"$date": 5}, "x": 1})
    );
}
