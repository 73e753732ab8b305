//! Application tokens in the original platform's format, `AstraCS:<24 letters>:<64 hex>`.
//!
//! The 24 letters are the public client ID (the lookup key); the 64 hex digits are the
//! secret, of which only a SHA-256 hash is ever stored.
use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const PREFIX: &str = "AstraCS";
const CLIENT_ID_LEN: usize = 24;
const SECRET_HEX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token must have three parts separated by ':' (AstraCS:<client id>:<secret>)")]
    Parts,
    #[error("the token must start with 'AstraCS:'")]
    Prefix,
    #[error("the token's client ID must be 24 letters")]
    ClientId,
    #[error("the token's secret must be 64 hexadecimal digits")]
    Secret,
}

/// A parsed application token. The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Token {
    client_id: String,
    secret: Zeroizing<String>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// A fresh token with a random client ID and a 256-bit random secret.
    pub fn generate() -> Token {
        let mut rng = rand::rng();
        let client_id: String = (0..CLIENT_ID_LEN)
            .map(|_| {
                let i = rng.random_range(0..52u8);
                (if i < 26 { b'A' + i } else { b'a' + i - 26 }) as char
            })
            .collect();
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(&mut bytes[..]);
        Token {
            client_id,
            secret: Zeroizing::new(hex::encode(&bytes[..])),
        }
    }

    pub fn parse(s: &str) -> Result<Token, TokenError> {
        let mut parts = s.split(':');
        let (Some(prefix), Some(client_id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Parts);
        };
        if prefix != PREFIX {
            return Err(TokenError::Prefix);
        }
        if client_id.len() != CLIENT_ID_LEN || !client_id.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(TokenError::ClientId);
        }
        if secret.len() != SECRET_HEX_LEN || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Secret);
        }
        Ok(Token {
            client_id: client_id.to_string(),
            secret: Zeroizing::new(secret.to_ascii_lowercase()),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The whole token, to show the user once at creation.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{PREFIX}:{}:{}",
            self.client_id,
            self.secret.as_str()
        ))
    }

    /// The only form of the secret that is stored.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Compares in constant time, so that response timing says nothing about how much of a
    /// guessed secret was right.
    pub fn matches_hash(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.secret_hash().ct_eq(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_their_hash() {
        let t = Token::generate();
        let text = t.expose();
        assert_eq!(text.len(), 97);
        let parsed = Token::parse(&text).unwrap();
        assert_eq!(parsed.client_id(), t.client_id());
        assert!(parsed.matches_hash(&t.secret_hash()));
        assert!(!Token::generate().matches_hash(&t.secret_hash()));
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        assert_eq!(Token::parse("abc").unwrap_err(), TokenError::Parts);
        let good = Token::generate().expose().to_string();
        assert_eq!(
            Token::parse(&good.replacen("AstraCS", "Astra", 1)).unwrap_err(),
            TokenError::Prefix
        );
        let mut bad_secret = good.clone();
        bad_secret.pop();
        bad_secret.push('z');
        assert_eq!(Token::parse(&bad_secret).unwrap_err(), TokenError::Secret);
        assert_eq!(
            Token::parse("AstraCS:abc1:00").unwrap_err(),
            TokenError::ClientId
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::generate();
        let secret = t.expose().rsplit(':').next().unwrap().to_string();
        assert!(!format!("{t:?}").contains(&secret));
    }
}
