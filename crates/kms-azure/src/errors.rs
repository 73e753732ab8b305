//! Sorting Azure SDK failures into [`ErrorKind`]s.
//!
//! The kind comes from the HTTP status and Key Vault's error body, `{"error": {"code",
//! "message", "innererror": {"code"}}}`: the inner code tells a missing role
//! (`ForbiddenByRbac`) from a disabled key (`KeyDisabled`) or a forbidden operation
//! (`KeyOperationForbidden`), which all share status 403. Connection failures are
//! `Unreachable`; a credential that could not get a token is `Credentials`, unless the token
//! endpoint itself was unreachable or failing.

use std::error::Error as StdError;

use azure_core::error::ErrorKind as AzKind;
use keyplane_kms::{ErrorKind, KmsError};
use serde_json::Value;

/// Key Vault's error body, as far as the adapter reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VaultErrorBody {
    pub code: String,
    pub inner: String,
    pub message: String,
}

pub(crate) fn parse_body(body: &[u8]) -> VaultErrorBody {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    VaultErrorBody {
        code: s(&e["code"]),
        inner: s(&e["innererror"]["code"]),
        message: s(&e["message"]),
    }
}

/// The RBAC data action a refused operation needed, from Key Vault's message (`Action:
/// '…'`), else the one the operation maps to.
fn denied_action(operation: &str, message: &str) -> String {
    if let Some(i) = message.find("Action: '") {
        let rest = &message[i + 9..];
        if let Some(end) = rest.find('\'') {
            return rest[..end].to_string();
        }
    }
    match operation {
        "WrapKey" => "Microsoft.KeyVault/vaults/keys/wrap/action",
        "UnwrapKey" => "Microsoft.KeyVault/vaults/keys/unwrap/action",
        "GetKeyRotationPolicy" => "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
        _ => "Microsoft.KeyVault/vaults/keys/read",
    }
    .to_string()
}

/// The kind for a Key Vault error answer.
pub(crate) fn kind_for(operation: &str, status: u16, body: &VaultErrorBody) -> ErrorKind {
    let msg = body.message.to_ascii_lowercase();
    match status {
        401 => ErrorKind::Credentials,
        403 => match body.inner.as_str() {
            "KeyDisabled" => ErrorKind::Disabled,
            "KeyExpired" | "KeyNotYetValid" => ErrorKind::InvalidState,
            "KeyOperationForbidden" => ErrorKind::WrongKeyType,
            _ if msg.contains("disabled key") => ErrorKind::Disabled,
            _ if msg.contains("expired") || msg.contains("not yet valid") => {
                ErrorKind::InvalidState
            }
            _ if msg.contains("not permitted on this key") => ErrorKind::WrongKeyType,
            _ => ErrorKind::AccessDenied {
                action: denied_action(operation, &body.message),
            },
        },
        404 => ErrorKind::NotFound,
        409 => ErrorKind::InvalidState,
        400 if msg.contains("not valid for a key of type") || msg.contains("invalid algorithm") => {
            ErrorKind::WrongKeyType
        }
        400 if operation == "UnwrapKey" && body.code == "BadParameter" => {
            ErrorKind::InvalidCiphertext
        }
        400 => ErrorKind::Invalid,
        429 => ErrorKind::Retryable,
        s if s >= 500 => ErrorKind::Retryable,
        _ => ErrorKind::Other,
    }
}

fn az_error_of<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a azure_core::Error> {
    let mut chain = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        chain.push(e);
        cur = e.source();
    }
    chain
        .into_iter()
        .filter_map(|e| e.downcast_ref::<azure_core::Error>())
}

/// Turns a failed SDK call into a [`KmsError`], keeping the SDK error as its source.
pub(crate) fn classify(operation: &'static str, err: azure_core::Error) -> KmsError {
    let (kind, message) = match err.kind() {
        AzKind::HttpResponse {
            status,
            raw_response,
            error_code,
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| parse_body(r.body().as_ref()))
                .unwrap_or_default();
            let status = u16::from(*status);
            let kind = kind_for(operation, status, &body);
            let code = if body.code.is_empty() {
                error_code.clone().unwrap_or_default()
            } else {
                body.code.clone()
            };
            let mut message = format!("HTTP {status} {code}");
            if !body.inner.is_empty() {
                message.push_str(&format!(" ({})", body.inner));
            }
            if !body.message.is_empty() {
                // Key Vault's RBAC message spans lines; one line reads better in logs.
                let m: Vec<&str> = body
                    .message
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                message.push_str(&format!(": {}", m.join(" ")));
            }
            (kind, message)
        }
        AzKind::Connection => (
            ErrorKind::Unreachable,
            format!("could not reach Key Vault: {}", chain(&err)),
        ),
        AzKind::Io => (
            ErrorKind::Unreachable,
            format!("Key Vault I/O failed: {}", chain(&err)),
        ),
        AzKind::Credential => {
            // The token request's own failure, if the chain carries one, says whether the
            // identity was refused or the token endpoint was down.
            let inner = az_error_of(&err).skip(1).find_map(|e| match e.kind() {
                AzKind::Connection | AzKind::Io => Some(ErrorKind::Unreachable),
                AzKind::HttpResponse { status, .. }
                    if u16::from(*status) >= 500 || u16::from(*status) == 429 =>
                {
                    Some(ErrorKind::Retryable)
                }
                _ => None,
            });
            (
                inner.unwrap_or(ErrorKind::Credentials),
                format!("could not get a token: {}", chain(&err)),
            )
        }
        AzKind::DataConversion => (
            ErrorKind::Other,
            format!("unreadable answer: {}", chain(&err)),
        ),
        _ => (ErrorKind::Other, chain(&err)),
    };
    KmsError {
        kind,
        operation,
        message,
        source: Some(Box::new(err)),
    }
}

/// The error and its sources on one line.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, inner: &str, message: &str) -> VaultErrorBody {
        VaultErrorBody {
            code: code.into(),
            inner: inner.into(),
            message: message.into(),
        }
    }

    #[test]
    fn statuses_and_codes_map_to_kinds() {
        let rbac = "Caller is not authorized to perform action on resource.\r\nCaller: appid=a;oid=b\r\nAction: 'Microsoft.KeyVault/vaults/keys/unwrap/action'\r\nResource: 'x'";
        assert_eq!(
            kind_for(
                "UnwrapKey",
                403,
                &body("Forbidden", "ForbiddenByRbac", rbac)
            ),
            ErrorKind::AccessDenied {
                action: "Microsoft.KeyVault/vaults/keys/unwrap/action".into()
            }
        );
        // An access-policy refusal names no action: the operation's own is used.
        assert_eq!(
            kind_for(
                "WrapKey",
                403,
                &body(
                    "Forbidden",
                    "AccessDenied",
                    "The user, group or application does not have keys wrapKey permission"
                )
            ),
            ErrorKind::AccessDenied {
                action: "Microsoft.KeyVault/vaults/keys/wrap/action".into()
            }
        );
        assert_eq!(
            kind_for("WrapKey", 403, &body("Forbidden", "KeyDisabled", "")),
            ErrorKind::Disabled
        );
        assert_eq!(
            kind_for(
                "WrapKey",
                403,
                &body(
                    "Forbidden",
                    "",
                    "Operation wrapKey is not allowed on a disabled key."
                )
            ),
            ErrorKind::Disabled
        );
        assert_eq!(
            kind_for("WrapKey", 403, &body("Forbidden", "KeyExpired", "")),
            ErrorKind::InvalidState
        );
        assert_eq!(
            kind_for("WrapKey", 403, &body("Forbidden", "KeyNotYetValid", "")),
            ErrorKind::InvalidState
        );
        assert_eq!(
            kind_for(
                "WrapKey",
                403,
                &body("Forbidden", "KeyOperationForbidden", "")
            ),
            ErrorKind::WrongKeyType
        );
        assert_eq!(
            kind_for("GetKey", 404, &body("KeyNotFound", "", "")),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_for("GetKey", 401, &body("Unauthorized", "", "")),
            ErrorKind::Credentials
        );
        assert_eq!(
            kind_for(
                "UnwrapKey",
                400,
                &body("BadParameter", "", "The ciphertext could not be decrypted")
            ),
            ErrorKind::InvalidCiphertext
        );
        assert_eq!(
            kind_for(
                "WrapKey",
                400,
                &body(
                    "BadParameter",
                    "",
                    "Algorithm A256KW is not valid for a key of type RSA"
                )
            ),
            ErrorKind::WrongKeyType
        );
        assert_eq!(
            kind_for("WrapKey", 400, &body("BadParameter", "", "value too long")),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind_for("GetKey", 429, &body("Throttled", "", "")),
            ErrorKind::Retryable
        );
        assert_eq!(
            kind_for("GetKey", 503, &body("", "", "")),
            ErrorKind::Retryable
        );
        assert_eq!(
            kind_for("GetKey", 409, &body("Conflict", "", "")),
            ErrorKind::InvalidState
        );
        assert_eq!(kind_for("GetKey", 418, &body("", "", "")), ErrorKind::Other);
    }

    #[test]
    fn bodies_parse_leniently() {
        let b = parse_body(
            br#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"KeyDisabled"}}}"#,
        );
        assert_eq!(b, body("Forbidden", "KeyDisabled", "m"));
        assert_eq!(parse_body(b"<html>"), VaultErrorBody::default());
    }
}
