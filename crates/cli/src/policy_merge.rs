//! A key's whole policy with keyplane's statements merged in, for `keyplane key policy
//! --merge-into/--key-id` and `keyplane kms put-key-policy --merge`. keyplane's statements come
//! from the API's policy helper (with the organization's provider ID filled in); the merge is
//! keyplane-core's rule for the provider's document format.
use anyhow::{Context, bail};
use keyplane_core::Provider;
use keyplane_core::policy::{MergeOutcome, MergedPolicy, policy_merge};
use serde_json::Value;

use crate::api_client::ApiClient;
use crate::key_cmd::{DbTypeArg, helper_base};

/// The statements keyplane needs in a key policy of `region`, as the API's helper gives them.
pub async fn keyplane_statements(
    api: &ApiClient,
    db_type: DbTypeArg,
    provider: Provider,
    region: &str,
) -> anyhow::Result<Vec<Value>> {
    let help = api
        .get(&format!(
            "{}/provider/{provider}/region/{region}/policy",
            helper_base(db_type)
        ))
        .await
        .context("asking keyplane which statements the key policy needs")?;
    help["statements"]
        .as_array()
        .cloned()
        .context("the API's policy helper gave no statements")
}

/// `current` with `ours` merged in; `what` names the document in messages.
pub fn merge(
    provider: Provider,
    current: &str,
    ours: &[Value],
    what: &str,
) -> anyhow::Result<MergedPolicy> {
    let Some(m) = policy_merge(provider) else {
        bail!("keyplane cannot merge {provider} policies yet");
    };
    m.merge(current, ours)
        .with_context(|| format!("merging keyplane's statements into {what}"))
}

/// One line per statement on standard error, so standard output holds only the policy.
pub fn report(m: &MergedPolicy) {
    for c in &m.changes {
        let what = match c.outcome {
            MergeOutcome::Added => "added",
            MergeOutcome::Updated => "updated in place",
            MergeOutcome::Unchanged => "already there, unchanged",
        };
        eprintln!("statement \"{}\": {what}", c.name);
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
