//! Strict JSON reading for request bodies, as the original reads them: a repeated field name in
//! one object is an error (serde_json's maps keep the last value silently, so the check happens
//! while parsing, in the visitor that builds each object), and so is a number written with more
//! than [`MAX_NUMBER_LEN`] characters. Numbers keep their text exactly (serde_json's
//! `arbitrary_precision`, enabled by this crate), so a 23-digit integer is stored as written.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::code::DocStoreCode;
use crate::error::{DocStoreError, Refusal, Result};

/// Longest number accepted, in characters of its JSON text (the original's limit).
pub const MAX_NUMBER_LEN: usize = 100;
/// Deepest nesting a request body may have; documents are further limited to
/// [`crate::MAX_DEPTH`] levels. Below serde_json's own limit, so the answer is this one.
pub const MAX_JSON_DEPTH: usize = 100;

/// serde_json hands an `arbitrary_precision` number to a visitor as a one-entry map under
/// this key (the same one its own `Value` recognises).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

#[derive(Debug, Clone, PartialEq)]
enum Problem {
    DuplicateKey(String),
    NumberTooLong(usize),
    TooDeep,
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    problem: &'a Cell<Option<Problem>>,
    depth: usize,
}

impl Seed<'_> {
    fn fail<E: de::Error>(&self, p: Problem) -> E {
        self.problem.set(Some(p));
        E::custom("refused")
    }

    fn deeper<E: de::Error>(&self) -> std::result::Result<Self, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(self.fail(Problem::TooDeep));
        }
        Ok(Seed {
            problem: self.problem,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            let text: String = map.next_value()?;
            if text.len() > MAX_NUMBER_LEN {
                return Err(self.fail(Problem::NumberTooLong(text.len())));
            }
            let n: Number = text.parse().map_err(de::Error::custom)?;
            return Ok(Value::Number(n));
        }
        let inner = self.deeper()?;
        let mut m = Map::new();
        let v = map.next_value_seed(inner)?;
        m.insert(first, v);
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(self.fail(Problem::DuplicateKey(k)));
            }
            let v = map.next_value_seed(inner)?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

fn refusal(code: DocStoreCode, message: String) -> DocStoreError {
    DocStoreError::InvalidJson(Refusal::new(code, message))
}

/// Parses a request body (or any JSON text) as the original does: a field repeated in one
/// object is refused (`REQUEST_NOT_JSON`), as is malformed JSON; a number longer than
/// [`MAX_NUMBER_LEN`] characters or nesting deeper than [`MAX_JSON_DEPTH`] is a
/// `SHRED_DOC_LIMIT_VIOLATION`. Numbers keep their exact text. Never panics, whatever the bytes.
pub fn parse_json(bytes: &[u8]) -> Result<Value> {
    let problem = Cell::new(None);
    let seed = Seed {
        problem: &problem,
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, problem.take()) {
        (Ok(v), None) => Ok(v),
        (_, Some(Problem::DuplicateKey(k))) => Err(refusal(
            DocStoreCode::RequestNotJson,
            format!(
                "request not valid JSON: duplicate field '{}' in one object",
                crate::error::shorten(&k)
            ),
        )),
        (_, Some(Problem::NumberTooLong(n))) => Err(refusal(
            DocStoreCode::ShredDocLimitViolation,
            format!(
                "document size limitation violated: number value length ({n}) exceeds the maximum allowed ({MAX_NUMBER_LEN})"
            ),
        )),
        (_, Some(Problem::TooDeep)) => Err(refusal(
            DocStoreCode::ShredDocLimitViolation,
            format!(
                "document size limitation violated: JSON nested deeper than {MAX_JSON_DEPTH} levels (documents may nest at most {} levels)",
                crate::validate::MAX_DEPTH
            ),
        )),
        (Err(e), None) => Err(refusal(
            DocStoreCode::RequestNotJson,
            format!("request not valid JSON: {e}"),
        )),
    }
}

/// [`parse_json`]'s checks on JSON text whose value the caller does not need.
pub fn check_json_text(text: &str) -> Result<()> {
    parse_json(text.as_bytes()).map(drop)
}
