//! The server's state (identities, keys, aliases, grants), its on-disk form, and the files in
//! the data directory. Secrets never reach disk in the clear except in `credentials.json`, the
//! dev convenience file that hands the generated access keys to local tools.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyplane_core::policy::KeyPolicy;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::SecretKey;
use crate::error::DevKmsError;

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const ROOT_KEY_FILE: &str = "root.key";
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin-token";
pub(crate) const CREDENTIALS_FILE: &str = "credentials.json";
const FORMAT: u32 = 1;

/// Whether an identity is an IAM user or a role (whose key acts as an assumed-role session).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    User,
    Role,
}

/// An identity to create at start (or through the admin route). Missing access keys are
/// generated.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityConfig {
    pub account: String,
    pub kind: IdentityKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("account", &self.account)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub(crate) struct Identity {
    pub account: String,
    pub kind: IdentityKind,
    pub name: String,
    pub access_key_id: String,
    pub secret: Zeroizing<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({}, {})",
            self.principal_arn(),
            self.access_key_id
        )
    }
}

impl Identity {
    /// The IAM ARN that policies name.
    pub fn principal_arn(&self) -> String {
        match self.kind {
            IdentityKind::User => format!("arn:aws:iam::{}:user/{}", self.account, self.name),
            IdentityKind::Role => format!("arn:aws:iam::{}:role/{}", self.account, self.name),
        }
    }
    /// The ARN the request runs as: a role's key acts as one fixed assumed-role session.
    pub fn caller_arn(&self) -> String {
        match self.kind {
            IdentityKind::User => self.principal_arn(),
            IdentityKind::Role => format!(
                "arn:aws:sts::{}:assumed-role/{}/keyplane",
                self.account, self.name
            ),
        }
    }
}

pub(crate) fn valid_account(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    buf.iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

pub(crate) fn new_access_key_id(kind: IdentityKind) -> String {
    let prefix = match kind {
        IdentityKind::User => "AKIA",
        IdentityKind::Role => "ASIA",
    };
    format!(
        "{prefix}{}",
        random_string(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    )
}

pub(crate) fn new_secret() -> String {
    random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    )
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct MaterialRecord {
    pub created: f64,
    /// None for the original material, "AUTOMATIC" or "ON_DEMAND" for rotations.
    pub rotation_type: Option<String>,
    pub sealed: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub(crate) struct RotationRecord {
    pub enabled: bool,
    pub period_days: u32,
    pub next_rotation: Option<f64>,
    pub on_demand_started: Option<f64>,
    pub on_demand_count: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GrantConstraints {
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct GrantRecord {
    pub grant_id: String,
    pub grant_token: String,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub issuing_account: String,
    pub creation_date: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct KeyRecord {
    pub key_id: String,
    pub account: String,
    pub region: String,
    pub arn: String,
    pub creation_date: f64,
    pub description: String,
    pub key_spec: String,
    pub key_usage: String,
    pub state: KeyState,
    pub deletion_date: Option<f64>,
    pub pending_window_days: Option<u32>,
    pub multi_region: bool,
    pub policy: String,
    pub tags: Vec<Tag>,
    pub rotation: RotationRecord,
    pub materials: Vec<MaterialRecord>,
    pub grants: Vec<GrantRecord>,
}

/// A key with its policy parsed once and its material versions unsealed, so that the hot paths
/// (Encrypt, Decrypt, GenerateDataKey) neither parse JSON policies nor touch the root key.
#[derive(Debug)]
pub(crate) struct Key {
    pub rec: KeyRecord,
    pub policy: Arc<KeyPolicy>,
    pub materials: Vec<SecretKey>,
}

impl Key {
    pub fn is_deleted(&self, now: f64) -> bool {
        self.rec.state == KeyState::PendingDeletion
            && self.rec.deletion_date.is_some_and(|d| d <= now)
    }
    pub fn is_symmetric(&self) -> bool {
        self.rec.key_spec == "SYMMETRIC_DEFAULT"
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct AliasRecord {
    pub account: String,
    pub region: String,
    pub name: String,
    pub target_key_id: String,
    pub creation_date: f64,
    pub last_updated: f64,
}

#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    account: String,
    kind: IdentityKind,
    name: String,
    access_key_id: String,
    secret_sealed: String,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    clock_offset_secs: i64,
    identities: Vec<IdentityRecord>,
    keys: Vec<KeyRecord>,
    aliases: Vec<AliasRecord>,
    #[serde(default)]
    gcp: crate::gcp::state::GcpStateFile,
    /// The Azure Key Vault surface (`crate::azure`); absent until a vault is first opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azure: Option<crate::azure::AzureStateRecord>,
}

/// Everything mutable, behind one RwLock in the server.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// By access key id.
    pub identities: BTreeMap<String, Identity>,
    /// By key id (unique across accounts and regions).
    pub keys: BTreeMap<String, Key>,
    /// By (account, region, alias name).
    pub aliases: BTreeMap<(String, String, String), AliasRecord>,
    /// The Azure Key Vault surface's directory, vaults and role assignments.
    pub azure: crate::azure::AzureState,
    /// Bumped on every change, so a slower writer never overwrites a newer snapshot.
    pub generation: u64,
    /// The Cloud KMS surface's resources and identities.
    pub gcp: crate::gcp::state::GcpState,
}

impl State {
    pub fn identity_by_principal(&self, principal_arn: &str) -> Option<&Identity> {
        self.identities
            .values()
            .find(|i| i.principal_arn() == principal_arn || i.caller_arn() == principal_arn)
    }

    /// Drops keys whose deletion date has passed, with their aliases; true if anything went.
    pub fn purge_deleted(&mut self, now: f64) -> bool {
        let gone: Vec<String> = self
            .keys
            .values()
            .filter(|k| k.is_deleted(now))
            .map(|k| k.rec.key_id.clone())
            .collect();
        for id in &gone {
            self.keys.remove(id);
        }
        let before = self.aliases.len();
        self.aliases.retain(|_, a| !gone.contains(&a.target_key_id));
        !gone.is_empty() || before != self.aliases.len()
    }
}

/// The data directory: root key, admin token, state file, credentials file.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    root: SecretKey,
    /// Serializes file writes; holds the generation last written.
    written: Mutex<u64>,
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DevKmsError> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DevKmsError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| DevKmsError::io(&tmp, e))?;
    f.sync_all().map_err(|e| DevKmsError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| DevKmsError::io(path, e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_or_create_secret_file(
    path: &Path,
    make: impl FnOnce() -> Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, DevKmsError> {
    match fs::read(path) {
        Ok(b) => Ok(Zeroizing::new(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make();
            write_private(path, &bytes)?;
            Ok(bytes)
        }
        Err(e) => Err(DevKmsError::io(path, e)),
    }
}

impl Store {
    /// Opens (or initialises) the data directory and returns the store and the admin token.
    pub fn open(dir: &Path) -> Result<(Store, Zeroizing<String>), DevKmsError> {
        fs::create_dir_all(dir).map_err(|e| DevKmsError::io(dir, e))?;
        let root_path = dir.join(ROOT_KEY_FILE);
        let root_bytes =
            read_or_create_secret_file(&root_path, || crate::crypto::random_bytes(32))?;
        let root: [u8; 32] =
            root_bytes
                .as_slice()
                .try_into()
                .map_err(|_| DevKmsError::BadRootKey {
                    path: root_path.clone(),
                })?;
        let token_path = dir.join(ADMIN_TOKEN_FILE);
        let token = read_or_create_secret_file(&token_path, || {
            Zeroizing::new(hex::encode(&*crate::crypto::random_bytes(24)).into_bytes())
        })?;
        let token = Zeroizing::new(String::from_utf8_lossy(&token).trim().to_string());
        Ok((
            Store {
                dir: dir.to_path_buf(),
                root: SecretKey::from_bytes(root),
                written: Mutex::new(0),
            },
            token,
        ))
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals bytes under the root key, bound to `purpose`.
    pub(crate) fn seal_raw(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        self.root.seal(purpose.as_bytes(), plaintext)
    }

    /// Opens what [`Store::seal_raw`] sealed for the same purpose; `None` if it was not.
    pub(crate) fn open_sealed(&self, purpose: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.root.open(purpose.as_bytes(), sealed)
    }

    pub(crate) fn seal_b64(&self, purpose: &str, plaintext: &[u8]) -> String {
        B64.encode(self.root.seal(purpose.as_bytes(), plaintext))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub(crate) fn open_b64(
        &self,
        purpose: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, DevKmsError> {
        let raw = B64.decode(sealed).map_err(|_| DevKmsError::CorruptState {
            path: self.dir.join(STATE_FILE),
            reason: format!("bad base64 in sealed value for {purpose}"),
        })?;
        self.root
            .open(purpose.as_bytes(), &raw)
            .ok_or_else(|| DevKmsError::RootKeyMismatch {
                path: self.dir.join(ROOT_KEY_FILE),
            })
    }

    /// Seals one material version of a key; the ARN and version are bound as associated data so
    /// sealed blobs cannot be swapped between keys in the state file.
    pub fn seal_material(&self, arn: &str, version: usize, key: &SecretKey) -> String {
        self.seal_b64(
            &format!("keyplane-devkms material {arn} {version}"),
            key.bytes(),
        )
    }

    fn open_material(
        &self,
        arn: &str,
        version: usize,
        sealed: &str,
    ) -> Result<SecretKey, DevKmsError> {
        let b = self.open_b64(&format!("keyplane-devkms material {arn} {version}"), sealed)?;
        let arr: [u8; 32] = b
            .as_slice()
            .try_into()
            .map_err(|_| DevKmsError::CorruptState {
                path: self.dir.join(STATE_FILE),
                reason: format!("material {version} of {arn} is not 32 bytes"),
            })?;
        Ok(SecretKey::from_bytes(arr))
    }

    pub fn load(&self) -> Result<Option<(State, i64)>, DevKmsError> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DevKmsError::io(&path, e)),
        };
        let file: StateFile =
            serde_json::from_slice(&bytes).map_err(|e| DevKmsError::CorruptState {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if file.format != FORMAT {
            return Err(DevKmsError::CorruptState {
                path,
                reason: format!("unknown format {}", file.format),
            });
        }
        let mut st = State::default();
        for r in file.identities {
            let secret = self.open_b64(
                &format!("keyplane-devkms identity {}", r.access_key_id),
                &r.secret_sealed,
            )?;
            let secret = Zeroizing::new(String::from_utf8_lossy(&secret).into_owned());
            st.identities.insert(
                r.access_key_id.clone(),
                Identity {
                    account: r.account,
                    kind: r.kind,
                    name: r.name,
                    access_key_id: r.access_key_id,
                    secret,
                },
            );
        }
        for rec in file.keys {
            let policy = KeyPolicy::parse(&rec.policy).map_err(|e| DevKmsError::CorruptState {
                path: path.clone(),
                reason: format!("policy of {}: {e}", rec.arn),
            })?;
            let mut materials = Vec::with_capacity(rec.materials.len());
            for (i, m) in rec.materials.iter().enumerate() {
                materials.push(self.open_material(&rec.arn, i, &m.sealed)?);
            }
            st.keys.insert(
                rec.key_id.clone(),
                Key {
                    policy: Arc::new(policy),
                    materials,
                    rec,
                },
            );
        }
        for a in file.aliases {
            st.aliases
                .insert((a.account.clone(), a.region.clone(), a.name.clone()), a);
        }
        st.gcp = crate::gcp::state::load(self, file.gcp)?;
        st.azure = crate::azure::AzureState::load(self, file.azure)?;
        Ok(Some((st, file.clock_offset_secs)))
    }

    /// Serializes the state; called under the state lock so the snapshot is consistent.
    pub fn snapshot(&self, st: &State, clock_offset_secs: i64) -> Vec<u8> {
        let file = StateFile {
            format: FORMAT,
            clock_offset_secs,
            identities: st
                .identities
                .values()
                .map(|i| IdentityRecord {
                    account: i.account.clone(),
                    kind: i.kind,
                    name: i.name.clone(),
                    access_key_id: i.access_key_id.clone(),
                    secret_sealed: self.seal_b64(
                        &format!("keyplane-devkms identity {}", i.access_key_id),
                        i.secret.as_bytes(),
                    ),
                })
                .collect(),
            keys: st.keys.values().map(|k| k.rec.clone()).collect(),
            aliases: st.aliases.values().cloned().collect(),
            gcp: crate::gcp::state::snapshot(self, &st.gcp),
            azure: st.azure.snapshot(),
        };
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Writes a snapshot atomically (temp file, fsync, rename), skipping it if a newer one was
    /// already written by a concurrent request.
    pub fn write(&self, generation: u64, bytes: &[u8]) -> Result<(), DevKmsError> {
        let mut last = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if generation <= *last && *last != 0 {
            return Ok(());
        }
        write_private(&self.dir.join(STATE_FILE), bytes)?;
        *last = generation;
        Ok(())
    }

    /// The generation last written; waits for a write in progress to end.
    pub fn written(&self) -> u64 {
        *self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `credentials.json`: what local tools (run.sh, `keyplane kms` commands) read to sign as
    /// the default identities.
    pub fn write_credentials(&self, st: &State) -> Result<(), DevKmsError> {
        let list: Vec<serde_json::Value> = st
            .identities
            .values()
            .map(|i| {
                serde_json::json!({
                    "account": i.account,
                    "kind": i.kind,
                    "name": i.name,
                    "principalArn": i.principal_arn(),
                    "callerArn": i.caller_arn(),
                    "accessKeyId": i.access_key_id,
                    "secretAccessKey": i.secret.as_str(),
                })
            })
            .collect();
        let body = Zeroizing::new(
            serde_json::to_vec_pretty(&serde_json::json!({
                "identities": list,
                "gcp": crate::gcp::state::credentials_json(&st.gcp),
            }))
            .unwrap_or_default(),
        );
        write_private(&self.dir.join(CREDENTIALS_FILE), &body)
    }
}
