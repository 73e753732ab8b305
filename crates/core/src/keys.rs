//! Customer keys: the shape of an AWS key ARN a customer may register, and the status a
//! registered key is in.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A well-formed AWS KMS key ARN: `arn:<partition>:kms:<region>:<account>:key/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKeyArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error(
        "an alias ARN cannot be registered, because an alias can later be pointed at another key; \
         register the key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY_ID) that the alias names now"
    )]
    Alias,
    #[error(
        "a bare key ID or alias is not enough; give the full key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY_ID)"
    )]
    NotAnArn,
    #[error("{0:?} is not a KMS key ARN; expected arn:aws:kms:REGION:ACCOUNT:key/KEY_ID")]
    NotKms(String),
    #[error("the ARN's account {0:?} must be 12 digits")]
    Account(String),
    #[error("the ARN's region {0:?} is not a region name")]
    Region(String),
    #[error("the key ID {0:?} must be a UUID, or mrk- and 32 hex digits for a multi-Region key")]
    KeyId(String),
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n)
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_mrk(s: &str) -> bool {
    s.strip_prefix("mrk-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromStr for AwsKeyArn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, ArnError> {
        let s = s.trim();
        if !s.starts_with("arn:") {
            return Err(if s.starts_with("alias/") {
                ArnError::Alias
            } else {
                ArnError::NotAnArn
            });
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [_, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(ArnError::NotKms(s.to_string()));
        };
        if !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov") || *service != "kms" {
            return Err(ArnError::NotKms(s.to_string()));
        }
        if resource.starts_with("alias/") {
            return Err(ArnError::Alias);
        }
        let Some(key_id) = resource.strip_prefix("key/") else {
            return Err(ArnError::NotKms(s.to_string()));
        };
        if !crate::regions::is_plausible_region_name(region) {
            return Err(ArnError::Region(region.to_string()));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ArnError::Account(account.to_string()));
        }
        if !is_uuid(key_id) && !is_mrk(key_id) {
            return Err(ArnError::KeyId(key_id.to_string()));
        }
        Ok(AwsKeyArn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            key_id: key_id.to_string(),
        })
    }
}

impl fmt::Display for AwsKeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:key/{}",
            self.partition, self.region, self.account, self.key_id
        )
    }
}

/// Where a registered key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyStatus {
    /// Registered and checked; no database uses it yet.
    Available,
    /// At least one database is encrypted under it.
    InUse,
    /// The platform can no longer use it (disabled, deleted, policy changed).
    Inaccessible,
    /// The customer cut the platform off through keyplane itself, whatever the KMS allows:
    /// every datacenter under it is suspended and stays so, and no database is deployed
    /// under it, until the customer unrevokes it.
    Revoked,
}

/// The reason every datacenter under a revoked key shows, and the prefix a revoke's audit
/// entries carry.
pub const REVOKED_REASON: &str = "revoked by the customer";

/// What those datacenters show between an unrevoke and the check that resumes them.
pub const UNREVOKED_REASON: &str = "the customer unrevoked the key; resuming after its check";

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Available => "AVAILABLE",
            KeyStatus::InUse => "IN_USE",
            KeyStatus::Inaccessible => "INACCESSIBLE",
            KeyStatus::Revoked => "REVOKED",
        }
    }
}

impl FromStr for KeyStatus {
    type Err = crate::provider::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AVAILABLE" => Ok(KeyStatus::Available),
            "IN_USE" => Ok(KeyStatus::InUse),
            "INACCESSIBLE" => Ok(KeyStatus::Inaccessible),
            "REVOKED" => Ok(KeyStatus::Revoked),
            _ => Err(crate::provider::UnknownName {
                what: "key status",
                given: s.to_string(),
                expected: vec!["AVAILABLE", "IN_USE", "INACCESSIBLE", "REVOKED"],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns_parse_and_round_trip() {
        let s = "arn:aws:kms:us-east-2:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn: AwsKeyArn = s.parse().unwrap();
        assert_eq!(arn.region, "us-east-2");
        assert_eq!(arn.account, "111111111111");
        assert_eq!(arn.to_string(), s);
        let mrk = "arn:aws:kms:eu-west-1:111111111111:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert!(mrk.parse::<AwsKeyArn>().is_ok());
    }

    #[test]
    fn bad_arns_say_what_to_give_instead() {
        let alias = "arn:aws:kms:us-east-2:111111111111:alias/prod";
        assert_eq!(alias.parse::<AwsKeyArn>().unwrap_err(), ArnError::Alias);
        assert_eq!(
            "alias/prod".parse::<AwsKeyArn>().unwrap_err(),
            ArnError::Alias
        );
        assert_eq!(
            "1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse::<AwsKeyArn>()
                .unwrap_err(),
            ArnError::NotAnArn
        );
        assert!(matches!(
            "arn:aws:s3:::bucket".parse::<AwsKeyArn>().unwrap_err(),
            ArnError::NotKms(_)
        ));
        assert!(matches!(
            "arn:aws:kms:us-east-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse::<AwsKeyArn>(),
            Err(ArnError::Account(_))
        ));
        assert!(matches!(
            "arn:aws:kms:us-east-2:111111111111:key/not-a-key".parse::<AwsKeyArn>(),
            Err(ArnError::KeyId(_))
        ));
        assert!(matches!(
            "arn:aws:kms:US East:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse::<AwsKeyArn>(),
            Err(ArnError::Region(_))
        ));
    }
}

/// What the key monitor does to the datacenters under a key it finds inaccessible, as the
/// customer chose for the organization or for one key (Redis Cloud's choice; CockroachDB and
/// the original suspend only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInaccessible {
    /// Suspend them at once (the default).
    Suspend,
    /// Keep serving them, with an alert, for at most `for_secs` after the key first failed a
    /// check; suspend them then if it still fails.
    AlertOnly { for_secs: u32 },
}

/// What a datacenter's message starts with while its key fails and it still serves.
pub const ALERT_ONLY_PREFIX: &str = "alert-only:";

impl OnInaccessible {
    pub fn action(self) -> &'static str {
        match self {
            OnInaccessible::Suspend => "suspend",
            OnInaccessible::AlertOnly { .. } => "alert-only",
        }
    }

    /// How long a failing key's datacenters keep serving (0 when they are suspended at once).
    pub fn alert_for_secs(self) -> u32 {
        match self {
            OnInaccessible::Suspend => 0,
            OnInaccessible::AlertOnly { for_secs } => for_secs,
        }
    }

    /// From its stored or requested parts: `alert-only` needs a duration of 1 s to `max_secs`.
    pub fn from_parts(action: &str, for_secs: Option<i64>, max_secs: u32) -> Result<Self, String> {
        match (action, for_secs) {
            ("suspend", None) => Ok(OnInaccessible::Suspend),
            ("suspend", Some(_)) => {
                Err("suspend takes no alert-only duration (suspension is immediate)".into())
            }
            ("alert-only", Some(s)) if s >= 1 && s <= i64::from(max_secs) => {
                Ok(OnInaccessible::AlertOnly { for_secs: s as u32 })
            }
            ("alert-only", Some(s)) => Err(format!(
                "the alert-only duration must be 1 to {max_secs} seconds, not {s}"
            )),
            ("alert-only", None) => Err(format!(
                "alert-only needs alertOnlySeconds (1 to {max_secs}): how long datacenters keep serving before they are suspended"
            )),
            (other, _) => Err(format!(
                "unknown action {other:?}; expected \"suspend\" or \"alert-only\""
            )),
        }
    }
}

#[cfg(test)]
mod on_inaccessible_tests {
    use super::OnInaccessible;

    #[test]
    fn alert_only_is_bounded_and_suspend_takes_no_duration() {
        assert_eq!(
            OnInaccessible::from_parts("suspend", None, 60),
            Ok(OnInaccessible::Suspend)
        );
        assert_eq!(
            OnInaccessible::from_parts("alert-only", Some(60), 60),
            Ok(OnInaccessible::AlertOnly { for_secs: 60 })
        );
        for (action, secs) in [
            ("alert-only", Some(61)),
            ("alert-only", Some(0)),
            ("alert-only", None),
            ("suspend", Some(5)),
            ("ignore", None),
        ] {
            assert!(
                OnInaccessible::from_parts(action, secs, 60).is_err(),
                "{action} {secs:?}"
            );
        }
        let a = OnInaccessible::AlertOnly { for_secs: 9 };
        assert_eq!((a.action(), a.alert_for_secs()), ("alert-only", 9));
    }
}
