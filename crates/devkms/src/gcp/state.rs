//! The Cloud KMS surface's state (bearer-token identities, project owners, key rings, crypto
//! keys with their versions and IAM policies) and its on-disk form inside the shared
//! `state.json`. Key material and tokens are sealed under the root key like the AWS
//! surface's; in memory a token is looked up by its SHA-256 only.

use std::collections::BTreeMap;

use keyplane_core::policy::gcp::IamPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::SecretKey;
use crate::error::DevKmsError;
use crate::state::Store;

/// A Cloud KMS key version's state, with the numbers of the `CryptoKeyVersionState` enum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
    DestroyScheduled,
}

impl VersionState {
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
            VersionState::DestroyScheduled => "DESTROY_SCHEDULED",
        }
    }
    pub fn number(self) -> i64 {
        match self {
            VersionState::Enabled => 1,
            VersionState::Disabled => 2,
            VersionState::Destroyed => 3,
            VersionState::DestroyScheduled => 4,
        }
    }
}

/// A crypto key's purpose (`CryptoKeyPurpose`). Only ENCRYPT_DECRYPT keys have material here;
/// the others are recorded so that callers see and refuse them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Purpose {
    EncryptDecrypt,
    AsymmetricSign,
    AsymmetricDecrypt,
    RawEncryptDecrypt,
    Mac,
}

impl Purpose {
    pub const ALL: [Purpose; 5] = [
        Purpose::EncryptDecrypt,
        Purpose::AsymmetricSign,
        Purpose::AsymmetricDecrypt,
        Purpose::RawEncryptDecrypt,
        Purpose::Mac,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Purpose::EncryptDecrypt => "ENCRYPT_DECRYPT",
            Purpose::AsymmetricSign => "ASYMMETRIC_SIGN",
            Purpose::AsymmetricDecrypt => "ASYMMETRIC_DECRYPT",
            Purpose::RawEncryptDecrypt => "RAW_ENCRYPT_DECRYPT",
            Purpose::Mac => "MAC",
        }
    }
    pub fn number(self) -> i64 {
        match self {
            Purpose::EncryptDecrypt => 1,
            Purpose::AsymmetricSign => 5,
            Purpose::AsymmetricDecrypt => 6,
            Purpose::RawEncryptDecrypt => 7,
            Purpose::Mac => 9,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct VersionRecord {
    pub id: u64,
    pub state: VersionState,
    pub create_time: f64,
    /// When DESTROY_SCHEDULED turns DESTROYED.
    pub destroy_time: Option<f64>,
    /// When the material was destroyed.
    pub destroy_event_time: Option<f64>,
    /// The material sealed under the root key; gone once DESTROYED, or for purposes this
    /// server keeps no material for.
    pub sealed: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct CryptoKeyRecord {
    pub name: String,
    pub create_time: f64,
    pub purpose: Purpose,
    pub primary: Option<u64>,
    pub rotation_period_secs: Option<u64>,
    pub next_rotation_time: Option<f64>,
    pub destroy_scheduled_secs: u64,
    pub labels: BTreeMap<String, String>,
    pub versions: Vec<VersionRecord>,
    pub policy: IamPolicy,
    /// Bumped by every setIamPolicy; the policy's etag.
    pub policy_serial: u64,
}

/// A key with its version materials unsealed.
#[derive(Debug)]
pub(crate) struct GcpKey {
    pub rec: CryptoKeyRecord,
    pub materials: BTreeMap<u64, SecretKey>,
}

impl GcpKey {
    pub fn version(&self, id: u64) -> Option<&VersionRecord> {
        self.rec.versions.iter().find(|v| v.id == id)
    }
    pub fn version_mut(&mut self, id: u64) -> Option<&mut VersionRecord> {
        self.rec.versions.iter_mut().find(|v| v.id == id)
    }
    pub fn version_name(&self, id: u64) -> String {
        format!("{}/cryptoKeyVersions/{id}", self.rec.name)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct KeyRingRecord {
    pub name: String,
    pub create_time: f64,
    pub policy: IamPolicy,
    pub policy_serial: u64,
}

/// A bearer-token identity: an IAM member (`user:…`, `serviceAccount:…`) and the projects it
/// owns (an owner holds every permission on everything in its projects).
pub(crate) struct GcpIdentity {
    pub member: String,
    pub owned_projects: Vec<String>,
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for GcpIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcpIdentity({}, <token redacted>)", self.member)
    }
}

/// Everything the Cloud KMS surface holds, inside the server's one state lock.
#[derive(Debug, Default)]
pub(crate) struct GcpState {
    /// By SHA-256 of the token.
    pub identities: BTreeMap<[u8; 32], GcpIdentity>,
    /// By name.
    pub key_rings: BTreeMap<String, KeyRingRecord>,
    /// By name (`…/cryptoKeys/K`).
    pub keys: BTreeMap<String, GcpKey>,
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl GcpState {
    pub fn identity_by_member(&self, member: &str) -> Option<&GcpIdentity> {
        self.identities.values().find(|i| i.member == member)
    }
    /// The members who own `project`.
    pub fn owners_of(&self, project: &str) -> impl Iterator<Item = &str> {
        self.identities
            .values()
            .filter(move |i| i.owned_projects.iter().any(|p| p == project))
            .map(|i| i.member.as_str())
    }
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    member: String,
    owned_projects: Vec<String>,
    token_sealed: String,
}

/// The `gcp` member of `state.json`.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct GcpStateFile {
    identities: Vec<IdentityFile>,
    key_rings: Vec<KeyRingRecord>,
    keys: Vec<CryptoKeyRecord>,
}

fn token_purpose(member: &str) -> String {
    format!("keyplane-devkms gcp token {member}")
}

/// Binds the material to its version's name so sealed blobs cannot be swapped in the file.
pub(crate) fn material_purpose(version_name: &str) -> String {
    format!("keyplane-devkms gcp material {version_name}")
}

pub(crate) fn seal_material(store: &Store, version_name: &str, key: &SecretKey) -> String {
    store.seal_b64(&material_purpose(version_name), key.bytes())
}

pub(crate) fn load(store: &Store, file: GcpStateFile) -> Result<GcpState, DevKmsError> {
    let mut st = GcpState::default();
    for i in file.identities {
        let token = store.open_b64(&token_purpose(&i.member), &i.token_sealed)?;
        let token = Zeroizing::new(String::from_utf8_lossy(&token).into_owned());
        st.identities.insert(
            token_hash(&token),
            GcpIdentity {
                member: i.member,
                owned_projects: i.owned_projects,
                token,
            },
        );
    }
    for r in file.key_rings {
        st.key_rings.insert(r.name.clone(), r);
    }
    for rec in file.keys {
        let mut materials = BTreeMap::new();
        for v in &rec.versions {
            if let Some(sealed) = &v.sealed {
                let name = format!("{}/cryptoKeyVersions/{}", rec.name, v.id);
                let bytes = store.open_b64(&material_purpose(&name), sealed)?;
                let arr: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| DevKmsError::CorruptState {
                            path: store.state_path(),
                            reason: format!("material of {name} is not 32 bytes"),
                        })?;
                materials.insert(v.id, SecretKey::from_bytes(arr));
            }
        }
        st.keys.insert(rec.name.clone(), GcpKey { rec, materials });
    }
    Ok(st)
}

pub(crate) fn snapshot(store: &Store, st: &GcpState) -> GcpStateFile {
    GcpStateFile {
        identities: st
            .identities
            .values()
            .map(|i| IdentityFile {
                member: i.member.clone(),
                owned_projects: i.owned_projects.clone(),
                token_sealed: store.seal_b64(&token_purpose(&i.member), i.token.as_bytes()),
            })
            .collect(),
        key_rings: st.key_rings.values().cloned().collect(),
        keys: st.keys.values().map(|k| k.rec.clone()).collect(),
    }
}

/// The `gcp` member of `credentials.json`: every identity's member and bearer token.
pub(crate) fn credentials_json(st: &GcpState) -> Value {
    let list: Vec<Value> = st
        .identities
        .values()
        .map(|i| {
            json!({
                "member": i.member,
                "email": i.member.split_once(':').map_or(i.member.as_str(), |(_, e)| e),
                "ownedProjects": i.owned_projects,
                "token": i.token.as_str(),
            })
        })
        .collect();
    json!({ "identities": list })
}
