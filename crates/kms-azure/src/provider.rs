//! [`AzureKeyProvider`]: the [`KeyProvider`] operations on Key Vault keys.
//!
//! `describe_key` is Key Vault's `get` (enabled, `nbf`/`exp`, type, operations, current
//! version; the vault's region from the `x-ms-keyvault-region` header). `encrypt` is `wrapKey`
//! under the key ID's version (the current one for a versionless ID) and `decrypt` is
//! `unwrapKey` under the version recorded in the envelope (see [`crate::envelope`]), so data
//! keys wrapped before a rotation stay readable. `test_permissions` probes each permission with
//! a real, side-effect-free call; `rotation_facts` reads the key's rotation policy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::headers::HeaderName;
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, Key, KeyClientGetKeyOptions, KeyClientWrapKeyOptions,
    KeyOperationParameters, KeyRotationPolicyAction, KeyType,
};
use keyplane_core::AzureKeyId;
use keyplane_kms::retry::{RetrySettings, with_retries};
use keyplane_kms::{
    EncryptionContext, ErrorKind, KeyDescription, KeyProvider, KeyState, KmsError, Result,
    RotationFacts,
};
use zeroize::Zeroizing;

use crate::VaultClients;
use crate::envelope::{WrapAlgorithm, WrappedKey, context_tag, tag_matches};
use crate::errors::classify;

const REGION_HEADER: HeaderName = HeaderName::from_static("x-ms-keyvault-region");
/// The shortest plaintext `encrypt` accepts: the context tag is keyed with it (see
/// [`crate::envelope`]), so it must be key material.
const MIN_PLAINTEXT: usize = 16;

/// Key Vault keys, acting as one platform identity.
pub struct AzureKeyProvider {
    clients: VaultClients,
    credential: Arc<dyn TokenCredential>,
    retry: RetrySettings,
    /// One SDK client per vault URL.
    key_clients: Mutex<HashMap<String, Arc<KeyClient>>>,
    /// The wrap algorithm per key (a key's type never changes across its versions).
    algorithms: Mutex<HashMap<String, WrapAlgorithm>>,
}

impl fmt::Debug for AzureKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyProvider")
            .field("clients", &self.clients)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn invalid(operation: &'static str, message: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::Invalid, operation, message)
}

fn unix(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| t.unix_timestamp())
}

/// A key's state as keyplane sees it: disabled first, then outside its validity window.
fn state_of(key: &Key, now: i64) -> KeyState {
    let attrs = key.attributes.as_ref();
    if attrs.and_then(|a| a.enabled) == Some(false) {
        return KeyState::Disabled;
    }
    if unix(attrs.and_then(|a| a.expires)).is_some_and(|e| e <= now) {
        return KeyState::Other("Expired".into());
    }
    if unix(attrs.and_then(|a| a.not_before)).is_some_and(|n| n > now) {
        return KeyState::Other("NotYetValid".into());
    }
    KeyState::Enabled
}

fn algorithm_for(kty: Option<&KeyType>) -> Option<WrapAlgorithm> {
    match kty? {
        KeyType::Rsa | KeyType::RsaHsm => Some(WrapAlgorithm::RsaOaep256),
        KeyType::OctHsm | KeyType::Oct => Some(WrapAlgorithm::A256Kw),
        _ => None,
    }
}

fn sdk_algorithm(a: WrapAlgorithm) -> EncryptionAlgorithm {
    match a {
        WrapAlgorithm::RsaOaep256 => EncryptionAlgorithm::RsaOaep256,
        WrapAlgorithm::A256Kw => EncryptionAlgorithm::A256Kw,
    }
}

/// The permission names `test_permissions` understands: Key Vault's access-policy names or
/// the RBAC data actions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Get,
    Wrap,
    Unwrap,
}

fn probe_of(permission: &str) -> Option<Probe> {
    match permission.to_ascii_lowercase().as_str() {
        "get"
        | "microsoft.keyvault/vaults/keys/read"
        | "microsoft.keyvault/managedhsm/keys/read/action" => Some(Probe::Get),
        "wrapkey"
        | "microsoft.keyvault/vaults/keys/wrap/action"
        | "microsoft.keyvault/managedhsm/keys/wrap/action" => Some(Probe::Wrap),
        "unwrapkey"
        | "microsoft.keyvault/vaults/keys/unwrap/action"
        | "microsoft.keyvault/managedhsm/keys/unwrap/action" => Some(Probe::Unwrap),
        _ => None,
    }
}

impl AzureKeyProvider {
    pub(crate) fn new(
        clients: VaultClients,
        credential: Arc<dyn TokenCredential>,
        retry: RetrySettings,
    ) -> Self {
        AzureKeyProvider {
            clients,
            credential,
            retry,
            key_clients: Mutex::new(HashMap::new()),
            algorithms: Mutex::new(HashMap::new()),
        }
    }

    fn parse(&self, operation: &'static str, key_id: &str) -> Result<AzureKeyId> {
        AzureKeyId::parse_allowing(key_id, self.clients.dev_hosts())
            .map_err(|e| invalid(operation, e.to_string()))
    }

    fn client(&self, key: &AzureKeyId) -> Result<Arc<KeyClient>> {
        let url = key.vault_url();
        let mut clients = self.key_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&url) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.clients.key_client(&url, self.credential.clone())?);
        clients.insert(url, c.clone());
        Ok(c)
    }

    /// `get`: the key and the vault's region.
    async fn get(&self, key: &AzureKeyId) -> Result<(Key, Option<String>)> {
        const OP: &str = "GetKey";
        let client = self.client(key)?;
        with_retries(&self.retry, OP, || {
            let client = client.clone();
            async move {
                let options = KeyClientGetKeyOptions {
                    key_version: key.version.clone(),
                    ..Default::default()
                };
                let rsp = client
                    .get_key(&key.name, Some(options))
                    .await
                    .map_err(|e| classify(OP, e))?;
                let region = rsp.headers().get_optional_string(&REGION_HEADER);
                let model = rsp.into_model().map_err(|e| classify(OP, e))?;
                Ok((model, region))
            }
        })
        .await
    }

    /// The algorithm this key wraps with, from a cached `get`.
    async fn algorithm(&self, key: &AzureKeyId) -> Result<WrapAlgorithm> {
        let id = key.versionless().to_string().to_ascii_lowercase();
        if let Some(a) = self
            .algorithms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(*a);
        }
        let (k, _) = self.get(key).await?;
        let kty = k.key.as_ref().and_then(|j| j.kty.as_ref());
        let a = algorithm_for(kty).ok_or_else(|| {
            KmsError::new(
                ErrorKind::WrongKeyType,
                "WrapKey",
                format!(
                    "key type {} cannot wrap keys; use an RSA key (or an oct-HSM key of a Managed HSM)",
                    kty.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into())
                ),
            )
        })?;
        self.algorithms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, a);
        Ok(a)
    }

    async fn wrap(
        &self,
        key: &AzureKeyId,
        alg: WrapAlgorithm,
        value: &[u8],
    ) -> Result<(String, Vec<u8>)> {
        const OP: &str = "WrapKey";
        let client = self.client(key)?;
        with_retries(&self.retry, OP, || {
            let client = client.clone();
            async move {
                let p = KeyOperationParameters {
                    algorithm: Some(sdk_algorithm(alg)),
                    value: Some(value.to_vec()),
                    ..Default::default()
                };
                let body = p.try_into().map_err(|e| classify(OP, e))?;
                let options = KeyClientWrapKeyOptions {
                    key_version: key.version.clone(),
                    ..Default::default()
                };
                let r = client
                    .wrap_key(&key.name, body, Some(options))
                    .await
                    .map_err(|e| classify(OP, e))?
                    .into_model()
                    .map_err(|e| classify(OP, e))?;
                match (r.kid, r.result) {
                    (Some(kid), Some(wrapped)) if !wrapped.is_empty() => Ok((kid, wrapped)),
                    _ => Err(KmsError::new(
                        ErrorKind::Other,
                        OP,
                        "Key Vault answered wrapKey without kid or value",
                    )),
                }
            }
        })
        .await
    }

    async fn unwrap(
        &self,
        key: &AzureKeyId,
        version: &str,
        alg: WrapAlgorithm,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        const OP: &str = "UnwrapKey";
        let client = self.client(key)?;
        with_retries(&self.retry, OP, || {
            let client = client.clone();
            async move {
                let p = KeyOperationParameters {
                    algorithm: Some(sdk_algorithm(alg)),
                    value: Some(wrapped.to_vec()),
                    ..Default::default()
                };
                let body = p.try_into().map_err(|e| classify(OP, e))?;
                let r = client
                    .unwrap_key(&key.name, version, body, None)
                    .await
                    .map_err(|e| classify(OP, e))?
                    .into_model()
                    .map_err(|e| classify(OP, e))?;
                r.result.map(Zeroizing::new).ok_or_else(|| {
                    KmsError::new(
                        ErrorKind::Other,
                        OP,
                        "Key Vault answered unwrapKey without a value",
                    )
                })
            }
        })
        .await
    }
}

#[async_trait]
impl KeyProvider for AzureKeyProvider {
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription> {
        let key = self.parse("GetKey", key_id)?;
        let (k, region) = self.get(&key).await?;
        let jwk = k.key.as_ref();
        let version = jwk
            .and_then(|j| j.kid.as_deref())
            .and_then(|kid| AzureKeyId::parse_allowing(kid, self.clients.dev_hosts()).ok())
            .and_then(|id| id.version);
        let kty = jwk.and_then(|j| j.kty.as_ref());
        let key_spec = match (kty, jwk.and_then(|j| j.n.as_ref())) {
            (Some(t @ (KeyType::Rsa | KeyType::RsaHsm)), Some(n)) => format!("{t}-{}", n.len() * 8),
            (Some(t), _) => t.to_string(),
            (None, _) => String::new(),
        };
        let key_usage = jwk
            .and_then(|j| j.key_ops.as_ref())
            .map(|ops| ops.join(","))
            .unwrap_or_default();
        if let Some(a) = algorithm_for(kty) {
            self.algorithms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.versionless().to_string().to_ascii_lowercase(), a);
        }
        Ok(KeyDescription {
            arn: key.versionless().to_string(),
            account: key.vault_name.clone().unwrap_or_else(|| key.host.clone()),
            region: region.unwrap_or_default(),
            state: state_of(&k, OffsetDateTime::now_utc().unix_timestamp()),
            key_spec,
            key_usage,
            multi_region: false,
            primary_version: version,
        })
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "WrapKey";
        let key = self.parse(OP, key_id)?;
        if plaintext.len() < MIN_PLAINTEXT {
            return Err(invalid(
                OP,
                format!(
                    "the Azure adapter wraps key material of at least {MIN_PLAINTEXT} bytes, got {}",
                    plaintext.len()
                ),
            ));
        }
        let alg = self.algorithm(&key).await?;
        let tag = context_tag(plaintext, context).ok_or_else(|| {
            KmsError::new(ErrorKind::Other, OP, "could not compute the context tag")
        })?;
        let (kid, wrapped) = self.wrap(&key, alg, plaintext).await?;
        Ok(WrappedKey {
            kid,
            algorithm: alg,
            tag,
            wrapped,
        }
        .encode())
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        const OP: &str = "UnwrapKey";
        let key = self.parse(OP, key_id)?;
        let bad = |why: &str| KmsError::new(ErrorKind::InvalidCiphertext, OP, why.to_string());
        let env = WrappedKey::decode(ciphertext)
            .ok_or_else(|| bad("not a wrapped key of the Azure adapter"))?;
        let wrapped_by = AzureKeyId::parse_allowing(&env.kid, self.clients.dev_hosts())
            .map_err(|_| bad("the wrapped key names an unreadable key ID"))?;
        if !wrapped_by.same_key(&key) {
            return Err(bad(&format!(
                "the data key was wrapped by {}, not by {}",
                wrapped_by.versionless(),
                key.versionless()
            )));
        }
        let version = wrapped_by
            .version
            .as_deref()
            .ok_or_else(|| bad("the wrapped key does not name its key version"))?;
        let plain = self
            .unwrap(&key, version, env.algorithm, &env.wrapped)
            .await?;
        if !tag_matches(&plain, context, &env.tag) {
            return Err(bad("the wrapped key belongs to another encryption context"));
        }
        Ok(plain)
    }

    async fn test_permissions(&self, key_id: &str, permissions: &[&str]) -> Result<Vec<String>> {
        const OP: &str = "TestPermissions";
        let key = self.parse(OP, key_id)?;
        let mut probes = Vec::new();
        for p in permissions {
            let probe = probe_of(p).ok_or_else(|| {
                invalid(
                    OP,
                    format!(
                        "cannot test {p:?}: the Azure adapter tests get, wrapKey and unwrapKey"
                    ),
                )
            })?;
            probes.push((*p, probe));
        }
        let denied = |e: &KmsError| matches!(e.kind, ErrorKind::AccessDenied { .. });
        let mut modulus_len = 256usize;
        let mut alg = None;
        let mut held = Vec::new();
        // get first: it tells the key type and size the other probes need.
        let get = self.get(&key).await;
        match &get {
            Ok((k, _)) => {
                let jwk = k.key.as_ref();
                alg = algorithm_for(jwk.and_then(|j| j.kty.as_ref()));
                if let Some(n) = jwk.and_then(|j| j.n.as_ref()) {
                    modulus_len = n.len();
                }
            }
            Err(e) if denied(e) => {}
            Err(e) => return Err(KmsError::new(e.kind.clone(), OP, e.message.clone())),
        }
        let alg = alg.unwrap_or(WrapAlgorithm::RsaOaep256);
        for (name, probe) in probes {
            let ok = match probe {
                Probe::Get => get.is_ok(),
                Probe::Wrap => {
                    let mut sample = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut sample);
                    match self.wrap(&key, alg, &sample).await {
                        Ok(_) => true,
                        Err(e) if denied(&e) => false,
                        Err(e) => return Err(e),
                    }
                }
                Probe::Unwrap => {
                    // A random blob cannot unwrap, but Key Vault authorizes before it decrypts:
                    // its "bad ciphertext" answer proves the permission, a 403 its absence.
                    let len = if alg == WrapAlgorithm::A256Kw {
                        40
                    } else {
                        modulus_len
                    };
                    let mut blob = vec![0u8; len];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut blob);
                    let version = match (&key.version, &get) {
                        (Some(v), _) => v.clone(),
                        (None, Ok((k, _))) => k
                            .key
                            .as_ref()
                            .and_then(|j| j.kid.as_deref())
                            .and_then(|kid| {
                                AzureKeyId::parse_allowing(kid, self.clients.dev_hosts()).ok()
                            })
                            .and_then(|id| id.version)
                            .unwrap_or_default(),
                        (None, Err(_)) => String::new(),
                    };
                    match self.unwrap(&key, &version, alg, &blob).await {
                        Ok(_) => true,
                        Err(e) if e.kind == ErrorKind::InvalidCiphertext => true,
                        Err(e) if denied(&e) => false,
                        Err(e) => return Err(e),
                    }
                }
            };
            if ok {
                held.push(name.to_string());
            }
        }
        Ok(held)
    }

    async fn rotation_facts(&self, key_id: &str) -> Result<RotationFacts> {
        const OP: &str = "GetKeyRotationPolicy";
        let key = self.parse(OP, key_id)?.versionless();
        let client = self.client(&key)?;
        let policy = with_retries(&self.retry, OP, || {
            let client = client.clone();
            let name = key.name.clone();
            async move {
                client
                    .get_key_rotation_policy(&name, None)
                    .await
                    .map_err(|e| classify(OP, e))?
                    .into_model()
                    .map_err(|e| classify(OP, e))
            }
        })
        .await?;
        let period_days = policy
            .lifetime_actions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|a| {
                a.action
                    .as_ref()
                    .and_then(|t| t.type_prop.as_ref())
                    .is_some_and(|t| matches!(t, KeyRotationPolicyAction::Rotate))
            })
            .find_map(|a| {
                a.trigger
                    .as_ref()
                    .and_then(|t| t.time_after_create.as_deref())
            })
            .and_then(iso_days);
        let (k, _) = self.get(&key).await?;
        let created = k.attributes.as_ref().and_then(|a| a.created);
        let fmt = |t: OffsetDateTime| azure_core::time::to_rfc3339(&t);
        Ok(RotationFacts {
            enabled: period_days.is_some(),
            period_days,
            last_rotated_at: created.map(fmt),
            next_rotation_at: match (created, period_days) {
                (Some(c), Some(d)) => Some(fmt(c + azure_core::time::Duration::days(i64::from(d)))),
                _ => None,
            },
        })
    }
}

/// Days in an ISO 8601 duration of days, months (30) or years (365): `P90D`, `P1Y`.
fn iso_days(s: &str) -> Option<u32> {
    let rest = s.strip_prefix('P')?;
    let (n, unit) = rest.split_at(rest.len().checked_sub(1)?);
    let n: u32 = n.parse().ok()?;
    match unit {
        "D" => Some(n),
        "M" => n.checked_mul(30),
        "Y" => n.checked_mul(365),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(iso_days("P90D"), Some(90));
        assert_eq!(iso_days("P1Y"), Some(365));
        assert_eq!(iso_days("P2M"), Some(60));
        assert_eq!(iso_days("PT1H"), None);
        assert_eq!(iso_days(""), None);
    }

    #[test]
    fn probes_accept_both_spellings() {
        assert!(probe_of("wrapKey") == Some(Probe::Wrap));
        assert!(probe_of("Microsoft.KeyVault/vaults/keys/unwrap/action") == Some(Probe::Unwrap));
        assert!(probe_of("get") == Some(Probe::Get));
        assert!(probe_of("sign").is_none());
    }
}
