//! Key-policy evaluator and platform policy checker, exercised through the public API only.

use std::collections::BTreeMap;

use keyplane_core::policy::{
    Caller, CheckReport, Decision, Effect, Evaluation, FindingReason, KeyPolicy, PolicyError,
    Request, check_policy, evaluate, lockout_check, organization_condition, platform_requirements,
    recommended_statements, recommended_statements_bound,
};

const OWNER: &str = "111111111111";
const PROVIDER: &str = "222222222222";
const OTHER: &str = "333333333333";
const KEY_ARN: &str = "arn:aws:kms:us-east-2:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const ORG: &str = "8a1b2c3d-0000-4000-8000-000000000001";

const ALL_ACTIONS: [&str; 11] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:ListGrants",
    "kms:RevokeGrant",
];

/// The seed document's statement, verbatim (indentation and all), with PROVIDER_ID filled in.
fn seed_statement(provider_id: &str) -> String {
    r#"        {
            "Sid": "Allow an external account to use this KMS key",
            "Effect": "Allow",
            "Principal": {
                "AWS": "arn:aws:iam::PROVIDER_ID:role/creator"
            },
            "Action": [
                "kms:EnableKey",
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptTo",
                "kms:ReEncryptFrom",
                "kms:DescribeKey"
            ],
            "Resource": "*"
        }"#
    .replace("PROVIDER_ID", provider_id)
}

fn default_statement(account: &str) -> String {
    format!(
        r#"{{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {{"AWS": "arn:aws:iam::{account}:root"}}, "Action": "kms:*", "Resource": "*"}}"#
    )
}

fn attach_statement(principal: &str, actions: &[&str], with_condition: bool) -> String {
    let cond = if with_condition {
        r#", "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}"#
    } else {
        ""
    };
    format!(
        r#"{{"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
            "Principal": {{"AWS": "{principal}"}}, "Action": {}, "Resource": "*"{cond}}}"#,
        serde_json::to_string(actions).unwrap()
    )
}

fn use_statement(principal: &str, actions: &[&str]) -> String {
    format!(
        r#"{{"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
            "Principal": {{"AWS": "{principal}"}}, "Action": {}, "Resource": "*"}}"#,
        serde_json::to_string(actions).unwrap()
    )
}

fn policy_text(statements: &[String]) -> String {
    format!(
        r#"{{"Version": "2012-10-17", "Id": "key-consolepolicy-3", "Statement": [{}]}}"#,
        statements.join(",\n")
    )
}

fn policy(statements: &[String]) -> KeyPolicy {
    let text = policy_text(statements);
    KeyPolicy::parse(&text).unwrap_or_else(|e| panic!("policy should parse: {e}\n{text}"))
}

fn full_policy() -> KeyPolicy {
    policy(&[
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ])
}

fn ctx(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn caller(arn: &str) -> Caller {
    Caller::from_arn(arn).unwrap()
}

fn eval_as(
    p: &KeyPolicy,
    caller_arn: &str,
    action: &str,
    context: &BTreeMap<String, Vec<String>>,
) -> Evaluation {
    let c = caller(caller_arn);
    evaluate(
        p,
        &Request {
            action,
            caller: &c,
            key_arn: KEY_ARN,
            key_account: OWNER,
            context,
        },
    )
}

fn check(p: &KeyPolicy) -> CheckReport {
    check_for(p, ORG)
}

fn check_for(p: &KeyPolicy, org: &str) -> CheckReport {
    check_policy(p, ROLE, OWNER, KEY_ARN, &platform_requirements(org))
}

const OTHER_ORG: &str = "8a1b2c3d-0000-4000-8000-000000000002";

/// The owner's default statement plus the organization-bound recommended statements.
fn bound_policy(org: &str) -> KeyPolicy {
    let mut statements = vec![default_statement(OWNER)];
    statements.extend(
        recommended_statements_bound(ROLE, org)
            .iter()
            .map(|v| v.to_string()),
    );
    policy(&statements)
}

/// The actions whose platform calls carry the organization's context (CreateGrant through its
/// grant constraint).
const ORG_ACTIONS: [&str; 7] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:CreateGrant",
];

fn org_finding_actions(r: &CheckReport) -> Vec<&str> {
    r.organization_findings
        .iter()
        .map(|f| f.action.as_str())
        .collect()
}

const ADMIN: &str = "arn:aws:iam::111111111111:user/admin";
const SESSION: &str = "arn:aws:sts::222222222222:assumed-role/creator/keyplane-1";

// ---------------------------------------------------------------- checker

#[test]
fn seed_default_and_attachment_statements_pass() {
    let report = check(&full_policy());
    assert!(report.verdict_ok, "{:#?}", report.findings);
    assert!(report.findings.is_empty());
    assert_eq!(report.allowed, ALL_ACTIONS.map(String::from).to_vec());
}

#[test]
fn seed_and_default_alone_miss_exactly_the_grant_actions() {
    let p = policy(&[default_statement(OWNER), seed_statement(PROVIDER)]);
    let report = check(&p);
    assert!(!report.verdict_ok);
    let missing: Vec<&str> = report.findings.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(
        missing,
        ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    );
    for f in &report.findings {
        assert_eq!(f.reason, FindingReason::Missing);
        assert!(
            f.message
                .contains("Allow attachment of persistent resources"),
            "{}",
            f.message
        );
    }
    assert_eq!(report.allowed.len(), 8);
}

#[test]
fn grant_statement_without_the_aws_resource_condition_also_passes() {
    let p = policy(&[
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ]);
    assert!(check(&p).verdict_ok);
}

/// keyplane calls CreateGrant itself, so KMS reports kms:GrantIsForAWSResource=false: AWS's
/// statement for AWS-integrated services does not let the platform's own grant calls through.
#[test]
fn grant_statement_requiring_an_aws_resource_refuses_keyplanes_own_grant_calls() {
    let p = policy(&[
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            true,
        ),
    ]);
    let report = check(&p);
    assert!(!report.verdict_ok);
    let actions: Vec<&str> = report.findings.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(
        actions,
        ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    );
    for f in &report.findings {
        assert!(
            matches!(f.reason, FindingReason::ConditionNeverSatisfied { .. }),
            "{:?}",
            f.reason
        );
    }
}

#[test]
fn recommended_statements_are_the_seed_statement_and_pass_the_checker() {
    let rec = recommended_statements(ROLE);
    assert_eq!(rec.len(), 2);
    let seed: serde_json::Value = serde_json::from_str(&seed_statement(PROVIDER)).unwrap();
    assert_eq!(rec[0], seed);
    assert_eq!(rec[1]["Sid"], "Allow attachment of persistent resources");
    assert!(
        rec[1].get("Condition").is_none(),
        "keyplane's own grant calls do not satisfy kms:GrantIsForAWSResource"
    );
    assert_eq!(
        rec[1]["Action"],
        serde_json::json!(["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"])
    );
    let mut statements = vec![default_statement(OWNER)];
    statements.extend(rec.iter().map(|v| v.to_string()));
    assert!(check(&policy(&statements)).verdict_ok);
}

// ---------------------------------------------------------------- organization binding

#[test]
fn bound_statements_tie_every_contexted_use_to_the_organization() {
    let rec = recommended_statements_bound(ROLE, ORG);
    let cond = serde_json::json!({"StringEquals": {"kms:EncryptionContext:organization": ORG}});
    assert_eq!(organization_condition(ORG), cond);
    let sids: Vec<&str> = rec.iter().map(|s| s["Sid"].as_str().unwrap()).collect();
    assert_eq!(
        sids,
        [
            "Allow an external account to use this KMS key",
            "Allow an external account to describe this KMS key",
            "Allow attachment of persistent resources",
            "Allow an external account to list and revoke its grants",
        ]
    );
    assert_eq!(
        rec[0]["Action"],
        serde_json::json!([
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptTo",
            "kms:ReEncryptFrom"
        ])
    );
    assert_eq!(rec[0]["Condition"], cond);
    assert_eq!(
        rec[1]["Action"],
        serde_json::json!(["kms:EnableKey", "kms:DescribeKey"])
    );
    assert!(rec[1].get("Condition").is_none());
    assert_eq!(rec[2]["Action"], serde_json::json!(["kms:CreateGrant"]));
    assert_eq!(rec[2]["Condition"], cond);
    assert_eq!(
        rec[3]["Action"],
        serde_json::json!(["kms:ListGrants", "kms:RevokeGrant"])
    );
    assert!(rec[3].get("Condition").is_none());
    for s in &rec {
        assert_eq!(s["Principal"]["AWS"], ROLE);
    }
}

#[test]
fn bound_policy_passes_for_its_organization_and_is_bound() {
    let report = check(&bound_policy(ORG));
    assert!(report.verdict_ok, "{:#?}", report.findings);
    assert_eq!(report.allowed, ALL_ACTIONS.map(String::from).to_vec());
    assert!(
        report.bound_to_organization,
        "{:#?}",
        report.organization_findings
    );
    assert!(report.organization_findings.is_empty());
}

#[test]
fn bound_policy_fails_for_another_organization_on_exactly_the_contexted_actions() {
    let report = check_for(&bound_policy(ORG), OTHER_ORG);
    assert!(!report.verdict_ok);
    let refused: Vec<&str> = report.findings.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(
        refused,
        [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptTo",
            "kms:ReEncryptFrom",
            "kms:CreateGrant",
        ]
    );
    for f in &report.findings {
        assert!(
            matches!(&f.reason, FindingReason::ConditionNeverSatisfied { conditions, .. }
                if conditions.iter().all(|c| c.contains(OTHER_ORG) && c.contains(ORG))),
            "{:?}",
            f.reason
        );
        assert!(
            f.message.contains("only for another organization"),
            "{}",
            f.message
        );
    }
    // DescribeKey, EnableKey, ListGrants and RevokeGrant carry no context.
    assert_eq!(
        report.allowed,
        [
            "kms:EnableKey",
            "kms:DescribeKey",
            "kms:ListGrants",
            "kms:RevokeGrant"
        ]
    );
    assert!(report.bound_to_organization);
}

/// The seed's statements (keyplane's default recommendation today) let the shared platform role
/// use the key for every organization: each contexted action gets the finding, with the
/// condition to add, while the verdict stays what it was.
#[test]
fn unbound_policy_gets_the_any_organization_finding_with_the_condition_to_add() {
    let report = check(&full_policy());
    assert!(report.verdict_ok);
    assert!(report.findings.is_empty());
    assert!(!report.bound_to_organization);
    assert_eq!(org_finding_actions(&report), ORG_ACTIONS);
    for f in &report.organization_findings {
        let FindingReason::AnyOrganization {
            sid,
            index,
            condition,
        } = &f.reason
        else {
            panic!("{:?}", f.reason)
        };
        assert_eq!(condition, &organization_condition(ORG));
        let want_sid = if f.action == "kms:CreateGrant" {
            "Allow attachment of persistent resources"
        } else {
            "Allow an external account to use this KMS key"
        };
        assert_eq!(sid.as_deref(), Some(want_sid));
        assert_eq!(
            *index,
            Some(if f.action == "kms:CreateGrant" { 2 } else { 1 })
        );
        assert!(
            f.message
                .starts_with("the platform may use this key for any organization"),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains(&format!("\"kms:EncryptionContext:organization\":\"{ORG}\"")),
            "{}",
            f.message
        );
    }
    let same = check(&policy(&[
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ]));
    assert_eq!(same, report);
}

#[test]
fn a_bound_use_statement_with_an_unbound_grant_statement_flags_only_create_grant() {
    let rec = recommended_statements_bound(ROLE, ORG);
    let p = policy(&[
        default_statement(OWNER),
        rec[0].to_string(),
        rec[1].to_string(),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ]);
    let report = check(&p);
    assert!(report.verdict_ok, "{:#?}", report.findings);
    assert_eq!(org_finding_actions(&report), ["kms:CreateGrant"]);
    assert!(
        report.organization_findings[0]
            .message
            .contains("grants that do not carry")
    );
}

fn use_under(condition: &str, create_grant_condition: &str) -> KeyPolicy {
    let actions = serde_json::to_string(&ORG_ACTIONS[..6]).unwrap();
    policy(&[
        default_statement(OWNER),
        format!(
            r#"{{"Sid": "use", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": {actions},
                "Resource": "*", "Condition": {condition}}}"#
        ),
        format!(
            r#"{{"Sid": "grant", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:CreateGrant",
                "Resource": "*", "Condition": {create_grant_condition}}}"#
        ),
        format!(
            r#"{{"Sid": "rest", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}},
                "Action": ["kms:EnableKey", "kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}}"#
        ),
    ])
}

#[test]
fn conditions_that_only_look_like_a_binding_are_flagged() {
    let bound = format!(r#"{{"StringEquals": {{"kms:EncryptionContext:organization": "{ORG}"}}}}"#);
    // A prefix pattern matches other organizations' IDs.
    let prefix = format!(r#"{{"StringLike": {{"kms:EncryptionContext:organization": "{ORG}*"}}}}"#);
    let r = check(&use_under(&prefix, &bound));
    assert!(r.verdict_ok);
    assert_eq!(org_finding_actions(&r), &ORG_ACTIONS[..6]);
    // Requiring the key but not the value.
    let key_only = r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "organization"}}"#;
    let r = check(&use_under(key_only, &bound));
    assert_eq!(org_finding_actions(&r), &ORG_ACTIONS[..6]);
    // A grant constraint type without the organization's pair.
    let any_constraint =
        r#"{"StringEquals": {"kms:GrantConstraintType": "EncryptionContextSubset"}}"#;
    let r = check(&use_under(&bound, any_constraint));
    assert!(r.verdict_ok);
    assert_eq!(org_finding_actions(&r), ["kms:CreateGrant"]);
    // A grant without any constraint.
    let if_exists =
        format!(r#"{{"StringEqualsIfExists": {{"kms:EncryptionContext:organization": "{ORG}"}}}}"#);
    let r = check(&use_under(&bound, &if_exists));
    assert_eq!(org_finding_actions(&r), ["kms:CreateGrant"]);
    // Both bound, with the documented form that also forbids other context keys.
    let strict = format!(
        r#"{{"StringEquals": {{"kms:EncryptionContext:organization": "{ORG}"}},
            "ForAllValues:StringEquals": {{"kms:EncryptionContextKeys": ["organization"]}}}}"#
    );
    let r = check(&use_under(&strict, &strict));
    assert!(r.verdict_ok, "{:#?}", r.findings);
    assert!(r.bound_to_organization, "{:#?}", r.organization_findings);
}

/// A binding by Deny (an unconditioned Allow plus a Deny for every other organization) is as
/// good as a conditioned Allow.
#[test]
fn a_deny_for_other_organizations_binds_the_key() {
    let deny = format!(
        r#"{{"Sid": "only-ours", "Effect": "Deny", "Principal": {{"AWS": "{ROLE}"}},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:CreateGrant"],
            "Resource": "*", "Condition": {{"StringNotEquals": {{"kms:EncryptionContext:organization": "{ORG}"}}}}}}"#
    );
    let mut statements = vec![
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ];
    statements.push(deny);
    let p = policy(&statements);
    let r = check(&p);
    assert!(r.verdict_ok, "{:#?}", r.findings);
    assert!(r.bound_to_organization, "{:#?}", r.organization_findings);
    let other = check_for(&p, OTHER_ORG);
    assert_eq!(other.findings.len(), 7);
    assert!(
        other
            .findings
            .iter()
            .all(|f| matches!(f.reason, FindingReason::DeniedBy { .. }))
    );
}

/// Wildcard actions in a bound statement are bound too.
#[test]
fn wildcard_actions_under_the_condition_are_bound() {
    let p = policy(&[
        default_statement(OWNER),
        format!(
            r#"{{"Sid": "use", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:CreateGrant"],
                "Resource": "*", "Condition": {{"StringEquals": {{"KMS:EncryptionContext:Organization": "{ORG}"}}}}}}"#
        ),
        format!(
            r#"{{"Sid": "rest", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}},
                "Action": ["kms:EnableKey", "kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}}"#
        ),
    ]);
    let r = check(&p);
    assert!(r.verdict_ok, "{:#?}", r.findings);
    assert!(r.bound_to_organization, "{:#?}", r.organization_findings);
    assert!(!check_for(&p, OTHER_ORG).verdict_ok);
}

#[test]
fn each_missing_action_is_reported_alone_as_missing() {
    let use_actions = &ALL_ACTIONS[..8];
    let grant_actions = &ALL_ACTIONS[8..];
    for missing in ALL_ACTIONS {
        let uses: Vec<&str> = use_actions
            .iter()
            .copied()
            .filter(|a| *a != missing)
            .collect();
        let grants: Vec<&str> = grant_actions
            .iter()
            .copied()
            .filter(|a| *a != missing)
            .collect();
        let p = policy(&[
            default_statement(OWNER),
            use_statement(ROLE, &uses),
            attach_statement(ROLE, &grants, false),
        ]);
        let report = check(&p);
        assert!(!report.verdict_ok);
        assert_eq!(
            report.findings.len(),
            1,
            "{missing}: {:#?}",
            report.findings
        );
        let f = &report.findings[0];
        assert_eq!(f.action, missing);
        assert_eq!(f.reason, FindingReason::Missing, "{missing}");
        assert_eq!(report.allowed.len(), 10);
        let expected_sid = if use_actions.contains(&missing) {
            "Allow an external account to use this KMS key"
        } else {
            "Allow attachment of persistent resources"
        };
        assert_eq!(
            f.message,
            format!(
                "{missing} is not allowed for {ROLE}: add it to the Action list of the statement \"{expected_sid}\""
            )
        );
    }
}

#[test]
fn deny_by_sid_wins_over_allow() {
    let deny = format!(
        r#"{{"Sid": "NoDecryptForPlatform", "Effect": "Deny", "Principal": {{"AWS": "{ROLE}"}},
            "Action": "kms:Decrypt", "Resource": "*"}}"#
    );
    let p = policy(&[
        default_statement(OWNER),
        seed_statement(PROVIDER),
        attach_statement(
            ROLE,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
        deny,
    ]);
    let e = eval_as(&p, SESSION, "kms:Decrypt", &BTreeMap::new());
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert!(e.statements[1].applies && e.statements[3].applies);

    let report = check(&p);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].action, "kms:Decrypt");
    assert_eq!(
        report.findings[0].reason,
        FindingReason::DeniedBy {
            sid: Some("NoDecryptForPlatform".into()),
            index: 3
        }
    );
    assert!(report.findings[0].message.contains("NoDecryptForPlatform"));
    assert_eq!(report.allowed.len(), 10);
}

#[test]
fn wrong_account_id_is_reported_as_wrong_principal() {
    let wrong_role = format!("arn:aws:iam::{OTHER}:role/creator");
    let p = policy(&[
        default_statement(OWNER),
        seed_statement(OTHER),
        attach_statement(
            &wrong_role,
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            false,
        ),
    ]);
    let report = check(&p);
    assert!(!report.verdict_ok);
    assert!(report.allowed.is_empty());
    assert_eq!(report.findings.len(), 11);
    for f in &report.findings {
        assert!(
            matches!(f.reason, FindingReason::WrongPrincipal { index: 1 | 2, .. }),
            "{f:?}"
        );
        assert!(
            f.message.contains(&wrong_role) && f.message.contains(ROLE),
            "{}",
            f.message
        );
    }
    assert_eq!(
        report.findings[0].reason,
        FindingReason::WrongPrincipal {
            sid: Some("Allow an external account to use this KMS key".into()),
            index: 1
        }
    );
}

#[test]
fn wrong_role_name_is_reported_as_wrong_principal() {
    let p = policy(&[
        default_statement(OWNER),
        use_statement("arn:aws:iam::222222222222:role/Creator", &ALL_ACTIONS),
    ]);
    let report = check(&p);
    assert_eq!(report.findings.len(), 11);
    assert!(
        report
            .findings
            .iter()
            .all(|f| matches!(f.reason, FindingReason::WrongPrincipal { index: 1, .. }))
    );
}

#[test]
fn conditions_the_platform_call_cannot_meet_are_reported() {
    let conditional = format!(
        r#"{{"Sid": "Use", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}},
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
            "Condition": {{"StringEquals": {{"kms:EncryptionContext:organization": "someone-else"}}}}}}"#
    );
    let p = policy(&[default_statement(OWNER), conditional]);
    let report = check(&p);
    let decrypt = report
        .findings
        .iter()
        .find(|f| f.action == "kms:Decrypt")
        .unwrap();
    match &decrypt.reason {
        FindingReason::ConditionNeverSatisfied {
            sid,
            index,
            conditions,
        } => {
            assert_eq!(sid.as_deref(), Some("Use"));
            assert_eq!(*index, 1);
            assert_eq!(
                conditions,
                &[format!(
                    "StringEquals kms:EncryptionContext:organization: request has {ORG}, policy wants someone-else"
                )]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same condition with the right organization is met by the platform's real calls.
    let ok = format!(
        r#"{{"Sid": "Use", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}},
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
            "Condition": {{"StringEquals": {{"kms:EncryptionContext:organization": "{ORG}"}}}}}}"#
    );
    let report = check(&policy(&[default_statement(OWNER), ok]));
    assert!(report.allowed.contains(&"kms:Decrypt".to_string()));
    assert!(report.allowed.contains(&"kms:Encrypt".to_string()));
}

#[test]
fn checker_runs_as_a_role_session_for_a_role_with_a_path() {
    let path_role = "arn:aws:iam::222222222222:role/platform/creator";
    let p = policy(&[
        default_statement(OWNER),
        use_statement(path_role, &ALL_ACTIONS),
    ]);
    assert!(check_policy(&p, path_role, OWNER, KEY_ARN, &platform_requirements(ORG)).verdict_ok);
}

// ---------------------------------------------------------------- evaluator: principals

fn allow_for(principal_json: &str) -> KeyPolicy {
    policy(&[format!(
        r#"{{"Effect": "Allow", "Principal": {principal_json}, "Action": "kms:Decrypt", "Resource": "*"}}"#
    )])
}

fn allows(p: &KeyPolicy, caller_arn: &str) -> bool {
    eval_as(p, caller_arn, "kms:Decrypt", &BTreeMap::new()).decision == Decision::Allow
}

#[test]
fn role_principal_matches_role_and_its_sessions_including_paths() {
    let p = allow_for(r#"{"AWS": "arn:aws:iam::222222222222:role/creator"}"#);
    assert!(allows(&p, SESSION));
    assert!(allows(
        &p,
        "arn:aws:sts::222222222222:assumed-role/creator/other-session"
    ));
    assert!(allows(&p, ROLE));
    assert!(!allows(
        &p,
        "arn:aws:sts::222222222222:assumed-role/creator2/s"
    ));
    assert!(!allows(
        &p,
        "arn:aws:sts::333333333333:assumed-role/creator/s"
    ));
    assert!(!allows(&p, "arn:aws:iam::222222222222:user/creator"));
    assert!(!allows(&p, "arn:aws:iam::222222222222:root"));

    let with_path = allow_for(r#"{"AWS": "arn:aws:iam::222222222222:role/team/ops/creator"}"#);
    assert!(allows(&with_path, SESSION));
    assert!(allows(
        &with_path,
        "arn:aws:iam::222222222222:role/team/ops/creator"
    ));
    assert!(
        !allows(&with_path, ROLE),
        "the role ARN itself must match with its path"
    );
}

#[test]
fn account_principals_match_every_principal_of_that_account_only() {
    for principal in [
        r#"{"AWS": "222222222222"}"#,
        r#"{"AWS": "arn:aws:iam::222222222222:root"}"#,
    ] {
        let p = allow_for(principal);
        assert!(allows(&p, SESSION), "{principal}");
        assert!(
            allows(&p, "arn:aws:iam::222222222222:user/bob"),
            "{principal}"
        );
        assert!(allows(&p, "arn:aws:iam::222222222222:root"), "{principal}");
        // Cross-account: the root of one account never stands for a caller of another.
        assert!(!allows(&p, ADMIN), "{principal}");
        assert!(
            !allows(&p, "arn:aws:sts::111111111111:assumed-role/creator/s"),
            "{principal}"
        );
    }
}

#[test]
fn user_principal_matches_that_user_exactly() {
    let p = allow_for(r#"{"AWS": ["arn:aws:iam::111111111111:user/admin"]}"#);
    assert!(allows(&p, ADMIN));
    assert!(!allows(&p, "arn:aws:iam::111111111111:user/admin2"));
    assert!(!allows(&p, "arn:aws:iam::111111111111:root"));
}

#[test]
fn star_principals_match_everyone_but_wildcard_arns_and_services_match_nobody() {
    assert!(allows(&allow_for(r#""*""#), SESSION));
    assert!(allows(&allow_for(r#"{"AWS": "*"}"#), ADMIN));
    let wild = allow_for(r#"{"AWS": "arn:aws:iam::222222222222:role/*"}"#);
    assert!(!allows(&wild, SESSION));
    assert!(!allows(&wild, ROLE));
    let service = allow_for(r#"{"Service": "ec2.amazonaws.com"}"#);
    assert!(!allows(&service, SESSION));
}

#[test]
fn not_principal_applies_to_everyone_not_listed() {
    let p = policy(&[
        default_statement(OWNER),
        r#"{"Sid": "OnlyAdmin", "Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111111111111:user/admin"},
            "Action": "kms:ScheduleKeyDeletion", "Resource": "*"}"#
            .to_string(),
    ]);
    let none = BTreeMap::new();
    assert_eq!(
        eval_as(&p, ADMIN, "kms:ScheduleKeyDeletion", &none).decision,
        Decision::Allow
    );
    let bob = eval_as(
        &p,
        "arn:aws:iam::111111111111:user/bob",
        "kms:ScheduleKeyDeletion",
        &none,
    );
    assert_eq!(bob.decision, Decision::ExplicitDeny);
    assert!(bob.statements[1].principal_matches);
    assert_eq!(
        eval_as(
            &p,
            "arn:aws:iam::111111111111:user/bob",
            "kms:Decrypt",
            &none
        )
        .decision,
        Decision::Allow
    );
}

// ---------------------------------------------------------------- evaluator: actions, resources

fn allow_actions(actions_json: &str) -> KeyPolicy {
    policy(&[format!(
        r#"{{"Effect": "Allow", "Principal": "*", "Action": {actions_json}, "Resource": "*"}}"#
    )])
}

fn action_allowed(p: &KeyPolicy, action: &str) -> bool {
    eval_as(p, ADMIN, action, &BTreeMap::new()).decision == Decision::Allow
}

#[test]
fn wildcard_and_case_insensitive_actions() {
    let all_kms = allow_actions(r#""kms:*""#);
    assert!(action_allowed(&all_kms, "kms:Decrypt"));
    assert!(action_allowed(&all_kms, "KMS:decrypt"));
    assert!(!action_allowed(&all_kms, "s3:GetObject"));

    let reencrypt = allow_actions(r#"["kms:ReEncrypt*", "kms:GenerateDataKey*"]"#);
    assert!(action_allowed(&reencrypt, "kms:ReEncryptFrom"));
    assert!(action_allowed(&reencrypt, "kms:ReEncryptTo"));
    assert!(action_allowed(&reencrypt, "kms:GenerateDataKey"));
    assert!(action_allowed(
        &reencrypt,
        "kms:GenerateDataKeyWithoutPlaintext"
    ));
    assert!(!action_allowed(&reencrypt, "kms:Decrypt"));

    assert!(action_allowed(&allow_actions(r#""*""#), "kms:PutKeyPolicy"));
    let single = allow_actions(r#""kms:?ecrypt""#);
    assert!(action_allowed(&single, "kms:Decrypt"));
    assert!(!action_allowed(&single, "kms:Encrypt"));
    let lower = allow_actions(r#""kms:decrypt""#);
    assert!(action_allowed(&lower, "kms:Decrypt"));
}

#[test]
fn not_action_allows_everything_else() {
    let p = policy(&[r#"{"Effect": "Allow", "Principal": "*", "NotAction": ["kms:ScheduleKeyDeletion", "kms:Disable*"], "Resource": "*"}"#.to_string()]);
    assert!(action_allowed(&p, "kms:Decrypt"));
    assert!(!action_allowed(&p, "kms:ScheduleKeyDeletion"));
    assert!(!action_allowed(&p, "kms:DisableKey"));
    let e = eval_as(&p, ADMIN, "kms:DisableKey", &BTreeMap::new());
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert!(!e.statements[0].action_matches);
}

#[test]
fn resources_match_the_key_arn_star_or_wildcards() {
    let with = |res: &str| {
        policy(&[format!(
            r#"{{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": {res}}}"#
        )])
    };
    assert!(action_allowed(
        &with(&format!("\"{KEY_ARN}\"")),
        "kms:Decrypt"
    ));
    assert!(action_allowed(
        &with(r#""arn:aws:kms:us-east-2:111111111111:key/*""#),
        "kms:Decrypt"
    ));
    assert!(!action_allowed(
        &with(r#""arn:aws:kms:us-east-2:111111111111:key/other""#),
        "kms:Decrypt"
    ));
    assert!(!action_allowed(
        &with(r#""arn:aws:kms:eu-west-1:*""#),
        "kms:Decrypt"
    ));
    let not_res = policy(&[r#"{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "NotResource": "arn:aws:kms:eu-west-1:*"}"#.to_string()]);
    assert!(action_allowed(&not_res, "kms:Decrypt"));
}

// ---------------------------------------------------------------- evaluator: conditions

/// Allow-everyone Decrypt under `condition`; the caller is the platform's role session.
fn allow_under(condition: &str) -> KeyPolicy {
    policy(&[format!(
        r#"{{"Sid": "Cond", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {condition}}}"#
    )])
}

fn allowed_with(condition: &str, context: &[(&str, &[&str])]) -> bool {
    eval_as(
        &allow_under(condition),
        SESSION,
        "kms:Decrypt",
        &ctx(context),
    )
    .decision
        == Decision::Allow
}

/// Allow everything, then Deny Decrypt under `condition`.
fn denied_with(condition: &str, context: &[(&str, &[&str])]) -> Evaluation {
    let p = policy(&[
        r#"{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}"#.to_string(),
        format!(
            r#"{{"Sid": "DenyCond", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                "Condition": {condition}}}"#
        ),
    ]);
    eval_as(&p, SESSION, "kms:Decrypt", &ctx(context))
}

#[test]
fn string_equals_reports_what_differed() {
    let cond = r#"{"StringEquals": {"kms:CallerAccount": "111111111111"}}"#;
    let e = eval_as(&allow_under(cond), SESSION, "kms:Decrypt", &BTreeMap::new());
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(
        e.statements[0].failed_conditions,
        ["StringEquals kms:CallerAccount: request has 222222222222, policy wants 111111111111"]
    );
    assert!(e.statements[0].principal_matches && !e.statements[0].applies);
    assert!(allowed_with(
        r#"{"StringEquals": {"kms:CallerAccount": ["111111111111", "222222222222"]}}"#,
        &[]
    ));
    // Condition key names are case-insensitive; derived keys cannot be forged by the caller.
    assert!(allowed_with(
        r#"{"StringEquals": {"KMS:CALLERACCOUNT": "222222222222"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"StringEquals": {"kms:CallerAccount": "111111111111"}}"#,
        &[("kms:CallerAccount", &["111111111111"])]
    ));
}

#[test]
fn string_operator_family() {
    let via = &[("kms:ViaService", &["ec2.us-east-2.amazonaws.com"][..])];
    assert!(!allowed_with(
        r#"{"StringEquals": {"kms:ViaService": "EC2.us-east-2.amazonaws.com"}}"#,
        via
    ));
    assert!(allowed_with(
        r#"{"StringEqualsIgnoreCase": {"kms:ViaService": "EC2.us-east-2.amazonaws.com"}}"#,
        via
    ));
    assert!(!allowed_with(
        r#"{"StringNotEqualsIgnoreCase": {"kms:ViaService": "EC2.US-EAST-2.amazonaws.com"}}"#,
        via
    ));
    assert!(allowed_with(
        r#"{"StringNotEqualsIgnoreCase": {"kms:ViaService": "rds.us-east-2.amazonaws.com"}}"#,
        via
    ));
    assert!(allowed_with(
        r#"{"StringNotEquals": {"kms:ViaService": "rds.us-east-2.amazonaws.com"}}"#,
        via
    ));
    assert!(!allowed_with(
        r#"{"StringNotEquals": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#,
        via
    ));
    assert!(allowed_with(
        r#"{"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}"#,
        via
    ));
    assert!(!allowed_with(
        r#"{"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}"#,
        via
    ));
    assert!(allowed_with(
        r#"{"StringNotLike": {"kms:ViaService": "rds.*"}}"#,
        via
    ));
    assert!(!allowed_with(
        r#"{"StringNotLike": {"kms:ViaService": "ec2.*"}}"#,
        via
    ));
}

#[test]
fn missing_known_key_follows_aws() {
    // kms:ViaService absent: positive operators fail, negated ones and IfExists pass.
    assert!(!allowed_with(
        r#"{"StringEquals": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"StringLike": {"kms:ViaService": "*"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"StringNotEquals": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"StringNotLike": {"kms:ViaService": "*"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"ArnNotEquals": {"kms:GranteePrincipal": "arn:aws:iam::1:role/x"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"StringEqualsIfExists": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"StringEqualsIfExists": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#,
        &[("kms:ViaService", &["rds.us-east-2.amazonaws.com"])]
    ));
    assert!(!allowed_with(
        r#"{"Bool": {"kms:GrantIsForAWSResource": "true"}}"#,
        &[]
    ));
    let e = eval_as(
        &allow_under(r#"{"StringEquals": {"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}"#),
        SESSION,
        "kms:Decrypt",
        &BTreeMap::new(),
    );
    assert!(e.statements[0].failed_conditions[0].contains("no value"));
}

#[test]
fn bool_operator_accepts_strings_and_json_booleans() {
    let t = &[("kms:GrantIsForAWSResource", &["true"][..])];
    let f = &[("kms:GrantIsForAWSResource", &["false"][..])];
    assert!(allowed_with(
        r#"{"Bool": {"kms:GrantIsForAWSResource": "true"}}"#,
        t
    ));
    assert!(allowed_with(
        r#"{"Bool": {"kms:GrantIsForAWSResource": true}}"#,
        t
    ));
    assert!(!allowed_with(
        r#"{"Bool": {"kms:GrantIsForAWSResource": "true"}}"#,
        f
    ));
    assert!(allowed_with(
        r#"{"Bool": {"kms:GrantIsForAWSResource": "false"}}"#,
        f
    ));
    assert!(allowed_with(
        r#"{"BoolIfExists": {"kms:GrantIsForAWSResource": "true"}}"#,
        &[]
    ));
}

#[test]
fn arn_operator_family_uses_the_role_arn_of_a_session() {
    assert!(allowed_with(
        r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::222222222222:role/creator"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/creator"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/admin*"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:sts::222222222222:assumed-role/creator/keyplane-1"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::222222222222:role/admin"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::222222222222:role/*"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"StringEquals": {"aws:PrincipalAccount": "222222222222", "aws:PrincipalType": "AssumedRole"}}"#,
        &[]
    ));
}

#[test]
fn numeric_operator_family() {
    let v = &[("kms:EncryptionContext:version", &["3"][..])];
    let ok = |op: &str, n: &str| {
        allowed_with(
            &format!(r#"{{"{op}": {{"kms:EncryptionContext:version": {n}}}}}"#),
            v,
        )
    };
    assert!(ok("NumericEquals", "3"));
    assert!(ok("NumericEquals", "\"3.0\""));
    assert!(!ok("NumericEquals", "4"));
    assert!(ok("NumericNotEquals", "4"));
    assert!(!ok("NumericNotEquals", "3"));
    assert!(ok("NumericLessThan", "4"));
    assert!(!ok("NumericLessThan", "3"));
    assert!(ok("NumericLessThanEquals", "3"));
    assert!(ok("NumericGreaterThan", "2"));
    assert!(!ok("NumericGreaterThan", "3"));
    assert!(ok("NumericGreaterThanEquals", "3"));
    assert!(!ok("NumericGreaterThanEquals", "4"));
    assert!(!allowed_with(
        r#"{"NumericEquals": {"kms:EncryptionContext:version": 3}}"#,
        &[]
    ));
}

#[test]
fn null_tests_presence() {
    let org = &[("kms:EncryptionContext:org", &["o1"][..])];
    assert!(allowed_with(
        r#"{"Null": {"kms:EncryptionContext:org": "false"}}"#,
        org
    ));
    assert!(!allowed_with(
        r#"{"Null": {"kms:EncryptionContext:org": "false"}}"#,
        &[]
    ));
    assert!(allowed_with(
        r#"{"Null": {"kms:EncryptionContext:org": "true"}}"#,
        &[]
    ));
    assert!(!allowed_with(
        r#"{"Null": {"kms:EncryptionContext:org": true}}"#,
        org
    ));
}

/// AWS: "the condition key, which consists of the kms:EncryptionContext: prefix and the
/// context-key replacement, is not case sensitive"; the value's case follows the operator.
#[test]
fn encryption_context_key_is_case_insensitive_and_value_follows_the_operator() {
    let org = &[("kms:EncryptionContext:org", &["o1"][..])];
    assert!(allowed_with(
        r#"{"StringEquals": {"kms:EncryptionContext:org": "o1"}}"#,
        org
    ));
    assert!(allowed_with(
        r#"{"StringEquals": {"KMS:encryptioncontext:org": "o1"}}"#,
        org
    ));
    assert!(allowed_with(
        r#"{"StringEquals": {"kms:EncryptionContext:Org": "o1"}}"#,
        org
    ));
    assert!(allowed_with(
        r#"{"StringEquals": {"kms:EncryptionContext:org": "o1"}}"#,
        &[("kms:EncryptionContext:ORG", &["o1"][..])]
    ));
    assert!(!allowed_with(
        r#"{"StringEquals": {"kms:EncryptionContext:org": "O1"}}"#,
        org
    ));
    assert!(allowed_with(
        r#"{"StringEqualsIgnoreCase": {"kms:EncryptionContext:org": "O1"}}"#,
        org
    ));
}

/// kms:EncryptionContextKeys is how a policy requires a context key's exact case: its values,
/// derived from the request, keep the case the request used.
#[test]
fn encryption_context_keys_keep_the_requests_case() {
    let any = r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "AppName"}}"#;
    assert!(allowed_with(
        any,
        &[("kms:EncryptionContext:AppName", &["x"][..])]
    ));
    assert!(!allowed_with(
        any,
        &[("kms:EncryptionContext:appname", &["x"][..])]
    ));
    assert!(allowed_with(
        r#"{"ForAnyValue:StringEqualsIgnoreCase": {"kms:EncryptionContextKeys": "AppName"}}"#,
        &[("kms:EncryptionContext:appname", &["x"][..])]
    ));
}

/// AWS refuses ForAllValues on kms:EncryptionContext:<key> at PutKeyPolicy
/// (OverlyPermissiveCondition): it would match requests without the pair.
#[test]
fn for_all_values_on_an_encryption_context_key_is_malformed() {
    for op in ["ForAllValues:StringEquals", "forallvalues:StringLike"] {
        let text = policy_text(&[format!(
            r#"{{"Sid": "s", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:Decrypt",
                "Resource": "*", "Condition": {{"{op}": {{"kms:EncryptionContext:organization": "{ORG}"}}}}}}"#
        )]);
        let m = malformed(&text);
        assert!(
            m.contains("OverlyPermissiveCondition:EncryptionContext:"),
            "{m}"
        );
        assert!(m.contains("remove ForAllValues"), "{m}");
    }
    // ForAnyValue is discouraged but accepted, and ForAllValues on the multi-valued key list
    // is the documented way to forbid other keys.
    for cond in [
        r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContext:organization": "o"}}"#,
        r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["organization"]}}"#,
    ] {
        allow_under(cond);
    }
}

#[test]
fn for_any_value_and_for_all_values() {
    let keys = |v: &'static [&'static str]| [("kms:EncryptionContextKeys", v)];
    let any = r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["org", "db"]}}"#;
    assert!(allowed_with(any, &keys(&["org"])));
    assert!(allowed_with(any, &keys(&["x", "db"])));
    assert!(!allowed_with(any, &keys(&["x"])));
    assert!(!allowed_with(any, &[]));
    assert!(allowed_with(
        r#"{"ForAnyValue:StringEqualsIfExists": {"kms:EncryptionContextKeys": "org"}}"#,
        &[]
    ));
    // ForAnyValue with a negated operator: some value is outside the list.
    let any_not =
        r#"{"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": ["org", "db"]}}"#;
    assert!(allowed_with(any_not, &keys(&["org", "x"])));
    assert!(!allowed_with(any_not, &keys(&["org", "db"])));

    let ops = |v: &'static [&'static str]| [("kms:GrantOperations", v)];
    let all = r#"{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}}"#;
    assert!(allowed_with(all, &ops(&["Decrypt"])));
    assert!(allowed_with(all, &ops(&["Decrypt", "Encrypt"])));
    assert!(!allowed_with(all, &ops(&["Decrypt", "CreateGrant"])));
    assert!(
        allowed_with(all, &[]),
        "ForAllValues is vacuously true for a missing key"
    );
    let all_like = r#"{"ForAllValues:StringLike": {"kms:EncryptionContextKeys": "org*"}}"#;
    assert!(allowed_with(all_like, &keys(&["org", "organization"])));
    assert!(!allowed_with(all_like, &keys(&["org", "db"])));
    // Encryption context keys are derived from the context when the caller does not pass them.
    assert!(allowed_with(any, &[("kms:EncryptionContext:db", &["d"])]));
}

#[test]
fn condition_blocks_are_anded_and_values_ored() {
    let cond = r#"{"StringEquals": {"kms:ViaService": ["ec2.us-east-2.amazonaws.com", "rds.us-east-2.amazonaws.com"],
                                    "kms:EncryptionContext:org": "o1"},
                   "Bool": {"kms:GrantIsForAWSResource": "true"}}"#;
    let full: &[(&str, &[&str])] = &[
        ("kms:ViaService", &["rds.us-east-2.amazonaws.com"]),
        ("kms:EncryptionContext:org", &["o1"]),
        ("kms:GrantIsForAWSResource", &["true"]),
    ];
    assert!(allowed_with(cond, full));
    let e = eval_as(&allow_under(cond), SESSION, "kms:Decrypt", &ctx(&full[..2]));
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert_eq!(e.statements[0].failed_conditions.len(), 1);
    assert!(e.statements[0].failed_conditions[0].starts_with("Bool kms:GrantIsForAWSResource"));
}

#[test]
fn unknown_condition_key_fails_closed_in_allow_and_in_deny() {
    let cond = r#"{"StringEquals": {"aws:SourceVpc": "vpc-123"}}"#;
    let ctx_with = &[("aws:SourceVpc", &["vpc-123"][..])];
    let e = eval_as(&allow_under(cond), SESSION, "kms:Decrypt", &ctx(ctx_with));
    assert_eq!(
        e.decision,
        Decision::ImplicitDeny,
        "unknown key must not satisfy an Allow"
    );
    assert!(e.statements[0].failed_conditions[0].contains("unknown condition key"));
    // Even a negated operator, which a missing key would satisfy, fails closed in an Allow.
    assert!(!allowed_with(
        r#"{"StringNotEquals": {"aws:SourceVpc": "vpc-123"}}"#,
        &[]
    ));

    let d = denied_with(
        r#"{"StringNotEquals": {"aws:SourceVpc": "vpc-123"}}"#,
        ctx_with,
    );
    assert_eq!(
        d.decision,
        Decision::ExplicitDeny,
        "unknown key must let a Deny apply"
    );
    assert!(d.statements[1].applies);
    assert!(d.statements[1].notes[0].contains("unknown condition key"));
    // A known key in a Deny evaluates normally.
    let d = denied_with(
        r#"{"StringNotEquals": {"kms:CallerAccount": "222222222222"}}"#,
        &[],
    );
    assert_eq!(d.decision, Decision::Allow);
    let d = denied_with(
        r#"{"StringEquals": {"kms:CallerAccount": "222222222222"}}"#,
        &[],
    );
    assert_eq!(d.decision, Decision::ExplicitDeny);
    // Operators AWS knows but this evaluator cannot evaluate also fail closed.
    assert!(!allowed_with(
        r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#,
        &[]
    ));
    assert_eq!(
        denied_with(
            r#"{"DateGreaterThan": {"kms:CallerAccount": "2020-01-01T00:00:00Z"}}"#,
            &[]
        )
        .decision,
        Decision::ExplicitDeny
    );
}

#[test]
fn trace_records_every_statement() {
    let p = full_policy();
    let e = eval_as(
        &p,
        SESSION,
        "kms:CreateGrant",
        &ctx(&[("kms:GrantIsForAWSResource", &["true"])]),
    );
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.statements.len(), 3);
    let t = &e.statements[0];
    assert_eq!((t.index, t.effect), (0, Effect::Allow));
    assert_eq!(t.sid.as_deref(), Some("Enable IAM User Permissions"));
    assert!(!t.principal_matches && t.action_matches && t.resource_matches && !t.applies);
    assert!(!e.statements[1].action_matches);
    assert!(e.statements[2].applies);
    assert_eq!(e.deciding_statement().map(|t| t.index), Some(2));
}

// ---------------------------------------------------------------- parsing

fn malformed(text: &str) -> String {
    match KeyPolicy::parse(text) {
        Err(PolicyError::Malformed(msg)) => msg,
        other => panic!("expected Malformed for {text}, got {other:?}"),
    }
}

#[test]
fn parse_accepts_statement_object_and_string_or_array_values() {
    let p = KeyPolicy::parse(
        r#"{"Statement": {"Sid": "one", "Effect": "Allow", "Principal": {"AWS": ["111111111111", "arn:aws:iam::222222222222:role/creator"]},
            "Action": "kms:Decrypt", "Resource": ["*"]}}"#,
    )
    .unwrap();
    assert_eq!(p.version, None);
    assert_eq!(p.statements.len(), 1);
    assert_eq!(p.statements[0].sid.as_deref(), Some("one"));
    assert_eq!(p.statements[0].effect, Effect::Allow);
    let full = full_policy();
    assert_eq!(full.version.as_deref(), Some("2012-10-17"));
    assert_eq!(full.id.as_deref(), Some("key-consolepolicy-3"));
    assert_eq!(full.statements.len(), 3);
}

#[test]
fn parse_rejects_what_put_key_policy_rejects() {
    let st = |body: &str| format!(r#"{{"Statement": [{body}]}}"#);
    let good = r#""Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*""#;

    assert!(malformed("{not json").contains("not valid JSON"));
    assert!(malformed("[1, 2]").contains("JSON object"));
    assert!(malformed(r#"{"Version": "2012-10-17"}"#).contains("no \"Statement\""));
    assert!(malformed(r#"{"Statement": []}"#).contains("empty"));
    assert!(malformed(r#"{"Statement": "x"}"#).contains("\"Statement\""));

    let m = malformed(&st(
        r#"{"Sid": "s1", "Effect": "Permit", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}"#,
    ));
    assert!(
        m.contains("statement 0 (Sid \"s1\")") && m.contains("Effect"),
        "{m}"
    );
    assert!(
        malformed(&st(
            r#"{"Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}"#
        ))
        .contains("Effect")
    );

    let m = malformed(&st(&format!(
        r#"{{{good}, "Condition": {{"StringEqualz": {{"kms:CallerAccount": "1"}}}}}}"#
    )));
    assert!(
        m.contains("unknown condition operator \"StringEqualz\""),
        "{m}"
    );
    assert!(
        malformed(&st(&format!(
            r#"{{{good}, "Condition": {{"NullIfExists": {{"kms:ViaService": "true"}}}}}}"#
        )))
        .contains("NullIfExists")
    );
    assert!(malformed(&st(&format!(r#"{{{good}, "Condition": {{"NumericLessThan": {{"kms:EncryptionContext:v": "abc"}}}}}}"#))).contains("not a number"));
    assert!(
        malformed(&st(&format!(
            r#"{{{good}, "Condition": {{"Bool": {{"kms:GrantIsForAWSResource": "yes"}}}}}}"#
        )))
        .contains("true or false")
    );

    let m = malformed(&st(
        r#"{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "NotAction": "kms:Encrypt", "Resource": "*"}"#,
    ));
    assert!(
        m.contains("statement 0") && m.contains("\"Action\" and \"NotAction\""),
        "{m}"
    );
    assert!(
        malformed(&st(
            r#"{"Effect": "Allow", "Principal": "*", "Resource": "*"}"#
        ))
        .contains("Action")
    );
    assert!(
        malformed(&st(
            r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}"#
        ))
        .contains("Principal")
    );
    assert!(
        malformed(&st(r#"{"Effect": "Allow", "Principal": "*", "NotPrincipal": "*", "Action": "kms:Decrypt", "Resource": "*"}"#))
            .contains("\"Principal\" and \"NotPrincipal\"")
    );
    assert!(
        malformed(&st(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt"}"#
        ))
        .contains("Resource")
    );
    assert!(
        malformed(&st(&format!(r#"{{{good}, "Extra": 1}}"#))).contains("unknown element \"Extra\"")
    );
    assert!(
        malformed(&st(
            r#"{"Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*"}"#
        ))
        .contains("empty")
    );
    assert!(
        malformed(&st(
            r#"{"Effect": "Allow", "Principal": "*", "Action": "Decrypt", "Resource": "*"}"#
        ))
        .contains("not an action")
    );
    assert!(malformed(&st(r#"{"Effect": "Allow", "Principal": {"Group": "x"}, "Action": "kms:Decrypt", "Resource": "*"}"#)).contains("principal type"));
    assert!(malformed(&st(r#"{"Effect": "Allow", "Principal": "arn:aws:iam::1:root", "Action": "kms:Decrypt", "Resource": "*"}"#)).contains("Principal"));
    assert!(malformed(&st(r#"{"Effect": "Allow", "Principal": {"AWS": "creator"}, "Action": "kms:Decrypt", "Resource": "*"}"#)).contains("not a valid principal"));
    assert!(
        malformed(&format!(
            r#"{{"Version": "2020-01-01", "Statement": [{{{good}}}]}}"#
        ))
        .contains("Version")
    );

    let m = malformed(&format!(
        r#"{{"Statement": [{{"Sid": "dup", {good}}}, {{"Sid": "other", {good}}}, {{"Sid": "dup", {good}}}]}}"#
    ));
    assert!(
        m.contains("statement 2") && m.contains("\"dup\"") && m.contains("statement 0"),
        "{m}"
    );
}

#[test]
fn parse_enforces_the_32_kib_limit() {
    let filler = |n: usize| {
        let base = r#"{"Statement": [{"Sid": "", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]}"#;
        base.replace(
            "\"Sid\": \"\"",
            &format!("\"Sid\": \"{}\"", "x".repeat(n - base.len())),
        )
    };
    let at_limit = filler(32_768);
    assert_eq!(at_limit.len(), 32_768);
    assert!(KeyPolicy::parse(&at_limit).is_ok());
    let over = filler(32_769);
    assert!(malformed(&over).contains("32768"));
}

#[test]
fn default_policy_is_aws_text_and_gives_the_account_full_access() {
    let text = KeyPolicy::default_policy_json(OWNER);
    assert_eq!(
        text,
        "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::111111111111:root\"\n    },\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}"
    );
    let p = KeyPolicy::parse(&text).unwrap();
    assert_eq!(p.version.as_deref(), Some("2012-10-17"));
    assert_eq!(p.id.as_deref(), Some("key-default-1"));
    assert_eq!(p.statements.len(), 1);
    assert_eq!(
        p.statements[0].sid.as_deref(),
        Some("Enable IAM User Permissions")
    );
    assert!(allows(&p, ADMIN));
    assert!(allows(&p, "arn:aws:iam::111111111111:root"));
    assert!(!allows(&p, SESSION));
}

// ---------------------------------------------------------------- lockout

#[test]
fn lockout_check_requires_put_key_policy_for_the_caller() {
    let admin = caller(ADMIN);
    let default = KeyPolicy::parse(&KeyPolicy::default_policy_json(OWNER)).unwrap();
    assert_eq!(lockout_check(&default, &admin, KEY_ARN, OWNER), Ok(()));
    assert_eq!(
        lockout_check(&full_policy(), &admin, KEY_ARN, OWNER),
        Ok(())
    );

    // Only the platform's statement: the owner could never change the policy again.
    let only_seed = policy(&[seed_statement(PROVIDER)]);
    let err = lockout_check(&only_seed, &admin, KEY_ARN, OWNER).unwrap_err();
    assert_eq!(
        err,
        PolicyError::Lockout {
            caller: ADMIN.to_string()
        }
    );
    assert!(
        err.to_string().contains(
            "The new key policy will not allow you to update the key policy in the future."
        )
    );

    let deny_put = policy(&[
        default_statement(OWNER),
        r#"{"Sid": "Freeze", "Effect": "Deny", "Principal": "*", "Action": "kms:PutKeyPolicy", "Resource": "*"}"#
            .to_string(),
    ]);
    assert!(matches!(
        lockout_check(&deny_put, &admin, KEY_ARN, OWNER),
        Err(PolicyError::Lockout { .. })
    ));

    // A condition on context the check does not carry also locks the caller out.
    let needs_context = policy(&[format!(
        r#"{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::{OWNER}:root"}}, "Action": "kms:*", "Resource": "*",
            "Condition": {{"StringEquals": {{"kms:ViaService": "ec2.us-east-2.amazonaws.com"}}}}}}"#
    )]);
    assert!(lockout_check(&needs_context, &admin, KEY_ARN, OWNER).is_err());
}
