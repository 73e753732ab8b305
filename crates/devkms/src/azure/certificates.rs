//! Certificate credentials of applications, as Entra ID has them: an application registers the
//! public certificate of an RSA key, and proves itself at the token endpoint with a client
//! assertion, a JWT signed by that key that names the certificate by thumbprint (`x5t`, the
//! SHA-1 of its DER; `x5t#S256` also accepted). Only certificates are stored, never keys.
//!
//! The platform's dev application gets one at first start: a self-signed RSA 2048 certificate
//! whose PEM (certificate and PKCS#8 key) is written owner-only next to the credentials file,
//! the way `az ad sp create-for-rbac --create-cert` hands one out.

use std::path::Path;

use aws_lc_rs::digest;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::TokenError;
use super::state::Principal;

/// What `client_assertion_type` must say.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on `exp` and `nbf`, as Entra ID's.
const SKEW_SECS: i64 = 300;
/// The longest lifetime an assertion may claim (Entra ID refuses longer-lived ones).
const MAX_LIFETIME_SECS: i64 = 24 * 3600;

/// One registered certificate of an application.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppCertificate {
    /// SHA-1 of the DER, hex upper case (how the portal and `az` show thumbprints).
    pub thumbprint: String,
    /// The certificate, DER in base64.
    pub der_b64: String,
    /// Made by the built-in vault for the dev platform application (replaced when its PEM file
    /// is lost); operators' uploads are never touched.
    #[serde(default)]
    pub generated: bool,
}

impl AppCertificate {
    fn der(&self) -> Option<Vec<u8>> {
        B64.decode(&self.der_b64).ok()
    }
}

fn sha1(der: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .to_vec()
}

/// How a thumbprint is computed from a certificate's DER.
type Thumbprinter = fn(&[u8]) -> Vec<u8>;

fn sha256(der: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, der).as_ref().to_vec()
}

/// Parses the first certificate of `pem` and checks it carries an RSA key, the only kind Entra
/// ID takes for client assertions.
pub(crate) fn parse(pem: &str, generated: bool) -> Result<AppCertificate, String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or("no CERTIFICATE block in the PEM")?
        .map_err(|e| format!("the PEM is not a certificate: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    // An empty signature is never valid; what the refusal says tells an RSA key from another.
    if let Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) =
        cert.verify_signature(webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256, b"", b"")
    {
        return Err(
            "the certificate's key is not RSA; Entra ID takes RSA certificates only".into(),
        );
    }
    Ok(AppCertificate {
        thumbprint: hex::encode_upper(sha1(der.as_ref())),
        der_b64: B64.encode(der.as_ref()),
        generated,
    })
}

/// A new self-signed RSA 2048 certificate for `name`: the certificate and the PEM holding it
/// with its PKCS#8 key.
pub(crate) fn generate(name: &str) -> Result<(AppCertificate, Zeroizing<String>), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(|e| e.to_string())?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
    let pem = Zeroizing::new(format!("{}{}", cert.pem(), key.serialize_pem()));
    Ok((parse(&cert.pem(), true)?, pem))
}

/// The generated certificate of `p` whose PEM is in `file`, if the file still holds one of the
/// certificates registered; otherwise a new one replaces `p`'s generated certificates and is
/// written to `file` (0600).
pub(crate) fn dev_certificate_for(
    p: &mut Principal,
    file: &Path,
    name: &str,
) -> Result<(), crate::error::DevKmsError> {
    if let Ok(pem) = std::fs::read_to_string(file).map(Zeroizing::new)
        && let Ok(c) = parse(&pem, true)
        && p.certificates.iter().any(|k| k.thumbprint == c.thumbprint)
    {
        return Ok(());
    }
    let (cert, pem) = generate(name).map_err(crate::error::DevKmsError::Tls)?;
    crate::state::write_private(file, pem.as_bytes())?;
    p.certificates.retain(|c| !c.generated);
    p.certificates.push(cert);
    Ok(())
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

fn invalid_client(aadsts: u32, description: impl Into<String>) -> TokenError {
    TokenError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        aadsts,
        description,
    )
}

fn invalid_request(aadsts: u32, description: impl Into<String>) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        aadsts,
        description,
    )
}

fn decode_thumbprint(s: &str) -> Option<Vec<u8>> {
    B64URL
        .decode(s.trim_end_matches('='))
        .ok()
        .or_else(|| B64.decode(s).ok())
}

/// Checks `assertion` as Entra ID does for `app`: signed by one of its certificates, issued and
/// subject `client_id`, for `token_endpoint`, inside its validity window.
pub(crate) fn verify_assertion(
    app: &Principal,
    client_id: &str,
    assertion: &str,
    token_endpoint: &str,
    now: i64,
) -> Result<(), TokenError> {
    let malformed = || invalid_request(50027, "The client assertion is not a well-formed JWT.");
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header: Header = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let claims: Claims = B64URL
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let signature = B64URL.decode(s).map_err(|_| malformed())?;
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match header.alg.as_str() {
        "RS256" => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        "PS256" => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => {
            return Err(invalid_client(
                5002738,
                format!(
                    "The client assertion's algorithm {other:?} is not supported; use RS256 or PS256."
                ),
            ));
        }
    };
    let (thumb, digest_of): (Vec<u8>, Thumbprinter) =
        match (header.x5t_s256.as_deref(), header.x5t.as_deref()) {
            (Some(t), _) => (decode_thumbprint(t).ok_or_else(malformed)?, sha256),
            (None, Some(t)) => (decode_thumbprint(t).ok_or_else(malformed)?, sha1),
            (None, None) => {
                return Err(invalid_request(
                    700027,
                    "The client assertion names no certificate (x5t).",
                ));
            }
        };
    let der = app
        .certificates
        .iter()
        .filter_map(AppCertificate::der)
        .find(|der| bool::from(digest_of(der).ct_eq(&thumb)))
        .ok_or_else(|| {
            invalid_client(
                700027,
                format!(
                    "Client assertion failed signature validation: the key was not found among the certificates of application '{client_id}'."
                ),
            )
        })?;
    let der = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|_| invalid_client(700027, "The registered certificate does not parse."))?;
    let signed = &assertion[..h.len() + 1 + c.len()];
    cert.verify_signature(alg, signed.as_bytes(), &signature)
        .map_err(|_| invalid_client(700027, "Client assertion contains an invalid signature."))?;

    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(invalid_client(
            700021,
            "The client assertion's issuer and subject must both be the client_id.",
        ));
    }
    let aud_ok = claims
        .aud
        .as_deref()
        .is_some_and(|a| a.trim_end_matches('/').eq_ignore_ascii_case(token_endpoint));
    if !aud_ok {
        return Err(invalid_client(
            700212,
            format!("The client assertion's audience must be the token endpoint {token_endpoint}."),
        ));
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(invalid_request(
            700027,
            "The client assertion has no jti claim.",
        ));
    }
    let Some(exp) = claims.exp else {
        return Err(invalid_request(
            700024,
            "The client assertion has no exp claim.",
        ));
    };
    let nbf = claims.nbf.unwrap_or(exp - SKEW_SECS);
    if exp + SKEW_SECS <= now || nbf - SKEW_SECS > now {
        return Err(invalid_client(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    if exp - nbf > MAX_LIFETIME_SECS {
        return Err(invalid_client(
            700024,
            "The client assertion's lifetime is longer than a day.",
        ));
    }
    Ok(())
}
