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
