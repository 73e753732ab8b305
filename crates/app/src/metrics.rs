//! Counters of what the application did since start, for the operator's metrics (the
//! transport renders them) and the benchmarks.
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    data_key_unwraps: AtomicU64,
    jobs_done: AtomicU64,
    jobs_failed: AtomicU64,
    monitor_rounds: AtomicU64,
    suspensions: AtomicU64,
}

/// One counter's name, help text and value.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
}

impl Counters {
    pub(crate) fn data_key_unwrap(&self) {
        self.data_key_unwraps.fetch_add(1, Ordering::Relaxed);
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

    pub(crate) fn suspension(&self) {
        self.suspensions.fetch_add(1, Ordering::Relaxed);
    }

    /// KMS Decrypt calls made to unwrap data keys.
    pub fn data_key_unwraps(&self) -> u64 {
        self.data_key_unwraps.load(Ordering::Relaxed)
    }

    /// Every counter, in a stable order.
    pub fn all(&self) -> [Counter; 5] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            Counter {
                name: "keyplane_data_key_unwraps_total",
                help: "KMS Decrypt calls that unwrapped a datacenter's data key.",
                value: v(&self.data_key_unwraps),
            },
            Counter {
                name: "keyplane_jobs_done_total",
                help: "Background jobs finished.",
                value: v(&self.jobs_done),
            },
            Counter {
                name: "keyplane_jobs_failed_total",
                help: "Background jobs given up.",
                value: v(&self.jobs_failed),
            },
            Counter {
                name: "keyplane_key_monitor_rounds_total",
                help: "Completed rounds of the key health monitor.",
                value: v(&self.monitor_rounds),
            },
            Counter {
                name: "keyplane_datacenter_suspensions_total",
                help: "Datacenters suspended because their key could not be used.",
                value: v(&self.suspensions),
            },
        ]
    }
}
