//! The ciphertext keyplane keeps for a data key wrapped by Key Vault, and what binds it to its
//! encryption context.
//!
//! Key Vault's `wrapKey` takes no additional authenticated data, so unlike AWS KMS or Cloud KMS
//! the service cannot refuse a wrapped key presented with the wrong context (another
//! datacenter's, another organization's). The adapter binds it instead: next to Key Vault's
//! output it stores a tag, HMAC-SHA-256 keyed with the data key over the canonical context, and
//! after `unwrapKey` it recomputes the tag with the context it was given and returns nothing
//! unless they match. Moving a wrapped key to another context therefore fails without the data
//! key, which only Key Vault can recover. The tag is keyed by the plaintext, so it is only for
//! key material (high-entropy, at least 16 bytes); the adapter refuses shorter plaintexts.
//!
//! The envelope also records the full key ID with the version that wrapped (Key Vault's `kid`),
//! because `unwrapKey` must be sent to that version: after a rotation the current version
//! cannot unwrap what an older one wrapped.
//!
//! Layout (all lengths big-endian): `"KPAZ"`, format `1`, algorithm (1 = RSA-OAEP-256,
//! 2 = A256KW), u16 length + UTF-8 `kid`, 32-byte tag, then Key Vault's wrapped bytes.
//! The canonical context is, for each entry in key order, u32 length + key, u32 length + value,
//! after the domain string `keyplane azure context v1\0`. Both are stable across versions.

use hmac::{Hmac, Mac};
use keyplane_kms::EncryptionContext;
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"KPAZ";
const FORMAT: u8 = 1;
const TAG_DOMAIN: &[u8] = b"keyplane azure context v1\0";
const TAG_LEN: usize = 32;

/// The Key Vault algorithm a key type wraps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlgorithm {
    /// RSA and RSA-HSM keys.
    RsaOaep256,
    /// oct-HSM (AES) keys of a Managed HSM.
    A256Kw,
}

impl WrapAlgorithm {
    fn code(self) -> u8 {
        match self {
            WrapAlgorithm::RsaOaep256 => 1,
            WrapAlgorithm::A256Kw => 2,
        }
    }
    fn from_code(c: u8) -> Option<WrapAlgorithm> {
        match c {
            1 => Some(WrapAlgorithm::RsaOaep256),
            2 => Some(WrapAlgorithm::A256Kw),
            _ => None,
        }
    }
    /// Key Vault's name (`alg`).
    pub fn as_str(self) -> &'static str {
        match self {
            WrapAlgorithm::RsaOaep256 => "RSA-OAEP-256",
            WrapAlgorithm::A256Kw => "A256KW",
        }
    }
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The versioned key URL that wrapped it.
    pub kid: String,
    pub algorithm: WrapAlgorithm,
    pub tag: [u8; TAG_LEN],
    /// Key Vault's `wrapKey` result.
    pub wrapped: Vec<u8>,
}

impl WrappedKey {
    pub fn encode(&self) -> Vec<u8> {
        let kid = self.kid.as_bytes();
        let mut out = Vec::with_capacity(8 + kid.len() + TAG_LEN + self.wrapped.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.push(self.algorithm.code());
        out.extend_from_slice(&(kid.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(kid);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.wrapped);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<WrappedKey> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&format, rest) = rest.split_first()?;
        if format != FORMAT {
            return None;
        }
        let (&alg, rest) = rest.split_first()?;
        let algorithm = WrapAlgorithm::from_code(alg)?;
        let len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let rest = rest.get(2..)?;
        let kid = String::from_utf8(rest.get(..len)?.to_vec()).ok()?;
        let rest = rest.get(len..)?;
        let tag: [u8; TAG_LEN] = rest.get(..TAG_LEN)?.try_into().ok()?;
        let wrapped = rest.get(TAG_LEN..)?.to_vec();
        if wrapped.is_empty() {
            return None;
        }
        Some(WrappedKey {
            kid,
            algorithm,
            tag,
            wrapped,
        })
    }
}

/// HMAC over the canonical context; `None` only if the HMAC implementation refused the key,
/// which HMAC-SHA-256 never does.
fn mac(key: &[u8], context: &EncryptionContext) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    m.update(TAG_DOMAIN);
    for (k, v) in context {
        m.update(&(k.len() as u32).to_be_bytes());
        m.update(k.as_bytes());
        m.update(&(v.len() as u32).to_be_bytes());
        m.update(v.as_bytes());
    }
    Some(m)
}

/// The tag binding `data_key` to `context`.
pub fn context_tag(data_key: &[u8], context: &EncryptionContext) -> Option<[u8; TAG_LEN]> {
    Some(mac(data_key, context)?.finalize().into_bytes().into())
}

/// Constant-time check of a tag.
pub fn tag_matches(data_key: &[u8], context: &EncryptionContext, tag: &[u8; TAG_LEN]) -> bool {
    mac(data_key, context).is_some_and(|m| m.verify_slice(tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip_and_rejects() {
        let w = WrappedKey {
            kid: "https://v1x.vault.azure.net/keys/k/78deebed173b48e48f55abf87ed4cf71".into(),
            algorithm: WrapAlgorithm::RsaOaep256,
            tag: context_tag(&[1u8; 32], &ctx(&[("organization", "o1")])).unwrap(),
            wrapped: vec![9u8; 256],
        };
        let bytes = w.encode();
        assert_eq!(WrappedKey::decode(&bytes), Some(w.clone()));
        for n in 0..bytes.len() - 256 {
            assert_eq!(WrappedKey::decode(&bytes[..n]), None, "{n}");
        }
        let mut bad = bytes.clone();
        bad[4] = 2;
        assert_eq!(WrappedKey::decode(&bad), None);
        assert_eq!(WrappedKey::decode(b"KPK1garbage"), None);
    }

    #[test]
    fn the_tag_binds_key_and_context() {
        let c1 = ctx(&[("organization", "o1"), ("datacenter", "d1")]);
        let t = context_tag(&[1u8; 32], &c1).unwrap();
        assert!(tag_matches(&[1u8; 32], &c1, &t));
        assert!(!tag_matches(&[2u8; 32], &c1, &t));
        assert!(!tag_matches(
            &[1u8; 32],
            &ctx(&[("organization", "o1"), ("datacenter", "d2")]),
            &t
        ));
        assert!(!tag_matches(
            &[1u8; 32],
            &ctx(&[("organization", "o1")]),
            &t
        ));
        // Entry boundaries are part of the input: ("ab","c") differs from ("a","bc").
        assert_ne!(
            context_tag(&[1u8; 32], &ctx(&[("ab", "c")])),
            context_tag(&[1u8; 32], &ctx(&[("a", "bc")]))
        );
    }
}
