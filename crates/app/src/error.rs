//! The application's one error: what went wrong, in domain terms. Transports map it to
//! their own error tables (the DevOps API's IDs and statuses, the Data API's codes); the
//! `Display` text is the sentence a client may see, except for the variants that are
//! keyplane's own failures (`Store`, `Kms`, `Internal`, a `Document` error without a client
//! code), whose detail only the server log gets.
use std::fmt;

use keyplane_core::databases::RegionChangeRefusal;
use keyplane_core::{DatabaseStatus, DbType, Permission, Provider, QuotaExceeded};
use keyplane_docstore::DocStoreError;
use keyplane_kms::KmsError;
use keyplane_store::StoreError;
use uuid::Uuid;

pub type AppResult<T> = Result<T, AppError>;

/// What a client is told about a failure that is keyplane's own; the detail is logged.
pub const INTERNAL_MESSAGE: &str =
    "an internal error occurred; it has been logged, retry later or contact the platform operator";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The application token is not in the `AstraCS:…` format.
    #[error("malformed token: {0}")]
    MalformedToken(String),
    #[error("the token is unknown or has been revoked; create a new application token")]
    InvalidToken,
    #[error("the token's role lacks the permission '{0}'; use a token whose role grants it")]
    Forbidden(Permission),
    /// The request names another organization than the token's.
    #[error(
        "orgId {given} is not the organization of your token ({token_org}); register keys for your own organization"
    )]
    WrongOrganization { given: Uuid, token_org: Uuid },
    /// A value of the request's body is not acceptable; the message names the field.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A selector of the request (a path or query parameter: provider, limit, …) is not
    /// acceptable; the message names it.
    #[error("{message}")]
    InvalidParameter { name: &'static str, message: String },
    /// Not there, or another organization's (never told apart, so existence is not revealed).
    #[error("{0}")]
    NotFound(Resource),
    #[error("{0}")]
    RegionUnavailable(RegionProblem),
    #[error("{0}")]
    Conflict(ConflictReason),
    /// A customer key cannot be registered: a check (shape, region, or the live one against
    /// the KMS) refused it. The message says what the customer must change.
    #[error("{0}")]
    KeyCheckFailed(String),
    /// A customer-keyed database cannot be deployed where the organization has no key.
    #[error(
        "this database is encrypted with customer keys, and no {db_type} customer key is registered for \
         {provider} {region}: register one with POST {route} (region {region}), then add the region",
        route = register_route(*db_type)
    )]
    NoCustomerKey {
        db_type: DbType,
        provider: Provider,
        region: String,
    },
    #[error(
        "the database runs on {}; a region of another provider cannot be added",
        database.as_str().to_ascii_uppercase()
    )]
    ProviderMismatch { database: Provider },
    /// A provider keyplane has no adapter for yet.
    #[error("{0}")]
    NotSupported(String),
    /// The organization holds as many databases, datacenters or tokens as its quota allows.
    #[error("{0}")]
    QuotaExceeded(QuotaExceeded),
    /// Every platform identity of a provider whose identities are per organization is
    /// assigned to another organization: only the operator can add more.
    #[error(
        "no {provider} platform identity is free{}: each organization gets identities of its own, and every \
         configured one is assigned to another organization. Retry later or contact the platform operator \
         (operator: add accounts to [[provider_accounts.{provider}]] in the configuration file)",
        region.as_deref().map(|r| format!(" for region {r}")).unwrap_or_default()
    )]
    IdentityPoolExhausted {
        provider: Provider,
        region: Option<String>,
    },
    /// The KMS did not answer, or refused the platform's credentials; nothing was changed.
    #[error("{0}")]
    KmsUnavailable(String),
    #[error(
        "the platform has no encryption key for {provider} {region}; contact the platform operator"
    )]
    NoPlatformKey { provider: Provider, region: String },
    #[error("the store is not reachable; retry later")]
    StoreUnreachable(#[source] StoreError),
    /// The datacenter's key cannot be used; the message names the key and the reason.
    #[error("{0}")]
    Suspended(String),
    /// The datacenter is not ACTIVE (yet, or any more).
    #[error("{0}")]
    DatacenterUnavailable(String),
    /// The document store refused a command (the caller's mistake) or failed (keyplane's).
    #[error("{0}")]
    Document(#[from] DocStoreError),
    /// A KMS failure not (yet) sorted into one of the outcomes above.
    #[error("KMS: {0}")]
    Kms(#[from] KmsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A bug or an environment failure (a task that panicked, a file that cannot be written).
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> AppError {
        AppError::Internal(Box::new(e))
    }

    /// An internal error from a sentence (for states that "cannot happen").
    pub fn bug(message: impl Into<String>) -> AppError {
        AppError::internal(std::io::Error::other(message.into()))
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_parameter(name: &'static str, message: impl Into<String>) -> AppError {
        AppError::InvalidParameter {
            name,
            message: message.into(),
        }
    }

    /// Whether retrying later may succeed: the background jobs retry these with a back-off.
    pub fn is_transient(&self) -> bool {
        match self {
            AppError::Kms(e) => e.kind.is_transient(),
            AppError::Store(_) | AppError::StoreUnreachable(_) => true,
            _ => false,
        }
    }
}

/// The route that registers a key of `db_type`, for messages that tell the customer to.
pub(crate) fn register_route(db_type: DbType) -> &'static str {
    match db_type {
        DbType::Classic => "/v2/kms/classic",
        DbType::Serverless => "/v2/kms",
    }
}

/// What was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Organization(Uuid),
    /// An active token of the caller's organization, by client ID.
    Token(String),
    CustomerKey {
        db_type: DbType,
        provider: Provider,
        region: String,
    },
    Database(Uuid),
    Datacenter {
        database: Uuid,
        datacenter: String,
    },
    /// A Data API endpoint, `{databaseId}-{region}`.
    Endpoint(String),
    /// A keyspace of a database.
    Keyspace {
        database: Uuid,
        name: String,
    },
    /// A webhook endpoint of the caller's organization.
    Webhook(Uuid),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Organization(id) => write!(f, "organization {id} not found"),
            Resource::Token(client_id) => write!(
                f,
                "no active token with client ID {client_id} in your organization"
            ),
            Resource::CustomerKey {
                db_type,
                provider,
                region,
            } => write!(
                f,
                "no {db_type} customer key is registered for {provider} {region}; register one with POST {}",
                register_route(*db_type)
            ),
            Resource::Database(id) => write!(f, "database {id} not found"),
            Resource::Datacenter {
                database,
                datacenter,
            } => write!(
                f,
                "datacenter {datacenter} not found in database {database}"
            ),
            Resource::Endpoint(endpoint) => write!(f, "no database endpoint {endpoint}"),
            Resource::Keyspace { database, name } => {
                write!(f, "keyspace {name} not found in database {database}")
            }
            Resource::Webhook(id) => write!(f, "webhook {id} not found in your organization"),
        }
    }
}

/// Why a region cannot be used by the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionProblem {
    /// Not in the operator's catalog (`given` is None when the name is not even plausible,
    /// so it is not echoed).
    Unknown {
        provider: Provider,
        given: Option<String>,
        catalog: Vec<String>,
    },
    /// In the catalog, but not unlocked for the organization.
    Locked {
        provider: Provider,
        region: String,
        unlocked: Vec<String>,
    },
    /// No platform account is configured to serve it.
    NoPlatformAccount { provider: Provider, region: String },
}

impl fmt::Display for RegionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionProblem::Unknown {
                provider,
                given,
                catalog,
            } => write!(
                f,
                "unknown {provider} region {:?}; available regions: {}",
                given.as_deref().unwrap_or("(invalid name)"),
                catalog.join(", ")
            ),
            RegionProblem::Locked {
                provider,
                region,
                unlocked,
            } => write!(
                f,
                "{provider} region {region} is not unlocked for your organization; contact support to unlock it. \
                 Unlocked regions: {}",
                if unlocked.is_empty() {
                    "none".to_string()
                } else {
                    unlocked.join(", ")
                }
            ),
            RegionProblem::NoPlatformAccount { provider, region } => write!(
                f,
                "the platform has no {provider} account configured for region {region}; contact support"
            ),
        }
    }
}

/// Why a change conflicts with the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictReason {
    /// Racing first requests kept choosing different accounts; a retry settles it.
    AccountAssignmentUnsettled,
    /// Every platform account of the provider is already assigned to the organization.
    NoAccountLeft(Provider),
    /// The organization asked for one more identity of a provider whose identities are its
    /// own, and every other one is held by another organization: a state the request cannot
    /// change (409, like `NoAccountLeft`), not an outage; a first identity missing is 503.
    NoFreeIdentity(Provider),
    /// A key is deregistered only while no live datacenter is encrypted under it.
    KeyInUse {
        db_type: DbType,
        provider: Provider,
        region: String,
        key_id: String,
        datacenters: Vec<String>,
    },
    /// One key per (organization, type, provider, region).
    KeyAlreadyRegistered {
        db_type: DbType,
        provider: Provider,
        region: String,
        key_id: String,
    },
    /// A revoked key is restored by unrevoking it, never replaced (the replacement would
    /// silently end the revocation).
    ReplaceRevoked {
        db_type: DbType,
        provider: Provider,
        region: String,
        key_id: String,
    },
    /// The slot's key changed while the request checked against it (a concurrent replace,
    /// deregistration or registration); nothing was changed.
    KeyChangedMeanwhile {
        db_type: DbType,
        provider: Provider,
        region: String,
    },
    /// A datacenter's data key cannot be moved to its region's key now.
    Rewrap(RewrapRefusal),
    /// A datacenter's data key cannot be rotated now.
    Rotation(RotationRefusal),
    /// A region rule (core's `check_add_region` / `check_remove_region`) refused it.
    Region(RegionChangeRefusal),
    /// Keyspaces are created and dropped only while the database is ACTIVE.
    KeyspaceChange(DatabaseStatus),
    /// A serverless database needs a provider ID of the organization that no other live
    /// serverless database holds in the region and that the key lets in; there is none.
    NoFreeProviderId(ProviderIdShortage),
    /// The organization has as many webhook endpoints as the platform allows.
    TooManyWebhooks { limit: u32 },
}

/// Why a datacenter's data key is not moved to its region's current key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewrapRefusal {
    /// The datacenter is under the platform's key, which a customer key never replaces.
    PlatformKeyed,
    /// Only a datacenter that has a data key and is ACTIVE or SUSPENDED is rewrapped.
    NotReady(DatabaseStatus),
    /// The region's key is revoked: unrevoke it first.
    DestinationRevoked { key_id: String },
    /// The datacenter's data key is being rotated (its next key is wrapped under the old
    /// customer key): moved once the rotation is done.
    Rotating,
}

/// Why a datacenter's data key is not rotated now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationRefusal {
    /// Only an ACTIVE datacenter with a data key is rotated.
    NotReady(DatabaseStatus),
    /// A rotation of it is already running (on request or on schedule).
    InProgress,
    /// Its data key changed while this rotation started (a rewrap or another rotation).
    KeyChanged,
}

impl fmt::Display for RotationRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RotationRefusal::NotReady(status) => write!(
                f,
                "the datacenter is {status}; a data key is rotated while the datacenter is ACTIVE, retry then"
            ),
            RotationRefusal::InProgress => f.write_str(
                "the datacenter's data key is being rotated already; its status shows the progress",
            ),
            RotationRefusal::KeyChanged => f.write_str(
                "the datacenter's data key changed meanwhile (a rewrap or another rotation); nothing was changed, retry",
            ),
        }
    }
}

impl fmt::Display for RewrapRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewrapRefusal::PlatformKeyed => f.write_str(
                "this datacenter is encrypted under the platform's key; a customer key applies to datacenters \
                 deployed after it is registered",
            ),
            RewrapRefusal::NotReady(status) => write!(
                f,
                "the datacenter is {status}; a data key is moved once the datacenter is ACTIVE or SUSPENDED, retry then"
            ),
            RewrapRefusal::DestinationRevoked { key_id } => write!(
                f,
                "the region's key {key_id} is revoked; unrevoke it before moving data under it"
            ),
            RewrapRefusal::Rotating => f.write_str(
                "the datacenter's data key is being rotated; retry the rewrap when the rotation is done",
            ),
        }
    }
}

/// Why a serverless deployment found no provider ID, and what the customer does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdShortage {
    pub provider: Provider,
    pub region: String,
    pub key_id: String,
    /// The organization's provider IDs in the region held by serverless databases:
    /// (principal, database name).
    pub held: Vec<(String, String)>,
    /// Free provider IDs the key does not let in: (principal, what to add to the key's policy).
    pub not_admitted: Vec<(String, String)>,
}

impl fmt::Display for ProviderIdShortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (provider, region, key) = (self.provider, &self.region, &self.key_id);
        let held = self
            .held
            .iter()
            .map(|(p, db)| format!("{p} by database {db}"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.not_admitted.is_empty() {
            write!(
                f,
                "each serverless database needs a provider ID of its own that the key lets in, and every provider ID of \
                 your organization for {provider} {region} is taken ({held}). Assign one more with POST \
                 /v2/kms/classic/provider/{provider}/accounts, add it to the policy of key {key} (GET \
                 /v2/kms/serverless/provider/{provider}/region/{region}/policy shows what to grant every provider ID), \
                 then deploy again"
            )
        } else {
            let fixes = self
                .not_admitted
                .iter()
                .map(|(_, how)| how.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            write!(
                f,
                "each serverless database needs a provider ID of its own that the key lets in, and key {key} lets in \
                 none of the free ones of your organization for {provider} {region} ({}): {fixes}; then deploy again",
                self.not_admitted
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            if !held.is_empty() {
                write!(f, ". Taken: {held}")?;
            }
            Ok(())
        }
    }
}

impl fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictReason::AccountAssignmentUnsettled => {
                f.write_str("could not settle the provider account assignment; retry the request")
            }
            ConflictReason::NoAccountLeft(provider) => write!(
                f,
                "every platform {provider} account is already assigned to your organization; none is left to assign"
            ),
            ConflictReason::NoFreeIdentity(provider) => write!(
                f,
                "no other platform {provider} identity is free: your organization keeps the ones it holds, and every other configured one is assigned to another organization (operator: add accounts to [[provider_accounts.{provider}]] in the configuration file)"
            ),
            ConflictReason::KeyAlreadyRegistered {
                db_type,
                provider,
                region,
                key_id,
            } => write!(
                f,
                "a {db_type} key is already registered for {provider} {region}: {key_id}. To use another key, \
                 replace it (PUT …/provider/{provider}/region/{region} with the new key): databases keep \
                 the key they are encrypted under until each is rewrapped"
            ),
            ConflictReason::KeyInUse {
                db_type,
                provider,
                region,
                key_id,
                datacenters,
            } => write!(
                f,
                "the {db_type} key {key_id} for {provider} {region} cannot be deregistered: {} live datacenter(s) \
                 are encrypted under it ({}); terminate them first (their data would be lost without the key)",
                datacenters.len(),
                datacenters.join(", ")
            ),
            ConflictReason::ReplaceRevoked {
                db_type,
                provider,
                region,
                key_id,
            } => write!(
                f,
                "the {db_type} key {key_id} for {provider} {region} is revoked; unrevoke it (POST \
                 …/provider/{provider}/region/{region}/unrevoke) before replacing it, so that no revocation ends \
                 unnoticed"
            ),
            ConflictReason::KeyChangedMeanwhile {
                db_type,
                provider,
                region,
            } => write!(
                f,
                "the {db_type} key for {provider} {region} changed while this request was checked; nothing was \
                 changed, read the key's status and retry"
            ),
            ConflictReason::Rewrap(refusal) => refusal.fmt(f),
            ConflictReason::Rotation(refusal) => refusal.fmt(f),
            ConflictReason::Region(refusal) => refusal.fmt(f),
            ConflictReason::KeyspaceChange(status) => write!(
                f,
                "the database is {status}; keyspaces can be created or dropped only when it is ACTIVE, retry then"
            ),
            ConflictReason::NoFreeProviderId(shortage) => shortage.fmt(f),
            ConflictReason::TooManyWebhooks { limit } => write!(
                f,
                "your organization has {limit} webhooks, as many as this platform allows; delete one you no longer use"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_do() {
        let e = AppError::NotFound(Resource::CustomerKey {
            db_type: DbType::Serverless,
            provider: Provider::Aws,
            region: "eu-west-1".into(),
        });
        assert!(e.to_string().contains("register one with POST /v2/kms"));
        let e = AppError::RegionUnavailable(RegionProblem::Unknown {
            provider: Provider::Aws,
            given: None,
            catalog: vec!["us-east-2".into()],
        });
        assert!(e.to_string().contains("(invalid name)"), "{e}");
        let e = AppError::ProviderMismatch {
            database: Provider::Gcp,
        };
        assert!(e.to_string().starts_with("the database runs on GCP"));
        assert!(
            AppError::Conflict(ConflictReason::Region(RegionChangeRefusal::LastRegion))
                .to_string()
                .contains("last region")
        );
    }

    #[test]
    fn only_store_and_transient_kms_failures_are_retried() {
        use keyplane_kms::ErrorKind;
        assert!(AppError::Kms(KmsError::new(ErrorKind::Retryable, "Decrypt", "")).is_transient());
        assert!(!AppError::Kms(KmsError::new(ErrorKind::Disabled, "Decrypt", "")).is_transient());
        assert!(AppError::Store(StoreError::Task("x".into())).is_transient());
        assert!(!AppError::bug("x").is_transient());
    }
}
