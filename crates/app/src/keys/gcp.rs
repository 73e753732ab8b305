//! Google Cloud KMS as a key service: key names (`projects/P/locations/L/keyRings/R/cryptoKeys/K`,
//! with or without a version; the key is what is stored), the live check, the IAM bindings to
//! grant and the checker of a pasted `getIamPolicy` output (`keyplane_core::policy::gcp`).
//!
//! The live check acts as the organization's service account for the region:
//! `testIamPermissions` first, so that every missing binding is named at once; then the key
//! itself (an ENCRYPT_DECRYPT key whose primary version is ENABLED, in the region); then a
//! round trip of a data key with the organization's context as additional authenticated
//! data, and a decrypt under another organization's context that must be refused, which
//! proves ciphertexts are bound to the organization (Cloud KMS has no policy condition on it).
use async_trait::async_trait;
use keyplane_core::GcpKeyName;
use keyplane_core::policy::gcp::{
    CRYPTO_KEYS_GET, ENCRYPTER_DECRYPTER_ROLE, IamPolicy, PLATFORM_PERMISSIONS, VIEWER_ROLE,
    check_iam_policy, gcloud_commands, recommended_bindings, service_account_member,
};
use keyplane_kms::{ErrorKind, KeyProvider, KeyState, KmsError, PlatformIdentity};
use uuid::Uuid;

use super::LiveCheckOutcome;
use super::registration::CheckSteps;
use super::service::{
    AccessGrant, KeyFacts, KeyService, ParsedKeyId, PolicyFindings, holds_all, refusing_kind,
};
use crate::App;
use crate::config::Config;
use crate::error::{AppError, AppResult};

pub(crate) struct GcpKeys;

/// The purpose and algorithm of the only keys keyplane can wrap data keys with.
const PURPOSE: &str = "ENCRYPT_DECRYPT";
const ALGORITHM: &str = "GOOGLE_SYMMETRIC_ENCRYPTION";

fn name_of(key: &ParsedKeyId) -> AppResult<&GcpKeyName> {
    match key {
        ParsedKeyId::Gcp(name) => Ok(name),
        other => Err(AppError::bug(format!("not a Cloud KMS key: {other:?}"))),
    }
}

/// The role that carries a permission keyplane needs.
fn role_for(permission: &str) -> &'static str {
    if permission == CRYPTO_KEYS_GET {
        VIEWER_ROLE
    } else {
        ENCRYPTER_DECRYPTER_ROLE
    }
}

/// The gcloud command that adds `role` for `member` on `key`.
fn binding_command(key: &GcpKeyName, member: &str, role: &str) -> String {
    format!(
        "gcloud kms keys add-iam-policy-binding {} --keyring={} --location={} --project={} --member={member} \
         --role={role}",
        key.crypto_key, key.key_ring, key.location, key.project
    )
}

/// "the binding of ROLE for MEMBER (gcloud …)" for every role `missing` permissions need.
fn bindings_to_add(key: &GcpKeyName, member: &str, missing: &[&str]) -> String {
    let mut roles: Vec<&str> = missing.iter().map(|p| role_for(p)).collect();
    roles.dedup();
    roles
        .iter()
        .map(|role| {
            format!(
                "add the binding of {role} for {member} on the key (`{}`)",
                binding_command(key, member, role)
            )
        })
        .collect::<Vec<_>>()
        .join(", and ")
}

/// What the primary version's state means for the customer, when it refuses use.
fn primary_refusal(key: &str, primary: Option<&str>, state: &KeyState) -> Option<String> {
    let version = primary.unwrap_or("(none)");
    match state {
        KeyState::Enabled => None,
        KeyState::Disabled => Some(format!(
            "the primary version {version} of key {key} is disabled: enable it (gcloud kms keys versions enable), or \
             make an enabled version primary"
        )),
        KeyState::PendingDeletion => Some(format!(
            "the primary version {version} of key {key} is scheduled for destruction: restore it (gcloud kms keys \
             versions restore) and enable it, or make another enabled version primary"
        )),
        KeyState::Other(s) if s == "NO_PRIMARY_VERSION" => Some(format!(
            "key {key} has no primary version: create a version and make it primary (gcloud kms keys versions create \
             --primary)"
        )),
        KeyState::Other(s) if s == "DESTROYED" => Some(format!(
            "the primary version {version} of key {key} is destroyed and can never decrypt again: create a new \
             version and make it primary"
        )),
        KeyState::Other(s) => Some(format!(
            "the primary version {version} of key {key} is in state {s}, which refuses use"
        )),
    }
}

/// Turns a KMS failure during the check into the customer-facing error.
fn explain(e: &KmsError, step: &str, key: &GcpKeyName, member: &str) -> AppError {
    tracing::info!(error = %e, kind = ?e.kind, step, key = %key, "GCP key check failed");
    let name = key.key_name();
    match &e.kind {
        ErrorKind::AccessDenied { action } => {
            let permission = if action.is_empty() {
                step
            } else {
                action.as_str()
            };
            AppError::KeyCheckFailed(format!(
                "the IAM policy of {name} does not let {member} use {permission}: {}, then register again",
                bindings_to_add(key, member, &[permission])
            ))
        }
        ErrorKind::NotFound => AppError::KeyCheckFailed(format!(
            "key {name} was not found, or {member} cannot see it: check the name, and grant {VIEWER_ROLE} and \
             {ENCRYPTER_DECRYPTER_ROLE} on the key to {member}"
        )),
        ErrorKind::Disabled => AppError::KeyCheckFailed(format!(
            "the primary version of key {name} is disabled ({step}): enable it, then register again"
        )),
        ErrorKind::PendingDeletion => AppError::KeyCheckFailed(format!(
            "the primary version of key {name} is scheduled for destruction ({step}): restore and enable it, then \
             register again"
        )),
        ErrorKind::WrongKeyType => AppError::KeyCheckFailed(format!(
            "key {name} cannot encrypt: create a key with purpose {PURPOSE} (symmetric encryption)"
        )),
        ErrorKind::WrongRegion => AppError::KeyCheckFailed(e.message.clone()),
        ErrorKind::InvalidState | ErrorKind::InvalidCiphertext => {
            AppError::KeyCheckFailed(format!("key {name} refused {step}: {}", e.message))
        }
        ErrorKind::Retryable | ErrorKind::Unreachable | ErrorKind::Credentials => {
            super::platform_side_failure(e, "Cloud KMS", &name, step)
        }
        ErrorKind::Invalid | ErrorKind::Unsupported | ErrorKind::Other => AppError::KeyCheckFailed(
            format!("Cloud KMS refused {step} on key {name}: {}", e.message),
        ),
    }
}

pub(crate) async fn live_check_gcp(
    app: &App,
    identity: &PlatformIdentity,
    org: Uuid,
    key: &GcpKeyName,
) -> AppResult<LiveCheckOutcome> {
    let member = service_account_member(&identity.principal);
    let kms = app
        .kms
        .connect(identity)
        .map_err(|e| explain(&e, "connect", key, &member))?;
    let name = key.key_name();
    let mut s = CheckSteps::new(|e: &KmsError, step: &str| explain(e, step, key, &member));

    let held = s.record(
        "testIamPermissions",
        kms.test_permissions(&name, &PLATFORM_PERMISSIONS).await,
    )?;
    let missing: Vec<&str> = PLATFORM_PERMISSIONS
        .iter()
        .copied()
        .filter(|p| !held.iter().any(|h| h == p))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::KeyCheckFailed(format!(
            "the IAM policy of {name} does not grant {member} {}: {}, then register again (GET …/policy returns the \
             bindings to add)",
            missing.join(", "),
            bindings_to_add(key, &member, &missing)
        )));
    }

    let desc = s.record(CRYPTO_KEYS_GET, kms.describe_key(&name).await)?;
    if desc.key_usage != PURPOSE || desc.key_spec != ALGORITHM {
        return Err(AppError::KeyCheckFailed(format!(
            "key {name} has purpose {} and algorithm {}; register a symmetric encryption key (purpose {PURPOSE}, \
             algorithm {ALGORITHM})",
            desc.key_usage, desc.key_spec
        )));
    }
    if desc.region != identity.region {
        return Err(AppError::KeyCheckFailed(format!(
            "key {name} is in location {}, not in region {}: create a key ring and key in {}",
            desc.region, identity.region, identity.region
        )));
    }
    if let Some(why) = primary_refusal(&name, desc.primary_version.as_deref(), &desc.state) {
        return Err(AppError::KeyCheckFailed(format!(
            "{why}; then register again"
        )));
    }
    s.outcome.primary_version = desc.primary_version.clone();

    s.bound_round_trip(
        kms.as_ref(),
        &name,
        org,
        (
            keyplane_core::policy::gcp::USE_TO_ENCRYPT,
            keyplane_core::policy::gcp::USE_TO_DECRYPT,
        ),
        "bound to the organization (AAD)",
    )
    .await?;
    Ok(s.outcome)
}

#[async_trait]
impl KeyService for GcpKeys {
    fn key_field(&self) -> &'static str {
        "gcp.keyID"
    }

    fn parse(&self, _config: &Config, raw: &str, region: &str) -> AppResult<ParsedKeyId> {
        let name: GcpKeyName = raw
            .parse()
            .map_err(|e| AppError::invalid("gcp.keyID", format!("gcp.keyID: {e}")))?;
        name.check_location(region)
            .map_err(|e| AppError::KeyCheckFailed(e.to_string()))?;
        Ok(ParsedKeyId::Gcp(name))
    }

    async fn live_check(
        &self,
        app: &App,
        identity: &PlatformIdentity,
        org: Uuid,
        key: &ParsedKeyId,
        _login: Option<&keyplane_kms::KeyLogin>,
    ) -> AppResult<LiveCheckOutcome> {
        live_check_gcp(app, identity, org, name_of(key)?).await
    }

    fn grant(
        &self,
        _config: &Config,
        principals: &[String],
        _org: Uuid,
        key: Option<&ParsedKeyId>,
    ) -> AccessGrant {
        let key = key.and_then(|k| name_of(k).ok());
        AccessGrant::GcpBindings {
            bindings: recommended_bindings(principals),
            commands: gcloud_commands(key, principals),
        }
    }

    fn check_policy(
        &self,
        _config: &Config,
        doc: &serde_json::Value,
        principals: &[String],
        _org: Uuid,
        _region: &str,
        _key: Option<&ParsedKeyId>,
    ) -> AppResult<PolicyFindings> {
        let text = serde_json::to_string(doc).map_err(AppError::internal)?;
        let policy = IamPolicy::parse(&text).map_err(|e| {
            AppError::invalid("policy", format!("the IAM policy is malformed: {e}"))
        })?;
        Ok(PolicyFindings::Gcp(check_iam_policy(&policy, principals)))
    }

    /// `testIamPermissions` as the service account: it needs no permission itself, and
    /// answers only with what the account holds.
    async fn admits(
        &self,
        kms: &dyn KeyProvider,
        key_id: &str,
        _org: Uuid,
    ) -> Result<bool, KmsError> {
        holds_all(kms, key_id, &PLATFORM_PERMISSIONS).await
    }

    fn how_to_admit(&self, principal: &str, key_id: &str) -> String {
        let member = service_account_member(principal);
        match key_id.parse::<GcpKeyName>() {
            Ok(key) => format!(
                "grant {member} {ENCRYPTER_DECRYPTER_ROLE} and {VIEWER_ROLE} on {key_id} (`{}` and `{}`)",
                binding_command(&key, &member, ENCRYPTER_DECRYPTER_ROLE),
                binding_command(&key, &member, VIEWER_ROLE)
            ),
            Err(_) => {
                format!("grant {member} {ENCRYPTER_DECRYPTER_ROLE} and {VIEWER_ROLE} on {key_id}")
            }
        }
    }

    /// The key's primary version: its state decides, as Cloud KMS encrypts with it.
    async fn health(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<(), KmsError> {
        let desc = kms.describe_key(key_id).await?;
        let Some(kind) = refusing_kind(&desc.state) else {
            return Ok(());
        };
        let why = primary_refusal(key_id, desc.primary_version.as_deref(), &desc.state)
            .unwrap_or_default();
        Err(KmsError::new(kind, "DescribeKey", why))
    }

    fn problem(&self, kind: &ErrorKind, key: &str, detail: &str) -> String {
        match kind {
            // `health` already wrote the sentence, naming the primary version.
            ErrorKind::Disabled | ErrorKind::PendingDeletion | ErrorKind::InvalidState
                if detail.contains("primary version") || detail.contains("no primary") =>
            {
                format!("{detail}; the platform cannot use the key until then")
            }
            ErrorKind::Disabled => format!(
                "the key version that encrypted this data under {key} is disabled; enable it to restore access"
            ),
            ErrorKind::PendingDeletion => format!(
                "the key version that encrypted this data under {key} is scheduled for destruction; restore and \
                 enable it to restore access"
            ),
            ErrorKind::AccessDenied { action } => format!(
                "the IAM policy of {key} no longer grants the platform's service account {}; restore the binding of \
                 {} for it",
                if action.is_empty() {
                    "the use of the key"
                } else {
                    action
                },
                if action == CRYPTO_KEYS_GET {
                    VIEWER_ROLE
                } else {
                    ENCRYPTER_DECRYPTER_ROLE
                }
            ),
            ErrorKind::NotFound => format!(
                "the key {key} no longer exists or the platform's service account can no longer see it; restore its \
                 bindings of {ENCRYPTER_DECRYPTER_ROLE} and {VIEWER_ROLE}"
            ),
            other => super::key_problem(other, key, detail),
        }
    }

    async fn facts(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<KeyFacts, KmsError> {
        let desc = kms.describe_key(key_id).await?;
        let rotation = super::service::rotation_if_reported(kms, key_id).await?;
        Ok(KeyFacts {
            primary_version: desc.primary_version,
            primary_state: Some(match desc.state {
                KeyState::Enabled => "ENABLED".to_string(),
                KeyState::Disabled => "DISABLED".to_string(),
                KeyState::PendingDeletion => "DESTROY_SCHEDULED".to_string(),
                KeyState::Other(s) => s,
            }),
            rotation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> GcpKeyName {
        "projects/customer-project/locations/us-east1/keyRings/r/cryptoKeys/k"
            .parse()
            .unwrap()
    }

    #[test]
    fn a_versioned_name_is_stored_without_its_version() {
        let k = GcpKeys
            .parse(
                &Config::default(),
                "projects/customer-project/locations/us-east1/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3",
                "us-east1",
            )
            .unwrap();
        assert_eq!(
            k.stored(),
            "projects/customer-project/locations/us-east1/keyRings/r/cryptoKeys/k"
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let e = GcpKeys
            .parse(&Config::default(), "projects/p/keys/k", "us-east1")
            .unwrap_err();
        assert!(
            matches!(
                e,
                AppError::Invalid {
                    field: "gcp.keyID",
                    ..
                }
            ),
            "{e}"
        );
        let e = GcpKeys
            .parse(
                &Config::default(),
                "projects/customer-project/locations/europe-west1/keyRings/r/cryptoKeys/k",
                "us-east1",
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, AppError::KeyCheckFailed(_)), "{msg}");
        assert!(
            msg.contains("europe-west1") && msg.contains("us-east1"),
            "{msg}"
        );
        let e = GcpKeys
            .parse(
                &Config::default(),
                "projects/customer-project/locations/us/keyRings/r/cryptoKeys/k",
                "us-east1",
            )
            .unwrap_err();
        assert!(e.to_string().contains("location us,"), "{e}");
    }

    #[test]
    fn missing_permissions_name_the_bindings_to_add() {
        let m = bindings_to_add(
            &key(),
            "serviceAccount:sa@p.iam.gserviceaccount.com",
            &[
                keyplane_core::policy::gcp::USE_TO_ENCRYPT,
                keyplane_core::policy::gcp::USE_TO_DECRYPT,
            ],
        );
        assert_eq!(m.matches("add the binding").count(), 1, "{m}");
        assert!(
            m.contains(ENCRYPTER_DECRYPTER_ROLE) && m.contains("--keyring=r"),
            "{m}"
        );
        let m = bindings_to_add(&key(), "serviceAccount:sa@p", &[CRYPTO_KEYS_GET]);
        assert!(m.contains(VIEWER_ROLE), "{m}");
    }

    #[test]
    fn primary_states_are_refused_with_the_reason() {
        let k = key().key_name();
        let v = format!("{k}/cryptoKeyVersions/1");
        assert!(primary_refusal(&k, Some(&v), &KeyState::Enabled).is_none());
        let d = primary_refusal(&k, Some(&v), &KeyState::Disabled).unwrap();
        assert!(d.contains(&v) && d.contains("disabled"), "{d}");
        let p = primary_refusal(&k, Some(&v), &KeyState::PendingDeletion).unwrap();
        assert!(p.contains("scheduled for destruction"), "{p}");
        let x = primary_refusal(&k, Some(&v), &KeyState::Other("DESTROYED".into())).unwrap();
        assert!(x.contains("destroyed"), "{x}");
        let n = primary_refusal(&k, None, &KeyState::Other("NO_PRIMARY_VERSION".into())).unwrap();
        assert!(n.contains("no primary version"), "{n}");
    }
}
