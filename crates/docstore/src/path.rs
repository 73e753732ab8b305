//! Dotted field paths as the Data API writes them (`a.b.0.c`, with `&.` for a dot and `&&` for
//! an ampersand inside a field name): decoded once, then rendered as an SQLite JSON path (an
//! SQL expression, every name quoted and escaped) or walked over a `serde_json::Value`.
//!
//! Any field name a document may hold can be addressed: names are JSON-escaped inside the
//! quoted labels of SQLite's path syntax (SQLite ≥ 3.45 reads escapes there) and the whole
//! literal is SQL-escaped, so no character of a name can end the label or the SQL string.

use serde_json::{Map, Value};

use crate::code::DocStoreCode;
use crate::error::{Result, filter_err, projection_err, shorten, sort_err, update_err};

/// Longest path text accepted before decoding, in bytes: a bound on work, far above the
/// longest path a document can hold (see [`MAX_PROPERTY_PATH_LEN`]).
pub const MAX_PATH_BYTES: usize = 16 * 1024;
/// Longest path to a property, as the original counts it (UTF-16 units of the field names
/// plus the dots between them, array positions not counted); documents with a longer one are
/// refused.
pub const MAX_PROPERTY_PATH_LEN: usize = 1000;
/// Longest path a query may name (decoded, dots and array positions included): room for every
/// stored field's path plus the positions of the arrays on its way, so anything a document
/// holds can be named.
const MAX_QUERY_PATH_LEN: usize = 2 * MAX_PROPERTY_PATH_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    /// A segment written as a plain decimal number (`0`, `17`, not `01`): an element of an
    /// array, or the field of that name in an object, whichever the value on the way is.
    Index(usize),
}

impl Seg {
    /// The field name this segment means in an object.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Seg::Key(k) => std::borrow::Cow::Borrowed(k),
            Seg::Index(i) => std::borrow::Cow::Owned(i.to_string()),
        }
    }
}

/// Where a path is used: decides the error code and wording of a refusal, as the original
/// reports bad paths per clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathUse {
    Filter,
    Sort,
    Projection,
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// The path as written (escapes included), for messages.
    pub raw: String,
    pub segs: Vec<Seg>,
}

fn refuse(use_: PathUse, raw: &str, why: &str) -> crate::error::DocStoreError {
    let raw = shorten(raw);
    match use_ {
        PathUse::Filter => filter_err(
            DocStoreCode::FilterInvalidExpression,
            format!("filter expression path ('{raw}') is not valid: {why}"),
        ),
        PathUse::Sort => sort_err(
            DocStoreCode::SortClausePathInvalid,
            format!("sort clause path ('{raw}') is not valid: {why}"),
        ),
        PathUse::Projection => projection_err(format!(
            "projection path ('{raw}') is not a valid path: {why}"
        )),
        PathUse::Update => update_err(
            DocStoreCode::UnsupportedUpdateOperationPath,
            format!("update path ('{raw}') is not valid: {why}"),
        ),
    }
}

/// A plain decimal index (`0` or no leading zero), as the original recognises array indexes.
fn as_index(seg: &str) -> Option<usize> {
    let b = seg.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    seg.parse().ok()
}

/// Splits an escaped path into its field names: `.` separates, `&.` and `&&` stand for `.` and
/// `&`, any other `&` is an error, and no name may be empty.
pub fn decode(raw: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if cur.is_empty() {
                    return Err("a path cannot have an empty segment".into());
                }
                out.push(std::mem::take(&mut cur));
            }
            '&' => match chars.next() {
                Some(n @ ('.' | '&')) => cur.push(n),
                _ => {
                    return Err(
                        "'&' must be followed by '&' or '.' (it escapes those two characters)"
                            .into(),
                    );
                }
            },
            c => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err("a path cannot have an empty segment".into());
    }
    out.push(cur);
    Ok(out)
}

/// A field name written as a path segment: `.` and `&` escaped.
pub fn encode_segment(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '.' || c == '&' {
            s.push('&');
        }
        s.push(c);
    }
    s
}

impl FieldPath {
    pub fn parse(raw: &str, use_: PathUse) -> Result<Self> {
        if raw.is_empty() {
            return Err(refuse(use_, raw, "a path cannot be empty"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(refuse(
                use_,
                raw,
                &format!("a path may be at most {MAX_PATH_BYTES} bytes"),
            ));
        }
        if raw.starts_with('$') {
            return Err(refuse(use_, raw, "a path cannot start with '$'"));
        }
        let names = decode(raw).map_err(|why| refuse(use_, raw, &why))?;
        if names.len() > crate::validate::MAX_DEPTH {
            return Err(refuse(
                use_,
                raw,
                &format!(
                    "it is deeper than {} levels, which no document holds",
                    crate::validate::MAX_DEPTH
                ),
            ));
        }
        let len: usize = names
            .iter()
            .map(|n| n.encode_utf16().count())
            .sum::<usize>()
            + names.len().saturating_sub(1);
        if len > MAX_QUERY_PATH_LEN {
            return Err(refuse(
                use_,
                raw,
                &format!(
                    "it is longer than {MAX_QUERY_PATH_LEN} characters, which no document holds"
                ),
            ));
        }
        let segs = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| match as_index(&n) {
                // A document is an object: its first level has only names.
                Some(ix) if i > 0 => Seg::Index(ix),
                _ => Seg::Key(n),
            })
            .collect();
        Ok(Self {
            raw: raw.to_owned(),
            segs,
        })
    }

    pub fn is_id(&self) -> bool {
        self.segs.len() == 1 && self.segs[0] == Seg::Key("_id".into())
    }

    /// The path under the document (`doc`), as an SQL expression.
    pub fn sql(&self) -> SqlPath {
        SqlPath::render("doc", &self.segs)
    }

    /// The path cut before each key that follows another segment: `a.b.0.c` → `[a]`, `[b, 0]`,
    /// `[c]`. A filter walks a document group by group, looking into the elements of an
    /// array it meets between two groups (keyplane's reading of dotted paths through arrays
    /// of objects).
    pub fn groups(&self) -> Vec<&[Seg]> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, seg) in self.segs.iter().enumerate() {
            if i > 0 && matches!(seg, Seg::Key(_)) {
                out.push(&self.segs[start..i]);
                start = i;
            }
        }
        if start < self.segs.len() {
            out.push(&self.segs[start..]);
        }
        out
    }

    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        get_segs(doc, &self.segs)
    }
}

/// One path step in SQLite's JSON path syntax: `."<escaped name>"` or `[i]`.
fn key_piece(k: &str) -> String {
    // serde_json's string form is a valid quoted label: SQLite skips `\x` pairs while
    // looking for the closing quote and compares labels with escapes decoded.
    let quoted = serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into());
    format!(".{quoted}")
}

/// `'…'` with quotes doubled: an SQL string literal of any text.
pub fn sql_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// An SQLite JSON path, as the SQL that computes it: a constant (what expression indexes are
/// built on) when every segment is a name, else an expression choosing, for each numeric
/// segment, an array index or a field name by the type of the value reached so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlPath {
    /// The JSON path text itself (not yet an SQL literal).
    Const(String),
    /// An SQL expression yielding the JSON path text.
    Expr(String),
}

impl SqlPath {
    /// The path of `segs` under the JSON value `base` (an SQL expression).
    pub fn render(base: &str, segs: &[Seg]) -> SqlPath {
        let mut p = SqlPath::Const("$".into());
        for seg in segs {
            p = match seg {
                Seg::Key(k) => p.then(&key_piece(k)),
                Seg::Index(i) => {
                    let prefix = p.sql();
                    let choice = format!(
                        "(CASE json_type({base}, {prefix}) WHEN 'array' THEN '[{i}]' ELSE '.\"{i}\"' END)"
                    );
                    SqlPath::Expr(format!("({prefix} || {choice})"))
                }
            };
        }
        p
    }

    /// This path followed by a constant piece of path text (`."$date"`).
    pub fn then(self, piece: &str) -> SqlPath {
        match self {
            SqlPath::Const(mut s) => {
                s.push_str(piece);
                SqlPath::Const(s)
            }
            SqlPath::Expr(e) => SqlPath::Expr(format!("({e} || {})", sql_literal(piece))),
        }
    }

    /// The SQL text of the path (a literal or an expression).
    pub fn sql(&self) -> String {
        match self {
            SqlPath::Const(s) => sql_literal(s),
            SqlPath::Expr(e) => e.clone(),
        }
    }
}

pub fn get_segs<'a>(doc: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
            (Seg::Index(i), Value::Object(m)) => m.get(&i.to_string())?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Largest array index an update may create (padding with nulls up to it).
const MAX_PAD_INDEX: usize = 1000;

/// Mutable access to the value at `segs`, creating missing objects on the way (the `$set`
/// semantics of the Data API); arrays are padded with nulls up to an addressed index. Fails
/// when a value on the way is a scalar, which cannot hold a field.
pub fn get_mut_create<'a>(doc: &'a mut Value, segs: &[Seg], raw: &str) -> Result<&'a mut Value> {
    let cannot = |what: &str| {
        update_err(
            DocStoreCode::UnsupportedUpdateOperationPath,
            format!(
                "cannot create a field in path '{}'; only objects have fields (got {what})",
                shorten(raw)
            ),
        )
    };
    let mut cur = doc;
    for seg in segs {
        if cur.is_null() {
            // A null placeholder created on the way (or an explicit null): becomes an object.
            *cur = Value::Object(Map::new());
        }
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
            (Seg::Index(i), Value::Object(m)) => m.entry(i.to_string()).or_insert(Value::Null),
            (Seg::Index(i), Value::Array(a)) => {
                if *i > MAX_PAD_INDEX && *i >= a.len() {
                    return Err(update_err(
                        DocStoreCode::UnsupportedUpdateOperationPath,
                        format!("array index {i} is beyond what an update may create"),
                    ));
                }
                while a.len() <= *i {
                    a.push(Value::Null);
                }
                &mut a[*i]
            }
            (Seg::Key(_), Value::Array(_)) => return Err(cannot("an array")),
            (_, other) => return Err(cannot(crate::validate::type_name(other))),
        };
    }
    Ok(cur)
}

/// Removes the value at `segs` and returns it; an array element becomes null (so other
/// indexes keep their meaning).
pub fn remove(doc: &mut Value, segs: &[Seg]) -> Option<Value> {
    let (last, parents) = segs.split_last()?;
    let cur = get_segs_mut(doc, parents)?;
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.shift_remove(k),
        (Seg::Index(i), Value::Object(m)) => m.shift_remove(&i.to_string()),
        (Seg::Index(i), Value::Array(a)) => a.get_mut(*i).map(std::mem::take),
        _ => None,
    }
}

pub fn get_segs_mut<'a>(doc: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            (Seg::Index(i), Value::Object(m)) => m.get_mut(&i.to_string())?,
            _ => return None,
        };
    }
    Some(cur)
}
