//! The logins customers give keyplane with a key whose service has no platform identity
//! (an OpenBao AppRole: its role path, role ID and secret ID): sealed under the operator's
//! sealing key before they reach the store, opened only to connect, never returned by any
//! answer. [`connect`] is the one way the application gets a [`KeyProvider`] for a
//! customer's key: it opens the key's login where its service needs one.
use std::sync::Arc;

use keyplane_core::{IdentityModel, Provider, SealingKey};
use keyplane_kms::{
    ErrorKind, KeyLogin, KeyProvider, KmsConnector, KmsError, LoginCredential, PlatformIdentity,
};
use keyplane_store::DynStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::{AppError, AppResult};

/// Whether `provider`'s keys are used with a login their customer gave.
pub fn needs_login(provider: Provider) -> bool {
    provider.identity_model() == IdentityModel::CustomerCredentials
}

/// What is sealed: the login, in a form that is wiped once parsed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    role: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    secret: String,
    /// Set for a JWT role: the organization the platform's JWTs name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
}

/// The record a sealed login belongs to: a sealed value moved to another row does not open.
fn aad(org: Uuid, provider: Provider, key_id: &str) -> Vec<u8> {
    format!("keyplane key login v1\n{org}\n{provider}\n{key_id}").into_bytes()
}

fn sealing_key(config: &Config) -> Option<&SealingKey> {
    config.sealing_key.as_ref()
}

/// The sealing key, for keeping `what`; refused (501) where the deployment has none.
pub(crate) fn require_sealing_key<'c>(config: &'c Config, what: &str) -> AppResult<&'c SealingKey> {
    sealing_key(config).ok_or_else(|| {
        AppError::NotSupported(format!(
            "this deployment has no sealing key, so it cannot keep {what}; the operator starts keyplane with \
             --sealing-key-file (serve creates one in the data directory)"
        ))
    })
}

/// Seals `login` for the organization's `key_id`.
pub(crate) fn seal(
    config: &Config,
    org: Uuid,
    provider: Provider,
    key_id: &str,
    login: &KeyLogin,
) -> AppResult<Vec<u8>> {
    let key = require_sealing_key(config, "the credentials an OpenBao key needs")?;
    let plain = Zeroizing::new(
        serde_json::to_vec(&match &login.credential {
            LoginCredential::AppRole { role_id, secret_id } => Sealed {
                role: login.role.clone(),
                id: role_id.to_string(),
                secret: secret_id.to_string(),
                jwt_subject: None,
                ca: login.ca_bundle_pem.clone(),
            },
            LoginCredential::PlatformJwt { subject } => Sealed {
                role: login.role.clone(),
                id: String::new(),
                secret: String::new(),
                jwt_subject: Some(subject.clone()),
                ca: login.ca_bundle_pem.clone(),
            },
        })
        .map_err(|e| AppError::bug(format!("sealing a login: {e}")))?,
    );
    key.seal(&plain, &aad(org, provider, key_id))
        .map_err(|e| AppError::bug(format!("sealing a login: {e}")))
}

/// Opens a login [`seal`] made for the same record.
fn open(
    config: &Config,
    org: Uuid,
    provider: Provider,
    key_id: &str,
    sealed: &[u8],
) -> Result<KeyLogin, KmsError> {
    let refused = |why: String| KmsError::new(ErrorKind::Credentials, "Connect", why);
    let key = sealing_key(config).ok_or_else(|| {
        refused("this process has no sealing key to open the key's credentials with".into())
    })?;
    let plain = key.open(sealed, &aad(org, provider, key_id)).map_err(|e| {
        refused(format!(
            "the credentials registered with the key do not open ({e}): every keyplane process must use the same \
             sealing key file"
        ))
    })?;
    let parsed: Sealed = serde_json::from_slice(&plain)
        .map_err(|e| refused(format!("the sealed credentials are not readable: {e}")))?;
    let credential = match parsed.jwt_subject {
        Some(subject) => LoginCredential::PlatformJwt { subject },
        None => LoginCredential::AppRole {
            role_id: Zeroizing::new(parsed.id),
            secret_id: Zeroizing::new(parsed.secret),
        },
    };
    Ok(KeyLogin {
        role: parsed.role,
        credential,
        ca_bundle_pem: parsed.ca,
    })
}

/// The stored login of the organization's `key_id`, opened; None when none was given.
pub(crate) async fn stored(
    store: &DynStore,
    config: &Config,
    org: Uuid,
    provider: Provider,
    key_id: &str,
) -> Result<Option<KeyLogin>, KmsError> {
    let sealed = store
        .get_key_login(org, provider, key_id)
        .await
        .map_err(|e| {
            KmsError::new(
                ErrorKind::Unreachable,
                "Connect",
                format!("the key's credentials could not be read from the store: {e}"),
            )
        })?;
    sealed
        .map(|s| open(config, org, provider, key_id, &s))
        .transpose()
}

/// A provider acting on the organization's `key_id` as `identity`: with the key's stored
/// login where its service takes one, else as the platform's own identity.
pub(crate) async fn connect(
    store: &DynStore,
    kms: &dyn KmsConnector,
    config: &Config,
    identity: &PlatformIdentity,
    org: Uuid,
    key_id: &str,
) -> Result<Arc<dyn KeyProvider>, KmsError> {
    if !needs_login(identity.provider) {
        return kms.connect(identity);
    }
    match stored(store, config, org, identity.provider, key_id).await? {
        Some(login) => kms.connect_with_login(identity, key_id, &login),
        None => Err(KmsError::new(
            ErrorKind::Credentials,
            "Connect",
            format!(
                "no credentials are registered with the key {key_id}: register it again with the role's credentials"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> KeyLogin {
        KeyLogin {
            role: "auth/approle/role/keyplane".into(),
            credential: LoginCredential::AppRole {
                role_id: Zeroizing::new("role-id-1".into()),
                secret_id: Zeroizing::new("secret-id-1".into()),
            },
            ca_bundle_pem: None,
        }
    }

    #[test]
    fn a_sealed_login_opens_only_for_its_record_and_key() {
        let config = Config {
            sealing_key: Some(SealingKey::generate()),
            ..Config::default()
        };
        let org = Uuid::new_v4();
        let key = "http://127.0.0.1:8200/v1/transit/keys/k";
        let sealed = seal(&config, org, Provider::Openbao, key, &login()).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("secret-id-1"));
        let back = open(&config, org, Provider::Openbao, key, &sealed).unwrap();
        assert_eq!(back.role, "auth/approle/role/keyplane");
        assert!(matches!(
            &back.credential,
            LoginCredential::AppRole { secret_id, .. } if secret_id.as_str() == "secret-id-1"
        ));
        let other_org = open(&config, Uuid::new_v4(), Provider::Openbao, key, &sealed);
        assert_eq!(other_org.unwrap_err().kind, ErrorKind::Credentials);
        let other_key = Config {
            sealing_key: Some(SealingKey::generate()),
            ..Config::default()
        };
        let e = open(&other_key, org, Provider::Openbao, key, &sealed).unwrap_err();
        assert!(e.message.contains("same sealing key"), "{e}");
        assert!(matches!(
            seal(&Config::default(), org, Provider::Openbao, key, &login()),
            Err(AppError::NotSupported(_))
        ));
    }
}
