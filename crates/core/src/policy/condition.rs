//! Condition operators and their evaluation against a request's condition keys.

use std::collections::BTreeMap;

use super::Effect;
use super::matching::{arn_like, wildcard_match};

/// `ForAnyValue:` / `ForAllValues:` prefixes, which change how multivalued request keys compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseOperator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    Bool,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
    /// AWS accepts these, but no KMS condition key this evaluator knows is a date, address or
    /// binary value, so a condition using them is evaluated fail-closed.
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    IpAddress,
    NotIpAddress,
    BinaryEquals,
}

const BASE_OPERATORS: &[(&str, BaseOperator)] = &[
    ("StringEquals", BaseOperator::StringEquals),
    ("StringNotEquals", BaseOperator::StringNotEquals),
    (
        "StringEqualsIgnoreCase",
        BaseOperator::StringEqualsIgnoreCase,
    ),
    (
        "StringNotEqualsIgnoreCase",
        BaseOperator::StringNotEqualsIgnoreCase,
    ),
    ("StringLike", BaseOperator::StringLike),
    ("StringNotLike", BaseOperator::StringNotLike),
    ("NumericEquals", BaseOperator::NumericEquals),
    ("NumericNotEquals", BaseOperator::NumericNotEquals),
    ("NumericLessThan", BaseOperator::NumericLessThan),
    ("NumericLessThanEquals", BaseOperator::NumericLessThanEquals),
    ("NumericGreaterThan", BaseOperator::NumericGreaterThan),
    (
        "NumericGreaterThanEquals",
        BaseOperator::NumericGreaterThanEquals,
    ),
    ("Bool", BaseOperator::Bool),
    ("ArnEquals", BaseOperator::ArnEquals),
    ("ArnNotEquals", BaseOperator::ArnNotEquals),
    ("ArnLike", BaseOperator::ArnLike),
    ("ArnNotLike", BaseOperator::ArnNotLike),
    ("Null", BaseOperator::Null),
    ("DateEquals", BaseOperator::DateEquals),
    ("DateNotEquals", BaseOperator::DateNotEquals),
    ("DateLessThan", BaseOperator::DateLessThan),
    ("DateLessThanEquals", BaseOperator::DateLessThanEquals),
    ("DateGreaterThan", BaseOperator::DateGreaterThan),
    ("DateGreaterThanEquals", BaseOperator::DateGreaterThanEquals),
    ("IpAddress", BaseOperator::IpAddress),
    ("NotIpAddress", BaseOperator::NotIpAddress),
    ("BinaryEquals", BaseOperator::BinaryEquals),
];

impl BaseOperator {
    pub fn name(self) -> &'static str {
        BASE_OPERATORS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(name, _)| name)
    }

    /// Negated operators are defined by AWS as "not the positive one", which is what makes a
    /// missing key satisfy them.
    pub fn positive(self) -> Option<BaseOperator> {
        use BaseOperator::*;
        Some(match self {
            StringNotEquals => StringEquals,
            StringNotEqualsIgnoreCase => StringEqualsIgnoreCase,
            StringNotLike => StringLike,
            NumericNotEquals => NumericEquals,
            ArnNotEquals => ArnEquals,
            ArnNotLike => ArnLike,
            DateNotEquals => DateEquals,
            NotIpAddress => IpAddress,
            _ => return None,
        })
    }

    fn is_numeric(self) -> bool {
        use BaseOperator::*;
        matches!(
            self,
            NumericEquals
                | NumericNotEquals
                | NumericLessThan
                | NumericLessThanEquals
                | NumericGreaterThan
                | NumericGreaterThanEquals
        )
    }

    fn is_supported(self) -> bool {
        use BaseOperator::*;
        !matches!(
            self,
            DateEquals
                | DateNotEquals
                | DateLessThan
                | DateLessThanEquals
                | DateGreaterThan
                | DateGreaterThanEquals
                | IpAddress
                | NotIpAddress
                | BinaryEquals
        )
    }

    /// One request value against one policy value, for a non-negated operator.
    fn matches_one(self, request: &str, policy: &str) -> bool {
        use BaseOperator::*;
        match self {
            StringEquals => request == policy,
            StringEqualsIgnoreCase => request.to_lowercase() == policy.to_lowercase(),
            StringLike => wildcard_match(policy, request),
            Bool => request.eq_ignore_ascii_case(policy),
            ArnEquals | ArnLike => arn_like(policy, request),
            NumericEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals => {
                let (Ok(r), Ok(p)) = (request.trim().parse::<f64>(), policy.trim().parse::<f64>())
                else {
                    return false;
                };
                match self {
                    NumericEquals => r == p,
                    NumericLessThan => r < p,
                    NumericLessThanEquals => r <= p,
                    NumericGreaterThan => r > p,
                    _ => r >= p,
                }
            }
            _ => false,
        }
    }
}

/// A full operator as written, e.g. `ForAnyValue:StringLikeIfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    pub qualifier: SetQualifier,
    pub base: BaseOperator,
    pub if_exists: bool,
}

impl Operator {
    /// Operator names are matched case-insensitively, as IAM does; `NullIfExists` is rejected
    /// because IAM rejects it (a presence test cannot be conditional on presence).
    pub fn parse(name: &str) -> Option<Operator> {
        let lower = name.to_ascii_lowercase();
        let (qualifier, rest) = if let Some(r) = lower.strip_prefix("foranyvalue:") {
            (SetQualifier::ForAnyValue, r)
        } else if let Some(r) = lower.strip_prefix("forallvalues:") {
            (SetQualifier::ForAllValues, r)
        } else {
            (SetQualifier::None, lower.as_str())
        };
        let lookup = |n: &str| {
            BASE_OPERATORS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(n))
                .map(|(_, op)| *op)
        };
        let (base, if_exists) = match lookup(rest) {
            Some(op) => (op, false),
            None => (lookup(rest.strip_suffix("ifexists")?)?, true),
        };
        if base == BaseOperator::Null && if_exists {
            return None;
        }
        Some(Operator {
            qualifier,
            base,
            if_exists,
        })
    }

    /// Rejects values AWS would refuse for this operator, so nonsense like
    /// `NumericLessThan: "abc"` fails at PutKeyPolicy instead of silently never matching.
    pub(crate) fn validate_values(&self, values: &[String]) -> Result<(), String> {
        for v in values {
            if self.base.is_numeric() && v.trim().parse::<f64>().is_err() {
                return Err(format!("\"{v}\" is not a number"));
            }
            if matches!(self.base, BaseOperator::Bool | BaseOperator::Null)
                && !v.eq_ignore_ascii_case("true")
                && !v.eq_ignore_ascii_case("false")
            {
                return Err(format!("\"{v}\" is not true or false"));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.qualifier {
            SetQualifier::None => {}
            SetQualifier::ForAnyValue => f.write_str("ForAnyValue:")?,
            SetQualifier::ForAllValues => f.write_str("ForAllValues:")?,
        }
        f.write_str(self.base.name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

/// One operator + key pair of a `Condition` block; its `values` are ORed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub key: String,
    pub values: Vec<String>,
}

/// The result of checking one condition. `note` is set when the outcome was forced by the
/// fail-closed rule, so the trace can say why even when the condition counted as satisfied.
pub(crate) struct ConditionOutcome {
    pub satisfied: bool,
    pub description: Option<String>,
    pub note: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "kms:calleraccount",
    "kms:viaservice",
    "kms:grantisforawsresource",
    "kms:encryptioncontextkeys",
    "kms:grantoperations",
    "kms:granteeprincipal",
    "kms:retiringprincipal",
    "kms:grantconstrainttype",
    "kms:keyspec",
    "kms:keyusage",
    "kms:encryptionalgorithm",
    "kms:reencryptonsamekey",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
];

pub(crate) const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:encryptioncontext:";

/// Condition key names are case-insensitive, the encryption-context key after
/// `kms:EncryptionContext:` included: AWS documents that a policy does not check the case of
/// either part, and that only `kms:EncryptionContextKeys` (whose *values* are the context keys)
/// can require a context key's exact case.
pub(crate) fn normalize_key(key: &str) -> String {
    key.to_ascii_lowercase()
}

pub(crate) fn is_known_key(normalized: &str) -> bool {
    KNOWN_KEYS.contains(&normalized)
        || normalized
            .strip_prefix(ENCRYPTION_CONTEXT_PREFIX)
            .is_some_and(|s| !s.is_empty())
}

fn describe_values(values: &[String]) -> String {
    match values {
        [] => "no value".to_string(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl Condition {
    /// `context` must already be keyed by [`normalize_key`].
    pub(crate) fn evaluate(
        &self,
        effect: Effect,
        context: &BTreeMap<String, Vec<String>>,
    ) -> ConditionOutcome {
        let op = self.operator;
        let key = normalize_key(&self.key);
        let head = format!("{op} {}", self.key);
        if !is_known_key(&key) || !op.base.is_supported() {
            let why = if is_known_key(&key) {
                format!("operator {} is not supported for this key", op.base.name())
            } else {
                "unknown condition key".to_string()
            };
            let (satisfied, consequence) = match effect {
                Effect::Allow => (false, "treated as not satisfied (fail closed)"),
                Effect::Deny => (
                    true,
                    "treated as satisfied so the Deny applies (fail closed)",
                ),
            };
            let text = format!("{head}: {why}, {consequence}");
            return if satisfied {
                ConditionOutcome {
                    satisfied,
                    description: None,
                    note: Some(text),
                }
            } else {
                ConditionOutcome {
                    satisfied,
                    description: Some(text),
                    note: None,
                }
            };
        }

        let request: &[String] = context.get(&key).map_or(&[], Vec::as_slice);
        let present = !request.is_empty();
        let satisfied = self.satisfied(request, present);
        let description = if satisfied {
            None
        } else {
            Some(self.describe_failure(&head, request))
        };
        ConditionOutcome {
            satisfied,
            description,
            note: None,
        }
    }

    fn satisfied(&self, request: &[String], present: bool) -> bool {
        let op = self.operator;
        if op.base == BaseOperator::Null {
            // "Null": true means "the key must be absent"; values are ORed like any other.
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") != present);
        }
        if !present {
            if op.if_exists {
                return true;
            }
            return match op.qualifier {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::None => op.base.positive().is_some(),
            };
        }
        let (positive, negated) = match op.base.positive() {
            Some(p) => (p, true),
            None => (op.base, false),
        };
        // Whether one request value is accepted by the (possibly negated) operator.
        let value_ok = |r: &String| {
            let hit = self.values.iter().any(|p| positive.matches_one(r, p));
            hit != negated
        };
        match op.qualifier {
            SetQualifier::ForAnyValue => request.iter().any(value_ok),
            SetQualifier::ForAllValues => request.iter().all(value_ok),
            SetQualifier::None => {
                let any_hit = request
                    .iter()
                    .any(|r| self.values.iter().any(|p| positive.matches_one(r, p)));
                any_hit != negated
            }
        }
    }

    fn describe_failure(&self, head: &str, request: &[String]) -> String {
        let has = describe_values(request);
        let wants = self.values.join(" or ");
        let op = self.operator;
        if op.base == BaseOperator::Null {
            let want = if self.values.iter().all(|v| v.eq_ignore_ascii_case("true")) {
                "the key to be absent"
            } else {
                "the key to be present"
            };
            return format!("{head}: request has {has}, policy wants {want}");
        }
        let qualifier = match op.qualifier {
            SetQualifier::None => "",
            SetQualifier::ForAnyValue => "at least one value ",
            SetQualifier::ForAllValues => "every value ",
        };
        if op.base.positive().is_some() {
            format!("{head}: request has {has}, policy wants {qualifier}other than {wants}")
        } else if request.is_empty() {
            format!("{head}: request has no value for the key, policy wants {qualifier}{wants}")
        } else {
            format!("{head}: request has {has}, policy wants {qualifier}{wants}")
        }
    }
}
