//! The live check of a customer key before it is registered: nothing is stored here, and
//! each failure says exactly what the customer must change.
//!
//! The check acts as the platform's role for the region and performs every action
//! the seed's key policy grants it that AWS allows across accounts (all but kms:EnableKey),
//! with the encryption context real deployments use, so a policy that forgets one is refused
//! now rather than at the first deployment.
use std::sync::Arc;

use keyplane_core::policy::{GRANT_STATEMENT_SID, USE_STATEMENT_SID};
use keyplane_core::{AwsKeyArn, DbType, Provider};
use keyplane_kms::{
    EncryptionContext, ErrorKind, KeyProvider, KeyState, KmsError, PlatformIdentity,
};
use uuid::Uuid;

use crate::App;
use crate::error::AppError;

/// Grant name of the registration check's short-lived grant, so a customer who finds it
/// left behind (after a failed RevokeGrant) knows what it is.
pub const CHECK_GRANT_NAME: &str = "keyplane-registration-check";

/// Operations of the grant the platform's volume service receives for persistent
/// resources, as AWS services request them.
pub const VOLUME_GRANT_OPERATIONS: [&str; 5] = [
    "Decrypt",
    "Encrypt",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
];

/// The context every platform call on a customer key carries: the customer's policy may
/// condition on it and their CloudTrail shows it.
pub fn org_context(org: Uuid) -> EncryptionContext {
    EncryptionContext::from([("organization".to_string(), org.to_string())])
}

/// What the live check did, for the dry-run answer and the audit log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveCheckOutcome {
    /// The actions performed successfully, in order.
    pub passed: Vec<String>,
    /// How many KMS calls the check made.
    pub kms_calls: u32,
}

struct Checker<'a> {
    kms: &'a Arc<dyn KeyProvider>,
    arn: &'a str,
    principal: &'a str,
    outcome: LiveCheckOutcome,
}

impl Checker<'_> {
    fn record<T>(&mut self, action: &str, r: Result<T, KmsError>) -> Result<T, AppError> {
        self.outcome.kms_calls += 1;
        match r {
            Ok(v) => {
                if !self.outcome.passed.iter().any(|a| a == action) {
                    self.outcome.passed.push(action.to_string());
                }
                Ok(v)
            }
            Err(e) => Err(explain(&e, action, self.arn, self.principal)),
        }
    }
}

/// Turns a KMS failure during the check into the customer-facing error.
fn explain(e: &KmsError, action: &str, arn: &str, principal: &str) -> AppError {
    tracing::info!(error = %e, kind = ?e.kind, action, key = arn, "customer key check failed");
    match &e.kind {
        ErrorKind::AccessDenied { action: denied } => {
            let denied = if denied.is_empty() {
                action
            } else {
                denied.as_str()
            };
            let statement = if matches!(
                denied,
                "kms:CreateGrant" | "kms:ListGrants" | "kms:RevokeGrant"
            ) {
                GRANT_STATEMENT_SID
            } else {
                USE_STATEMENT_SID
            };
            let hint = if statement == GRANT_STATEMENT_SID {
                " If that statement has the condition kms:GrantIsForAWSResource, remove it: keyplane makes the grant \
                 calls itself, so KMS reports that key as false."
            } else {
                ""
            };
            AppError::KeyCheckFailed(format!(
                "the key policy of {arn} does not let {principal} perform {denied}: add \"{denied}\" to the Action \
                 list of the statement \"{statement}\" (GET …/policy returns the statements to paste), then register \
                 again.{hint}"
            ))
        }
        ErrorKind::NotFound => AppError::KeyCheckFailed(format!(
            "key {arn} was not found, or its key policy does not let {principal} see it (kms:DescribeKey): check the \
             ARN and the region, and that the policy names {principal}"
        )),
        ErrorKind::Disabled => AppError::KeyCheckFailed(format!(
            "key {arn} is disabled: enable it in your KMS, then register again"
        )),
        ErrorKind::PendingDeletion => AppError::KeyCheckFailed(format!(
            "key {arn} is scheduled for deletion: cancel the deletion and enable the key, or register another key"
        )),
        ErrorKind::WrongKeyType => AppError::KeyCheckFailed(format!(
            "key {arn} cannot be used for encryption: create a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, \
             KeyUsage ENCRYPT_DECRYPT)"
        )),
        ErrorKind::WrongRegion => AppError::KeyCheckFailed(format!(
            "key {arn} is not in the region it was registered for: create the key in that region"
        )),
        ErrorKind::InvalidState => AppError::KeyCheckFailed(format!(
            "key {arn} is in a state that refuses {action}: {}",
            e.message
        )),
        ErrorKind::InvalidCiphertext => AppError::KeyCheckFailed(format!(
            "a round trip through key {arn} failed at {action}: the ciphertext was refused ({})",
            e.message
        )),
        ErrorKind::Retryable | ErrorKind::Unreachable => AppError::KmsUnavailable(format!(
            "the KMS did not answer while checking key {arn} ({action}); nothing was stored, retry later"
        )),
        ErrorKind::Credentials => {
            tracing::error!(error = %e, "the platform's KMS credentials were refused");
            AppError::KmsUnavailable(
                "the platform could not authenticate to the KMS; nothing was stored. Retry later, or contact the \
                 platform operator if this persists"
                    .into(),
            )
        }
        ErrorKind::Invalid | ErrorKind::Unsupported | ErrorKind::Other => AppError::KeyCheckFailed(
            format!("the KMS refused {action} on key {arn}: {}", e.message),
        ),
    }
}

/// Runs every check on an AWS key as the platform identity. Nothing is stored here.
pub(crate) async fn live_check_aws(
    app: &App,
    identity: &PlatformIdentity,
    org: Uuid,
    arn: &AwsKeyArn,
) -> Result<LiveCheckOutcome, AppError> {
    let kms = app
        .kms
        .connect(identity)
        .map_err(|e| explain(&e, "connect", &arn.to_string(), &identity.principal))?;
    let arn_text = arn.to_string();
    let mut c = Checker {
        kms: &kms,
        arn: &arn_text,
        principal: &identity.principal,
        outcome: LiveCheckOutcome::default(),
    };
    let ctx = org_context(org);

    let desc = c.record("kms:DescribeKey", c.kms.describe_key(&arn_text).await)?;
    if desc.key_spec != "SYMMETRIC_DEFAULT" || desc.key_usage != "ENCRYPT_DECRYPT" {
        return Err(AppError::KeyCheckFailed(format!(
            "key {arn_text} is a {} key for {}; register a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, \
             KeyUsage ENCRYPT_DECRYPT)",
            desc.key_spec, desc.key_usage
        )));
    }
    match &desc.state {
        KeyState::Enabled => {}
        KeyState::Disabled => {
            return Err(explain(
                &kms_err(ErrorKind::Disabled),
                "kms:DescribeKey",
                &arn_text,
                c.principal,
            ));
        }
        KeyState::PendingDeletion => {
            return Err(explain(
                &kms_err(ErrorKind::PendingDeletion),
                "kms:DescribeKey",
                &arn_text,
                c.principal,
            ));
        }
        KeyState::Other(s) => {
            return Err(AppError::KeyCheckFailed(format!(
                "key {arn_text} is in state {s}; only an Enabled key can be registered"
            )));
        }
    }
    if desc.region != arn.region {
        return Err(explain(
            &kms_err(ErrorKind::WrongRegion),
            "kms:DescribeKey",
            &arn_text,
            c.principal,
        ));
    }
    // kms:EnableKey is not tested live: AWS KMS refuses EnableKey across accounts whatever
    // the key policy says, so no call can prove it. The policy checker reports it instead.

    let dk = c.record(
        "kms:GenerateDataKey",
        c.kms.generate_data_key(&arn_text, &ctx).await,
    )?;
    let wrapped_only = c.record(
        "kms:GenerateDataKeyWithoutPlaintext",
        c.kms
            .generate_data_key_without_plaintext(&arn_text, &ctx)
            .await,
    )?;
    let back = c.record(
        "kms:Decrypt",
        c.kms.decrypt(&arn_text, &dk.ciphertext, &ctx).await,
    )?;
    if back.as_slice() != dk.plaintext.as_slice() {
        return Err(AppError::KeyCheckFailed(format!(
            "key {arn_text} returned a different data key on Decrypt than GenerateDataKey gave; the KMS is not usable"
        )));
    }
    c.record(
        "kms:Decrypt",
        c.kms.decrypt(&arn_text, &wrapped_only, &ctx).await,
    )?;
    c.record(
        "kms:Encrypt",
        c.kms
            .encrypt(&arn_text, b"keyplane registration check", &ctx)
            .await,
    )?;
    let re = c
        .kms
        .re_encrypt(&dk.ciphertext, &arn_text, &arn_text, &ctx)
        .await;
    let re = match re {
        Err(e) if matches!(&e.kind, ErrorKind::AccessDenied { action } if action.is_empty()) => {
            Err(KmsError::new(
                ErrorKind::AccessDenied {
                    action: "kms:ReEncryptFrom".into(),
                },
                e.operation,
                e.message,
            ))
        }
        other => other,
    };
    c.record("kms:ReEncrypt", re)?;
    c.outcome.passed.retain(|a| a != "kms:ReEncrypt");
    c.outcome.passed.push("kms:ReEncryptFrom".into());
    c.outcome.passed.push("kms:ReEncryptTo".into());

    let grantee = app.kms.volume_grantee(identity);
    let grant_id = c.record(
        "kms:CreateGrant",
        c.kms
            .create_grant(
                &arn_text,
                &grantee,
                &VOLUME_GRANT_OPERATIONS,
                CHECK_GRANT_NAME,
            )
            .await,
    )?;
    let listed = c.kms.list_grants(&arn_text).await;
    let revoked = c.kms.revoke_grant(&arn_text, &grant_id).await;
    // Revoke before reporting a ListGrants failure, so the check leaves nothing behind.
    let grants = c.record("kms:ListGrants", listed);
    let revoke_result = c.record("kms:RevokeGrant", revoked).map_err(|e| match e {
        AppError::KeyCheckFailed(m) => AppError::KeyCheckFailed(format!(
            "{m}. The check's grant {grant_id} ({CHECK_GRANT_NAME}) is still on the key: revoke it with \
             `aws kms revoke-grant --key-id {arn_text} --grant-id {grant_id}`"
        )),
        other => other,
    });
    let grants = grants?;
    revoke_result?;
    if !grants.iter().any(|g| g.grant_id == grant_id) {
        return Err(AppError::KeyCheckFailed(format!(
            "the grant created on {arn_text} did not appear in ListGrants; the KMS does not behave as AWS KMS does"
        )));
    }
    Ok(c.outcome)
}

fn kms_err(kind: ErrorKind) -> KmsError {
    KmsError::new(kind, "DescribeKey", "")
}

/// Which database types a provider's keys serve, in words for error messages.
pub fn unsupported_type_message(provider: Provider, db_type: DbType) -> String {
    format!(
        "{provider} keys cannot be used for {db_type} databases: Managed Clusters (classic) take aws and gcp keys, \
         serverless takes aws, gcp and azure keys"
    )
}
