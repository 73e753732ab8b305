//! The route table. Every API route is registered through `utoipa_axum::routes!`, which
//! takes the path from the handler's OpenAPI annotation, so a route cannot exist without
//! being documented (a test keeps it that way).
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ServerState;
use crate::error::DevOpsError;
use crate::portal;
use crate::routes::{
    accounts, data, databases, health, keys, on_inaccessible, orgs, regions, tokens, webhooks,
};

/// Bodies above this are refused before they are read in full.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyplane",
        description = "Bring-your-own-key for managed databases: the DevOps-style API.",
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorItem)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The documented routes and the OpenAPI document built from them.
pub fn api(state: ServerState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::<ServerState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(orgs::current_org))
        .routes(routes!(orgs::get_org))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(accounts::classic_accounts))
        .routes(routes!(accounts::serverless_accounts))
        .routes(routes!(accounts::assign_classic_account))
        .routes(routes!(orgs::audit_log))
        .routes(routes!(keys::register_classic, keys::list_classic))
        .routes(routes!(keys::register_serverless, keys::list_serverless))
        .routes(routes!(keys::register_serverless_alias))
        .routes(routes!(
            keys::get_classic,
            keys::deregister_classic,
            keys::replace_classic
        ))
        .routes(routes!(
            keys::get_serverless,
            keys::deregister_serverless,
            keys::replace_serverless
        ))
        .routes(routes!(keys::status_classic))
        .routes(routes!(keys::status_serverless))
        .routes(routes!(keys::policy_classic))
        .routes(routes!(keys::policy_serverless))
        .routes(routes!(keys::check_policy_classic))
        .routes(routes!(keys::check_policy_serverless))
        .routes(routes!(keys::check_classic))
        .routes(routes!(keys::check_serverless))
        .routes(routes!(keys::revoke_classic))
        .routes(routes!(keys::revoke_serverless))
        .routes(routes!(keys::unrevoke_classic))
        .routes(routes!(keys::unrevoke_serverless))
        .routes(routes!(
            on_inaccessible::get_choices,
            on_inaccessible::set_org_choice,
            on_inaccessible::clear_org_choice
        ))
        .routes(routes!(
            on_inaccessible::set_classic_key_choice,
            on_inaccessible::clear_classic_key_choice
        ))
        .routes(routes!(
            on_inaccessible::set_serverless_key_choice,
            on_inaccessible::clear_serverless_key_choice
        ))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(
            databases::create_database,
            databases::list_databases
        ))
        .routes(routes!(databases::get_database))
        .routes(routes!(databases::terminate_database))
        .routes(routes!(
            databases::list_datacenters,
            databases::add_datacenter
        ))
        .routes(routes!(databases::terminate_datacenter))
        .routes(routes!(databases::rewrap_datacenter))
        .routes(routes!(databases::rotate_data_key))
        .routes(routes!(databases::add_keyspace, databases::remove_keyspace))
        .routes(routes!(regions::serverless_regions))
        .routes(routes!(regions::available_regions))
        .routes(routes!(data::database_command))
        .routes(routes!(data::keyspace_command))
        .routes(routes!(data::collection_command))
        .routes(routes!(portal::index))
        .routes(routes!(portal::signin_page, portal::signin))
        .routes(routes!(portal::signout))
        .routes(routes!(portal::dev_signin))
        .routes(routes!(portal::favicon))
        .routes(routes!(
            portal::settings::settings_page,
            portal::settings::switch_organization
        ))
        .routes(routes!(portal::keys::keys_page, portal::keys::add_key))
        .routes(routes!(portal::keys::new_key_page))
        .routes(routes!(portal::keys::policy_check))
        .routes(routes!(portal::keys::revoke_page, portal::keys::revoke_key))
        .routes(routes!(portal::keys::unrevoke_key))
        .routes(routes!(portal::keys::set_on_inaccessible))
        .routes(routes!(portal::keys::deregister_key))
        .routes(routes!(portal::keys::replace_key))
        .routes(routes!(
            portal::databases::databases_page,
            portal::databases::create_database
        ))
        .routes(routes!(portal::databases::databases_status))
        .routes(routes!(portal::databases::new_database_page))
        .routes(routes!(portal::databases::add_region))
        .routes(routes!(portal::databases::rewrap))
        .routes(routes!(portal::databases::rotate_data_key))
        .routes(routes!(
            portal::databases::terminate_page,
            portal::databases::terminate
        ))
        .routes(routes!(
            portal::webhooks::webhooks_page,
            portal::webhooks::add_webhook
        ))
        .routes(routes!(portal::webhooks::delete_webhook))
        .routes(routes!(portal::audit::audit_page))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    (router.with_state(state), doc)
}

pub fn router(state: ServerState) -> Router {
    let (api, doc) = api(state.clone());
    let doc = std::sync::Arc::new(doc);
    api.layer(axum::Extension(doc))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state, observe))
}

async fn route_not_found(method: Method, uri: Uri) -> DevOpsError {
    DevOpsError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> DevOpsError {
    DevOpsError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// A panic is a bug: log it, answer the generic 500 body.
fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    DevOpsError::Panic(detail).into_response()
}

/// Counts and times every request by route template and status.
async fn observe(State(state): State<ServerState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    state
        .metrics
        .observe(method.as_str(), &route, status, elapsed);
    tracing::debug!(%method, %route, status, micros = elapsed.as_micros() as u64, "request");
    res
}
