//! Data API update documents (`$set`, `$inc`, `$mul`, … `$setOnInsert`), parsed once and
//! applied to one document in memory inside the write transaction that reads and rewrites it.
//! Refusals carry the original's update codes (an unknown operator is an update error, not a
//! filter one); numbers are computed exactly, as the original's `BigDecimal` arithmetic.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::code::DocStoreCode;
use crate::error::{Result, shorten, update_err};
use crate::number::{Dec, cmp_numbers};
use crate::path::{self, FieldPath, PathUse, Seg};
use crate::validate::{is_typed_literal, type_name};

fn param(msg: impl Into<String>) -> crate::error::DocStoreError {
    update_err(DocStoreCode::UnsupportedUpdateOperationParam, msg)
}

fn target(msg: impl Into<String>) -> crate::error::DocStoreError {
    update_err(DocStoreCode::UnsupportedUpdateOperationTarget, msg)
}

/// The operators, in the order the original applies them (its operator enum's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    AddToSet,
    CurrentDate,
    Inc,
    Max,
    Min,
    Mul,
    Pop,
    Push,
    Rename,
    Set,
    SetOnInsert,
    Unset,
}

impl Op {
    fn parse(s: &str) -> Result<Op> {
        Ok(match s {
            "$addToSet" => Op::AddToSet,
            "$currentDate" => Op::CurrentDate,
            "$inc" => Op::Inc,
            "$max" => Op::Max,
            "$min" => Op::Min,
            "$mul" => Op::Mul,
            "$pop" => Op::Pop,
            "$push" => Op::Push,
            "$rename" => Op::Rename,
            "$set" => Op::Set,
            "$setOnInsert" => Op::SetOnInsert,
            "$unset" => Op::Unset,
            "$pullAll" => {
                return Err(update_err(
                    DocStoreCode::UnsupportedUpdateOperation,
                    "unsupported update operator '$pullAll'",
                ));
            }
            other if !other.starts_with('$') => {
                return Err(update_err(
                    DocStoreCode::UnsupportedUpdateOperation,
                    format!(
                        "invalid update operator '{}' (must start with '$'; to replace a document use a replace command)",
                        shorten(other)
                    ),
                ));
            }
            other => {
                return Err(update_err(
                    DocStoreCode::UnsupportedUpdateOperation,
                    format!("unrecognized update operator '{}'", shorten(other)),
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::AddToSet => "$addToSet",
            Op::CurrentDate => "$currentDate",
            Op::Inc => "$inc",
            Op::Max => "$max",
            Op::Min => "$min",
            Op::Mul => "$mul",
            Op::Pop => "$pop",
            Op::Push => "$push",
            Op::Rename => "$rename",
            Op::Set => "$set",
            Op::SetOnInsert => "$setOnInsert",
            Op::Unset => "$unset",
        }
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

/// A parsed update: its actions in the order they apply.
#[derive(Debug, Clone)]
pub struct Update {
    actions: Vec<Action>,
}

fn touches_id(p: &FieldPath) -> bool {
    p.segs.first() == Some(&Seg::Key("_id".into()))
}

impl Update {
    /// Parses an update document. Never panics, whatever the value.
    pub fn parse(update: &Value) -> Result<Update> {
        let m = match update {
            Value::Object(m) if !m.is_empty() => m,
            Value::Object(_) => {
                return Err(update_err(
                    DocStoreCode::UnsupportedUpdateOperation,
                    "the update document is empty: give at least one update operator",
                ));
            }
            other => {
                return Err(update_err(
                    DocStoreCode::UnsupportedUpdateDataType,
                    format!(
                        "the update must be a JSON object of update operators, not {}",
                        type_name(other)
                    ),
                ));
            }
        };
        let mut actions = Vec::new();
        for (opname, fields) in m {
            let op = Op::parse(opname)?;
            let fields = match fields {
                Value::Object(f) => f,
                other => {
                    return Err(update_err(
                        DocStoreCode::UnsupportedUpdateDataType,
                        format!(
                            "the value of update operator '{opname}' must be a JSON object, not {}",
                            type_name(other)
                        ),
                    ));
                }
            };
            for (k, arg) in fields {
                if k.starts_with('$') {
                    return Err(match op {
                        Op::Push | Op::AddToSet => param(format!(
                            "{} requires field names at main level, found modifier: {}",
                            op.name(),
                            shorten(k)
                        )),
                        _ => update_err(
                            DocStoreCode::UnsupportedUpdateOperationModifier,
                            format!("{} does not support modifiers", op.name()),
                        ),
                    });
                }
                let path = FieldPath::parse(k, PathUse::Update)?;
                let to = if op == Op::Rename {
                    let t = arg.as_str().ok_or_else(|| {
                        param(format!(
                            "$rename requires a string destination, got {}",
                            type_name(arg)
                        ))
                    })?;
                    let t = FieldPath::parse(t, PathUse::Update)?;
                    if t.segs == path.segs {
                        return Err(update_err(
                            DocStoreCode::UnsupportedUpdateOperationPath,
                            format!(
                                "$rename requires that source and destination differ ('{}')",
                                shorten(k)
                            ),
                        ));
                    }
                    Some(t)
                } else {
                    None
                };
                let id_allowed = op == Op::SetOnInsert && path.is_id();
                if (touches_id(&path) && !id_allowed) || to.as_ref().is_some_and(touches_id) {
                    return Err(update_err(
                        DocStoreCode::UnsupportedUpdateOperatorForDocId,
                        format!(
                            "the update operator {} cannot change the _id field",
                            op.name()
                        ),
                    ));
                }
                validate_arg(op, k, arg)?;
                actions.push(Action {
                    op,
                    path,
                    arg: arg.clone(),
                    to,
                });
            }
        }
        check_conflicts(&actions)?;
        // The original applies operators in a fixed order, each one's paths in name order;
        // the same order gives new fields the same place in the document.
        actions.sort_by(|a, b| {
            a.op.cmp(&b.op)
                .then_with(|| cmp_paths(&a.path.segs, &b.path.segs))
        });
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

fn cmp_paths(a: &[Seg], b: &[Seg]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let c = x.key().cmp(&y.key());
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    let n = a.len().min(b.len());
    a[..n].iter().zip(&b[..n]).all(|(x, y)| x.key() == y.key())
}

/// No path may be touched by two actions, nor lie inside another's (the original's rule).
fn check_conflicts(actions: &[Action]) -> Result<()> {
    let mut touched: Vec<(Op, &FieldPath)> = Vec::new();
    for a in actions {
        for p in std::iter::once(&a.path).chain(a.to.iter()) {
            if let Some((other_op, other)) =
                touched.iter().find(|(_, t)| overlaps(&t.segs, &p.segs))
            {
                return Err(param(if other.segs.len() == p.segs.len() {
                    format!(
                        "update operators '{}' and '{}' must not refer to the same path: '{}'",
                        other_op.name(),
                        a.op.name(),
                        shorten(&p.raw)
                    )
                } else {
                    format!(
                        "update operator path conflict due to overlap: '{}' ({}) vs '{}' ({})",
                        shorten(&other.raw),
                        other_op.name(),
                        shorten(&p.raw),
                        a.op.name()
                    )
                }));
            }
            touched.push((a.op, p));
        }
    }
    Ok(())
}

fn validate_arg(op: Op, k: &str, arg: &Value) -> Result<()> {
    match op {
        Op::Inc | Op::Mul if !arg.is_number() => Err(param(format!(
            "{} requires a numeric parameter, got {} (field '{}')",
            op.name(),
            type_name(arg),
            shorten(k)
        ))),
        Op::Inc | Op::Mul => {
            let n = arg.as_number().map(Number::as_str).unwrap_or_default();
            // The original refuses such a number when it parses the request.
            if n.len() > crate::json::MAX_NUMBER_LEN {
                return Err(update_err(
                    DocStoreCode::ShredDocLimitViolation,
                    format!(
                        "document size limitation violated: number value length ({}) exceeds the maximum allowed ({})",
                        n.len(),
                        crate::json::MAX_NUMBER_LEN
                    ),
                ));
            }
            match Dec::parse(n) {
                Some(_) => Ok(()),
                None => Err(param(format!(
                    "{} parameter for '{}' is not a number this store computes exactly",
                    op.name(),
                    shorten(k)
                ))),
            }
        }
        Op::Pop => match arg {
            Value::Number(n) if matches!(n.as_i64(), Some(1) | Some(-1)) => Ok(()),
            Value::Number(n) => Err(param(format!(
                "$pop requires argument of -1 or 1, instead got: {n}"
            ))),
            other => Err(param(format!(
                "$pop requires a number argument (-1 or 1), instead got {}",
                type_name(other)
            ))),
        },
        Op::CurrentDate => match arg {
            Value::Bool(true) => Ok(()),
            Value::Object(m)
                if m.len() == 1 && m.get("$type").and_then(Value::as_str) == Some("date") =>
            {
                Ok(())
            }
            other => Err(param(format!(
                "$currentDate requires argument of either true or {{\"$type\":\"date\"}}, got: {}",
                crate::error::quote_json(other)
            ))),
        },
        Op::Push | Op::AddToSet => match arg {
            Value::Object(m) if m.keys().any(|x| x.starts_with('$')) && !is_typed_literal(m) => {
                for key in m.keys() {
                    match key.as_str() {
                        "$each" => {}
                        "$position" if op == Op::Push => {}
                        other => {
                            return Err(update_err(
                                DocStoreCode::UnsupportedUpdateOperationModifier,
                                format!(
                                    "{} only supports {}; trying to use '{}'",
                                    op.name(),
                                    if op == Op::Push {
                                        "$each and $position"
                                    } else {
                                        "$each"
                                    },
                                    shorten(other)
                                ),
                            ));
                        }
                    }
                }
                match m.get("$each") {
                    Some(Value::Array(_)) => {}
                    Some(other) => {
                        return Err(param(format!(
                            "{} modifier $each requires an array argument, found {}",
                            op.name(),
                            type_name(other)
                        )));
                    }
                    None => {
                        return Err(param(format!(
                            "{} modifiers can only be used with the $each modifier; none included",
                            op.name()
                        )));
                    }
                }
                if let Some(p) = m.get("$position")
                    && p.as_i64().is_none()
                {
                    return Err(param(format!(
                        "$push modifier $position requires an integer argument, found {}",
                        crate::error::quote_json(p)
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn number_value(d: &Dec, raw: &str, op: Op) -> Result<Value> {
    d.to_number().map(Value::Number).ok_or_else(|| {
        target(format!(
            "{} on '{}' gave no representable number",
            op.name(),
            shorten(raw)
        ))
    })
}

fn apply_one(a: &Action, doc: &mut Value, inserting: bool, now_ms: i64) -> Result<()> {
    let segs = &a.path.segs;
    let raw = a.path.raw.as_str();
    match a.op {
        Op::Set => *path::get_mut_create(doc, segs, raw)? = a.arg.clone(),
        Op::SetOnInsert => {
            if inserting {
                *path::get_mut_create(doc, segs, raw)? = a.arg.clone();
            }
        }
        Op::Unset => {
            path::remove(doc, segs);
        }
        Op::CurrentDate => {
            let mut m = Map::new();
            m.insert("$date".into(), Value::from(now_ms));
            *path::get_mut_create(doc, segs, raw)? = Value::Object(m);
        }
        Op::Inc | Op::Mul => {
            let by = a
                .arg
                .as_number()
                .and_then(Dec::from_number)
                .ok_or_else(|| param(format!("{} requires a numeric parameter", a.op.name())))?;
            match path::get_segs_mut(doc, segs) {
                // A missing field starts from the parameter ($inc) or zero ($mul).
                None => {
                    let v = if a.op == Op::Inc {
                        a.arg.clone()
                    } else {
                        Value::from(0)
                    };
                    *path::get_mut_create(doc, segs, raw)? = v;
                }
                Some(Value::Number(cur)) => {
                    let old = Dec::from_number(cur).ok_or_else(|| {
                        target(format!(
                            "{} on '{}': the stored number is beyond exact arithmetic",
                            a.op.name(),
                            shorten(raw)
                        ))
                    })?;
                    let new = if a.op == Op::Inc {
                        old.add(&by)
                    } else if old == Dec::zero() {
                        Some(old.clone())
                    } else {
                        old.mul(&by)
                    };
                    let new = new.ok_or_else(|| {
                        target(format!(
                            "{} on '{}' gives a number beyond exact arithmetic",
                            a.op.name(),
                            shorten(raw)
                        ))
                    })?;
                    // Adding an integer zero or multiplying to the same value changes nothing.
                    let unchanged = (a.op == Op::Inc && a.arg.as_i64() == Some(0)) || new == old;
                    if !unchanged {
                        *cur = match number_value(&new, raw, a.op)? {
                            Value::Number(n) => n,
                            _ => cur.clone(),
                        };
                    }
                }
                Some(other) => {
                    return Err(target(format!(
                        "{} requires the target to be a number; value at '{}' is {}",
                        a.op.name(),
                        shorten(raw),
                        type_name(other)
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
                None => *path::get_mut_create(doc, segs, raw)? = a.arg.clone(),
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
                *path::get_mut_create(doc, segs, raw)? = Value::Array(Vec::new());
            }
            let arr = match path::get_segs_mut(doc, segs) {
                Some(Value::Array(arr)) => arr,
                other => {
                    return Err(target(format!(
                        "{} requires the target to be an array; value at '{}' is {}",
                        a.op.name(),
                        shorten(raw),
                        other.map_or("missing", |v| type_name(v))
                    )));
                }
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
            Some(other) => {
                return Err(target(format!(
                    "$pop requires the target to be an array; value at '{}' is {}",
                    shorten(raw),
                    type_name(other)
                )));
            }
        },
        Op::Rename => {
            let Some(to) = &a.to else {
                return Err(param("$rename needs a destination"));
            };
            if let Some(v) = path::remove(doc, segs) {
                *path::get_mut_create(doc, &to.segs, &to.raw)? = v;
            }
        }
    }
    Ok(())
}

/// The original's order across types (missing/null, numbers, strings, objects, arrays,
/// booleans, dates), used by `$min`, `$max` and `$addToSet`'s duplicate check; numbers
/// compare exactly.
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
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
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
            (Some(Value::Number(p)), Some(Value::Number(q))) => cmp_numbers(p, q),
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
