//! A portal session's secret: the 256-bit random ID a browser's session cookie carries, and
//! what is derived from it.
//!
//! The ID is a bearer secret, like an application token's secret, so it is kept the same
//! way: only its SHA-256 ([`PortalSessionId::storage_hash`]) is ever stored, and its bytes are
//! zeroized on drop and never printed. The session's CSRF token is derived from the ID under
//! its own label ([`PortalSessionId::csrf_token`]), so any process that sees the cookie can
//! check a form without storing a second secret, while someone who reads the store (the
//! hash) can compute neither the cookie nor the CSRF token.
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const ID_HEX_LEN: usize = 64;
/// Domain separation: the CSRF token is never equal to the stored hash or to the ID.
const CSRF_LABEL: &[u8] = b"keyplane portal csrf\0";

/// The secret ID of a portal session (64 lower-case hex digits).
pub struct PortalSessionId(Zeroizing<String>);

impl std::fmt::Debug for PortalSessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalSessionId(<redacted>)")
    }
}

impl PortalSessionId {
    /// A fresh ID: 256 bits from the operating system's CSPRNG-seeded generator.
    pub fn generate() -> PortalSessionId {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill(&mut bytes[..]);
        PortalSessionId(Zeroizing::new(hex::encode(&bytes[..])))
    }

    /// The ID a cookie carries, when it has the shape of one (anything else names no
    /// session, and is never looked up).
    pub fn parse(s: &str) -> Option<PortalSessionId> {
        (s.len() == ID_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| PortalSessionId(Zeroizing::new(s.to_string())))
    }

    /// The cookie's value. Only for the `Set-Cookie` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps and looks sessions up by.
    pub fn storage_hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The session's CSRF token (64 hex digits), the same on every replica for one session.
    pub fn csrf_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(CSRF_LABEL);
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }

    /// Whether a form's `csrf` field is this session's CSRF token, in time independent of
    /// where they differ.
    pub fn csrf_matches(&self, field: &str) -> bool {
        let want = self.csrf_token();
        want.len() == field.len() && bool::from(want.as_bytes().ct_eq(field.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_256_bit_hex_and_parse_back() {
        let a = PortalSessionId::generate();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.expose(), PortalSessionId::generate().expose());
        let back = PortalSessionId::parse(a.expose()).unwrap();
        assert_eq!(back.storage_hash(), a.storage_hash());
        for bad in ["", "abc", &"g".repeat(64), &"A".repeat(64), &"0".repeat(65)] {
            assert!(PortalSessionId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hash_and_csrf_are_distinct_and_stable() {
        let a = PortalSessionId::parse(&"1".repeat(64)).unwrap();
        let stored = hex::encode(a.storage_hash());
        let csrf = a.csrf_token();
        assert_eq!(csrf.len(), 64);
        assert_ne!(csrf, stored, "the stored hash is not the CSRF token");
        assert_ne!(csrf, a.expose());
        assert_eq!(
            csrf,
            PortalSessionId::parse(&"1".repeat(64))
                .unwrap()
                .csrf_token()
        );
        assert_ne!(
            csrf,
            PortalSessionId::parse(&"2".repeat(64))
                .unwrap()
                .csrf_token()
        );
        assert!(a.csrf_matches(&csrf));
        assert!(!a.csrf_matches(&csrf[..63]));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches(&stored));
    }

    #[test]
    fn debug_never_shows_the_id() {
        let a = PortalSessionId::generate();
        let shown = format!("{a:?}");
        assert!(!shown.contains(a.expose()), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
