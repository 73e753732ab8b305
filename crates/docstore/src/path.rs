//! Dotted field paths (`a.b.0.c`): validated once, then rendered either as an SQLite JSON path
//! literal or walked over a `serde_json::Value`.

use serde_json::{Map, Value};

use crate::error::{DocStoreError, Result};

/// Longest dotted path accepted; far beyond real field names, short enough to keep generated
/// SQL small.
pub const MAX_PATH_LEN: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub raw: String,
    pub segs: Vec<Seg>,
}

impl FieldPath {
    /// Paths are interpolated into SQL (as JSON path literals, so expression indexes can match
    /// them), hence the strict character set: letters, digits, `_` and `-` per segment, so no
    /// quote, backslash or bracket can ever reach the SQL text. A segment made only of digits
    /// addresses an array element.
    pub fn parse(raw: &str, make_err: fn(String) -> DocStoreError) -> Result<Self> {
        if raw.is_empty() || raw.len() > MAX_PATH_LEN {
            return Err(make_err(format!(
                "field path must be 1 to {MAX_PATH_LEN} characters"
            )));
        }
        let mut segs = Vec::new();
        for seg in raw.split('.') {
            if seg.is_empty() {
                return Err(make_err(format!("field path '{raw}' has an empty segment")));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(make_err(format!(
                    "field path '{}' may contain only letters, digits, '_', '-' and '.'",
                    truncate(raw)
                )));
            }
            if seg.bytes().all(|b| b.is_ascii_digit()) {
                let idx = seg
                    .parse::<usize>()
                    .map_err(|_| make_err(format!("array index '{seg}' is too large")))?;
                if segs.is_empty() {
                    return Err(make_err(format!(
                        "field path '{raw}' cannot start with an array index"
                    )));
                }
                segs.push(Seg::Index(idx));
            } else {
                segs.push(Seg::Key(seg.to_owned()));
            }
        }
        if segs.len() > crate::store::MAX_DEPTH {
            return Err(make_err(format!(
                "field path '{raw}' is deeper than {} levels",
                crate::store::MAX_DEPTH
            )));
        }
        Ok(Self {
            raw: raw.to_owned(),
            segs,
        })
    }

    pub fn is_id(&self) -> bool {
        self.segs.len() == 1 && self.segs[0] == Seg::Key("_id".into())
    }

    /// `$."a"."b"[0]` — every key quoted, so SQLite never reinterprets a segment.
    pub fn json_path(&self) -> String {
        json_path_of(&self.segs)
    }

    /// The path cut before each key that follows another segment: `a.b.0.c` → `[a]`, `[b, 0]`,
    /// `[c]`. A filter walks a document group by group, looking into the elements of an
    /// array it meets between two groups, as the Data API does for dotted paths through
    /// arrays of objects.
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

    /// The JSON path of a typed-value member (`$date`) under this path.
    pub fn json_path_with(&self, member: &str) -> String {
        let mut s = self.json_path();
        s.push_str(".\"");
        s.push_str(member);
        s.push('"');
        s
    }

    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        get_segs(doc, &self.segs)
    }
}

/// `$."a"[0]` for a run of segments, relative to whatever value it is applied to.
pub fn json_path_of(segs: &[Seg]) -> String {
    let mut s = String::from("$");
    for seg in segs {
        push_seg(&mut s, seg);
    }
    s
}

fn push_seg(s: &mut String, seg: &Seg) {
    match seg {
        Seg::Key(k) => {
            s.push_str(".\"");
            s.push_str(k);
            s.push('"');
        }
        Seg::Index(i) => {
            s.push('[');
            s.push_str(&i.to_string());
            s.push(']');
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
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

/// Mutable access to the value at `segs`, creating missing objects on the way (MongoDB's
/// `$set` semantics); arrays are padded with nulls up to an addressed index. Fails when an
/// intermediate value is a scalar, which cannot hold a field.
pub fn get_mut_create<'a>(doc: &'a mut Value, segs: &[Seg]) -> Result<&'a mut Value> {
    let mut cur = doc;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
            (Seg::Index(i), Value::Array(a)) => {
                if *i > 10_000 {
                    return Err(DocStoreError::InvalidUpdate(format!(
                        "array index {i} is too large"
                    )));
                }
                while a.len() <= *i {
                    a.push(Value::Null);
                }
                &mut a[*i]
            }
            (Seg::Index(i), Value::Object(m)) => m.entry(i.to_string()).or_insert(Value::Null),
            (seg, v @ Value::Null) => {
                // A null placeholder we just created (or an explicit null): becomes an object.
                *v = Value::Object(Map::new());
                match (seg, v) {
                    (Seg::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
                    (Seg::Index(i), Value::Object(m)) => {
                        m.entry(i.to_string()).or_insert(Value::Null)
                    }
                    _ => unreachable_value()?,
                }
            }
            (_, _) => {
                return Err(DocStoreError::InvalidUpdate(
                    "cannot create a field inside a non-object value".into(),
                ));
            }
        };
    }
    Ok(cur)
}

fn unreachable_value<'a>() -> Result<&'a mut Value> {
    Err(DocStoreError::InvalidUpdate("internal path error".into()))
}

/// Removes the value at `segs` and returns it; an array element becomes null (as in MongoDB,
/// so other indexes keep their meaning).
pub fn remove(doc: &mut Value, segs: &[Seg]) -> Option<Value> {
    let (last, parents) = segs.split_last()?;
    let mut cur = doc;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            (Seg::Index(i), Value::Object(m)) => m.get_mut(&i.to_string())?,
            _ => return None,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k),
        (Seg::Index(i), Value::Object(m)) => m.remove(&i.to_string()),
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
