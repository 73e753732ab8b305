//! Databases: their statuses, and the rules a creation or an added region must follow.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::DbType;
use crate::provider::UnknownName;

macro_rules! statuses {
    ($($v:ident => $s:literal),+ $(,)?) => {
        /// A database's (or datacenter's) status, spelled as the DevOps API spells it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum DatabaseStatus { $(#[serde(rename = $s)] $v),+ }
        impl DatabaseStatus {
            /// Every status, in the order the original's `StatusEnum` lists them.
            pub const ALL: &'static [DatabaseStatus] = &[$(DatabaseStatus::$v),+];
            pub fn as_str(self) -> &'static str { match self { $(DatabaseStatus::$v => $s),+ } }
        }
        impl FromStr for DatabaseStatus {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($s => Ok(DatabaseStatus::$v),)+
                    _ => Err(UnknownName { what: "status", given: s.to_string(), expected: vec![$($s),+] }),
                }
            }
        }
    };
}

statuses! {
    Active => "ACTIVE",
    Pending => "PENDING",
    Preparing => "PREPARING",
    Prepared => "PREPARED",
    Initializing => "INITIALIZING",
    Parked => "PARKED",
    Parking => "PARKING",
    Unparking => "UNPARKING",
    Terminated => "TERMINATED",
    Terminating => "TERMINATING",
    Resizing => "RESIZING",
    Error => "ERROR",
    Maintenance => "MAINTENANCE",
    Suspended => "SUSPENDED",
    Unknown => "UNKNOWN",
}

// Written by hand: utoipa's derive does not see the `serde(rename)` a macro generates and
// documented the variants' Rust names ("Active") while every answer says "ACTIVE".
impl utoipa::PartialSchema for DatabaseStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A database's (or datacenter's) status, spelled as the DevOps API spells it.",
            ))
            .enum_values(Some(DatabaseStatus::ALL.iter().map(|s| s.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for DatabaseStatus {}

impl fmt::Display for DatabaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DatabaseStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, DatabaseStatus::Terminated)
    }
}

pub const CLASSIC_TIERS: [&str; 6] = ["C10", "C20", "C40", "D10", "D20", "D40"];
/// The most capacity units a classic database may be created with.
pub const MAX_CLASSIC_UNITS: i32 = 12;

/// Validates the name (1–50 characters: letters, digits, `-` and `_`, starting with a letter).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=50).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name: {name:?} must be 1 to 50 characters, letters, digits, '-' or '_', starting with a letter"
        ))
    }
}

/// The initial keyspace's name when a creation request names none, as the original names it.
pub const DEFAULT_KEYSPACE: &str = "default_keyspace";

/// Names the original refuses for a keyspace (in any case).
pub const RESERVED_KEYSPACES: [&str; 2] = ["dse", "system"];

/// Keyspace names: a letter, then up to 47 letters, digits or `_`, and not a reserved word.
/// The original also lets a name start with a digit; the document store's files do not.
pub fn check_keyspace(ks: &str) -> Result<(), String> {
    let ok = (1..=48).contains(&ks.len())
        && ks.starts_with(|c: char| c.is_ascii_alphabetic())
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "keyspace: {:?} must start with a letter and have at most 48 letters, digits or '_'",
            ks.chars().take(64).collect::<String>()
        ));
    }
    if RESERVED_KEYSPACES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(ks))
    {
        return Err(format!(
            "keyspace: {ks:?} is reserved; the reserved names are {}",
            RESERVED_KEYSPACES.join(" and ")
        ));
    }
    Ok(())
}

/// Tier and capacity units for a database type; returns the normalized tier.
pub fn check_tier(db_type: DbType, tier: &str, capacity_units: i32) -> Result<String, String> {
    match db_type {
        DbType::Classic => {
            let t = tier.to_ascii_uppercase();
            if !CLASSIC_TIERS.contains(&t.as_str()) {
                return Err(format!(
                    "tier: {tier:?} is not a classic tier; use one of {}",
                    CLASSIC_TIERS.join(", ")
                ));
            }
            if !(1..=MAX_CLASSIC_UNITS).contains(&capacity_units) {
                return Err(format!(
                    "capacityUnits: must be 1 to {MAX_CLASSIC_UNITS} at creation, got {capacity_units}"
                ));
            }
            Ok(t)
        }
        DbType::Serverless => {
            if !tier.eq_ignore_ascii_case("serverless") {
                return Err(format!(
                    "tier: serverless databases use tier \"serverless\", got {tier:?}"
                ));
            }
            if capacity_units != 1 {
                return Err("capacityUnits: serverless databases take 1".to_string());
            }
            Ok("serverless".to_string())
        }
    }
}

/// Why a region cannot be added to or removed from a database now. The store applies the
/// rules below inside the transaction that changes the regions, so concurrent requests cannot
/// break them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionChangeRefusal {
    /// Regions are added only to an ACTIVE database.
    NotActive(DatabaseStatus),
    /// Another region is being added or removed.
    InMaintenance,
    /// The database already has a live datacenter in that region.
    RegionTaken(String),
    /// Removing it would leave the database without a region.
    LastRegion,
}

impl fmt::Display for RegionChangeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionChangeRefusal::NotActive(status) => write!(
                f,
                "the database is {status}; regions can be added or removed only when it is ACTIVE"
            ),
            RegionChangeRefusal::InMaintenance => f.write_str(
                "the database is in MAINTENANCE; regions can be added or removed only when it is ACTIVE",
            ),
            RegionChangeRefusal::RegionTaken(region) => {
                write!(f, "the database already has a datacenter in {region}")
            }
            RegionChangeRefusal::LastRegion => {
                f.write_str("this is the database's last region; terminate the database instead")
            }
        }
    }
}

/// A region may be added to an ACTIVE database that has no live datacenter there.
/// `live_regions` are the regions of its datacenters not yet TERMINATED.
pub fn check_add_region<'a>(
    status: DatabaseStatus,
    live_regions: impl IntoIterator<Item = &'a str>,
    region: &str,
) -> Result<(), RegionChangeRefusal> {
    if status != DatabaseStatus::Active {
        return Err(RegionChangeRefusal::NotActive(status));
    }
    if live_regions.into_iter().any(|r| r == region) {
        return Err(RegionChangeRefusal::RegionTaken(region.to_string()));
    }
    Ok(())
}

/// A region may be removed unless another region change is under way (MAINTENANCE) or it is
/// the last one. `serving` counts the datacenters neither TERMINATED nor TERMINATING, the
/// one to remove included.
pub fn check_remove_region(
    status: DatabaseStatus,
    serving: usize,
) -> Result<(), RegionChangeRefusal> {
    if status == DatabaseStatus::Maintenance {
        return Err(RegionChangeRefusal::InMaintenance);
    }
    if serving < 2 {
        return Err(RegionChangeRefusal::LastRegion);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_lists_the_statuses_as_the_answers_spell_them() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(DatabaseStatus::schema()).unwrap();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let spelt: Vec<String> = DatabaseStatus::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(listed, spelt);
        assert_eq!(listed[0], "ACTIVE");
        assert_eq!(listed.len(), 15);
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["ACTIVE", "MAINTENANCE", "SUSPENDED", "TERMINATED"] {
            assert_eq!(s.parse::<DatabaseStatus>().unwrap().as_str(), s);
        }
        assert!("RUNNING".parse::<DatabaseStatus>().is_err());
    }

    #[test]
    fn creation_rules() {
        assert!(check_name("orders-db_1").is_ok());
        assert!(check_name("1db").is_err());
        assert!(check_keyspace("sales").is_ok());
        assert!(check_keyspace("sa-les").is_err());
        assert!(check_keyspace(&"k".repeat(48)).is_ok());
        assert!(check_keyspace(&"k".repeat(49)).is_err());
        for reserved in ["dse", "system", "System", "DSE"] {
            assert!(check_keyspace(reserved).unwrap_err().contains("reserved"));
        }
        assert!(check_keyspace("system_data").is_ok());
        assert!(check_keyspace(DEFAULT_KEYSPACE).is_ok());
        assert_eq!(check_tier(DbType::Classic, "c10", 3).unwrap(), "C10");
        assert!(
            check_tier(DbType::Classic, "C10", 13)
                .unwrap_err()
                .contains("12")
        );
        assert!(check_tier(DbType::Classic, "serverless", 1).is_err());
        assert_eq!(
            check_tier(DbType::Serverless, "serverless", 1).unwrap(),
            "serverless"
        );
    }

    #[test]
    fn region_change_rules() {
        use DatabaseStatus::*;
        assert_eq!(check_add_region(Active, ["us-east-2"], "eu-west-1"), Ok(()));
        assert_eq!(
            check_add_region(Maintenance, [], "eu-west-1"),
            Err(RegionChangeRefusal::NotActive(Maintenance))
        );
        assert_eq!(
            check_add_region(Active, ["eu-west-1"], "eu-west-1"),
            Err(RegionChangeRefusal::RegionTaken("eu-west-1".into()))
        );
        assert_eq!(check_remove_region(Active, 2), Ok(()));
        // A suspended database may still shed a region; only another change blocks it.
        assert_eq!(check_remove_region(Suspended, 3), Ok(()));
        assert_eq!(
            check_remove_region(Maintenance, 3),
            Err(RegionChangeRefusal::InMaintenance)
        );
        assert_eq!(
            check_remove_region(Active, 1),
            Err(RegionChangeRefusal::LastRegion)
        );
        assert!(
            RegionChangeRefusal::LastRegion
                .to_string()
                .contains("last region")
        );
    }
}
