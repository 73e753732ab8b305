//! When each database's data was last used (`lastUsageTime` in the DevOps API), recorded
//! cheaply: a data access only looks up the database in an in-memory map; at most once per
//! interval (a minute) per database it hands the time to a background task that writes it to
//! the store, so no request waits for that write and the store sees one write per busy
//! database a minute. The recorded time is therefore up to a minute old.
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;

use crate::App;

/// How often a busy database's use is written to the store.
pub const USE_RECORD_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct UsageClock {
    /// When each database's use was last handed to the store.
    recorded: RwLock<HashMap<Uuid, Instant>>,
    every: Duration,
}

impl Default for UsageClock {
    fn default() -> Self {
        UsageClock::every(USE_RECORD_INTERVAL)
    }
}

impl UsageClock {
    pub(crate) fn every(every: Duration) -> UsageClock {
        UsageClock {
            recorded: RwLock::new(HashMap::new()),
            every,
        }
    }

    /// Whether a use of `database` at `now` should be written: the first one, then the first
    /// one at least `every` after the last written. Concurrent callers get one `true`.
    fn due(&self, database: Uuid, now: Instant) -> bool {
        let fresh = |last: Option<&Instant>| {
            last.is_some_and(|t| now.saturating_duration_since(*t) < self.every)
        };
        // The common case, a database used in the last minute, takes the shared lock only.
        if let Ok(map) = self.recorded.read()
            && fresh(map.get(&database))
        {
            return false;
        }
        let mut map = self.recorded.write().unwrap_or_else(|e| e.into_inner());
        if fresh(map.get(&database)) {
            return false;
        }
        map.insert(database, now);
        true
    }
}

impl App {
    /// Notes that the database's data is being used; off the request path.
    pub(crate) fn note_use(&self, database: Uuid) {
        if !self.usage.due(database, Instant::now()) {
            return;
        }
        let store = self.store.clone();
        let at = Utc::now();
        // Outside a runtime (never the case for a data access) the use goes unrecorded.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.record_database_use(database, at).await {
                    tracing::warn!(error = %e, %database, "could not record the database's last use");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_is_written_at_most_once_per_interval_per_database() {
        let clock = UsageClock::every(Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        assert!(clock.due(a, t0));
        assert!(!clock.due(a, t0 + Duration::from_secs(1)));
        assert!(!clock.due(a, t0 + Duration::from_secs(59)));
        assert!(clock.due(b, t0 + Duration::from_secs(1)), "per database");
        assert!(clock.due(a, t0 + Duration::from_secs(60)));
        assert!(!clock.due(a, t0 + Duration::from_secs(61)));
        // A clock reading from before the last write (another thread's older Instant) is not
        // a new interval.
        assert!(!clock.due(a, t0));
    }

    #[test]
    fn eight_threads_at_once_write_once() {
        let clock = std::sync::Arc::new(UsageClock::every(Duration::from_secs(60)));
        let db = Uuid::new_v4();
        let now = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..1000).filter(|_| clock.due(db, now)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1);
    }
}
