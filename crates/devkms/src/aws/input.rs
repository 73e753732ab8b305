//! Request decoding: the JSON body, and typed access to its members with AWS's error for each
//! kind of mistake (a wrong type, a missing member, an integer out of range).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use base64::engine::general_purpose::STANDARD as B64;

use crate::error::ApiError;

/// An encryption context as a request carries it: ordered, so every comparison and every
/// derived condition key is deterministic.
pub(super) type EncryptionContext = BTreeMap<String, String>;

pub(super) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::serialization(
            "Start of structure or map found where not expected.",
        )),
        Err(_) => Err(ApiError::serialization(
            "Unexpected character or malformed JSON in request body.",
        )),
    }
}

/// Typed access to the request members with AWS's error for each kind of mistake. The values it
/// hands out borrow the request body, so typed requests can keep `&'a str` members.
#[derive(Clone, Copy)]
pub(super) struct Input<'a>(pub(super) &'a Map<String, Value>);

fn member_name(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(super) fn wrong_type(name: &str, expected: &str) -> ApiError {
    ApiError::serialization(format!("Expected {expected} for member '{name}'"))
}

impl<'a> Input<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
    pub(super) fn str_opt(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(name, "a string")),
        }
    }
    pub(super) fn str_req(&self, name: &str) -> Result<&'a str, ApiError> {
        self.str_opt(name)?
            .ok_or_else(|| ApiError::missing(&member_name(name)))
    }
    pub(super) fn bool_opt(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(name, "a boolean")),
        }
    }
    pub(super) fn int_opt(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "an integer")),
        }
    }
    fn blob_opt(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        match self.str_opt(name)? {
            None => Ok(None),
            Some(s) => B64.decode(s).map(|v| Some(Zeroizing::new(v))).map_err(|_| {
                ApiError::serialization(format!(
                    "Base64 encoded binary data is not valid for member '{name}'"
                ))
            }),
        }
    }
    pub(super) fn blob_req(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        self.blob_opt(name)?
            .ok_or_else(|| ApiError::missing(&member_name(name)))
    }
    pub(super) fn map_opt(&self, name: &str) -> Result<Option<EncryptionContext>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        _ => return Err(wrong_type(name, "a map of strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(wrong_type(name, "a map")),
        }
    }
    /// An optional encryption context; absent means empty, as for AWS.
    pub(super) fn context(&self, name: &str) -> Result<EncryptionContext, ApiError> {
        Ok(self.map_opt(name)?.unwrap_or_default())
    }
    pub(super) fn str_list_opt(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| wrong_type(name, "a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong_type(name, "a list")),
        }
    }
    /// An optional integer that must lie in `range`, refused with AWS's validation message.
    pub(super) fn int_in(
        &self,
        name: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, ApiError> {
        match self.int_opt(name)? {
            Some(n) if !range.contains(&n) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {} and {}",
                member_name(name),
                range.start(),
                range.end()
            ))),
            n => Ok(n),
        }
    }
    pub(super) fn limit(&self) -> Result<usize, ApiError> {
        Ok(self.int_in("Limit", 1..=1000)?.unwrap_or(100) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_integers_keep_aws_messages() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"PendingWindowInDays": 3, "NumberOfBytes": 2048, "Limit": 5}"#,
        )
        .unwrap();
        let input = Input(&m);
        let e = input.int_in("PendingWindowInDays", 7..=30).unwrap_err();
        assert_eq!(e.kind, "ValidationException");
        assert_eq!(
            e.message,
            "1 validation error detected: Value '3' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
        );
        assert_eq!(input.limit().unwrap(), 5);
        assert_eq!(Input(&Map::new()).limit().unwrap(), 100);
        assert_eq!(
            input.int_in("RotationPeriodInDays", 90..=2560).unwrap(),
            None
        );
    }
}
