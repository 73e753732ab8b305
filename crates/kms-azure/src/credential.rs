//! Credentials besides the SDK's client secret: a token credential that hands out one fixed
//! bearer token (the built-in vault's dev tokens, which no token endpoint issues), and the
//! client assertion of an application's certificate credential.

use std::fmt;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::ClientMethodOptions;
use azure_core::time::{Duration, OffsetDateTime};
use azure_identity::ClientAssertion;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// Returns the same token for every scope. Its `Debug` never shows the token.
pub struct StaticTokenCredential {
    token: Secret,
}

impl StaticTokenCredential {
    pub fn new(token: &str) -> StaticTokenCredential {
        StaticTokenCredential {
            token: Secret::new(token.to_string()),
        }
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticTokenCredential(<redacted>)")
    }
}

#[async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // Far enough ahead that the SDK never tries to refresh it.
        Ok(AccessToken::new(
            self.token.clone(),
            OffsetDateTime::now_utc() + Duration::days(365),
        ))
    }
}

/// The client assertion of an application's certificate credential: a JWT signed with the
/// certificate's RSA key (RS256), naming the certificate by its SHA-1 thumbprint (`x5t`), for
/// the tenant's token endpoint, valid five minutes. Built fresh for every token request, as
/// Entra ID wants; the SDK's `ClientAssertionCredential` posts it and caches the token.
///
/// keyplane signs with `ring` rather than enabling `azure_identity`'s certificate credential,
/// which pulls in OpenSSL.
pub struct CertificateAssertion {
    client_id: String,
    audience: String,
    header_b64: String,
    key: ring::signature::RsaKeyPair,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How long an assertion is valid (the SDKs' default).
const ASSERTION_LIFETIME_SECS: i64 = 300;

impl CertificateAssertion {
    /// From a PEM holding the certificate (first) and its unencrypted RSA private key (PKCS#8
    /// or PKCS#1), as `az ad sp create-for-rbac --create-cert` writes it.
    pub fn from_pem(
        pem: &str,
        client_id: &str,
        token_endpoint: &str,
    ) -> std::result::Result<CertificateAssertion, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or("the PEM holds no CERTIFICATE block")?
            .map_err(|e| format!("the PEM's certificate does not decode: {e}"))?;
        let key = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(k)) => {
                ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            Ok(PrivateKeyDer::Pkcs1(k)) => {
                ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
            }
            Ok(_) => return Err("the PEM's private key is not an RSA key".into()),
            Err(_) => {
                return Err(
                    "the PEM holds no unencrypted private key (PRIVATE KEY or RSA PRIVATE KEY)"
                        .into(),
                );
            }
        }
        .map_err(|e| format!("the PEM's private key is not a usable RSA key: {e}"))?;
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": B64URL.encode(thumbprint.as_ref()),
        });
        Ok(CertificateAssertion {
            client_id: client_id.to_string(),
            audience: token_endpoint.to_string(),
            header_b64: B64URL.encode(header.to_string()),
            key,
        })
    }

    /// A signed assertion valid from `now` (Unix seconds).
    pub fn sign_at(&self, now: i64) -> std::result::Result<String, String> {
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signed = format!("{}.{}", self.header_b64, B64URL.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{signed}.{}", B64URL.encode(sig)))
    }
}

#[async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.sign_at(OffsetDateTime::now_utc().unix_timestamp())
            .map_err(|m| {
                azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, m)
            })
    }
}
