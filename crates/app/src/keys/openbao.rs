//! OpenBao / Vault Transit as a key service (a keyplane extension; classic and serverless
//! alike): key IDs (`<address>/v1/[<namespace>/]<mount>/keys/<name>`), the live check, the
//! policy to bind to the platform's role and the checker of a pasted policy
//! (`keyplane_core::policy::openbao`).
//!
//! The platform logs in with the AppRole credentials the customer gave with the key, as the
//! role whose path is the key's provider ID. The live check reads the key (it must exist, not
//! be soft-deleted, and be a type that authenticates associated data, which is how keyplane's
//! context is bound), asks the server which of the capabilities keyplane needs the role's
//! token holds (each missing one is named with its path), and makes a data key bound to the
//! organization's context, which must decrypt under it and be refused under another's.
use async_trait::async_trait;
use keyplane_core::OpenbaoRole;
use keyplane_core::openbao::OpenbaoKeyRef;
use keyplane_core::platform_jwt::PlatformJwtKey;
use keyplane_core::policy::openbao::{
    JwtTrust, check_openbao_policy, openbao_jwt_policy_help, openbao_policy_help,
    transit_requirements,
};
use keyplane_kms::{ErrorKind, KeyLogin, KeyProvider, KeyState, KmsError, PlatformIdentity};
use uuid::Uuid;

use super::LiveCheckOutcome;
use super::registration::CheckSteps;
use super::service::{AccessGrant, KeyFacts, KeyService, ParsedKeyId, PolicyFindings, holds_all};
use crate::App;
use crate::config::Config;
use crate::error::{AppError, AppResult};

pub(crate) struct OpenbaoKeys;

/// Transit key types that authenticate associated data, and so bind keyplane's context.
const CONTEXT_BINDING_TYPES: [&str; 4] = [
    "aes128-gcm96",
    "aes256-gcm96",
    "chacha20-poly1305",
    "xchacha20-poly1305",
];

fn key_of(key: &ParsedKeyId) -> AppResult<&OpenbaoKeyRef> {
    match key {
        ParsedKeyId::Openbao(k) => Ok(k),
        other => Err(AppError::bug(format!(
            "not an OpenBao Transit key: {other:?}"
        ))),
    }
}

/// Every permission the role needs on `key`, as the adapter's permission probe takes them
/// (`"<capability> <path>"`).
fn permissions(key: &OpenbaoKeyRef) -> Vec<String> {
    transit_requirements(key)
        .iter()
        .map(|r| format!("{} {}", r.capability, r.path))
        .collect()
}

/// The role the help names: the login's, else the platform's suggested one.
fn role_of(principal: &str) -> OpenbaoRole {
    OpenbaoRole::from_provider_id(principal).unwrap_or_else(|_| OpenbaoRole::AppRole {
        mount: OpenbaoRole::DEFAULT_APPROLE_MOUNT.to_string(),
        role_name: "keyplane".to_string(),
    })
}

fn policy_hint(role: &str, key: &OpenbaoKeyRef) -> String {
    format!(
        "bind keyplane's policy for {key} to the role {role} (`bao write {role} token_policies=…`; GET …/policy?keyID=… \
         prints the policy and the commands)"
    )
}

/// Turns a Transit failure during the check into the customer-facing error.
fn explain(e: &KmsError, step: &str, key: &OpenbaoKeyRef, role: &str) -> AppError {
    tracing::info!(error = %e, kind = ?e.kind, step, key = %key, "OpenBao key check failed");
    match &e.kind {
        ErrorKind::AccessDenied { .. } => AppError::KeyCheckFailed(format!(
            "OpenBao refused {step} on {key} to the role {role}: {}",
            policy_hint(role, key)
        )),
        ErrorKind::NotFound => AppError::KeyCheckFailed(format!(
            "the Transit key {key} was not found (or the role {role} may not read it): create it (`bao write -f \
             {}/keys/{} type=aes256-gcm96`) or check the key ID, and {}",
            key.mount(),
            key.name(),
            policy_hint(role, key)
        )),
        ErrorKind::Credentials if e.message.contains("JWT") => AppError::KeyCheckFailed(format!(
            "OpenBao did not accept keyplane's login as the JWT role {role} ({}), then register again",
            e.message
        )),
        ErrorKind::Credentials => AppError::KeyCheckFailed(format!(
            "OpenBao did not accept the role credentials for {role} ({}): check the role ID and create a new secret \
             ID (`bao write -f {role}/secret-id`), then register again",
            e.message
        )),
        ErrorKind::Unreachable | ErrorKind::Retryable => AppError::KmsUnavailable(format!(
            "the OpenBao server of {key} did not answer ({step}): {}; nothing was stored, retry once it is reachable \
             and unsealed",
            e.message
        )),
        ErrorKind::PendingDeletion | ErrorKind::Disabled | ErrorKind::InvalidState => {
            AppError::KeyCheckFailed(format!(
                "the Transit key {key} refused {step}: {}",
                e.message
            ))
        }
        ErrorKind::Unsupported if step == "connect" => AppError::NotSupported(e.message.clone()),
        _ => AppError::KeyCheckFailed(format!(
            "OpenBao refused {step} on the Transit key {key}: {}",
            e.message
        )),
    }
}

async fn live_check_openbao(
    app: &App,
    identity: &PlatformIdentity,
    org: Uuid,
    key: &OpenbaoKeyRef,
    login: &KeyLogin,
) -> AppResult<LiveCheckOutcome> {
    let role = identity.principal.as_str();
    let key_id = key.to_string();
    let kms = app
        .kms
        .connect_with_login(identity, &key_id, login)
        .map_err(|e| explain(&e, "connect", key, role))?;
    let mut s = CheckSteps::new(|e: &KmsError, step: &str| explain(e, step, key, role));

    // The role's capabilities first: each missing one is named with its path, rather than
    // as whichever call it would fail first.
    let wanted = permissions(key);
    let wanted_refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let held = s.record(
        "sys/capabilities-self",
        kms.test_permissions(&key_id, &wanted_refs).await,
    )?;
    let missing: Vec<&str> = wanted_refs
        .iter()
        .copied()
        .filter(|w| !held.iter().any(|h| h == w))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::KeyCheckFailed(format!(
            "the role {role} lacks {} on the Transit key {key}: {}",
            missing
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", "),
            policy_hint(role, key)
        )));
    }

    let desc = s.record("read key", kms.describe_key(&key_id).await)?;
    match &desc.state {
        KeyState::Enabled => {}
        KeyState::PendingDeletion => {
            return Err(AppError::KeyCheckFailed(format!(
                "the Transit key {key} is soft-deleted: restore it, then register again"
            )));
        }
        other => {
            return Err(AppError::KeyCheckFailed(format!(
                "the Transit key {key} is in state {other:?}, which refuses use"
            )));
        }
    }
    if !CONTEXT_BINDING_TYPES.contains(&desc.key_spec.as_str()) {
        return Err(AppError::KeyCheckFailed(format!(
            "the Transit key {key} is of type {}, which cannot bind keyplane's context: create a key of type \
             aes256-gcm96 (or aes128-gcm96, chacha20-poly1305, xchacha20-poly1305)",
            if desc.key_spec.is_empty() {
                "(none)"
            } else {
                &desc.key_spec
            }
        )));
    }
    s.outcome.passed.push(format!(
        "region {} recorded from the request (Transit keys have no region)",
        identity.region
    ));
    s.outcome.primary_version = desc
        .primary_version
        .as_ref()
        .map(|v| format!("{key}, version {v}"));
    s.bound_round_trip(
        kms.as_ref(),
        &key_id,
        org,
        ("datakey/plaintext", "decrypt"),
        "bound to the organization (associated data)",
    )
    .await?;
    Ok(s.outcome)
}

/// The platform's JWT signing key: derived from the sealing key, so every process of the
/// deployment signs with the same one.
pub(crate) fn jwt_key(config: &Config) -> AppResult<PlatformJwtKey> {
    let sealing = config.sealing_key.as_ref().ok_or_else(|| {
        AppError::NotSupported(
            "this deployment has no sealing key, from which keyplane's JWT signing key is derived"
                .into(),
        )
    })?;
    PlatformJwtKey::derive(sealing).map_err(|e| AppError::bug(e.to_string()))
}

/// The policy help for a JWT role: the policy, the mount's trust of keyplane's public key and
/// issuer, and the role bound to the organization and the key's server.
pub(crate) fn jwt_grant(
    config: &Config,
    org: Uuid,
    key: Option<&ParsedKeyId>,
) -> AppResult<AccessGrant> {
    let key = key
        .and_then(|k| key_of(k).ok().cloned())
        .unwrap_or_else(OpenbaoKeyRef::placeholder);
    let signing = jwt_key(config)?;
    let trust = JwtTrust {
        issuer: signing.issuer(),
        subject: org.to_string(),
        public_key_pem: signing.public_key_pem(),
    };
    let role = role_of(super::DEFAULT_OPENBAO_JWT_ROLE).as_jwt();
    Ok(AccessGrant::Openbao(Box::new(openbao_jwt_policy_help(
        &key, &role, &trust,
    ))))
}

#[async_trait]
impl KeyService for OpenbaoKeys {
    fn key_field(&self) -> &'static str {
        "openbao.keyID"
    }

    /// Transit key IDs name no region: the region is recorded from the request.
    fn parse(&self, _config: &Config, raw: &str, _region: &str) -> AppResult<ParsedKeyId> {
        OpenbaoKeyRef::parse(raw.trim())
            .map(ParsedKeyId::Openbao)
            .map_err(|e| AppError::invalid("openbao.keyID", format!("openbao.keyID: {e}")))
    }

    async fn live_check(
        &self,
        app: &App,
        identity: &PlatformIdentity,
        org: Uuid,
        key: &ParsedKeyId,
        login: Option<&KeyLogin>,
    ) -> AppResult<LiveCheckOutcome> {
        let login = login.ok_or_else(|| {
            AppError::invalid(
                "openbao.secretID",
                "openbao: give the role ID and secret ID of the role keyplane logs in as (roleID, secretID)",
            )
        })?;
        live_check_openbao(app, identity, org, key_of(key)?, login).await
    }

    fn grant(
        &self,
        _config: &Config,
        principals: &[String],
        _org: Uuid,
        key: Option<&ParsedKeyId>,
    ) -> AccessGrant {
        let key = key
            .and_then(|k| key_of(k).ok().cloned())
            .unwrap_or_else(OpenbaoKeyRef::placeholder);
        let role = role_of(principals.first().map(String::as_str).unwrap_or(""));
        AccessGrant::Openbao(Box::new(openbao_policy_help(&key, &role)))
    }

    /// A pasted policy: HCL as a JSON string, or the policy's JSON form as an object.
    fn check_policy(
        &self,
        _config: &Config,
        doc: &serde_json::Value,
        _principals: &[String],
        _org: Uuid,
        _region: &str,
        key: Option<&ParsedKeyId>,
    ) -> AppResult<PolicyFindings> {
        let Some(key) = key else {
            return Err(AppError::invalid_parameter(
                "keyID",
                "keyID: give the Transit key the policy is for (its key ID), since an OpenBao policy names the key's \
                 paths",
            ));
        };
        let text = match doc {
            serde_json::Value::String(hcl) => hcl.clone(),
            other => serde_json::to_string(other).map_err(AppError::internal)?,
        };
        check_openbao_policy(&text, key_of(key)?)
            .map(PolicyFindings::Openbao)
            .map_err(|e| AppError::invalid("policy", e.to_string()))
    }

    async fn admits(
        &self,
        kms: &dyn KeyProvider,
        key_id: &str,
        _org: Uuid,
    ) -> Result<bool, KmsError> {
        let key = OpenbaoKeyRef::parse(key_id)
            .map_err(|e| KmsError::new(ErrorKind::Invalid, "TestPermissions", e.to_string()))?;
        let wanted = permissions(&key);
        let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
        holds_all(kms, key_id, &refs).await
    }

    fn how_to_admit(&self, principal: &str, key_id: &str) -> String {
        match OpenbaoKeyRef::parse(key_id) {
            Ok(key) => policy_hint(principal, &key),
            Err(_) => format!("bind keyplane's policy for {key_id} to the role {principal}"),
        }
    }

    fn problem(&self, kind: &ErrorKind, key: &str, detail: &str) -> String {
        match kind {
            ErrorKind::AccessDenied { .. } => format!(
                "OpenBao no longer lets the platform's role use the Transit key {key} ({detail}): bind keyplane's \
                 policy to the role again"
            ),
            ErrorKind::Credentials => format!(
                "OpenBao no longer accepts the role credentials registered with {key} ({detail}): register the key \
                 again with a new secret ID"
            ),
            ErrorKind::PendingDeletion => {
                format!("the Transit key {key} is soft-deleted: restore it to restore access")
            }
            _ => super::key_problem(kind, key, detail),
        }
    }

    async fn facts(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<KeyFacts, KmsError> {
        let desc = kms.describe_key(key_id).await?;
        let rotation = super::service::rotation_if_reported(kms, key_id).await?;
        Ok(KeyFacts {
            primary_version: desc.primary_version,
            primary_state: None,
            rotation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_name_each_path() {
        let key = OpenbaoKeyRef::placeholder();
        let p = permissions(&key);
        assert!(
            p.contains(&"update transit/decrypt/KEY-NAME".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"read transit/keys/KEY-NAME".to_string()),
            "{p:?}"
        );
        assert_eq!(
            role_of("auth/approle/role/x").provider_id(),
            "auth/approle/role/x"
        );
        assert_eq!(role_of("").provider_id(), "auth/approle/role/keyplane");
    }
}
