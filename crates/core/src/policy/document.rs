//! The key-policy document model and the PutKeyPolicy-style validation that builds it.

use serde_json::{Map, Value};

use super::condition::{Condition, ENCRYPTION_CONTEXT_PREFIX, Operator, SetQualifier};
use super::{Effect, PolicyError};

/// AWS's limit on a key policy document.
pub const MAX_POLICY_BYTES: usize = 32_768;

/// A validated key policy. Only documents that PutKeyPolicy would accept can be built, so the
/// evaluator never has to second-guess shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Principal` when `negated` is false, `NotPrincipal` when true.
    pub principal: PrincipalSet,
    /// `Action` / `NotAction`.
    pub action: NameList,
    /// `Resource` / `NotResource`.
    pub resource: NameList,
    /// Every condition of the `Condition` block, flattened to one entry per operator and key;
    /// all of them must hold for the statement to apply.
    pub conditions: Vec<Condition>,
}

/// A `Principal` or `NotPrincipal` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalSet {
    pub negated: bool,
    pub entries: Vec<PrincipalEntry>,
}

/// One principal as written; `"Principal": "*"` becomes [`PrincipalEntry::Anyone`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalEntry {
    Anyone,
    Aws(String),
    Service(String),
    Federated(String),
    CanonicalUser(String),
}

/// An `Action`/`NotAction` or `Resource`/`NotResource` element: patterns with `*`/`?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameList {
    pub negated: bool,
    pub patterns: Vec<String>,
}

impl Statement {
    /// How messages refer to this statement: by Sid when it has one, since that is what the
    /// customer sees in the console.
    pub fn label(&self, index: usize) -> String {
        match &self.sid {
            Some(sid) => format!("statement {index} (Sid \"{sid}\")"),
            None => format!("statement {index}"),
        }
    }
}

impl KeyPolicy {
    /// Validates like AWS PutKeyPolicy: every rejection names the statement and field at fault.
    pub fn parse(json: &str) -> Result<KeyPolicy, PolicyError> {
        if json.len() > MAX_POLICY_BYTES {
            return Err(malformed(format!(
                "the policy is {} bytes; a key policy can be at most {MAX_POLICY_BYTES} bytes",
                json.len()
            )));
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|e| malformed(format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(malformed("the policy must be a JSON object"));
        };
        let mut version = None;
        let mut id = None;
        let mut statement_value = None;
        for (k, v) in &top {
            match k.as_str() {
                "Version" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| malformed("\"Version\" must be a string"))?;
                    if s != "2012-10-17" && s != "2008-10-17" {
                        return Err(malformed(format!(
                            "\"Version\" must be \"2012-10-17\" or \"2008-10-17\", got \"{s}\""
                        )));
                    }
                    version = Some(s.to_string());
                }
                "Id" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| malformed("\"Id\" must be a string"))?;
                    id = Some(s.to_string());
                }
                "Statement" => statement_value = Some(v),
                other => {
                    return Err(malformed(format!(
                        "unknown top-level element \"{other}\" (expected Version, Id, Statement)"
                    )));
                }
            }
        }
        let raw_statements: Vec<&Value> = match statement_value {
            None => return Err(malformed("the policy has no \"Statement\" element")),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            Some(_) => {
                return Err(malformed(
                    "\"Statement\" must be an object or an array of objects",
                ));
            }
        };
        if raw_statements.is_empty() {
            return Err(malformed(
                "\"Statement\" is empty; a key policy needs at least one statement",
            ));
        }
        let mut statements = Vec::with_capacity(raw_statements.len());
        for (index, raw) in raw_statements.into_iter().enumerate() {
            let st = parse_statement(index, raw)?;
            if let Some(sid) = &st.sid
                && let Some(first) = statements
                    .iter()
                    .position(|s: &Statement| s.sid.as_deref() == Some(sid.as_str()))
            {
                return Err(malformed(format!(
                    "statement {index} repeats the Sid \"{sid}\" of statement {first}; Sids must be unique"
                )));
            }
            statements.push(st);
        }
        Ok(KeyPolicy {
            version,
            id,
            statements,
        })
    }

    /// Exactly the text AWS stores for a key created without a policy (including its spacing),
    /// so GetKeyPolicy on a dev key looks like it does on AWS.
    pub fn default_policy_json(account: &str) -> String {
        let principal = Value::String(format!("arn:aws:iam::{account}:root")).to_string();
        format!(
            "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : {principal}\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
        )
    }
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

fn parse_statement(index: usize, raw: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = raw else {
        return Err(malformed(format!(
            "statement {index} must be a JSON object"
        )));
    };
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(malformed(format!(
                "statement {index}: \"Sid\" must be a string"
            )));
        }
    };
    let label = match &sid {
        Some(s) => format!("statement {index} (Sid \"{s}\")"),
        None => format!("statement {index}"),
    };
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(malformed(format!("{label}: unknown element \"{key}\"")));
        }
    }
    let effect = match obj.get("Effect") {
        None => return Err(malformed(format!("{label}: \"Effect\" is required"))),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(malformed(format!(
                "{label}: \"Effect\" must be \"Allow\" or \"Deny\", got {other}"
            )));
        }
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(malformed(format!(
                "{label}: has both \"Principal\" and \"NotPrincipal\"; use exactly one"
            )));
        }
        (None, None) => {
            return Err(malformed(format!(
                "{label}: a key policy statement needs \"Principal\" or \"NotPrincipal\""
            )));
        }
        (Some(v), None) => parse_principal(&label, "Principal", v, false)?,
        (None, Some(v)) => parse_principal(&label, "NotPrincipal", v, true)?,
    };
    let action = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(_), Some(_)) => {
            return Err(malformed(format!(
                "{label}: has both \"Action\" and \"NotAction\"; use exactly one"
            )));
        }
        (None, None) => {
            return Err(malformed(format!(
                "{label}: needs \"Action\" or \"NotAction\""
            )));
        }
        (Some(v), None) => parse_names(&label, "Action", v, false)?,
        (None, Some(v)) => parse_names(&label, "NotAction", v, true)?,
    };
    for pattern in &action.patterns {
        let ok = pattern == "*"
            || pattern
                .split_once(':')
                .is_some_and(|(svc, name)| !svc.is_empty() && !name.is_empty());
        if !ok {
            let field = if action.negated {
                "NotAction"
            } else {
                "Action"
            };
            return Err(malformed(format!(
                "{label}: \"{field}\" entry \"{pattern}\" is not an action (expected \"service:Name\" or \"*\")"
            )));
        }
    }
    let resource = match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(_), Some(_)) => {
            return Err(malformed(format!(
                "{label}: has both \"Resource\" and \"NotResource\"; use exactly one"
            )));
        }
        (None, None) => {
            return Err(malformed(format!(
                "{label}: needs \"Resource\" or \"NotResource\""
            )));
        }
        (Some(v), None) => parse_names(&label, "Resource", v, false)?,
        (None, Some(v)) => parse_names(&label, "NotResource", v, true)?,
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(block)) => parse_conditions(&label, block)?,
        Some(_) => {
            return Err(malformed(format!(
                "{label}: \"Condition\" must be an object of operators"
            )));
        }
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn string_list(label: &str, field: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let list = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        return Err(malformed(format!(
                            "{label}: \"{field}\" entries must be strings, got {other}"
                        )));
                    }
                }
            }
            out
        }
        other => {
            return Err(malformed(format!(
                "{label}: \"{field}\" must be a string or an array of strings, got {other}"
            )));
        }
    };
    if list.is_empty() {
        return Err(malformed(format!("{label}: \"{field}\" is empty")));
    }
    if list.iter().any(|s| s.is_empty()) {
        return Err(malformed(format!(
            "{label}: \"{field}\" contains an empty string"
        )));
    }
    Ok(list)
}

fn parse_names(
    label: &str,
    field: &str,
    v: &Value,
    negated: bool,
) -> Result<NameList, PolicyError> {
    Ok(NameList {
        negated,
        patterns: string_list(label, field, v)?,
    })
}

fn parse_principal(
    label: &str,
    field: &str,
    v: &Value,
    negated: bool,
) -> Result<PrincipalSet, PolicyError> {
    let entries = match v {
        Value::String(s) if s == "*" => vec![PrincipalEntry::Anyone],
        Value::String(s) => {
            return Err(malformed(format!(
                "{label}: \"{field}\" as a string must be \"*\", got \"{s}\"; use {{\"AWS\": \"{s}\"}}"
            )));
        }
        Value::Object(map) => {
            if map.is_empty() {
                return Err(malformed(format!("{label}: \"{field}\" is empty")));
            }
            let mut entries = Vec::new();
            for (kind, vals) in map {
                let sub = format!("{field}.{kind}");
                let values = string_list(label, &sub, vals)?;
                for value in values {
                    let entry = match kind.as_str() {
                        "AWS" => {
                            validate_aws_principal(label, &sub, &value)?;
                            PrincipalEntry::Aws(value)
                        }
                        "Service" => PrincipalEntry::Service(value),
                        "Federated" => PrincipalEntry::Federated(value),
                        "CanonicalUser" => PrincipalEntry::CanonicalUser(value),
                        other => {
                            return Err(malformed(format!(
                                "{label}: unknown principal type \"{other}\" in \"{field}\" (expected AWS, Service, Federated or CanonicalUser)"
                            )));
                        }
                    };
                    entries.push(entry);
                }
            }
            entries
        }
        other => {
            return Err(malformed(format!(
                "{label}: \"{field}\" must be \"*\" or an object like {{\"AWS\": \"arn:aws:iam::111122223333:root\"}}, got {other}"
            )));
        }
    };
    Ok(PrincipalSet { negated, entries })
}

/// AWS rejects principals that are neither `*`, an account ID, nor an ARN ("invalid
/// principals"); it also checks that the ARN exists, which a document check cannot do.
fn validate_aws_principal(label: &str, field: &str, value: &str) -> Result<(), PolicyError> {
    if value == "*" || super::matching::is_account_id(value) {
        return Ok(());
    }
    if super::matching::parse_arn(value).is_some() {
        return Ok(());
    }
    Err(malformed(format!(
        "{label}: \"{field}\" value \"{value}\" is not a valid principal (expected \"*\", a 12-digit account ID or an ARN)"
    )))
}

fn parse_conditions(
    label: &str,
    block: &Map<String, Value>,
) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (op_name, keys) in block {
        let operator = Operator::parse(op_name).ok_or_else(|| {
            malformed(format!("{label}: unknown condition operator \"{op_name}\""))
        })?;
        let Value::Object(keys) = keys else {
            return Err(malformed(format!(
                "{label}: condition operator \"{op_name}\" must map condition keys to values"
            )));
        };
        if keys.is_empty() {
            return Err(malformed(format!(
                "{label}: condition operator \"{op_name}\" has no condition keys"
            )));
        }
        for (key, raw_values) in keys {
            if key.is_empty() {
                return Err(malformed(format!(
                    "{label}: condition operator \"{op_name}\" has an empty condition key"
                )));
            }
            if operator.qualifier == SetQualifier::ForAllValues
                && key
                    .get(..ENCRYPTION_CONTEXT_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(ENCRYPTION_CONTEXT_PREFIX))
            {
                // AWS refuses this at PutKeyPolicy: on a single-valued key, ForAllValues holds
                // for a request without the pair or with other pairs, the opposite of what the
                // author meant.
                return Err(malformed(format!(
                    "{label}: OverlyPermissiveCondition:EncryptionContext: Using the ForAllValues set operator with a single-valued condition key matches requests without the specified encryption context or with an unspecified encryption context. To fix, remove ForAllValues from {op_name} {key}."
                )));
            }
            let values = condition_values(label, op_name, key, raw_values)?;
            operator
                .validate_values(&values)
                .map_err(|why| malformed(format!("{label}: {op_name} {key}: {why}")))?;
            out.push(Condition {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn condition_values(
    label: &str,
    op: &str,
    key: &str,
    v: &Value,
) -> Result<Vec<String>, PolicyError> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    let bad = || {
        malformed(format!(
            "{label}: {op} {key}: condition values must be strings, booleans or numbers, or an array of them"
        ))
    };
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(malformed(format!("{label}: {op} {key}: has no values")));
            }
            items.iter().map(|i| scalar(i).ok_or_else(bad)).collect()
        }
        other => Ok(vec![scalar(other).ok_or_else(bad)?]),
    }
}
