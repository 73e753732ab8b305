//! Key health: every in-use customer key is checked on an interval with its key service's
//! health read (AWS DescribeKey; GCP the key's primary version) and a Decrypt of each
//! datacenter's wrapped data key. A key the platform can no longer use
//! suspends its datacenters at once; errors that say nothing about the key (timeouts,
//! throttling, 5xx) suspend nothing until they have lasted the grace period. When the key
//! is usable again, the datacenters return to ACTIVE by themselves. An organization (or one
//! of its keys) that chose alert-only keeps its datacenters serving, with the reason in their
//! message, for the chosen time after the key first failed; then they are suspended. Each
//! failure raises one `cmk.alert` in the audit log, and its end another.
//!
//! A round checks its datacenters `key_check_concurrency` at a time (the checks mostly wait
//! on the KMS), asks DescribeKey once per key whatever the number of its datacenters, and
//! records each key's status once; a datacenter whose check fails to be recorded (a store
//! error) is logged and counted, and the round goes on with the others.
//!
//! Each round also checks the organization binding of keys whose binding was never proven
//! (registered before registration proved it): while such a key's policy lets the platform
//! use it for any organization, the key carries a warning (not a status: it keeps working)
//! and the audit log records its first appearance.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::keys::{ALERT_ONLY_PREFIX, OnInaccessible, REVOKED_REASON};
use keyplane_core::{DatabaseStatus, DbType, KeyStatus, Provider};
use keyplane_kms::{ErrorKind, KmsError, PlatformIdentity};
use keyplane_store::{CustomerKey, Datacenter, KeyBinding, KeyStatusUpdate};
use uuid::Uuid;

use crate::App;
use crate::dataplane::datacenter_context;
use crate::error::{AppError, AppResult};
use crate::jobs::refresh_database_status;
use crate::keys::problem_for;
use crate::keys::registration::{BindingProbe, probe_binding, unbound_warning};
use crate::keys::service::key_service;

/// Who the audit log says acted when the monitor suspends or resumes a datacenter.
pub const MONITOR_ACTOR: &str = "system:key-monitor";

/// Runs the check every `key_check_interval` until `shutdown` resolves.
pub async fn run_monitor(app: App, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(app.config.key_check_interval) => {}
        }
        if let Err(e) = app.monitor().check_all().await {
            tracing::error!(error = %e, "key health check failed");
        }
    }
}

/// A key as DescribeKey sees it: its ID, and the account and region asking.
type KeyRef = (String, String, String);
/// A DescribeKey answer, kept for the round.
type Described = Result<(), (ErrorKind, String)>;
/// The customer key a datacenter's status is recorded on.
type KeySlot = (Uuid, DbType, Provider, String);
/// A slot and the key a verdict is about: after a replacement, a datacenter still under the
/// slot's previous key is checked with it, and its verdict is not the new key's.
type CheckedKey = (KeySlot, String);

/// What one round did.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Datacenters whose key was checked.
    pub checked: usize,
    /// Distinct keys among them (= DescribeKey calls made).
    pub keys: usize,
    /// Datacenters whose check could not be recorded (see [`Self::first_error`]).
    pub errors: usize,
    pub first_error: Option<AppError>,
    pub elapsed: Duration,
}

/// A datacenter's verdict on its key, the worst of which is recorded on the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Usable,
    /// A KMS error that says nothing about the key, within the grace period.
    Failing(String),
    Inaccessible(String),
}

/// What the checks of one round share.
#[derive(Default)]
struct Round {
    described: tokio::sync::Mutex<HashMap<KeyRef, Arc<tokio::sync::OnceCell<Described>>>>,
    db_types: tokio::sync::Mutex<HashMap<Uuid, Option<DbType>>>,
    /// The keys revoked when the round began: their datacenters are suspended, never probed.
    revoked: HashMap<KeySlot, CustomerKey>,
    /// What each organization chose an inaccessible key to do, by (organization, key ID);
    /// the empty key ID is the organization's own choice.
    choices: HashMap<(Uuid, String), OnInaccessible>,
}

impl Round {
    /// The key's own choice, else its organization's, else suspend.
    fn choice(&self, org: Uuid, key_id: &str) -> OnInaccessible {
        self.choices
            .get(&(org, key_id.to_string()))
            .or_else(|| self.choices.get(&(org, String::new())))
            .copied()
            .unwrap_or(OnInaccessible::Suspend)
    }
}

pub struct Monitor<'a>(pub(crate) &'a App);

impl Monitor<'_> {
    /// Checks every live customer-keyed datacenter now: one round.
    pub async fn check_all(&self) -> AppResult<()> {
        self.round().await.map(|_| ())
    }

    /// One round, with what it did. Fails only when the datacenters cannot be listed; a
    /// datacenter whose check fails is counted in the report and logged.
    pub async fn round(&self) -> AppResult<RoundReport> {
        let dcs = self.0.store.live_customer_datacenters().await?;
        let mut report = self.check_report(dcs).await;
        // The binding checks come after the health checks and, like them, a failure is
        // counted in the report and does not end the round.
        if let Err(e) = self.check_bindings().await {
            report.errors += 1;
            self.0.counters.monitor_check_error();
            tracing::warn!(error = %e, "checking the keys' organization binding failed; the round goes on");
            if report.first_error.is_none() {
                report.first_error = Some(e);
            }
        }
        self.0.counters.monitor_round();
        if let Some(e) = &report.first_error {
            tracing::error!(failed = report.errors, checked = report.checked, error = %e,
                "key health round finished with datacenters whose check failed");
        } else {
            tracing::debug!(checked = report.checked, keys = report.keys, elapsed = ?report.elapsed, "key health round");
        }
        Ok(report)
    }

    /// Checks the binding of every key whose binding is not proven yet.
    pub async fn check_bindings(&self) -> AppResult<()> {
        // A revoked key is not called at all, for its binding either.
        for key in self.0.store.unbound_customer_keys().await? {
            if key.status != KeyStatus::Revoked {
                self.check_binding(&key).await?;
            }
        }
        Ok(())
    }

    /// Probes one key's organization binding and records what it found: the proof (the
    /// warning, if any, is gone) or the warning, with an audit entry for each change.
    /// A KMS failure decides nothing (the health check reports the key's state).
    pub async fn check_binding(&self, key: &CustomerKey) -> AppResult<()> {
        // Other key services get an identity per organization: nothing to prove by context.
        if key.provider != Provider::Aws {
            return Ok(());
        }
        let app = self.0;
        let kms = match app
            .data
            .provider_for(&key_identity(app, key), key.org_id, &key.key_id)
            .await
        {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(key = %key.key_id, error = %e, "binding check: no KMS connection");
                return Ok(());
            }
        };
        let target = format!(
            "{}/{}/{} {}",
            key.db_type, key.provider, key.region, key.key_id
        );
        let (binding, action, reason) =
            match probe_binding(kms.as_ref(), &key.key_id, key.org_id).await {
                BindingProbe::Bound => (
                    KeyBinding::Bound { at: Utc::now() },
                    AuditAction::CmkBound,
                    "the key policy refuses other organizations".to_string(),
                ),
                BindingProbe::Unbound => {
                    let warning = unbound_warning(key.org_id);
                    (
                        KeyBinding::Unbound {
                            warning: warning.clone(),
                        },
                        AuditAction::CmkUnbound,
                        warning,
                    )
                }
                BindingProbe::Unknown(why) => {
                    tracing::debug!(key = %key.key_id, why, "binding check inconclusive");
                    return Ok(());
                }
            };
        let changed = app
            .store
            .record_key_binding(key.org_id, key.db_type, key.provider, &key.region, &binding)
            .await?;
        if changed {
            if action == AuditAction::CmkUnbound {
                tracing::warn!(key = %key.key_id, org = %key.org_id, "customer key usable for any organization");
            }
            crate::audit::record(
                app,
                key.org_id,
                MONITOR_ACTOR.to_string(),
                action,
                &target,
                AuditOutcome::Success,
                &reason,
            )
            .await;
        }
        Ok(())
    }

    /// Checks these datacenters now (a round, or one key's on request): one DescribeKey
    /// per key, and a Decrypt of each datacenter's own wrapped data key. Every datacenter is
    /// checked even if one fails; the first failure is returned after.
    pub async fn check_datacenters(&self, dcs: &[Datacenter]) -> AppResult<()> {
        let report = self.check_report(dcs.to_vec()).await;
        match report.first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn check_report(&self, dcs: Vec<Datacenter>) -> RoundReport {
        let started = Instant::now();
        let app = self.0.clone();
        // Without the revoked keys a check could resume what the customer revoked; without
        // the choices an alert-only organization would be suspended at once. Either missing,
        // the round does nothing.
        let (revoked, choices) = match round_facts(&app).await {
            Ok(facts) => facts,
            Err(e) => {
                return RoundReport {
                    errors: 1,
                    first_error: Some(e),
                    elapsed: started.elapsed(),
                    ..RoundReport::default()
                };
            }
        };
        let dcs = Arc::new(dcs);
        let round = Arc::new(Round {
            revoked,
            choices,
            ..Round::default()
        });
        let next = Arc::new(AtomicUsize::new(0));
        let workers = app.config.key_check_concurrency.clamp(1, dcs.len().max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (app, dcs, round, next) = (app.clone(), dcs.clone(), round.clone(), next.clone());
            set.spawn(async move {
                let mut verdicts: Vec<(CheckedKey, Verdict)> = vec![];
                let mut errors: Vec<AppError> = vec![];
                let mut checked = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dc) = dcs.get(i) else { break };
                    match check_one(&app, dc, &round).await {
                        Ok(Some(v)) => {
                            checked += 1;
                            verdicts.push(v);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            checked += 1;
                            app.counters.monitor_check_error();
                            tracing::warn!(datacenter = %dc.id, error = %e, "checking a datacenter's key failed; the round goes on");
                            errors.push(e);
                        }
                    }
                }
                (verdicts, errors, checked)
            });
        }
        let mut report = RoundReport::default();
        let mut per_key: HashMap<CheckedKey, Verdict> = HashMap::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((verdicts, errors, checked)) => {
                    report.checked += checked;
                    report.errors += errors.len();
                    if report.first_error.is_none() {
                        report.first_error = errors.into_iter().next();
                    }
                    for (slot, v) in verdicts {
                        let worst = per_key.entry(slot).or_insert(Verdict::Usable);
                        if v > *worst {
                            *worst = v;
                        }
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::error!(error = %e, "a key check task failed");
                    if report.first_error.is_none() {
                        report.first_error = Some(AppError::internal(e));
                    }
                }
            }
        }
        // One status write per key.
        for (((org, db_type, provider, region), key_id), verdict) in per_key {
            let r = match &verdict {
                Verdict::Usable => {
                    record_key(
                        &app,
                        (org, db_type, provider, &region, &key_id),
                        KeyStatus::InUse,
                        None,
                        true,
                        "the key is usable",
                    )
                    .await
                }
                Verdict::Failing(reason) => {
                    record_check_only(
                        &app,
                        (org, db_type, provider, &region, &key_id),
                        false,
                        reason,
                    )
                    .await
                }
                Verdict::Inaccessible(reason) => {
                    record_key(
                        &app,
                        (org, db_type, provider, &region, &key_id),
                        KeyStatus::Inaccessible,
                        Some(reason),
                        false,
                        reason,
                    )
                    .await
                }
            };
            if let Err(e) = r {
                report.errors += 1;
                app.counters.monitor_check_error();
                tracing::warn!(error = %e, region, "recording a key's status failed; the round goes on");
                if report.first_error.is_none() {
                    report.first_error = Some(e);
                }
            }
        }
        report.keys = round.described.lock().await.len();
        report.elapsed = started.elapsed();
        report
    }

    /// Suspends the datacenter: its cached key and open file are dropped at once.
    pub async fn suspend(&self, dc: &Datacenter, reason: &str) -> AppResult<()> {
        suspend(self.0, dc, reason).await
    }
}

/// The identity that acts on a registered key: the account it was validated with.
fn key_identity(app: &App, key: &CustomerKey) -> PlatformIdentity {
    app.config
        .identity(key.provider, &key.provider_account, &key.region)
}

/// Whether the key is in a state that can be used, asking the KMS once per key and round
/// (concurrent checks of the same key wait for the one answer).
async fn describe(
    dc: &Datacenter,
    kms: &dyn keyplane_kms::KeyProvider,
    round: &Round,
) -> Result<(), KmsError> {
    let id = (
        dc.key_id.clone(),
        dc.provider_account.clone(),
        dc.region.clone(),
    );
    let cell = round.described.lock().await.entry(id).or_default().clone();
    // What "usable" means is the key service's: AWS the key's state, GCP its primary version's.
    let answer = cell
        .get_or_init(|| async {
            match key_service(dc.provider) {
                Ok(service) => service
                    .health(kms, &dc.key_id)
                    .await
                    .map_err(|e| (e.kind, e.message)),
                Err(e) => Err((ErrorKind::Unsupported, e.to_string())),
            }
        })
        .await;
    answer
        .clone()
        .map_err(|(kind, message)| KmsError::new(kind, "DescribeKey", message))
}

/// The result of asking the KMS whether the datacenter's key still works.
async fn probe(state: &App, dc: &Datacenter, round: &Round) -> Result<(), KmsError> {
    let kms = state.data.key_provider(dc).await?;
    describe(dc, kms.as_ref(), round).await?;
    if let Some(wrapped) = &dc.wrapped_data_key {
        kms.decrypt(&dc.key_id, wrapped, &datacenter_context(dc))
            .await?;
    }
    Ok(())
}

async fn db_type(state: &App, dc: &Datacenter, round: &Round) -> AppResult<Option<DbType>> {
    if let Some(t) = round.db_types.lock().await.get(&dc.database_id) {
        return Ok(*t);
    }
    let t = state
        .store
        .get_database(dc.org_id, dc.database_id)
        .await?
        .map(|d| d.db_type);
    round.db_types.lock().await.insert(dc.database_id, t);
    Ok(t)
}

/// What a round reads once before its checks: the revoked keys by slot, and each
/// organization's choice of what an inaccessible key does.
async fn round_facts(
    app: &App,
) -> AppResult<(
    HashMap<KeySlot, CustomerKey>,
    HashMap<(Uuid, String), OnInaccessible>,
)> {
    let revoked = app
        .store
        .revoked_customer_keys()
        .await?
        .into_iter()
        .map(|k| ((k.org_id, k.db_type, k.provider, k.region.clone()), k))
        .collect();
    let choices = app
        .store
        .on_inaccessible_choices(None)
        .await?
        .into_iter()
        .map(|c| ((c.org_id, c.key_id.unwrap_or_default()), c.choice))
        .collect();
    Ok((revoked, choices))
}

/// Checks one datacenter and acts on it (suspend, resume, the grace period's start); returns
/// the key it is recorded on and its verdict, `None` if it is not checked (not serving yet,
/// or its database is gone).
async fn check_one(
    state: &App,
    dc: &Datacenter,
    round: &Round,
) -> AppResult<Option<(CheckedKey, Verdict)>> {
    if !matches!(
        dc.status,
        DatabaseStatus::Active | DatabaseStatus::Suspended | DatabaseStatus::Maintenance
    ) || dc.wrapped_data_key.is_none()
    {
        return Ok(None);
    }
    let Some(t) = db_type(state, dc, round).await? else {
        return Ok(None);
    };
    let slot = (dc.org_id, t, dc.provider, dc.region.clone());
    if let Some(key) = round.revoked.get(&slot).filter(|k| k.key_id == dc.key_id) {
        // Revoked by the customer: whatever the KMS says, it stays suspended (one that a job
        // activated after the revoke is suspended now), and the key's status is left alone.
        if dc.status != DatabaseStatus::Suspended || !dc.message.starts_with(REVOKED_REASON) {
            let reason = key.status_reason.as_deref().unwrap_or(REVOKED_REASON);
            suspend(state, dc, reason).await?;
        }
        return Ok(None);
    }
    let now = Utc::now();
    let verdict = match probe(state, dc, round).await {
        Ok(()) => {
            if dc.kms_failing_since.is_some() {
                state.store.set_kms_failing_since(&dc.id, None).await?;
            }
            if dc.status != DatabaseStatus::Suspended && dc.message.starts_with(ALERT_ONLY_PREFIX) {
                state
                    .store
                    .set_datacenter_status(&dc.id, dc.status, "")
                    .await?;
                alert(state, dc, "resolved: the key is usable again").await;
            }
            // The store refuses to resume a datacenter whose key was revoked since the round
            // began; then it stays as it is.
            if dc.status == DatabaseStatus::Suspended
                && state.store.resume_datacenter(&dc.id).await?
            {
                state.data.resume(&dc.id);
                refresh_database_status(state, dc.database_id).await?;
                audit(
                    state,
                    dc,
                    AuditAction::DatacenterResume,
                    "the key is usable again",
                )
                .await;
                alert(state, dc, "resolved: the key is usable again; resumed").await;
                tracing::info!(datacenter = %dc.id, "key usable again; datacenter ACTIVE");
            }
            Verdict::Usable
        }
        Err(e) if e.kind.is_transient() => {
            let since = dc.kms_failing_since.unwrap_or(now);
            if dc.kms_failing_since.is_none() {
                state.store.set_kms_failing_since(&dc.id, Some(now)).await?;
            }
            let grace =
                chrono::Duration::from_std(state.config.kms_grace_period).unwrap_or_default();
            let reason = format!(
                "{} (failing since {}; grace period {} s)",
                problem_for(dc.provider, &e.kind, &dc.key_id, &e.message),
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                state.config.kms_grace_period.as_secs()
            );
            if now - since >= grace {
                on_failure(state, dc, round, &reason, now).await?;
                Verdict::Inaccessible(reason)
            } else {
                tracing::warn!(datacenter = %dc.id, error = %e, "KMS error that says nothing about the key; within the grace period");
                Verdict::Failing(reason)
            }
        }
        Err(e) => {
            let reason = problem_for(dc.provider, &e.kind, &dc.key_id, &e.message);
            on_failure(state, dc, round, &reason, now).await?;
            Verdict::Inaccessible(reason)
        }
    };
    Ok(Some(((slot, dc.key_id.clone()), verdict)))
}

/// A key found unusable for `dc`: suspended at once, or, where the customer chose alert-only,
/// left serving with the reason in its message until the chosen time since the key first
/// failed has passed. Either way the alert is raised once per failure.
async fn on_failure(
    state: &App,
    dc: &Datacenter,
    round: &Round,
    reason: &str,
    now: chrono::DateTime<Utc>,
) -> AppResult<()> {
    let choice = round.choice(dc.org_id, &dc.key_id);
    let serving = dc.status != DatabaseStatus::Suspended;
    if let OnInaccessible::AlertOnly { for_secs } = choice
        && serving
    {
        let since = dc.kms_failing_since.unwrap_or(now);
        if dc.kms_failing_since.is_none() {
            state.store.set_kms_failing_since(&dc.id, Some(now)).await?;
        }
        let until = since + chrono::Duration::seconds(i64::from(for_secs));
        if now < until {
            let message = format!(
                "{ALERT_ONLY_PREFIX} {reason}; serving until {} as the organization chose, then suspended",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            if dc.message != message {
                state
                    .store
                    .set_datacenter_status(&dc.id, dc.status, &message)
                    .await?;
            }
            if !dc.message.starts_with(ALERT_ONLY_PREFIX) {
                alert(state, dc, &message).await;
            }
            return Ok(());
        }
    }
    if serving && !dc.message.starts_with(ALERT_ONLY_PREFIX) {
        alert(state, dc, &format!("{reason}; suspended")).await;
    }
    suspend(state, dc, reason).await
}

/// The alert on a datacenter's key: in the audit log (the webhooks' source), the log, and the
/// alerts counter.
async fn alert(state: &App, dc: &Datacenter, message: &str) {
    state.counters.key_alert();
    tracing::warn!(datacenter = %dc.id, key = %dc.key_id, message, "key alert");
    audit(state, dc, AuditAction::CmkAlert, message).await;
}

/// Suspends the datacenter: the store first, then this process's registry (which then drops
/// the open file and key), so the suspension sync never reads a store that lacks it after
/// the registry has it.
pub(crate) async fn suspend(state: &App, dc: &Datacenter, reason: &str) -> AppResult<()> {
    let newly = dc.status != DatabaseStatus::Suspended;
    if newly || dc.message != reason {
        state
            .store
            .set_datacenter_status(&dc.id, DatabaseStatus::Suspended, reason)
            .await?;
    }
    state.data.suspend(&dc.id, reason);
    state.data.forget(&dc.id).await;
    if newly || dc.message != reason {
        refresh_database_status(state, dc.database_id).await?;
        if newly {
            state.counters.suspension();
            audit(state, dc, AuditAction::DatacenterSuspend, reason).await;
            tracing::warn!(datacenter = %dc.id, reason, "datacenter suspended");
        }
    }
    Ok(())
}

async fn audit(state: &App, dc: &Datacenter, action: AuditAction, reason: &str) {
    crate::audit::record(
        state,
        dc.org_id,
        MONITOR_ACTOR.to_string(),
        action,
        &format!("{} {}", dc.id, dc.key_id),
        AuditOutcome::Success,
        reason,
    )
    .await;
}

async fn record_key(
    state: &App,
    (org, t, provider, region, key_id): (Uuid, DbType, Provider, &str, &str),
    status: KeyStatus,
    reason: Option<&str>,
    ok: bool,
    message: &str,
) -> AppResult<()> {
    state
        .store
        .update_customer_key_status(
            org,
            t,
            provider,
            region,
            &KeyStatusUpdate {
                key_id: key_id.to_string(),
                status,
                status_reason: reason.map(str::to_string),
                checked_at: Utc::now(),
                check_ok: ok,
                check_message: message.to_string(),
            },
        )
        .await?;
    Ok(())
}

/// Records a failed check without changing the key's status (grace period).
async fn record_check_only(
    state: &App,
    (org, t, provider, region, key_id): (Uuid, DbType, Provider, &str, &str),
    ok: bool,
    message: &str,
) -> AppResult<()> {
    let Some(key) = state
        .store
        .get_customer_key(org, t, provider, region)
        .await?
    else {
        return Ok(());
    };
    state
        .store
        .update_customer_key_status(
            org,
            t,
            provider,
            region,
            &KeyStatusUpdate {
                key_id: key_id.to_string(),
                status: key.status,
                status_reason: key.status_reason.clone(),
                checked_at: Utc::now(),
                check_ok: ok,
                check_message: message.to_string(),
            },
        )
        .await?;
    Ok(())
}
