//! Cloud providers and database types, as they appear in the DevOps API paths.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A cloud provider. Paths spell it lower case (`aws`); database bodies upper case (`AWS`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    /// OpenBao or HashiCorp Vault Transit, a keyplane extension for platforms on their own
    /// hardware: its regions are the platform's own sites, which the operator names.
    Openbao,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::Azure,
        Provider::Openbao,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Openbao => "openbao",
        }
    }

    /// Which database types may use a customer key of this provider: Managed Clusters
    /// (classic) take AWS, GCP and OpenBao keys, Azure keys are serverless only.
    pub fn supports(self, db_type: DbType) -> bool {
        !matches!((self, db_type), (Provider::Azure, DbType::Classic))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a name that is not one of a fixed set; it lists the valid ones so the
/// API can tell the caller what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub expected: Vec<&'static str>,
}

impl FromStr for Provider {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "aws" => Ok(Provider::Aws),
            "gcp" => Ok(Provider::Gcp),
            "azure" => Ok(Provider::Azure),
            "openbao" => Ok(Provider::Openbao),
            _ => Err(UnknownName {
                what: "provider",
                given: s.to_string(),
                expected: Provider::ALL.iter().map(|p| p.as_str()).collect(),
            }),
        }
    }
}

/// Database type: `classic` is Managed Clusters, `serverless` the serverless offering. They
/// need separate customer keys even in the same region.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    Classic,
    Serverless,
}

impl DbType {
    pub fn as_str(self) -> &'static str {
        match self {
            DbType::Classic => "classic",
            DbType::Serverless => "serverless",
        }
    }
}

impl fmt::Display for DbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DbType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "classic" => Ok(DbType::Classic),
            "serverless" => Ok(DbType::Serverless),
            _ => Err(UnknownName {
                what: "database type",
                given: s.to_string(),
                expected: vec!["classic", "serverless"],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_parse_is_case_insensitive_and_lists_choices() {
        assert_eq!("AWS".parse::<Provider>(), Ok(Provider::Aws));
        let err = "ibm".parse::<Provider>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown provider "ibm"; expected one of: aws, gcp, azure, openbao"#
        );
    }

    #[test]
    fn azure_is_serverless_only() {
        assert!(!Provider::Azure.supports(DbType::Classic));
        assert!(Provider::Azure.supports(DbType::Serverless));
        assert!(Provider::Gcp.supports(DbType::Classic));
        assert!(Provider::Openbao.supports(DbType::Classic));
        assert!(Provider::Openbao.supports(DbType::Serverless));
    }
}
