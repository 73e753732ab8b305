//! How keyplane's encryption context is bound to a Transit ciphertext, and what a Transit
//! ciphertext says about itself.
//!
//! Binding: every encrypt, decrypt and data-key call sends the context's canonical bytes
//! (below) both as `associated_data` and as `context`:
//! - `associated_data` is authenticated by every AEAD key type (AES-GCM, ChaCha20-Poly1305),
//!   derived or not, so a ciphertext only decrypts with the same context. This is what binds
//!   on an ordinary (non-derived) key, where Transit ignores `context`.
//! - `context` is what a derived key (`derived=true`) requires to pick its per-context key;
//!   sent always, so that keyplane need not know which kind the customer made.
//!
//! Transit's `rewrap` takes `context` but no `associated_data`, so it cannot carry such a
//! ciphertext to a new key version (it fails authentication); re-encryption is decrypt then
//! encrypt instead, and the policy asks for no `rewrap` capability.

use keyplane_kms::EncryptionContext;

/// The canonical serialization of a context: the compact JSON object with keys in byte order
/// (the map's own order) and serde_json's escaping, e.g. `{"datacenter":"d1","org":"o1"}`;
/// `{}` for an empty context (never empty bytes, which a derived key would refuse). Changing
/// this would make every existing ciphertext undecryptable.
pub fn canonical_context(context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + context.len() * 16);
    out.push(b'{');
    for (i, (k, v)) in context.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Strings always serialize; a failure here is impossible for a String.
        out.extend(serde_json::to_vec(k).unwrap_or_default());
        out.push(b':');
        out.extend(serde_json::to_vec(v).unwrap_or_default());
    }
    out.push(b'}');
    out
}

/// The key version a Transit ciphertext (`vault:v<N>:<base64>`) was made with.
pub fn transit_ciphertext_version(ciphertext: &[u8]) -> Option<u32> {
    let rest = ciphertext.strip_prefix(b"vault:v")?;
    let end = rest.iter().position(|&b| b == b':')?;
    let digits = std::str::from_utf8(&rest[..end]).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_is_frozen() {
        let mut c = EncryptionContext::new();
        assert_eq!(canonical_context(&c), b"{}");
        c.insert("org".into(), "o1".into());
        c.insert("datacenter".into(), "d\"1".into());
        c.insert("Zeta".into(), "é".into());
        assert_eq!(
            String::from_utf8(canonical_context(&c)).unwrap(),
            r#"{"Zeta":"é","datacenter":"d\"1","org":"o1"}"#
        );
        // Equal to serde_json's own rendering of the map, which is what makes it JSON.
        assert_eq!(canonical_context(&c), serde_json::to_vec(&c).unwrap());
    }

    #[test]
    fn ciphertext_versions() {
        assert_eq!(transit_ciphertext_version(b"vault:v1:abc"), Some(1));
        assert_eq!(transit_ciphertext_version(b"vault:v42:abc"), Some(42));
        assert_eq!(transit_ciphertext_version(b"vault:v:abc"), None);
        assert_eq!(transit_ciphertext_version(b"vault:vx:abc"), None);
        assert_eq!(transit_ciphertext_version(b"AQIDAHh..."), None);
        assert_eq!(transit_ciphertext_version(b"vault:v1"), None);
    }
}
