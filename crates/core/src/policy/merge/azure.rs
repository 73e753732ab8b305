//! Azure role assignments, as `az role assignment list` prints them (a JSON list of flat
//! assignments) or as ARM's list returns them (`{"value": [{"properties": {…}}]}`):
//! keyplane's assignments are matched by principal, role and scope.
//!
//! Azure has no document to put back: each assignment is its own resource. The merged list is
//! the customer's as it was with keyplane's missing assignments appended in the document's own
//! shape, and the changes name what to create (`az role assignment create`); an assignment is
//! never updated in place, since its principal, role and scope are what it is.
//!
//! Matching: the principal's object ID and the role definition's GUID (the last segment of
//! `roleDefinitionId`, the same in every subscription) compare case-insensitively, as do the
//! scope's segments; a `<placeholder>` segment in keyplane's scope (the help cannot know the
//! customer's subscription or resource group) matches any one segment.

use super::super::PolicyError;
use super::super::ordered_json::OrderedJson;
use super::{MergeChange, MergeOutcome, MergedPolicy, PolicyMerge, malformed};

pub struct AzureRoleAssignmentsMerge;

/// What identifies an assignment.
#[derive(Debug)]
struct Triple {
    principal: String,
    role: String,
    scope: String,
}

impl Triple {
    fn role_guid(&self) -> &str {
        self.role.rsplit('/').next().unwrap_or(&self.role)
    }

    /// Whether `self` (keyplane's, which may carry placeholders) is the assignment `have`.
    fn matches(&self, have: &Triple) -> bool {
        let segments = |s: &str| {
            s.trim_end_matches('/')
                .split('/')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let (want, got) = (segments(&self.scope), segments(&have.scope));
        self.principal.eq_ignore_ascii_case(&have.principal)
            && self.role_guid().eq_ignore_ascii_case(have.role_guid())
            && want.len() == got.len()
            && want.iter().zip(&got).all(|(w, g)| {
                (w.starts_with('<') && w.ends_with('>') && !g.is_empty())
                    || w.eq_ignore_ascii_case(g)
            })
    }
}

/// An assignment's own members: the object itself, or its `properties` (ARM's shape).
fn fields(v: &OrderedJson) -> &OrderedJson {
    match v.get("properties") {
        Some(p @ OrderedJson::Object(_)) if v.get("principalId").is_none() => p,
        _ => v,
    }
}

fn triple(v: &OrderedJson, what: &str) -> Result<Triple, PolicyError> {
    if !matches!(v, OrderedJson::Object(_)) {
        return Err(malformed(format!("{what} is not a JSON object")));
    }
    let f = fields(v);
    let get = |k: &str| {
        f.get(k)
            .and_then(OrderedJson::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| malformed(format!("{what} has no {k}")))
    };
    Ok(Triple {
        principal: get("principalId")?,
        role: get("roleDefinitionId")?,
        scope: get("scope")?,
    })
}

impl PolicyMerge for AzureRoleAssignmentsMerge {
    fn document_name(&self) -> &'static str {
        "role assignment list"
    }

    fn merge(
        &self,
        current: &str,
        ours: &[serde_json::Value],
    ) -> Result<MergedPolicy, PolicyError> {
        let mut doc = OrderedJson::parse(current)
            .map_err(|e| malformed(format!("the role assignment list is not valid JSON: {e}")))?;
        let ours = ours
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = OrderedJson::from(v);
                let t = triple(&v, &format!("keyplane's role assignment {i}"))?;
                Ok((t, fields(&v).clone()))
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;

        // `az role assignment list` prints a list; ARM's REST list wraps it in `value`.
        let arm = matches!(doc, OrderedJson::Object(_));
        const SHAPE: &str = "the role assignment list must be a JSON list (az role assignment list) or an object with a \"value\" list (ARM)";
        let list = if arm {
            match doc.get_mut("value") {
                Some(OrderedJson::Array(list)) => list,
                _ => return Err(malformed(SHAPE)),
            }
        } else if let OrderedJson::Array(list) = &mut doc {
            list
        } else {
            return Err(malformed(SHAPE));
        };
        let existing = list
            .iter()
            .enumerate()
            .map(|(i, v)| triple(v, &format!("role assignment {i}")))
            .collect::<Result<Vec<_>, _>>()?;
        // An empty list says nothing of its shape: the CLI's flat one, unless ARM's wrapper.
        let nested = arm || list.first().is_some_and(|v| v.get("principalId").is_none());

        let mut changes = Vec::with_capacity(ours.len());
        for (want, members) in ours {
            let outcome = if existing.iter().any(|have| want.matches(have)) {
                MergeOutcome::Unchanged
            } else {
                list.push(if nested {
                    OrderedJson::Object(vec![("properties".to_string(), members)])
                } else {
                    members
                });
                MergeOutcome::Added
            };
            changes.push(MergeChange {
                name: format!(
                    "{} for {} on {}",
                    want.role_guid(),
                    want.principal,
                    want.scope
                ),
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
    use crate::azure::AzureKeyId;
    use crate::policy::azure::{
        AzurePlatformApp, CRYPTO_SERVICE_ENCRYPTION_USER, azure_grant_help,
    };
    use serde_json::{Value, json};

    const OID: &str = "7f3c2a10-0000-4000-8000-0000000002a0";
    const ROLE: &str = CRYPTO_SERVICE_ENCRYPTION_USER.id;
    const KEY_SCOPE: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso/keys/db-key";

    /// keyplane's assignment as the Azure help gives it: ARM's body, with placeholders for what
    /// the help cannot know (the subscription, the resource group).
    fn ours() -> Vec<Value> {
        let key: AzureKeyId = "https://contoso.vault.azure.net/keys/db-key"
            .parse()
            .unwrap();
        let app = AzurePlatformApp {
            client_id: "7f3c2a10-0000-4000-8000-000000000222".into(),
            object_id: Some(OID.into()),
            tenant_id: Some("t1".into()),
        };
        let help = azure_grant_help(&key, &app);
        assert!(help.role_assignment.scope.contains("<subscription-id>"));
        vec![help.role_assignment.json]
    }

    /// One entry as `az role assignment list` prints it.
    fn cli(principal: &str, role: &str, scope: &str) -> Value {
        json!({
            "condition": null,
            "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/0b5e0c3a"),
            "name": "0b5e0c3a",
            "principalId": principal,
            "principalName": "keyplane-platform",
            "principalType": "ServicePrincipal",
            "roleDefinitionId": format!("/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/{role}"),
            "roleDefinitionName": "whatever",
            "scope": scope,
            "type": "Microsoft.Authorization/roleAssignments"
        })
    }

    fn merge(doc: &str) -> MergedPolicy {
        AzureRoleAssignmentsMerge.merge(doc, &ours()).unwrap()
    }

    #[test]
    fn a_missing_assignment_is_appended_in_the_lists_shape_and_others_kept() {
        let other = cli("someone-else", ROLE, KEY_SCOPE);
        let reader = cli(OID, "21090545-7ca7-4776-b22c-e363652d74d2", KEY_SCOPE);
        let doc = json!([other, reader]).to_string();
        let m = merge(&doc);
        assert_eq!(m.changes.len(), 1);
        assert_eq!(m.changes[0].outcome, MergeOutcome::Added);
        assert!(m.changes[0].name.contains(ROLE) && m.changes[0].name.contains(OID));
        let v: Value = serde_json::from_str(&m.document).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0], other);
        assert_eq!(list[1], reader);
        // Flat, like the entries of `az role assignment list`.
        assert_eq!(list[2]["principalId"], OID);
        assert_eq!(list[2]["principalType"], "ServicePrincipal");
        assert!(list[2].get("properties").is_none());
        // The customer's entries keep their member order (az prints them sorted; `condition` first).
        assert!(m.document.find("\"condition\"") < m.document.find("\"id\""));
    }

    #[test]
    fn merging_twice_changes_nothing_and_a_real_scope_matches_the_placeholders() {
        let once = merge("[]");
        assert_eq!(once.changes[0].outcome, MergeOutcome::Added);
        let twice = merge(&once.document);
        assert_eq!(twice.document, once.document);
        assert!(!twice.changed());
        // The customer's real assignment (subscription and resource group filled in, the
        // vault's name in another case) is keyplane's.
        let doc = json!([cli(
            &OID.to_uppercase(),
            &ROLE.to_uppercase(),
            &KEY_SCOPE.replace("contoso", "Contoso")
        )])
        .to_string();
        let m = merge(&doc);
        assert_eq!(m.changes[0].outcome, MergeOutcome::Unchanged);
        assert_eq!(m.document, OrderedJson::parse(&doc).unwrap().to_pretty());
        // The same role on another key is not.
        let doc = json!([cli(OID, ROLE, &KEY_SCOPE.replace("db-key", "other"))]).to_string();
        assert_eq!(merge(&doc).changes[0].outcome, MergeOutcome::Added);
        // Nor on the vault: keyplane asks for the key's own scope.
        let vault = KEY_SCOPE.trim_end_matches("/keys/db-key");
        let doc = json!([cli(OID, ROLE, vault)]).to_string();
        assert_eq!(merge(&doc).changes[0].outcome, MergeOutcome::Added);
    }

    #[test]
    fn arms_list_keeps_its_wrapper_and_nested_shape() {
        let doc = json!({"value": [{"id": "x", "name": "g", "properties": {
            "roleDefinitionId": format!("/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"),
            "principalId": "someone", "scope": KEY_SCOPE }}], "nextLink": null})
        .to_string();
        let m = merge(&doc);
        let v: Value = serde_json::from_str(&m.document).unwrap();
        assert_eq!(v["value"].as_array().unwrap().len(), 2);
        assert_eq!(v["value"][1]["properties"]["principalId"], OID);
        assert!(v.get("nextLink").is_some());
        assert!(!merge(&m.document).changed());
    }

    #[test]
    fn malformed_lists_are_refused_with_the_reason() {
        let err = |doc: &str| match AzureRoleAssignmentsMerge.merge(doc, &ours()) {
            Err(PolicyError::Malformed(m)) => m,
            other => panic!("expected a refusal for {doc}, got {other:?}"),
        };
        assert!(err("[").contains("not valid JSON"));
        assert!(err("42").contains("must be a JSON list"));
        assert!(err(r#"{"value": 1}"#).contains("\"value\" list"));
        assert!(err("[3]").contains("role assignment 0 is not a JSON object"));
        assert!(
            err(r#"[{"principalId": "p", "scope": "/"}]"#)
                .contains("role assignment 0 has no roleDefinitionId")
        );
        let no_scope = AzureRoleAssignmentsMerge.merge(
            "[]",
            &[json!({"principalId": "p", "roleDefinitionId": "r"})],
        );
        assert!(
            matches!(no_scope, Err(PolicyError::Malformed(m)) if m.contains("keyplane's role assignment 0 has no scope"))
        );
    }
}
