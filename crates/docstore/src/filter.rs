//! Data API filters and sorts, compiled to SQL over SQLite's JSON functions.
//!
//! Every user value becomes a bound parameter; only validated field paths (see
//! [`FieldPath::parse`]) and fixed keywords reach the SQL text. Predicates are written so that
//! a collection's expression indexes (`json_extract(doc, P)` and `json_type(doc, P)`) can serve
//! them, including the array-membership branch.

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Number, Value};

use crate::error::{DocStoreError, Result};
use crate::path::FieldPath;
use crate::store::{MAX_DEPTH, id_key};

/// `$in`, `$nin` and `$all` lists longer than this are refused: each element is an SQL term.
pub const MAX_IN_LIST: usize = 1000;
/// Keys inside one filter (all levels), bounding the size of the generated SQL.
pub const MAX_FILTER_TERMS: usize = 2000;

/// Typed-value wrappers of the Data API: a one-key object is a value of that type.
pub const TYPED_KEYS: [&str; 3] = ["$date", "$uuid", "$objectId"];

#[derive(Debug, Default)]
pub struct SqlFilter {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

fn inv(msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidFilter(msg.into())
}

fn path_err(msg: String) -> DocStoreError {
    DocStoreError::InvalidFilter(msg)
}

pub fn is_typed_literal(m: &Map<String, Value>) -> bool {
    m.len() == 1 && m.keys().all(|k| TYPED_KEYS.contains(&k.as_str()))
}

pub fn compile(filter: &Value) -> Result<SqlFilter> {
    let mut c = Compiler::default();
    let sql = match filter {
        Value::Null => "1".to_owned(),
        Value::Object(m) => c.doc(m, 0)?,
        _ => return Err(inv("filter must be a JSON object")),
    };
    Ok(SqlFilter {
        sql,
        params: c.params,
    })
}

/// A literal, classified the way SQLite's `json_type` sees stored values.
enum Lit {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    /// `{"$date": n}` and friends: compared on the wrapped member.
    Typed(&'static str, Value),
    /// Arrays and objects: compared as canonical JSON text.
    Composite {
        text: String,
        is_array: bool,
    },
}

impl Lit {
    fn from(v: &Value) -> Result<Lit> {
        Ok(match v {
            Value::Null => Lit::Null,
            Value::Bool(b) => Lit::Bool(*b),
            Value::Number(n) => Lit::Num(n.clone()),
            Value::String(s) => Lit::Str(s.clone()),
            Value::Object(m) if is_typed_literal(m) => {
                let (k, inner) = m.iter().next().ok_or_else(|| inv("empty typed value"))?;
                let key = TYPED_KEYS
                    .iter()
                    .find(|t| **t == k.as_str())
                    .copied()
                    .ok_or_else(|| inv("unknown typed value"))?;
                match (key, inner) {
                    ("$date", Value::Number(_)) => {}
                    ("$date", _) => return Err(inv("$date must be a number of milliseconds")),
                    (_, Value::String(_)) => {}
                    (k, _) => return Err(inv(format!("{k} must be a string"))),
                }
                Lit::Typed(key, inner.clone())
            }
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.starts_with('$')) {
                    return Err(DocStoreError::UnknownOperator(k.clone()));
                }
                Lit::Composite {
                    text: serde_json::to_string(v).map_err(|e| inv(e.to_string()))?,
                    is_array: false,
                }
            }
            Value::Array(_) => Lit::Composite {
                text: serde_json::to_string(v).map_err(|e| inv(e.to_string()))?,
                is_array: true,
            },
        })
    }
}

fn num_param(n: &Number) -> SqlValue {
    if let Some(i) = n.as_i64() {
        SqlValue::Integer(i)
    } else {
        SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn json_param(v: &Value) -> SqlValue {
    match v {
        Value::Number(n) => num_param(n),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Null => SqlValue::Null,
        other => SqlValue::Text(other.to_string()),
    }
}

/// Where a predicate reads its value: the field itself, or one element of the field's array
/// (a `json_each` row).
enum Acc<'a> {
    Field(&'a FieldPath),
    Elem(&'a str),
}

impl Acc<'_> {
    fn ty(&self) -> String {
        match self {
            Acc::Field(p) => format!("json_type(doc, '{}')", p.json_path()),
            Acc::Elem(a) => format!("{a}.type"),
        }
    }
    /// The type test next to a value comparison. The unary `+` keeps SQLite from serving it
    /// with the `json_type` index (which would select every value of that type) instead of
    /// the `json_extract` index on the value.
    fn ty_check(&self) -> String {
        format!("+{}", self.ty())
    }
    fn val(&self) -> String {
        match self {
            Acc::Field(p) => format!("json_extract(doc, '{}')", p.json_path()),
            Acc::Elem(a) => format!("{a}.value"),
        }
    }
    fn member(&self, key: &str) -> String {
        match self {
            Acc::Field(p) => format!("json_extract(doc, '{}')", p.json_path_with(key)),
            Acc::Elem(a) => format!("json_extract({a}.value, '$.\"{key}\"')"),
        }
    }
}

#[derive(Clone, Copy)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

/// SQL's NOT turns "unknown" (a NULL from a missing field) into unknown again, which would
/// drop the document; `IS NOT 1` treats unknown as false first, which is the Data API meaning.
fn negate(sql: String) -> String {
    format!("(({sql}) IS NOT 1)")
}

#[derive(Default)]
struct Compiler {
    params: Vec<SqlValue>,
    aliases: usize,
    terms: usize,
}

impl Compiler {
    fn bump(&mut self) -> Result<()> {
        self.terms += 1;
        if self.terms > MAX_FILTER_TERMS {
            return Err(inv(format!(
                "filter has more than {MAX_FILTER_TERMS} terms"
            )));
        }
        Ok(())
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("j{}", self.aliases)
    }

    fn doc(&mut self, m: &Map<String, Value>, depth: usize) -> Result<String> {
        if depth > MAX_DEPTH {
            return Err(inv(format!("filter nested deeper than {MAX_DEPTH} levels")));
        }
        if m.is_empty() {
            return Ok("1".into());
        }
        let mut parts = Vec::with_capacity(m.len());
        for (k, v) in m {
            self.bump()?;
            parts.push(self.entry(k, v, depth)?);
        }
        Ok(join(parts, "AND"))
    }

    fn filter_list(&mut self, op: &str, v: &Value, depth: usize) -> Result<Vec<String>> {
        let arr = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| inv(format!("{op} needs a non-empty array of filters")))?;
        arr.iter()
            .map(|f| match f {
                Value::Object(m) => self.doc(m, depth + 1),
                _ => Err(inv(format!("{op} elements must be objects"))),
            })
            .collect()
    }

    fn entry(&mut self, key: &str, v: &Value, depth: usize) -> Result<String> {
        match key {
            "$and" => Ok(join(self.filter_list(key, v, depth)?, "AND")),
            "$or" => Ok(join(self.filter_list(key, v, depth)?, "OR")),
            "$nor" => Ok(negate(join(self.filter_list(key, v, depth)?, "OR"))),
            "$not" => match v {
                Value::Object(m) => Ok(negate(self.doc(m, depth + 1)?)),
                _ => Err(inv("$not needs a filter object")),
            },
            k if k.starts_with('$') => Err(DocStoreError::UnknownOperator(k.to_owned())),
            field => {
                let path = FieldPath::parse(field, path_err)?;
                match v {
                    Value::Object(m)
                        if !m.is_empty()
                            && m.keys().all(|k| k.starts_with('$'))
                            && !is_typed_literal(m) =>
                    {
                        self.ops(&path, m, depth)
                    }
                    Value::Object(m)
                        if m.keys().any(|k| k.starts_with('$')) && !is_typed_literal(m) =>
                    {
                        Err(inv(format!(
                            "field '{field}' mixes operators and plain keys"
                        )))
                    }
                    literal => self.eq(&path, literal),
                }
            }
        }
    }

    fn ops(&mut self, path: &FieldPath, m: &Map<String, Value>, depth: usize) -> Result<String> {
        if depth > MAX_DEPTH {
            return Err(inv(format!("filter nested deeper than {MAX_DEPTH} levels")));
        }
        let mut parts = Vec::with_capacity(m.len());
        for (op, arg) in m {
            self.bump()?;
            let sql = match op.as_str() {
                "$eq" => self.eq(path, arg)?,
                "$ne" => negate(self.eq(path, arg)?),
                "$in" => self.in_list(path, op, arg)?,
                "$nin" => negate(self.in_list(path, op, arg)?),
                "$gt" => self.cmp(path, Cmp::Gt, arg)?,
                "$gte" => self.cmp(path, Cmp::Gte, arg)?,
                "$lt" => self.cmp(path, Cmp::Lt, arg)?,
                "$lte" => self.cmp(path, Cmp::Lte, arg)?,
                "$exists" => {
                    let want = arg
                        .as_bool()
                        .ok_or_else(|| inv("$exists needs true or false"))?;
                    let ty = Acc::Field(path).ty();
                    if want {
                        format!("{ty} IS NOT NULL")
                    } else {
                        format!("{ty} IS NULL")
                    }
                }
                "$size" => {
                    let n = arg
                        .as_u64()
                        .ok_or_else(|| inv("$size needs a non-negative integer"))?;
                    let n = i64::try_from(n).map_err(|_| inv("$size is too large"))?;
                    self.params.push(SqlValue::Integer(n));
                    format!(
                        "({ty} IS 'array' AND json_array_length(doc, '{p}') = ?)",
                        ty = Acc::Field(path).ty(),
                        p = path.json_path()
                    )
                }
                "$all" => {
                    let list = arg.as_array().ok_or_else(|| inv("$all needs an array"))?;
                    if list.len() > MAX_IN_LIST {
                        return Err(inv(format!("$all accepts at most {MAX_IN_LIST} values")));
                    }
                    if list.is_empty() {
                        "0".to_owned()
                    } else {
                        let parts = list
                            .iter()
                            .map(|v| self.eq(path, v))
                            .collect::<Result<Vec<_>>>()?;
                        join(parts, "AND")
                    }
                }
                "$not" => match arg {
                    Value::Object(inner)
                        if !inner.is_empty() && inner.keys().all(|k| k.starts_with('$')) =>
                    {
                        negate(self.ops(path, inner, depth + 1)?)
                    }
                    _ => return Err(inv("$not on a field needs an operator object")),
                },
                other => return Err(DocStoreError::UnknownOperator(other.to_owned())),
            };
            parts.push(sql);
        }
        Ok(join(parts, "AND"))
    }

    fn in_list(&mut self, path: &FieldPath, op: &str, arg: &Value) -> Result<String> {
        let list = arg
            .as_array()
            .ok_or_else(|| inv(format!("{op} needs an array")))?;
        if list.len() > MAX_IN_LIST {
            return Err(inv(format!("{op} accepts at most {MAX_IN_LIST} values")));
        }
        if list.is_empty() {
            return Ok("0".into());
        }
        if path.is_id() {
            // Served by the primary key: one `id IN (...)` instead of an OR of lookups.
            let mut keys = Vec::with_capacity(list.len());
            for v in list {
                if let Ok(k) = id_key(v) {
                    keys.push(k);
                }
            }
            if keys.is_empty() {
                return Ok("0".into());
            }
            let marks = vec!["?"; keys.len()].join(", ");
            self.params.extend(keys.into_iter().map(SqlValue::Text));
            return Ok(format!("id IN ({marks})"));
        }
        let parts = list
            .iter()
            .map(|v| self.eq(path, v))
            .collect::<Result<Vec<_>>>()?;
        Ok(join(parts, "OR"))
    }

    /// Equality as the Data API means it: the field equals the value, or the field is an
    /// array with an element equal to it; `null` also matches a missing field.
    fn eq(&mut self, path: &FieldPath, v: &Value) -> Result<String> {
        if path.is_id() {
            return Ok(match id_key(v) {
                Ok(k) => {
                    self.params.push(SqlValue::Text(k));
                    "id = ?".to_owned()
                }
                // No document can have such an _id.
                Err(_) => "0".to_owned(),
            });
        }
        let lit = Lit::from(v)?;
        let field = Acc::Field(path);
        let direct = self.scalar_eq(&field, &lit);
        let alias = self.alias();
        let elem = self.scalar_eq(&Acc::Elem(&alias), &lit);
        let mut sql = format!(
            "({direct}) OR ({ty} IS 'array' AND EXISTS (SELECT 1 FROM json_each(doc, '{p}') AS {alias} WHERE {elem}))",
            ty = field.ty(),
            p = path.json_path()
        );
        if matches!(lit, Lit::Null) {
            sql.push_str(&format!(" OR {} IS NULL", field.ty()));
        }
        Ok(format!("({sql})"))
    }

    fn scalar_eq(&mut self, a: &Acc<'_>, lit: &Lit) -> String {
        let ty = a.ty_check();
        match lit {
            Lit::Null => format!("{ty} IS 'null'"),
            Lit::Bool(true) => format!("{ty} IS 'true'"),
            Lit::Bool(false) => format!("{ty} IS 'false'"),
            Lit::Num(n) => {
                self.params.push(num_param(n));
                format!("{} = ? AND {ty} IN ('integer', 'real')", a.val())
            }
            Lit::Str(s) => {
                self.params.push(SqlValue::Text(s.clone()));
                format!("{} = ? AND {ty} IS 'text'", a.val())
            }
            Lit::Typed(key, inner) => {
                self.params.push(json_param(inner));
                format!("{ty} IS 'object' AND {} = ?", a.member(key))
            }
            Lit::Composite { text, is_array } => {
                self.params.push(SqlValue::Text(text.clone()));
                let want = if *is_array { "array" } else { "object" };
                format!("{ty} IS '{want}' AND {} = ?", a.val())
            }
        }
    }

    fn cmp(&mut self, path: &FieldPath, op: Cmp, v: &Value) -> Result<String> {
        let lit = Lit::from(v)?;
        let field = Acc::Field(path);
        let direct = self.scalar_cmp(&field, op, &lit)?;
        let alias = self.alias();
        let elem = self.scalar_cmp(&Acc::Elem(&alias), op, &lit)?;
        Ok(format!(
            "(({direct}) OR ({ty} IS 'array' AND EXISTS (SELECT 1 FROM json_each(doc, '{p}') AS {alias} WHERE {elem})))",
            ty = field.ty(),
            p = path.json_path()
        ))
    }

    fn scalar_cmp(&mut self, a: &Acc<'_>, op: Cmp, lit: &Lit) -> Result<String> {
        let ty = a.ty_check();
        let o = op.sql();
        Ok(match lit {
            Lit::Num(n) => {
                self.params.push(num_param(n));
                format!("{} {o} ? AND {ty} IN ('integer', 'real')", a.val())
            }
            Lit::Str(s) => {
                self.params.push(SqlValue::Text(s.clone()));
                format!("{} {o} ? AND {ty} IS 'text'", a.val())
            }
            Lit::Typed(key, inner) => {
                self.params.push(json_param(inner));
                format!("{ty} IS 'object' AND {} {o} ?", a.member(key))
            }
            _ => {
                return Err(inv(format!(
                    "{} compares numbers, strings and dates only",
                    match op {
                        Cmp::Gt => "$gt",
                        Cmp::Gte => "$gte",
                        Cmp::Lt => "$lt",
                        Cmp::Lte => "$lte",
                    }
                )));
            }
        })
    }
}

fn join(parts: Vec<String>, op: &str) -> String {
    match parts.len() {
        0 => "1".into(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(&format!(" {op} "))),
    }
}

/// The largest number of sort keys accepted.
pub const MAX_SORT_KEYS: usize = 10;

/// ORDER BY terms for a Data API sort (`{"a": 1, "b.c": -1}`). Values of different types
/// order as in MongoDB (missing/null, numbers, strings, objects, arrays, booleans, dates), and
/// `$date` values by their milliseconds.
pub fn compile_sort(sort: Option<&Value>) -> Result<Vec<String>> {
    let m = match sort {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(DocStoreError::InvalidSort("sort must be an object".into())),
    };
    if m.len() > MAX_SORT_KEYS {
        return Err(DocStoreError::InvalidSort(format!(
            "at most {MAX_SORT_KEYS} sort keys"
        )));
    }
    let mut terms = Vec::new();
    for (k, v) in m {
        if k == "$vector" || k == "$vectorize" || k == "$hybrid" || k == "$lexical" {
            return Err(DocStoreError::InvalidSort(format!(
                "{k} sorts are not supported by this store"
            )));
        }
        let dir = match v.as_i64() {
            Some(1) => "ASC",
            Some(-1) => "DESC",
            _ => {
                return Err(DocStoreError::InvalidSort(format!(
                    "sort value for '{k}' must be 1 or -1"
                )));
            }
        };
        let p = FieldPath::parse(k, DocStoreError::InvalidSort)?;
        let jp = p.json_path();
        let date = p.json_path_with("$date");
        terms.push(format!(
            "CASE json_type(doc, '{jp}') WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 \
             WHEN 'object' THEN (CASE WHEN json_type(doc, '{date}') IS NOT NULL THEN 6 ELSE 3 END) \
             WHEN 'array' THEN 4 WHEN 'true' THEN 5 WHEN 'false' THEN 5 ELSE 0 END {dir}"
        ));
        terms.push(format!(
            "COALESCE(json_extract(doc, '{date}'), json_extract(doc, '{jp}')) {dir}"
        ));
    }
    Ok(terms)
}
