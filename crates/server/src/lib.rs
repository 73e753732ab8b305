//! keyplane's transports over the application (`keyplane-app`): the DevOps-style REST API
//! (axum; `routes/`, one file per resource: parse, call one service, map the error), the
//! Data API (`data_api/`: command parsing and its error model), the web portal (`portal/`),
//! authentication of the `Authorization` header, request metrics, the OpenAPI document, and
//! the one outbound HTTP client: webhook deliveries (`webhook_sender.rs`).
//! No rule lives here: a handler that needs one calls the service that owns it.
#![forbid(unsafe_code)]

pub mod data_api;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod portal;
pub mod router;
pub mod routes;
mod state;
pub mod webhook_sender;

pub use error::DevOpsError;
pub use state::{ServerState, run};
