//! keyplane's application core: the rules and use cases, with no HTTP in it. Transports
//! (the REST API, the Data API and the portal in `keyplane-server`, the CLI's admin
//! commands) authenticate a token into a [`Requester`], call one service method and map the
//! one [`AppError`] to their own error model.
//!
//! - services, reached from [`App`]: [`App::orgs`], [`App::tokens`], [`App::accounts`],
//!   [`App::keys`] (registration with its live check, the policy helper and checker),
//!   [`App::databases`], [`App::keyspaces`], [`App::regions`] (the region listings),
//!   [`App::audit`], [`App::sessions`] (the portal's, in the store), [`App::webhooks`],
//!   [`App::data_keys`] (data-key rotation, on request and on schedule); they
//!   check permissions and record the audit log;
//! - [`jobs`]: the provisioning worker, with leased jobs shared by every replica on one
//!   store; [`monitor`]: key health; [`rotation_watch`]: the keys' own rotation, alerted when late; [`dataplane`]: data keys in
//!   memory, datacenter files, and the Data API's reads and writes across regions;
//!   [`webhooks`]: the dispatcher that turns audited key events into signed deliveries;
//! - [`config`] and [`regions`]: what the operator configures (the process's role in a fleet
//!   among it) and which regions an organization may use; [`usage`]: when each database was
//!   last used.
#![forbid(unsafe_code)]

pub mod accounts;
mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod data_keys;
pub mod databases;
pub mod dataplane;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod keyspaces;
pub mod logins;
pub mod metrics;
pub mod monitor;
pub mod orgs;
pub mod regions;
pub mod rotation_watch;
pub mod sessions;
pub mod tokens;
pub mod usage;
pub mod webhooks;

pub use app::App;
pub use auth::Requester;
pub use config::{Config, DevSignin, PlatformKey, ProcessRole, ProviderAccount};
pub use error::{
    AppError, AppResult, ConflictReason, ProviderIdShortage, RegionProblem, Resource,
    RewrapRefusal, RotationRefusal,
};
