//! The key-policy helper (the statements to paste, with the organization's provider ID) and
//! the checker of a whole key policy (which actions the platform's role would be denied,
//! and why). AWS key policies only, so far.
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::policy::{
    CheckReport, KeyPolicy, PrincipalEntry, check_policy, platform_requirements,
    recommended_statements,
};
use keyplane_core::{AwsKeyArn, DbType, Permission, Provider};

use super::{Keys, slot_target};
use crate::audit::record_for;
use crate::auth::Requester;
use crate::error::{AppError, AppResult};
use crate::regions::{check_region, parse_provider};

/// The statements a customer adds to the key policy.
#[derive(Debug, Clone)]
pub struct PolicyAdvice {
    pub provider_id: String,
    /// The principal the key policy must allow.
    pub principal: String,
    /// In order: use of the key, then grants for persistent resources.
    pub statements: Vec<serde_json::Value>,
}

/// A key policy checked for the platform's role.
#[derive(Debug, Clone)]
pub struct PolicyReview {
    pub principal: String,
    pub report: CheckReport,
}

/// The account a policy's key lives in: from the key ARN when given, else the account
/// whose root the policy trusts (AWS's default statement), else unknown.
fn key_account_of(policy: &KeyPolicy, key_arn: Option<&AwsKeyArn>) -> String {
    if let Some(arn) = key_arn {
        return arn.account.clone();
    }
    for st in &policy.statements {
        for entry in &st.principal.entries {
            if let PrincipalEntry::Aws(p) = entry
                && let Some(acct) = p
                    .strip_prefix("arn:aws:iam::")
                    .and_then(|r| r.strip_suffix(":root"))
            {
                return acct.to_string();
            }
        }
    }
    "000000000000".to_string()
}

impl Keys<'_> {
    /// The statements to paste for keys of `db_type` in `region`.
    pub async fn policy_help(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<PolicyAdvice> {
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkRead, AuditAction::CmkPolicy, &target)
            .await?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        if provider != Provider::Aws {
            return Err(AppError::NotSupported(format!(
                "the policy helper covers AWS key policies only; {provider} keys are not supported yet"
            )));
        }
        let identity = self
            .0
            .accounts()
            .platform_identity(who.org_id(), provider, region)
            .await?;
        record_for(
            self.0,
            who,
            AuditAction::CmkPolicy,
            &target,
            AuditOutcome::Success,
            "",
        )
        .await;
        Ok(PolicyAdvice {
            provider_id: identity.account_id.clone(),
            statements: recommended_statements(&identity.principal),
            principal: identity.principal,
        })
    }

    /// Checks a whole key policy document as AWS would evaluate it for the platform's role;
    /// `key_id`, when given, pins the key's account.
    pub async fn policy_check(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
        key_id: Option<&str>,
        doc: &serde_json::Value,
    ) -> AppResult<PolicyReview> {
        let target = slot_target(db_type, provider, region);
        let action = AuditAction::CmkPolicyCheck;
        self.require(who, Permission::OrgCmkRead, action, &target)
            .await?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        if provider != Provider::Aws {
            return Err(AppError::NotSupported(format!(
                "the policy checker covers AWS key policies only; {provider} keys are not supported yet"
            )));
        }
        let key_arn = match key_id {
            Some(k) => Some(
                k.parse::<AwsKeyArn>()
                    .map_err(|e| AppError::invalid_parameter("keyID", format!("keyID: {e}")))?,
            ),
            None => None,
        };
        let text = serde_json::to_string(doc).map_err(AppError::internal)?;
        let policy = KeyPolicy::parse(&text).map_err(|e| {
            AppError::invalid("policy", format!("the key policy is malformed: {e}"))
        })?;
        let identity = self
            .0
            .accounts()
            .platform_identity(who.org_id(), provider, region)
            .await?;
        let account = key_account_of(&policy, key_arn.as_ref());
        let arn = key_arn.map(|a| a.to_string()).unwrap_or_else(|| {
            format!("arn:aws:kms:{region}:{account}:key/00000000-0000-0000-0000-000000000000")
        });
        let reqs = platform_requirements(&who.org_id().to_string());
        let report = check_policy(&policy, &identity.principal, &account, &arn, &reqs);
        let reason = report
            .findings
            .iter()
            .map(|f| f.action.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let outcome = if report.verdict_ok {
            AuditOutcome::Success
        } else {
            AuditOutcome::Failure
        };
        record_for(self.0, who, action, &target, outcome, &reason).await;
        Ok(PolicyReview {
            principal: identity.principal,
            report,
        })
    }
}
