//! What a document must be to be stored, as the original checks it when it "shreds" one:
//! an object whose `_id` is a string, number, boolean, null or a valid typed value; field names
//! that are not empty and do not start with `$`; typed values (`$date`, `$uuid`, `$objectId`)
//! that hold what their type says; and the original's size limits. Every refusal names the
//! original's code; the document's `_id` is attached where known.

use serde_json::{Map, Value};

use crate::code::DocStoreCode;
use crate::error::{DocStoreError, Refusal, Result, doc_err, quote_json, shorten};
use crate::ids::{self, DefaultIdType};
use crate::json::MAX_NUMBER_LEN;
use crate::path::{self, MAX_PROPERTY_PATH_LEN};

/// Largest serialized document, in characters (UTF-16 units, as the original counts).
pub const MAX_DOCUMENT_SIZE: usize = 4_000_000;
/// Deepest nesting of objects and arrays in a document, the document itself being level 1
/// (the original's limit: 16 levels are accepted, 17 refused).
pub const MAX_DEPTH: usize = 16;
/// Most elements of an indexed array.
pub const MAX_ARRAY_LEN: usize = 1000;
/// Most properties of one indexed object.
pub const MAX_OBJECT_PROPERTIES: usize = 1000;
/// Most indexed properties in a whole document (every object's, the document's included).
pub const MAX_DOC_PROPERTIES: usize = 2000;
/// Longest indexed string, in UTF-8 bytes.
pub const MAX_STRING_BYTES: usize = 8000;

/// Typed-value wrappers of the Data API: a one-entry object with one of these keys is a value
/// of that type.
pub const TYPED_KEYS: [&str; 3] = ["$date", "$uuid", "$objectId"];

pub fn is_typed_literal(m: &Map<String, Value>) -> bool {
    m.len() == 1 && m.keys().all(|k| TYPED_KEYS.contains(&k.as_str()))
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a typed value is not one, or `None` when it is valid.
pub fn typed_value_problem(key: &str, v: &Value) -> Option<String> {
    match key {
        "$date" => match v {
            // An integral number of milliseconds that fits a 64-bit integer.
            Value::Number(n) if n.as_i64().is_some() => None,
            _ => Some(format!(
                "'$date' value has to be an epoch timestamp in milliseconds (an integer), instead got ({})",
                quote_json(v)
            )),
        },
        "$uuid" => match v {
            Value::String(s) if ids::parse_uuid(s).is_some() => None,
            _ => Some(format!(
                "'$uuid' value has to be a 36-character UUID string, instead got ({})",
                quote_json(v)
            )),
        },
        "$objectId" => match v {
            Value::String(s) if ids::parse_object_id(s).is_some() => None,
            _ => Some(format!(
                "'$objectId' value has to be a 24-digit hexadecimal ObjectId, instead got ({})",
                quote_json(v)
            )),
        },
        _ => Some(format!("unknown typed value '{key}'")),
    }
}

/// The text stored in the `id` column for an `_id` value, or the refusal of an `_id` that is
/// not one. Numbers are normalized so that `1` and `1.0` name the same document; typed ids
/// are keyed in lower case, as the original compares them.
pub fn id_key(v: &Value) -> Result<String> {
    let bad_type = |why: String| doc_err(DocStoreCode::ShredBadDocidType, why);
    match v {
        Value::String(s) if s.is_empty() => Err(doc_err(
            DocStoreCode::ShredBadDocidValue,
            "bad value for '_id' field: empty string not allowed",
        )),
        Value::String(_) | Value::Bool(_) | Value::Null => Ok(v.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i.to_string());
            }
            if let Some(u) = n.as_u64() {
                return Ok(u.to_string());
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).to_string()),
                _ => Ok(n.to_string()),
            }
        }
        Value::Object(m) if m.len() == 1 && is_typed_literal(m) => {
            let Some((k, inner)) = m.iter().next() else {
                return Err(bad_type("empty object".into()));
            };
            if let Some(p) = typed_value_problem(k, inner) {
                return Err(bad_type(format!("bad type for '_id' field: {p}")));
            }
            let canonical = match inner {
                Value::String(s) if k == "$uuid" => ids::parse_uuid(s),
                Value::String(s) if k == "$objectId" => ids::parse_object_id(s),
                _ => None,
            };
            Ok(match canonical {
                None => v.to_string(),
                Some(c) => {
                    let mut m = Map::with_capacity(1);
                    m.insert(k.clone(), Value::String(c));
                    Value::Object(m).to_string()
                }
            })
        }
        other => Err(bad_type(format!(
            "bad type for '_id' field: document id must be a string, number, boolean, null, or a $date, $uuid or $objectId value, not {} ({})",
            type_name(other),
            quote_json(other)
        ))),
    }
}

/// Which fields a collection indexes (`createCollection`'s `indexing`): the original applies
/// its value limits (string, array and object sizes) to indexed fields only.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Indexing {
    #[default]
    All,
    /// Only these paths (each a list of field names) and what is below them.
    Allow(Vec<Vec<String>>),
    /// Everything but these paths and what is below them.
    Deny(Vec<Vec<String>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incl {
    /// This value and everything below it.
    Yes,
    No,
    /// Some fields below it only.
    Partial,
}

fn is_prefix(p: &[String], of: &[&str]) -> bool {
    p.len() <= of.len() && p.iter().zip(of).all(|(a, b)| a == b)
}

fn is_proper_prefix(p: &[&str], of: &[String]) -> bool {
    p.len() < of.len() && p.iter().zip(of).all(|(a, b)| *a == b)
}

impl Indexing {
    /// Parses the `indexing` collection option; `Err` says what is wrong.
    pub fn from_option(v: Option<&Value>) -> std::result::Result<Indexing, String> {
        let Some(v) = v else {
            return Ok(Indexing::All);
        };
        let Value::Object(m) = v else {
            return Err("'indexing' must be an object".into());
        };
        let list = |v: &Value, what: &str| -> std::result::Result<Vec<Vec<String>>, String> {
            let Value::Array(a) = v else {
                return Err(format!("'indexing.{what}' must be an array of paths"));
            };
            a.iter()
                .map(|p| match p {
                    Value::String(s) if s == "*" => Ok(Vec::new()),
                    Value::String(s) => path::decode(s).map_err(|e| format!("'{s}': {e}")),
                    _ => Err(format!("'indexing.{what}' must hold strings")),
                })
                .collect()
        };
        match (m.get("allow"), m.get("deny"), m.len()) {
            (Some(a), None, 1) => Ok(Indexing::Allow(list(a, "allow")?)),
            (None, Some(d), 1) => Ok(Indexing::Deny(list(d, "deny")?)),
            _ => Err("'indexing' needs exactly one of 'allow' or 'deny'".into()),
        }
    }

    fn state(&self, path: &[&str]) -> Incl {
        match self {
            Indexing::All => Incl::Yes,
            Indexing::Allow(list) => {
                if list.iter().any(|a| is_prefix(a, path)) {
                    Incl::Yes
                } else if list.iter().any(|a| is_proper_prefix(path, a)) {
                    Incl::Partial
                } else {
                    Incl::No
                }
            }
            Indexing::Deny(list) => {
                if list.iter().any(|d| is_prefix(d, path)) {
                    Incl::No
                } else if list.iter().any(|d| is_proper_prefix(path, d)) {
                    Incl::Partial
                } else {
                    Incl::Yes
                }
            }
        }
    }
}

/// What a collection's options decide about its documents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionRules {
    pub default_id: DefaultIdType,
    pub indexing: Indexing,
}

impl CollectionRules {
    /// The rules of a collection created with `options` (already validated on creation).
    pub fn from_options(options: &Value) -> std::result::Result<Self, String> {
        let default_id = match options.get("defaultId") {
            None | Some(Value::Null) => DefaultIdType::Legacy,
            Some(Value::Object(m)) => match m.get("type") {
                None | Some(Value::Null) => DefaultIdType::Legacy,
                Some(Value::String(t)) => DefaultIdType::from_name(t).ok_or_else(|| {
                    format!(
                        "unknown 'defaultId.type' '{}': use uuid, uuidv6, uuidv7 or objectId",
                        shorten(t)
                    )
                })?,
                Some(_) => return Err("'defaultId.type' must be a string".into()),
            },
            Some(_) => return Err("'defaultId' must be an object".into()),
        };
        Ok(Self {
            default_id,
            indexing: Indexing::from_option(options.get("indexing"))?,
        })
    }
}

/// A document ready for storage: its `_id`, the id column text and the JSON text.
#[derive(Debug)]
pub struct Prepared {
    pub id: Value,
    pub key: String,
    pub text: String,
    /// The document `text` was written from, for a write that answers with it.
    pub doc: Value,
}

/// `m` with `_id` as its first field (clients expect to see it first, as the original writes
/// documents), inserting `id` when given.
pub fn with_id_first(mut m: Map<String, Value>, id: Option<Value>) -> Map<String, Value> {
    let first_is_id = m.keys().next().is_some_and(|k| k == "_id");
    if first_is_id && id.is_none() {
        return m;
    }
    let idv = match id {
        Some(v) => {
            m.shift_remove("_id");
            v
        }
        None => match m.shift_remove("_id") {
            Some(v) => v,
            None => return m,
        },
    };
    let mut out = Map::with_capacity(m.len() + 1);
    out.insert("_id".into(), idv);
    out.extend(m);
    out
}

/// Validates a document for storage as the original does, giving it an `_id` of the
/// collection's type when it has none and putting `_id` first. Refusals carry the document's
/// `_id`.
pub fn prepare(doc: Value, rules: &CollectionRules) -> Result<Prepared> {
    let Value::Object(m) = doc else {
        return Err(doc_err(
            DocStoreCode::ShredBadDocumentType,
            format!(
                "bad document type: a document must be a JSON object, not {}",
                type_name(&doc)
            ),
        ));
    };
    let m = if m.contains_key("_id") {
        with_id_first(m, None)
    } else {
        with_id_first(m, Some(rules.default_id.generate()))
    };
    let id = m.get("_id").cloned().unwrap_or(Value::Null);
    // An `_id` that is not one names no document (the original reports none either).
    let key = id_key(&id)?;
    check(m, key, rules).map_err(|e| e.for_document(&id))
}

fn check(m: Map<String, Value>, key: String, rules: &CollectionRules) -> Result<Prepared> {
    check_object(&m, 0, 0, true)?;
    let doc = Value::Object(m);
    let text = serde_json::to_string(&doc).map_err(|e| DocStoreError::Corrupt(e.to_string()))?;
    // Bytes are at least UTF-16 units, so only a long text needs counting.
    if text.len() > MAX_DOCUMENT_SIZE {
        let size = text.encode_utf16().count();
        if size > MAX_DOCUMENT_SIZE {
            return Err(DocStoreError::DocumentTooLarge {
                size,
                limit: MAX_DOCUMENT_SIZE,
                document_id: None,
            });
        }
    }
    let mut props = 0usize;
    let mut path = Vec::new();
    check_indexed(&doc, &rules.indexing, &mut path, &mut props, None)?;
    if props > MAX_DOC_PROPERTIES {
        return Err(limit(format!(
            "total number of indexed properties ({props}) in the document exceeds the maximum allowed ({MAX_DOC_PROPERTIES})"
        )));
    }
    Ok(Prepared {
        id: doc.get("_id").cloned().unwrap_or(Value::Null),
        key,
        text,
        doc,
    })
}

fn limit(msg: String) -> DocStoreError {
    DocStoreError::InvalidDocument(Refusal::new(
        DocStoreCode::ShredDocLimitViolation,
        format!("document size limitation violated: {msg}"),
    ))
}

fn too_deep() -> DocStoreError {
    DocStoreError::TooDeep {
        limit: MAX_DEPTH,
        document_id: None,
    }
}

/// Structure, names, typed values and number lengths. `depth` is the nesting level of the
/// container holding `m` (0 for the document); `prefix` the length of the path to `m` with a
/// trailing dot (0 for the document).
fn check_object(m: &Map<String, Value>, depth: usize, prefix: usize, root: bool) -> Result<()> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    if !root
        && m.len() == 1
        && let Some((k, v)) = m.iter().next()
        && TYPED_KEYS.contains(&k.as_str())
    {
        return match typed_value_problem(k, v) {
            None => Ok(()),
            Some(p) => Err(doc_err(
                DocStoreCode::ShredBadEjsonValue,
                format!("bad JSON extension value: {p}"),
            )),
        };
    }
    for (k, v) in m {
        if root && k == "_id" {
            continue;
        }
        if k.is_empty() || k.starts_with('$') {
            return Err(doc_err(
                DocStoreCode::ShredBadFieldName,
                format!(
                    "document field name not valid: field name '{}' {}",
                    shorten(k),
                    if k.is_empty() {
                        "is empty"
                    } else {
                        "starts with '$'"
                    }
                ),
            ));
        }
        let klen = if k.is_ascii() {
            k.len()
        } else {
            k.encode_utf16().count()
        };
        if prefix + klen > MAX_PROPERTY_PATH_LEN {
            return Err(limit(format!(
                "field path length ({}) exceeds the maximum allowed ({MAX_PROPERTY_PATH_LEN}) (path ends with '{}')",
                prefix + klen,
                shorten(k)
            )));
        }
        check_value(v, depth, prefix + klen + 1)?;
    }
    Ok(())
}

fn check_value(v: &Value, depth: usize, prefix: usize) -> Result<()> {
    match v {
        Value::Object(m) => check_object(m, depth, prefix, false),
        Value::Array(a) => {
            if depth + 1 > MAX_DEPTH {
                return Err(too_deep());
            }
            a.iter().try_for_each(|e| check_value(e, depth + 1, prefix))
        }
        Value::Number(n) => {
            let len = n.as_str().len();
            if len > MAX_NUMBER_LEN {
                return Err(limit(format!(
                    "number value length ({len}) exceeds the maximum allowed ({MAX_NUMBER_LEN})"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The limits the original applies to indexed values only. `field` names the property the
/// value belongs to, for messages.
fn check_indexed<'a>(
    v: &'a Value,
    indexing: &Indexing,
    path: &mut Vec<&'a str>,
    props: &mut usize,
    field: Option<&str>,
) -> Result<()> {
    let incl = indexing.state(path);
    if incl == Incl::No {
        return Ok(());
    }
    let name = || shorten(field.unwrap_or(""));
    match v {
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(limit(format!(
            "indexed string value (field '{}') length ({} bytes) exceeds the maximum allowed ({MAX_STRING_BYTES} bytes)",
            name(),
            s.len()
        ))),
        Value::Array(a) => {
            if a.len() > MAX_ARRAY_LEN {
                return Err(limit(format!(
                    "number of elements an indexed array (field '{}') has ({}) exceeds the maximum allowed ({MAX_ARRAY_LEN})",
                    name(),
                    a.len()
                )));
            }
            a.iter()
                .try_for_each(|e| check_indexed(e, indexing, path, props, field))
        }
        Value::Object(m) => {
            let mut counted = 0;
            for (k, child) in m {
                path.push(k);
                if incl == Incl::Yes || indexing.state(path) != Incl::No {
                    counted += 1;
                    check_indexed(child, indexing, path, props, Some(k))?;
                }
                path.pop();
            }
            if counted > MAX_OBJECT_PROPERTIES {
                return Err(limit(format!(
                    "number of properties an indexed object (field '{}') has ({counted}) exceeds the maximum allowed ({MAX_OBJECT_PROPERTIES})",
                    name()
                )));
            }
            *props += counted;
            Ok(())
        }
        _ => Ok(()),
    }
}
