//! Liveness, readiness, metrics and the API's own description.
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;

use crate::ServerState;
use crate::error::ApiResult;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// A ready process, and what it is in the fleet.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    status: &'static str,
    /// `api` (DevOps API, portal, jobs) or `all` (those and the Data API with its files).
    role: &'static str,
    /// This process's name in job leases.
    replica_id: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve its role: its store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Readiness),
    (status = 503, body = crate::error::ErrorBody),
))]
pub async fn readyz(State(s): State<ServerState>) -> ApiResult<Json<Readiness>> {
    s.app.ready().await?;
    Ok(Json(Readiness {
        status: "ready",
        role: s.app.config.role.as_str(),
        replica_id: s.app.config.replica_id.clone(),
    }))
}

/// Request counts and latencies, and the application's counters, in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    let mut app = s.app.counters.all();
    app.extend(s.app.data.gauges());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&app),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> impl IntoResponse {
    Json(doc.as_ref().clone())
}
