//! Sorting OpenBao/Vault answers into [`ErrorKind`]s.
//!
//! Transit reports most failures as HTTP 400 with a sentence in `errors`, so the status
//! decides first and the sentence only where the status says no more (a missing key, a
//! retired key version, a soft-deleted key, a wrong ciphertext are all 400).

use keyplane_kms::{ErrorKind, KmsError};

/// The failure under a [`KmsError`] this crate returns (its `source`).
#[derive(Debug, thiserror::Error)]
pub enum OpenbaoError {
    /// The request did not get an HTTP answer (connect, TLS, timeout) or its body broke off.
    #[error("HTTP request failed: {0}")]
    Http(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered with an error status.
    #[error("HTTP {status}: {}", if errors.is_empty() { "(no error text)".to_string() } else { errors.join("; ") })]
    Status { status: u16, errors: Vec<String> },
    /// The answer was not the JSON Transit sends.
    #[error("unreadable answer: {0}")]
    Decode(#[source] serde_json::Error),
    /// The configured CA bundle could not be used.
    #[error("CA bundle: {0}")]
    CaBundle(String),
    #[error("TLS setup: {0}")]
    Tls(#[source] rustls::Error),
}

/// The server's own sentence for a sealed server.
const SEALED: &str = "is sealed";

fn any(errors: &[String], needles: &[&str]) -> bool {
    errors.iter().any(|e| {
        let e = e.to_ascii_lowercase();
        needles.iter().any(|n| e.contains(n))
    })
}

/// The kind of a Transit (or `sys/…`) error answer. `action` names the path and capability
/// the call needed, for [`ErrorKind::AccessDenied`]; a 403 reaches here only after the token
/// itself was found valid, so it is the policy that refused.
pub(crate) fn kind_for_status(status: u16, errors: &[String], action: &str) -> ErrorKind {
    match status {
        403 => ErrorKind::AccessDenied {
            action: action.to_string(),
        },
        401 => ErrorKind::Credentials,
        404 => ErrorKind::NotFound,
        400 if any(errors, &["encryption key not found", "key not found"]) => ErrorKind::NotFound,
        400 if any(errors, &["disallowed by policy (too old)"]) => ErrorKind::InvalidState,
        400 if any(errors, &["soft-deleted", "soft deleted"]) => ErrorKind::PendingDeletion,
        400 if any(
            errors,
            &[
                "non-aead",
                "does not support encryption",
                "does not support decryption",
                "not supported for this key type",
                "unsupported key type",
            ],
        ) =>
        {
            ErrorKind::WrongKeyType
        }
        400 if any(
            errors,
            &[
                "message authentication failed",
                "invalid ciphertext",
                "version is too new",
                "failed to decode",
                "unable to decode",
                "illegal base64",
            ],
        ) =>
        {
            ErrorKind::InvalidCiphertext
        }
        400 | 405 | 413 | 422 => ErrorKind::Invalid,
        // 412: a performance standby has not caught up yet (Vault Enterprise).
        412 | 429 => ErrorKind::Retryable,
        503 if any(errors, &[SEALED]) => ErrorKind::Unreachable,
        s if s >= 500 => ErrorKind::Retryable,
        _ => ErrorKind::Other,
    }
}

/// The kind of a failed login: any refusal is a credentials problem (unknown role ID, a
/// revoked or expired secret ID, a CIDR binding, no such auth mount), never the key's.
pub(crate) fn kind_for_login_status(status: u16, errors: &[String]) -> ErrorKind {
    match status {
        412 | 429 => ErrorKind::Retryable,
        503 if any(errors, &[SEALED]) => ErrorKind::Unreachable,
        s if s >= 500 => ErrorKind::Retryable,
        _ => ErrorKind::Credentials,
    }
}

/// A request that got no answer, or whose answer broke off: the server is unreachable
/// (connect refused, DNS, TLS handshake) unless the connection was made, in which case
/// trying again may help.
pub(crate) fn transport_error(
    operation: &'static str,
    connected: bool,
    err: Box<dyn std::error::Error + Send + Sync>,
) -> KmsError {
    let kind = if connected {
        ErrorKind::Retryable
    } else {
        ErrorKind::Unreachable
    };
    let message = format!("could not reach OpenBao: {}", chain(err.as_ref()));
    KmsError {
        kind,
        operation,
        message,
        source: Some(Box::new(OpenbaoError::Http(err))),
    }
}

/// An error and its sources on one line (reqwest's own Display hides the cause).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

pub(crate) fn status_error(
    operation: &'static str,
    kind: ErrorKind,
    status: u16,
    errors: Vec<String>,
    message: String,
) -> KmsError {
    KmsError {
        kind,
        operation,
        message,
        source: Some(Box::new(OpenbaoError::Status { status, errors })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(status: u16, msg: &str) -> ErrorKind {
        kind_for_status(status, &[msg.to_string()], "update transit/decrypt/k")
    }

    #[test]
    fn statuses_and_sentences_map_to_kinds() {
        assert_eq!(
            k(403, "permission denied"),
            ErrorKind::AccessDenied {
                action: "update transit/decrypt/k".into()
            }
        );
        assert_eq!(k(404, ""), ErrorKind::NotFound);
        assert_eq!(k(400, "encryption key not found"), ErrorKind::NotFound);
        assert_eq!(
            k(
                400,
                "ciphertext or signature version is disallowed by policy (too old)"
            ),
            ErrorKind::InvalidState
        );
        assert_eq!(
            k(400, "refusing to use soft-deleted key"),
            ErrorKind::PendingDeletion
        );
        assert_eq!(
            k(400, "cipher: message authentication failed"),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            k(400, "invalid ciphertext: no prefix"),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            k(400, "invalid ciphertext: version is too new"),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            k(
                400,
                "'[0].associated_data' provided for non-AEAD cipher suite rsa-2048"
            ),
            ErrorKind::WrongKeyType
        );
        assert_eq!(
            k(400, "missing 'context' for key derivation"),
            ErrorKind::Invalid
        );
        assert_eq!(k(503, "Vault is sealed"), ErrorKind::Unreachable);
        assert_eq!(k(503, "standby"), ErrorKind::Retryable);
        assert_eq!(k(500, "internal error"), ErrorKind::Retryable);
        assert_eq!(k(429, ""), ErrorKind::Retryable);
        assert_eq!(k(412, ""), ErrorKind::Retryable);
        assert_eq!(k(418, ""), ErrorKind::Other);
    }

    #[test]
    fn login_refusals_are_credentials() {
        let e = |s: u16, m: &str| kind_for_login_status(s, &[m.to_string()]);
        assert_eq!(e(400, "invalid role or secret ID"), ErrorKind::Credentials);
        assert_eq!(e(403, "permission denied"), ErrorKind::Credentials);
        assert_eq!(e(404, "no handler for route"), ErrorKind::Credentials);
        assert_eq!(e(503, "Vault is sealed"), ErrorKind::Unreachable);
        assert_eq!(e(502, ""), ErrorKind::Retryable);
    }
}
