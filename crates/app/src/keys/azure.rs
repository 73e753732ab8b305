//! Azure Key Vault as a key service (serverless databases only, as the original): key IDs
//! (`https://<vault>.vault.azure.net/keys/<name>[/<version>]`, the versionless key stored so
//! that rotation keeps working), the live check, the role assignment to make and the checker
//! of a pasted role-assignment list or access policies (`keyplane_core::policy::azure`).
//!
//! The live check acts as the organization's Entra ID application for the region: the key
//! itself first (readable, enabled, not expired, not before its start date, a type that wraps
//! keys, in the database's region where the vault reports it); then a round trip of a data key
//! bound to the organization's context, and an unwrap under another organization's context
//! that must be refused (Key Vault's wrap takes no context: the adapter binds it). A denied
//! step names the one role that grants get, wrapKey and unwrapKey.
use async_trait::async_trait;
use keyplane_core::AzureKeyId;
use keyplane_core::policy::azure::{
    AzurePlatformApp, CRYPTO_SERVICE_ENCRYPTION_USER, azure_grant_help, check_azure_access,
};
use keyplane_core::{AzureVaultKind, Provider};
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

pub(crate) struct AzureKeys;

/// The permissions the platform's application needs on the key, as the adapter probes them
/// (for the serverless provider-ID rule's `admits`).
const PERMISSIONS: [&str; 3] = ["get", "wrapKey", "unwrapKey"];

/// The key the help names while the customer has not said which (the built-in vault's, in
/// dev mode, so its commands work as printed).
fn placeholder_key(config: &Config) -> AzureKeyId {
    config
        .azure_dev_hosts
        .first()
        .and_then(|host| {
            let url = format!("https://{host}/keys/KEY-NAME");
            AzureKeyId::parse_allowing(&url, &config.azure_dev_hosts).ok()
        })
        .unwrap_or_else(|| AzureKeyId {
            kind: AzureVaultKind::Vault,
            host: "your-vault.vault.azure.net".into(),
            vault_name: Some("your-vault".into()),
            name: "your-key".into(),
            version: None,
        })
}

fn id_of(key: &ParsedKeyId) -> AppResult<&AzureKeyId> {
    match key {
        ParsedKeyId::Azure(id) => Ok(id),
        other => Err(AppError::bug(format!(
            "not an Azure Key Vault key: {other:?}"
        ))),
    }
}

/// The platform's application as the grant help names it: its client ID, and the object ID
/// of its service principal where the operator configured it.
fn platform_app(config: &Config, client_id: &str) -> AzurePlatformApp {
    AzurePlatformApp {
        client_id: client_id.to_string(),
        object_id: config
            .account(Provider::Azure, client_id)
            .and_then(|a| a.object_id.clone()),
        tenant_id: None,
    }
}

/// "assign the role … on the key to the application …", with the command that does it.
fn role_to_assign(key: &AzureKeyId, client_id: &str) -> String {
    let scope = match key.kind {
        AzureVaultKind::Dev => format!(
            "`keyplane kms azure assign-role --key {} --role \"{}\"`",
            key.name, CRYPTO_SERVICE_ENCRYPTION_USER.name
        ),
        _ => format!(
            "`az role assignment create --role \"{}\" --assignee {client_id} --scope <the key's resource ID>`",
            CRYPTO_SERVICE_ENCRYPTION_USER.name
        ),
    };
    format!(
        "assign the role \"{}\" on the key to the platform's application {client_id} ({scope}; or grant it the key \
         permissions get, wrapKey and unwrapKey in the vault's access policies)",
        CRYPTO_SERVICE_ENCRYPTION_USER.name
    )
}

/// What a key state that refuses use means for the customer.
fn state_refusal(key: &str, state: &KeyState) -> Option<String> {
    // The built-in vault's keys are changed with keyplane's own commands, Azure's with `az`.
    let name = key.rsplit('/').next().unwrap_or(key);
    let on_azure = key.contains(".vault.azure.") || key.contains(".managedhsm.");
    let command = |az: &str, dev: &str| {
        if on_azure {
            format!("`az keyvault key {az}`")
        } else {
            format!("`keyplane kms azure {dev} --key {name}`")
        }
    };
    match state {
        KeyState::Enabled => None,
        KeyState::Disabled => Some(format!(
            "the key {key} is disabled in Key Vault: enable it ({})",
            command("set-attributes --enabled true", "enable")
        )),
        KeyState::PendingDeletion => Some(format!(
            "the key {key} is deleted (soft-deleted): recover it (`az keyvault key recover`)"
        )),
        KeyState::Other(s) if s == "Expired" => Some(format!(
            "the key {key} has expired: set a later expiry on its current version ({})",
            command("set-attributes --expires", "set-expiry --expires +90d")
        )),
        KeyState::Other(s) if s == "NotYetValid" => Some(format!(
            "the key {key} is not valid yet (its activation date is in the future): clear or move its not-before \
             date"
        )),
        KeyState::Other(s) => Some(format!("the key {key} is in state {s}, which refuses use")),
    }
}

/// Azure region names compare without case or spaces ("East US" is "eastus").
fn same_region(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Turns a Key Vault failure during the check into the customer-facing error.
fn explain(e: &KmsError, step: &str, key: &AzureKeyId, client_id: &str) -> AppError {
    tracing::info!(error = %e, kind = ?e.kind, step, key = %key, "Azure key check failed");
    let name = key.versionless().to_string();
    match &e.kind {
        ErrorKind::AccessDenied { .. } => AppError::KeyCheckFailed(format!(
            "Key Vault does not let the platform's application {client_id} perform {step} on {name} (it needs the key \
             permissions {}): {}, then register again (GET …/policy returns the role assignment to make)",
            PERMISSIONS.join(", "),
            role_to_assign(key, client_id)
        )),
        ErrorKind::NotFound => AppError::KeyCheckFailed(format!(
            "key {name} was not found, or its vault no longer exists (deleted or purged): check the key ID, and \
             {}",
            role_to_assign(key, client_id)
        )),
        ErrorKind::Disabled => AppError::KeyCheckFailed(format!(
            "the key {name} is disabled ({step}): enable it, then register again"
        )),
        ErrorKind::PendingDeletion => AppError::KeyCheckFailed(format!(
            "the key {name} is deleted ({step}): recover it, then register again"
        )),
        ErrorKind::WrongKeyType => AppError::KeyCheckFailed(format!(
            "key {name} cannot wrap keys: create an RSA key (2048, 3072 or 4096 bits) with the wrapKey and \
             unwrapKey operations, or an AES key of a Managed HSM"
        )),
        ErrorKind::InvalidState => AppError::KeyCheckFailed(format!(
            "key {name} refused {step}: {}; fix its attributes (enabled, expiry, not-before), then register again",
            e.message
        )),
        ErrorKind::WrongRegion | ErrorKind::InvalidCiphertext => {
            AppError::KeyCheckFailed(format!("key {name} refused {step}: {}", e.message))
        }
        ErrorKind::Retryable | ErrorKind::Unreachable | ErrorKind::Credentials => {
            super::platform_side_failure(e, "Azure Key Vault", &name, step)
        }
        // The deployment has no Azure adapter configured: nothing about the key.
        ErrorKind::Unsupported if step == "connect" => AppError::NotSupported(e.message.clone()),
        ErrorKind::Invalid | ErrorKind::Unsupported | ErrorKind::Other => AppError::KeyCheckFailed(
            format!("Key Vault refused {step} on key {name}: {}", e.message),
        ),
    }
}

async fn live_check_azure(
    app: &App,
    identity: &PlatformIdentity,
    org: Uuid,
    key: &AzureKeyId,
) -> AppResult<LiveCheckOutcome> {
    let client_id = identity.account_id.as_str();
    let kms = app
        .kms
        .connect(identity)
        .map_err(|e| explain(&e, "connect", key, client_id))?;
    let name = key.versionless().to_string();
    let mut s = CheckSteps::new(|e: &KmsError, step: &str| explain(e, step, key, client_id));

    // The key first: a state that refuses use is named as such, not as the failed wrap it
    // would cause. The round trip below then proves wrapKey and unwrapKey; a permission it
    // lacks is refused naming the role, which grants all three at once.
    let desc = s.record("get", kms.describe_key(&name).await)?;
    if let Some(why) = state_refusal(&name, &desc.state) {
        return Err(AppError::KeyCheckFailed(format!(
            "{why}; then register again"
        )));
    }
    if !(desc.key_spec.starts_with("RSA") || desc.key_spec.starts_with("oct")) {
        return Err(AppError::KeyCheckFailed(format!(
            "key {name} is of type {}, which cannot wrap keys: create an RSA key (2048, 3072 or 4096 bits), or an AES \
             key of a Managed HSM",
            if desc.key_spec.is_empty() {
                "(none)"
            } else {
                &desc.key_spec
            }
        )));
    }
    if desc.region.is_empty() {
        s.outcome.passed.push(format!(
            "region {} recorded from the request (the vault does not report its region)",
            identity.region
        ));
    } else if !same_region(&desc.region, &identity.region) {
        return Err(AppError::KeyCheckFailed(format!(
            "key {name} is in a vault of region {}, not {}: create a vault and key in {}",
            desc.region, identity.region, identity.region
        )));
    }
    s.outcome.primary_version = desc.primary_version.as_ref().map(|v| format!("{name}/{v}"));

    s.bound_round_trip(
        kms.as_ref(),
        &name,
        org,
        ("wrapKey", "unwrapKey"),
        "bound to the organization (context tag)",
    )
    .await?;
    Ok(s.outcome)
}

#[async_trait]
impl KeyService for AzureKeys {
    fn key_field(&self) -> &'static str {
        "azure.keyID"
    }

    /// Key Vault key IDs name no region: the vault's is checked live, where it reports one.
    fn parse(&self, config: &Config, raw: &str, _region: &str) -> AppResult<ParsedKeyId> {
        let id = AzureKeyId::parse_allowing(raw.trim(), &config.azure_dev_hosts)
            .map_err(|e| AppError::invalid("azure.keyID", format!("azure.keyID: {e}")))?;
        Ok(ParsedKeyId::Azure(id.versionless()))
    }

    async fn live_check(
        &self,
        app: &App,
        identity: &PlatformIdentity,
        org: Uuid,
        key: &ParsedKeyId,
        _login: Option<&keyplane_kms::KeyLogin>,
    ) -> AppResult<LiveCheckOutcome> {
        live_check_azure(app, identity, org, id_of(key)?).await
    }

    fn grant(
        &self,
        config: &Config,
        principals: &[String],
        _org: Uuid,
        key: Option<&ParsedKeyId>,
    ) -> AccessGrant {
        let key = key
            .and_then(|k| id_of(k).ok().cloned())
            .unwrap_or_else(|| placeholder_key(config));
        AccessGrant::Azure(
            principals
                .iter()
                .map(|p| azure_grant_help(&key, &platform_app(config, p)))
                .collect(),
        )
    }

    /// Each application is checked on its own; the answer is the first one's findings that
    /// lacks anything, else the first one's.
    fn check_policy(
        &self,
        config: &Config,
        doc: &serde_json::Value,
        principals: &[String],
        _org: Uuid,
        _region: &str,
        key: Option<&ParsedKeyId>,
    ) -> AppResult<PolicyFindings> {
        let Some(key) = key else {
            return Err(AppError::invalid_parameter(
                "keyID",
                "keyID: give the key the role assignments or access policies are for (its key ID), so their scopes \
                 can be checked",
            ));
        };
        let key = id_of(key)?;
        let text = serde_json::to_string(doc).map_err(AppError::internal)?;
        let mut first = None;
        for p in principals {
            let report = check_azure_access(&text, key, &platform_app(config, p))
                .map_err(|e| AppError::invalid("policy", e.to_string()))?;
            if !report.verdict_ok {
                return Ok(PolicyFindings::Azure(report));
            }
            first.get_or_insert(report);
        }
        first
            .map(PolicyFindings::Azure)
            .ok_or_else(|| AppError::bug("no Azure application to check the policy for"))
    }

    async fn admits(
        &self,
        kms: &dyn KeyProvider,
        key_id: &str,
        _org: Uuid,
    ) -> Result<bool, KmsError> {
        holds_all(kms, key_id, &PERMISSIONS).await
    }

    fn how_to_admit(&self, principal: &str, key_id: &str) -> String {
        match AzureKeyId::parse_allowing(key_id, &[key_host(key_id)]) {
            Ok(key) => role_to_assign(&key, principal),
            Err(_) => format!(
                "assign the role \"{}\" on {key_id} to the platform's application {principal}",
                CRYPTO_SERVICE_ENCRYPTION_USER.name
            ),
        }
    }

    /// The key's current version decides: Key Vault wraps new data keys with it.
    async fn health(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<(), KmsError> {
        let desc = kms.describe_key(key_id).await?;
        let Some(kind) = refusing_kind(&desc.state) else {
            return Ok(());
        };
        let why = state_refusal(key_id, &desc.state).unwrap_or_default();
        Err(KmsError::new(kind, "GetKey", why))
    }

    fn problem(&self, kind: &ErrorKind, key: &str, detail: &str) -> String {
        match kind {
            // `health` already wrote the sentence.
            ErrorKind::Disabled | ErrorKind::PendingDeletion | ErrorKind::InvalidState
                if detail.starts_with("the key ") =>
            {
                format!("{detail}; the platform cannot use the key until then")
            }
            ErrorKind::Disabled => format!(
                "the key {key} (or the version that wrapped this data key) is disabled in Key Vault; enable it to \
                 restore access"
            ),
            ErrorKind::AccessDenied { .. } => format!(
                "Key Vault no longer lets the platform's application use {key}; restore its role assignment \"{}\" \
                 on the key (or its access policy: get, wrapKey, unwrapKey)",
                CRYPTO_SERVICE_ENCRYPTION_USER.name
            ),
            ErrorKind::NotFound => format!(
                "the key {key} no longer exists, or its vault was deleted; recover the key or the vault to restore \
                 access"
            ),
            other => super::key_problem(other, key, detail),
        }
    }

    async fn facts(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<KeyFacts, KmsError> {
        let desc = kms.describe_key(key_id).await?;
        let rotation = match kms.rotation_facts(key_id).await {
            Ok(r) => Some(r),
            // A key without a rotation policy has nothing to report, and the role the platform
            // holds (Crypto Service Encryption User) does not read rotation policies.
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::Unsupported | ErrorKind::NotFound | ErrorKind::AccessDenied { .. }
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        Ok(KeyFacts {
            primary_version: desc.primary_version.map(|v| format!("{key_id}/{v}")),
            primary_state: Some(match desc.state {
                KeyState::Enabled => "Enabled".to_string(),
                KeyState::Disabled => "Disabled".to_string(),
                KeyState::PendingDeletion => "Deleted".to_string(),
                KeyState::Other(s) => s,
            }),
            rotation,
        })
    }
}

/// The `host[:port]` of a key URL, so that a stored key of a development vault parses again
/// (it was accepted when it was registered).
fn key_host(key_id: &str) -> String {
    key_id
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_config() -> Config {
        Config {
            azure_dev_hosts: vec!["localhost:4600".into()],
            ..Config::default()
        }
    }

    #[test]
    fn the_versionless_key_is_stored() {
        let k = AzureKeys
            .parse(
                &Config::default(),
                "https://contoso.vault.azure.net/keys/db-key/78deebed173b48e48f55abf87ed4cf71",
                "eastus",
            )
            .unwrap();
        assert_eq!(k.stored(), "https://contoso.vault.azure.net/keys/db-key");
    }

    #[test]
    fn a_dev_vault_is_accepted_only_where_configured() {
        let raw = "https://localhost:4600/keys/orders";
        let e = AzureKeys
            .parse(&Config::default(), raw, "eastus")
            .unwrap_err();
        assert!(
            matches!(
                e,
                AppError::Invalid {
                    field: "azure.keyID",
                    ..
                }
            ),
            "{e}"
        );
        let k = AzureKeys.parse(&dev_config(), raw, "eastus").unwrap();
        assert_eq!(k.stored(), raw);
    }

    #[test]
    fn the_help_without_a_key_names_the_dev_vault_when_there_is_one() {
        let grant = AzureKeys.grant(
            &dev_config(),
            &["7f3c2a10-0000-4000-8000-000000000222".into()],
            Uuid::nil(),
            None,
        );
        let AccessGrant::Azure(help) = grant else {
            panic!("not an Azure grant");
        };
        assert_eq!(help.len(), 1);
        assert!(
            help[0].commands[0].starts_with("keyplane kms azure assign-role"),
            "{:?}",
            help[0].commands
        );
        let grant = AzureKeys.grant(&Config::default(), &["app".into()], Uuid::nil(), None);
        let AccessGrant::Azure(help) = grant else {
            panic!("not an Azure grant");
        };
        assert!(
            help[0].key_id.contains("vault.azure.net"),
            "{}",
            help[0].key_id
        );
    }

    #[test]
    fn refusals_say_what_to_change() {
        let d = state_refusal("https://v1.vault.azure.net/keys/k", &KeyState::Disabled).unwrap();
        assert!(
            d.contains("disabled") && d.contains("--enabled true"),
            "{d}"
        );
        let d = state_refusal("https://localhost:4600/keys/k", &KeyState::Disabled).unwrap();
        assert!(d.contains("keyplane kms azure enable --key k"), "{d}");
        let x = state_refusal("k", &KeyState::Other("Expired".into())).unwrap();
        assert!(x.contains("expired"), "{x}");
        let n = state_refusal("k", &KeyState::Other("NotYetValid".into())).unwrap();
        assert!(n.contains("not valid yet"), "{n}");
        assert!(state_refusal("k", &KeyState::Enabled).is_none());
        assert!(same_region("East US", "eastus"));
        assert!(!same_region("westeurope", "eastus"));
    }
}
