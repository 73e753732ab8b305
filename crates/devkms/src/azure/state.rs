//! The Azure surface's state: the directory (tenant, subscription, principals, the dev CA),
//! the vaults with their keys and versions, and the role assignments; and its on-disk form, a
//! section of the devkms state file. Key material and the CA's private key are sealed under the
//! devkms root key; principals' tokens and client secrets are stored as SHA-256 hashes only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crypto::{Kty, Material};
use crate::error::DevKmsError;
use crate::state::Store;

/// Days a deleted key stays recoverable before the sweep purges it (Key Vault's default).
pub(crate) const RECOVERABLE_DAYS: i64 = 90;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrincipalKind {
    User,
    ServicePrincipal,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::ServicePrincipal => "ServicePrincipal",
        }
    }
}

/// An Entra ID object that can call the vault.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Principal {
    pub object_id: String,
    pub display_name: String,
    pub kind: PrincipalKind,
    /// The application (client) ID, for a service principal.
    pub app_id: Option<String>,
    /// SHA-256 (hex) of the principal's long-lived dev token.
    pub token_sha256: String,
    /// SHA-256 (hex) of an application's client secret.
    pub secret_sha256: Option<String>,
    /// An application's certificate credentials (public certificates only).
    #[serde(default)]
    pub certificates: Vec<super::certificates::AppCertificate>,
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The tenant the built-in vaults live in, and who is in it.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Directory {
    pub tenant_id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub principals: Vec<Principal>,
    pub ca_cert_pem: String,
    /// The CA's PKCS#8 private key, sealed under the root key.
    pub ca_key_sealed: String,
}

impl Directory {
    pub fn principal(&self, object_id: &str) -> Option<&Principal> {
        self.principals
            .iter()
            .find(|p| p.object_id.eq_ignore_ascii_case(object_id))
    }
}

/// A key operation a version permits (`key_ops`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub(crate) enum KeyOp {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    WrapKey,
    UnwrapKey,
    Import,
    Export,
}

impl KeyOp {
    pub fn parse(s: &str) -> Option<KeyOp> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::Sign => "sign",
            KeyOp::Verify => "verify",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
            KeyOp::Import => "import",
            KeyOp::Export => "export",
        }
    }
}

/// One version of a key: its attributes and its sealed material.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionRecord {
    /// 32 lower-case hex digits.
    pub version: String,
    pub kty: Kty,
    pub key_size: u32,
    pub key_ops: Vec<KeyOp>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub sealed: String,
}

/// A version with its material unsealed once, so wrap/unwrap never touch the root key.
#[derive(Debug)]
pub(crate) struct KeyVersion {
    pub rec: VersionRecord,
    pub material: Material,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LifetimeTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LifetimeActionType {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LifetimeAction {
    pub trigger: LifetimeTrigger,
    pub action: LifetimeActionType,
}

/// A key's rotation policy, stored as set (the sweep does not execute it).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotationPolicy {
    pub lifetime_actions: Vec<LifetimeAction>,
    pub expiry_time: Option<String>,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug)]
pub(crate) struct KeyEntry {
    /// As first created (Key Vault keeps the creator's casing and matches case-insensitively).
    pub name: String,
    /// Oldest first; the last one is the current version.
    pub versions: Vec<KeyVersion>,
    pub rotation_policy: Option<RotationPolicy>,
}

impl KeyEntry {
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }
    pub fn version(&self, v: &str) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|k| k.rec.version.eq_ignore_ascii_case(v))
    }
    pub fn version_mut(&mut self, v: Option<&str>) -> Option<&mut KeyVersion> {
        match v {
            None => self.versions.last_mut(),
            Some(v) => self
                .versions
                .iter_mut()
                .find(|k| k.rec.version.eq_ignore_ascii_case(v)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DeletedEntry {
    pub key: KeyEntry,
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

#[derive(Debug)]
pub(crate) struct Vault {
    pub name: String,
    pub location: String,
    pub created: i64,
    /// By lower-case key name.
    pub keys: BTreeMap<String, KeyEntry>,
    /// Soft-deleted keys, by lower-case name.
    pub deleted: BTreeMap<String, DeletedEntry>,
}

/// An Azure RBAC role assignment (an ARM resource).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleAssignment {
    /// A GUID: the last segment of the assignment's ID.
    pub name: String,
    pub scope: String,
    /// The role definition's GUID.
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub created_on: i64,
}

#[derive(Debug, Default)]
pub(crate) struct AzureState {
    /// Created when the first vault is opened.
    pub directory: Option<Directory>,
    /// By lower-case vault name.
    pub vaults: BTreeMap<String, Vault>,
    pub role_assignments: Vec<RoleAssignment>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyRecord {
    name: String,
    versions: Vec<VersionRecord>,
    rotation_policy: Option<RotationPolicy>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeletedRecord {
    key: KeyRecord,
    deleted_date: i64,
    scheduled_purge_date: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VaultRecord {
    name: String,
    location: String,
    created: i64,
    keys: Vec<KeyRecord>,
    deleted: Vec<DeletedRecord>,
}

/// The Azure section of `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AzureStateRecord {
    directory: Option<Directory>,
    vaults: Vec<VaultRecord>,
    role_assignments: Vec<RoleAssignment>,
}

/// What the sealed material of a version is bound to, so blobs cannot be swapped between keys.
pub(crate) fn material_purpose(vault: &str, name: &str, version: &str) -> String {
    format!(
        "keyplane-devkms azure key {}/{}/{}",
        vault.to_ascii_lowercase(),
        name.to_ascii_lowercase(),
        version
    )
}

pub(crate) const CA_KEY_PURPOSE: &str = "keyplane-devkms azure dev CA key";

fn key_record(k: &KeyEntry) -> KeyRecord {
    KeyRecord {
        name: k.name.clone(),
        versions: k.versions.iter().map(|v| v.rec.clone()).collect(),
        rotation_policy: k.rotation_policy.clone(),
    }
}

fn load_key(store: &Store, vault: &str, rec: KeyRecord) -> Result<KeyEntry, DevKmsError> {
    let mut versions = Vec::with_capacity(rec.versions.len());
    for v in rec.versions {
        let bytes = store.open_b64(&material_purpose(vault, &rec.name, &v.version), &v.sealed)?;
        let material =
            Material::from_bytes(v.kty, &bytes).ok_or_else(|| DevKmsError::CorruptState {
                path: "state.json".into(),
                reason: format!(
                    "azure key {vault}/{}/{} has unreadable material",
                    rec.name, v.version
                ),
            })?;
        versions.push(KeyVersion { rec: v, material });
    }
    Ok(KeyEntry {
        name: rec.name,
        versions,
        rotation_policy: rec.rotation_policy,
    })
}

impl AzureState {
    pub fn load(store: &Store, rec: Option<AzureStateRecord>) -> Result<AzureState, DevKmsError> {
        let Some(rec) = rec else {
            return Ok(AzureState::default());
        };
        let mut vaults = BTreeMap::new();
        for v in rec.vaults {
            let mut keys = BTreeMap::new();
            for k in v.keys {
                keys.insert(k.name.to_ascii_lowercase(), load_key(store, &v.name, k)?);
            }
            let mut deleted = BTreeMap::new();
            for d in v.deleted {
                deleted.insert(
                    d.key.name.to_ascii_lowercase(),
                    DeletedEntry {
                        key: load_key(store, &v.name, d.key)?,
                        deleted_date: d.deleted_date,
                        scheduled_purge_date: d.scheduled_purge_date,
                    },
                );
            }
            vaults.insert(
                v.name.to_ascii_lowercase(),
                Vault {
                    name: v.name,
                    location: v.location,
                    created: v.created,
                    keys,
                    deleted,
                },
            );
        }
        Ok(AzureState {
            directory: rec.directory,
            vaults,
            role_assignments: rec.role_assignments,
        })
    }

    /// The section to write, or `None` while the Azure surface was never used.
    pub fn snapshot(&self) -> Option<AzureStateRecord> {
        if self.directory.is_none() && self.vaults.is_empty() {
            return None;
        }
        Some(AzureStateRecord {
            directory: self.directory.clone(),
            vaults: self
                .vaults
                .values()
                .map(|v| VaultRecord {
                    name: v.name.clone(),
                    location: v.location.clone(),
                    created: v.created,
                    keys: v.keys.values().map(key_record).collect(),
                    deleted: v
                        .deleted
                        .values()
                        .map(|d| DeletedRecord {
                            key: key_record(&d.key),
                            deleted_date: d.deleted_date,
                            scheduled_purge_date: d.scheduled_purge_date,
                        })
                        .collect(),
                })
                .collect(),
            role_assignments: self.role_assignments.clone(),
        })
    }

    /// Purges soft-deleted keys whose purge date has passed; true if any went.
    pub fn purge_due(&mut self, now: i64) -> bool {
        let mut changed = false;
        for v in self.vaults.values_mut() {
            let before = v.deleted.len();
            v.deleted.retain(|_, d| d.scheduled_purge_date > now);
            changed |= v.deleted.len() != before;
        }
        changed
    }
}
