//! A JSON value that keeps object members in the order the document wrote them.
//!
//! A merged policy is handed back to the customer (and to PutKeyPolicy), so it must read like
//! the document they wrote: this type parses any JSON text and prints it back with members,
//! repeated members and numbers as they were. `serde_json::Value`, even with `preserve_order`,
//! cannot: its map holds one value per key, so a member written twice would come back once,
//! with the last value in the first one's place, silently rewriting the customer's policy.
//! Numbers keep their digits (no rounding through f64) through serde_json's
//! `arbitrary_precision`, which this crate enables; an exponent is printed with its sign (`1e+4`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OrderedJson {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OrderedJson>),
    /// Members in document order; a repeated key is kept as written.
    Object(Vec<(String, OrderedJson)>),
}

impl OrderedJson {
    pub(crate) fn parse(text: &str) -> Result<OrderedJson, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub(crate) fn to_pretty(&self) -> String {
        // Serializing this type cannot fail: every key is a string and no number is NaN.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            OrderedJson::String(s) => Some(s),
            _ => None,
        }
    }

    /// The first member named `key`, when this is an object.
    pub(crate) fn get(&self, key: &str) -> Option<&OrderedJson> {
        match self {
            OrderedJson::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The first member named `key`, mutably, when this is an object.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut OrderedJson> {
        match self {
            OrderedJson::Object(members) => {
                members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Whether two values say the same thing to a policy engine: object members in any order,
    /// a string the same as a one-element list of it, and lists of strings as sets. Used to leave
    /// a statement exactly as the customer wrote it when it already grants what keyplane needs.
    pub(crate) fn equivalent(&self, other: &OrderedJson) -> bool {
        match (self, other) {
            (OrderedJson::Object(a), OrderedJson::Object(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| {
                        b.iter()
                            .find(|(k2, _)| k2 == k)
                            .is_some_and(|(_, v2)| v.equivalent(v2))
                    })
            }
            _ => match (self.string_set(), other.string_set()) {
                (Some(a), Some(b)) => a == b,
                _ => self == other,
            },
        }
    }

    fn string_set(&self) -> Option<std::collections::BTreeSet<&str>> {
        match self {
            OrderedJson::String(s) => Some([s.as_str()].into_iter().collect()),
            OrderedJson::Array(items) => items.iter().map(OrderedJson::as_str).collect(),
            _ => None,
        }
    }
}

impl From<&serde_json::Value> for OrderedJson {
    fn from(v: &serde_json::Value) -> OrderedJson {
        use serde_json::Value;
        match v {
            Value::Null => OrderedJson::Null,
            Value::Bool(b) => OrderedJson::Bool(*b),
            Value::Number(n) => OrderedJson::Number(n.clone()),
            Value::String(s) => OrderedJson::String(s.clone()),
            Value::Array(items) => {
                OrderedJson::Array(items.iter().map(OrderedJson::from).collect())
            }
            Value::Object(map) => OrderedJson::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), OrderedJson::from(v)))
                    .collect(),
            ),
        }
    }
}

impl Serialize for OrderedJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrderedJson::Null => s.serialize_unit(),
            OrderedJson::Bool(b) => s.serialize_bool(*b),
            OrderedJson::Number(n) => n.serialize(s),
            OrderedJson::String(v) => s.serialize_str(v),
            OrderedJson::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OrderedJson::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrderedJson, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

/// serde_json's private name for a number carried as text (see `visit_map`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OrderedJson, E> {
        serde_json::Number::from_f64(v)
            .map(OrderedJson::Number)
            .ok_or_else(|| E::custom("a number JSON cannot represent"))
    }

    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }

    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut members = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            // With serde_json's `arbitrary_precision` (enabled in this crate's manifest) a
            // number reaches a visitor as a one-entry map holding its text under this key, as
            // serde_json's own `Value` reads it.
            if members.is_empty() && k == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return text
                    .parse::<serde_json::Number>()
                    .map(OrderedJson::Number)
                    .map_err(de::Error::custom);
            }
            let v = map.next_value::<OrderedJson>()?;
            members.push((k, v));
        }
        Ok(OrderedJson::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_members_in_document_order_with_duplicates_and_numbers_kept() {
        let text = r#"{"z":1,"a":[true,null,2.5],"m":{"y":"x","b":-3},"z":"again"}"#;
        let v = OrderedJson::parse(text).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
    }

    #[test]
    fn numbers_keep_their_digits() {
        let text = r#"[1.0,-0.50,12345678901234567890123456789,1.000000000000000000001,1e2]"#;
        let v = OrderedJson::parse(text).unwrap();
        // No rounding through f64; only an exponent gains serde_json's explicit sign.
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            text.replace("1e2", "1e+2")
        );
    }

    #[test]
    fn equivalence_ignores_member_order_and_list_order_of_strings() {
        let a = OrderedJson::parse(r#"{"AWS":"r","X":["b","a"]}"#).unwrap();
        let b = OrderedJson::parse(r#"{"X":["a","b"],"AWS":["r"]}"#).unwrap();
        assert!(a.equivalent(&b));
        let c = OrderedJson::parse(r#"{"X":["a"],"AWS":["r"]}"#).unwrap();
        assert!(!a.equivalent(&c));
        assert!(
            !OrderedJson::parse("1")
                .unwrap()
                .equivalent(&OrderedJson::parse("\"1\"").unwrap())
        );
    }
}
