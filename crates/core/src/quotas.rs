//! Per-organization quotas: how many databases, datacenters (regions of databases) and
//! application tokens one organization may hold at once. The rule is pure; the store applies
//! it inside the transaction that creates, so concurrent creations cannot overshoot.
use std::fmt;

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Databases that are not TERMINATED.
    Databases,
    /// Datacenters (one per region of a database) that are not TERMINATED.
    Datacenters,
    /// Application tokens that are not revoked.
    Tokens,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 3] = [
        QuotaKind::Databases,
        QuotaKind::Datacenters,
        QuotaKind::Tokens,
    ];

    /// The plural noun messages use.
    pub fn noun(self) -> &'static str {
        match self {
            QuotaKind::Databases => "databases",
            QuotaKind::Datacenters => "datacenters",
            QuotaKind::Tokens => "application tokens",
        }
    }

    /// The operator's setting for it: the configuration file's key; the flag is
    /// `--max-…` and the variable `KEYPLANE_MAX_…` of the same name.
    pub fn setting(self) -> &'static str {
        match self {
            QuotaKind::Databases => "max_databases",
            QuotaKind::Datacenters => "max_datacenters",
            QuotaKind::Tokens => "max_tokens",
        }
    }

    /// What the organization can do itself to get under the quota again.
    fn remedy(self) -> &'static str {
        match self {
            QuotaKind::Databases => "terminate a database you no longer need",
            QuotaKind::Datacenters => "remove a region or terminate a database you no longer need",
            QuotaKind::Tokens => "revoke a token you no longer use",
        }
    }
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// The most of each kind one organization may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub databases: u32,
    pub datacenters: u32,
    pub tokens: u32,
}

impl Quotas {
    /// No limit at all: the operator's own tools and tests that are not about quotas.
    pub const UNLIMITED: Quotas = Quotas {
        databases: u32::MAX,
        datacenters: u32::MAX,
        tokens: u32::MAX,
    };
    /// Defaults: far above what one team runs by hand, far below what a runaway script
    /// creates (a generated-input run once made 188 databases in one organization).
    pub const DEFAULT_DATABASES: u32 = 50;
    /// Three regions for each of the default number of databases.
    pub const DEFAULT_DATACENTERS: u32 = 150;
    pub const DEFAULT_TOKENS: u32 = 100;

    pub fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Databases => self.databases,
            QuotaKind::Datacenters => self.datacenters,
            QuotaKind::Tokens => self.tokens,
        }
    }

    /// Whether `adding` more of `kind` fit beside the `in_use` ones the organization holds.
    /// `u32::MAX` is no limit.
    pub fn check(&self, kind: QuotaKind, in_use: u64, adding: u64) -> Result<(), QuotaExceeded> {
        let limit = self.limit(kind);
        if limit != u32::MAX && in_use.saturating_add(adding) > u64::from(limit) {
            Err(QuotaExceeded { kind, limit })
        } else {
            Ok(())
        }
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            databases: Quotas::DEFAULT_DATABASES,
            datacenters: Quotas::DEFAULT_DATACENTERS,
            tokens: Quotas::DEFAULT_TOKENS,
        }
    }
}

/// A creation refused because the organization holds as many of `kind` as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub kind: QuotaKind,
    pub limit: u32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = self.kind.setting();
        let flag = setting.replace('_', "-");
        write!(
            f,
            "your organization has reached its quota of {limit} {noun}: {remedy} and retry, or ask the platform \
             operator to raise the quota (--{flag}, KEYPLANE_{env} or {setting} in the configuration file)",
            limit = self.limit,
            noun = self.kind.noun(),
            remedy = self.kind.remedy(),
            env = setting.to_ascii_uppercase(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_admits_up_to_its_limit_and_says_how_to_raise_it() {
        let q = Quotas {
            databases: 2,
            ..Quotas::default()
        };
        assert!(q.check(QuotaKind::Databases, 1, 1).is_ok());
        let e = q.check(QuotaKind::Databases, 2, 1).unwrap_err();
        assert_eq!(
            e,
            QuotaExceeded {
                kind: QuotaKind::Databases,
                limit: 2
            }
        );
        let m = e.to_string();
        assert!(m.contains("quota of 2 databases"), "{m}");
        assert!(m.contains("--max-databases"), "{m}");
        assert!(m.contains("KEYPLANE_MAX_DATABASES"), "{m}");
        assert!(m.contains("max_databases in the configuration file"), "{m}");
        // Unlimited never refuses, even at the counter's end.
        assert!(
            Quotas::UNLIMITED
                .check(QuotaKind::Tokens, u64::MAX, 1)
                .is_ok()
        );
        let zero = Quotas {
            tokens: 0,
            ..Quotas::default()
        };
        assert!(zero.check(QuotaKind::Tokens, 0, 1).is_err());
    }
}
