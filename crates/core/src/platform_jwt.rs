//! The platform's JWT signing key for OpenBao / Vault JWT auth roles: an Ed25519 key derived
//! from the sealing key (HKDF-SHA256, so every process of a deployment holds the same key
//! without another file), its public key as the PEM a customer puts in their auth mount's
//! `jwt_validation_pubkeys`, and the short-lived JWTs keyplane logs in with.
//!
//! A JWT names the organization as its subject and the customer's server as its audience:
//! the customer's role binds both (`bound_subject`, `bound_audiences`), so a JWT minted for
//! one organization or one server opens no other's role.
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::SealingKey;

/// What the derivation is for; another purpose gets another key from the same sealing key.
const INFO: &[u8] = b"keyplane openbao jwt signing key v1";
/// How long a login JWT is valid: one login, with room for clock skew.
pub const JWT_LIFETIME_SECS: i64 = 120;
/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The platform's signing key. Debug prints its public key only.
pub struct PlatformJwtKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for PlatformJwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformJwtKey")
            .field("public_key", &hex::encode(self.pair.public_key().as_ref()))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the platform's JWT signing key could not be derived")]
pub struct JwtKeyError;

/// The claims of a login JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginClaims<'a> {
    /// The organization the login is for.
    pub subject: &'a str,
    /// The customer's server (`scheme://host[:port]`).
    pub audience: &'a str,
    /// Unix seconds.
    pub now: i64,
}

impl PlatformJwtKey {
    pub fn derive(sealing: &SealingKey) -> Result<PlatformJwtKey, JwtKeyError> {
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"keyplane").extract(sealing.bytes());
        let mut seed = Zeroizing::new([0u8; 32]);
        prk.expand(&[INFO], ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut seed[..]))
            .map_err(|_| JwtKeyError)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..]).map_err(|_| JwtKeyError)?;
        Ok(PlatformJwtKey { pair })
    }

    /// The issuer the JWTs name: `keyplane:` and the start of the public key's SHA-256, so it
    /// is the deployment's own and does not change with its URL.
    pub fn issuer(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.pair.public_key().as_ref());
        format!("keyplane:{}", hex::encode(&digest[..8]))
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), for
    /// `jwt_validation_pubkeys`.
    pub fn public_key_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// A compact EdDSA JWT for one login: valid from 30 s before `now` (clock skew) for
    /// [`JWT_LIFETIME_SECS`].
    pub fn mint(&self, c: &LoginClaims<'_>) -> Zeroizing<String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.issuer(),
            "sub": c.subject,
            "aud": c.audience,
            "iat": c.now,
            "nbf": c.now - 30,
            "exp": c.now + JWT_LIFETIME_SECS,
        });
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{body}");
        let signature = self.pair.sign(signing_input.as_bytes());
        Zeroizing::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ED25519, UnparsedPublicKey};

    #[test]
    fn one_sealing_key_gives_one_signing_key_and_jwts_verify() {
        let sealing = SealingKey::generate();
        let a = PlatformJwtKey::derive(&sealing).unwrap();
        let b = PlatformJwtKey::derive(&SealingKey::from_bytes(sealing.bytes()).unwrap()).unwrap();
        assert_eq!(a.public_key_pem(), b.public_key_pem());
        assert_ne!(
            a.public_key_pem(),
            PlatformJwtKey::derive(&SealingKey::generate())
                .unwrap()
                .public_key_pem()
        );
        let pem = a.public_key_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );

        assert!(a.issuer().starts_with("keyplane:"));
        assert_eq!(a.issuer(), b.issuer());
        let jwt = a.mint(&LoginClaims {
            subject: "org-1",
            audience: "https://bao.example:8200",
            now: 1_700_000_000,
        });
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "org-1");
        assert_eq!(claims["iss"], a.issuer());
        assert_eq!(claims["aud"], "https://bao.example:8200");
        assert_eq!(claims["exp"], 1_700_000_000 + JWT_LIFETIME_SECS);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let key = UnparsedPublicKey::new(&ED25519, a.pair.public_key().as_ref().to_vec());
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        assert!(!format!("{a:?}").contains(&hex::encode(sealing.bytes())));
    }
}
