//! The server's shared state and its entry point, `run(listener, state, shutdown)`.
use std::future::Future;
use std::sync::Arc;

use keyplane_kms::KmsConnector;
use keyplane_store::DynStore;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;

/// Everything a handler needs; cheap to clone (all behind `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Acts as the platform's identities on customer keys.
    pub kms: Arc<dyn KmsConnector>,
}

impl AppState {
    pub fn new(store: DynStore, config: Config, kms: Arc<dyn KmsConnector>) -> AppState {
        AppState {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            kms,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::router::router(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
