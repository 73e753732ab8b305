//! A key's whole policy with keyplane's grants merged in, for `keyplane key policy
//! --merge-into/--key-id` and `keyplane kms put-key-policy --merge`. keyplane's grants come
//! from the API's policy helper (with the organization's provider IDs filled in); the merge is
//! keyplane-core's rule for the key service's document format.
use anyhow::{Context, bail};
use keyplane_core::policy::{MergeOutcome, MergedPolicy, PolicyFormat, policy_merge};
use serde_json::Value;

use crate::api_client::ApiClient;
use crate::key_cmd::{DbTypeArg, KeyServiceArg, helper_base};

/// What keyplane needs granted on a key of `service` in `region`, as the API's helper gives it.
pub async fn keyplane_statements(
    api: &ApiClient,
    db_type: DbTypeArg,
    service: KeyServiceArg,
    region: &str,
) -> anyhow::Result<Vec<Value>> {
    let help = api
        .get(&format!(
            "{}/provider/{}/region/{region}/policy",
            helper_base(db_type),
            service.name()
        ))
        .await
        .context("asking keyplane what the key's policy must grant")?;
    grant_entries(service, &help)
}

/// keyplane's entries in the helper's answer, the ones the service's merge takes: AWS its
/// `statements`, GCP its `bindings`, Azure its role assignment bodies, OpenBao its
/// `requirements` (path and capability each).
pub fn grant_entries(service: KeyServiceArg, help: &Value) -> anyhow::Result<Vec<Value>> {
    let entries = match service {
        KeyServiceArg::Aws => help["statements"].as_array().cloned(),
        KeyServiceArg::Gcp => help["bindings"].as_array().cloned(),
        KeyServiceArg::Azure => help["roleAssignments"].as_array().cloned().or_else(|| {
            help["roleAssignment"]
                .get("json")
                .map(|one| vec![one.clone()])
        }),
        KeyServiceArg::Openbao => help["requirements"].as_array().cloned(),
    };
    match entries {
        Some(e) if !e.is_empty() => Ok(e),
        _ => bail!(
            "the API's policy helper gave nothing to merge for a {} key (its answer has no {})",
            service.name(),
            match service {
                KeyServiceArg::Aws => "statements",
                KeyServiceArg::Gcp => "bindings",
                KeyServiceArg::Azure => "role assignments",
                KeyServiceArg::Openbao => "requirements",
            }
        ),
    }
}

/// `current` with `ours` merged in; `what` names the document in messages.
pub fn merge(
    format: PolicyFormat,
    current: &str,
    ours: &[Value],
    what: &str,
) -> anyhow::Result<MergedPolicy> {
    policy_merge(format)
        .merge(current, ours)
        .with_context(|| format!("merging keyplane's grants into {what}"))
}

/// One line per entry of keyplane's on standard error, so standard output holds only the
/// policy.
pub fn report(format: PolicyFormat, m: &MergedPolicy) {
    let kind = match format {
        PolicyFormat::AwsKeyPolicy => "statement",
        PolicyFormat::GcpIamPolicy => "binding of role",
        PolicyFormat::AzureRoleAssignments => "role assignment",
        PolicyFormat::OpenbaoPolicy => "path",
    };
    for c in &m.changes {
        let what = match c.outcome {
            MergeOutcome::Added => "added",
            MergeOutcome::Updated => "updated in place",
            MergeOutcome::Unchanged => "already there, unchanged",
        };
        eprintln!("{kind} \"{}\": {what}", c.name);
    }
}

/// A key's current policy text, fetched as the key's owner.
pub async fn key_policy(client: &aws_sdk_kms::Client, key_id: &str) -> anyhow::Result<String> {
    let r = client
        .get_key_policy()
        .key_id(key_id)
        .send()
        .await
        .map_err(crate::kms_cmd::aws_error)
        .with_context(|| format!("reading the key policy of {key_id}"))?;
    r.policy()
        .map(str::to_string)
        .context("GetKeyPolicy returned no policy")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::openbao::{OpenbaoKeyRef, OpenbaoRole};
    use keyplane_core::policy::azure::{AzurePlatformApp, azure_grant_help, check_azure_access};
    use keyplane_core::policy::gcp::{IamPolicy, check_iam_policy, recommended_bindings};
    use keyplane_core::policy::openbao::{check_openbao_policy, openbao_policy_help};
    use keyplane_core::policy::{KeyPolicy, recommended_statements};
    use serde_json::json;

    const SA: &str = "keyplane-o1@keyplane-dev.iam.gserviceaccount.com";

    /// The helper's answer for each service, in the shape its route gives (GCP's as branch
    /// gcp-2's route serializes it; Azure's and OpenBao's are core's help types, which no route
    /// serves yet).
    fn help(service: KeyServiceArg) -> Value {
        match service {
            KeyServiceArg::Aws => json!({
                "providerId": "222222222222",
                "principal": "arn:aws:iam::222222222222:role/creator",
                "statements": recommended_statements("arn:aws:iam::222222222222:role/creator"),
            }),
            KeyServiceArg::Gcp => json!({
                "providerId": "keyplane-dev",
                "principal": format!("serviceAccount:{SA}"),
                "principals": [format!("serviceAccount:{SA}")],
                "bindings": recommended_bindings(&[SA.to_string()]),
                "gcloudCommands": ["gcloud kms keys add-iam-policy-binding …"],
            }),
            KeyServiceArg::Azure => serde_json::to_value(azure_grant_help(
                &"https://contoso.vault.azure.net/keys/db-key"
                    .parse()
                    .unwrap(),
                &AzurePlatformApp {
                    client_id: "7f3c2a10-0000-4000-8000-000000000222".into(),
                    object_id: Some("oid-1".into()),
                    tenant_id: None,
                },
            ))
            .unwrap(),
            KeyServiceArg::Openbao => serde_json::to_value(openbao_policy_help(
                &bao_key(),
                &OpenbaoRole::approle(None, "keyplane").unwrap(),
            ))
            .unwrap(),
        }
    }

    fn bao_key() -> OpenbaoKeyRef {
        OpenbaoKeyRef::parse("https://bao.example.com:8200/v1/transit/keys/orders").unwrap()
    }

    #[test]
    fn each_services_helper_answer_merges_into_a_policy_its_checker_accepts() {
        // AWS: the key's default policy.
        let aws = KeyServiceArg::Aws;
        let ours = grant_entries(aws, &help(aws)).unwrap();
        let m = merge(
            aws.policy_format(),
            &KeyPolicy::default_policy_json("111111111111"),
            &ours,
            "f",
        )
        .unwrap();
        assert_eq!(KeyPolicy::parse(&m.document).unwrap().statements.len(), 3);

        // GCP: a new key's getIamPolicy output.
        let gcp = KeyServiceArg::Gcp;
        let ours = grant_entries(gcp, &help(gcp)).unwrap();
        let m = merge(gcp.policy_format(), r#"{"etag": "BwX="}"#, &ours, "f").unwrap();
        let p = IamPolicy::parse(&m.document).unwrap();
        assert_eq!(p.etag.as_deref(), Some("BwX="));
        assert!(check_iam_policy(&p, &[SA.to_string()]).verdict_ok);

        // Azure: an empty `az role assignment list`; the merged list passes Azure's checker
        // once the help's placeholders are filled in as the customer's subscription.
        let azure = KeyServiceArg::Azure;
        let ours = grant_entries(azure, &help(azure)).unwrap();
        let m = merge(azure.policy_format(), "[]", &ours, "f").unwrap();
        let v: Value = serde_json::from_str(&m.document).unwrap();
        assert_eq!(v[0]["principalId"], "oid-1");
        let filled = m
            .document
            .replace("<subscription-id>", "s1")
            .replace("<resource-group>", "rg");
        let report = check_azure_access(
            &filled,
            &"https://contoso.vault.azure.net/keys/db-key"
                .parse()
                .unwrap(),
            &AzurePlatformApp {
                client_id: "7f3c2a10-0000-4000-8000-000000000222".into(),
                object_id: Some("oid-1".into()),
                tenant_id: None,
            },
        )
        .unwrap();
        assert!(report.verdict_ok, "{report:?}");
        // The customer's real assignment (no placeholders) is recognized as keyplane's.
        assert!(
            !merge(azure.policy_format(), &filled, &ours, "f")
                .unwrap()
                .changed()
        );

        // OpenBao: a customer's HCL, kept as written.
        let bao = KeyServiceArg::Openbao;
        let ours = grant_entries(bao, &help(bao)).unwrap();
        let theirs = "path \"secret/*\" { capabilities = [\"read\"] }\n";
        let m = merge(bao.policy_format(), theirs, &ours, "f").unwrap();
        assert!(m.document.starts_with(theirs));
        assert!(check_openbao_policy(&m.document, &bao_key()).unwrap().ok);
    }

    #[test]
    fn an_answer_without_the_services_entries_is_refused_by_name() {
        let e = grant_entries(KeyServiceArg::Gcp, &help(KeyServiceArg::Aws)).unwrap_err();
        assert!(
            e.to_string().contains("gcp key") && e.to_string().contains("bindings"),
            "{e}"
        );
        let e = grant_entries(KeyServiceArg::Openbao, &json!({"requirements": []})).unwrap_err();
        assert!(e.to_string().contains("requirements"), "{e}");
    }

    #[test]
    fn a_malformed_document_names_the_file_and_the_reason() {
        let gcp = KeyServiceArg::Gcp;
        let ours = grant_entries(gcp, &help(gcp)).unwrap();
        let e = merge(gcp.policy_format(), "[1]", &ours, "iam.json").unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("iam.json") && text.contains("expected a JSON object"),
            "{text}"
        );
    }
}
