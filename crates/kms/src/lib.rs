//! The operations the platform performs on a customer's key, as one provider-neutral trait,
//! and the kinds its errors are sorted into. Adapters (AWS today; GCP, Azure and Vault later)
//! live in their own crates; only the binary wires one in.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keyplane_core::Provider;
use zeroize::Zeroizing;

/// Encryption context: bound to every ciphertext, and visible to the customer's policy
/// conditions and audit logs. Never secret.
pub type EncryptionContext = BTreeMap<String, String>;

/// Why a KMS call failed, in the terms the platform acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key (or grant) does not exist, or is not visible to the platform's identity.
    NotFound,
    /// The policy (or IAM) does not let the platform's identity perform `action`.
    AccessDenied { action: String },
    /// The key is disabled.
    Disabled,
    /// The key is scheduled for deletion.
    PendingDeletion,
    /// The key is in some other state that refuses the operation.
    InvalidState,
    /// The key cannot do this operation (asymmetric, HMAC, wrong usage).
    WrongKeyType,
    /// The key lives in another region than the one the call was made to.
    WrongRegion,
    /// The ciphertext is not valid for this key and context.
    InvalidCiphertext,
    /// The request itself was refused as malformed.
    Invalid,
    /// Throttled or a transient server error: try again.
    Retryable,
    /// The KMS could not be reached (connection refused, timeout, DNS).
    Unreachable,
    /// Credentials were refused (unknown access key, bad signature, expired token).
    Credentials,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Errors that say nothing about the key itself: the key health monitor waits out a
    /// grace period before acting on them.
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorKind::Retryable | ErrorKind::Unreachable)
    }
}

/// A KMS failure: its kind, the provider's own message, and the underlying error.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct KmsError {
    pub kind: ErrorKind,
    /// The operation that failed, as the provider names it (e.g. `Decrypt`).
    pub operation: &'static str,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl KmsError {
    pub fn new(kind: ErrorKind, operation: &'static str, message: impl Into<String>) -> KmsError {
        KmsError {
            kind,
            operation,
            message: message.into(),
            source: None,
        }
    }
}

pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// A plaintext data key and its wrapped form. The plaintext is zeroized on drop and never
/// printed.
pub struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// Any other provider state (e.g. AWS `PendingImport`, `Unavailable`).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// The key's canonical ID (an ARN for AWS).
    pub arn: String,
    pub account: String,
    pub region: String,
    pub state: KeyState,
    /// e.g. `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    /// e.g. `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    pub multi_region: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub grantee: String,
    pub operations: Vec<String>,
    pub name: Option<String>,
}

/// The operations the platform performs on one customer key, acting as the platform's
/// identity for the key's provider and region.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription>;
    async fn enable_key(&self, key_id: &str) -> Result<()>;
    async fn encrypt(&self, key_id: &str, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>>;
    async fn decrypt(&self, key_id: &str, ciphertext: &[u8], context: &EncryptionContext) -> Result<Zeroizing<Vec<u8>>>;
    /// A 256-bit data key.
    async fn generate_data_key(&self, key_id: &str, context: &EncryptionContext) -> Result<DataKey>;
    /// A 256-bit data key, wrapped only: the plaintext never leaves the KMS.
    async fn generate_data_key_without_plaintext(&self, key_id: &str, context: &EncryptionContext) -> Result<Vec<u8>>;
    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        source_key_id: &str,
        destination_key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>>;
    /// A grant for `grantee` (the platform's volume service) to use the key for persistent
    /// resources. Returns the grant ID.
    async fn create_grant(&self, key_id: &str, grantee: &str, operations: &[&str], name: &str) -> Result<String>;
    async fn list_grants(&self, key_id: &str) -> Result<Vec<Grant>>;
    async fn revoke_grant(&self, key_id: &str, grant_id: &str) -> Result<()>;
}

/// The identity keyplane acts as: a platform account's role in one region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformIdentity {
    pub provider: Provider,
    pub region: String,
    /// The provider ID customers trust (AWS account ID).
    pub account_id: String,
    /// The principal customers allow (AWS role ARN).
    pub principal: String,
}

/// Hands out a [`KeyProvider`] acting as a platform identity. Implemented by the binary's
/// wiring over the vendor adapters.
pub trait KmsConnector: Send + Sync {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>>;
    /// The principal the platform's volume service uses, to which grants are made.
    fn volume_grantee(&self, identity: &PlatformIdentity) -> String;
}
