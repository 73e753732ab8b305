//! The organization's webhooks for key events (`/v2/webhooks`): create (the signing secret is
//! shown once), list, delete, and each endpoint's delivery log.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyplane_app::App;
use keyplane_store::{DeliveryLog, Webhook};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ts;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: an https URL on the public internet.
    pub url: String,
    /// The events to send, e.g. `["datacenter.suspend","cmk.revoke"]`; omitted: every event.
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// The events it is sent; empty: every event.
    pub events: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The secret deliveries are signed with (`Keyplane-Signature: t=…,v1=HMAC-SHA256(secret,
    /// "t.body")`). Shown only here, once.
    pub secret: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i32,
    pub at: String,
    /// The HTTP status answered; absent when there was no answer.
    pub status: Option<i32>,
    pub error: String,
    pub millis: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The event's ID (its audit sequence number).
    pub event_id: String,
    pub event: String,
    /// `pending` (retrying), `delivered` or `failed` (given up).
    pub state: &'static str,
    pub attempts: Vec<AttemptView>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    /// The body sent.
    pub payload: String,
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    pub limit: Option<u32>,
}

pub(crate) fn webhook_view(w: &Webhook) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url.clone(),
        events: w.events.iter().map(|e| e.to_string()).collect(),
        created_at: ts(w.created_at),
    }
}

pub(crate) fn delivery_view(l: DeliveryLog) -> DeliveryView {
    let d = l.delivery;
    DeliveryView {
        event_id: d.audit_seq.to_string(),
        event: d.event.to_string(),
        state: d.state.as_str(),
        attempts: l
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                at: ts(a.at),
                status: a.status,
                error: a.error,
                millis: a.millis,
            })
            .collect(),
        next_attempt_at: (d.state == keyplane_store::DeliveryState::Pending)
            .then(|| ts(d.next_attempt_at)),
        created_at: ts(d.created_at),
        payload: d.payload,
    }
}

/// Adds an endpoint that is sent the organization's key events, signed with the secret this
/// answer holds (and only this one).
#[utoipa::path(post, path = "/v2/webhooks", tag = "webhooks", security(("token" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, body = CreatedWebhook),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "the organization has as many webhooks as allowed", body = crate::error::ErrorBody),
    ))]
pub async fn create_webhook(
    State(app): State<App>,
    Auth(who): Auth,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let created = app
        .webhooks()
        .create(&who, &body.url, body.events.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: webhook_view(&created.webhook),
            secret: created.secret.to_string(),
        }),
    ))
}

/// The organization's webhooks, oldest first, without their secrets.
#[utoipa::path(get, path = "/v2/webhooks", tag = "webhooks", security(("token" = [])),
    responses(
        (status = 200, body = Vec<WebhookView>),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn list_webhooks(
    State(app): State<App>,
    Auth(who): Auth,
) -> ApiResult<Json<Vec<WebhookView>>> {
    Ok(Json(
        app.webhooks()
            .list(&who)
            .await?
            .iter()
            .map(webhook_view)
            .collect(),
    ))
}

/// Removes a webhook: nothing more is sent to it, and its delivery log goes with it.
#[utoipa::path(delete, path = "/v2/webhooks/{webhookId}", tag = "webhooks", security(("token" = [])),
    params(("webhookId" = Uuid, Path)),
    responses(
        (status = 204),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn delete_webhook(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    app.webhooks().delete(&who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's latest deliveries, newest first, each with every attempt and its answer.
#[utoipa::path(get, path = "/v2/webhooks/{webhookId}/deliveries", tag = "webhooks", security(("token" = [])),
    params(
        ("webhookId" = Uuid, Path),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
    ),
    responses(
        (status = 200, body = Vec<DeliveryView>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    ))]
pub async fn list_deliveries(
    State(app): State<App>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    Ok(Json(
        app.webhooks()
            .deliveries(&who, id, q.limit)
            .await?
            .into_iter()
            .map(delivery_view)
            .collect(),
    ))
}
