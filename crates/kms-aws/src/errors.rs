//! Sorting aws-sdk-kms failures into [`ErrorKind`]s.
//!
//! The kind comes from the AWS error code (`__type`), which is stable across SDK versions and
//! compatible servers; the message is read only where AWS puts the distinction nowhere else
//! (pending deletion vs. other invalid states, ReEncryptFrom vs. ReEncryptTo).

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use keyplane_kms::{ErrorKind, KmsError};

/// Turns a failed SDK call into a [`KmsError`], keeping the SDK error as its source.
pub(crate) fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> KmsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("");
            let text = ctx.err().message().unwrap_or("");
            let status = ctx.raw().status().as_u16();
            let kind = kind_for_code(operation, code, text, status);
            let message = match (code.is_empty(), text.is_empty()) {
                (true, true) => format!("HTTP {status} without an error code"),
                (false, true) => code.to_string(),
                (true, false) => format!("HTTP {status}: {text}"),
                (false, false) => format!("{code}: {text}"),
            };
            (kind, message)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Unreachable,
            format!("timed out: {}", DisplayErrorContext(&err)),
        ),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            // Credential resolution runs just before the request is sent, so a refused or
            // missing credential surfaces as a dispatch (or construction) failure: it is a
            // configuration problem, not an unreachable KMS, unless the provider itself timed out.
            match credentials_error(&err) {
                Some(CredentialsError::ProviderTimedOut(_)) => (
                    ErrorKind::Unreachable,
                    format!(
                        "credentials provider timed out: {}",
                        DisplayErrorContext(&err)
                    ),
                ),
                Some(_) => (
                    ErrorKind::Credentials,
                    format!("no usable credentials: {}", DisplayErrorContext(&err)),
                ),
                None if matches!(err, SdkError::DispatchFailure(_)) => (
                    ErrorKind::Unreachable,
                    format!("could not reach the KMS: {}", DisplayErrorContext(&err)),
                ),
                None => (
                    ErrorKind::Invalid,
                    format!("could not build the request: {}", DisplayErrorContext(&err)),
                ),
            }
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let kind = if status >= 500 || status == 429 {
                ErrorKind::Retryable
            } else {
                ErrorKind::Other
            };
            (
                kind,
                format!(
                    "unreadable response (HTTP {status}): {}",
                    DisplayErrorContext(&err)
                ),
            )
        }
        _ => (ErrorKind::Other, DisplayErrorContext(&err).to_string()),
    };
    KmsError {
        kind,
        operation,
        message,
        source: Some(Box::new(err)),
    }
}

fn credentials_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        cur = e.source();
    }
    None
}

/// The kind for an AWS error code. Unknown codes fall back on the HTTP status, so a new
/// throttling or server-side code is still retried.
pub(crate) fn kind_for_code(operation: &str, code: &str, message: &str, status: u16) -> ErrorKind {
    match code {
        // An unknown grant ID is a grant that does not exist (any more), as for keys.
        "NotFoundException" | "InvalidGrantIdException" => ErrorKind::NotFound,
        "AccessDeniedException" => ErrorKind::AccessDenied {
            action: denied_action(operation, message),
        },
        "DisabledException" => ErrorKind::Disabled,
        "KMSInvalidStateException" => {
            if mentions_pending_deletion(message) {
                ErrorKind::PendingDeletion
            } else {
                ErrorKind::InvalidState
            }
        }
        "InvalidKeyUsageException" | "UnsupportedOperationException" => ErrorKind::WrongKeyType,
        "InvalidCiphertextException" | "IncorrectKeyException" => ErrorKind::InvalidCiphertext,
        "ThrottlingException"
        | "LimitExceededException"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailableException"
        | "InternalFailure"
        | "RequestTimeoutException" => ErrorKind::Retryable,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => ErrorKind::Credentials,
        "ValidationException"
        | "SerializationException"
        | "InvalidArnException"
        | "InvalidGrantTokenException"
        | "InvalidMarkerException"
        | "InvalidAliasNameException"
        | "MalformedPolicyDocumentException"
        | "TagException"
        | "UnknownOperationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter" => ErrorKind::Invalid,
        _ if status >= 500 || status == 429 => ErrorKind::Retryable,
        _ => ErrorKind::Other,
    }
}

fn mentions_pending_deletion(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "pending deletion",
        "pendingdeletion",
        "pending replica deletion",
        "pendingreplicadeletion",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The IAM action a denial was about. ReEncrypt needs two permissions (on the source and on
/// the destination key); AWS names the one that was missing in its message.
fn denied_action(operation: &str, message: &str) -> String {
    if operation == "ReEncrypt" {
        if message.contains("kms:ReEncryptTo") {
            return "kms:ReEncryptTo".to_string();
        }
        return "kms:ReEncryptFrom".to_string();
    }
    format!("kms:{operation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_for_code("Decrypt", "NotFoundException", "", 400),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_for_code("Decrypt", "AccessDeniedException", "", 400),
            ErrorKind::AccessDenied {
                action: "kms:Decrypt".into()
            }
        );
        assert_eq!(
            kind_for_code(
                "ReEncrypt",
                "AccessDeniedException",
                "User: arn:aws:sts::2:assumed-role/creator/x is not authorized to perform: kms:ReEncryptTo on resource: k",
                400
            ),
            ErrorKind::AccessDenied {
                action: "kms:ReEncryptTo".into()
            }
        );
        assert_eq!(
            kind_for_code("ReEncrypt", "AccessDeniedException", "denied", 400),
            ErrorKind::AccessDenied {
                action: "kms:ReEncryptFrom".into()
            }
        );
        assert_eq!(
            kind_for_code(
                "Encrypt",
                "KMSInvalidStateException",
                "arn:aws:kms:x is pending deletion.",
                400
            ),
            ErrorKind::PendingDeletion
        );
        assert_eq!(
            kind_for_code(
                "Encrypt",
                "KMSInvalidStateException",
                "key is PendingImport",
                400
            ),
            ErrorKind::InvalidState
        );
        assert_eq!(
            kind_for_code("Encrypt", "SomethingNew", "", 503),
            ErrorKind::Retryable
        );
        assert_eq!(
            kind_for_code("Encrypt", "SomethingNew", "", 400),
            ErrorKind::Other
        );
        assert_eq!(
            kind_for_code("Encrypt", "ExpiredTokenException", "", 400),
            ErrorKind::Credentials
        );
        assert_eq!(
            kind_for_code("Encrypt", "ValidationException", "", 400),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind_for_code("Encrypt", "IncorrectKeyException", "", 400),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            kind_for_code("Encrypt", "UnsupportedOperationException", "", 400),
            ErrorKind::WrongKeyType
        );
    }
}
