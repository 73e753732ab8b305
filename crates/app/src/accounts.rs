//! The platform's cloud accounts that a customer's key policy must trust (the "provider
//! ID"). An organization's account is chosen once and stored, so the answer never changes
//! under a key policy that already names it; a new organization gets the least-used one.
use keyplane_core::{Permission, Provider};
use keyplane_kms::PlatformIdentity;
use keyplane_store::AccountAssignment;
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::config::ProviderAccount;
use crate::error::{AppError, AppResult, ConflictReason, RegionProblem};
use crate::regions::{check_region, parse_provider};

/// How often a racing assignment is re-read before giving up; two is enough in practice.
const ASSIGN_ATTEMPTS: usize = 8;

pub struct Accounts<'a>(pub(crate) &'a App);

impl Accounts<'_> {
    /// Picks the least-used account among `candidates` (ties: configuration order).
    async fn least_used<'c>(
        &self,
        provider: Provider,
        candidates: &[&'c ProviderAccount],
    ) -> AppResult<Option<&'c ProviderAccount>> {
        let usage = self.0.store.account_usage(provider).await?;
        Ok(candidates
            .iter()
            .copied()
            .min_by_key(|a| usage.get(&a.id).copied().unwrap_or(0)))
    }

    /// The organization's accounts that serve `region`, assigning one on first use.
    pub async fn for_region(
        &self,
        org: Uuid,
        provider: Provider,
        region: &str,
    ) -> AppResult<Vec<AccountAssignment>> {
        let config = &self.0.config;
        let serving: Vec<&ProviderAccount> = config
            .accounts(provider)
            .iter()
            .filter(|a| a.serves(region))
            .collect();
        if serving.is_empty() {
            return Err(AppError::RegionUnavailable(
                RegionProblem::NoPlatformAccount {
                    provider,
                    region: region.to_string(),
                },
            ));
        }
        for _ in 0..ASSIGN_ATTEMPTS {
            let assigned = self.0.store.assigned_accounts(org, provider).await?;
            let mine: Vec<AccountAssignment> = assigned
                .iter()
                .filter(|a| serving.iter().any(|s| s.id == a.account_id))
                .cloned()
                .collect();
            if !mine.is_empty() {
                return Ok(mine);
            }
            let free: Vec<&ProviderAccount> = serving
                .iter()
                .copied()
                .filter(|s| !assigned.iter().any(|a| a.account_id == s.id))
                .collect();
            let Some(pick) = self.least_used(provider, &free).await? else {
                break;
            };
            let ordinal = assigned.len() as i64;
            self.0
                .store
                .try_assign_account(org, provider, &pick.id, ordinal)
                .await?;
            // Whether we won or another request did, the next read shows the settled answer.
        }
        Err(AppError::Conflict(
            ConflictReason::AccountAssignmentUnsettled,
        ))
    }

    /// The platform identity (account and role) that acts on an organization's keys in a
    /// region: its first assigned account there.
    pub async fn platform_identity(
        &self,
        org: Uuid,
        provider: Provider,
        region: &str,
    ) -> AppResult<PlatformIdentity> {
        let assigned = self.for_region(org, provider, region).await?;
        let first = assigned
            .first()
            .ok_or_else(|| AppError::bug("no provider account assigned"))?;
        let account = self
            .0
            .config
            .account(provider, &first.account_id)
            .ok_or_else(|| {
                AppError::bug(format!(
                    "assigned account {} is no longer configured",
                    first.account_id
                ))
            })?;
        Ok(PlatformIdentity {
            provider,
            region: region.to_string(),
            account_id: account.id.clone(),
            principal: account.principal(provider),
        })
    }

    /// The accounts to trust for keys of the organization in `region` (`provider` as the
    /// request names it).
    pub async fn list(
        &self,
        who: &Requester,
        provider: &str,
        region: &str,
    ) -> AppResult<(Provider, Vec<AccountAssignment>)> {
        who.require(Permission::OrgCmkRead)?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        Ok((
            provider,
            self.for_region(who.org_id(), provider, region).await?,
        ))
    }

    /// Assigns the organization one more platform account of the provider; its ID.
    pub async fn assign(&self, who: &Requester, provider: &str) -> AppResult<(Provider, String)> {
        who.require(Permission::OrgCmkWrite)?;
        let provider = parse_provider(provider)?;
        let org = who.org_id();
        for _ in 0..ASSIGN_ATTEMPTS {
            let assigned = self.0.store.assigned_accounts(org, provider).await?;
            let free: Vec<&ProviderAccount> = self
                .0
                .config
                .accounts(provider)
                .iter()
                .filter(|c| !assigned.iter().any(|a| a.account_id == c.id))
                .collect();
            let Some(pick) = self.least_used(provider, &free).await? else {
                return Err(AppError::Conflict(ConflictReason::NoAccountLeft(provider)));
            };
            if self
                .0
                .store
                .try_assign_account(org, provider, &pick.id, assigned.len() as i64)
                .await?
            {
                return Ok((provider, pick.id.clone()));
            }
        }
        Err(AppError::Conflict(
            ConflictReason::AccountAssignmentUnsettled,
        ))
    }
}
