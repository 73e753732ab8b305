//! The datacenters whose key may no longer be used, and why: consulted before every data
//! access. It fails closed: if the lock was poisoned (a thread panicked while holding it),
//! nobody can tell which datacenters are suspended, so every access is refused until the
//! process restarts, rather than serving data whose key may have been revoked.
use std::collections::HashMap;
use std::sync::RwLock;

/// The reason given for every refused access once the registry is unusable.
pub(crate) const UNKNOWN_SUSPENSIONS: &str = "keyplane cannot tell whether this datacenter's key may be used (its \
     suspension registry failed); data access is refused until the server restarts";

#[derive(Default)]
pub(crate) struct Suspensions {
    reasons: RwLock<HashMap<String, String>>,
}

impl Suspensions {
    pub(crate) fn suspend(&self, dc_id: &str, reason: &str) {
        // Recorded even in a poisoned map: a suspension must never be lost.
        let mut m = self.reasons.write().unwrap_or_else(|e| e.into_inner());
        m.insert(dc_id.to_string(), reason.to_string());
    }

    pub(crate) fn resume(&self, dc_id: &str) {
        let mut m = self.reasons.write().unwrap_or_else(|e| e.into_inner());
        m.remove(dc_id);
    }

    /// Why access to the datacenter is refused, if it is.
    pub(crate) fn reason(&self, dc_id: &str) -> Option<String> {
        match self.reasons.read() {
            Ok(m) => m.get(dc_id).cloned(),
            Err(_) => Some(UNKNOWN_SUSPENSIONS.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
