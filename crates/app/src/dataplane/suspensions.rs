//! The datacenters whose key may no longer be used, and why: consulted before every data
//! access. It fails closed: if the lock was poisoned (a thread panicked while holding it),
//! nobody can tell which datacenters are suspended, so every access is refused until the
//! process restarts, rather than serving data whose key may have been revoked.
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Instant;

/// The reason given for every refused access once the registry is unusable.
pub(crate) const UNKNOWN_SUSPENSIONS: &str = "keyplane cannot tell whether this datacenter's key may be used (its \
     suspension registry failed); data access is refused until the server restarts";

#[derive(Default)]
pub(crate) struct Suspensions {
    /// Why, and since when in this process (so a sync from an older read of the store never
    /// lifts a suspension made after that read).
    reasons: RwLock<HashMap<String, (String, Instant)>>,
}

impl Suspensions {
    pub(crate) fn suspend(&self, dc_id: &str, reason: &str) {
        // Recorded even in a poisoned map: a suspension must never be lost.
        let mut m = self.reasons.write().unwrap_or_else(|e| e.into_inner());
        m.insert(dc_id.to_string(), (reason.to_string(), Instant::now()));
    }

    pub(crate) fn resume(&self, dc_id: &str) {
        let mut m = self.reasons.write().unwrap_or_else(|e| e.into_inner());
        m.remove(dc_id);
    }

    /// Why access to the datacenter is refused, if it is.
    pub(crate) fn reason(&self, dc_id: &str) -> Option<String> {
        match self.reasons.read() {
            Ok(m) => m.get(dc_id).map(|(r, _)| r.clone()),
            Err(_) => Some(UNKNOWN_SUSPENSIONS.to_string()),
        }
    }

    /// Makes this registry what the store said at `read_at`: `suspended` (every suspended
    /// datacenter, with its reason) is added, and a suspension the store no longer has is
    /// lifted unless it was made after `read_at`. Returns the datacenters newly suspended
    /// here, whose open files the caller closes.
    pub(crate) fn sync(&self, suspended: &[(String, String)], read_at: Instant) -> Vec<String> {
        let mut m = self.reasons.write().unwrap_or_else(|e| e.into_inner());
        let mut added = vec![];
        let listed: HashSet<&str> = suspended.iter().map(|(id, _)| id.as_str()).collect();
        m.retain(|id, (_, since)| listed.contains(id.as_str()) || *since > read_at);
        for (id, reason) in suspended {
            match m.get_mut(id) {
                Some((r, _)) if r == reason => {}
                Some((r, _)) => *r = reason.clone(),
                None => {
                    m.insert(id.clone(), (reason.clone(), Instant::now()));
                    added.push(id.clone());
                }
            }
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_adopts_the_store_and_keeps_newer_suspensions() {
        let s = Suspensions::default();
        s.suspend("gone", "the key is disabled");
        let read_at = Instant::now();
        // Suspended here after the store was read: that read cannot know of it.
        s.suspend("newer", "revoked by the customer");
        let added = s.sync(&[("a".into(), "revoked by the customer".into())], read_at);
        assert_eq!(added, vec!["a".to_string()]);
        assert_eq!(s.reason("a").as_deref(), Some("revoked by the customer"));
        assert_eq!(s.reason("gone"), None, "the store resumed it");
        assert_eq!(
            s.reason("newer").as_deref(),
            Some("revoked by the customer")
        );
        // A later read that lists neither lifts both.
        assert!(s.sync(&[], Instant::now()).is_empty());
        assert_eq!((s.reason("a"), s.reason("newer")), (None, None));
        // A reason changed in the store changes here, and is not new.
        s.suspend("b", "the key is disabled");
        let changed = s.sync(
            &[("b".into(), "the key was deleted".into())],
            Instant::now(),
        );
        assert!(changed.is_empty());
        assert_eq!(s.reason("b").as_deref(), Some("the key was deleted"));
    }

    #[test]
    fn suspends_and_resumes() {
        let s = Suspensions::default();
        assert_eq!(s.reason("a"), None);
        s.suspend("a", "the key is disabled");
        assert_eq!(s.reason("a").as_deref(), Some("the key is disabled"));
        assert_eq!(s.reason("b"), None);
        s.resume("a");
        assert_eq!(s.reason("a"), None);
    }

    #[test]
    fn a_poisoned_registry_refuses_every_datacenter() {
        let s = Suspensions::default();
        s.suspend("a", "the key is disabled");
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = s.reasons.write().unwrap();
            panic!("a bug while the registry is locked");
        }));
        assert!(poisoned.is_err());
        assert!(s.reasons.is_poisoned());
        // Not only the one known to be suspended: nothing can be trusted any more.
        assert_eq!(s.reason("b").as_deref(), Some(UNKNOWN_SUSPENSIONS));
        assert_eq!(s.reason("a").as_deref(), Some(UNKNOWN_SUSPENSIONS));
        // A resume cannot reopen access either.
        s.resume("b");
        assert_eq!(s.reason("b").as_deref(), Some(UNKNOWN_SUSPENSIONS));
        // And a suspension is still recorded.
        s.suspend("c", "revoked");
        assert!(s.reasons.read().is_err());
    }
}
