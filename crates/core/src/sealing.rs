//! Sealing what customers entrust keyplane with beyond their key IDs (an OpenBao role's
//! credentials): AES-256-GCM under the platform's sealing key, a random 96-bit nonce per
//! seal, and the record the secret belongs to as associated data, so that a sealed value
//! copied onto another organization's or key's row does not open there.
//!
//! Layout: `version (1 byte) || nonce (12) || ciphertext and tag`. Version 1 is the only one;
//! a new algorithm gets a new version and old rows keep opening.
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// Length of a sealing key.
pub const SEALING_KEY_LEN: usize = 32;

/// The platform's sealing key. Every process of one deployment must hold the same one (the
/// operator's file); it never leaves memory otherwise.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; SEALING_KEY_LEN]>);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    #[error("a sealing key is {SEALING_KEY_LEN} bytes, not {0}")]
    KeyLength(usize),
    #[error("the value is too long to seal")]
    TooLong,
    #[error("the sealed value is truncated or of an unknown version")]
    Malformed,
    /// The wrong sealing key, another record's value, or a changed byte: GCM cannot tell which.
    #[error("the sealed value does not open with this sealing key for this record")]
    Refused,
}

impl SealingKey {
    /// A fresh random key.
    pub fn generate() -> SealingKey {
        let mut k = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        rand::rng().fill_bytes(&mut k[..]);
        SealingKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey, SealingError> {
        if bytes.len() != SEALING_KEY_LEN {
            return Err(SealingError::KeyLength(bytes.len()));
        }
        let mut k = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        k.copy_from_slice(bytes);
        Ok(SealingKey(k))
    }

    /// The key's bytes, to write to the owner-only file it is kept in.
    pub fn bytes(&self) -> &[u8] {
        &self.0[..]
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0).into())
    }

    /// Seals `plaintext` for the record named by `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // AES-GCM refuses only past 64 GiB of plaintext, far beyond any credential.
            .map_err(|_| SealingError::TooLong)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value [`SealingKey::seal`] made for the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealingError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(SealingError::Malformed);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealingError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_same_key_and_record() {
        let k = SealingKey::generate();
        let sealed = k.seal(b"secret-id", b"org/key").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"secret-id"));
        assert_eq!(&k.open(&sealed, b"org/key").unwrap()[..], b"secret-id");
        assert_eq!(k.open(&sealed, b"org/other"), Err(SealingError::Refused));
        assert_eq!(
            SealingKey::generate().open(&sealed, b"org/key"),
            Err(SealingError::Refused)
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(&flipped, b"org/key"), Err(SealingError::Refused));
        assert_eq!(
            k.open(&sealed[..10], b"org/key"),
            Err(SealingError::Malformed)
        );
        let mut v2 = sealed;
        v2[0] = 2;
        assert_eq!(k.open(&v2, b"org/key"), Err(SealingError::Malformed));
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(k.seal(b"x", b"a").unwrap(), k.seal(b"x", b"a").unwrap());
    }

    #[test]
    fn keys_load_from_their_bytes_and_never_print() {
        let k = SealingKey::generate();
        let again = SealingKey::from_bytes(k.bytes()).unwrap();
        assert_eq!(
            &again.open(&k.seal(b"v", b"").unwrap(), b"").unwrap()[..],
            b"v"
        );
        assert_eq!(
            SealingKey::from_bytes(&[0; 31]).unwrap_err(),
            SealingError::KeyLength(31)
        );
        assert_eq!(format!("{k:?}"), "SealingKey(<redacted>)");
    }
}
