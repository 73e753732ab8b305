//! The request envelope: one JSON command `{"<name>": {<fields>}}`, its known names (each
//! with its level and whether it writes), and typed access to its fields and options, so a
//! wrong type or an unknown field is named in the error.
use keyplane_docstore::DocStoreCode;
use serde_json::{Map, Value};

use super::DataResult;
use super::errors::DataApiError;

/// Where a command is posted: `…/v1`, `…/v1/{keyspace}` or `…/v1/{keyspace}/{collection}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Database,
    Keyspace,
    Collection,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Database => "database",
            Level::Keyspace => "keyspace",
            Level::Collection => "collection",
        }
    }
}

macro_rules! commands {
    ($($v:ident => $name:literal, $level:ident, $write:literal;)+) => {
        /// Every command keyplane's Data API knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum CommandName { $($v),+ }

        impl CommandName {
            pub fn parse(name: &str) -> Option<CommandName> {
                match name { $($name => Some(CommandName::$v),)+ _ => None }
            }

            pub fn level(self) -> Level {
                match self { $(CommandName::$v => Level::$level),+ }
            }

            /// Whether it changes data (needs `db-write`; reads need `db-read`).
            pub fn writes(self) -> bool {
                match self { $(CommandName::$v => $write),+ }
            }
        }
    };
}

commands! {
    FindKeyspaces => "findKeyspaces", Database, false;
    CreateKeyspace => "createKeyspace", Database, true;
    DropKeyspace => "dropKeyspace", Database, true;
    CreateCollection => "createCollection", Keyspace, true;
    FindCollections => "findCollections", Keyspace, false;
    DeleteCollection => "deleteCollection", Keyspace, true;
    InsertOne => "insertOne", Collection, true;
    InsertMany => "insertMany", Collection, true;
    FindOne => "findOne", Collection, false;
    Find => "find", Collection, false;
    CountDocuments => "countDocuments", Collection, false;
    EstimatedDocumentCount => "estimatedDocumentCount", Collection, false;
    UpdateOne => "updateOne", Collection, true;
    UpdateMany => "updateMany", Collection, true;
    FindOneAndUpdate => "findOneAndUpdate", Collection, true;
    FindOneAndReplace => "findOneAndReplace", Collection, true;
    FindOneAndDelete => "findOneAndDelete", Collection, true;
    DeleteOne => "deleteOne", Collection, true;
    DeleteMany => "deleteMany", Collection, true;
}

/// One parsed command.
pub struct Command {
    /// As sent (an unknown name is reported as sent).
    pub name: String,
    pub known: Option<CommandName>,
    args: Map<String, Value>,
}

pub fn command_error(code: DocStoreCode, message: impl Into<String>) -> DataApiError {
    DataApiError::original(code, message)
}

/// A body that is JSON but not one command (the original's Jackson mapping failure).
fn structure_mismatch(message: impl Into<String>) -> DataApiError {
    DataApiError::original(DocStoreCode::RequestStructureMismatch, message)
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn field_error(cmd: &str, field: &str, want: &str, got: &Value) -> DataApiError {
    command_error(
        DocStoreCode::CommandFieldValueInvalid,
        format!("{cmd}: '{field}' must be {want}, not {}", json_type(got)),
    )
}

/// Reads a body as the original's parser does ([`keyplane_docstore::parse_json`]: a field
/// repeated in one object, an over-long number or runaway nesting is refused with the
/// original's code) and takes the one command out of it.
pub fn parse_command(bytes: &[u8]) -> DataResult<Command> {
    let body = keyplane_docstore::parse_json(bytes).map_err(|e| {
        DataApiError::original(
            e.code().unwrap_or(DocStoreCode::RequestNotJson),
            e.to_string(),
        )
    })?;
    let Value::Object(o) = body else {
        return Err(structure_mismatch(format!(
            "the body must be a JSON object holding one command, not {}",
            json_type(&body)
        )));
    };
    if o.len() != 1 {
        return Err(structure_mismatch(format!(
            "the body must hold exactly one command, e.g. {{\"findOne\":{{}}}}; it has {}",
            o.len()
        )));
    }
    let Some((name, args)) = o.into_iter().next() else {
        return Err(structure_mismatch("the body holds no command"));
    };
    let args = match args {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(structure_mismatch(format!(
                "the body of command '{name}' must be an object, not {}",
                json_type(&other)
            )));
        }
    };
    Ok(Command {
        known: CommandName::parse(&name),
        name,
        args,
    })
}

/// A command's fields or options, type-checked one by one so a wrong type is named.
pub struct Fields<'a> {
    /// `find` or `find.options`, for messages.
    pub at: String,
    m: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Refuses names the command does not know, so a typo is an error rather than ignored.
    fn only(&self, allowed: &[&str]) -> DataResult<()> {
        match self.m.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(command_error(
                DocStoreCode::CommandFieldUnknown,
                format!(
                    "{}: unknown field '{}'; known: {}",
                    self.at,
                    k.chars().take(64).collect::<String>(),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )),
        }
    }

    /// A present, non-null value.
    pub fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }

    pub fn object(&self, k: &str) -> DataResult<Option<Value>> {
        match self.get(k) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(v) => Err(field_error(&self.at, k, "an object", v)),
        }
    }

    /// A filter, sort or projection as sent: the store refuses one of the wrong type with the
    /// clause's own code (`FILTER_UNSUPPORTED_DATA_TYPE`, `SORT_CLAUSE_INVALID`,
    /// `UNSUPPORTED_PROJECTION_DEFINITION`), as the original does.
    pub fn clause(&self, k: &str) -> Option<Value> {
        self.get(k).cloned()
    }

    pub fn required_object(&self, k: &str) -> DataResult<Value> {
        self.object(k)?.ok_or_else(|| {
            command_error(
                DocStoreCode::CommandFieldValueInvalid,
                format!("{}: '{k}' is required", self.at),
            )
        })
    }

    pub fn string(&self, k: &str) -> DataResult<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(field_error(&self.at, k, "a string", v)),
        }
    }

    pub fn required_string(&self, k: &str) -> DataResult<String> {
        self.string(k)?.ok_or_else(|| {
            command_error(
                DocStoreCode::CommandFieldValueInvalid,
                format!("{}: '{k}' is required", self.at),
            )
        })
    }

    pub fn bool(&self, k: &str) -> DataResult<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(field_error(&self.at, k, "true or false", v)),
        }
    }

    pub fn count(&self, k: &str) -> DataResult<Option<u64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| field_error(&self.at, k, "a non-negative integer", v)),
        }
    }
}

impl Command {
    pub fn fields(&self, allowed: &[&str]) -> DataResult<Fields<'_>> {
        let f = Fields {
            at: self.name.clone(),
            m: &self.args,
        };
        f.only(allowed)?;
        Ok(f)
    }

    /// The command's `options` object, limited to `allowed` names.
    pub fn options(&self, allowed: &[&str]) -> DataResult<Fields<'_>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let at = format!("{}.options", self.name);
        let m = match self.args.get("options") {
            None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
            Some(Value::Object(m)) => m,
            Some(v) => return Err(field_error(&self.name, "options", "an object", v)),
        };
        let f = Fields { at, m };
        f.only(allowed)?;
        Ok(f)
    }

    /// For a command the original gives no options (`insertOne`, `deleteOne`, `deleteMany`,
    /// `estimatedDocumentCount`, `findKeyspaces`, `dropKeyspace`, `deleteCollection`):
    /// `"options": {}` or null is accepted, as the original accepts it, anything else is
    /// `COMMAND_ACCEPTS_NO_OPTIONS`. The command lists `options` among its fields.
    pub fn no_options(&self) -> DataResult<()> {
        match self.args.get("options") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(m)) if m.is_empty() => Ok(()),
            Some(_) => Err(command_error(
                DocStoreCode::CommandAcceptsNoOptions,
                format!(
                    "command '{}' does not accept options but some were included; resend it without options",
                    self.name
                ),
            )),
        }
    }

    /// Whether it changes data. Unknown names need only `db-read`, so an unknown command is
    /// reported as unknown, not as forbidden.
    pub fn writes(&self) -> bool {
        self.known.is_some_and(CommandName::writes)
    }
}

/// "no such command at this level", with a hint where it belongs if it is known elsewhere.
pub fn unknown_command(cmd: &Command, level: Level) -> DataApiError {
    let hint = match cmd.known.map(CommandName::level) {
        Some(Level::Database) => " (a database command: POST it to …/api/json/v1)",
        Some(Level::Keyspace) => " (a keyspace command: POST it to …/api/json/v1/{keyspace})",
        Some(Level::Collection) => {
            " (a collection command: POST it to …/api/json/v1/{keyspace}/{collection})"
        }
        None => "",
    };
    command_error(
        DocStoreCode::CommandUnknown,
        format!(
            "no {} command '{}'{hint}",
            level.as_str(),
            cmd.name.chars().take(64).collect::<String>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_with_their_level_and_kind() {
        for (name, level, writes) in [
            ("findKeyspaces", Level::Database, false),
            ("dropKeyspace", Level::Database, true),
            ("findCollections", Level::Keyspace, false),
            ("deleteCollection", Level::Keyspace, true),
            ("countDocuments", Level::Collection, false),
            ("findOneAndReplace", Level::Collection, true),
        ] {
            let c = CommandName::parse(name).unwrap();
            assert_eq!((c.level(), c.writes()), (level, writes), "{name}");
        }
        assert_eq!(CommandName::parse("findone"), None);
    }

    #[test]
    fn unknown_commands_hint_where_a_known_one_belongs() {
        let cmd = parse_command(br#"{"findKeyspaces":{}}"#).unwrap();
        let e = unknown_command(&cmd, Level::Collection);
        assert_eq!(e.code.as_str(), "COMMAND_UNKNOWN");
        assert!(e.message.contains("a database command"), "{}", e.message);
        let cmd = parse_command(br#"{"frobnicate":null}"#).unwrap();
        assert!(!cmd.writes());
        assert_eq!(
            unknown_command(&cmd, Level::Keyspace).message,
            "no keyspace command 'frobnicate'"
        );
    }
}
