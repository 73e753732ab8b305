//! Counters of what the application did since start, and gauges of what it holds now, for the
//! operator's metrics (the transport renders them) and the benchmarks.
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    data_key_unwraps: AtomicU64,
    jobs_claimed: AtomicU64,
    jobs_taken_over: AtomicU64,
    job_lease_renewals: AtomicU64,
    job_leases_lost: AtomicU64,
    jobs_done: AtomicU64,
    jobs_failed: AtomicU64,
    monitor_rounds: AtomicU64,
    monitor_check_errors: AtomicU64,
    suspensions: AtomicU64,
    key_alerts: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhook_retries: AtomicU64,
    webhooks_given_up: AtomicU64,
}

/// Prometheus' two kinds used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (since start).
    Counter,
    /// A value now.
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One metric's name, help text, kind and value.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: u64,
}

impl Counters {
    pub(crate) fn data_key_unwrap(&self) {
        self.data_key_unwraps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_claimed(&self) {
        self.jobs_claimed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_taken_over(&self) {
        self.jobs_taken_over.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_lease_renewed(&self) {
        self.job_lease_renewals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_lease_lost(&self) {
        self.job_leases_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_done(&self) {
        self.jobs_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_failed(&self) {
        self.jobs_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn monitor_round(&self) {
        self.monitor_rounds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn monitor_check_error(&self) {
        self.monitor_check_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn suspension(&self) {
        self.suspensions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn key_alert(&self) {
        self.key_alerts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn webhook_delivered(&self) {
        self.webhooks_delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn webhook_retry(&self) {
        self.webhook_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn webhook_given_up(&self) {
        self.webhooks_given_up.fetch_add(1, Ordering::Relaxed);
    }

    /// KMS Decrypt calls made to unwrap data keys.
    pub fn data_key_unwraps(&self) -> u64 {
        self.data_key_unwraps.load(Ordering::Relaxed)
    }

    /// Completed monitor rounds.
    pub fn monitor_rounds(&self) -> u64 {
        self.monitor_rounds.load(Ordering::Relaxed)
    }

    /// Every counter, in a stable order (the data plane's gauges are `DataPlane::gauges`).
    pub fn all(&self) -> Vec<Counter> {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counter = |name, help, value| Counter {
            name,
            help,
            kind: MetricKind::Counter,
            value,
        };
        vec![
            counter(
                "keyplane_data_key_unwraps_total",
                "KMS Decrypt calls that unwrapped a datacenter's data key.",
                v(&self.data_key_unwraps),
            ),
            counter(
                "keyplane_jobs_claimed_total",
                "Background jobs this process claimed (taken-over ones included).",
                v(&self.jobs_claimed),
            ),
            counter(
                "keyplane_jobs_taken_over_total",
                "Jobs this process took over from a replica whose lease had passed.",
                v(&self.jobs_taken_over),
            ),
            counter(
                "keyplane_job_lease_renewals_total",
                "Leases of running jobs this process renewed.",
                v(&self.job_lease_renewals),
            ),
            counter(
                "keyplane_job_leases_lost_total",
                "Jobs this process stopped or whose outcome it could not record because another replica had taken them over.",
                v(&self.job_leases_lost),
            ),
            counter(
                "keyplane_jobs_done_total",
                "Background jobs finished.",
                v(&self.jobs_done),
            ),
            counter(
                "keyplane_jobs_failed_total",
                "Background jobs given up.",
                v(&self.jobs_failed),
            ),
            counter(
                "keyplane_key_monitor_rounds_total",
                "Completed rounds of the key health monitor.",
                v(&self.monitor_rounds),
            ),
            counter(
                "keyplane_key_monitor_check_errors_total",
                "Datacenter checks of the key monitor that failed to record their result (the round went on).",
                v(&self.monitor_check_errors),
            ),
            counter(
                "keyplane_datacenter_suspensions_total",
                "Datacenters suspended because their key could not be used.",
                v(&self.suspensions),
            ),
            counter(
                "keyplane_key_alerts_total",
                "Alerts the key monitor raised: a key failing its check, or usable again after.",
                v(&self.key_alerts),
            ),
            counter(
                "keyplane_webhooks_delivered_total",
                "Webhook deliveries this process made that the endpoint accepted (2xx).",
                v(&self.webhooks_delivered),
            ),
            counter(
                "keyplane_webhook_retries_total",
                "Webhook attempts that failed and were scheduled again.",
                v(&self.webhook_retries),
            ),
            counter(
                "keyplane_webhooks_given_up_total",
                "Webhook deliveries given up after their last attempt.",
                v(&self.webhooks_given_up),
            ),
        ]
    }
}
