//! Revoke on demand and deregistration.
//!
//! Revoke: the customer cuts the platform off a key through keyplane, without
//! touching their KMS, and restores it after a live check. Revoking suspends every datacenter
//! under the key in the store's transaction that marks the key REVOKED; this process drops
//! their data keys at once and every other one within its suspension sync interval. Nothing
//! resumes them (the store refuses to) until the customer unrevokes; deployments under a
//! revoked key are refused.
//!
//! Deregister: a key no live datacenter is encrypted under can be removed (a wrong one, or
//! one every database has left), which frees its slot for another key.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::keys::REVOKED_REASON;
use keyplane_core::{DbType, KeyStatus, Permission, Provider};
use keyplane_store::{CustomerKey, DeleteKeyOutcome, KeyStatusUpdate};

use super::service::key_service;
use super::{KeyStatusDetail, Keys, slot_target};
use crate::audit::{reason_of, record, record_for};
use crate::auth::Requester;
use crate::error::{AppError, AppResult, ConflictReason, Resource};
use crate::jobs::refresh_database_status;
use crate::regions::{check_region, parse_provider};

/// One live check at a time per customer key in this process: a check makes and revokes a
/// grant of its own on the key (AWS), which a concurrent check of the same key would see and
/// revoke too.
#[derive(Default)]
pub(crate) struct KeyCheckLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyCheckLocks {
    pub(crate) fn of(&self, key_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key_id.to_string()).or_default().clone()
    }
}

/// Refuses a deployment under a revoked key, with what to do about it.
pub(crate) fn deployable(key: &CustomerKey) -> AppResult<()> {
    if key.status == KeyStatus::Revoked {
        return Err(AppError::KeyCheckFailed(format!(
            "the customer key {} for {} databases in {} {} is revoked; unrevoke it \
             (POST …/provider/{}/region/{}/unrevoke) before deploying under it",
            key.key_id, key.db_type, key.provider, key.region, key.provider, key.region
        )));
    }
    Ok(())
}

impl Keys<'_> {
    /// Revokes the platform's use of the key: the key becomes REVOKED and every datacenter
    /// under it SUSPENDED with the reason, its data key dropped. Revoking a revoked key
    /// suspends its datacenters again and answers the same.
    pub async fn revoke(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<KeyStatusDetail> {
        let action = AuditAction::CmkRevoke;
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkWrite, action, &target)
            .await?;
        let result = self.revoke_checked(who, db_type, provider, region).await;
        self.finish(who, action, &target, result).await
    }

    /// Deregisters the key, unless a live datacenter of its type is encrypted under it (409,
    /// naming them). Answers with the key as it was.
    pub async fn deregister(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<CustomerKey> {
        let action = AuditAction::CmkDeregister;
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkWrite, action, &target)
            .await?;
        let result = async {
            let p = self.slot_provider(who, provider, region)?;
            match self
                .0
                .store
                .delete_customer_key(who.org_id(), db_type, p, region)
                .await?
            {
                DeleteKeyOutcome::Deleted(key) => Ok(*key),
                DeleteKeyOutcome::NotRegistered => Err(AppError::NotFound(Resource::CustomerKey {
                    db_type,
                    provider: p,
                    region: region.to_string(),
                })),
                DeleteKeyOutcome::InUse(datacenters) => {
                    let key = self.slot_key(who.org_id(), db_type, p, region).await?;
                    Err(AppError::Conflict(ConflictReason::KeyInUse {
                        db_type,
                        provider: p,
                        region: region.to_string(),
                        key_id: key.key_id,
                        datacenters,
                    }))
                }
            }
        }
        .await;
        let (outcome, reason) = match &result {
            Ok(k) => (AuditOutcome::Success, format!("deregistered {}", k.key_id)),
            Err(e) => (AuditOutcome::Failure, reason_of(e)),
        };
        record_for(self.0, who, action, &target, outcome, &reason).await;
        result
    }

    /// The key registered in the slot, or the 404 that says none is.
    pub(super) async fn slot_key(
        &self,
        org: uuid::Uuid,
        db_type: DbType,
        provider: Provider,
        region: &str,
    ) -> AppResult<CustomerKey> {
        self.0
            .store
            .get_customer_key(org, db_type, provider, region)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(Resource::CustomerKey {
                    db_type,
                    provider,
                    region: region.to_string(),
                })
            })
    }

    /// The slot's provider, parsed, in a region the organization may use.
    pub(super) fn slot_provider(
        &self,
        who: &Requester,
        provider: &str,
        region: &str,
    ) -> AppResult<Provider> {
        let provider = parse_provider(provider)?;
        check_region(&self.0.config, &who.org, provider, region)?;
        Ok(provider)
    }

    /// Records how a revoke or unrevoke ended (`result` carries the audit reason) and answers
    /// with the key's status.
    async fn finish(
        &self,
        who: &Requester,
        action: AuditAction,
        target: &str,
        result: AppResult<(CustomerKey, String)>,
    ) -> AppResult<KeyStatusDetail> {
        let (outcome, reason) = match &result {
            Ok((_, reason)) => (AuditOutcome::Success, reason.clone()),
            Err(e) => (AuditOutcome::Failure, reason_of(e)),
        };
        record_for(self.0, who, action, target, outcome, &reason).await;
        let (key, _) = result?;
        Ok(self.with_facts(key).await)
    }

    async fn revoke_checked(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<(CustomerKey, String)> {
        let app = self.0;
        let provider = self.slot_provider(who, provider, region)?;
        let org = who.org_id();
        let now = Utc::now();
        let reason = format!(
            "{REVOKED_REASON} ({} at {}); unrevoke the key to resume",
            who.client_id,
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let suspended = app
            .store
            .revoke_customer_key(org, db_type, provider, region, &reason, now)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(Resource::CustomerKey {
                    db_type,
                    provider,
                    region: region.to_string(),
                })
            })?;
        // The store has it; now this process refuses at once (the others follow it).
        for id in &suspended {
            app.data.suspend(id, &reason);
            app.data.forget(id).await;
        }
        let key = self.slot_key(org, db_type, provider, region).await?;
        // One read of the key's datacenters for their databases, rather than one per datacenter.
        let dcs = app
            .store
            .live_datacenters_of_key(org, &key.key_id, region)
            .await?;
        for dc in dcs.iter().filter(|d| suspended.contains(&d.id)) {
            refresh_database_status(app, dc.database_id).await?;
            record(
                app,
                org,
                who.client_id.clone(),
                AuditAction::DatacenterSuspend,
                &format!("{} {}", dc.id, dc.key_id),
                AuditOutcome::Success,
                &reason,
            )
            .await;
        }
        tracing::warn!(org = %org, db_type = %db_type, provider = %provider, region,
            datacenters = suspended.len(), "customer key revoked by the customer");
        Ok((key, format!("{} datacenters suspended", suspended.len())))
    }

    /// Ends a revocation after the registration's live check of the key passes (the key stays
    /// revoked when it fails, with the reason), then checks its datacenters as the monitor
    /// does, which resumes them. Unrevoking a key that is not revoked changes nothing.
    pub async fn unrevoke(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<KeyStatusDetail> {
        let action = AuditAction::CmkUnrevoke;
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkWrite, action, &target)
            .await?;
        let result = self.unrevoke_checked(who, db_type, provider, region).await;
        self.finish(who, action, &target, result).await
    }

    async fn unrevoke_checked(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
    ) -> AppResult<(CustomerKey, String)> {
        let app = self.0;
        let provider = self.slot_provider(who, provider, region)?;
        let org = who.org_id();
        let key = self.slot_key(org, db_type, provider, region).await?;
        let lock = app.key_checks.of(&key.key_id);
        let _checking = lock.lock().await;
        // Read again under the lock: a concurrent unrevoke may have finished meanwhile.
        let key = self.slot_key(org, db_type, provider, region).await?;
        if key.status != KeyStatus::Revoked {
            return Ok((key, "the key was not revoked".to_string()));
        }
        let service = key_service(provider)?;
        let parsed = service.parse(&app.config, &key.key_id, &key.region)?;
        let (identity, login) = self
            .login_for_check(org, self.key_identity(&key), &key.key_id, None, None)
            .await?;
        let checks = service
            .live_check(app, &identity, org, &parsed, login.as_ref())
            .await?;
        let dcs: Vec<_> = app
            .store
            .live_datacenters_of_key(org, &key.key_id, &key.region)
            .await?;
        let update = KeyStatusUpdate {
            key_id: key.key_id.clone(),
            status: if dcs.is_empty() {
                KeyStatus::Available
            } else {
                KeyStatus::InUse
            },
            status_reason: None,
            checked_at: Utc::now(),
            check_ok: true,
            check_message: format!(
                "unrevoked; live check passed: {} ({} KMS calls)",
                checks.passed.join(", "),
                checks.kms_calls
            ),
        };
        app.store
            .unrevoke_customer_key(org, db_type, provider, region, &update)
            .await?;
        // The datacenters are suspended "unrevoked, resuming after its check": this is it (the
        // list read above; the store resumes by the rows as they are now).
        app.monitor().check_datacenters(&dcs).await?;
        let key = self.slot_key(org, db_type, provider, region).await?;
        Ok((
            key,
            format!("live check passed; {} datacenters checked", dcs.len()),
        ))
    }
}
