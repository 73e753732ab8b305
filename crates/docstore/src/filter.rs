//! Data API filters and sorts, compiled to SQL over SQLite's JSON functions, with the
//! original's semantics: `null` matches an explicit null (not a missing field) and `$ne`
//! matches everything else, missing fields included; `$not` inverts what it holds as the
//! original does (De Morgan on `$and`/`$or`, `$eq`↔`$ne`, `$in`↔`$nin`, `$gt`↔`$lte`, …, so an
//! inverted range still compares only values of its type); ranges compare numbers, strings,
//! booleans and dates; typed literals must be valid; operators cannot hide inside a
//! sub-document being matched.
//!
//! Every user value becomes a bound parameter; only decoded, escaped field paths (see
//! [`FieldPath`]) and fixed keywords reach the SQL text. Predicates are written so that a
//! collection's expression indexes (`json_extract(doc, P)` and `json_type(doc, P)`) can serve
//! them, including the array-membership branch.

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Number, Value};

use crate::code::DocStoreCode;
use crate::error::{DocStoreError, Result, filter_err, shorten, sort_err};
use crate::path::{FieldPath, PathUse, Seg, SqlPath};
use crate::validate::{MAX_DEPTH, TYPED_KEYS, id_key, is_typed_literal, typed_value_problem};

/// `$in`, `$nin` and `$all` lists longer than this are refused: each element is an SQL term.
pub const MAX_IN_LIST: usize = 1000;
/// Keys inside one filter (all levels), bounding the size of the generated SQL.
pub const MAX_FILTER_TERMS: usize = 2000;
/// Values one filter may bind: SQLite takes at most 32,766 per statement.
pub const MAX_FILTER_VALUES: usize = 32_000;

/// A compiled filter: an SQL condition over a row's `doc` (and `id`) and its parameters.
#[derive(Debug, Default)]
pub struct SqlFilter {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

fn inv(msg: impl Into<String>) -> DocStoreError {
    filter_err(DocStoreCode::FilterInvalidExpression, msg)
}

/// Compiles a Data API filter (`null` or an object). Never panics, whatever the value.
pub fn compile(filter: &Value) -> Result<SqlFilter> {
    let mut c = Compiler::default();
    let sql = match filter {
        Value::Null => "1".to_owned(),
        Value::Object(m) => c.doc(m, 0, false)?,
        other => {
            return Err(filter_err(
                DocStoreCode::FilterUnsupportedDataType,
                format!(
                    "filter definition must be a JSON object, not {}",
                    crate::validate::type_name(other)
                ),
            ));
        }
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
    /// `{"$date": n}` and friends: compared on the wrapped member (UUIDs and ObjectIds without
    /// regard to case, as the original compares them).
    Typed(&'static str, Value),
    /// Arrays and objects: compared as canonical JSON text.
    Composite {
        text: String,
        is_array: bool,
    },
}

/// Refuses a typed literal that is not one: `$date` needs epoch milliseconds (a filter error
/// in the original), `$uuid`/`$objectId` a valid value (a document-value error there).
fn check_typed(key: &str, inner: &Value) -> Result<()> {
    match typed_value_problem(key, inner) {
        None => Ok(()),
        Some(_) if key == "$date" => Err(inv(format!(
            "$date value has to be sent as epoch time (an integer number of milliseconds), not {}",
            crate::error::quote_json(inner)
        ))),
        Some(p) => Err(filter_err(
            DocStoreCode::ShredBadEjsonValue,
            format!("bad JSON extension value: {p}"),
        )),
    }
}

/// A sub-document or array to match as a whole may hold typed values, but no operators.
fn check_composite(v: &Value) -> Result<()> {
    match v {
        Value::Object(m) if m.len() == 1 && m.keys().all(|k| k.starts_with('$')) => {
            let (k, inner) = m.iter().next().ok_or_else(|| inv("empty object"))?;
            if TYPED_KEYS.contains(&k.as_str()) {
                check_typed(k, inner)
            } else {
                Err(inv(format!("invalid use of '{}' operator", shorten(k))))
            }
        }
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| k.starts_with('$')) {
                return Err(inv(format!("invalid use of '{}' operator", shorten(k))));
            }
            m.values().try_for_each(check_composite)
        }
        Value::Array(a) => a.iter().try_for_each(check_composite),
        _ => Ok(()),
    }
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
                check_typed(key, inner)?;
                let inner = match inner {
                    Value::String(s) => Value::String(s.to_ascii_lowercase()),
                    other => other.clone(),
                };
                Lit::Typed(key, inner)
            }
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.starts_with('$')) {
                    return Err(inv(format!("invalid use of '{}' operator", shorten(k))));
                }
                check_composite(v)?;
                Lit::Composite {
                    text: serde_json::to_string(v).map_err(|e| inv(e.to_string()))?,
                    is_array: false,
                }
            }
            Value::Array(_) => {
                check_composite(v)?;
                Lit::Composite {
                    text: serde_json::to_string(v).map_err(|e| inv(e.to_string()))?,
                    is_array: true,
                }
            }
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
    At { base: String, path: SqlPath },
    Elem(String),
}

impl Acc {
    /// The field itself, read from the document: the text expression indexes are built on.
    fn field(p: &FieldPath) -> Acc {
        Acc::At {
            base: "doc".into(),
            path: p.sql(),
        }
    }
    fn ty(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_type({base}, {})", path.sql()),
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
            Acc::At { base, path } => format!("json_extract({base}, {})", path.sql()),
            Acc::Elem(a) => format!("{a}.value"),
        }
    }
    fn member(&self, key: &str) -> String {
        let piece = format!(".\"{key}\"");
        match self {
            Acc::At { base, path } => {
                format!("json_extract({base}, {})", path.clone().then(&piece).sql())
            }
            Acc::Elem(a) => format!(
                "json_extract({a}.value, {})",
                crate::path::sql_literal(&format!("${piece}"))
            ),
        }
    }
    /// The rows of the value's elements (only meaningful when it is an array).
    fn each(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_each({base}, {})", path.sql()),
            Acc::Elem(a) => format!("json_each({a}.value)"),
        }
    }
    fn array_len(&self) -> String {
        match self {
            Acc::At { base, path } => format!("json_array_length({base}, {})", path.sql()),
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
    fn name(self) -> &'static str {
        match self {
            Cmp::Gt => "$gt",
            Cmp::Gte => "$gte",
            Cmp::Lt => "$lt",
            Cmp::Lte => "$lte",
        }
    }
    /// What `$not` turns it into, as the original inverts comparisons.
    fn inverted(self) -> Cmp {
        match self {
            Cmp::Gt => Cmp::Lte,
            Cmp::Gte => Cmp::Lt,
            Cmp::Lt => Cmp::Gte,
            Cmp::Lte => Cmp::Gt,
        }
    }
}

/// SQL's NOT turns "unknown" (a NULL from a missing field) into unknown again, which would
/// drop the document; `IS NOT 1` treats unknown as false first, which is the Data API meaning.
fn negate(sql: String) -> String {
    format!("(({sql}) IS NOT 1)")
}

fn not_if(neg: bool, sql: String) -> String {
    if neg { negate(sql) } else { sql }
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

    /// An implicit `$and` of the entries; under `$not` (`neg`), their inverted `$or`.
    fn doc(&mut self, m: &Map<String, Value>, depth: usize, neg: bool) -> Result<String> {
        if depth > MAX_DEPTH {
            return Err(inv(format!("filter nested deeper than {MAX_DEPTH} levels")));
        }
        if m.is_empty() {
            return Ok(if neg { "0" } else { "1" }.into());
        }
        let mut parts = Vec::with_capacity(m.len());
        for (k, v) in m {
            self.bump()?;
            parts.push(self.entry(k, v, depth, neg)?);
        }
        Ok(join(parts, if neg { "OR" } else { "AND" }))
    }

    fn filter_list(&mut self, op: &str, v: &Value, depth: usize, neg: bool) -> Result<Vec<String>> {
        let arr = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| inv(format!("'{op}' needs a non-empty array of filters")))?;
        arr.iter()
            .map(|f| match f {
                Value::Object(m) => self.doc(m, depth + 1, neg),
                other => Err(filter_err(
                    DocStoreCode::FilterUnsupportedDataType,
                    format!(
                        "'{op}' elements must be filter objects, not {}",
                        crate::validate::type_name(other)
                    ),
                )),
            })
            .collect()
    }

    fn entry(&mut self, key: &str, v: &Value, depth: usize, neg: bool) -> Result<String> {
        match key {
            // Under `$not`, De Morgan: an inverted `$and` is an `$or` of inverted parts.
            "$and" => Ok(join(
                self.filter_list(key, v, depth, neg)?,
                if neg { "OR" } else { "AND" },
            )),
            "$or" => Ok(join(
                self.filter_list(key, v, depth, neg)?,
                if neg { "AND" } else { "OR" },
            )),
            // keyplane's addition: none of the filters holds.
            "$nor" => Ok(join(
                self.filter_list(key, v, depth, !neg)?,
                if neg { "OR" } else { "AND" },
            )),
            "$not" => match v {
                Value::Object(m) => self.doc(m, depth + 1, !neg),
                _ => Err(inv("'$not' needs a filter object")),
            },
            k if k.starts_with('$') => Err(inv(format!(
                "filter expression path ('{}') cannot start with '$'",
                shorten(k)
            ))),
            field => {
                let path = FieldPath::parse(field, PathUse::Filter)?;
                match v {
                    Value::Object(m)
                        if !m.is_empty()
                            && m.keys().all(|k| k.starts_with('$'))
                            && !is_typed_literal(m) =>
                    {
                        self.ops(&path, m, neg)
                    }
                    Value::Object(m)
                        if m.keys().any(|k| k.starts_with('$')) && !is_typed_literal(m) =>
                    {
                        Err(inv(format!(
                            "field '{}' mixes operators and plain keys",
                            shorten(field)
                        )))
                    }
                    literal => Ok(not_if(neg, self.eq(&path, literal)?)),
                }
            }
        }
    }

    fn ops(&mut self, path: &FieldPath, m: &Map<String, Value>, neg: bool) -> Result<String> {
        let mut parts = Vec::with_capacity(m.len());
        for (op, arg) in m {
            self.bump()?;
            let sql = match op.as_str() {
                "$eq" => not_if(neg, self.eq(path, arg)?),
                "$ne" => not_if(!neg, self.eq(path, arg)?),
                "$in" => not_if(neg, self.in_list(path, op, arg)?),
                "$nin" => not_if(!neg, self.in_list(path, op, arg)?),
                "$gt" | "$gte" | "$lt" | "$lte" => {
                    let c = match op.as_str() {
                        "$gt" => Cmp::Gt,
                        "$gte" => Cmp::Gte,
                        "$lt" => Cmp::Lt,
                        _ => Cmp::Lte,
                    };
                    self.cmp(path, if neg { c.inverted() } else { c }, c, arg)?
                }
                "$exists" => {
                    let want = arg
                        .as_bool()
                        .ok_or_else(|| inv("'$exists' operator must have a boolean value"))?;
                    if want != neg {
                        self.exists(path)?
                    } else {
                        self.missing(path)?
                    }
                }
                "$size" => {
                    let n = arg
                        .as_u64()
                        .ok_or_else(|| inv("'$size' operator must have an integer value >= 0"))?;
                    let n = i64::try_from(n).map_err(|_| inv("'$size' value is too large"))?;
                    let sql = self.any(path, &mut |c, a| {
                        c.params.push(SqlValue::Integer(n));
                        Ok(format!("({} IS 'array' AND {} = ?)", a.ty(), a.array_len()))
                    })?;
                    not_if(neg, sql)
                }
                "$all" => {
                    let list = arg
                        .as_array()
                        .ok_or_else(|| inv("'$all' operator must have an array value"))?;
                    if list.len() > MAX_IN_LIST {
                        return Err(inv(format!(
                            "'$all' operator accepts at most {MAX_IN_LIST} values"
                        )));
                    }
                    let sql = if list.is_empty() {
                        "0".to_owned()
                    } else {
                        let parts = list
                            .iter()
                            .map(|v| self.eq(path, v))
                            .collect::<Result<Vec<_>>>()?;
                        join(parts, "AND")
                    };
                    not_if(neg, sql)
                }
                other => return Err(DocStoreError::UnknownOperator(shorten(other))),
            };
            parts.push(sql);
        }
        Ok(join(parts, if neg { "OR" } else { "AND" }))
    }

    fn in_list(&mut self, path: &FieldPath, op: &str, arg: &Value) -> Result<String> {
        let list = arg
            .as_array()
            .ok_or_else(|| inv(format!("'{op}' operator must have an array value")))?;
        if list.len() > MAX_IN_LIST {
            return Err(inv(format!(
                "'{op}' operator accepts at most {MAX_IN_LIST} values"
            )));
        }
        if list.is_empty() {
            return Ok("0".into());
        }
        if path.is_id() {
            // Served by the primary key: one `id IN (...)` instead of an OR of lookups.
            let mut keys = Vec::with_capacity(list.len());
            for v in list {
                match id_key(v) {
                    Ok(k) => keys.push(k),
                    // An array is no _id: it names no document.
                    Err(_) if v.is_array() => {}
                    Err(e) => return Err(id_filter_err(e)),
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
        // listed value. A listed null matches a null value or element, not a missing field.
        let sql = self.any(path, &mut |c, a| {
            let parts = lits.iter().map(|l| c.value_eq(a, l)).collect();
            Ok(join(parts, "OR"))
        })?;
        Ok(format!("({sql})"))
    }

    /// Some value the path reaches satisfies `pred`. The path is read directly (what
    /// expression indexes serve) and, when it has several parts and the document holds an
    /// array partway along it, also through that array's objects: `items.sku` reaches the
    /// `sku` of every object in `items` (and of arrays within those objects, level by level).
    /// `pred` is called once per way of reading, in SQL text order.
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
        let mut prefix: Vec<Seg> = Vec::new();
        let mut guard = Vec::with_capacity(walk.len() + 1);
        guard.push(format!("{} IS NULL", Acc::field(path).ty()));
        let mut arrays = Vec::with_capacity(walk.len());
        for g in walk {
            prefix.extend_from_slice(g);
            arrays.push(format!(
                "json_type(doc, {}) IS 'array'",
                SqlPath::render("doc", &prefix).sql()
            ));
        }
        guard.push(format!("({})", arrays.join(" OR ")));
        // Each step reads the next part under the objects of the previous one: under every
        // object of an array, or under the one object found (as a one-element list).
        let mut base = "doc".to_owned();
        let mut from = Vec::with_capacity(walk.len());
        for g in walk {
            let p = SqlPath::render(&base, g).sql();
            let alias = self.alias();
            from.push(format!(
                "json_each(CASE json_type({base}, {p}) WHEN 'array' THEN json_extract({base}, {p}) \
                 WHEN 'object' THEN '[' || json_extract({base}, {p}) || ']' END) AS {alias}"
            ));
            base = format!("(CASE WHEN {alias}.type IS 'object' THEN {alias}.value END)");
        }
        let reached = pred(
            self,
            &Acc::At {
                path: SqlPath::render(&base, last),
                base,
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

    fn value_cmp(&mut self, a: &Acc, op: Cmp, lit: &Lit) -> String {
        let direct = self.scalar_cmp(a, op, lit);
        let alias = self.alias();
        let elem = self.scalar_cmp(&Acc::Elem(alias.clone()), op, lit);
        format!(
            "(({direct}) OR ({ty} IS 'array' AND EXISTS (SELECT 1 FROM {each} AS {alias} WHERE {elem})))",
            ty = a.ty(),
            each = a.each()
        )
    }

    /// Equality as the original means it: the field equals the value, or the field is an
    /// array with an element equal to it; `null` matches a field holding null, and neither a
    /// missing field nor an array holding a null.
    fn eq(&mut self, path: &FieldPath, v: &Value) -> Result<String> {
        if path.is_id() {
            return Ok(match id_key(v) {
                Ok(k) => {
                    self.params.push(SqlValue::Text(k));
                    "id = ?".to_owned()
                }
                // An array is no _id: it names no document.
                Err(_) if v.is_array() => "0".to_owned(),
                Err(e) => return Err(id_filter_err(e)),
            });
        }
        let lit = Lit::from(v)?;
        let sql = if matches!(lit, Lit::Null) {
            self.any(path, &mut |_, a| Ok(format!("{} IS 'null'", a.ty())))?
        } else {
            self.any(path, &mut |c, a| Ok(c.value_eq(a, &lit)))?
        };
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
                if *key == "$date" {
                    format!("{ty} IS 'object' AND {} = ?", a.member(key))
                } else {
                    format!("{ty} IS 'object' AND lower({}) = ?", a.member(key))
                }
            }
            Lit::Composite { text, is_array } => {
                self.params.push(SqlValue::Text(text.clone()));
                let want = if *is_array { "array" } else { "object" };
                format!("{ty} IS '{want}' AND {} = ?", a.val())
            }
        }
    }

    /// `want` is the comparison to run (already inverted under `$not`); `written` the
    /// operator as the filter wrote it, for messages.
    fn cmp(&mut self, path: &FieldPath, want: Cmp, written: Cmp, v: &Value) -> Result<String> {
        let lit = Lit::from(v)?;
        if !matches!(
            lit,
            Lit::Num(_) | Lit::Str(_) | Lit::Bool(_) | Lit::Typed("$date", _)
        ) {
            return Err(inv(format!(
                "'{}' operator must have a date, number, string or boolean value",
                written.name()
            )));
        }
        self.any(path, &mut |c, a| Ok(c.value_cmp(a, want, &lit)))
    }

    fn scalar_cmp(&mut self, a: &Acc, op: Cmp, lit: &Lit) -> String {
        let ty = a.ty_check();
        let o = op.sql();
        match lit {
            Lit::Num(n) => {
                self.params.push(num_param(n));
                format!("{} {o} ? AND {ty} IN ('integer', 'real')", a.val())
            }
            Lit::Str(s) => {
                self.params.push(SqlValue::Text(s.clone()));
                format!("{} {o} ? AND {ty} IS 'text'", a.val())
            }
            // json_extract reads true as 1 and false as 0: false < true, as the original orders them.
            Lit::Bool(b) => {
                self.params.push(SqlValue::Integer(i64::from(*b)));
                format!("{} {o} ? AND {ty} IN ('true', 'false')", a.val())
            }
            Lit::Typed(key, inner) => {
                self.params.push(json_param(inner));
                format!("{ty} IS 'object' AND {} {o} ?", a.member(key))
            }
            // Refused by `cmp` before any SQL is built.
            Lit::Null | Lit::Composite { .. } => "0".to_owned(),
        }
    }
}

/// An `_id` in a filter that no document can have is refused as the original refuses it.
fn id_filter_err(e: DocStoreError) -> DocStoreError {
    match e {
        DocStoreError::InvalidDocument(r) => DocStoreError::InvalidFilter(r),
        other => other,
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

/// ORDER BY terms for one sort path: values of different types order as the original orders
/// them (missing, null, numbers, strings, objects, arrays, booleans, dates), `$date` values by
/// their milliseconds.
fn sort_terms(p: &FieldPath, dir: &str, out: &mut Vec<String>) {
    let jp = p.sql();
    let ty = format!("json_type(doc, {})", jp.sql());
    let date = jp.clone().then(".\"$date\"").sql();
    out.push(format!(
        "CASE {ty} WHEN 'null' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 \
         WHEN 'object' THEN (CASE WHEN json_type(doc, {date}) IS NOT NULL THEN 7 ELSE 4 END) \
         WHEN 'array' THEN 5 WHEN 'true' THEN 6 WHEN 'false' THEN 6 ELSE 0 END {dir}"
    ));
    out.push(format!(
        "COALESCE(json_extract(doc, {date}), json_extract(doc, {})) {dir}",
        jp.sql()
    ));
}

/// ORDER BY terms for a Data API sort (`{"a": 1, "b.c": -1}`), ending with `_id` ascending
/// so that documents equal on every sort key come in `_id` order, as the original breaks
/// ties. Empty for no sort. Never panics, whatever the value.
pub fn compile_sort(sort: Option<&Value>) -> Result<Vec<String>> {
    let m = match sort {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(sort_err(
                DocStoreCode::SortClauseInvalid,
                format!(
                    "sort clause must be a JSON object, not {}",
                    crate::validate::type_name(other)
                ),
            ));
        }
    };
    if m.is_empty() {
        return Ok(Vec::new());
    }
    if m.len() > MAX_SORT_KEYS {
        return Err(sort_err(
            DocStoreCode::SortClauseInvalid,
            format!("a sort clause may have at most {MAX_SORT_KEYS} keys"),
        ));
    }
    let mut terms = Vec::new();
    let mut by_id = false;
    for (k, v) in m {
        match k.as_str() {
            "$vector" | "$vectorize" => {
                return Err(sort_err(
                    DocStoreCode::VectorSearchNotSupported,
                    format!("'{k}' sorts need a vector collection, which this store does not have"),
                ));
            }
            "$lexical" => {
                return Err(sort_err(
                    DocStoreCode::LexicalNotEnabledForCollection,
                    "'$lexical' sorts need lexical search, which this store does not have",
                ));
            }
            _ => {}
        }
        let dir = match v {
            Value::Number(n) if n.as_i64() == Some(1) => "ASC",
            Value::Number(n) if n.as_i64() == Some(-1) => "DESC",
            _ => {
                return Err(sort_err(
                    DocStoreCode::SortClauseValueInvalid,
                    format!(
                        "sort ordering value for '{}' can only be 1 (ascending) or -1 (descending), not {}",
                        shorten(k),
                        crate::error::quote_json(v)
                    ),
                ));
            }
        };
        let p = FieldPath::parse(k, PathUse::Sort)?;
        by_id |= p.is_id();
        sort_terms(&p, dir, &mut terms);
    }
    if !by_id && let Ok(id) = FieldPath::parse("_id", PathUse::Sort) {
        sort_terms(&id, "ASC", &mut terms);
    }
    Ok(terms)
}
