//! Replacing a slot's key, and moving a datacenter onto it.
//!
//! Replace: the new key passes the same live check as a registration, then the slot's row is
//! swapped in one transaction that also checks the slot still holds the key the request
//! started from. New datacenters get the new key; existing ones stay under the key they are
//! encrypted under (the key's status lists them as previous keys), because a customer's
//! databases never switch keys unless the customer asks.
//!
//! Rewrap: the customer asks for one datacenter to move. Its data key (never its data) is
//! unwrapped with the old key and wrapped with the new one, the result is proven by unwrapping it under
//! the new key and comparing with the old unwrap, and only then does one transaction swap the
//! datacenter's key of record. The datacenter is under exactly one key at every moment, so a
//! crash at any point leaves it readable.
use keyplane_core::audit::AuditAction;
use keyplane_core::{DatabaseStatus, DbType, KeyStatus, Permission};
use keyplane_kms::KmsError;
use keyplane_store::{Datacenter, KeyKind, ReplaceKeyOutcome, Rewrap, RewrapOutcome};
use uuid::Uuid;

use super::service::{key_service, problem_for};
use super::{KeyRegistration, KeyStatusDetail, Keys, checked_record, slot_target};
use crate::audit::{reason_of, record_for, record_result};
use crate::auth::Requester;
use crate::dataplane::datacenter_context;
use crate::error::{AppError, AppResult, ConflictReason, Resource, RewrapRefusal};
use keyplane_core::audit::AuditOutcome;

impl Keys<'_> {
    /// Replaces the slot's key by the one `req` names, after its live check. The same key
    /// again changes nothing; a revoked key is not replaced (unrevoke it first).
    pub async fn replace(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
        req: &KeyRegistration,
    ) -> AppResult<KeyStatusDetail> {
        let action = AuditAction::CmkReplace;
        let target = slot_target(db_type, provider, region);
        self.require(who, Permission::OrgCmkWrite, action, &target)
            .await?;
        let result = self
            .replace_checked(who, db_type, provider, region, req)
            .await;
        let (outcome, reason) = match &result {
            Ok((_, reason)) => (AuditOutcome::Success, reason.clone()),
            Err(e) => (AuditOutcome::Failure, reason_of(e)),
        };
        record_for(self.0, who, action, &target, outcome, &reason).await;
        let (detail, _) = result?;
        Ok(detail)
    }

    async fn replace_checked(
        &self,
        who: &Requester,
        db_type: DbType,
        provider: &str,
        region: &str,
        req: &KeyRegistration,
    ) -> AppResult<(KeyStatusDetail, String)> {
        let slot_provider = self.slot_provider(who, provider, region)?;
        if let [(given, key)] = req.keys.as_slice()
            && (*given != slot_provider || key.region != region)
        {
            return Err(AppError::invalid(
                given.as_str(),
                format!(
                    "the body names a key for {given} {}, but the path is the {slot_provider} {region} slot; a \
                     replacement stays in its slot",
                    key.region
                ),
            ));
        }
        let org = who.org_id();
        // Nothing to replace is said before anything about the new key.
        let current = self.slot_key(org, db_type, slot_provider, region).await?;
        let (_, _, parsed) = self.validate(who, db_type, req)?;
        let key_id = parsed.stored();
        if current.key_id == key_id {
            return Ok((
                self.with_facts(current).await,
                "already the slot's key".into(),
            ));
        }
        let revoked = |k: &keyplane_store::CustomerKey| {
            AppError::Conflict(ConflictReason::ReplaceRevoked {
                db_type,
                provider: slot_provider,
                region: region.to_string(),
                key_id: k.key_id.clone(),
            })
        };
        if current.status == KeyStatus::Revoked {
            return Err(revoked(&current));
        }
        let identity = self
            .0
            .accounts()
            .platform_identity(org, slot_provider, region)
            .await?;
        let given = req.keys.first().and_then(|(_, k)| k.login.as_ref());
        let (identity, login) = self
            .login_for_check(org, identity, &key_id, given, Some(&current.key_id))
            .await?;
        let checks = {
            let lock = self.0.key_checks.of(&key_id);
            let _checking = lock.lock().await;
            key_service(slot_provider)?
                .live_check(self.0, &identity, org, &parsed, login.as_ref())
                .await?
        };
        let record = checked_record(
            who,
            db_type,
            slot_provider,
            region.to_string(),
            key_id,
            &identity,
            &checks,
        );
        if req.dry_run {
            let reason = format!(
                "dry run: {} would replace {}",
                record.key_id, current.key_id
            );
            let mut detail = self.with_facts(current).await;
            detail.key = record;
            return Ok((detail, reason));
        }
        self.keep_login(org, slot_provider, &record.key_id, login.as_ref())
            .await?;
        match self
            .0
            .store
            .replace_customer_key(&current.key_id, &record)
            .await?
        {
            ReplaceKeyOutcome::Replaced(was) => {
                let reason = format!("replaced {} by {}", was.key_id, record.key_id);
                Ok((self.with_facts(record).await, reason))
            }
            ReplaceKeyOutcome::Revoked(k) => Err(revoked(&k)),
            // A concurrent replacement by the same key: the same answer.
            ReplaceKeyOutcome::Changed(k) if k.key_id == record.key_id => {
                Ok((self.with_facts(*k).await, "already the slot's key".into()))
            }
            ReplaceKeyOutcome::Changed(_) => {
                Err(AppError::Conflict(ConflictReason::KeyChangedMeanwhile {
                    db_type,
                    provider: slot_provider,
                    region: region.to_string(),
                }))
            }
            ReplaceKeyOutcome::NotRegistered => Err(AppError::NotFound(Resource::CustomerKey {
                db_type,
                provider: slot_provider,
                region: region.to_string(),
            })),
        }
    }

    /// Moves a datacenter's data key to its region's current key. A datacenter already under
    /// it is answered as it is.
    pub async fn rewrap(
        &self,
        who: &Requester,
        database_id: Uuid,
        datacenter_id: &str,
    ) -> AppResult<Datacenter> {
        let action = AuditAction::DatacenterRewrap;
        self.require(who, Permission::OrgCmkWrite, action, datacenter_id)
            .await?;
        let result = self.rewrap_checked(who, database_id, datacenter_id).await;
        let detail = match &result {
            Ok((dc, Some(from))) => format!("moved from {from} to {}", dc.key_id),
            Ok((_, None)) => "already under the region's key".to_string(),
            Err(_) => String::new(),
        };
        record_result(self.0, who, action, datacenter_id, &result, &detail).await;
        Ok(result?.0)
    }

    /// The datacenter after the rewrap, and the key this request moved it from (None when it
    /// was already under the region's key).
    async fn rewrap_checked(
        &self,
        who: &Requester,
        database_id: Uuid,
        datacenter_id: &str,
    ) -> AppResult<(Datacenter, Option<String>)> {
        let app = self.0;
        let org = who.org_id();
        let db = app
            .store
            .get_database(org, database_id)
            .await?
            .ok_or(AppError::NotFound(Resource::Database(database_id)))?;
        let dc = app
            .store
            .get_datacenter(datacenter_id)
            .await?
            .filter(|d| d.database_id == db.id && d.status != DatabaseStatus::Terminated)
            .ok_or_else(|| {
                AppError::NotFound(Resource::Datacenter {
                    database: database_id,
                    datacenter: datacenter_id.to_string(),
                })
            })?;
        if dc.key_kind != KeyKind::Customer {
            return Err(refused(RewrapRefusal::PlatformKeyed));
        }
        let key = self
            .slot_key(org, db.db_type, dc.provider, &dc.region)
            .await?;
        if key.key_id == dc.key_id {
            return Ok((dc, None));
        }
        if key.status == KeyStatus::Revoked {
            return Err(refused(RewrapRefusal::DestinationRevoked {
                key_id: key.key_id,
            }));
        }
        if dc.pending_wrapped_data_key.is_some() {
            return Err(refused(RewrapRefusal::Rotating));
        }
        let wrapped = match (&dc.wrapped_data_key, dc.status) {
            (Some(w), DatabaseStatus::Active | DatabaseStatus::Suspended) => w.clone(),
            _ => return Err(refused(RewrapRefusal::NotReady(dc.status))),
        };
        // The datacenter's own identity acts on both keys (a serverless datacenter's is its
        // provider ID), so the new key must let in the identity that will use it.
        let kms = app.data.key_provider(&dc).await?;
        let context = datacenter_context(&dc);
        let kms_refusal = |e: KmsError, key_id: &str| {
            if e.kind.is_transient() {
                AppError::KmsUnavailable(format!(
                    "the KMS did not answer while moving datacenter {} to key {key_id}; nothing was changed, \
                     retry later",
                    dc.id
                ))
            } else {
                AppError::KeyCheckFailed(format!(
                    "{}; nothing was changed",
                    problem_for(dc.provider, &e.kind, key_id, &e.message)
                ))
            }
        };
        // Unwrapped, wrapped under the new key, and proven before the swap: the new wrapping
        // opens under the new key to the same data key. (A ReEncrypt would keep the data key
        // inside AWS KMS, but the proof needs it here anyway.)
        let data_key = kms
            .decrypt(&dc.key_id, &wrapped, &context)
            .await
            .map_err(|e| kms_refusal(e, &dc.key_id))?;
        let moved = kms
            .encrypt(&key.key_id, &data_key, &context)
            .await
            .map_err(|e| kms_refusal(e, &key.key_id))?;
        let proof = kms
            .decrypt(&key.key_id, &moved, &context)
            .await
            .map_err(|e| kms_refusal(e, &key.key_id))?;
        if proof != data_key {
            return Err(AppError::KeyCheckFailed(format!(
                "key {} did not give back the data key it was given to wrap; nothing was changed",
                key.key_id
            )));
        }
        let rewrap = Rewrap {
            datacenter_id: dc.id.clone(),
            db_type: db.db_type,
            from_key_id: dc.key_id.clone(),
            from_wrapped: wrapped,
            to_key_id: key.key_id.clone(),
            to_account: dc.provider_account.clone(),
            to_wrapped: moved,
        };
        let outcome = app.store.rewrap_datacenter(&rewrap).await?;
        let now = app
            .store
            .get_datacenter(&dc.id)
            .await?
            .ok_or_else(|| AppError::bug(format!("datacenter {} vanished", dc.id)))?;
        match outcome {
            RewrapOutcome::Rewrapped => Ok((now, Some(rewrap.from_key_id))),
            // A concurrent rewrap to the same key won: the same answer.
            RewrapOutcome::Stale if now.key_id == key.key_id => Ok((now, None)),
            RewrapOutcome::Stale | RewrapOutcome::DestinationChanged => {
                Err(AppError::Conflict(ConflictReason::KeyChangedMeanwhile {
                    db_type: db.db_type,
                    provider: dc.provider,
                    region: dc.region.clone(),
                }))
            }
        }
    }
}

fn refused(r: RewrapRefusal) -> AppError {
    AppError::Conflict(ConflictReason::Rewrap(r))
}
