//! Google Cloud KMS resource names: the key a customer registers
//! (`projects/P/locations/L/keyRings/R/cryptoKeys/K`, optionally with `/cryptoKeyVersions/V`),
//! parsed with errors that say which part is wrong, and the rule that the key's location is
//! the database's region.
//!
//! The original platform's spec calls the key ID "the key version resource id" while its
//! Terraform example registers the key without a version, so both are accepted; what is stored
//! is always the key ([`GcpKeyName::key`]): encryption then follows the key's primary version,
//! and rotating the key changes nothing for the platform.
use std::fmt;
use std::str::FromStr;

/// A Cloud KMS crypto key, or one version of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GcpKeyName {
    pub project: String,
    pub location: String,
    pub key_ring: String,
    pub crypto_key: String,
    /// The version number when a version's name was given.
    pub version: Option<u64>,
}

/// What is wrong with a resource name. The messages are the API's answer to the customer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcpKeyNameError {
    #[error(
        "{0:?} is not a Cloud KMS key name; expected projects/PROJECT/locations/LOCATION/keyRings/KEY_RING/cryptoKeys/KEY \
         (optionally followed by /cryptoKeyVersions/VERSION)"
    )]
    Shape(String),
    #[error(
        "the project {0:?} is not a project ID (6-30 lower-case letters, digits or hyphens, starting with a letter) \
         or a project number"
    )]
    Project(String),
    #[error("the location {0:?} is not a location name (lower-case letters, digits and hyphens)")]
    Location(String),
    #[error("the key ring ID {0:?} must be 1-63 letters, digits, underscores or hyphens")]
    KeyRing(String),
    #[error("the key ID {0:?} must be 1-63 letters, digits, underscores or hyphens")]
    CryptoKey(String),
    #[error("the key version {0:?} must be a positive number")]
    Version(String),
}

/// The key's location is not the region the key is registered (or used) for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key ring {key_ring} is in location {location}, not in region {region}: create a key ring and key in \
     location {region} (Cloud KMS keys are used only in their own location)"
)]
pub struct LocationMismatch {
    pub key_ring: String,
    pub location: String,
    pub region: String,
}

/// The prefix of a full resource name (`//cloudkms.googleapis.com/projects/…`), accepted and
/// dropped because some consoles copy names with it.
const SERVICE_PREFIX: &str = "//cloudkms.googleapis.com/";

fn is_id(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A project ID (`my-project-123`), a project number (`123456789012`), or a legacy
/// domain-scoped ID (`example.com:my-project`).
pub fn is_valid_project(s: &str) -> bool {
    let id = s.rsplit_once(':').map_or(s, |(domain, id)| {
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            ""
        } else {
            id
        }
    });
    let number = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let project_id = (6..=30).contains(&id.len())
        && id.as_bytes()[0].is_ascii_lowercase()
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    number || project_id
}

impl GcpKeyName {
    /// The key itself, without a version: what keyplane stores and encrypts with.
    pub fn key(&self) -> GcpKeyName {
        GcpKeyName {
            version: None,
            ..self.clone()
        }
    }

    /// `projects/P/locations/L/keyRings/R`.
    pub fn key_ring_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}",
            self.project, self.location, self.key_ring
        )
    }

    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`, whatever version was given.
    pub fn key_name(&self) -> String {
        format!("{}/cryptoKeys/{}", self.key_ring_name(), self.crypto_key)
    }

    /// The name of version `version` of this key.
    pub fn version_name(&self, version: u64) -> String {
        format!("{}/cryptoKeyVersions/{version}", self.key_name())
    }

    /// Refuses a key whose location is not `region` (GCP keys are regional: a database in
    /// us-east1 needs a key ring in us-east1, not in `us` or `global`).
    pub fn check_location(&self, region: &str) -> Result<(), LocationMismatch> {
        if self.location == region {
            Ok(())
        } else {
            Err(LocationMismatch {
                key_ring: self.key_ring_name(),
                location: self.location.clone(),
                region: region.to_string(),
            })
        }
    }
}

impl FromStr for GcpKeyName {
    type Err = GcpKeyNameError;

    fn from_str(s: &str) -> Result<Self, GcpKeyNameError> {
        let s = s.trim();
        let name = s.strip_prefix(SERVICE_PREFIX).unwrap_or(s);
        let shape = || GcpKeyNameError::Shape(s.to_string());
        let parts: Vec<&str> = name.split('/').collect();
        let (project, location, key_ring, crypto_key, version) = match parts.as_slice() {
            [
                "projects",
                p,
                "locations",
                l,
                "keyRings",
                r,
                "cryptoKeys",
                k,
            ] => (*p, *l, *r, *k, None),
            [
                "projects",
                p,
                "locations",
                l,
                "keyRings",
                r,
                "cryptoKeys",
                k,
                "cryptoKeyVersions",
                v,
            ] => (*p, *l, *r, *k, Some(*v)),
            _ => return Err(shape()),
        };
        if !is_valid_project(project) {
            return Err(GcpKeyNameError::Project(project.to_string()));
        }
        if !crate::regions::is_plausible_region_name(location) {
            return Err(GcpKeyNameError::Location(location.to_string()));
        }
        if !is_id(key_ring) {
            return Err(GcpKeyNameError::KeyRing(key_ring.to_string()));
        }
        if !is_id(crypto_key) {
            return Err(GcpKeyNameError::CryptoKey(crypto_key.to_string()));
        }
        let version = match version {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(GcpKeyNameError::Version(v.to_string())),
            },
        };
        Ok(GcpKeyName {
            project: project.to_string(),
            location: location.to_string(),
            key_ring: key_ring.to_string(),
            crypto_key: crypto_key.to_string(),
            version,
        })
    }
}

impl fmt::Display for GcpKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => f.write_str(&self.version_name(v)),
            None => f.write_str(&self.key_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "projects/customer-project/locations/us-east1/keyRings/ring-1/cryptoKeys/db_key";

    #[test]
    fn keys_and_versions_parse_and_round_trip() {
        let k: GcpKeyName = KEY.parse().unwrap();
        assert_eq!(k.project, "customer-project");
        assert_eq!(k.location, "us-east1");
        assert_eq!(k.key_ring, "ring-1");
        assert_eq!(k.crypto_key, "db_key");
        assert_eq!(k.version, None);
        assert_eq!(k.to_string(), KEY);

        let v: GcpKeyName = format!("{KEY}/cryptoKeyVersions/7").parse().unwrap();
        assert_eq!(v.version, Some(7));
        assert_eq!(v.to_string(), format!("{KEY}/cryptoKeyVersions/7"));
        assert_eq!(v.key(), k);
        assert_eq!(v.key_name(), KEY);
        assert_eq!(
            k.key_ring_name(),
            "projects/customer-project/locations/us-east1/keyRings/ring-1"
        );
        assert_eq!(
            format!("  //cloudkms.googleapis.com/{KEY} ")
                .parse::<GcpKeyName>()
                .unwrap(),
            k
        );
        for project in ["123456789012", "example.com:my-project"] {
            let n = KEY.replace("customer-project", project);
            assert_eq!(n.parse::<GcpKeyName>().unwrap().project, project);
        }
    }

    #[test]
    fn wrong_shapes_say_what_is_expected() {
        for bad in [
            "",
            "arn:aws:kms:us-east-2:111111111111:key/1234",
            "projects/customer-project/locations/us-east1/keyRings/ring-1",
            "projects/customer-project/locations/us-east1/keyRings/ring-1/cryptoKeys/k/",
            "/projects/customer-project/locations/us-east1/keyRings/ring-1/cryptoKeys/k",
            "projects/customer-project/locations/us-east1/keyrings/ring-1/cryptoKeys/k",
            "projects/customer-project/locations/us-east1/keyRings/ring-1/cryptoKeys/k/cryptoKeyVersions",
        ] {
            let e = bad.parse::<GcpKeyName>().unwrap_err();
            assert!(matches!(e, GcpKeyNameError::Shape(_)), "{bad}: {e:?}");
            assert!(
                e.to_string()
                    .contains("projects/PROJECT/locations/LOCATION")
            );
        }
    }

    #[test]
    fn bad_segments_are_named() {
        let with = |from: &str, to: &str| KEY.replace(from, to).parse::<GcpKeyName>();
        assert!(matches!(
            with("customer-project", "Customer"),
            Err(GcpKeyNameError::Project(_))
        ));
        assert!(matches!(
            with("customer-project", "abc"),
            Err(GcpKeyNameError::Project(_))
        ));
        assert!(matches!(
            with("customer-project", "project-"),
            Err(GcpKeyNameError::Project(_))
        ));
        assert!(matches!(
            with("us-east1", "US East"),
            Err(GcpKeyNameError::Location(_))
        ));
        assert!(matches!(
            with("ring-1", "ring.1"),
            Err(GcpKeyNameError::KeyRing(_))
        ));
        assert!(matches!(
            with("db_key", &"k".repeat(64)),
            Err(GcpKeyNameError::CryptoKey(_))
        ));
        for v in ["0", "x", "-1", "+3"] {
            assert!(
                matches!(
                    format!("{KEY}/cryptoKeyVersions/{v}").parse::<GcpKeyName>(),
                    Err(GcpKeyNameError::Version(_))
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn location_must_be_the_region() {
        let k: GcpKeyName = KEY.parse().unwrap();
        assert!(k.check_location("us-east1").is_ok());
        let e = k.check_location("europe-west1").unwrap_err();
        assert_eq!(e.location, "us-east1");
        assert!(e.to_string().contains("not in region europe-west1"), "{e}");
        let global: GcpKeyName = KEY.replace("us-east1", "global").parse().unwrap();
        assert!(global.check_location("us-east1").is_err());
    }
}
