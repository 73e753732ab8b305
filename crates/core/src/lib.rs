//! keyplane's domain rules, shared by every other crate: which providers, database types and
//! regions exist, what a role may do, what an application token looks like, how an AWS key
//! policy is evaluated, how many resources an organization may hold, how platform identities
//! are shared per cloud, what an Azure Key Vault key ID looks like and what to grant on it, what
//! an OpenBao/Vault Transit key ID and policy look like, what a Google Cloud KMS key name and
//! IAM policy must be, a region key's life state (`key_state.rs`), a portal session's secret
//! ID, and which events webhooks carry and how they are signed. Nothing here performs I/O or knows a
//! vendor SDK.
#![forbid(unsafe_code)]

pub mod audit;
pub mod azure;
pub mod databases;
pub mod gcp;
pub mod identity;
pub mod key_state;
pub mod keys;
pub mod openbao;
pub mod permissions;
pub mod platform_jwt;
pub mod policy;
pub mod portal_session;
pub mod provider;
pub mod quotas;
pub mod regions;
pub mod sealing;
pub mod token;
pub mod webhook;

pub use azure::{AzureKeyId, AzureKeyIdError, AzureVaultKind};
pub use databases::DatabaseStatus;
pub use gcp::GcpKeyName;
pub use identity::IdentityModel;
pub use keys::{AwsKeyArn, KeyStatus};
pub use openbao::{OpenbaoKeyRef, OpenbaoRole};
pub use permissions::{Permission, Role};
pub use portal_session::PortalSessionId;
pub use provider::{DbType, Provider};
pub use quotas::{QuotaExceeded, QuotaKind, Quotas};
pub use sealing::{SealingError, SealingKey};
pub use token::{Token, TokenError};
