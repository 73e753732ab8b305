//! AWS KMS as a key service: key ARNs, the live check of `registration` (every action of
//! the seed's key policy but EnableKey, performed for real), the key-policy statements and
//! the policy checker of `keyplane_core::policy`.
use async_trait::async_trait;
use keyplane_core::AwsKeyArn;
use keyplane_core::policy::{
    KeyPolicy, check_policy, platform_requirements, recommended_statements_bound,
};
use keyplane_kms::{ErrorKind, KeyProvider, KmsError, PlatformIdentity};
use uuid::Uuid;

use super::LiveCheckOutcome;
use super::policy::key_account_of;
use super::registration::{live_check_aws, org_context};
use super::service::{AccessGrant, KeyFacts, KeyService, ParsedKeyId, PolicyFindings};
use crate::App;
use crate::config::Config;
use crate::error::{AppError, AppResult};

pub(crate) struct AwsKeys;

fn arn_of(key: &ParsedKeyId) -> AppResult<&AwsKeyArn> {
    match key {
        ParsedKeyId::Aws(arn) => Ok(arn),
        other => Err(AppError::bug(format!("not an AWS key: {other:?}"))),
    }
}

/// The statements bound to `org`, naming every principal: one as a string (the seed's form),
/// several as a list.
fn statements_for(principals: &[String], org: Uuid) -> Vec<serde_json::Value> {
    let first = principals.first().map(String::as_str).unwrap_or_default();
    let mut statements = recommended_statements_bound(first, &org.to_string());
    if principals.len() > 1 {
        for st in &mut statements {
            st["Principal"]["AWS"] = serde_json::json!(principals);
        }
    }
    statements
}

#[async_trait]
impl KeyService for AwsKeys {
    fn key_field(&self) -> &'static str {
        "aws.keyID"
    }

    fn parse(&self, _config: &Config, raw: &str, region: &str) -> AppResult<ParsedKeyId> {
        let arn: AwsKeyArn = raw
            .parse()
            .map_err(|e| AppError::invalid("aws.keyID", format!("aws.keyID: {e}")))?;
        if arn.region != region {
            return Err(AppError::KeyCheckFailed(format!(
                "the key ARN is in region {} but the request registers it for {region}: a key must be in the region \
                 of the databases it encrypts. Create a key in {region} and register that one",
                arn.region
            )));
        }
        Ok(ParsedKeyId::Aws(arn))
    }

    async fn live_check(
        &self,
        app: &App,
        identity: &PlatformIdentity,
        org: Uuid,
        key: &ParsedKeyId,
        _login: Option<&keyplane_kms::KeyLogin>,
    ) -> AppResult<LiveCheckOutcome> {
        live_check_aws(app, identity, org, arn_of(key)?).await
    }

    fn grant(
        &self,
        _config: &Config,
        principals: &[String],
        org: Uuid,
        _key: Option<&ParsedKeyId>,
    ) -> AccessGrant {
        AccessGrant::AwsStatements(statements_for(principals, org))
    }

    fn check_policy(
        &self,
        _config: &Config,
        doc: &serde_json::Value,
        principals: &[String],
        org: Uuid,
        region: &str,
        key: Option<&ParsedKeyId>,
    ) -> AppResult<PolicyFindings> {
        let key_arn = key.map(arn_of).transpose()?;
        let text = serde_json::to_string(doc).map_err(AppError::internal)?;
        let policy = KeyPolicy::parse(&text).map_err(|e| {
            AppError::invalid("policy", format!("the key policy is malformed: {e}"))
        })?;
        let account = key_account_of(&policy, key_arn);
        let arn = key_arn.map(|a| a.to_string()).unwrap_or_else(|| {
            format!("arn:aws:kms:{region}:{account}:key/00000000-0000-0000-0000-000000000000")
        });
        let principal = principals.first().map(String::as_str).unwrap_or_default();
        let reqs = platform_requirements(&org.to_string());
        Ok(PolicyFindings::Aws(check_policy(
            &policy, principal, &account, &arn, &reqs,
        )))
    }

    /// DescribeKey as the identity, then an Encrypt with the organization's context: the
    /// use statement must name the identity (and, bound, this organization).
    async fn admits(
        &self,
        kms: &dyn KeyProvider,
        key_id: &str,
        org: Uuid,
    ) -> Result<bool, KmsError> {
        let answer = match kms.describe_key(key_id).await {
            Ok(_) => kms
                .encrypt(key_id, b"keyplane provider-id check", &org_context(org))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.kind, ErrorKind::AccessDenied { .. } | ErrorKind::NotFound) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn how_to_admit(&self, principal: &str, key_id: &str) -> String {
        format!(
            "add {principal} to the Principal of the statements \"{}\" and \"{}\" of the key policy of {key_id} \
             (GET …/policy returns them with every provider ID of the region)",
            keyplane_core::policy::USE_STATEMENT_SID,
            keyplane_core::policy::GRANT_STATEMENT_SID
        )
    }

    /// The key's automatic rotation (GetKeyRotationStatus), where its policy lets the platform
    /// read it: the seed's policy does not, and that is no fault of the key.
    async fn facts(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<KeyFacts, KmsError> {
        let rotation = match super::service::rotation_if_reported(kms, key_id).await {
            Ok(r) => r,
            Err(e) if matches!(e.kind, ErrorKind::AccessDenied { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(KeyFacts {
            rotation,
            ..KeyFacts::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_principal_is_the_seeds_string_several_a_list() {
        let org = Uuid::new_v4();
        let one = statements_for(&["arn:aws:iam::1:role/creator".into()], org);
        assert_eq!(one[0]["Principal"]["AWS"], "arn:aws:iam::1:role/creator");
        let two = statements_for(
            &[
                "arn:aws:iam::1:role/creator".into(),
                "arn:aws:iam::2:role/creator".into(),
            ],
            org,
        );
        for st in &two {
            assert_eq!(
                st["Principal"]["AWS"],
                serde_json::json!(["arn:aws:iam::1:role/creator", "arn:aws:iam::2:role/creator"])
            );
        }
    }
}
