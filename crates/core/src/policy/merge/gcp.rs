//! Google Cloud IAM policies, as `getIamPolicy` (or `gcloud … get-iam-policy --format=json`)
//! returns them: keyplane's bindings are matched by role.
//!
//! A role's unconditional binding gains the members it lacks (in keyplane's order, after the
//! customer's); a role without one gets a new binding at the end. A conditional binding of the
//! same role is a different grant (it may not hold for the platform's calls) and is never
//! touched. `etag`, `version`, `auditConfigs`, every other binding and every unknown member stay
//! as written; keeping the `etag` is what makes `setIamPolicy` refuse the merged policy if the
//! policy changed since it was read.

use super::super::PolicyError;
use super::super::gcp::IamPolicy;
use super::super::ordered_json::OrderedJson;
use super::{MergeChange, MergeOutcome, MergedPolicy, PolicyMerge, malformed};

pub struct GcpIamPolicyMerge;

/// keyplane's binding: a role and its members, duplicates removed.
fn our_binding(index: usize, v: &serde_json::Value) -> Result<(String, Vec<String>), PolicyError> {
    let role = v
        .get("role")
        .and_then(serde_json::Value::as_str)
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| malformed(format!("keyplane's binding {index} has no role")))?;
    let mut members: Vec<String> = Vec::new();
    for m in v
        .get("members")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| malformed(format!("keyplane's binding {index} has no members list")))?
    {
        let m = m.as_str().ok_or_else(|| {
            malformed(format!(
                "keyplane's binding {index} has a member that is not a string"
            ))
        })?;
        if !members.iter().any(|have| have.eq_ignore_ascii_case(m)) {
            members.push(m.to_string());
        }
    }
    Ok((role.to_string(), members))
}

/// Whether a binding carries a condition (a `null` one is none).
fn conditional(binding: &OrderedJson) -> bool {
    binding
        .get("condition")
        .is_some_and(|c| !matches!(c, OrderedJson::Null))
}

fn members_of(binding: &OrderedJson) -> impl Iterator<Item = &str> {
    match binding.get("members") {
        Some(OrderedJson::Array(items)) => items.as_slice(),
        _ => &[],
    }
    .iter()
    .filter_map(OrderedJson::as_str)
}

impl PolicyMerge for GcpIamPolicyMerge {
    fn document_name(&self) -> &'static str {
        "IAM policy"
    }

    fn merge(
        &self,
        current: &str,
        ours: &[serde_json::Value],
    ) -> Result<MergedPolicy, PolicyError> {
        // The checker's reading refuses what setIamPolicy would: not an object, bindings that
        // are not a list, a binding without a role, members that are not strings.
        IamPolicy::parse(current).map_err(|e| malformed(e.to_string()))?;
        let mut doc = OrderedJson::parse(current)
            .map_err(|e| malformed(format!("the IAM policy is not valid JSON: {e}")))?;
        let ours = ours
            .iter()
            .enumerate()
            .map(|(i, v)| our_binding(i, v))
            .collect::<Result<Vec<_>, _>>()?;

        // setIamPolicy's request body wraps the policy; the merge keeps the wrapper.
        let wrapped = doc.get("bindings").is_none()
            && matches!(doc.get("policy"), Some(OrderedJson::Object(_)));
        let policy = if wrapped {
            doc.get_mut("policy")
        } else {
            Some(&mut doc)
        };
        let Some(OrderedJson::Object(top)) = policy else {
            return Err(malformed("the IAM policy must be a JSON object"));
        };
        let pos = match top.iter().position(|(k, _)| k == "bindings") {
            Some(p) => p,
            None => {
                top.push(("bindings".to_string(), OrderedJson::Array(Vec::new())));
                top.len() - 1
            }
        };
        if matches!(top[pos].1, OrderedJson::Null) {
            top[pos].1 = OrderedJson::Array(Vec::new());
        }
        let OrderedJson::Array(bindings) = &mut top[pos].1 else {
            return Err(malformed("\"bindings\" must be a list"));
        };

        let mut changes = Vec::with_capacity(ours.len());
        for (role, members) in &ours {
            let plain: Vec<usize> = bindings
                .iter()
                .enumerate()
                .filter(|(_, b)| {
                    b.get("role").and_then(OrderedJson::as_str) == Some(role) && !conditional(b)
                })
                .map(|(i, _)| i)
                .collect();
            let missing: Vec<&String> = members
                .iter()
                .filter(|m| {
                    !plain
                        .iter()
                        .any(|&i| members_of(&bindings[i]).any(|have| have.eq_ignore_ascii_case(m)))
                })
                .collect();
            let added = missing.iter().map(|m| OrderedJson::String((*m).clone()));
            let outcome = if missing.is_empty() {
                MergeOutcome::Unchanged
            } else if let Some(&first) = plain.first() {
                let OrderedJson::Object(b) = &mut bindings[first] else {
                    return Err(malformed("a binding is not a JSON object"));
                };
                match b.iter_mut().find(|(k, _)| k == "members") {
                    Some((_, OrderedJson::Array(list))) => list.extend(added),
                    Some((_, v @ OrderedJson::Null)) => *v = OrderedJson::Array(added.collect()),
                    Some(_) => {
                        return Err(malformed(format!(
                            "the binding of {role} has members that are not a list"
                        )));
                    }
                    None => b.push(("members".to_string(), OrderedJson::Array(added.collect()))),
                }
                MergeOutcome::Updated
            } else {
                bindings.push(OrderedJson::Object(vec![
                    ("role".to_string(), OrderedJson::String(role.clone())),
                    ("members".to_string(), OrderedJson::Array(added.collect())),
                ]));
                MergeOutcome::Added
            };
            changes.push(MergeChange {
                name: role.clone(),
                outcome,
            });
        }
        Ok(MergedPolicy {
            document: doc.to_pretty(),
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::gcp::{
        ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE, check_iam_policy, recommended_bindings,
    };
    use serde_json::{Value, json};

    const SA: &str = "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";
    const SA2: &str = "keyplane-platform-2@keyplane-dev.iam.gserviceaccount.com";

    fn accounts() -> Vec<String> {
        vec![SA.to_string(), SA2.to_string()]
    }

    fn merge(doc: &str) -> MergedPolicy {
        GcpIamPolicyMerge
            .merge(doc, &recommended_bindings(&accounts()))
            .unwrap()
    }

    fn outcomes(m: &MergedPolicy) -> Vec<MergeOutcome> {
        m.changes.iter().map(|c| c.outcome).collect()
    }

    fn value(m: &MergedPolicy) -> Value {
        serde_json::from_str(&m.document).unwrap()
    }

    #[test]
    fn a_fresh_keys_policy_gets_both_bindings_and_then_passes_the_checker() {
        // A new key's getIamPolicy: only an etag.
        let m = merge(r#"{"etag": "ACAB"}"#);
        assert_eq!(outcomes(&m), [MergeOutcome::Added, MergeOutcome::Added]);
        let v = value(&m);
        assert_eq!(v["etag"], "ACAB");
        assert_eq!(v["bindings"][0]["role"], ENCRYPTER_DECRYPTER_ROLE);
        assert_eq!(v["bindings"][1]["role"], VIEWER_ROLE);
        assert_eq!(
            v["bindings"][0]["members"],
            json!([
                format!("serviceAccount:{SA}"),
                format!("serviceAccount:{SA2}")
            ])
        );
        let p = IamPolicy::parse(&m.document).unwrap();
        assert!(check_iam_policy(&p, &accounts()).verdict_ok);
        // The etag stays first, as the customer's document had it.
        assert!(m.document.find("\"etag\"") < m.document.find("\"bindings\""));
    }

    #[test]
    fn merging_twice_changes_nothing_the_second_time() {
        let once = merge(r#"{"version": 1, "etag": "BwX=", "bindings": []}"#);
        let twice = merge(&once.document);
        assert_eq!(twice.document, once.document);
        assert_eq!(
            outcomes(&twice),
            [MergeOutcome::Unchanged, MergeOutcome::Unchanged]
        );
        assert!(!twice.changed());
    }

    #[test]
    fn members_are_unioned_into_the_roles_binding_and_everything_else_is_kept() {
        // Written as text: `json!` would sort the members, and their order is part of the test.
        let up = SA.to_uppercase();
        let doc = format!(
            r#"{{
  "version": 3,
  "etag": "BwYb1Xk=",
  "auditConfigs": [{{"service": "cloudkms.googleapis.com", "auditLogConfigs": [{{"logType": "DATA_READ"}}]}}],
  "bindings": [
    {{"role": "roles/cloudkms.admin", "members": ["user:owner@customer.example"]}},
    {{"role": "{ENCRYPTER_DECRYPTER_ROLE}", "members": ["group:db-ops@customer.example", "serviceAccount:{up}"]}},
    {{"role": "{VIEWER_ROLE}", "members": ["serviceAccount:{SA}"],
      "condition": {{"title": "until", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}}}}
  ],
  "x-unknown": {{"kept": true}}
}}"#
        );
        let m = merge(&doc);
        assert_eq!(outcomes(&m), [MergeOutcome::Updated, MergeOutcome::Added]);
        let v = value(&m);
        assert_eq!(v["version"], 3);
        assert_eq!(v["etag"], "BwYb1Xk=");
        assert_eq!(v["auditConfigs"][0]["service"], "cloudkms.googleapis.com");
        assert_eq!(v["x-unknown"]["kept"], true);
        let b = v["bindings"].as_array().unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(
            b[0],
            json!({"role": "roles/cloudkms.admin", "members": ["user:owner@customer.example"]})
        );
        // The customer's members first, as written (the email compares case-insensitively),
        // then the one missing.
        assert_eq!(
            b[1]["members"],
            json!([
                "group:db-ops@customer.example",
                format!("serviceAccount:{}", SA.to_uppercase()),
                format!("serviceAccount:{SA2}")
            ])
        );
        // The conditional viewer binding is another grant: untouched; an unconditional one is added.
        assert_eq!(b[2]["condition"]["title"], "until");
        assert_eq!(b[2]["members"], json!([format!("serviceAccount:{SA}")]));
        assert_eq!(b[3]["role"], VIEWER_ROLE);
        assert!(b[3].get("condition").is_none());
        // Top-level members keep their order.
        let at = |k: &str| m.document.find(&format!("\"{k}\"")).unwrap();
        assert!(at("version") < at("etag") && at("etag") < at("auditConfigs"));
        assert!(at("auditConfigs") < at("bindings") && at("bindings") < at("x-unknown"));
    }

    #[test]
    fn the_set_iam_policy_wrapper_is_kept() {
        let m =
            merge(r#"{"policy": {"etag": "e", "bindings": []}, "updateMask": "bindings,etag"}"#);
        let v = value(&m);
        assert_eq!(v["updateMask"], "bindings,etag");
        assert_eq!(v["policy"]["etag"], "e");
        assert_eq!(v["policy"]["bindings"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn malformed_policies_are_refused_with_the_reason() {
        let err = |doc: &str| match GcpIamPolicyMerge.merge(doc, &recommended_bindings(&accounts()))
        {
            Err(PolicyError::Malformed(m)) => m,
            other => panic!("expected a refusal for {doc}, got {other:?}"),
        };
        assert!(
            err("{\"bindings\": [").contains("not valid JSON"),
            "{}",
            err("{\"bindings\": [")
        );
        assert!(err("[1]").contains("expected a JSON object"));
        assert!(err(r#"{"bindings": "x"}"#).contains("getIamPolicy's shape"));
        assert!(
            err(r#"{"bindings": [{"role": "", "members": []}]}"#)
                .contains("binding #0 has no role")
        );
        assert!(
            err(r#"{"bindings": [{"role": "r", "members": [3]}]}"#)
                .contains("getIamPolicy's shape")
        );
        let bad_ours = GcpIamPolicyMerge.merge("{}", &[json!({"members": []})]);
        assert!(matches!(bad_ours, Err(PolicyError::Malformed(m)) if m.contains("has no role")));
    }
}
