//! The platform's cloud accounts that a customer's key policy must trust (the "provider
//! ID"). An organization's account is chosen once and stored, so the answer never changes
//! under a key policy that already names it.
//!
//! How they are handed out follows the provider's identity model
//! ([`keyplane_core::IdentityModel`]): AWS accounts are shared (a new organization gets the
//! least-used one; the key policy's context condition keeps organizations apart), while GCP
//! and Azure identities are assigned exclusively: one organization each, taken from the
//! operator's pool, and a pool with none free is refused until the operator adds some.
use std::collections::BTreeMap;

use keyplane_core::{IdentityModel, Permission, Provider};
use keyplane_kms::PlatformIdentity;
use keyplane_store::AccountAssignment;
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::config::ProviderAccount;
use crate::error::{AppError, AppResult, ConflictReason, RegionProblem};
use crate::regions::{check_region, parse_provider};

/// One of the organization's platform identities in a region, as the customer sees it: the
/// provider ID the accounts route shows and the principal the key's policy must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentity {
    pub provider: Provider,
    /// AWS: the account ID; GCP: the platform's project; Azure: the application ID.
    pub provider_id: String,
    /// The assigned account (AWS account ID, GCP service account email, Azure application).
    pub account_id: String,
    /// What the key's policy names: AWS the role ARN, GCP `serviceAccount:EMAIL`.
    pub principal: String,
}

impl TrustedIdentity {
    fn of(provider: Provider, account: &ProviderAccount) -> TrustedIdentity {
        TrustedIdentity {
            provider,
            provider_id: account.provider_id().to_string(),
            account_id: account.id.clone(),
            principal: account.principal(provider),
        }
    }

    /// The identity keyplane acts as in `region`.
    pub fn in_region(&self, region: &str) -> PlatformIdentity {
        PlatformIdentity {
            provider: self.provider,
            region: region.to_string(),
            account_id: self.account_id.clone(),
            principal: self.principal.clone(),
        }
    }
}

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
        if provider.identity_model() == IdentityModel::ExclusivePerOrganization {
            return self.exclusive(org, provider, &serving, Some(region)).await;
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

    /// The organization's own identities among `candidates`, assigning a free one (held by
    /// no organization) on first use. An identity the store shows held by several
    /// organizations (assigned before identities were exclusive) counts for none of them.
    async fn exclusive(
        &self,
        org: Uuid,
        provider: Provider,
        candidates: &[&ProviderAccount],
        region: Option<&str>,
    ) -> AppResult<Vec<AccountAssignment>> {
        // Each lost race means another organization took an identity, so this ends.
        for _ in 0..=candidates.len() + 1 {
            // Usage first: an assignment of this organization's that usage counts is in the
            // later read of its assignments, so "none free and none mine" is never a stale mix
            // (racing requests of one organization would otherwise see the pool full without
            // their own sibling's assignment).
            let usage = self.0.store.account_usage(provider).await?;
            let assigned = self.0.store.assigned_accounts(org, provider).await?;
            let mine = own_exclusive(&assigned, &usage, candidates);
            if !mine.is_empty() {
                return Ok(mine);
            }
            let free: Vec<&ProviderAccount> = candidates
                .iter()
                .copied()
                .filter(|c| usage.get(&c.id).copied().unwrap_or(0) == 0)
                .collect();
            if free.is_empty() {
                return Err(AppError::IdentityPoolExhausted {
                    provider,
                    region: region.map(str::to_string),
                });
            }
            // The first free one in configuration order, so that which identity an organization
            // gets is predictable (the dev mode's README flow names it); a racing organization
            // that loses it takes the next one on the next turn.
            let pick = free[0];
            self.0
                .store
                .try_assign_exclusive_account(org, provider, &pick.id, assigned.len() as i64)
                .await?;
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

    /// Every identity of the organization that serves `region`, in assignment order (the
    /// first is the one [`Accounts::platform_identity`] gives), assigning one on first use.
    pub async fn identities(
        &self,
        org: Uuid,
        provider: Provider,
        region: &str,
    ) -> AppResult<Vec<TrustedIdentity>> {
        let assigned = self.for_region(org, provider, region).await?;
        let mut out = Vec::with_capacity(assigned.len());
        for a in assigned {
            // An assignment whose account left the configuration acts as nobody any more.
            let Some(account) = self.0.config.account(provider, &a.account_id) else {
                tracing::warn!(account = %a.account_id, %provider, "assigned account is no longer configured");
                continue;
            };
            out.push(TrustedIdentity::of(provider, account));
        }
        Ok(out)
    }

    /// The identities to trust for keys of the organization in `region`, as
    /// [`Accounts::list`] checks the request, with the provider ID and principal of each.
    pub async fn list_trusted(
        &self,
        who: &Requester,
        provider: &str,
        region: &str,
    ) -> AppResult<(Provider, Vec<TrustedIdentity>)> {
        who.require(Permission::OrgCmkRead)?;
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        Ok((
            provider,
            self.identities(who.org_id(), provider, region).await?,
        ))
    }

    /// How the customer sees one configured account of `provider` (None: not configured).
    pub fn trusted(&self, provider: Provider, account_id: &str) -> Option<TrustedIdentity> {
        self.0
            .config
            .account(provider, account_id)
            .map(|a| TrustedIdentity::of(provider, a))
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
        if provider.identity_model() == IdentityModel::ExclusivePerOrganization {
            return self.assign_exclusive(org, provider).await;
        }
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

    /// One more identity held by no other organization, for a provider whose identities are
    /// per organization.
    async fn assign_exclusive(
        &self,
        org: Uuid,
        provider: Provider,
    ) -> AppResult<(Provider, String)> {
        let candidates = self.0.config.accounts(provider).len();
        for _ in 0..=candidates + 1 {
            let assigned = self.0.store.assigned_accounts(org, provider).await?;
            let usage = self.0.store.account_usage(provider).await?;
            let free: Vec<&ProviderAccount> = self
                .0
                .config
                .accounts(provider)
                .iter()
                .filter(|c| usage.get(&c.id).copied().unwrap_or(0) == 0)
                .collect();
            if free.is_empty() {
                return Err(AppError::Conflict(ConflictReason::NoFreeIdentity(provider)));
            }
            let pick = free[0];
            if self
                .0
                .store
                .try_assign_exclusive_account(org, provider, &pick.id, assigned.len() as i64)
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

/// The organization's assignments among `candidates` that no other organization holds.
fn own_exclusive(
    assigned: &[AccountAssignment],
    usage: &BTreeMap<String, i64>,
    candidates: &[&ProviderAccount],
) -> Vec<AccountAssignment> {
    assigned
        .iter()
        .filter(|a| candidates.iter().any(|c| c.id == a.account_id))
        .filter(|a| usage.get(&a.account_id).copied().unwrap_or(0) == 1)
        .cloned()
        .collect()
}
