//! keyplane's domain rules, shared by every other crate: which providers, database types and
//! regions exist, what a role may do, what an application token looks like, how an AWS key
//! policy is evaluated, what an OpenBao/Vault Transit key ID and policy look like, and what a
//! Google Cloud KMS key name and IAM policy must be. Nothing here performs I/O or knows a
//! vendor SDK.
#![forbid(unsafe_code)]

pub mod audit;
pub mod databases;
pub mod gcp;
pub mod keys;
pub mod openbao;
pub mod permissions;
pub mod policy;
pub mod provider;
pub mod regions;
pub mod token;

pub use databases::DatabaseStatus;
pub use gcp::GcpKeyName;
pub use keys::{AwsKeyArn, KeyStatus};
pub use openbao::{OpenbaoKeyRef, OpenbaoRole};
pub use permissions::{Permission, Role};
pub use provider::{DbType, Provider};
pub use token::{Token, TokenError};
