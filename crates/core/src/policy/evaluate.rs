//! Evaluating one KMS request against a key policy, with a per-statement trace so callers can
//! explain a refusal instead of just reporting it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::condition::{ENCRYPTION_CONTEXT_PREFIX, normalize_key};
use super::document::{KeyPolicy, NameList, PrincipalEntry, PrincipalSet};
use super::matching::{
    CallerKind, caller_kind, has_wildcard, is_account_id, parse_arn, wildcard_match,
    wildcard_match_ci,
};
use super::{Effect, PolicyError};

/// The authenticated principal making a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// As AWS reports it: `arn:aws:iam::A:user/NAME`, `arn:aws:iam::A:root` or a role session
    /// `arn:aws:sts::A:assumed-role/ROLE/SESSION`.
    pub arn: String,
    pub account: String,
}

impl Caller {
    /// Builds a caller from its ARN alone, taking the account from the ARN; `None` when the
    /// text is not an ARN with a 12-digit account.
    pub fn from_arn(arn: &str) -> Option<Caller> {
        let parsed = parse_arn(arn)?;
        if !is_account_id(parsed.account) {
            return None;
        }
        Some(Caller {
            arn: arn.to_string(),
            account: parsed.account.to_string(),
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// e.g. `kms:Decrypt`; compared case-insensitively.
    pub action: &'a str,
    pub caller: &'a Caller,
    /// `arn:aws:kms:REGION:ACCOUNT:key/UUID`.
    pub key_arn: &'a str,
    pub key_account: &'a str,
    /// Condition keys the request carries. Key names are case-insensitive, the part after
    /// `kms:EncryptionContext:` included (as in AWS). The principal keys (aws:PrincipalArn, aws:PrincipalAccount,
    /// aws:PrincipalType, kms:CallerAccount) are derived from `caller` and override anything
    /// passed here, so a caller cannot forge its own identity.
    pub context: &'a BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub statements: Vec<StatementTrace>,
}

impl Evaluation {
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// The statement that decided the outcome: the first applying Deny for an explicit deny,
    /// the first applying Allow for an allow, none for an implicit deny.
    pub fn deciding_statement(&self) -> Option<&StatementTrace> {
        let effect = match self.decision {
            Decision::Allow => Effect::Allow,
            Decision::ExplicitDeny => Effect::Deny,
            Decision::ImplicitDeny => return None,
        };
        self.statements
            .iter()
            .find(|t| t.applies && t.effect == effect)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementTrace {
    pub index: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal_matches: bool,
    pub action_matches: bool,
    pub resource_matches: bool,
    /// One sentence per condition that was not satisfied, e.g. "StringEquals
    /// kms:CallerAccount: request has 222222222222, policy wants 111111111111".
    pub failed_conditions: Vec<String>,
    /// Conditions that counted as satisfied only because of the fail-closed rule (an unknown
    /// key in a Deny statement); listed so a surprising Deny can be explained.
    pub notes: Vec<String>,
    /// Principal, action, resource and every condition matched.
    pub applies: bool,
}

pub fn evaluate(policy: &KeyPolicy, req: &Request<'_>) -> Evaluation {
    let context = request_context(req);
    let mut statements = Vec::with_capacity(policy.statements.len());
    for (index, st) in policy.statements.iter().enumerate() {
        let principal_matches = principal_set_matches(&st.principal, req.caller);
        let action_matches = names_match(&st.action, |p| wildcard_match_ci(p, req.action));
        let resource_matches = names_match(&st.resource, |p| wildcard_match(p, req.key_arn));
        let mut failed_conditions = Vec::new();
        let mut notes = Vec::new();
        let mut conditions_hold = true;
        for cond in &st.conditions {
            let outcome = cond.evaluate(st.effect, &context);
            conditions_hold &= outcome.satisfied;
            if let Some(d) = outcome.description {
                failed_conditions.push(d);
            }
            if let Some(n) = outcome.note {
                notes.push(n);
            }
        }
        let applies = principal_matches && action_matches && resource_matches && conditions_hold;
        statements.push(StatementTrace {
            index,
            sid: st.sid.clone(),
            effect: st.effect,
            principal_matches,
            action_matches,
            resource_matches,
            failed_conditions,
            notes,
            applies,
        });
    }
    let applies_with = |e: Effect| statements.iter().any(|t| t.applies && t.effect == e);
    let decision = if applies_with(Effect::Deny) {
        Decision::ExplicitDeny
    } else if applies_with(Effect::Allow) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    };
    Evaluation {
        decision,
        statements,
    }
}

/// AWS refuses a policy that would stop the caller from ever changing it again; the check is
/// made with no request context, exactly as KMS does.
pub fn lockout_check(
    policy: &KeyPolicy,
    caller: &Caller,
    key_arn: &str,
    key_account: &str,
) -> Result<(), PolicyError> {
    let context = BTreeMap::new();
    let eval = evaluate(
        policy,
        &Request {
            action: "kms:PutKeyPolicy",
            caller,
            key_arn,
            key_account,
            context: &context,
        },
    );
    if eval.is_allowed() {
        Ok(())
    } else {
        Err(PolicyError::Lockout {
            caller: caller.arn.clone(),
        })
    }
}

fn names_match(list: &NameList, matches: impl Fn(&str) -> bool) -> bool {
    let hit = list.patterns.iter().any(|p| matches(p));
    hit != list.negated
}

fn principal_set_matches(set: &PrincipalSet, caller: &Caller) -> bool {
    let hit = set.entries.iter().any(|e| entry_matches(e, caller));
    hit != set.negated
}

fn entry_matches(entry: &PrincipalEntry, caller: &Caller) -> bool {
    match entry {
        PrincipalEntry::Anyone => true,
        PrincipalEntry::Aws(p) => aws_principal_matches(p, caller),
        // Service, federated and canonical-user principals never call the dev KMS directly.
        PrincipalEntry::Service(_)
        | PrincipalEntry::Federated(_)
        | PrincipalEntry::CanonicalUser(_) => false,
    }
}

fn aws_principal_matches(principal: &str, caller: &Caller) -> bool {
    if principal == "*" {
        return true;
    }
    // AWS refuses wildcards inside principal ARNs; matching them would grant more than AWS.
    if has_wildcard(principal) {
        return false;
    }
    if is_account_id(principal) {
        return principal == caller.account;
    }
    let Some(p) = parse_arn(principal) else {
        return false;
    };
    let caller_arn = parse_arn(&caller.arn);
    let caller_partition = caller_arn.map_or("aws", |a| a.partition);
    if p.service == "iam" && p.resource == "root" {
        return p.partition == caller_partition && p.account == caller.account;
    }
    if p.service == "iam" && p.resource.starts_with("role/") {
        // The session ARN drops the role's path, so only the last path segment can be compared.
        let role_name = p.resource.rsplit('/').next().unwrap_or_default();
        if let (
            CallerKind::RoleSession {
                role_name: name, ..
            },
            Some(c),
        ) = (caller_kind(&caller.arn), caller_arn)
        {
            return c.partition == p.partition && c.account == p.account && name == role_name;
        }
    }
    principal == caller.arn
}

/// The request's condition keys, normalized for lookup and completed with what KMS itself
/// knows about the caller.
fn request_context(req: &Request<'_>) -> BTreeMap<String, Vec<String>> {
    let mut ctx: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.context {
        ctx.entry(normalize_key(k))
            .or_default()
            .extend(v.iter().cloned());
    }
    // Derived from the keys as the request spelled them: kms:EncryptionContextKeys is the one
    // condition key whose values keep the context keys' case.
    if !ctx.contains_key("kms:encryptioncontextkeys") {
        let keys: Vec<String> = req
            .context
            .keys()
            .filter_map(|k| {
                let prefix = k.get(..ENCRYPTION_CONTEXT_PREFIX.len())?;
                let suffix = k.get(ENCRYPTION_CONTEXT_PREFIX.len()..)?;
                prefix
                    .eq_ignore_ascii_case(ENCRYPTION_CONTEXT_PREFIX)
                    .then(|| suffix.to_string())
            })
            .filter(|k| !k.is_empty())
            .collect();
        if !keys.is_empty() {
            ctx.insert("kms:encryptioncontextkeys".into(), keys);
        }
    }
    let caller = req.caller;
    let kind = caller_kind(&caller.arn);
    let principal_arn = match &kind {
        CallerKind::RoleSession { role_arn, .. } => role_arn.clone(),
        _ => caller.arn.clone(),
    };
    ctx.insert("aws:principalarn".into(), vec![principal_arn]);
    ctx.insert("aws:principalaccount".into(), vec![caller.account.clone()]);
    ctx.insert("kms:calleraccount".into(), vec![caller.account.clone()]);
    let principal_type = match kind {
        CallerKind::Root => Some("Account"),
        CallerKind::User => Some("User"),
        CallerKind::Role { .. } | CallerKind::RoleSession { .. } => Some("AssumedRole"),
        CallerKind::FederatedUser => Some("FederatedUser"),
        CallerKind::Other => None,
    };
    match principal_type {
        Some(t) => {
            ctx.insert("aws:principaltype".into(), vec![t.to_string()]);
        }
        None => {
            ctx.remove("aws:principaltype");
        }
    }
    ctx
}
