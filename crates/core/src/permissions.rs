//! What an application token may do. A token carries one role: a built-in one, or a custom
//! list of permissions, as the original platform's custom roles are.
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::provider::UnknownName;

macro_rules! permissions {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// One permission, spelled as the original platform spells it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission { $($variant),+ }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }
        }

        impl FromStr for Permission {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Permission::$variant),)+
                    _ => Err(UnknownName {
                        what: "permission",
                        given: s.to_string(),
                        expected: vec![$($name),+],
                    }),
                }
            }
        }
    };
}

permissions! {
    OrgRead => "org-read",
    OrgWrite => "org-write",
    OrgTokenRead => "org-token-read",
    OrgTokenWrite => "org-token-write",
    OrgAuditRead => "org-audit-read",
    OrgCmkRead => "org-cmk-read",
    OrgCmkWrite => "org-cmk-write",
    OrgDbCreate => "org-db-create",
    OrgDbView => "org-db-view",
    OrgDbTerminate => "org-db-terminate",
    OrgDbExpand => "org-db-expand",
    DbRead => "db-read",
    DbWrite => "db-write",
    DbKeyspaceCreate => "db-keyspace-create",
    DbKeyspaceDrop => "db-keyspace-drop",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The role a token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything in the organization.
    OrgAdmin,
    /// Databases and customer keys, but not tokens, audit or the organization itself.
    DbAdmin,
    /// View only.
    ReadOnly,
    /// Exactly the listed permissions.
    Custom(BTreeSet<Permission>),
}

impl Role {
    pub const ORG_ADMIN: &'static str = "Organization Administrator";
    pub const DB_ADMIN: &'static str = "Database Administrator";
    pub const READ_ONLY: &'static str = "Read Only User";

    pub fn allows(&self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::OrgAdmin => true,
            Role::DbAdmin => matches!(
                p,
                OrgRead
                    | OrgCmkRead
                    | OrgCmkWrite
                    | OrgDbCreate
                    | OrgDbView
                    | OrgDbTerminate
                    | OrgDbExpand
                    | DbRead
                    | DbWrite
                    | DbKeyspaceCreate
                    | DbKeyspaceDrop
            ),
            Role::ReadOnly => matches!(p, OrgRead | OrgCmkRead | OrgDbView | DbRead),
            Role::Custom(set) => set.contains(&p),
        }
    }

    /// The name shown in token listings: a built-in role's display name, or "custom".
    pub fn name(&self) -> &'static str {
        match self {
            Role::OrgAdmin => Self::ORG_ADMIN,
            Role::DbAdmin => Self::DB_ADMIN,
            Role::ReadOnly => Self::READ_ONLY,
            Role::Custom(_) => "custom",
        }
    }

    pub fn permissions(&self) -> Vec<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| self.allows(*p))
            .collect()
    }

    /// Parses a built-in role from its display name or a short alias (`org-admin`,
    /// `db-admin`, `read-only`), or a custom role from `custom:perm1,perm2`.
    pub fn parse(s: &str) -> Result<Role, UnknownName> {
        let t = s.trim();
        if let Some(list) = t.strip_prefix("custom:") {
            return Role::custom(list.split(',').map(str::trim).filter(|x| !x.is_empty()));
        }
        match t.to_ascii_lowercase().as_str() {
            "organization administrator" | "org-admin" => Ok(Role::OrgAdmin),
            "database administrator" | "db-admin" => Ok(Role::DbAdmin),
            "read only user" | "read-only" => Ok(Role::ReadOnly),
            _ => Err(UnknownName {
                what: "role",
                given: s.to_string(),
                expected: vec![
                    Self::ORG_ADMIN,
                    Self::DB_ADMIN,
                    Self::READ_ONLY,
                    "custom:<permission>,<permission>,…",
                ],
            }),
        }
    }

    pub fn custom<'a>(perms: impl IntoIterator<Item = &'a str>) -> Result<Role, UnknownName> {
        let set = perms
            .into_iter()
            .map(str::parse)
            .collect::<Result<BTreeSet<Permission>, _>>()?;
        Ok(Role::Custom(set))
    }

    /// The stored form: the inverse of [`Role::parse`].
    pub fn to_storage(&self) -> String {
        match self {
            Role::Custom(set) => {
                let names: Vec<&str> = set.iter().map(|p| p.as_str()).collect();
                format!("custom:{}", names.join(","))
            }
            other => other.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles_grant_what_their_names_say() {
        assert!(Role::OrgAdmin.allows(Permission::OrgTokenWrite));
        assert!(Role::DbAdmin.allows(Permission::OrgCmkWrite));
        assert!(!Role::DbAdmin.allows(Permission::OrgTokenWrite));
        assert!(Role::ReadOnly.allows(Permission::OrgCmkRead));
        assert!(!Role::ReadOnly.allows(Permission::OrgCmkWrite));
        // The original's Database Administrator manages keyspaces; a reader does not.
        assert!(Role::DbAdmin.allows(Permission::DbKeyspaceCreate));
        assert!(Role::DbAdmin.allows(Permission::DbKeyspaceDrop));
        assert!(!Role::ReadOnly.allows(Permission::DbKeyspaceCreate));
        assert_eq!(
            "db-keyspace-drop".parse::<Permission>(),
            Ok(Permission::DbKeyspaceDrop)
        );
    }

    #[test]
    fn roles_round_trip_through_storage() {
        for r in [
            Role::OrgAdmin,
            Role::DbAdmin,
            Role::ReadOnly,
            Role::custom(["org-cmk-read", "org-cmk-write"]).unwrap(),
        ] {
            assert_eq!(Role::parse(&r.to_storage()).unwrap(), r);
        }
    }

    #[test]
    fn custom_role_rejects_unknown_permission_naming_it() {
        let err = Role::parse("custom:org-cmk-read,org-cmk-everything").unwrap_err();
        assert!(err.to_string().contains("org-cmk-everything"));
        assert!(Role::parse("superuser").is_err());
    }
}
