//! The access-policy helper (what to grant, with the organization's provider IDs filled in,
//! bound to the organization) and the checker of a whole pasted policy (which permissions the
//! platform would lack, and why, and whether an AWS key policy lets the platform use the key
//! for another organization), for every key service through [`super::service::KeyService`]:
//! AWS key policies, GCP IAM policies.
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::policy::{KeyPolicy, PrincipalEntry};
use keyplane_core::{AwsKeyArn, DbType, Permission, Provider};

use super::service::{AccessGrant, PolicyFindings, key_service};
use super::{Keys, slot_target};
use crate::accounts::TrustedIdentity;
use crate::audit::record_for;
use crate::auth::Requester;
use crate::error::{AppError, AppResult};
use crate::regions::{check_region, parse_provider};

/// What a customer grants on the key.
#[derive(Debug, Clone)]
pub struct PolicyAdvice {
    pub provider: Provider,
    /// The (first) provider ID: AWS account, GCP project.
    pub provider_id: String,
    /// The (first) principal the policy must allow.
    pub principal: String,
    /// Every principal the policy must allow (serverless: one per provider ID of the region).
    pub principals: Vec<String>,
    /// AWS: the statements in order (`recommended_statements_bound`): use of the key for this
    /// organization only, describing it, grants carrying this organization's context, listing
    /// and revoking them. GCP: the bindings.
    pub grant: AccessGrant,
}

impl PolicyAdvice {
    /// AWS: the statements, in order (use of the key, then grants for persistent resources).
    pub fn statements(&self) -> Option<&[serde_json::Value]> {
        match &self.grant {
            AccessGrant::AwsStatements(s) => Some(s),
            AccessGrant::GcpBindings { .. } | AccessGrant::Azure(_) | AccessGrant::Openbao(_) => {
                None
            }
        }
    }
}

/// How the platform logs in to a key service that takes a login per key (OpenBao): an
/// AppRole whose credentials the customer gives, or a JWT role trusting keyplane's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginKind {
    #[default]
    AppRole,
    Jwt,
}

/// A pasted access policy checked for the platform's identities.
#[derive(Debug, Clone)]
pub struct PolicyReview {
    /// The (first) principal checked.
    pub principal: String,
    pub principals: Vec<String>,
    pub findings: PolicyFindings,
}

/// The identities a policy of `db_type` must let in: a classic key is used by the
/// organization's first identity of the region, a serverless key by one per database.
pub(super) fn principals_for(db_type: DbType, identities: &[TrustedIdentity]) -> Vec<String> {
    let n = match db_type {
        DbType::Classic => 1,
        DbType::Serverless => identities.len(),
    };
    identities
        .iter()
        .take(n)
        .map(|i| i.principal.clone())
        .collect()
}

/// The checker's verdict on a whole policy, as registration would decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// Registration's live check would pass: everything allowed, for this organization only.
    Ok,
    /// An action the platform needs is denied (`report.findings`).
    Insufficient,
    /// Everything is allowed, but also for other organizations
    /// (`report.organization_findings`): registration refuses such a key.
    Unbound,
}

impl PolicyVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Ok => "ok",
            PolicyVerdict::Insufficient => "insufficient",
            PolicyVerdict::Unbound => "unbound",
        }
    }
}

impl PolicyReview {
    pub fn verdict(&self) -> PolicyVerdict {
        self.findings.verdict()
    }
}

/// The account a policy's key lives in: from the key ARN when given, else the account
/// whose root the policy trusts (AWS's default statement), else unknown.
pub(crate) fn key_account_of(policy: &KeyPolicy, key_arn: Option<&AwsKeyArn>) -> String {
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
    /// The organization's identities for (type, provider, region): who the policy names.
    async fn principals(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> AppResult<(String, Vec<String>)> {
        let ids = self
            .0
            .accounts()
            .identities(who.org_id(), provider, region)
            .await?;
        let first = ids
            .first()
            .ok_or_else(|| AppError::bug("no provider account assigned"))?;
        Ok((first.provider_id.clone(), principals_for(db_type, &ids)))
    }

    /// The `keyID` a policy request names, parsed by its service (an error names the
    /// parameter rather than a registration field).
    fn key_parameter(
        &self,
        service: &dyn super::service::KeyService,
        key_id: Option<&str>,
        region: &str,
    ) -> AppResult<Option<super::ParsedKeyId>> {
        let Some(k) = key_id else {
            return Ok(None);
        };
        service
            .parse(&self.0.config, k, region)
            .map(Some)
            .map_err(|e| match e {
                AppError::Invalid { message, .. } | AppError::KeyCheckFailed(message) => {
                    AppError::invalid_parameter(
                        "keyID",
                        message.replacen(service.key_field(), "keyID", 1),
                    )
                }
                other => other,
            })
    }

    /// What to grant for keys of `db_type` in `region`; `key_id`, when given, is the key the
    /// help names (Azure's role assignment is scoped to it); `login` picks an OpenBao
    /// key's auth method (the JWT role's trust is filled in for the organization).
    pub async fn policy_help(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
        key_id: Option<&str>,
        login: LoginKind,
    ) -> AppResult<PolicyAdvice> {
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkRead, AuditAction::CmkPolicy, &target)
            .await?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        let service = key_service(provider)?;
        let key = self.key_parameter(service, key_id, region)?;
        let (mut provider_id, mut principals) =
            self.principals(who, db_type, provider, region).await?;
        let grant = match (login, provider) {
            (LoginKind::AppRole, _) => {
                service.grant(&self.0.config, &principals, who.org_id(), key.as_ref())
            }
            (LoginKind::Jwt, Provider::Openbao) => {
                provider_id = super::DEFAULT_OPENBAO_JWT_ROLE.to_string();
                principals = vec![provider_id.clone()];
                super::openbao::jwt_grant(&self.0.config, who.org_id(), key.as_ref())?
            }
            (LoginKind::Jwt, other) => {
                return Err(AppError::invalid_parameter(
                    "auth",
                    format!("auth=jwt is for OpenBao keys, not {other}"),
                ));
            }
        };
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
            provider,
            provider_id,
            principal: principals.first().cloned().unwrap_or_default(),
            grant,
            principals,
        })
    }

    /// Checks a whole access policy as the key's service would evaluate it for the platform's
    /// identities; `key_id`, when given, pins the key (AWS: its account).
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
        let service = key_service(provider)?;
        let key = self.key_parameter(service, key_id, region)?;
        let (_, principals) = self.principals(who, db_type, provider, region).await?;
        let findings = service.check_policy(
            &self.0.config,
            doc,
            &principals,
            who.org_id(),
            region,
            key.as_ref(),
        )?;
        let outcome = match findings.verdict() {
            PolicyVerdict::Ok => AuditOutcome::Success,
            PolicyVerdict::Insufficient | PolicyVerdict::Unbound => AuditOutcome::Failure,
        };
        record_for(self.0, who, action, &target, outcome, &findings.missing()).await;
        Ok(PolicyReview {
            principal: principals.first().cloned().unwrap_or_default(),
            principals,
            findings,
        })
    }
}
