//! [`OpenbaoKeyProvider`]: the [`KeyProvider`] operations on Transit keys of one OpenBao
//! server and namespace, as the platform's AppRole.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyplane_core::openbao::{Capability, OpenbaoKeyRef, TransitEndpoint};
use keyplane_kms::retry::{RetrySettings, with_retries};
use keyplane_kms::{
    DATA_KEY_LEN, DataKeyPair, EncryptionContext, ErrorKind, KeyDescription, KeyProvider, KeyState,
    KmsError, Result, RotationFacts,
};
use reqwest::Method;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::context::{canonical_context, transit_ciphertext_version};
use crate::errors::{kind_for_status, status_error};
use crate::session::{SessionStats, Sessions};
use crate::transport::{Reply, Server, secret_string};

/// Transit key types that authenticate associated data, and so can bind a context.
pub const CONTEXT_BINDING_TYPES: [&str; 4] = [
    "aes128-gcm96",
    "aes256-gcm96",
    "chacha20-poly1305",
    "xchacha20-poly1305",
];

/// The `KeyUsage` [`KeyDescription`]s carry for a usable Transit key, as AWS spells it.
pub const KEY_USAGE: &str = "ENCRYPT_DECRYPT";

/// What Transit says of a key (`GET <mount>/keys/<name>`), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyInfo {
    pub key: OpenbaoKeyRef,
    /// e.g. `aes256-gcm96`.
    pub key_type: String,
    pub derived: bool,
    pub exportable: bool,
    pub deletion_allowed: bool,
    /// OpenBao's soft deletion: restorable, refused for every operation meanwhile.
    pub soft_deleted: bool,
    pub supports_encryption: bool,
    pub supports_decryption: bool,
    pub latest_version: u32,
    /// Ciphertexts of older versions are refused.
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    /// None when automatic rotation is off.
    pub auto_rotate_period: Option<Duration>,
    /// Creation time (Unix seconds) of each version the key still holds.
    pub version_created: BTreeMap<u32, i64>,
}

impl TransitKeyInfo {
    /// The key can encrypt and decrypt with an authenticated context.
    pub fn binds_context(&self) -> bool {
        self.supports_encryption
            && self.supports_decryption
            && CONTEXT_BINDING_TYPES.contains(&self.key_type.as_str())
    }

    /// Ciphertexts of `version` still decrypt.
    pub fn decrypts_version(&self, version: u32) -> bool {
        version >= self.min_decryption_version.max(1) && version <= self.latest_version
    }
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    key_type: String,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    exportable: bool,
    #[serde(default)]
    deletion_allowed: bool,
    #[serde(default)]
    soft_deleted: bool,
    #[serde(default)]
    supports_encryption: bool,
    #[serde(default)]
    supports_decryption: bool,
    latest_version: u32,
    min_decryption_version: u32,
    #[serde(default)]
    min_encryption_version: u32,
    #[serde(default)]
    auto_rotate_period: serde_json::Value,
    #[serde(default)]
    keys: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlaintextData {
    #[serde(deserialize_with = "secret_string")]
    plaintext: Zeroizing<String>,
}

#[derive(Deserialize)]
struct DataKeyData {
    ciphertext: String,
    #[serde(deserialize_with = "secret_string")]
    plaintext: Zeroizing<String>,
}

/// Seconds, as Transit reports `auto_rotate_period` (a number; older servers a string).
fn seconds(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim_end_matches('s').parse().ok(),
        _ => None,
    }
}

/// A version's creation time: Unix seconds for symmetric keys, an object with an RFC 3339
/// `creation_time` for asymmetric ones.
fn created(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::Object(o) => o
            .get("creation_time")
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp()),
        _ => None,
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One permission as [`KeyProvider::test_permissions`] takes it: `"<capability> <path>"`,
/// the path relative to the key's namespace.
pub fn transit_permission(capability: Capability, path: &str) -> String {
    format!("{capability} {path}")
}

/// Every permission the platform needs on `key`, in [`transit_permission`]'s form.
pub fn required_permissions(key: &OpenbaoKeyRef) -> Vec<String> {
    TransitEndpoint::ALL
        .iter()
        .map(|&e| transit_permission(e.capability(), &key.path(e)))
        .collect()
}

/// The platform's access to Transit keys of one OpenBao server and namespace.
pub struct OpenbaoKeyProvider {
    server: Server,
    sessions: Sessions,
    region: String,
    retry: RetrySettings,
}

impl std::fmt::Debug for OpenbaoKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenbaoKeyProvider")
            .field("address", &self.server.address)
            .field("namespace", &self.server.namespace)
            .field("role", &self.sessions.role().provider_id())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl OpenbaoKeyProvider {
    pub(crate) fn new(
        server: Server,
        sessions: Sessions,
        region: String,
        retry: RetrySettings,
    ) -> OpenbaoKeyProvider {
        OpenbaoKeyProvider {
            server,
            sessions,
            region,
            retry,
        }
    }

    /// Logins and renewals so far.
    pub fn session_stats(&self) -> SessionStats {
        self.sessions.stats()
    }

    /// The role customers bind keyplane's policy to (`auth/<mount>/role/<name>`).
    pub fn provider_id(&self) -> String {
        self.sessions.role().provider_id()
    }

    /// Parses `key_id` as a key of this provider's server and namespace. A key ID naming any
    /// other server is refused before anything is sent: the platform's token for this
    /// server must never go elsewhere.
    pub fn key_ref(&self, operation: &'static str, key_id: &str) -> Result<OpenbaoKeyRef> {
        let key = OpenbaoKeyRef::parse_in_namespace(key_id, self.server.namespace.as_deref())
            .map_err(|e| KmsError::new(ErrorKind::Invalid, operation, e.to_string()))?;
        if key.address() != self.server.address {
            return Err(KmsError::new(
                ErrorKind::Invalid,
                operation,
                format!(
                    "key {key} is on {}, but these credentials are for {}",
                    key.address(),
                    self.server.address
                ),
            ));
        }
        Ok(key)
    }

    /// Reads the key's configuration as Transit reports it.
    pub async fn read_key(&self, key_id: &str) -> Result<TransitKeyInfo> {
        const OP: &str = "ReadKey";
        let key = self.key_ref(OP, key_id)?;
        let path = key.path(TransitEndpoint::ReadKey);
        let reply = self
            .call(OP, Method::GET, &path, Capability::Read, None, &key)
            .await?;
        let d = reply.json::<Data<KeyData>>(OP)?.data;
        let version_created = d
            .keys
            .iter()
            .filter_map(|(v, t)| Some((v.parse().ok()?, created(t)?)))
            .collect();
        Ok(TransitKeyInfo {
            key,
            key_type: d.key_type,
            derived: d.derived,
            exportable: d.exportable,
            deletion_allowed: d.deletion_allowed,
            soft_deleted: d.soft_deleted,
            supports_encryption: d.supports_encryption,
            supports_decryption: d.supports_decryption,
            latest_version: d.latest_version,
            min_decryption_version: d.min_decryption_version,
            min_encryption_version: d.min_encryption_version,
            auto_rotate_period: seconds(&d.auto_rotate_period)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            version_created,
        })
    }

    /// One Transit call, with retries; `capability` on `path` is what a 403 reports missing.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        capability: Capability,
        body: Option<&[u8]>,
        key: &OpenbaoKeyRef,
    ) -> Result<Reply> {
        let action = transit_permission(capability, path);
        with_retries(&self.retry, operation, || {
            self.attempt(operation, method.clone(), path, &action, body, key)
        })
        .await
    }

    /// One attempt. A 403 is either the policy or a token that stopped working (expired,
    /// revoked): the token is checked, and if it is dead the attempt logs in again once and
    /// repeats the request, whose answer then stands.
    async fn attempt(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        action: &str,
        body: Option<&[u8]>,
        key: &OpenbaoKeyRef,
    ) -> Result<Reply> {
        let token = self.sessions.token(&self.server, operation).await?;
        let mut reply = self
            .server
            .send(operation, method.clone(), path, Some(&token.value), body)
            .await?;
        if reply.status == 403
            && !self
                .sessions
                .is_live(&self.server, operation, &token)
                .await?
        {
            tracing::debug!(
                operation,
                "the platform's OpenBao token is no longer valid; logging in again"
            );
            self.sessions.invalidate(token.generation).await;
            let token = self.sessions.token(&self.server, operation).await?;
            reply = self
                .server
                .send(operation, method, path, Some(&token.value), body)
                .await?;
        }
        if reply.is_success() {
            return Ok(reply);
        }
        let errors = reply.errors();
        let kind = kind_for_status(reply.status, &errors, action);
        let detail = if errors.is_empty() {
            String::new()
        } else {
            format!(": {}", errors.join("; "))
        };
        let message = match &kind {
            ErrorKind::AccessDenied { action } => format!(
                "the policies of {} do not grant {action} (HTTP 403{detail})",
                self.provider_id()
            ),
            ErrorKind::NotFound => format!(
                "Transit key {key} not found (HTTP {}{detail})",
                reply.status
            ),
            ErrorKind::Unreachable => format!(
                "OpenBao at {} is sealed (HTTP {}{detail})",
                self.server.address, reply.status
            ),
            _ => format!("{path}: HTTP {}{detail}", reply.status),
        };
        Err(status_error(operation, kind, reply.status, errors, message))
    }

    fn body(fields: &[(&str, &str)]) -> Result<Zeroizing<Vec<u8>>> {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::to_vec(&map)
            .map(Zeroizing::new)
            .map_err(|e| KmsError::new(ErrorKind::Other, "Encode", e.to_string()))
    }

    /// `associated_data` and `context` for `context` (see the `context` module).
    fn binding(context: &EncryptionContext) -> String {
        B64.encode(canonical_context(context))
    }

    fn decode_secret(operation: &'static str, b64: &str) -> Result<Zeroizing<Vec<u8>>> {
        B64.decode(b64.as_bytes()).map(Zeroizing::new).map_err(|_| {
            KmsError::new(
                ErrorKind::Other,
                operation,
                "OpenBao returned a plaintext that is not base64",
            )
        })
    }

    /// After an encrypt was refused: Transit answers encrypt on a missing key with 403 (the
    /// call would create it, which needs `create`), so look whether the key is there.
    async fn refine_encrypt_denial(&self, err: KmsError, key: &OpenbaoKeyRef) -> KmsError {
        if !matches!(err.kind, ErrorKind::AccessDenied { .. }) {
            return err;
        }
        match self.read_key(&key.to_string()).await {
            Err(e) if e.kind == ErrorKind::NotFound => KmsError {
                kind: ErrorKind::NotFound,
                operation: err.operation,
                message: format!(
                    "Transit key {key} not found (Transit refuses encrypt on a missing key with permission denied)"
                ),
                source: err.source,
            },
            _ => err,
        }
    }
}

#[async_trait]
impl KeyProvider for OpenbaoKeyProvider {
    /// The key as a [`KeyDescription`]: Transit's type as the key spec, the latest version as
    /// the primary version, a soft-deleted key as pending deletion. A key type that cannot
    /// bind a context (RSA, signing, HMAC keys) is refused as [`ErrorKind::WrongKeyType`].
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription> {
        let info = self.read_key(key_id).await?;
        if !info.binds_context() {
            return Err(KmsError::new(
                ErrorKind::WrongKeyType,
                "DescribeKey",
                format!(
                    "Transit key {} is of type {}, which cannot encrypt with authenticated associated data; \
                     use a key of type {}",
                    info.key,
                    info.key_type,
                    CONTEXT_BINDING_TYPES.join(", ")
                ),
            ));
        }
        Ok(KeyDescription {
            arn: info.key.to_string(),
            account: info.key.address().to_string(),
            region: self.region.clone(),
            state: if info.soft_deleted {
                KeyState::PendingDeletion
            } else {
                KeyState::Enabled
            },
            key_spec: info.key_type.clone(),
            key_usage: KEY_USAGE.to_string(),
            multi_region: false,
            primary_version: Some(info.latest_version.to_string()),
        })
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "Encrypt";
        let key = self.key_ref(OP, key_id)?;
        let bind = Self::binding(context);
        let plain = Zeroizing::new(B64.encode(plaintext));
        let body = Self::body(&[
            ("plaintext", &plain),
            ("associated_data", &bind),
            ("context", &bind),
        ])?;
        let path = key.path(TransitEndpoint::Encrypt);
        let reply = match self
            .call(
                OP,
                Method::POST,
                &path,
                Capability::Update,
                Some(&body),
                &key,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.refine_encrypt_denial(e, &key).await),
        };
        Ok(reply
            .json::<Data<CiphertextData>>(OP)?
            .data
            .ciphertext
            .into_bytes())
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        const OP: &str = "Decrypt";
        let key = self.key_ref(OP, key_id)?;
        let Some(version) = transit_ciphertext_version(ciphertext) else {
            return Err(KmsError::new(
                ErrorKind::InvalidCiphertext,
                OP,
                "not a Transit ciphertext (vault:v<N>:…)",
            ));
        };
        let text = std::str::from_utf8(ciphertext).map_err(|_| {
            KmsError::new(
                ErrorKind::InvalidCiphertext,
                OP,
                "the ciphertext is not text",
            )
        })?;
        let bind = Self::binding(context);
        let body = Self::body(&[
            ("ciphertext", text),
            ("associated_data", &bind),
            ("context", &bind),
        ])?;
        let path = key.path(TransitEndpoint::Decrypt);
        let reply = self
            .call(OP, Method::POST, &path, Capability::Update, Some(&body), &key)
            .await
            .map_err(|mut e| {
                match e.kind {
                    ErrorKind::InvalidState => {
                        e.message = format!(
                            "the ciphertext was made with version {version} of Transit key {key}, which is below \
                             the key's min_decryption_version: OpenBao no longer decrypts it ({})",
                            e.message
                        );
                    }
                    ErrorKind::InvalidCiphertext => {
                        e.message = format!(
                            "Transit key {key} refused the ciphertext (version {version}): wrong context, wrong key \
                             or damaged ({})",
                            e.message
                        );
                    }
                    _ => {}
                }
                e
            })?;
        let data = reply.json::<Data<PlaintextData>>(OP)?.data;
        Self::decode_secret(OP, &data.plaintext)
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKeyPair> {
        const OP: &str = "GenerateDataKey";
        let key = self.key_ref(OP, key_id)?;
        let bind = Self::binding(context);
        let body = Self::body(&[("associated_data", &bind), ("context", &bind)])?;
        let path = key.path(TransitEndpoint::DatakeyPlaintext);
        let reply = self
            .call(
                OP,
                Method::POST,
                &path,
                Capability::Update,
                Some(&body),
                &key,
            )
            .await?;
        let data = reply.json::<Data<DataKeyData>>(OP)?.data;
        let plaintext = Self::decode_secret(OP, &data.plaintext)?;
        if plaintext.len() != DATA_KEY_LEN {
            return Err(KmsError::new(
                ErrorKind::Other,
                OP,
                format!(
                    "OpenBao returned a {}-byte data key, not {DATA_KEY_LEN}",
                    plaintext.len()
                ),
            ));
        }
        Ok(DataKeyPair {
            plaintext,
            ciphertext: data.ciphertext.into_bytes(),
        })
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let key = self.key_ref(OP, key_id)?;
        let bind = Self::binding(context);
        let body = Self::body(&[("associated_data", &bind), ("context", &bind)])?;
        let path = key.path(TransitEndpoint::DatakeyWrapped);
        let reply = self
            .call(
                OP,
                Method::POST,
                &path,
                Capability::Update,
                Some(&body),
                &key,
            )
            .await?;
        Ok(reply
            .json::<Data<CiphertextData>>(OP)?
            .data
            .ciphertext
            .into_bytes())
    }

    /// Decrypt with the source key, then encrypt with the destination key (the plaintext
    /// stays in wiped memory in between). Not Transit's `rewrap`: it takes no associated
    /// data, so it cannot open a ciphertext bound to a context.
    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        source_key_id: &str,
        destination_key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        // Both keys are checked before anything is decrypted.
        self.key_ref("ReEncrypt", destination_key_id)?;
        let plain = self.decrypt(source_key_id, ciphertext, context).await?;
        self.encrypt(destination_key_id, &plain, context).await
    }

    /// Which of `permissions` (`"<capability> <path>"`, see [`transit_permission`]) the
    /// platform's token holds, as `sys/capabilities-self` answers for the namespace.
    async fn test_permissions(&self, key_id: &str, permissions: &[&str]) -> Result<Vec<String>> {
        const OP: &str = "TestPermissions";
        let key = self.key_ref(OP, key_id)?;
        let mut wanted: Vec<(Capability, &str, &str)> = Vec::new();
        for p in permissions {
            let parsed = p
                .split_once(' ')
                .and_then(|(c, path)| Some((c.parse::<Capability>().ok()?, path.trim())))
                .filter(|(_, path)| !path.is_empty());
            let Some((cap, path)) = parsed else {
                return Err(KmsError::new(
                    ErrorKind::Invalid,
                    OP,
                    format!("{p:?} is not a permission of the form \"<capability> <path>\""),
                ));
            };
            wanted.push((cap, path, p));
        }
        let paths: BTreeSet<&str> = wanted.iter().map(|(_, path, _)| *path).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "paths": paths }))
            .map_err(|e| KmsError::new(ErrorKind::Other, OP, e.to_string()))?;
        let reply = self
            .call(
                OP,
                Method::POST,
                "sys/capabilities-self",
                Capability::Update,
                Some(&body),
                &key,
            )
            .await?;
        let answer = reply.json::<Data<BTreeMap<String, Vec<String>>>>(OP)?.data;
        Ok(wanted
            .into_iter()
            .filter(|(cap, path, _)| {
                answer.get(*path).is_some_and(|caps| {
                    !caps.iter().any(|c| c == "deny")
                        && caps.iter().any(|c| c == cap.as_str() || c == "root")
                })
            })
            .map(|(_, _, p)| p.to_string())
            .collect())
    }

    /// From the key's `auto_rotate_period` (rounded up to whole days) and the creation time
    /// of its latest version.
    async fn rotation_facts(&self, key_id: &str) -> Result<RotationFacts> {
        let info = self.read_key(key_id).await?;
        let last = info.version_created.get(&info.latest_version).copied();
        let period = info.auto_rotate_period;
        Ok(RotationFacts {
            enabled: period.is_some(),
            period_days: period
                .map(|p| u32::try_from(p.as_secs().div_ceil(86_400)).unwrap_or(u32::MAX)),
            last_rotated_at: last.and_then(rfc3339),
            next_rotation_at: match (last, period) {
                (Some(t), Some(p)) => i64::try_from(p.as_secs())
                    .ok()
                    .and_then(|p| t.checked_add(p))
                    .and_then(rfc3339),
                _ => None,
            },
        })
    }
}
