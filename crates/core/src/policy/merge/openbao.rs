//! OpenBao / Vault ACL policies, in HCL or in their JSON form (as `bao policy read` prints
//! them and `bao policy write` takes them): keyplane's rules are matched by path.
//!
//! keyplane's entries are the help's requirements (`{"path", "capability"}`, or
//! `{"path", "capabilities": […]}`), grouped by path. A path with a `path "…" { … }` block gets
//! the capabilities it lacks added to the block's `capabilities` list (or a `capabilities` line
//! when it has none); a path without one gets a block at the end. In HCL every other byte —
//! comments, layout, other blocks, parameter constraints on keyplane's own blocks — stays as
//! written: the merge only inserts text. An exact path always governs itself under the ACL's
//! rules, so the added block is what decides keyplane's calls. A `deny` on one of keyplane's
//! paths is the customer's decision: the merge refuses rather than override it.

use std::collections::BTreeSet;

use super::super::PolicyError;
use super::super::openbao::{HclCapabilities, OpenbaoPolicy, OpenbaoPolicyError, hcl_path_blocks};
use super::super::ordered_json::OrderedJson;
use super::{MergeChange, MergeOutcome, MergedPolicy, PolicyMerge, malformed};
use crate::openbao::Capability;

pub struct OpenbaoPolicyMerge;

/// keyplane's capabilities on one path, in the help's order, and why (for the block's comment).
struct Wanted {
    path: String,
    capabilities: Vec<Capability>,
    purpose: Vec<String>,
}

fn wanted(ours: &[serde_json::Value]) -> Result<Vec<Wanted>, PolicyError> {
    let mut out: Vec<Wanted> = Vec::new();
    for (i, v) in ours.iter().enumerate() {
        let path = v
            .get("path")
            .and_then(serde_json::Value::as_str)
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| malformed(format!("keyplane's rule {i} has no path")))?;
        let names: Vec<&serde_json::Value> = match (v.get("capability"), v.get("capabilities")) {
            (Some(c), None) => vec![c],
            (None, Some(serde_json::Value::Array(list))) => list.iter().collect(),
            _ => {
                return Err(malformed(format!(
                    "keyplane's rule {i} has neither a capability nor a capabilities list"
                )));
            }
        };
        let mut caps = Vec::new();
        for n in names {
            let c = n
                .as_str()
                .ok_or_else(|| {
                    malformed(format!(
                        "keyplane's rule {i} has a capability that is not a string"
                    ))
                })?
                .parse::<Capability>()
                .map_err(|e| malformed(format!("keyplane's rule {i}: {e}")))?;
            caps.push(c);
        }
        let entry = match out.iter_mut().position(|w| w.path == path) {
            Some(p) => &mut out[p],
            None => {
                out.push(Wanted {
                    path: path.to_string(),
                    capabilities: Vec::new(),
                    purpose: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        for c in caps {
            if !entry.capabilities.contains(&c) {
                entry.capabilities.push(c);
            }
        }
        if let Some(p) = v.get("purpose").and_then(serde_json::Value::as_str) {
            entry.purpose.push(p.to_string());
        }
    }
    Ok(out)
}

fn quoted(caps: &[Capability]) -> String {
    caps.iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hcl_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The policy's rules, or none for a policy that has no rules yet (an empty file, comments).
fn rules(current: &str) -> Result<Vec<super::super::openbao::PathRule>, PolicyError> {
    match OpenbaoPolicy::parse(current) {
        Ok(p) => Ok(p.rules),
        Err(OpenbaoPolicyError::NoRules) => Ok(Vec::new()),
        Err(e) => Err(malformed(format!("the OpenBao policy cannot be read: {e}"))),
    }
}

/// What the policy grants on exactly `path` (rules of one path string merge), refusing a deny.
fn granted(
    rules: &[super::super::openbao::PathRule],
    path: &str,
) -> Result<BTreeSet<Capability>, PolicyError> {
    let mut have = BTreeSet::new();
    for r in rules.iter().filter(|r| r.path == path) {
        if r.capabilities.contains(&Capability::Deny) {
            return Err(malformed(format!(
                "path {path:?} is denied by the policy (\"deny\"{}); keyplane does not override a deny: remove it, then merge again",
                if r.line > 0 {
                    format!(" at line {}", r.line)
                } else {
                    String::new()
                }
            )));
        }
        have.extend(r.capabilities.iter().copied());
    }
    Ok(have)
}

fn merge_hcl(current: &str, wants: &[Wanted]) -> Result<(String, Vec<MergeChange>), PolicyError> {
    let rules = rules(current)?;
    let blocks = hcl_path_blocks(current)
        .map_err(|e| malformed(format!("the OpenBao policy cannot be read: {e}")))?;
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut appended = String::new();
    let mut changes = Vec::new();
    for w in wants {
        let have = granted(&rules, &w.path)?;
        let missing: Vec<Capability> = w
            .capabilities
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        let outcome = if missing.is_empty() {
            MergeOutcome::Unchanged
        } else if let Some(block) = blocks.iter().find(|b| b.path == w.path) {
            match &block.capabilities {
                Some(HclCapabilities::List {
                    insert_at,
                    prefix,
                    suffix,
                }) => inserts.push((*insert_at, format!("{prefix}{}{suffix}", quoted(&missing)))),
                Some(HclCapabilities::Other) => {
                    return Err(malformed(format!(
                        "the capabilities of path {:?} are not written as a list; make them one, then merge again",
                        w.path
                    )));
                }
                None => {
                    // A line of its own, indented one step in from the closing brace.
                    let line_start = current[..block.close].rfind('\n').map_or(0, |i| i + 1);
                    let indent = &current[line_start..block.close];
                    let line = format!("capabilities = [{}]", quoted(&missing));
                    if indent.trim().is_empty() {
                        inserts.push((line_start, format!("{indent}  {line}\n")));
                    } else {
                        let lead: String =
                            indent.chars().take_while(|c| c.is_whitespace()).collect();
                        inserts.push((block.close, format!("\n{lead}  {line}\n{lead}")));
                    }
                }
            }
            MergeOutcome::Updated
        } else if !have.is_empty() || rules.iter().any(|r| r.path == w.path) {
            return Err(malformed(format!(
                "path {:?} is written in a form keyplane does not edit (not `path \"…\" {{ … }}`); add {} to it yourself",
                w.path,
                quoted(&missing)
            )));
        } else {
            appended.push('\n');
            for p in &w.purpose {
                appended.push_str(&format!("# keyplane: {p}\n"));
            }
            appended.push_str(&format!(
                "path {} {{\n  capabilities = [{}]\n}}\n",
                hcl_string(&w.path),
                quoted(&missing)
            ));
            MergeOutcome::Added
        };
        changes.push(MergeChange {
            name: w.path.clone(),
            outcome,
        });
    }
    let mut text = current.to_string();
    inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, s) in inserts {
        text.insert_str(at, &s);
    }
    if !appended.is_empty() {
        if text.trim().is_empty() {
            text.clear();
            appended.remove(0);
        } else if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&appended);
    }
    Ok((text, changes))
}

fn merge_json(current: &str, wants: &[Wanted]) -> Result<(String, Vec<MergeChange>), PolicyError> {
    let rules = rules(current)?;
    let mut doc = OrderedJson::parse(current)
        .map_err(|e| malformed(format!("the OpenBao policy is not valid JSON: {e}")))?;
    let OrderedJson::Object(top) = &mut doc else {
        return Err(malformed("a JSON OpenBao policy must be an object"));
    };
    let pos = match top.iter().position(|(k, _)| k == "path") {
        Some(p) => p,
        None => {
            top.push(("path".to_string(), OrderedJson::Object(Vec::new())));
            top.len() - 1
        }
    };
    let OrderedJson::Object(paths) = &mut top[pos].1 else {
        return Err(malformed(
            "\"path\" must be an object of path rules ({\"path\": {\"<path>\": {\"capabilities\": […]}}})",
        ));
    };
    let mut changes = Vec::new();
    for w in wants {
        let have = granted(&rules, &w.path)?;
        let missing: Vec<OrderedJson> = w
            .capabilities
            .iter()
            .filter(|c| !have.contains(c))
            .map(|c| OrderedJson::String(c.to_string()))
            .collect();
        let outcome = if missing.is_empty() {
            MergeOutcome::Unchanged
        } else if let Some((_, rule)) = paths.iter_mut().find(|(p, _)| *p == w.path) {
            let OrderedJson::Object(attrs) = rule else {
                return Err(malformed(format!(
                    "the rule of path {:?} is not an object",
                    w.path
                )));
            };
            match attrs.iter_mut().find(|(k, _)| k == "capabilities") {
                Some((_, OrderedJson::Array(list))) => list.extend(missing),
                Some(_) => {
                    return Err(malformed(format!(
                        "the capabilities of path {:?} are not a list",
                        w.path
                    )));
                }
                None => attrs.push(("capabilities".to_string(), OrderedJson::Array(missing))),
            }
            MergeOutcome::Updated
        } else {
            paths.push((
                w.path.clone(),
                OrderedJson::Object(vec![(
                    "capabilities".to_string(),
                    OrderedJson::Array(missing),
                )]),
            ));
            MergeOutcome::Added
        };
        changes.push(MergeChange {
            name: w.path.clone(),
            outcome,
        });
    }
    Ok((doc.to_pretty(), changes))
}

impl PolicyMerge for OpenbaoPolicyMerge {
    fn document_name(&self) -> &'static str {
        "OpenBao policy"
    }

    fn merge(
        &self,
        current: &str,
        ours: &[serde_json::Value],
    ) -> Result<MergedPolicy, PolicyError> {
        let wants = wanted(ours)?;
        let (document, changes) = if current.trim_start().starts_with('{') {
            merge_json(current, &wants)?
        } else {
            merge_hcl(current, &wants)?
        };
        // The merged text must read back, through the checker's own parser, as granting every
        // capability keyplane asked for.
        let merged = rules(&document)?;
        for w in &wants {
            let have = granted(&merged, &w.path)?;
            if let Some(c) = w.capabilities.iter().find(|c| !have.contains(c)) {
                return Err(malformed(format!(
                    "the merged policy would still lack {c} on {:?}; edit the policy by hand",
                    w.path
                )));
            }
        }
        Ok(MergedPolicy { document, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openbao::{OpenbaoKeyRef, OpenbaoRole};
    use crate::policy::openbao::{
        check_openbao_policy, openbao_policy_help, recommended_policy_hcl,
    };

    fn key() -> OpenbaoKeyRef {
        OpenbaoKeyRef::parse("https://bao.example.com:8200/v1/transit/keys/orders").unwrap()
    }

    /// keyplane's entries as `GET …/policy` gives them: the help's requirements.
    fn ours() -> Vec<serde_json::Value> {
        let role = OpenbaoRole::approle(None, "keyplane").unwrap();
        let help = openbao_policy_help(&key(), &role);
        help.requirements
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    fn merge(doc: &str) -> MergedPolicy {
        OpenbaoPolicyMerge.merge(doc, &ours()).unwrap()
    }

    fn outcomes(m: &MergedPolicy) -> Vec<MergeOutcome> {
        m.changes.iter().map(|c| c.outcome).collect()
    }

    fn passes(text: &str) -> bool {
        check_openbao_policy(text, &key()).unwrap().ok
    }

    const CUSTOMER: &str = "# team-a's policy: do not reformat\npath \"secret/data/app/*\" {\n    capabilities = [\"read\", \"list\"]   # app secrets\n}\n\npath \"sys/health\" { capabilities = [\"read\", \"sudo\"] }";

    #[test]
    fn blocks_are_appended_and_every_byte_of_the_customers_policy_is_kept() {
        let m = merge(CUSTOMER);
        let n = m.changes.len();
        assert!(n >= 3, "{:?}", m.changes);
        assert!(outcomes(&m).iter().all(|o| *o == MergeOutcome::Added));
        assert!(m.document.starts_with(CUSTOMER), "{}", m.document);
        assert!(m.document[CUSTOMER.len()..].contains("# keyplane: "));
        assert!(passes(&m.document), "{}", m.document);
        assert!(!passes(CUSTOMER));
        // An empty policy becomes keyplane's alone.
        let fresh = merge("");
        assert!(fresh.document.starts_with("# keyplane: "));
        assert!(passes(&fresh.document));
    }

    #[test]
    fn merging_twice_changes_nothing_the_second_time() {
        let once = merge(CUSTOMER);
        let twice = merge(&once.document);
        assert_eq!(twice.document, once.document);
        assert!(
            outcomes(&twice)
                .iter()
                .all(|o| *o == MergeOutcome::Unchanged)
        );
        assert!(!twice.changed());
        // keyplane's own recommended policy already grants everything.
        let rec = recommended_policy_hcl(&key());
        let m = merge(&rec);
        assert_eq!(m.document, rec);
        assert!(!m.changed());
    }

    #[test]
    fn an_existing_block_gets_the_missing_capabilities_inserted_in_place() {
        let wants = ours();
        let path = |i: usize| wants[i]["path"].as_str().unwrap().to_string();
        let (p0, p1, p2) = (path(0), path(1), path(2));
        // One block with a different capability and a parameter constraint, one with a trailing
        // comma over several lines, one without capabilities at all (a legacy `policy`).
        let doc = format!(
            "path \"{p0}\" {{\n  capabilities = [\"read\"] // theirs\n  allowed_parameters = {{ \"*\" = [] }}\n}}\n\
             path \"{p1}\" {{\n  capabilities = [\n    \"read\",\n  ]\n}}\n\
             path \"{p2}\" {{\n  policy = \"read\"\n}}\n"
        );
        let m = merge(&doc);
        let by_path = |p: &str| m.changes.iter().find(|c| c.name == p).unwrap().outcome;
        assert_eq!(by_path(&p0), MergeOutcome::Updated);
        assert_eq!(by_path(&p1), MergeOutcome::Updated);
        let need = |i: usize| wants[i]["capability"].as_str().unwrap().to_string();
        let expected = format!(
            "path \"{p0}\" {{\n  capabilities = [\"read\", \"{}\"] // theirs\n  allowed_parameters = {{ \"*\" = [] }}\n}}\n\
             path \"{p1}\" {{\n  capabilities = [\n    \"read\", \"{}\",\n  ]\n}}\n",
            need(0),
            need(1)
        );
        assert!(m.document.starts_with(&expected), "{}", m.document);
        if need(2) != "read" {
            assert_eq!(by_path(&p2), MergeOutcome::Updated);
            assert!(
                m.document.contains(&format!(
                    "path \"{p2}\" {{\n  policy = \"read\"\n  capabilities = [\"{}\"]\n}}\n",
                    need(2)
                )),
                "{}",
                m.document
            );
        }
        assert!(passes(&m.document), "{}", m.document);
        assert!(!merge(&m.document).changed());
    }

    #[test]
    fn the_json_form_is_merged_as_json_keeping_the_customers_rules() {
        let wants = ours();
        let p0 = wants[0]["path"].as_str().unwrap();
        let doc = format!(
            r#"{{"path": {{"secret/*": {{"capabilities": ["read"]}}, "{p0}": {{"capabilities": ["read"], "required_parameters": ["x"]}}}}}}"#
        );
        let m = merge(&doc);
        assert_eq!(m.changes[0].outcome, MergeOutcome::Updated);
        let v: serde_json::Value = serde_json::from_str(&m.document).unwrap();
        assert_eq!(
            v["path"]["secret/*"]["capabilities"],
            serde_json::json!(["read"])
        );
        assert_eq!(v["path"][p0]["capabilities"][0], "read");
        assert_eq!(v["path"][p0]["required_parameters"][0], "x");
        assert!(m.document.find("secret/*") < m.document.find(p0));
        assert!(!merge(&m.document).changed());
    }

    #[test]
    fn malformed_policies_and_denies_are_refused_with_the_reason() {
        let err = |doc: &str| match OpenbaoPolicyMerge.merge(doc, &ours()) {
            Err(PolicyError::Malformed(m)) => m,
            other => panic!("expected a refusal for {doc}, got {other:?}"),
        };
        assert!(err("path \"a\" {").contains("cannot be read"));
        assert!(err("path \"a\" { capabilities = [\"fly\"] }").contains("cannot be read"));
        assert!(err("{\"path\": [").contains("cannot be read"));
        let p0 = ours()[0]["path"].as_str().unwrap().to_string();
        let deny = err(&format!(
            "\n\npath \"{p0}\" {{ capabilities = [\"deny\"] }}\n"
        ));
        assert!(deny.contains("denied") && deny.contains("line 3"), "{deny}");
        let lone = err(&format!("path \"{p0}\" {{ capabilities = \"read\" }}\n"));
        assert!(lone.contains("not written as a list"), "{lone}");
        let bad = OpenbaoPolicyMerge.merge("", &[serde_json::json!({"path": "p"})]);
        assert!(
            matches!(bad, Err(PolicyError::Malformed(m)) if m.contains("neither a capability"))
        );
    }
}
