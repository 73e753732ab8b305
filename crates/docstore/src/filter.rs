//! Data API filters and sorts, compiled to SQL over SQLite's JSON functions.
//!
//! Every user value becomes a bound parameter; only validated field paths (see
//! [`FieldPath::parse`]) and fixed keywords reach the SQL text. Predicates are written so that
//! a collection's expression indexes (`json_extract(doc, P)` and `json_type(doc, P)`) can serve
//! them, including the array-membership branch.

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Number, Value};

use crate::error::{DocStoreError, Result};
use crate::path::{self, FieldPath};
use crate::store::{MAX_DEPTH, id_key};

/// `$in`, `$nin` and `$all` lists longer than this are refused: each element is an SQL term.
pub const MAX_IN_LIST: usize = 1000;
/// Keys inside one filter (all levels), bounding the size of the generated SQL.
pub const MAX_FILTER_TERMS: usize = 2000;
/// Values one filter may bind: SQLite takes at most 32,766 per statement.
pub const MAX_FILTER_VALUES: usize = 32_000;

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
    if c.params.len() > MAX_FILTER_VALUES {
        return Err(inv(format!(
            "filter is too large: it compares {} values, at most {MAX_FILTER_VALUES}; split it \
             into several commands",
            c.params.len()
        )));
    }
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

/// Where a predicate reads its value: a JSON path under a JSON value (the document itself,
/// or an object met while walking a dotted path through arrays), or one element of an array
/// (a `json_each` row).
enum Acc {
    At { base: String, path: String },
    Elem(String),
}

impl Acc {
    /// The field itself, read from the document: the text expression indexes are built on.
    fn field(p: &FieldPath) -> Acc {
        Acc::At {
            base: "doc".into(),
            path: p.json_path(),
        }
    }
    fn ty(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_type({base}, '{path}')"),
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
            Acc::At { base, path } => format!("json_extract({base}, '{path}')"),
            Acc::Elem(a) => format!("{a}.value"),
        }
    }
    fn member(&self, key: &str) -> String {
        match self {
            Acc::At { base, path } => format!("json_extract({base}, '{path}.\"{key}\"')"),
            Acc::Elem(a) => format!("json_extract({a}.value, '$.\"{key}\"')"),
        }
    }
    /// The rows of the value's elements (only meaningful when it is an array).
    fn each(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_each({base}, '{path}')"),
            Acc::Elem(a) => format!("json_each({a}.value)"),
        }
    }
    fn array_len(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_array_length({base}, '{path}')"),
            Acc::Elem(a) => format!("json_array_length({a}.value)"),
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
                    if want {
                        self.exists(path)?
                    } else {
                        self.missing(path)?
                    }
                }
                "$size" => {
                    let n = arg
                        .as_u64()
                        .ok_or_else(|| inv("$size needs a non-negative integer"))?;
                    let n = i64::try_from(n).map_err(|_| inv("$size is too large"))?;
                    self.any(path, &mut |c, a| {
                        c.params.push(SqlValue::Integer(n));
                        Ok(format!("({} IS 'array' AND {} = ?)", a.ty(), a.array_len()))
                    })?
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
        let lits = list.iter().map(Lit::from).collect::<Result<Vec<_>>>()?;
        // One walk of the path for the whole list, each candidate value tested against each
        // listed value.
        let mut sql = self.any(path, &mut |c, a| {
            let parts = lits.iter().map(|l| c.value_eq(a, l)).collect();
            Ok(join(parts, "OR"))
        })?;
        if lits.iter().any(|l| matches!(l, Lit::Null)) {
            sql = format!("{sql} OR {}", self.missing(path)?);
        }
        Ok(format!("({sql})"))
    }

    /// Some value the path reaches satisfies `pred`. The path is read directly (what
    /// expression indexes serve) and, when it has several parts and the document holds an
    /// array partway along it, also through that array's objects: `items.sku` reaches the
    /// `sku` of every object in `items` (and of arrays within those objects, level by level),
    /// as the Data API does. `pred` is called once per way of reading, in SQL text order.
    fn any(
        &mut self,
        path: &FieldPath,
        pred: &mut dyn FnMut(&mut Compiler, &Acc) -> Result<String>,
    ) -> Result<String> {
        let direct = pred(self, &Acc::field(path))?;
        let groups = path.groups();
        let Some((last, walk)) = groups.split_last() else {
            return Ok(direct);
        };
        if walk.is_empty() {
            return Ok(direct);
        }
        // The walk can only find something the direct read did not when one of the path's
        // prefixes, read directly, is an array: a cheap test that skips the walk otherwise.
        // The direct read then finds nothing (a key looked up in an array), which is said
        // first because the path's `json_type` index can serve it.
        let mut prefix = Vec::new();
        let mut guard = Vec::with_capacity(walk.len() + 1);
        guard.push(format!("{} IS NULL", Acc::field(path).ty()));
        let mut arrays = Vec::with_capacity(walk.len());
        for g in walk {
            prefix.extend_from_slice(g);
            arrays.push(format!(
                "json_type(doc, '{}') IS 'array'",
                path::json_path_of(&prefix)
            ));
        }
        guard.push(format!("({})", arrays.join(" OR ")));
        // Each step reads the next part under the objects of the previous one: under every
        // object of an array, or under the one object found (as a one-element list).
        let mut base = "doc".to_owned();
        let mut from = Vec::with_capacity(walk.len());
        for g in walk {
            let p = path::json_path_of(g);
            let alias = self.alias();
            from.push(format!(
                "json_each(CASE json_type({base}, '{p}') WHEN 'array' THEN json_extract({base}, '{p}') \
                 WHEN 'object' THEN '[' || json_extract({base}, '{p}') || ']' END) AS {alias}"
            ));
            base = format!("(CASE WHEN {alias}.type IS 'object' THEN {alias}.value END)");
        }
        let reached = pred(
            self,
            &Acc::At {
                base,
                path: path::json_path_of(last),
            },
        )?;
        Ok(format!(
            "(({direct}) OR ({} AND EXISTS (SELECT 1 FROM {} WHERE {reached})))",
            guard.join(" AND "),
            from.join(", ")
        ))
    }

    /// The path reaches some value (`$exists: true`).
    fn exists(&mut self, path: &FieldPath) -> Result<String> {
        self.any(path, &mut |_, a| Ok(format!("{} IS NOT NULL", a.ty())))
    }

    /// The path reaches no value: the field is missing (`$exists: false`).
    fn missing(&mut self, path: &FieldPath) -> Result<String> {
        if path.groups().len() < 2 {
            return Ok(format!("{} IS NULL", Acc::field(path).ty()));
        }
        Ok(negate(self.exists(path)?))
    }

    /// A value equals `lit`, or is an array with an element equal to it.
    fn value_eq(&mut self, a: &Acc, lit: &Lit) -> String {
        let direct = self.scalar_eq(a, lit);
        let alias = self.alias();
        let elem = self.scalar_eq(&Acc::Elem(alias.clone()), lit);
        format!(
            "({direct}) OR ({ty} IS 'array' AND EXISTS (SELECT 1 FROM {each} AS {alias} WHERE {elem}))",
            ty = a.ty(),
            each = a.each()
        )
    }

    fn value_cmp(&mut self, a: &Acc, op: Cmp, lit: &Lit) -> Result<String> {
        let direct = self.scalar_cmp(a, op, lit)?;
        let alias = self.alias();
        let elem = self.scalar_cmp(&Acc::Elem(alias.clone()), op, lit)?;
        Ok(format!(
            "(({direct}) OR ({ty} IS 'array' AND EXISTS (SELECT 1 FROM {each} AS {alias} WHERE {elem})))",
            ty = a.ty(),
            each = a.each()
        ))
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
        let mut sql = self.any(path, &mut |c, a| Ok(c.value_eq(a, &lit)))?;
        if matches!(lit, Lit::Null) {
            sql = format!("{sql} OR {}", self.missing(path)?);
        }
        Ok(format!("({sql})"))
    }

    fn scalar_eq(&mut self, a: &Acc, lit: &Lit) -> String {
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
        self.any(path, &mut |c, a| c.value_cmp(a, op, &lit))
    }

    fn scalar_cmp(&mut self, a: &Acc, op: Cmp, lit: &Lit) -> Result<String> {
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
        _ => format!("({})", balanced(&parts, op)),
    }
}

/// `a OR b OR c …` as a balanced tree of short chains: SQLite nests a chain one level per
/// term and refuses expressions deeper than 1000 levels, which a 1000-value `$in` would
/// otherwise reach.
fn balanced(parts: &[String], op: &str) -> String {
    if parts.len() <= 8 {
        return parts.join(&format!(" {op} "));
    }
    let (left, right) = parts.split_at(parts.len() / 2);
    format!("({}) {op} ({})", balanced(left, op), balanced(right, op))
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
