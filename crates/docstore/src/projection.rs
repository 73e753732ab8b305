//! Data API projections, applied to each document of a page after SQLite selected it (a page
//! is at most a few hundred documents, so nothing here scales with the collection).

use serde_json::{Map, Value};

use crate::code::DocStoreCode;
use crate::error::{DocStoreError, Refusal, Result, projection_err};
use crate::path::{self, FieldPath, PathUse, Seg};

fn inv(msg: impl Into<String>) -> DocStoreError {
    projection_err(msg)
}

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    All,
    Nothing,
    Include(Vec<FieldPath>),
    Exclude(Vec<FieldPath>),
}

#[derive(Debug, Clone)]
struct Slice {
    path: FieldPath,
    skip: i64,
    limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Projection {
    mode: Mode,
    id: Option<bool>,
    slices: Vec<Slice>,
}

fn flag(k: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        _ => Err(inv(format!(
            "value for '{k}' must be 1, 0, true, false or a $slice"
        ))),
    }
}

impl Projection {
    pub fn parse(p: Option<&Value>) -> Result<Option<Projection>> {
        let m = match p {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) if m.is_empty() => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(DocStoreError::InvalidProjection(Refusal::new(
                    DocStoreCode::UnsupportedProjectionDefinition,
                    format!(
                        "a projection must be a JSON object, not {}",
                        crate::validate::type_name(other)
                    ),
                )));
            }
        };
        let mut inc = Vec::new();
        let mut exc = Vec::new();
        let mut star = None;
        let mut id = None;
        let mut slices = Vec::new();
        for (k, v) in m {
            if k == "*" {
                star = Some(flag(k, v)?);
                continue;
            }
            let fp = FieldPath::parse(k, PathUse::Projection)?;
            if let Value::Object(op) = v {
                let arg = match (op.len(), op.get("$slice")) {
                    (1, Some(a)) => a,
                    _ => {
                        return Err(inv(format!(
                            "unsupported projection operator for '{}' (only '$slice' is supported)",
                            crate::error::shorten(k)
                        )));
                    }
                };
                let (skip, limit) = match arg {
                    Value::Number(n) => {
                        let n = n.as_i64().ok_or_else(|| inv("$slice needs integers"))?;
                        if n >= 0 {
                            (0, Some(n as usize))
                        } else {
                            (n, None)
                        }
                    }
                    Value::Array(a) if a.len() == 2 => {
                        let s = a[0].as_i64().ok_or_else(|| inv("$slice needs integers"))?;
                        let l = a[1]
                            .as_u64()
                            .filter(|l| *l > 0)
                            .ok_or_else(|| inv("$slice limit must be a positive integer"))?;
                        (s, Some(l as usize))
                    }
                    _ => return Err(inv("$slice needs a number or [skip, limit]")),
                };
                slices.push(Slice {
                    path: fp,
                    skip,
                    limit,
                });
                continue;
            }
            let on = flag(k, v)?;
            if fp.is_id() {
                id = Some(on);
            } else if on {
                inc.push(fp);
            } else {
                exc.push(fp);
            }
        }
        let mode = match (star, inc.is_empty(), exc.is_empty()) {
            (Some(_), false, _) | (Some(_), _, false) => {
                return Err(inv("'*' cannot be combined with other fields"));
            }
            (Some(true), ..) => Mode::All,
            (Some(false), ..) => Mode::Nothing,
            (None, false, false) => {
                return Err(inv("cannot mix included and excluded fields"));
            }
            (None, false, true) => Mode::Include(inc),
            (None, true, false) => Mode::Exclude(exc),
            // Only _id and/or $slice: an id-only inclusion when `_id: 1` with nothing else
            // would surprise nobody, but the Data API treats it as "everything but".
            (None, true, true) => {
                if id == Some(true) && slices.is_empty() {
                    Mode::Include(Vec::new())
                } else {
                    Mode::Exclude(Vec::new())
                }
            }
        };
        Ok(Some(Projection { mode, id, slices }))
    }

    pub fn apply(&self, doc: Value) -> Value {
        let mut out = match &self.mode {
            Mode::All => doc,
            Mode::Nothing => Value::Object(Map::new()),
            Mode::Exclude(paths) => {
                let mut d = doc;
                for p in paths {
                    remove_through_arrays(&mut d, &p.segs);
                }
                d
            }
            Mode::Include(paths) => {
                let mut d = Value::Object(Map::new());
                if self.id != Some(false)
                    && let Some(idv) = doc.get("_id")
                    && let Value::Object(m) = &mut d
                {
                    m.insert("_id".into(), idv.clone());
                }
                for p in paths.iter().chain(self.slices.iter().map(|s| &s.path)) {
                    if let Some(v) = p.get(&doc) {
                        copy_into(&mut d, &p.segs, v.clone());
                    } else if let Some(part) = pick_through_arrays(&doc, &p.segs) {
                        merge(&mut d, part);
                    }
                }
                d
            }
        };
        if self.id == Some(false)
            && let Value::Object(m) = &mut out
        {
            m.shift_remove("_id");
        }
        for s in &self.slices {
            if let Some(Value::Array(a)) = path::get_segs_mut(&mut out, &s.path.segs) {
                let len = a.len() as i64;
                let start = if s.skip < 0 {
                    (len + s.skip).max(0)
                } else {
                    s.skip.min(len)
                } as usize;
                let mut rest: Vec<Value> = a.drain(start..).collect();
                if let Some(l) = s.limit {
                    rest.truncate(l);
                }
                *a = rest;
            }
        }
        out
    }
}

fn key_of(seg: &Seg) -> String {
    match seg {
        Seg::Key(k) => k.clone(),
        Seg::Index(i) => i.to_string(),
    }
}

/// The part of `v` at `segs`, shaped as in `v`, where a field name meets an array: as in the
/// Data API (and MongoDB), `items.sku` keeps `sku` in each object element of `items` (an
/// object without it stays as `{}`) and drops elements that are not objects.
fn pick_through_arrays(v: &Value, segs: &[Seg]) -> Option<Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.clone());
    };
    match v {
        Value::Object(m) => {
            let key = key_of(first);
            let sub = pick_through_arrays(m.get(&key)?, rest)?;
            Some(Value::Object(Map::from_iter([(key, sub)])))
        }
        Value::Array(a) if matches!(first, Seg::Key(_)) => Some(Value::Array(
            a.iter()
                .filter(|e| e.is_object())
                .map(|e| pick_through_arrays(e, segs).unwrap_or_else(|| Value::Object(Map::new())))
                .collect(),
        )),
        _ => None,
    }
}

/// Merges what one inclusion path picked into the projected document: objects key by key,
/// arrays picked from the same source array element by element.
fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) if d.len() == s.len() => {
            for (de, se) in d.iter_mut().zip(s) {
                merge(de, se);
            }
        }
        (d, s) => *d = s,
    }
}

/// Removes the field at `segs`, in every object element where a field name meets an array.
fn remove_through_arrays(v: &mut Value, segs: &[Seg]) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    match (first, v) {
        (Seg::Index(i), Value::Array(a)) => {
            if rest.is_empty() {
                if let Some(e) = a.get_mut(*i) {
                    *e = Value::Null;
                }
            } else if let Some(e) = a.get_mut(*i) {
                remove_through_arrays(e, rest);
            }
        }
        (Seg::Key(_), Value::Array(a)) => {
            for e in a.iter_mut().filter(|e| e.is_object()) {
                remove_through_arrays(e, segs);
            }
        }
        (seg, Value::Object(m)) => {
            let key = key_of(seg);
            if rest.is_empty() {
                m.shift_remove(&key);
            } else if let Some(c) = m.get_mut(&key) {
                remove_through_arrays(c, rest);
            }
        }
        _ => {}
    }
}

/// Copies `v` to the same path in `dst`, building the objects on the way; array indexes in an
/// inclusion path are copied as object keys' equivalents only when the source had objects.
fn copy_into(dst: &mut Value, segs: &[Seg], v: Value) {
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = dst;
    for seg in parents {
        let key = match seg {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        };
        let Value::Object(m) = cur else { return };
        cur = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = cur {
        let key = match last {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        };
        m.insert(key, v);
    }
}
