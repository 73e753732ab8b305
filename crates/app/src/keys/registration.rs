//! The live check of a customer key before it is registered: nothing is stored here, and
//! each failure says exactly what the customer must change.
//!
//! The check acts as the platform's role for the region and performs every action
//! the seed's key policy grants it that AWS allows across accounts (all but kms:EnableKey),
//! with the encryption context real deployments use (the organization's, and grants
//! constrained to it), so a policy that forgets one is refused now rather than at the first
//! deployment. Then it proves the binding: the same use for another organization must be
//! refused, or every organization (all trust the same platform role) could have the platform
//! use the key by naming its ARN.
use std::sync::Arc;

use keyplane_core::policy::{
    DESCRIBE_STATEMENT_SID, GRANT_MANAGEMENT_STATEMENT_SID, GRANT_STATEMENT_SID, USE_STATEMENT_SID,
    organization_condition,
};
use keyplane_core::{AwsKeyArn, DbType, Provider};
use keyplane_kms::{
    EncryptionContext, ErrorKind, GrantConstraint, KeyProvider, KeyState, KmsError,
    PlatformIdentity,
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

/// What the binding probe encrypts under another organization's context; never stored.
const BINDING_PROBE: &[u8] = b"keyplane binding check";

/// What the live check did, for the dry-run answer and the audit log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveCheckOutcome {
    /// The actions performed successfully, in order.
    pub passed: Vec<String>,
    /// The actions the key refused when asked for another organization: the proof that the
    /// key is bound to this one.
    pub refused_for_other_organizations: Vec<String>,
    /// How many KMS calls the check made.
    pub kms_calls: u32,
    /// The key version new data keys will be wrapped with, where the service versions keys
    /// (GCP's primary version); None for AWS.
    pub primary_version: Option<String>,
}

struct Checker<'a> {
    kms: &'a Arc<dyn KeyProvider>,
    arn: &'a str,
    principal: &'a str,
    org: Uuid,
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
            Err(e) => Err(explain_for(&e, action, self.arn, self.principal, self.org)),
        }
    }
}

/// Actions whose calls carry the organization's encryption context (or, for CreateGrant, a
/// grant constrained to it): a statement bound to another organization does not allow them.
fn carries_context(action: &str) -> bool {
    matches!(
        action,
        "kms:Encrypt"
            | "kms:Decrypt"
            | "kms:GenerateDataKey"
            | "kms:GenerateDataKeyWithoutPlaintext"
            | "kms:ReEncryptFrom"
            | "kms:ReEncryptTo"
            | "kms:ReEncrypt"
            | "kms:CreateGrant"
    )
}

/// [`explain`], and for a refused action that carries the organization's context, why a
/// policy bound to another organization refuses it too.
fn explain_for(e: &KmsError, action: &str, arn: &str, principal: &str, org: Uuid) -> AppError {
    let denied = match &e.kind {
        ErrorKind::AccessDenied { action: a } if !a.is_empty() => a.as_str(),
        _ => action,
    };
    match explain(e, action, arn, principal) {
        AppError::KeyCheckFailed(m)
            if matches!(e.kind, ErrorKind::AccessDenied { .. }) && carries_context(denied) =>
        {
            AppError::KeyCheckFailed(format!(
                "{m} The call carried this organization's encryption context (organization = {org}), so a \
                 kms:EncryptionContext:organization condition on that statement must name {org}: a key whose \
                 statements name another organization belongs to that organization and cannot be registered for this \
                 one."
            ))
        }
        other => other,
    }
}

/// The refusal of a key whose policy lets the platform use it for any organization.
fn unbound_message(arn: &str, principal: &str, org: Uuid) -> String {
    let condition = organization_condition(&org.to_string());
    format!(
        "the key policy of {arn} lets {principal} use the key for any organization: kms:Encrypt with another \
         organization's encryption context was allowed, so every organization that learns this key's ARN could have \
         the platform use it. Add \"Condition\": {condition} to the statements \"{USE_STATEMENT_SID}\" and \
         \"{GRANT_STATEMENT_SID}\" (kms:CreateGrant), keep kms:DescribeKey, kms:ListGrants and kms:RevokeGrant in \
         statements without it (GET …/policy returns the organization-bound statements to paste, and POST \
         …/policy/check names each statement that lacks the condition), then register again"
    )
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
            let statement = match denied {
                "kms:CreateGrant" => GRANT_STATEMENT_SID,
                "kms:ListGrants" | "kms:RevokeGrant" => GRANT_MANAGEMENT_STATEMENT_SID,
                "kms:DescribeKey" | "kms:EnableKey" => DESCRIBE_STATEMENT_SID,
                _ => USE_STATEMENT_SID,
            };
            let hint = if matches!(
                statement,
                GRANT_STATEMENT_SID | GRANT_MANAGEMENT_STATEMENT_SID
            ) {
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
        ErrorKind::Retryable | ErrorKind::Unreachable | ErrorKind::Credentials => {
            super::platform_side_failure(e, "the KMS", arn, action)
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
        org,
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
                &GrantConstraint::ContextSubset(ctx.clone()),
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

    // The binding: the same use for another organization (a fresh ID, which no condition can
    // name ahead of time) must be refused.
    c.outcome.kms_calls += 1;
    match c
        .kms
        .encrypt(&arn_text, BINDING_PROBE, &org_context(Uuid::new_v4()))
        .await
    {
        Ok(_) => {
            tracing::info!(key = %arn_text, %org, "customer key refused: not bound to its organization");
            return Err(AppError::KeyCheckFailed(unbound_message(
                &arn_text,
                c.principal,
                org,
            )));
        }
        Err(e) if matches!(e.kind, ErrorKind::AccessDenied { .. }) => c
            .outcome
            .refused_for_other_organizations
            .push("kms:Encrypt".to_string()),
        Err(e) => return Err(explain(&e, "kms:Encrypt", &arn_text, c.principal)),
    }
    Ok(c.outcome)
}

/// What probing a registered key's organization binding found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindingProbe {
    /// The organization's own use passes and another organization's is refused.
    Bound,
    /// Another organization's use passes.
    Unbound,
    /// Neither can be told (the key is unusable, or the KMS did not answer); the key's health
    /// check reports that.
    Unknown(String),
}

/// The binding check of a registered key, as its platform identity: an Encrypt with the
/// organization's own context (must pass, so that a key the platform cannot use at all is
/// not taken for bound) and one with a fresh other organization's.
pub(crate) async fn probe_binding(kms: &dyn KeyProvider, key_id: &str, org: Uuid) -> BindingProbe {
    if let Err(e) = kms.encrypt(key_id, BINDING_PROBE, &org_context(org)).await {
        return BindingProbe::Unknown(e.to_string());
    }
    match kms
        .encrypt(key_id, BINDING_PROBE, &org_context(Uuid::new_v4()))
        .await
    {
        Ok(_) => BindingProbe::Unbound,
        Err(e) if matches!(e.kind, ErrorKind::AccessDenied { .. }) => BindingProbe::Bound,
        Err(e) => BindingProbe::Unknown(e.to_string()),
    }
}

/// The warning a registered key carries while its policy lets the platform use it for any
/// organization.
pub fn unbound_warning(org: Uuid) -> String {
    format!(
        "this key was registered before keyplane required keys to be bound to their organization, and its key policy \
         still lets the platform use it for any organization. Add \"Condition\": {} to the platform's statements \
         \"{USE_STATEMENT_SID}\" and \"{GRANT_STATEMENT_SID}\" (GET …/policy prints them; the README's \"Binding a \
         registered key without downtime\" says how); the warning clears at the next key check",
        organization_condition(&org.to_string())
    )
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

/// The steps of a live check that is not AWS's: each call counted, each step that passed
/// named once, each failure turned into the customer-facing error by the service's `explain`.
pub(super) struct CheckSteps<F> {
    explain: F,
    pub outcome: LiveCheckOutcome,
}

impl<F: Fn(&KmsError, &str) -> AppError> CheckSteps<F> {
    pub fn new(explain: F) -> Self {
        CheckSteps {
            explain,
            outcome: LiveCheckOutcome::default(),
        }
    }

    pub fn record<T>(&mut self, step: &str, r: Result<T, KmsError>) -> Result<T, AppError> {
        self.outcome.kms_calls += 1;
        match r {
            Ok(v) => {
                if !self.outcome.passed.iter().any(|a| a == step) {
                    self.outcome.passed.push(step.to_string());
                }
                Ok(v)
            }
            Err(e) => Err((self.explain)(&e, step)),
        }
    }

    /// A data key made under `key` with the organization's context must come back whole, and
    /// the same ciphertext must be refused under another organization's context: the proof
    /// that the service (or its adapter) binds ciphertexts to the organization. `steps` names
    /// the (encrypt, decrypt) steps in the service's words, `binding` the proof.
    pub async fn bound_round_trip(
        &mut self,
        kms: &dyn KeyProvider,
        key: &str,
        org: Uuid,
        steps: (&str, &str),
        binding: &str,
    ) -> Result<(), AppError> {
        let ctx = org_context(org);
        let pair = self.record(steps.0, kms.generate_data_key(key, &ctx).await)?;
        let back = self.record(steps.1, kms.decrypt(key, &pair.ciphertext, &ctx).await)?;
        if back.as_slice() != pair.plaintext.as_slice() {
            return Err(AppError::KeyCheckFailed(format!(
                "key {key} returned a different data key on {} than on {}; the key service is not usable",
                steps.1, steps.0
            )));
        }
        self.outcome.kms_calls += 1;
        match kms
            .decrypt(key, &pair.ciphertext, &org_context(Uuid::nil()))
            .await
        {
            Err(e) if e.kind == ErrorKind::InvalidCiphertext => {
                self.outcome.passed.push(binding.to_string());
                Ok(())
            }
            Ok(_) => Err(AppError::KeyCheckFailed(format!(
                "key {key} gave back a data key under another organization's context; the key service does not \
                 bind ciphertexts to the organization and cannot be used"
            ))),
            Err(e) => Err((self.explain)(
                &e,
                &format!("{} (other organization)", steps.1),
            )),
        }
    }
}
