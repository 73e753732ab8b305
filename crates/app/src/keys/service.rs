//! What makes a key service (AWS KMS, Google Cloud KMS, and next Azure Key Vault and
//! OpenBao): a parser of its key IDs, the live check that registration runs, the help and
//! the checker for its access policy, how the monitor reads the key's health, and whether
//! the key lets one platform identity in. [`key_service`] is the one place the application
//! chooses a service; registration, the policy routes, the monitor and the serverless
//! provider-ID rule only call through [`KeyService`].
//!
//! A new service is a module beside [`super::aws`] and [`super::gcp`] implementing the trait,
//! one arm in [`key_service`], and its connector in the binary's wiring.
use async_trait::async_trait;
use keyplane_core::policy::CheckReport;
use keyplane_core::policy::azure::{AzureAccessReport, AzureGrantHelp};
use keyplane_core::policy::gcp::IamCheckReport;
use keyplane_core::policy::openbao::{OpenbaoPolicyHelp, TransitCheckReport};
use keyplane_core::{AwsKeyArn, AzureKeyId, GcpKeyName, OpenbaoKeyRef, Provider};
use keyplane_kms::{
    ErrorKind, KeyLogin, KeyProvider, KeyState, KmsError, PlatformIdentity, RotationFacts,
};
use uuid::Uuid;

use super::policy::PolicyVerdict;
use super::{LiveCheckOutcome, key_problem};
use crate::App;
use crate::config::Config;
use crate::error::AppResult;

/// A customer key ID as its service parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedKeyId {
    Aws(AwsKeyArn),
    /// The versionless key is what is stored; the version given (if any) is kept for the answer.
    Gcp(GcpKeyName),
    /// The versionless key URL is what is stored: encryption follows the key's current version.
    Azure(AzureKeyId),
    /// A Transit key: encryption uses its latest version, decryption the one a ciphertext names.
    Openbao(OpenbaoKeyRef),
}

impl ParsedKeyId {
    /// What is stored and what every later call names: the ARN, or the GCP key without a
    /// version (encryption then follows the key's primary version).
    pub fn stored(&self) -> String {
        match self {
            ParsedKeyId::Aws(arn) => arn.to_string(),
            ParsedKeyId::Gcp(name) => name.key_name(),
            ParsedKeyId::Azure(id) => id.versionless().to_string(),
            ParsedKeyId::Openbao(key) => key.to_string(),
        }
    }
}

/// What to grant the platform's identities on a key, in the service's own terms.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessGrant {
    /// AWS: the key-policy statements, in order (use of the key, then grants).
    AwsStatements(Vec<serde_json::Value>),
    /// GCP: the IAM bindings to add to the key's policy, and the gcloud commands that add them.
    GcpBindings {
        bindings: Vec<serde_json::Value>,
        commands: Vec<String>,
    },
    /// Azure: the role assignment on the key (and the access-policy equivalent), with the
    /// commands that make it.
    Azure(Vec<AzureGrantHelp>),
    /// OpenBao: the policy to write and bind to the platform's role, with the commands.
    Openbao(Box<OpenbaoPolicyHelp>),
}

/// A pasted access policy, checked for the platform's identities.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyFindings {
    /// An AWS key policy evaluated for the platform's role.
    Aws(CheckReport),
    /// A GCP IAM policy (getIamPolicy output) read for each service account.
    Gcp(IamCheckReport),
    /// An `az role assignment list` output or a vault's access policies, read for the
    /// platform's application.
    Azure(AzureAccessReport),
    /// An OpenBao / Vault policy (HCL or JSON) read for the key's paths.
    Openbao(TransitCheckReport),
}

impl PolicyFindings {
    /// Whether every permission the platform needs is granted (bound or not).
    pub fn verdict_ok(&self) -> bool {
        match self {
            PolicyFindings::Aws(r) => r.verdict_ok,
            PolicyFindings::Gcp(r) => r.verdict_ok,
            PolicyFindings::Azure(r) => r.verdict_ok,
            PolicyFindings::Openbao(r) => r.ok,
        }
    }

    /// As registration would decide. Only an AWS key policy can be unbound: GCP service
    /// accounts and Azure applications are one organization's each, so a grant naming them is
    /// bound by itself.
    pub fn verdict(&self) -> PolicyVerdict {
        match self {
            PolicyFindings::Aws(r) if !r.verdict_ok => PolicyVerdict::Insufficient,
            PolicyFindings::Aws(r) if !r.bound_to_organization => PolicyVerdict::Unbound,
            PolicyFindings::Gcp(r) if !r.verdict_ok => PolicyVerdict::Insufficient,
            PolicyFindings::Azure(r) if !r.verdict_ok => PolicyVerdict::Insufficient,
            PolicyFindings::Openbao(r) if !r.ok => PolicyVerdict::Insufficient,
            PolicyFindings::Aws(_)
            | PolicyFindings::Gcp(_)
            | PolicyFindings::Azure(_)
            | PolicyFindings::Openbao(_) => PolicyVerdict::Ok,
        }
    }

    /// What is missing (or usable for any organization), in a few words for the audit log.
    pub fn missing(&self) -> String {
        let listed = |fs: &[keyplane_core::policy::Finding]| {
            fs.iter()
                .map(|f| f.action.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            PolicyFindings::Aws(r) if r.verdict_ok && !r.bound_to_organization => format!(
                "usable for any organization: {}",
                listed(&r.organization_findings)
            ),
            PolicyFindings::Aws(r) => listed(&r.findings),
            PolicyFindings::Gcp(r) => r
                .members
                .iter()
                .flat_map(|m| {
                    m.findings
                        .iter()
                        .map(move |f| format!("{} {}", m.member, f.permission))
                })
                .collect::<Vec<_>>()
                .join(", "),
            PolicyFindings::Azure(r) => r
                .findings
                .iter()
                .map(|f| f.permission.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            PolicyFindings::Openbao(r) => r
                .problems()
                .map(|f| format!("{} {}", f.requirement.capability, f.requirement.path))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// What a key's status shows beyond keyplane's own check: the service's facts of the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyFacts {
    /// The version new data keys are wrapped with (GCP), with its state.
    pub primary_version: Option<String>,
    pub primary_state: Option<String>,
    /// The key's own rotation, where the service reports it.
    pub rotation: Option<RotationFacts>,
}

/// One key service, as the application uses it.
#[async_trait]
pub(crate) trait KeyService: Send + Sync {
    /// The request field that names the key (`aws.keyID`), for messages.
    fn key_field(&self) -> &'static str;

    /// Parses the key ID a request gives and checks that it names a key of `region`;
    /// `config` names the hosts a development vault may use.
    fn parse(&self, config: &Config, raw: &str, region: &str) -> AppResult<ParsedKeyId>;

    /// Every check of a key before it is registered, acting as `identity`; nothing is stored.
    /// `login` is the customer's login for services that take one (OpenBao), else None.
    async fn live_check(
        &self,
        app: &App,
        identity: &PlatformIdentity,
        org: Uuid,
        key: &ParsedKeyId,
        login: Option<&KeyLogin>,
    ) -> AppResult<LiveCheckOutcome>;

    /// What the customer grants `principals` (the organization's identities in the region)
    /// on a key; `key` fills in its name where the help names it.
    fn grant(
        &self,
        config: &Config,
        principals: &[String],
        org: Uuid,
        key: Option<&ParsedKeyId>,
    ) -> AccessGrant;

    /// Checks a pasted access policy for `principals`; `key` (when given) pins what the policy
    /// is attached to.
    fn check_policy(
        &self,
        config: &Config,
        doc: &serde_json::Value,
        principals: &[String],
        org: Uuid,
        region: &str,
        key: Option<&ParsedKeyId>,
    ) -> AppResult<PolicyFindings>;

    /// Whether the key lets `kms`'s identity use it for the organization: `Ok(false)` when the
    /// key's policy does not name it (or not for this organization); any other failure (the
    /// key disabled, the KMS down) is an error, because it says nothing about the identity.
    async fn admits(
        &self,
        kms: &dyn KeyProvider,
        key_id: &str,
        org: Uuid,
    ) -> Result<bool, KmsError>;

    /// The sentence naming what the customer adds so that `principal` may use `key_id`.
    fn how_to_admit(&self, principal: &str, key_id: &str) -> String;

    /// The key's own state, read by the key health monitor once per key and round: `Ok` when
    /// it can be used, else the error that explains why not.
    async fn health(&self, kms: &dyn KeyProvider, key_id: &str) -> Result<(), KmsError> {
        let desc = kms.describe_key(key_id).await?;
        state_error(&desc.state, "DescribeKey").map_or(Ok(()), Err)
    }

    /// The sentence a status or a suspension shows for a KMS failure on `key`.
    fn problem(&self, kind: &ErrorKind, key: &str, detail: &str) -> String {
        key_problem(kind, key, detail)
    }

    /// The facts a key's status shows. Default: none beyond keyplane's check.
    async fn facts(&self, _kms: &dyn KeyProvider, _key_id: &str) -> Result<KeyFacts, KmsError> {
        Ok(KeyFacts::default())
    }
}

/// Whether `kms`'s identity holds every one of `permissions` on the key (a service's own
/// permission probe); a key it cannot see admits nobody.
pub(crate) async fn holds_all(
    kms: &dyn KeyProvider,
    key_id: &str,
    permissions: &[&str],
) -> Result<bool, KmsError> {
    match kms.test_permissions(key_id, permissions).await {
        Ok(held) => Ok(permissions
            .iter()
            .all(|p| held.iter().any(|h| h.eq_ignore_ascii_case(p)))),
        Err(e) if matches!(e.kind, ErrorKind::AccessDenied { .. } | ErrorKind::NotFound) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The key's rotation as its service reports it; None where it reports none.
pub(crate) async fn rotation_if_reported(
    kms: &dyn KeyProvider,
    key_id: &str,
) -> Result<Option<RotationFacts>, KmsError> {
    match kms.rotation_facts(key_id).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.kind == ErrorKind::Unsupported => Ok(None),
        Err(e) => Err(e),
    }
}

/// The kind of failure a key state that refuses use stands for (None: usable).
pub(crate) fn refusing_kind(state: &KeyState) -> Option<ErrorKind> {
    match state {
        KeyState::Enabled => None,
        KeyState::Disabled => Some(ErrorKind::Disabled),
        KeyState::PendingDeletion => Some(ErrorKind::PendingDeletion),
        KeyState::Other(_) => Some(ErrorKind::InvalidState),
    }
}

/// The error a described key state stands for (None: the key is usable).
pub(crate) fn state_error(state: &KeyState, operation: &'static str) -> Option<KmsError> {
    match state {
        KeyState::Enabled => None,
        KeyState::Disabled => Some(KmsError::new(
            ErrorKind::Disabled,
            operation,
            "key state Disabled",
        )),
        KeyState::PendingDeletion => Some(KmsError::new(
            ErrorKind::PendingDeletion,
            operation,
            "key state PendingDeletion",
        )),
        KeyState::Other(s) => Some(KmsError::new(
            ErrorKind::InvalidState,
            operation,
            format!("key state {s}"),
        )),
    }
}

/// The key service of `provider`'s customer keys: the one dispatch of the application.
pub(crate) fn key_service(provider: Provider) -> AppResult<&'static dyn KeyService> {
    match provider {
        Provider::Aws => Ok(&super::aws::AwsKeys),
        Provider::Gcp => Ok(&super::gcp::GcpKeys),
        Provider::Azure => Ok(&super::azure::AzureKeys),
        Provider::Openbao => Ok(&super::openbao::OpenbaoKeys),
    }
}

/// The sentence for a failure on a datacenter's or key's key, by its provider's service.
pub fn problem_for(provider: Provider, kind: &ErrorKind, key: &str, detail: &str) -> String {
    match key_service(provider) {
        Ok(s) => s.problem(kind, key, detail),
        Err(_) => key_problem(kind, key, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_has_its_service() {
        for (p, field) in [
            (Provider::Aws, "aws.keyID"),
            (Provider::Gcp, "gcp.keyID"),
            (Provider::Azure, "azure.keyID"),
            (Provider::Openbao, "openbao.keyID"),
        ] {
            assert_eq!(key_service(p).map(|s| s.key_field()).ok(), Some(field));
        }
    }
}
