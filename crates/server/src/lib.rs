//! keyplane's DevOps-style REST API: the axum router, authentication by application token,
//! the one error type and its JSON body, metrics, and the OpenAPI document.
//!
//! It depends on the [`keyplane_store::Store`] trait only; the binary picks the backend.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod dataplane;
pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod metrics;
pub mod monitor;
pub mod portal;
pub mod regions;
pub mod registration;
pub mod router;
pub mod routes;

pub use app::{AppState, run, spawn_background};
pub use config::{Config, DevSignin, ProviderAccount};
pub use error::ApiError;
