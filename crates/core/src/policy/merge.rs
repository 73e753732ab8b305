//! Merging keyplane's own grants into a customer's access policy, in the provider's own format,
//! so the customer never edits a policy by hand.
//!
//! A merge is idempotent and touches nothing but keyplane's entries: each is found by the name
//! it carries (a statement's `Sid` for AWS, a binding's role for GCP, an assignment's principal,
//! role and scope for Azure, a rule's path for OpenBao) and updated where it stands, or appended
//! when missing; every other entry, the entries' order and any element this code does not know
//! stay as they were. Each key service's document format ([`PolicyFormat`]) is one
//! [`PolicyMerge`] implementation; [`policy_merge`] picks it.

mod azure;
mod gcp;
mod openbao;

use serde::Serialize;

pub use azure::AzureRoleAssignmentsMerge;
pub use gcp::GcpIamPolicyMerge;
pub use openbao::OpenbaoPolicyMerge;

use super::PolicyError;
use super::ordered_json::OrderedJson;
use crate::Provider;

/// One provider's policy document format.
pub trait PolicyMerge: Send + Sync {
    /// What the provider calls the document, for messages ("key policy", "IAM policy").
    fn document_name(&self) -> &'static str;

    /// Merges `ours` — keyplane's entries as the API's policy helper gives them, each naming
    /// itself — into the document `current` (the provider's own text), and returns the whole
    /// document, ready to be put back, with what happened to each of keyplane's entries.
    fn merge(&self, current: &str, ours: &[serde_json::Value])
    -> Result<MergedPolicy, PolicyError>;
}

/// A merged document and, in the order of keyplane's entries, what the merge did to each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedPolicy {
    pub document: String,
    pub changes: Vec<MergeChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergeChange {
    /// The entry's name: the statement's Sid (AWS), the binding's role (GCP), the assignment
    /// as role, principal and scope (Azure), the rule's path (OpenBao).
    pub name: String,
    pub outcome: MergeOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The document had no entry of that name; it was appended.
    Added,
    /// The entry was there but granted something else; keyplane's elements were set in place.
    Updated,
    /// The entry already granted exactly this; it was left as written.
    Unchanged,
}

impl MergedPolicy {
    /// Whether the document differs from the one merged into.
    pub fn changed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.outcome != MergeOutcome::Unchanged)
    }
}

/// A key service's access-policy document format: what `keyplane key policy --merge-into`
/// reads and prints. One per key service (aws, gcp, azure, openbao), not per cloud: an OpenBao
/// key serves a region of any cloud, and its policy is HCL whatever the cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyFormat {
    /// An AWS KMS key policy (JSON, statements by `Sid`).
    AwsKeyPolicy,
    /// A Google Cloud IAM policy as `getIamPolicy` returns it (bindings by role).
    GcpIamPolicy,
    /// Azure role assignments as `az role assignment list` (or the ARM list) prints them.
    AzureRoleAssignments,
    /// An OpenBao / Vault ACL policy, HCL or its JSON form (path rules by path).
    OpenbaoPolicy,
}

impl PolicyFormat {
    pub const ALL: [PolicyFormat; 4] = [
        PolicyFormat::AwsKeyPolicy,
        PolicyFormat::GcpIamPolicy,
        PolicyFormat::AzureRoleAssignments,
        PolicyFormat::OpenbaoPolicy,
    ];

    /// The format of a provider's key service.
    pub fn of_cloud_kms(provider: Provider) -> PolicyFormat {
        match provider {
            Provider::Aws => PolicyFormat::AwsKeyPolicy,
            Provider::Gcp => PolicyFormat::GcpIamPolicy,
            Provider::Azure => PolicyFormat::AzureRoleAssignments,
            Provider::Openbao => PolicyFormat::OpenbaoPolicy,
        }
    }
}

/// The merge for documents of `format`.
pub fn policy_merge(format: PolicyFormat) -> &'static dyn PolicyMerge {
    match format {
        PolicyFormat::AwsKeyPolicy => &AwsKeyPolicyMerge,
        PolicyFormat::GcpIamPolicy => &GcpIamPolicyMerge,
        PolicyFormat::AzureRoleAssignments => &AzureRoleAssignmentsMerge,
        PolicyFormat::OpenbaoPolicy => &OpenbaoPolicyMerge,
    }
}

/// AWS KMS key policies: keyplane's statements are matched by `Sid`.
pub struct AwsKeyPolicyMerge;

/// The order IAM's documentation and console write a statement's elements in; keyplane's
/// statements are printed in it (the API's JSON has its keys sorted).
const STATEMENT_ORDER: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// Elements that cannot stand beside each other in one statement: setting one of keyplane's
/// removes its opposite from the customer's statement, which PutKeyPolicy would refuse.
const OPPOSITES: [(&str, &str); 3] = [
    ("Principal", "NotPrincipal"),
    ("Action", "NotAction"),
    ("Resource", "NotResource"),
];

pub(super) fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

/// keyplane's statement as a list of members in IAM's order, with its Sid.
fn canonical_statement(
    index: usize,
    v: &serde_json::Value,
) -> Result<(String, Vec<(String, OrderedJson)>), PolicyError> {
    let OrderedJson::Object(mut members) = OrderedJson::from(v) else {
        return Err(malformed(format!(
            "keyplane's statement {index} is not a JSON object"
        )));
    };
    let sid = members
        .iter()
        .find(|(k, _)| k == "Sid")
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| malformed(format!("keyplane's statement {index} has no Sid")))?;
    let rank = |k: &str| {
        STATEMENT_ORDER
            .iter()
            .position(|o| *o == k)
            .unwrap_or(STATEMENT_ORDER.len())
    };
    members.sort_by_key(|(k, _)| rank(k));
    Ok((sid, members))
}

/// Sets keyplane's members on the customer's statement where they stand; members keyplane does
/// not set (a `Condition` the customer added, unknown elements) stay.
fn update_in_place(
    existing: &mut Vec<(String, OrderedJson)>,
    ours: &[(String, OrderedJson)],
) -> MergeOutcome {
    let mut outcome = MergeOutcome::Unchanged;
    for (key, value) in ours {
        for (a, b) in OPPOSITES {
            let opposite = if key == a {
                b
            } else if key == b {
                a
            } else {
                continue;
            };
            let before = existing.len();
            existing.retain(|(k, _)| k != opposite);
            if existing.len() != before {
                outcome = MergeOutcome::Updated;
            }
        }
        match existing.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) if v.equivalent(value) => {}
            Some((_, v)) => {
                *v = value.clone();
                outcome = MergeOutcome::Updated;
            }
            None => {
                existing.push((key.clone(), value.clone()));
                outcome = MergeOutcome::Updated;
            }
        }
    }
    outcome
}

impl PolicyMerge for AwsKeyPolicyMerge {
    fn document_name(&self) -> &'static str {
        "key policy"
    }

    fn merge(
        &self,
        current: &str,
        ours: &[serde_json::Value],
    ) -> Result<MergedPolicy, PolicyError> {
        let doc = OrderedJson::parse(current)
            .map_err(|e| malformed(format!("the key policy is not valid JSON: {e}")))?;
        let OrderedJson::Object(mut top) = doc else {
            return Err(malformed("the key policy must be a JSON object"));
        };
        let ours = ours
            .iter()
            .enumerate()
            .map(|(i, v)| canonical_statement(i, v))
            .collect::<Result<Vec<_>, _>>()?;

        let pos = match top.iter().position(|(k, _)| k == "Statement") {
            Some(p) => p,
            None => {
                top.push(("Statement".to_string(), OrderedJson::Array(Vec::new())));
                top.len() - 1
            }
        };
        let statements = &mut top[pos].1;
        // A single statement may stand alone; keyplane's need a list beside it.
        if let OrderedJson::Object(_) = statements {
            let one = std::mem::replace(statements, OrderedJson::Null);
            *statements = OrderedJson::Array(vec![one]);
        }
        let OrderedJson::Array(list) = statements else {
            return Err(malformed(
                "\"Statement\" must be an object or an array of objects",
            ));
        };
        for (i, st) in list.iter().enumerate() {
            if !matches!(st, OrderedJson::Object(_)) {
                return Err(malformed(format!("statement {i} must be a JSON object")));
            }
        }

        let mut changes = Vec::with_capacity(ours.len());
        for (sid, members) in &ours {
            let matching: Vec<usize> = list
                .iter()
                .enumerate()
                .filter(|(_, st)| st.get("Sid").and_then(OrderedJson::as_str) == Some(sid))
                .map(|(i, _)| i)
                .collect();
            let outcome = match matching.as_slice() {
                [] => {
                    list.push(OrderedJson::Object(members.clone()));
                    MergeOutcome::Added
                }
                [i] => match &mut list[*i] {
                    OrderedJson::Object(existing) => update_in_place(existing, members),
                    _ => MergeOutcome::Unchanged,
                },
                several => {
                    return Err(malformed(format!(
                        "statements {} share the Sid \"{sid}\"; Sids must be unique, so keyplane cannot tell which one to update",
                        several
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )));
                }
            };
            changes.push(MergeChange {
                name: sid.clone(),
                outcome,
            });
        }
        Ok(MergedPolicy {
            document: OrderedJson::Object(top).to_pretty(),
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        GRANT_STATEMENT_SID, KeyPolicy, USE_STATEMENT_SID, recommended_statements,
    };

    const ROLE: &str = "arn:aws:iam::222222222222:role/creator";

    fn ours() -> Vec<serde_json::Value> {
        recommended_statements(ROLE)
    }

    fn merge(doc: &str) -> MergedPolicy {
        AwsKeyPolicyMerge.merge(doc, &ours()).unwrap()
    }

    fn outcomes(m: &MergedPolicy) -> Vec<MergeOutcome> {
        m.changes.iter().map(|c| c.outcome).collect()
    }

    /// The text keyplane would print for `doc`, as a JSON value (for structural assertions).
    fn value(m: &MergedPolicy) -> serde_json::Value {
        serde_json::from_str(&m.document).unwrap()
    }

    #[test]
    fn appends_both_statements_to_the_default_policy_and_keeps_everything_else() {
        let default = KeyPolicy::default_policy_json("111111111111");
        let m = merge(&default);
        assert_eq!(outcomes(&m), [MergeOutcome::Added, MergeOutcome::Added]);
        assert!(m.changed());
        let v = value(&m);
        assert_eq!(v["Version"], "2012-10-17");
        assert_eq!(v["Id"], "key-default-1");
        let sts = v["Statement"].as_array().unwrap();
        assert_eq!(sts.len(), 3);
        assert_eq!(sts[0]["Sid"], "Enable IAM User Permissions");
        assert_eq!(sts[0]["Action"], "kms:*");
        assert_eq!(sts[1]["Sid"], USE_STATEMENT_SID);
        assert_eq!(sts[2]["Sid"], GRANT_STATEMENT_SID);
        assert_eq!(sts[1]["Principal"]["AWS"], ROLE);
        // A policy PutKeyPolicy accepts.
        KeyPolicy::parse(&m.document).unwrap();
        // keyplane's statements read in IAM's order, not the API's sorted one.
        let first = m.document.find("\"Sid\": \"Allow an external").unwrap();
        let effect = m.document[first..].find("\"Effect\"").unwrap();
        let action = m.document[first..].find("\"Action\"").unwrap();
        assert!(effect < action, "{}", m.document);
    }

    #[test]
    fn merging_twice_changes_nothing_the_second_time() {
        let once = merge(&KeyPolicy::default_policy_json("111111111111"));
        let twice = merge(&once.document);
        assert_eq!(twice.document, once.document);
        assert_eq!(
            outcomes(&twice),
            [MergeOutcome::Unchanged, MergeOutcome::Unchanged]
        );
        assert!(!twice.changed());
    }

    #[test]
    fn updates_a_stale_statement_where_it_stands_and_keeps_order_and_unknown_fields() {
        let doc = format!(
            r#"{{
  "Id": "custom",
  "Version": "2012-10-17",
  "X-Note": {{"owner": "team-a"}},
  "Statement": [
    {{"Sid": "{USE_STATEMENT_SID}", "Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::999999999999:role/creator"}},
      "Action": ["kms:Encrypt"], "Resource": "*", "Condition": {{"StringEquals": {{"kms:EncryptionContext:organization": "o"}}}}}},
    {{"Sid": "Mine", "Effect": "Deny", "Principal": "*", "NotAction": "kms:Describe*", "Resource": "*"}},
    {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111111111111:root"}}, "Action": "kms:*", "Resource": "*"}}
  ]
}}"#
        );
        let m = merge(&doc);
        assert_eq!(outcomes(&m), [MergeOutcome::Updated, MergeOutcome::Added]);
        let v = value(&m);
        let sts = v["Statement"].as_array().unwrap();
        assert_eq!(sts.len(), 4);
        assert_eq!(sts[0]["Sid"], USE_STATEMENT_SID);
        assert_eq!(sts[0]["Principal"]["AWS"], ROLE);
        assert_eq!(sts[0]["Action"].as_array().unwrap().len(), 8);
        // The customer's condition on keyplane's statement is theirs to keep (the policy
        // checker judges it); other statements are untouched, in their order.
        assert_eq!(
            sts[0]["Condition"]["StringEquals"]["kms:EncryptionContext:organization"],
            "o"
        );
        assert_eq!(sts[1]["Sid"], "Mine");
        assert_eq!(sts[1]["NotAction"], "kms:Describe*");
        assert!(sts[2].get("Sid").is_none());
        assert_eq!(sts[3]["Sid"], GRANT_STATEMENT_SID);
        assert_eq!(v["X-Note"]["owner"], "team-a");
        // Top-level members stay in the customer's order.
        let id = m.document.find("\"Id\"").unwrap();
        let version = m.document.find("\"Version\"").unwrap();
        let note = m.document.find("\"X-Note\"").unwrap();
        assert!(id < version && version < note, "{}", m.document);
    }

    /// What serde_json's own `Value` would lose: a member written twice, and a number's spelling.
    #[test]
    fn repeated_members_and_numbers_of_the_customers_statements_survive() {
        let doc = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "Mine", "Effect": "Deny", "Principal": "*",
            "NotAction": "kms:Describe*", "Resource": "*",
            "Condition": {"NumericGreaterThan": {"aws:MultiFactorAuthAge": 3600.0}},
            "Condition": {"NumericGreaterThan": {"aws:MultiFactorAuthAge": 1e4}}}]}"#;
        let m = merge(doc);
        assert_eq!(outcomes(&m), [MergeOutcome::Added, MergeOutcome::Added]);
        assert_eq!(
            m.document.matches("\"Condition\"").count(),
            2,
            "{}",
            m.document
        );
        let first = m.document.find("3600.0").unwrap();
        let second = m.document.find("1e+4").unwrap();
        assert!(first < second, "{}", m.document);
        assert_eq!(merge(&m.document).document, m.document);
    }

    #[test]
    fn a_statement_already_granting_the_same_is_left_as_written() {
        // Same grants, other spelling: actions reordered, the principal as a list.
        let mut actions: Vec<String> = ours()[0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        actions.reverse();
        let doc = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Resource": "*",
                "Action": actions,
                "Principal": {"AWS": [ROLE]},
                "Effect": "Allow",
                "Sid": USE_STATEMENT_SID,
            }]
        })
        .to_string();
        let m = merge(&doc);
        assert_eq!(outcomes(&m), [MergeOutcome::Unchanged, MergeOutcome::Added]);
        let v = value(&m);
        assert_eq!(v["Statement"][0]["Action"][0], "kms:DescribeKey");
        assert_eq!(v["Statement"][0]["Principal"]["AWS"][0], ROLE);
    }

    #[test]
    fn an_opposite_element_on_keyplanes_statement_is_replaced() {
        let doc = format!(
            r#"{{"Statement": {{"Sid": "{GRANT_STATEMENT_SID}", "Effect": "Allow", "NotPrincipal": {{"AWS": "x"}}, "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}}}}"#
        );
        let m = merge(&doc);
        // A lone statement object becomes a list so keyplane's other statement fits beside it.
        assert_eq!(outcomes(&m), [MergeOutcome::Added, MergeOutcome::Updated]);
        let v = value(&m);
        let sts = v["Statement"].as_array().unwrap();
        assert_eq!(sts[0]["Sid"], GRANT_STATEMENT_SID);
        assert!(sts[0].get("NotPrincipal").is_none());
        assert_eq!(sts[0]["Principal"]["AWS"], ROLE);
        assert_eq!(sts[1]["Sid"], USE_STATEMENT_SID);
    }

    #[test]
    fn a_document_without_statements_gets_keyplanes() {
        let m = merge(r#"{"Version": "2012-10-17"}"#);
        assert_eq!(outcomes(&m), [MergeOutcome::Added, MergeOutcome::Added]);
        assert_eq!(value(&m)["Statement"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        let err = |doc: &str| match AwsKeyPolicyMerge.merge(doc, &ours()) {
            Err(PolicyError::Malformed(m)) => m,
            other => panic!("expected a refusal for {doc}, got {other:?}"),
        };
        assert!(err("{\"Statement\": [").contains("not valid JSON"));
        assert!(err("[1]").contains("must be a JSON object"));
        assert!(err(r#"{"Statement": "x"}"#).contains("an object or an array"));
        assert!(err(r#"{"Statement": [{"Sid": "a"}, 3]}"#).contains("statement 1"));
        let dup = format!(
            r#"{{"Statement": [{{"Sid": "{USE_STATEMENT_SID}"}}, {{"Sid": "x"}}, {{"Sid": "{USE_STATEMENT_SID}"}}]}}"#
        );
        assert!(err(&dup).contains("statements 0 and 2 share the Sid"));
        let no_sid = AwsKeyPolicyMerge.merge("{}", &[serde_json::json!({"Effect": "Allow"})]);
        assert!(matches!(no_sid, Err(PolicyError::Malformed(m)) if m.contains("has no Sid")));
    }

    #[test]
    fn each_format_has_its_merge() {
        assert_eq!(
            policy_merge(PolicyFormat::of_cloud_kms(Provider::Aws)).document_name(),
            "key policy"
        );
        let names: Vec<&str> = PolicyFormat::ALL
            .iter()
            .map(|f| policy_merge(*f).document_name())
            .collect();
        assert_eq!(
            names,
            [
                "key policy",
                "IAM policy",
                "role assignment list",
                "OpenBao policy"
            ]
        );
        // Each provider's key service has its own format.
        let formats: std::collections::BTreeSet<String> = Provider::ALL
            .iter()
            .map(|p| format!("{:?}", PolicyFormat::of_cloud_kms(*p)))
            .collect();
        assert_eq!(formats.len(), Provider::ALL.len());
    }
}
