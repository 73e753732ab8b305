//! Data API update documents (`$set`, `$inc`, … `$setOnInsert`), applied to one document in
//! memory inside the write transaction that reads and rewrites it.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::error::{DocStoreError, Result};
use crate::filter::is_typed_literal;
use crate::path::{self, FieldPath, Seg};

fn inv(msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidUpdate(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    SetOnInsert,
    Unset,
    Inc,
    Push,
    Pop,
    AddToSet,
    Rename,
    Min,
    Max,
    CurrentDate,
}

impl Op {
    fn parse(s: &str) -> Result<Op> {
        Ok(match s {
            "$set" => Op::Set,
            "$setOnInsert" => Op::SetOnInsert,
            "$unset" => Op::Unset,
            "$inc" => Op::Inc,
            "$push" => Op::Push,
            "$pop" => Op::Pop,
            "$addToSet" => Op::AddToSet,
            "$rename" => Op::Rename,
            "$min" => Op::Min,
            "$max" => Op::Max,
            "$currentDate" => Op::CurrentDate,
            other => return Err(DocStoreError::UnknownOperator(other.to_owned())),
        })
    }
}

#[derive(Debug, Clone)]
struct Action {
    op: Op,
    path: FieldPath,
    arg: Value,
    /// `$rename`'s destination.
    to: Option<FieldPath>,
}

#[derive(Debug, Clone)]
pub struct Update {
    actions: Vec<Action>,
}

impl Update {
    pub fn parse(update: &Value) -> Result<Update> {
        let m = match update {
            Value::Object(m) if !m.is_empty() => m,
            Value::Object(_) => return Err(inv("update document is empty")),
            _ => return Err(inv("update must be an object of update operators")),
        };
        let mut actions = Vec::new();
        let mut touched: Vec<(Op, FieldPath)> = Vec::new();
        for (opname, fields) in m {
            if !opname.starts_with('$') {
                return Err(inv(format!(
                    "'{opname}' is not an update operator (use $set, or replace the document)"
                )));
            }
            let op = Op::parse(opname)?;
            let fields = match fields {
                Value::Object(f) => f,
                _ => return Err(inv(format!("{opname} needs an object of fields"))),
            };
            for (k, arg) in fields {
                let path = FieldPath::parse(k, DocStoreError::InvalidUpdate)?;
                let to = if op == Op::Rename {
                    let t = arg
                        .as_str()
                        .ok_or_else(|| inv("$rename needs a string destination"))?;
                    Some(FieldPath::parse(t, DocStoreError::InvalidUpdate)?)
                } else {
                    None
                };
                let touches_id = path.segs.first() == Some(&Seg::Key("_id".into()))
                    || to
                        .as_ref()
                        .is_some_and(|t| t.segs.first() == Some(&Seg::Key("_id".into())));
                if touches_id && op != Op::SetOnInsert {
                    return Err(inv("_id cannot be modified"));
                }
                validate_arg(op, k, arg)?;
                for p in std::iter::once(&path).chain(to.iter()) {
                    if let Some((_, other)) =
                        touched.iter().find(|(_, t)| overlaps(&t.segs, &p.segs))
                    {
                        return Err(inv(format!(
                            "paths '{}' and '{}' conflict in one update",
                            other.raw, p.raw
                        )));
                    }
                }
                touched.push((op, path.clone()));
                if let Some(t) = &to {
                    touched.push((op, t.clone()));
                }
                actions.push(Action {
                    op,
                    path,
                    arg: arg.clone(),
                    to,
                });
            }
        }
        Ok(Update { actions })
    }

    /// Applies the update; `inserting` is true for the document an upsert creates.
    pub fn apply(&self, doc: &mut Value, inserting: bool, now_ms: i64) -> Result<()> {
        for a in &self.actions {
            apply_one(a, doc, inserting, now_ms)?;
        }
        Ok(())
    }
}

fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn validate_arg(op: Op, k: &str, arg: &Value) -> Result<()> {
    match op {
        Op::Inc if !arg.is_number() => Err(inv(format!("$inc on '{k}' needs a number"))),
        Op::Pop => match arg.as_i64() {
            Some(1) | Some(-1) => Ok(()),
            _ => Err(inv(format!("$pop on '{k}' needs 1 or -1"))),
        },
        Op::CurrentDate => match arg {
            Value::Bool(true) => Ok(()),
            Value::Object(m) if m.get("$type").and_then(Value::as_str) == Some("date") => Ok(()),
            _ => Err(inv(format!(
                "$currentDate on '{k}' needs true or {{\"$type\": \"date\"}}"
            ))),
        },
        Op::Push | Op::AddToSet => match arg {
            Value::Object(m) if m.keys().any(|x| x.starts_with('$')) && !is_typed_literal(m) => {
                for key in m.keys() {
                    match key.as_str() {
                        "$each" => {}
                        "$position" if op == Op::Push => {}
                        other => return Err(DocStoreError::UnknownOperator(other.to_owned())),
                    }
                }
                if !m.get("$each").is_some_and(Value::is_array) {
                    return Err(inv(format!("modifiers on '{k}' need an $each array")));
                }
                if let Some(p) = m.get("$position")
                    && p.as_i64().is_none()
                {
                    return Err(inv("$position needs an integer"));
                }
                Ok(())
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn apply_one(a: &Action, doc: &mut Value, inserting: bool, now_ms: i64) -> Result<()> {
    let segs = &a.path.segs;
    match a.op {
        Op::Set => *path::get_mut_create(doc, segs)? = a.arg.clone(),
        Op::SetOnInsert => {
            if inserting {
                *path::get_mut_create(doc, segs)? = a.arg.clone();
            }
        }
        Op::Unset => {
            path::remove(doc, segs);
        }
        Op::CurrentDate => {
            let mut m = Map::new();
            m.insert("$date".into(), Value::from(now_ms));
            *path::get_mut_create(doc, segs)? = Value::Object(m);
        }
        Op::Inc => {
            let by = a
                .arg
                .as_number()
                .cloned()
                .unwrap_or_else(|| Number::from(0));
            match path::get_segs_mut(doc, segs) {
                None => *path::get_mut_create(doc, segs)? = Value::Number(by),
                Some(Value::Number(cur)) => *cur = add(cur, &by)?,
                Some(_) => {
                    return Err(inv(format!(
                        "$inc on '{}': the field is not a number",
                        a.path.raw
                    )));
                }
            }
        }
        Op::Min | Op::Max => {
            let want = if a.op == Op::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            match path::get_segs_mut(doc, segs) {
                None => *path::get_mut_create(doc, segs)? = a.arg.clone(),
                Some(cur) => {
                    if compare_values(&a.arg, cur) == want {
                        *cur = a.arg.clone();
                    }
                }
            }
        }
        Op::Push | Op::AddToSet => {
            let (items, position) = match &a.arg {
                Value::Object(m) if m.contains_key("$each") => (
                    m.get("$each")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    m.get("$position").and_then(Value::as_i64),
                ),
                v => (vec![v.clone()], None),
            };
            if path::get_segs_mut(doc, segs).is_none() {
                *path::get_mut_create(doc, segs)? = Value::Array(Vec::new());
            }
            let Some(Value::Array(arr)) = path::get_segs_mut(doc, segs) else {
                return Err(inv(format!(
                    "{} on '{}': the field is not an array",
                    if a.op == Op::Push {
                        "$push"
                    } else {
                        "$addToSet"
                    },
                    a.path.raw
                )));
            };
            if a.op == Op::AddToSet {
                for it in items {
                    if !arr
                        .iter()
                        .any(|x| compare_values(x, &it) == Ordering::Equal)
                    {
                        arr.push(it);
                    }
                }
            } else {
                let len = arr.len() as i64;
                let at = match position {
                    None => arr.len(),
                    Some(p) if p < 0 => (len + p).max(0) as usize,
                    Some(p) => p.min(len) as usize,
                };
                for (i, it) in items.into_iter().enumerate() {
                    arr.insert(at + i, it);
                }
            }
        }
        Op::Pop => match path::get_segs_mut(doc, segs) {
            None => {}
            Some(Value::Array(arr)) => {
                if a.arg.as_i64() == Some(-1) {
                    if !arr.is_empty() {
                        arr.remove(0);
                    }
                } else {
                    arr.pop();
                }
            }
            Some(_) => {
                return Err(inv(format!(
                    "$pop on '{}': the field is not an array",
                    a.path.raw
                )));
            }
        },
        Op::Rename => {
            let Some(to) = &a.to else {
                return Err(inv("$rename needs a destination"));
            };
            if let Some(v) = path::remove(doc, segs) {
                *path::get_mut_create(doc, &to.segs)? = v;
            }
        }
    }
    Ok(())
}

fn add(a: &Number, b: &Number) -> Result<Number> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64())
        && let Some(s) = x.checked_add(y)
    {
        return Ok(Number::from(s));
    }
    let s = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    Number::from_f64(s).ok_or_else(|| inv("$inc result is not a finite number"))
}

/// MongoDB's order across types (null, numbers, strings, objects, arrays, booleans, dates),
/// used by `$min`, `$max` and `$addToSet`'s duplicate check.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Object(m) if m.len() == 1 && m.contains_key("$date") => 6,
            Value::Object(_) => 3,
            Value::Array(_) => 4,
            Value::Bool(_) => 5,
        }
    }
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_num(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) if ra == 6 => match (x.get("$date"), y.get("$date")) {
            (Some(Value::Number(p)), Some(Value::Number(q))) => cmp_num(p, q),
            _ => Ordering::Equal,
        },
        (Value::Object(x), Value::Object(y)) => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal,
    }
}

fn cmp_num(x: &Number, y: &Number) -> Ordering {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a.cmp(&b);
    }
    let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}
