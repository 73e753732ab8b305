//! The server's state and its entry point, `run(listener, app, shutdown)`: the application
//! and what only HTTP has (request metrics).
use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRef;
use keyplane_app::App;
use tokio::net::TcpListener;

use crate::metrics::HttpMetrics;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    pub app: App,
    pub metrics: Arc<HttpMetrics>,
}

impl FromRef<ServerState> for App {
    fn from_ref(s: &ServerState) -> App {
        s.app.clone()
    }
}

impl ServerState {
    pub fn new(app: App) -> ServerState {
        ServerState {
            app,
            metrics: Arc::new(HttpMetrics::default()),
        }
    }
}

/// Serves the API, the Data API and the portal on `listener` until `shutdown` completes,
/// then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::router::router(ServerState::new(app));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
