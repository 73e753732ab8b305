//! The registration-time check: would a customer's key policy let the platform's role do
//! everything the seed document requires, and if not, what exactly should the customer change;
//! and does the policy bind the key to the customer's organization, so that the platform (one
//! role trusted by every organization) can never use it on another organization's behalf.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::Effect;
use super::document::{KeyPolicy, PrincipalEntry, Statement};
use super::evaluate::{Caller, Decision, Evaluation, Request, evaluate};
use super::matching::{CallerKind, caller_kind, parse_arn, wildcard_match_ci};

/// Sid of the seed document's statement for the eight key-usage actions.
pub const USE_STATEMENT_SID: &str = "Allow an external account to use this KMS key";
/// Sid of the statement for the grant actions the volume service needs.
pub const GRANT_STATEMENT_SID: &str = "Allow attachment of persistent resources";
/// Sid of the org-bound policy's statement for the actions AWS gives no encryption context.
pub const DESCRIBE_STATEMENT_SID: &str = "Allow an external account to describe this KMS key";
/// Sid of the org-bound policy's statement for listing and revoking the platform's grants.
pub const GRANT_MANAGEMENT_STATEMENT_SID: &str =
    "Allow an external account to list and revoke its grants";

/// The encryption-context key every platform call on a customer key carries, with the
/// organization's ID as its value. Key policies bind a key to one organization through
/// `kms:EncryptionContext:organization`.
pub const ORGANIZATION_CONTEXT_KEY: &str = "organization";
const ORGANIZATION_CONDITION_KEY: &str = "kms:EncryptionContext:organization";

const USE_ACTIONS: [&str; 8] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
];
const GRANT_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];
/// The actions AWS gives no encryption context, which a policy cannot tie to an organization.
const UNCONTEXTED_USE_ACTIONS: [&str; 2] = ["kms:EnableKey", "kms:DescribeKey"];
const GRANT_MANAGEMENT_ACTIONS: [&str; 2] = ["kms:ListGrants", "kms:RevokeGrant"];

/// Actions whose real calls carry the organization's encryption context.
const CONTEXT_ACTIONS: [&str; 6] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
];

/// Session name used when checking as the provider role; any name behaves the same because
/// role principals match every session of the role.
const CHECK_SESSION_NAME: &str = "keyplane";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub action: &'static str,
    /// The condition keys the platform's real call will carry, so conditions in the customer's
    /// policy are judged against what will actually happen.
    pub context: BTreeMap<String, Vec<String>>,
}

/// The eleven calls the platform makes with a customer key, in the order the seed lists them.
///
/// Cryptographic calls carry `kms:EncryptionContext:organization` (and the derived key list and
/// the symmetric algorithm, as KMS reports them). The grant calls carry
/// `kms:GrantIsForAWSResource=false`: keyplane makes them itself, not through an integrated
/// AWS service, and KMS sets that key to true only for the latter. A customer statement that
/// requires it to be true would refuse keyplane's own grant calls, so the checker says so.
pub fn platform_requirements(org_id: &str) -> Vec<Requirement> {
    USE_ACTIONS
        .iter()
        .chain(GRANT_ACTIONS.iter())
        .map(|&action| {
            let mut context = BTreeMap::new();
            if CONTEXT_ACTIONS.contains(&action) {
                context.insert(
                    "kms:EncryptionContext:organization".to_string(),
                    vec![org_id.to_string()],
                );
                context.insert(
                    "kms:EncryptionContextKeys".to_string(),
                    vec!["organization".to_string()],
                );
                context.insert(
                    "kms:EncryptionAlgorithm".to_string(),
                    vec!["SYMMETRIC_DEFAULT".to_string()],
                );
            }
            if GRANT_ACTIONS.contains(&action) {
                context.insert(
                    "kms:GrantIsForAWSResource".to_string(),
                    vec!["false".to_string()],
                );
            }
            if action == "kms:CreateGrant" {
                // The platform's grants carry EncryptionContextSubset={organization: org}; for
                // CreateGrant, KMS evaluates the encryption-context keys against the grant's
                // constraint.
                context.insert(
                    ORGANIZATION_CONDITION_KEY.to_string(),
                    vec![org_id.to_string()],
                );
                context.insert(
                    "kms:EncryptionContextKeys".to_string(),
                    vec![ORGANIZATION_CONTEXT_KEY.to_string()],
                );
                context.insert(
                    "kms:GrantConstraintType".to_string(),
                    vec!["EncryptionContextSubset".to_string()],
                );
            }
            Requirement { action, context }
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FindingReason {
    /// No Allow statement covers the action for this principal at all.
    Missing,
    /// An explicit Deny applies.
    DeniedBy { sid: Option<String>, index: usize },
    /// An Allow names the principal and action but its conditions fail for the platform's call.
    ConditionNeverSatisfied {
        sid: Option<String>,
        index: usize,
        conditions: Vec<String>,
    },
    /// An Allow names the action but a different principal (wrong account ID or role name).
    WrongPrincipal { sid: Option<String>, index: usize },
    /// The action is allowed for the platform's role with another organization's encryption
    /// context (or, for CreateGrant, for a grant without the organization's constraint): the
    /// statement that allows it lacks the organization condition shown in `condition`.
    AnyOrganization {
        sid: Option<String>,
        index: Option<usize>,
        #[schema(value_type = Object)]
        condition: Value,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub action: String,
    pub reason: FindingReason,
    /// One sentence telling the customer what to change.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub allowed: Vec<String>,
    pub findings: Vec<Finding>,
    /// Every required action is allowed; says nothing about the organization binding, which
    /// registration decides on separately (see `bound_to_organization`).
    pub verdict_ok: bool,
    /// One [`FindingReason::AnyOrganization`] finding per action the platform may perform for
    /// an organization other than the one checking; empty when the key is bound.
    pub organization_findings: Vec<Finding>,
    /// No allowed action can be used for another organization.
    pub bound_to_organization: bool,
}

/// The caller the platform appears as when it uses `provider_role_arn`: a session of the role.
/// Non-role ARNs are used as they are.
pub fn provider_session_caller(provider_role_arn: &str) -> Caller {
    if let (CallerKind::Role { name }, Some(arn)) =
        (caller_kind(provider_role_arn), parse_arn(provider_role_arn))
    {
        return Caller {
            arn: format!(
                "arn:{}:sts::{}:assumed-role/{}/{}",
                arn.partition, arn.account, name, CHECK_SESSION_NAME
            ),
            account: arn.account.to_string(),
        };
    }
    let account = parse_arn(provider_role_arn).map_or_else(String::new, |a| a.account.to_string());
    Caller {
        arn: provider_role_arn.to_string(),
        account,
    }
}

/// Evaluates every requirement as the platform's role would make it, explains each refusal,
/// and probes the allowed ones that carry the organization's context with another
/// organization's (and CreateGrant without any constraint): any that still passes makes an
/// [`FindingReason::AnyOrganization`] finding.
pub fn check_policy(
    policy: &KeyPolicy,
    provider_role_arn: &str,
    key_account: &str,
    key_arn: &str,
    requirements: &[Requirement],
) -> CheckReport {
    let caller = provider_session_caller(provider_role_arn);
    let run = |action: &str, context: &BTreeMap<String, Vec<String>>| {
        evaluate(
            policy,
            &Request {
                action,
                caller: &caller,
                key_arn,
                key_account,
                context,
            },
        )
    };
    let mut allowed = Vec::new();
    let mut findings = Vec::new();
    let mut organization_findings = Vec::new();
    for req in requirements {
        let eval = run(req.action, &req.context);
        if !eval.is_allowed() {
            findings.push(explain(
                policy,
                &eval,
                req.action,
                provider_role_arn,
                key_account,
            ));
            continue;
        }
        allowed.push(req.action.to_string());
        let Some(org) = organization_of(&req.context) else {
            continue;
        };
        if let Some(leak) = binding_probes(req, org)
            .iter()
            .map(|probe| run(req.action, probe))
            .find(Evaluation::is_allowed)
        {
            organization_findings.push(any_organization(
                policy,
                &leak,
                req.action,
                provider_role_arn,
                org,
            ));
        }
    }
    CheckReport {
        verdict_ok: findings.is_empty(),
        allowed,
        findings,
        bound_to_organization: organization_findings.is_empty(),
        organization_findings,
    }
}

/// The organization a requirement's context names, if it carries one.
fn organization_of(context: &BTreeMap<String, Vec<String>>) -> Option<&str> {
    context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(ORGANIZATION_CONDITION_KEY))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Requests another organization could make the platform send: the same call with another
/// organization's ID (two shapes, so a prefix pattern such as `"<org>*"` is caught too), and
/// for CreateGrant a grant with no constraint at all.
fn binding_probes(req: &Requirement, org: &str) -> Vec<BTreeMap<String, Vec<String>>> {
    let with_org = |other: &str| {
        let mut c = req.context.clone();
        for (k, v) in c.iter_mut() {
            if k.eq_ignore_ascii_case(ORGANIZATION_CONDITION_KEY) {
                *v = vec![other.to_string()];
            }
        }
        c
    };
    let mut probes: Vec<_> = [ANOTHER_ORGANIZATION.to_string(), format!("{org}-other")]
        .iter()
        .filter(|o| o.as_str() != org)
        .map(|o| with_org(o))
        .collect();
    if req.action.eq_ignore_ascii_case("kms:CreateGrant") {
        let mut bare = req.context.clone();
        bare.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("kms:encryptioncontext") && k != "kms:grantconstrainttype"
        });
        probes.push(bare);
    }
    probes
}

/// An organization ID no organization has (the nil UUID), used to probe the binding.
const ANOTHER_ORGANIZATION: &str = "00000000-0000-0000-0000-000000000000";

/// The condition a statement needs so that it allows the platform only `org`'s requests.
pub fn organization_condition(org_id: &str) -> Value {
    json!({ "StringEquals": { ORGANIZATION_CONDITION_KEY: org_id } })
}

fn any_organization(
    policy: &KeyPolicy,
    leak: &Evaluation,
    action: &str,
    role: &str,
    org: &str,
) -> Finding {
    let condition = organization_condition(org);
    let deciding = leak.deciding_statement();
    let (sid, index) = (
        deciding.and_then(|t| t.sid.clone()),
        deciding.map(|t| t.index),
    );
    let name = deciding
        .and_then(|t| policy.statements.get(t.index).map(|s| name_of(s, t.index)))
        .unwrap_or_else(|| "the key policy".to_string());
    let what = if action.eq_ignore_ascii_case("kms:CreateGrant") {
        "for grants that do not carry your organization's encryption context"
    } else {
        "with any organization's encryption context"
    };
    Finding {
        action: action.to_string(),
        reason: FindingReason::AnyOrganization {
            sid,
            index,
            condition: condition.clone(),
        },
        message: format!(
            "the platform may use this key for any organization: {name} allows {action} for {role} {what}; \
             add \"Condition\": {condition} to it (see the organization-bound recommended statements)"
        ),
    }
}

fn name_of(st: &Statement, index: usize) -> String {
    match &st.sid {
        Some(sid) => format!("the statement \"{sid}\""),
        None => format!("statement #{index} (no Sid)"),
    }
}

fn explain(
    policy: &KeyPolicy,
    eval: &Evaluation,
    action: &str,
    role: &str,
    key_account: &str,
) -> Finding {
    let finding = |reason, message| Finding {
        action: action.to_string(),
        reason,
        message,
    };
    let stmt = |i: usize| policy.statements.get(i);

    if eval.decision == Decision::ExplicitDeny
        && let Some(t) = eval
            .statements
            .iter()
            .find(|t| t.applies && t.effect == Effect::Deny)
    {
        let name = stmt(t.index).map_or_else(String::new, |s| name_of(s, t.index));
        return finding(
            FindingReason::DeniedBy {
                sid: t.sid.clone(),
                index: t.index,
            },
            format!(
                "{action} is explicitly denied to {role} by {name}: remove {action} from that Deny or exclude {role} from it"
            ),
        );
    }

    let allows = || eval.statements.iter().filter(|t| t.effect == Effect::Allow);

    if let Some(t) = allows().find(|t| {
        t.principal_matches
            && t.action_matches
            && t.resource_matches
            && !t.failed_conditions.is_empty()
    }) {
        let name = stmt(t.index).map_or_else(String::new, |s| name_of(s, t.index));
        let reason = FindingReason::ConditionNeverSatisfied {
            sid: t.sid.clone(),
            index: t.index,
            conditions: t.failed_conditions.clone(),
        };
        // A statement bound to another organization is the expected answer for a key that
        // belongs to someone else, not a condition to relax.
        if t.failed_conditions.iter().all(|c| {
            c.to_ascii_lowercase()
                .contains(&ORGANIZATION_CONDITION_KEY.to_ascii_lowercase())
        }) {
            return finding(
                reason,
                format!(
                    "{action} is allowed for {role} by {name} only for another organization ({}): this key is bound to an organization other than yours, or its condition names the wrong organization ID",
                    t.failed_conditions.join("; ")
                ),
            );
        }
        return finding(
            reason,
            format!(
                "{action} is allowed for {role} by {name} only under conditions the platform's call does not meet ({}): remove or relax those conditions",
                t.failed_conditions.join("; ")
            ),
        );
    }

    // Statements for the customer's own account (such as AWS's default "Enable IAM User
    // Permissions") name every action but were never meant for the platform, so only
    // statements naming some other account's principal count as a mistyped principal.
    if let Some((t, s)) = allows()
        .filter(|t| t.action_matches && t.resource_matches && !t.principal_matches)
        .filter_map(|t| stmt(t.index).map(|s| (t, s)))
        .find(|(_, s)| names_foreign_principal(s, key_account))
    {
        let listed = listed_principals(s);
        return finding(
            FindingReason::WrongPrincipal {
                sid: t.sid.clone(),
                index: t.index,
            },
            format!(
                "{} allows {action} for {listed} but not for {role}: set its Principal to {{\"AWS\": \"{role}\"}}",
                capitalize(&name_of(s, t.index))
            ),
        );
    }

    let message = missing_message(policy, eval, action, role);
    finding(FindingReason::Missing, message)
}

fn missing_message(policy: &KeyPolicy, eval: &Evaluation, action: &str, role: &str) -> String {
    let grant = GRANT_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action));
    let group: &[&str] = if grant { &GRANT_ACTIONS } else { &USE_ACTIONS };
    let stmt = |i: usize| policy.statements.get(i);

    // An Allow for the role that covers the key but not the action: the customer most likely
    // forgot the action in that list.
    let hosts: Vec<(usize, &Statement)> = eval
        .statements
        .iter()
        .filter(|t| {
            t.effect == Effect::Allow
                && t.principal_matches
                && t.resource_matches
                && !t.action_matches
        })
        .filter_map(|t| stmt(t.index).map(|s| (t.index, s)))
        .collect();
    let same_group = hosts.iter().find(|(_, s)| {
        !s.action.negated
            && group
                .iter()
                .any(|a| s.action.patterns.iter().any(|p| wildcard_match_ci(p, a)))
    });
    let host = match same_group {
        Some(h) => Some(h),
        None if !grant => hosts.first(),
        None => None,
    };
    if let Some((i, s)) = host {
        return if s.action.negated {
            format!(
                "{action} is not allowed for {role}: remove it from the NotAction list of {}",
                name_of(s, *i)
            )
        } else {
            format!(
                "{action} is not allowed for {role}: add it to the Action list of {}",
                name_of(s, *i)
            )
        };
    }

    // The role and action are named together but the Resource leaves this key out.
    if let Some((i, s)) = eval
        .statements
        .iter()
        .find(|t| {
            t.effect == Effect::Allow
                && t.principal_matches
                && t.action_matches
                && !t.resource_matches
        })
        .and_then(|t| stmt(t.index).map(|s| (t.index, s)))
    {
        return format!(
            "{action} is not allowed for {role}: {} does not cover this key, set its Resource to \"*\"",
            name_of(s, i)
        );
    }

    let sid = if grant {
        GRANT_STATEMENT_SID
    } else {
        USE_STATEMENT_SID
    };
    format!(
        "{action} is not allowed for {role}: add the statement \"{sid}\" (see the recommended statements) to the key policy"
    )
}

fn names_foreign_principal(s: &Statement, key_account: &str) -> bool {
    !s.principal.negated
        && s.principal.entries.iter().any(|e| match e {
            PrincipalEntry::Aws(p) => {
                let account = parse_arn(p).map_or(p.as_str(), |a| a.account);
                p != "*" && account != key_account
            }
            _ => false,
        })
}

fn listed_principals(s: &Statement) -> String {
    let names: Vec<&str> = s
        .principal
        .entries
        .iter()
        .filter_map(|e| match e {
            PrincipalEntry::Aws(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    names.join(", ")
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The statements the customer pastes into the key policy, with the platform's role filled in.
/// The first is the seed document's statement; the second allows the grants the volume
/// service needs. It carries no `kms:GrantIsForAWSResource` condition because keyplane makes
/// those grant calls itself (the built-in KMS, like AWS, reports false for them).
pub fn recommended_statements(provider_role_arn: &str) -> Vec<Value> {
    vec![
        json!({
            "Sid": USE_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": USE_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": GRANT_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": GRANT_ACTIONS,
            "Resource": "*"
        }),
    ]
}

/// The statements keyplane will recommend once registration proves the binding: the same
/// permissions as [`recommended_statements`], with every use that AWS gives an encryption
/// context tied to the organization `org_id`:
///
/// 1. [`USE_STATEMENT_SID`]: Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext,
///    ReEncryptTo and ReEncryptFrom, only when `kms:EncryptionContext:organization` is `org_id`
///    (for ReEncrypt, AWS checks ReEncryptFrom against the source context and ReEncryptTo
///    against the destination context, so both sides must name the organization);
/// 2. [`GRANT_STATEMENT_SID`]: CreateGrant under the same condition, which AWS evaluates
///    against the grant's constraint, so only grants carrying
///    `EncryptionContextSubset` (or `Equals`) `{"organization": org_id}` can be created, and
///    their grantee is held to that context on every use;
/// 3. [`DESCRIBE_STATEMENT_SID`]: EnableKey and DescribeKey, unconditioned;
/// 4. [`GRANT_MANAGEMENT_STATEMENT_SID`]: ListGrants and RevokeGrant, unconditioned.
///
/// What the unconditioned statements expose, because AWS passes those calls no context and so
/// no policy can bind them: anyone who can make the platform's role call them on this key can
/// read the key's metadata and state (DescribeKey), list its grants with their grantees and
/// constraints, which name the organization (ListGrants), and revoke any grant on it, which
/// would cut off the owner's volumes until the platform re-creates its grants (RevokeGrant).
/// None of them reads or uses key material or data. EnableKey cannot be exercised at all:
/// AWS refuses EnableKey across accounts whatever the policy says. keyplane only makes these
/// calls for a key whose registration proved the binding, so another organization cannot
/// cause them by naming this key's ARN.
pub fn recommended_statements_bound(provider_role_arn: &str, org_id: &str) -> Vec<Value> {
    let condition = organization_condition(org_id);
    vec![
        json!({
            "Sid": USE_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": CONTEXT_ACTIONS,
            "Resource": "*",
            "Condition": condition
        }),
        json!({
            "Sid": DESCRIBE_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": UNCONTEXTED_USE_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": GRANT_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": ["kms:CreateGrant"],
            "Resource": "*",
            "Condition": condition
        }),
        json!({
            "Sid": GRANT_MANAGEMENT_STATEMENT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": provider_role_arn },
            "Action": GRANT_MANAGEMENT_ACTIONS,
            "Resource": "*"
        }),
    ]
}
