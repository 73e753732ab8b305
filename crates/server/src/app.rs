//! The server's shared state and its entry point, `run(listener, state, shutdown)`.
use std::future::Future;
use std::sync::Arc;

use keyplane_kms::KmsConnector;
use keyplane_store::DynStore;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::dataplane::DataPlane;
use crate::metrics::Metrics;

/// Everything a handler needs; cheap to clone (all behind `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Acts as the platform's identities on customer keys.
    pub kms: Arc<dyn KmsConnector>,
    /// Datacenter files and their in-memory data keys.
    pub data: Arc<DataPlane>,
}

impl AppState {
    pub fn new(store: DynStore, config: Config, kms: Arc<dyn KmsConnector>) -> AppState {
        let config = Arc::new(config);
        let data = Arc::new(DataPlane::new(store.clone(), kms.clone(), config.clone()));
        AppState {
            store,
            config,
            metrics: Arc::new(Metrics::default()),
            kms,
            data,
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

/// Starts the background work (provisioning worker, key health monitor); both stop when
/// `stop` turns true.
pub fn spawn_background(
    state: &AppState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    vec![
        tokio::spawn(crate::lifecycle::run_worker(
            state.clone(),
            until(stop.clone()),
        )),
        tokio::spawn(crate::monitor::run_monitor(state.clone(), until(stop))),
    ]
}
