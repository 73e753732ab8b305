//! A region's customer key as the customer follows its life, per region as the best peer
//! shows it (CockroachDB Cloud's CMEK region status): derived from the key's status and the
//! datacenters of its slot each time it is read, never stored, so it cannot drift from them.
use serde::{Deserialize, Serialize};

use crate::{DatabaseStatus, KeyStatus};

/// Where a region's key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyRegionState {
    /// A datacenter is being deployed under the key (its data key being made and wrapped).
    Enabling,
    /// The key is usable and everything of the region that should be under it is.
    Enabled,
    /// A datacenter under the key is re-encrypting its file under a new data key.
    Rotating,
    /// The slot's key was replaced and datacenters are still under an earlier key, waiting
    /// to be re-wrapped onto this one.
    Rewrapping,
    /// The customer revoked the key and some datacenter under it still serves (its
    /// suspension is under way).
    Revoking,
    /// Revoked by the customer: every datacenter under it suspended.
    Revoked,
    /// The platform cannot use the key (the key service's reason is the key's).
    Inaccessible,
    /// Deploying a datacenter under the key failed.
    EnableFailed,
}

impl KeyRegionState {
    pub const ALL: &'static [KeyRegionState] = &[
        KeyRegionState::Enabling,
        KeyRegionState::Enabled,
        KeyRegionState::Rotating,
        KeyRegionState::Rewrapping,
        KeyRegionState::Revoking,
        KeyRegionState::Revoked,
        KeyRegionState::Inaccessible,
        KeyRegionState::EnableFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyRegionState::Enabling => "ENABLING",
            KeyRegionState::Enabled => "ENABLED",
            KeyRegionState::Rotating => "ROTATING",
            KeyRegionState::Rewrapping => "REWRAPPING",
            KeyRegionState::Revoking => "REVOKING",
            KeyRegionState::Revoked => "REVOKED",
            KeyRegionState::Inaccessible => "INACCESSIBLE",
            KeyRegionState::EnableFailed => "ENABLE_FAILED",
        }
    }

    /// Whether a live datacenter of the slot (`under_key`: under this key, not an earlier
    /// one; `rotating`: its data key rotation under way) is one the state is about: the
    /// databases a customer looks at for it.
    pub fn concerns(self, status: DatabaseStatus, under_key: bool, rotating: bool) -> bool {
        match self {
            KeyRegionState::Rotating => under_key && rotating,
            KeyRegionState::Enabling => under_key && is_deploying(status),
            KeyRegionState::EnableFailed => under_key && status == DatabaseStatus::Error,
            KeyRegionState::Rewrapping => !under_key,
            KeyRegionState::Revoking => under_key && status != DatabaseStatus::Suspended,
            KeyRegionState::Revoked | KeyRegionState::Inaccessible | KeyRegionState::Enabled => {
                under_key
            }
        }
    }
}

impl std::fmt::Display for KeyRegionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_deploying(s: DatabaseStatus) -> bool {
    matches!(
        s,
        DatabaseStatus::Pending
            | DatabaseStatus::Preparing
            | DatabaseStatus::Prepared
            | DatabaseStatus::Initializing
    )
}

/// The state of a key from its status, the statuses of the live datacenters under it, how
/// many live datacenters of its slot are still under an earlier key, and how many under it
/// are rotating their data key. The first that applies wins: what the customer did (revoke),
/// then what the key service says, then a failed or running deployment, a running
/// rotation, then a pending re-wrap.
pub fn key_region_state(
    status: KeyStatus,
    under_key: &[DatabaseStatus],
    under_earlier_keys: usize,
    rotating: usize,
) -> KeyRegionState {
    match status {
        KeyStatus::Revoked => {
            if under_key.iter().all(|s| *s == DatabaseStatus::Suspended) {
                KeyRegionState::Revoked
            } else {
                KeyRegionState::Revoking
            }
        }
        KeyStatus::Inaccessible => KeyRegionState::Inaccessible,
        KeyStatus::Available | KeyStatus::InUse => {
            if under_key.contains(&DatabaseStatus::Error) {
                KeyRegionState::EnableFailed
            } else if under_key.iter().any(|s| is_deploying(*s)) {
                KeyRegionState::Enabling
            } else if rotating > 0 {
                KeyRegionState::Rotating
            } else if under_earlier_keys > 0 {
                KeyRegionState::Rewrapping
            } else {
                KeyRegionState::Enabled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DatabaseStatus::*;

    #[test]
    fn the_first_state_that_applies_wins() {
        use KeyRegionState as S;
        assert_eq!(
            key_region_state(KeyStatus::Available, &[], 0, 0),
            S::Enabled
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Active, Active], 0, 0),
            S::Enabled
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Active, Initializing], 0, 0),
            S::Enabling
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Pending], 0, 0),
            S::Enabling
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Initializing, Error], 2, 0),
            S::EnableFailed,
            "a failure outranks what is still running"
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Active], 1, 0),
            S::Rewrapping
        );
        assert_eq!(
            key_region_state(KeyStatus::Available, &[], 3, 0),
            S::Rewrapping
        );
        assert_eq!(
            key_region_state(KeyStatus::Inaccessible, &[Active, Error], 1, 0),
            S::Inaccessible
        );
        assert_eq!(
            key_region_state(KeyStatus::Revoked, &[Suspended, Active], 0, 0),
            S::Revoking
        );
        assert_eq!(
            key_region_state(KeyStatus::Revoked, &[Suspended], 0, 0),
            S::Revoked
        );
        assert_eq!(key_region_state(KeyStatus::Revoked, &[], 0, 0), S::Revoked);
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Active, Active], 1, 1),
            S::Rotating,
            "a running rotation outranks a pending re-wrap"
        );
        assert_eq!(
            key_region_state(KeyStatus::InUse, &[Initializing, Active], 0, 1),
            S::Enabling
        );
        assert_eq!(
            key_region_state(KeyStatus::Inaccessible, &[Active], 0, 1),
            S::Inaccessible
        );
    }

    #[test]
    fn each_state_concerns_its_own_datacenters() {
        use KeyRegionState as S;
        assert!(
            S::Enabling.concerns(Initializing, true, false)
                && !S::Enabling.concerns(Active, true, false)
        );
        assert!(
            S::EnableFailed.concerns(Error, true, false)
                && !S::EnableFailed.concerns(Error, false, false)
        );
        assert!(
            S::Rewrapping.concerns(Active, false, false)
                && !S::Rewrapping.concerns(Active, true, false)
        );
        assert!(
            S::Revoking.concerns(Active, true, false)
                && !S::Revoking.concerns(Suspended, true, false)
        );
        assert!(
            S::Enabled.concerns(Active, true, false) && !S::Enabled.concerns(Active, false, false)
        );
        assert!(
            S::Rotating.concerns(Active, true, true) && !S::Rotating.concerns(Active, true, false)
        );
        for s in S::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
