//! Sorting google-cloud-kms-v1 failures into [`ErrorKind`]s.
//!
//! The kind comes from the canonical status code. Cloud KMS puts the distinctions the platform
//! acts on in two more places, read only where the code alone is ambiguous: the denied
//! permission (the `ErrorInfo` detail's `permission`, else the message's `Permission '…'`)
//! and, for FAILED_PRECONDITION, the version's state named in the message.

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use keyplane_kms::{ErrorKind, KmsError};

/// The permission each operation needs, reported when a denial does not name one.
fn permission_of(operation: &str) -> &'static str {
    match operation {
        "Encrypt" => "cloudkms.cryptoKeyVersions.useToEncrypt",
        "Decrypt" => "cloudkms.cryptoKeyVersions.useToDecrypt",
        "TestIamPermissions" => "cloudkms.cryptoKeys.testIamPermissions",
        _ => "cloudkms.cryptoKeys.get",
    }
}

/// `Permission 'X' denied on resource …` → `X`.
fn permission_in(message: &str) -> Option<&str> {
    let rest = message.split_once("Permission '")?.1;
    rest.split_once('\'').map(|(p, _)| p)
}

/// The kind for a status `code` and `message` from Cloud KMS.
pub(crate) fn kind_for_status(
    operation: &str,
    code: Code,
    message: &str,
    permission: Option<&str>,
) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::PermissionDenied => ErrorKind::AccessDenied {
            action: permission
                .or_else(|| permission_in(message))
                .unwrap_or_else(|| permission_of(operation))
                .to_string(),
        },
        Code::FailedPrecondition => {
            // "…/cryptoKeyVersions/1 is not enabled, current state is: DISABLED."
            if message.contains("DESTROY_SCHEDULED") {
                ErrorKind::PendingDeletion
            } else if message.contains("DISABLED") {
                ErrorKind::Disabled
            } else {
                ErrorKind::InvalidState
            }
        }
        Code::InvalidArgument => {
            let m = message.to_ascii_lowercase();
            if m.contains("purpose") {
                ErrorKind::WrongKeyType
            } else if operation == "Decrypt" && (m.contains("decrypt") || m.contains("ciphertext"))
            {
                ErrorKind::InvalidCiphertext
            } else {
                ErrorKind::Invalid
            }
        }
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal => ErrorKind::Retryable,
        Code::Unauthenticated => ErrorKind::Credentials,
        Code::Unimplemented => ErrorKind::Unsupported,
        _ => ErrorKind::Other,
    }
}

/// Turns a failed client call into a [`KmsError`], keeping the client error as its source.
pub(crate) fn classify(operation: &'static str, err: GaxError) -> KmsError {
    let (kind, message) = if let Some(status) = err.status() {
        let permission = status.details.iter().find_map(|d| match d {
            StatusDetails::ErrorInfo(info) => info.metadata.get("permission").map(String::as_str),
            _ => None,
        });
        (
            kind_for_status(operation, status.code, &status.message, permission),
            format!("{}: {}", status.code.name(), status.message),
        )
    } else if err.is_authentication() {
        (
            ErrorKind::Credentials,
            format!("no usable credentials: {err}"),
        )
    } else if err.is_connect() || err.is_timeout() || err.is_io() {
        (
            ErrorKind::Unreachable,
            format!("could not reach Cloud KMS: {err}"),
        )
    } else if err.is_transport() {
        (ErrorKind::Retryable, format!("transport error: {err}"))
    } else if err.is_binding() || err.is_serialization() {
        (
            ErrorKind::Invalid,
            format!("could not build the request: {err}"),
        )
    } else if let Some(status) = err.http_status_code() {
        let kind = if status >= 500 || status == 429 {
            ErrorKind::Retryable
        } else if status == 401 {
            ErrorKind::Credentials
        } else {
            ErrorKind::Other
        };
        (kind, format!("unreadable response (HTTP {status}): {err}"))
    } else {
        (ErrorKind::Other, err.to_string())
    };
    KmsError {
        kind,
        operation,
        message,
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        fn k(op: &str, code: Code, msg: &str) -> ErrorKind {
            kind_for_status(op, code, msg, None)
        }
        assert_eq!(
            k("DescribeKey", Code::NotFound, "CryptoKey x not found."),
            ErrorKind::NotFound
        );
        assert_eq!(
            k(
                "Encrypt",
                Code::PermissionDenied,
                "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource 'k' (or it may not exist)."
            ),
            ErrorKind::AccessDenied {
                action: "cloudkms.cryptoKeyVersions.useToEncrypt".into()
            }
        );
        assert_eq!(
            k("Decrypt", Code::PermissionDenied, "denied"),
            ErrorKind::AccessDenied {
                action: "cloudkms.cryptoKeyVersions.useToDecrypt".into()
            }
        );
        assert_eq!(
            kind_for_status(
                "Decrypt",
                Code::PermissionDenied,
                "denied",
                Some("cloudkms.x.y")
            ),
            ErrorKind::AccessDenied {
                action: "cloudkms.x.y".into()
            }
        );
        let v = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1 is not enabled, current state is:";
        assert_eq!(
            k(
                "Encrypt",
                Code::FailedPrecondition,
                &format!("{v} DISABLED.")
            ),
            ErrorKind::Disabled
        );
        assert_eq!(
            k(
                "Encrypt",
                Code::FailedPrecondition,
                &format!("{v} DESTROY_SCHEDULED.")
            ),
            ErrorKind::PendingDeletion
        );
        assert_eq!(
            k(
                "Encrypt",
                Code::FailedPrecondition,
                &format!("{v} DESTROYED.")
            ),
            ErrorKind::InvalidState
        );
        assert_eq!(
            k(
                "Decrypt",
                Code::InvalidArgument,
                "Decryption failed: verify that 'name' refers to the correct CryptoKey."
            ),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            k("Encrypt", Code::InvalidArgument, "k has purpose MAC"),
            ErrorKind::WrongKeyType
        );
        assert_eq!(
            k("Encrypt", Code::InvalidArgument, "bad"),
            ErrorKind::Invalid
        );
        for c in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert_eq!(k("Encrypt", c, ""), ErrorKind::Retryable);
        }
        assert_eq!(
            k("Encrypt", Code::Unauthenticated, ""),
            ErrorKind::Credentials
        );
    }
}
