//! The records of webhooks: each organization's endpoints, the outbox of deliveries made from
//! the audit log (one per event and endpoint, created once whatever the number of processes,
//! because the audit cursor advances in the same transaction), and each attempt.
use chrono::{DateTime, Utc};
use keyplane_core::audit::AuditAction;
use uuid::Uuid;

use crate::{Result, StoreError};

/// An organization's webhook endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub org_id: Uuid,
    pub url: String,
    /// The events it is sent; empty: every event.
    pub events: Vec<AuditAction>,
    /// Its signing secret, sealed under the platform's sealing key.
    pub sealed_secret: Vec<u8>,
    /// Audit entries up to this sequence number happened before it existed: never sent.
    pub after_seq: i64,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("sealed_secret", &"<sealed>")
            .field("after_seq", &self.after_seq)
            .finish()
    }
}

impl Webhook {
    /// Whether it is sent `action`.
    pub fn wants(&self, action: AuditAction) -> bool {
        self.events.is_empty() || self.events.contains(&action)
    }
}

/// The stored form of an event list: comma-separated names, '' for every event.
pub(crate) fn events_column(events: &[AuditAction]) -> String {
    events
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_events(s: &str) -> Result<Vec<AuditAction>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|e| StoreError::Corrupt(format!("webhook event: {e}")))
        })
        .collect()
}

/// Where a delivery is in its life. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its `next_attempt_at` (or being attempted: a claim pushes that time to the
    /// end of the claimer's lease).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<DeliveryState> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(StoreError::Corrupt(format!("delivery state {other:?}"))),
        }
    }
}

/// A delivery to create: one event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook_id: Uuid,
    pub org_id: Uuid,
    pub audit_seq: i64,
    pub event: AuditAction,
    /// The JSON body, the same on every attempt.
    pub payload: String,
}

/// One event for one endpoint, with where its attempts stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: Uuid,
    pub org_id: Uuid,
    pub audit_seq: i64,
    pub event: AuditAction,
    pub payload: String,
    pub state: DeliveryState,
    /// Attempts claimed so far (the one under way included).
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// The last attempt's HTTP status; None when it got no answer (or none was made).
    pub last_status: Option<i32>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One attempt of a delivery, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The HTTP status answered; None when there was no answer (refused, timed out).
    pub status: Option<i32>,
    /// What went wrong, empty on success.
    pub error: String,
    pub millis: i64,
}

/// The result of attempt `attempt` of delivery `delivery_id`, and what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub delivery_id: i64,
    pub attempt: DeliveryAttempt,
    /// Delivered, Failed (given up) or Pending again at `next_attempt_at`.
    pub next: DeliveryState,
    pub next_attempt_at: DateTime<Utc>,
}

/// A delivery and its attempts, oldest attempt first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLog {
    pub delivery: Delivery,
    pub attempts: Vec<DeliveryAttempt>,
}
