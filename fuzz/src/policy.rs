//! The key-policy parser and evaluator: any text either is refused as malformed or parses into
//! a policy that evaluates every request consistently, and the platform checker accounts for
//! every requirement.

use std::collections::BTreeMap;

use keyplane_core::policy::{
    Caller, Decision, Effect, KeyPolicy, PrincipalEntry, Request, check_policy, evaluate,
    lockout_check, platform_requirements,
};

const KEY_ARN: &str = "arn:aws:kms:us-east-2:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const KEY_ACCOUNT: &str = "111111111111";
const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const ORG: &str = "8a1b2c3d-0000-4000-8000-000000000001";

const CALLERS: &[&str] = &[
    "arn:aws:sts::222222222222:assumed-role/creator/keyplane",
    "arn:aws:iam::111111111111:root",
    "arn:aws:iam::111111111111:user/admin",
    "arn:aws:iam::333333333333:user/other",
    "arn:aws:sts::222222222222:federated-user/f",
];

const ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
    "kms:CreateGrant",
    "kms:PutKeyPolicy",
    "kms:DescribeKey",
];

pub fn check(text: &str) {
    let Ok(policy) = KeyPolicy::parse(text) else {
        return;
    };
    assert!(!policy.statements.is_empty());

    // Requests built from what the policy names, so the fuzzer steers them too.
    let mut callers: Vec<Caller> = CALLERS.iter().filter_map(|a| Caller::from_arn(a)).collect();
    let mut actions: Vec<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
    let mut contexts: Vec<BTreeMap<String, Vec<String>>> = vec![BTreeMap::new()];
    let mut all_conditions = BTreeMap::new();
    for st in &policy.statements {
        for e in &st.principal.entries {
            if let PrincipalEntry::Aws(p) = e
                && let Some(c) = Caller::from_arn(p)
            {
                callers.push(c);
            }
        }
        actions.extend(st.action.patterns.iter().take(4).cloned());
        for c in st.conditions.iter().take(8) {
            contexts.push(BTreeMap::from([(c.key.clone(), c.values.clone())]));
            contexts.push(BTreeMap::from([(c.key.clone(), vec!["x".to_string()])]));
            all_conditions.insert(c.key.clone(), c.values.clone());
        }
    }
    contexts.push(all_conditions);
    callers.truncate(8);
    actions.truncate(12);
    contexts.truncate(12);

    for caller in &callers {
        for action in &actions {
            for context in &contexts {
                let eval = evaluate(
                    &policy,
                    &Request {
                        action,
                        caller,
                        key_arn: KEY_ARN,
                        key_account: KEY_ACCOUNT,
                        context,
                    },
                );
                assert_eq!(eval.statements.len(), policy.statements.len());
                for t in &eval.statements {
                    assert_eq!(
                        t.applies,
                        t.principal_matches
                            && t.action_matches
                            && t.resource_matches
                            && t.failed_conditions.is_empty(),
                        "{t:?}"
                    );
                }
                let applies =
                    |e: Effect| eval.statements.iter().any(|t| t.applies && t.effect == e);
                let want = if applies(Effect::Deny) {
                    Decision::ExplicitDeny
                } else if applies(Effect::Allow) {
                    Decision::Allow
                } else {
                    Decision::ImplicitDeny
                };
                assert_eq!(eval.decision, want);
                assert_eq!(
                    eval.deciding_statement().is_some(),
                    eval.decision != Decision::ImplicitDeny
                );
            }
        }
        let _ = lockout_check(&policy, caller, KEY_ARN, KEY_ACCOUNT);
    }

    let reqs = platform_requirements(ORG);
    let report = check_policy(&policy, ROLE, KEY_ACCOUNT, KEY_ARN, &reqs);
    assert_eq!(report.allowed.len() + report.findings.len(), reqs.len());
    assert_eq!(report.verdict_ok, report.findings.is_empty());
    assert_eq!(
        report.bound_to_organization,
        report.organization_findings.is_empty()
    );
    for f in report.findings.iter().chain(&report.organization_findings) {
        assert!(!f.message.is_empty());
    }
    for f in &report.organization_findings {
        assert!(report.allowed.contains(&f.action), "{f:?}");
    }
}
