//! AES-256-GCM sealing for key material at rest (under the root key) and for KMS ciphertexts
//! (under a key's material version), plus the ciphertext blob layout.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
/// Distinguishes our blobs from garbage early and lets the layout change later.
const BLOB_MAGIC: &[u8; 4] = b"KPK1";

/// 32 bytes of AES key with a ready cipher; both are wiped on drop and never printed.
pub(crate) struct SecretKey {
    bytes: Zeroizing<[u8; 32]>,
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        let bytes = Zeroizing::new(bytes);
        let cipher = Aes256Gcm::new((&*bytes).into());
        SecretKey { bytes, cipher }
    }
    pub fn random() -> SecretKey {
        let mut b = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut *b);
        SecretKey::from_bytes(*b)
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
    /// nonce ‖ ciphertext ‖ tag. Random 96-bit nonces are fine at dev-server volumes.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        // Encryption with a valid key and in-memory buffers cannot fail for these sizes.
        match self.cipher.encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        ) {
            Ok(ct) => out.extend_from_slice(&ct),
            Err(_) => out.clear(),
        }
        out
    }
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

pub(crate) fn random_bytes(n: usize) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    rand::rng().fill_bytes(&mut v);
    v
}

/// The encryption context in one byte string that does not depend on the order the client sent
/// it in, so it can be bound as associated data.
pub(crate) fn canonical_context(ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// What a ciphertext blob says about where it came from; it is authenticated as part of the
/// associated data, so a tampered header fails decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobHeader {
    pub account: String,
    pub region: String,
    pub key_id: String,
    pub version: u32,
}

impl BlobHeader {
    fn encode(&self) -> Vec<u8> {
        let mut h =
            Vec::with_capacity(8 + self.account.len() + self.region.len() + self.key_id.len() + 4);
        h.extend_from_slice(BLOB_MAGIC);
        for part in [&self.account, &self.region, &self.key_id] {
            h.push(part.len() as u8);
            h.extend_from_slice(part.as_bytes());
        }
        h.extend_from_slice(&self.version.to_be_bytes());
        h
    }

    /// Parses the header and returns it with the rest of the blob (the sealed part).
    pub fn parse(blob: &[u8]) -> Option<(BlobHeader, &[u8], &[u8])> {
        let rest = blob.strip_prefix(BLOB_MAGIC)?;
        let mut pos = 0usize;
        let mut parts = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = *rest.get(pos)? as usize;
            let s = rest.get(pos + 1..pos + 1 + len)?;
            parts.push(String::from_utf8(s.to_vec()).ok()?);
            pos += 1 + len;
        }
        let v = rest.get(pos..pos + 4)?;
        let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        pos += 4;
        let header_len = BLOB_MAGIC.len() + pos;
        let key_id = parts.pop()?;
        let region = parts.pop()?;
        let account = parts.pop()?;
        Some((
            BlobHeader {
                account,
                region,
                key_id,
                version,
            },
            &blob[..header_len],
            &blob[header_len..],
        ))
    }
}

pub(crate) fn seal_blob(
    key: &SecretKey,
    header: &BlobHeader,
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut blob = header.encode();
    let mut aad = blob.clone();
    aad.extend_from_slice(&canonical_context(context));
    blob.extend_from_slice(&key.seal(&aad, plaintext));
    blob
}

pub(crate) fn open_blob(
    key: &SecretKey,
    header_bytes: &[u8],
    sealed: &[u8],
    context: &BTreeMap<String, String>,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut aad = header_bytes.to_vec();
    aad.extend_from_slice(&canonical_context(context));
    key.open(&aad, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_roundtrip_and_binding() {
        let k = SecretKey::random();
        let h = BlobHeader {
            account: "111111111111".into(),
            region: "us-east-2".into(),
            key_id: "abc".into(),
            version: 3,
        };
        let mut ctx = BTreeMap::new();
        ctx.insert("a".to_string(), "b".to_string());
        let blob = seal_blob(&k, &h, &ctx, b"hello");
        let (h2, hb, sealed) = BlobHeader::parse(&blob).unwrap();
        assert_eq!(h, h2);
        assert_eq!(&open_blob(&k, hb, sealed, &ctx).unwrap()[..], b"hello");
        assert!(open_blob(&k, hb, sealed, &BTreeMap::new()).is_none());
        let mut t = blob.clone();
        let n = t.len();
        t[n - 1] ^= 1;
        let (_, hb, sealed) = BlobHeader::parse(&t).unwrap();
        assert!(open_blob(&k, hb, sealed, &ctx).is_none());
        assert!(BlobHeader::parse(b"KPK1\x05ab").is_none());
    }
}
