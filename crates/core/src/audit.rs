//! The audit log's vocabulary and its hash chain: what can be recorded (actions and
//! outcomes as enums, so a misspelt action does not compile), and each entry's hash, which
//! covers its fields and the previous entry's hash, so a changed, inserted or removed entry
//! breaks every hash after it.
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::provider::UnknownName;

macro_rules! names {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $v),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The stored (and hashed) spelling; never changes for a value once released.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
        }
        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(UnknownName { what: $what, given: s.to_string(), expected: vec![$($s),+] }),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

names! {
    /// What an audit entry records.
    AuditAction, "audit action" {
        CmkRegister => "cmk.register",
        /// A registration's every check, nothing stored.
        CmkRegisterDryRun => "cmk.register.dry_run",
        CmkList => "cmk.list",
        CmkGet => "cmk.get",
        CmkStatus => "cmk.status",
        CmkPolicy => "cmk.policy",
        CmkPolicyCheck => "cmk.policy.check",
        /// A key checked on request (the key health monitor's check, run now).
        CmkCheck => "cmk.check",
        /// The key monitor found that a registered key's policy lets the platform use it for
        /// any organization (a key registered before registration proved the binding).
        CmkUnbound => "cmk.binding.unbound",
        /// The key monitor found the key bound to its organization (the warning is gone).
        CmkBound => "cmk.binding.bound",
        /// The customer revoked the platform's use of a key through keyplane.
        CmkRevoke => "cmk.revoke",
        /// The customer restored it, after a live check.
        CmkUnrevoke => "cmk.unrevoke",
        /// The customer removed a key no live database is encrypted under.
        CmkDeregister => "cmk.deregister",
        /// The customer replaced a slot's key by another, after a live check of the new one.
        CmkReplace => "cmk.replace",
        /// The customer chose what an inaccessible key does (suspend, or alert-only for a time),
        /// for the organization or one key.
        CmkOnInaccessible => "cmk.on_inaccessible",
        /// The key monitor raised an alert: a key failed its check (its datacenters suspended,
        /// or serving for the alert-only time).
        CmkAlert => "cmk.alert",
        /// The key's service reports an automatic rotation of the key's own material that is
        /// past due (the key monitor's periodic read of its rotation facts).
        CmkRotationOverdue => "cmk.rotation.overdue",
        DbCreate => "db.create",
        DbTerminate => "db.terminate",
        DbRegionAdd => "db.region.add",
        DbRegionTerminate => "db.region.terminate",
        DbKeyspaceCreate => "db.keyspace.create",
        DbKeyspaceDrop => "db.keyspace.drop",
        /// The key monitor (or a refused data access) suspended a datacenter.
        DatacenterSuspend => "datacenter.suspend",
        DatacenterResume => "datacenter.resume",
        /// A datacenter's data key was moved to its region's current customer key.
        DatacenterRewrap => "datacenter.rewrap",
        /// A datacenter's data key was rotated: its file re-encrypted under a new data key
        /// (on request, or by the schedule).
        DatacenterRotateDataKey => "datacenter.data_key.rotate",
        /// A terminated datacenter's files and wrapped data key were erased
        /// (crypto-shredding).
        DatacenterShred => "datacenter.shred",
        /// An organization added a webhook endpoint.
        WebhookCreate => "webhook.create",
        /// An organization removed one.
        WebhookDelete => "webhook.delete",
        PortalSignin => "portal.signin",
        PortalSigninDev => "portal.signin.dev",
    }
}

names! {
    /// How the recorded action ended.
    AuditOutcome, "audit outcome" {
        Success => "success",
        /// Refused or failed for a reason other than a permission.
        Failure => "failure",
        /// Refused because the caller's role lacks the permission.
        Denied => "denied",
    }
}

/// The hash of the entry before the first one.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an audit entry's hash covers.
pub struct AuditFields<'a> {
    pub seq: i64,
    pub org_id: &'a str,
    /// RFC 3339, millisecond precision, UTC.
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub reason: &'a str,
}

/// Hex SHA-256 over the previous hash and the length-prefixed fields; length prefixes keep
/// field boundaries unambiguous whatever the fields contain.
pub fn entry_hash(prev_hash: &str, f: &AuditFields<'_>) -> String {
    let mut h = Sha256::new();
    let seq = f.seq.to_string();
    for part in [
        prev_hash,
        seq.as_str(),
        f.org_id,
        f.at,
        f.actor,
        f.action,
        f.target,
        f.outcome,
        f.reason,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_outcomes_round_trip_and_stay_spelt_as_stored() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), *a);
        }
        for o in AuditOutcome::ALL {
            assert_eq!(o.as_str().parse::<AuditOutcome>().unwrap(), *o);
        }
        // Stored rows and their hashes use these spellings.
        assert_eq!(
            AuditAction::CmkRegisterDryRun.as_str(),
            "cmk.register.dry_run"
        );
        assert_eq!(
            AuditAction::DbRegionTerminate.as_str(),
            "db.region.terminate"
        );
        assert_eq!(AuditOutcome::Denied.as_str(), "denied");
        assert!("cmk.regster".parse::<AuditAction>().is_err());
        assert!("Success".parse::<AuditOutcome>().is_err());
    }

    fn fields<'a>(reason: &'a str) -> AuditFields<'a> {
        AuditFields {
            seq: 1,
            org_id: "o",
            at: "2026-01-01T00:00:00.000Z",
            actor: "a",
            action: "register",
            target: "t",
            outcome: "success",
            reason,
        }
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = entry_hash(GENESIS, &fields(""));
        assert_eq!(a.len(), 64);
        assert_ne!(a, entry_hash(GENESIS, &fields("x")));
        assert_ne!(a, entry_hash(&a, &fields("")));
        // Boundaries are unambiguous: moving a character between fields changes the hash.
        let mut g = fields("");
        g.actor = "ar";
        g.action = "egister";
        assert_ne!(
            entry_hash(GENESIS, &g),
            entry_hash(
                GENESIS,
                &AuditFields {
                    actor: "are",
                    action: "gister",
                    ..fields("")
                }
            )
        );
    }
}
