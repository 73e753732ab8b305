//! Webhooks: an organization's endpoints for key events, and the dispatcher that delivers
//! them.
//!
//! The audit log is the event source: every successful key or datacenter action it records
//! (see `keyplane_core::webhook::EVENTS`) becomes one delivery per endpoint that wants it.
//! The dispatcher turns new audit entries into deliveries in the transaction that moves the
//! store's cursor, so each event is queued once whatever the number of processes and
//! however often they crash, then claims due deliveries under a lease, posts them signed
//! with the endpoint's secret, and records each attempt: 2xx delivers, anything else retries
//! with an exponential backoff until the last attempt. Posting goes through
//! [`WebhookSender`], which the binary wires to an HTTP client.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use keyplane_core::Permission;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::webhook::{self, EVENTS};
use keyplane_store::{
    AttemptResult, AuditEntry, Delivery, DeliveryAttempt, DeliveryLog, DeliveryState, NewDelivery,
    Webhook,
};
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::App;
use crate::auth::Requester;
use crate::error::{AppError, AppResult, ConflictReason, Resource};

/// What the operator sets about webhooks.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Endpoints one organization may have.
    pub max_per_org: u32,
    /// Accept http and non-public addresses (loopback, private networks): for tests and
    /// development only, since a customer's URL would otherwise reach the platform's own
    /// network.
    pub allow_private_targets: bool,
    /// The wait after a first failed attempt; it doubles after each further one.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// How often the dispatcher looks for new events and due retries when nothing woke it.
    pub poll: Duration,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    /// How long a delivered or given-up delivery stays in the log.
    pub log_retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_per_org: 10,
            allow_private_targets: false,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            // 10 s doubling to an hour: about 13 hours of retries.
            max_attempts: 18,
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            log_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl WebhookSettings {
    /// The wait after failed attempt `n` (from 1).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendFailure(pub String);

/// Posts one delivery. The HTTP client behind it follows no redirect, uses no proxy from the
/// environment, and (unless test targets are allowed) refuses to connect to a non-public
/// address whatever the name resolves to.
#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync {
    /// POSTs `body` as JSON with `headers` to `url`; the answer's status.
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<u16, SendFailure>;
}

/// A webhook just created, with its secret: shown this once, never again.
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: Zeroizing<String>,
}

/// The organization's webhooks.
pub struct Webhooks<'a>(pub(crate) &'a App);

/// The names of every event, as accepted in `events`.
pub fn event_names() -> Vec<&'static str> {
    EVENTS.iter().map(|a| a.as_str()).collect()
}

fn parse_events(given: Option<&[String]>) -> AppResult<Vec<AuditAction>> {
    let Some(given) = given else {
        return Ok(Vec::new());
    };
    if given.is_empty() {
        return Err(AppError::Invalid {
            field: "events",
            message: "events: is empty; omit it to receive every event".to_string(),
        });
    }
    let mut out = Vec::new();
    for name in given {
        let action = name
            .parse::<AuditAction>()
            .ok()
            .filter(|a| webhook::is_event(*a))
            .ok_or_else(|| AppError::Invalid {
                field: "events",
                message: format!(
                    "events: {name:?} is not an event; expected some of {}",
                    event_names().join(", ")
                ),
            })?;
        if !out.contains(&action) {
            out.push(action);
        }
    }
    Ok(out)
}

/// The scheme and host of a URL, as the audit log names an endpoint.
fn host_of(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "(not a URL)".to_string(),
    }
}

/// The record a sealed secret belongs to: moved to another webhook's row, it does not open.
fn aad(org: Uuid, id: Uuid) -> Vec<u8> {
    format!("keyplane webhook secret v1\n{org}\n{id}").into_bytes()
}

impl Webhooks<'_> {
    /// Creates an endpoint for `url`, sent `events` (every event when None). Answers the
    /// secret its deliveries are signed with.
    pub async fn create(
        &self,
        who: &Requester,
        url: &str,
        events: Option<&[String]>,
    ) -> AppResult<CreatedWebhook> {
        let app = self.0;
        // A refusal is audited too, as `denied`.
        let res = match who.require(Permission::OrgCmkWrite) {
            Ok(()) => self.create_checked(who, url, events).await,
            Err(e) => Err(e),
        };
        // The host only: a URL's path or query may carry the receiver's own secret.
        let target = match &res {
            Ok(c) => format!("{} {}", c.webhook.id, host_of(&c.webhook.url)),
            Err(_) => host_of(url),
        };
        crate::audit::record_result(app, who, AuditAction::WebhookCreate, &target, &res, "").await;
        res
    }

    async fn create_checked(
        &self,
        who: &Requester,
        url: &str,
        events: Option<&[String]>,
    ) -> AppResult<CreatedWebhook> {
        let app = self.0;
        let settings = &app.config.webhooks;
        let url =
            webhook::check_target(url.trim(), settings.allow_private_targets).map_err(|e| {
                AppError::Invalid {
                    field: "url",
                    message: e.to_string(),
                }
            })?;
        let events = parse_events(events)?;
        let key = crate::logins::require_sealing_key(&app.config, "webhook secrets")?;
        let org_id = who.org_id();
        let id = Uuid::new_v4();
        let secret = webhook::generate_secret();
        let sealed_secret = key
            .seal(secret.as_bytes(), &aad(org_id, id))
            .map_err(AppError::internal)?;
        let hook = Webhook {
            id,
            org_id,
            url: url.to_string(),
            events,
            sealed_secret,
            after_seq: 0,
            created_at: Utc::now(),
        };
        let webhook = app
            .store
            .create_webhook(&hook, settings.max_per_org)
            .await?
            .ok_or(AppError::Conflict(ConflictReason::TooManyWebhooks {
                limit: settings.max_per_org,
            }))?;
        Ok(CreatedWebhook { webhook, secret })
    }

    /// The organization's endpoints, oldest first.
    pub async fn list(&self, who: &Requester) -> AppResult<Vec<Webhook>> {
        who.require(Permission::OrgCmkRead)?;
        Ok(self.0.store.list_webhooks(Some(who.org_id())).await?)
    }

    /// Removes an endpoint: nothing more is sent to it, and its delivery log goes with it.
    pub async fn delete(&self, who: &Requester, id: Uuid) -> AppResult<()> {
        let app = self.0;
        let res = match who.require(Permission::OrgCmkWrite) {
            Err(e) => Err(e),
            Ok(()) => match app.store.delete_webhook(who.org_id(), id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(AppError::NotFound(Resource::Webhook(id))),
                Err(e) => Err(e.into()),
            },
        };
        crate::audit::record_result(
            app,
            who,
            AuditAction::WebhookDelete,
            &id.to_string(),
            &res,
            "",
        )
        .await;
        res
    }

    /// An endpoint's latest deliveries (`limit`, 1 to 200, default 50), newest first, each
    /// with its attempts.
    pub async fn deliveries(
        &self,
        who: &Requester,
        id: Uuid,
        limit: Option<u32>,
    ) -> AppResult<Vec<DeliveryLog>> {
        who.require(Permission::OrgCmkRead)?;
        let hook = self
            .0
            .store
            .list_webhooks(Some(who.org_id()))
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or(AppError::NotFound(Resource::Webhook(id)))?;
        self.deliveries_of(who, &hook, limit).await
    }

    /// The same for a webhook [`Self::list`] gave (a page showing every endpoint's log reads
    /// the list once).
    pub async fn deliveries_of(
        &self,
        who: &Requester,
        hook: &Webhook,
        limit: Option<u32>,
    ) -> AppResult<Vec<DeliveryLog>> {
        who.require(Permission::OrgCmkRead)?;
        if hook.org_id != who.org_id() {
            return Err(AppError::NotFound(Resource::Webhook(hook.id)));
        }
        let limit = limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::invalid_parameter(
                "limit",
                "limit: must be between 1 and 200",
            ));
        }
        Ok(self
            .0
            .store
            .list_deliveries(hook.org_id, hook.id, limit)
            .await?)
    }
}

/// The body of one event, as every endpoint receives it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventBody<'a> {
    /// The audit entry's sequence number: unique, increasing, the same on every retry.
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    created_at: String,
    organization_id: Uuid,
    actor: &'a str,
    /// What it is about: a datacenter and its key, or a key.
    target: &'a str,
    reason: &'a str,
}

fn payload(e: &AuditEntry) -> String {
    let body = EventBody {
        id: e.seq.to_string(),
        kind: e.action.as_str(),
        created_at: e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        organization_id: e.org_id,
        actor: &e.actor,
        target: &e.target,
        reason: &e.reason,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Audit entries read per step of the outbox.
const OUTBOX_BATCH: u32 = 500;
/// Deliveries claimed per round.
const CLAIM_BATCH: u32 = 32;
/// How often the dispatcher prunes the delivery log.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a claim outlasts its attempt's timeout: time to record the attempt.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// Runs the dispatcher until `shutdown` completes: queues new events, attempts what is due,
/// then waits for an event recorded by this process, or the poll interval.
pub async fn run_dispatcher(app: App, shutdown: impl std::future::Future<Output = ()>) {
    let Some(sender) = app.webhook_sender.clone() else {
        return;
    };
    tokio::pin!(shutdown);
    let mut pruned_at: Option<Instant> = None;
    loop {
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(Instant::now());
            let before = Utc::now()
                - chrono::Duration::from_std(app.config.webhooks.log_retention)
                    .unwrap_or(chrono::Duration::days(30));
            match app.store.prune_deliveries(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "pruned the webhook delivery log"),
                Err(e) => tracing::error!(error = %e, "could not prune the webhook delivery log"),
            }
        }
        if let Err(e) = queue_events(&app).await {
            tracing::error!(error = %e, "could not queue webhook events");
        }
        if let Err(e) = deliver_due(&app, &sender).await {
            tracing::error!(error = %e, "could not deliver webhooks");
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = app.webhook_wake.notified() => {}
            _ = tokio::time::sleep(app.config.webhooks.poll) => {}
        }
    }
}

/// Turns the audit entries after the store's cursor into deliveries. Returns how many it
/// queued.
pub async fn queue_events(app: &App) -> AppResult<usize> {
    let mut queued = 0;
    loop {
        let from = app.store.webhook_cursor().await?;
        let entries = app.store.audit_after(from, OUTBOX_BATCH).await?;
        let Some(to) = entries.last().map(|e| e.seq) else {
            return Ok(queued);
        };
        let mut hooks: BTreeMap<Uuid, Vec<Webhook>> = BTreeMap::new();
        for w in app.store.list_webhooks(None).await? {
            hooks.entry(w.org_id).or_default().push(w);
        }
        let mut deliveries = Vec::new();
        for e in &entries {
            if e.outcome != AuditOutcome::Success || !webhook::is_event(e.action) {
                continue;
            }
            for w in hooks.get(&e.org_id).into_iter().flatten() {
                if w.after_seq < e.seq && w.wants(e.action) {
                    deliveries.push(NewDelivery {
                        webhook_id: w.id,
                        org_id: e.org_id,
                        audit_seq: e.seq,
                        event: e.action,
                        payload: payload(e),
                    });
                }
            }
        }
        if app
            .store
            .enqueue_deliveries(from, to, &deliveries, Utc::now())
            .await?
        {
            queued += deliveries.len();
        }
        if entries.len() < OUTBOX_BATCH as usize {
            return Ok(queued);
        }
    }
}

/// Attempts every delivery due now, a batch at a time, each batch concurrently. Returns how
/// many attempts it made.
pub async fn deliver_due(app: &App, sender: &Arc<dyn WebhookSender>) -> AppResult<usize> {
    let settings = &app.config.webhooks;
    let mut made = 0;
    loop {
        let now = Utc::now();
        // The claim outlasts the attempt (cut at the timeout) and its record, so no other
        // process repeats a live one; a dead process's claims are taken again after it.
        let lease = chrono::Duration::from_std(settings.timeout + CLAIM_MARGIN)
            .unwrap_or(chrono::Duration::seconds(60));
        let claimed = app
            .store
            .claim_deliveries(now, now + lease, CLAIM_BATCH)
            .await?;
        if claimed.is_empty() {
            return Ok(made);
        }
        let hooks: BTreeMap<Uuid, Webhook> = app
            .store
            .list_webhooks(None)
            .await?
            .into_iter()
            .map(|w| (w.id, w))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        let n = claimed.len();
        for d in claimed {
            let Some(w) = hooks.get(&d.webhook_id).cloned() else {
                continue;
            };
            let (app, sender) = (app.clone(), sender.clone());
            tasks.spawn(async move { attempt(&app, &*sender, &w, d).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => tracing::error!(error = %e, "could not record a webhook attempt"),
                Err(e) => tracing::error!(error = %e, "a webhook attempt stopped"),
                Ok(Ok(())) => {}
            }
        }
        made += n;
        if n < CLAIM_BATCH as usize {
            return Ok(made);
        }
    }
}

fn secret_of(app: &App, w: &Webhook) -> Result<Zeroizing<String>, String> {
    let key = app
        .config
        .sealing_key
        .as_ref()
        .ok_or("this process has no sealing key to open the webhook's secret")?;
    let plain = key
        .open(&w.sealed_secret, &aad(w.org_id, w.id))
        .map_err(|e| {
            format!("the webhook's secret does not open under this process's sealing key: {e}")
        })?;
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| "the webhook's secret is not text".to_string())
}

/// One attempt of `d`, and its record.
async fn attempt(app: &App, sender: &dyn WebhookSender, w: &Webhook, d: Delivery) -> AppResult<()> {
    let settings = &app.config.webhooks;
    let started = Instant::now();
    let at: DateTime<Utc> = Utc::now();
    let outcome = match secret_of(app, w) {
        Err(e) => Err(SendFailure(e)),
        Ok(secret) => {
            let headers = [
                (
                    webhook::SIGNATURE_HEADER,
                    webhook::signature(&secret, at.timestamp(), d.payload.as_bytes()),
                ),
                (webhook::EVENT_ID_HEADER, d.audit_seq.to_string()),
                (webhook::EVENT_TYPE_HEADER, d.event.as_str().to_string()),
                (webhook::ATTEMPT_HEADER, d.attempts.to_string()),
            ];
            match tokio::time::timeout(
                settings.timeout,
                sender.post(&w.url, &headers, d.payload.as_bytes()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(SendFailure(format!(
                    "no answer within {} s",
                    settings.timeout.as_secs_f64()
                ))),
            }
        }
    };
    let (status, error) = match &outcome {
        Ok(s) if (200..300).contains(s) => (Some(i32::from(*s)), String::new()),
        Ok(s) => (
            Some(i32::from(*s)),
            format!("the endpoint answered HTTP {s}"),
        ),
        Err(e) => (None, e.0.clone()),
    };
    let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    let (next, next_attempt_at) = if error.is_empty() {
        app.counters.webhook_delivered();
        (DeliveryState::Delivered, at)
    } else if attempts >= settings.max_attempts {
        app.counters.webhook_given_up();
        tracing::warn!(webhook = %w.id, event = d.audit_seq, %error, "webhook delivery given up");
        (DeliveryState::Failed, at)
    } else {
        app.counters.webhook_retry();
        let wait = chrono::Duration::from_std(settings.backoff(attempts))
            .unwrap_or(chrono::Duration::hours(1));
        (DeliveryState::Pending, at + wait)
    };
    app.store
        .record_attempt(&AttemptResult {
            delivery_id: d.id,
            attempt: DeliveryAttempt {
                attempt: d.attempts,
                at,
                status,
                error,
                millis: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            },
            next,
            next_attempt_at,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = WebhookSettings {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 60, 60, 60]);
        assert_eq!(s.backoff(200).as_secs(), 60, "no overflow");
    }

    #[test]
    fn events_are_checked_and_deduplicated() {
        assert_eq!(parse_events(None).unwrap(), vec![]);
        let given = vec!["cmk.revoke".to_string(), "cmk.revoke".to_string()];
        assert_eq!(
            parse_events(Some(&given)).unwrap(),
            vec![AuditAction::CmkRevoke]
        );
        let read = vec!["cmk.list".to_string()];
        let e = parse_events(Some(&read)).unwrap_err().to_string();
        assert!(
            e.contains("\"cmk.list\" is not an event") && e.contains("datacenter.suspend"),
            "{e}"
        );
        assert!(parse_events(Some(&[])).is_err());
    }
}
