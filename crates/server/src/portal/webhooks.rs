//! Webhooks: the organization's endpoints for key events, adding one (its signing secret is
//! shown once, on the page that follows), removing one, and each endpoint's delivery log
//! with every attempt and the answer it got.
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyplane_app::webhooks::event_names;
use keyplane_app::{App, AppError};
use keyplane_store::{DeliveryLog, DeliveryState, Webhook};

use super::html::{Nav, esc, page, respond};
use super::{TAG, Visitor, form_post, message_page, redirect, refused, signed_in};
use crate::error::app_error_message;

/// Deliveries shown per endpoint.
const LOG: u32 = 20;

const TITLE: &str = "Webhooks";

fn state_class(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Delivered => "AVAILABLE",
        DeliveryState::Pending => "PENDING",
        DeliveryState::Failed => "INACCESSIBLE",
    }
}

fn log_table(log: &[DeliveryLog]) -> String {
    if log.is_empty() {
        return r#"<p class="muted">No deliveries yet.</p>"#.to_string();
    }
    let rows: String = log
        .iter()
        .map(|l| {
            let d = &l.delivery;
            let attempts: String = l
                .attempts
                .iter()
                .map(|a| {
                    let answer = match a.status {
                        Some(s) => format!("HTTP {s}"),
                        None => "no answer".to_string(),
                    };
                    let error = if a.error.is_empty() {
                        String::new()
                    } else {
                        format!(r#" <span class="muted">{}</span>"#, esc(&a.error))
                    };
                    format!(
                        r#"<li class="attempt">#{n} {at}: {answer} ({ms} ms){error}</li>"#,
                        n = a.attempt,
                        at = esc(&a.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                        answer = esc(&answer),
                        ms = a.millis,
                    )
                })
                .collect();
            let next = if d.state == DeliveryState::Pending {
                format!(
                    r#"<div class="muted">next attempt {}</div>"#,
                    esc(&d.next_attempt_at.format("%H:%M:%S UTC").to_string())
                )
            } else {
                String::new()
            };
            format!(
                r#"<tr class="delivery" data-event="{event}" data-state="{state}"><td data-label="Event"><code>{event}</code> <span class="muted">#{id}</span></td><td data-label="State"><span class="status {cls}">{state}</span>{next}</td><td data-label="Attempts"><ol class="attempts">{attempts}</ol></td></tr>"#,
                event = esc(d.event.as_str()),
                id = d.audit_seq,
                state = d.state.as_str(),
                cls = state_class(d.state),
            )
        })
        .collect();
    format!(
        r#"<table class="keys deliveries"><thead><tr><th scope="col">Event</th><th scope="col">State</th><th scope="col">Attempts</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

async fn hook_card(state: &App, v: &Visitor, w: &Webhook) -> String {
    let log = match state.webhooks().deliveries_of(&v.who, w, Some(LOG)).await {
        Ok(log) => log_table(&log),
        Err(e) => format!(
            r#"<p class="alert" role="alert">{}</p>"#,
            esc(&app_error_message(&e))
        ),
    };
    let events = if w.events.is_empty() {
        "every event".to_string()
    } else {
        w.events
            .iter()
            .map(|e| format!("<code>{}</code>", esc(e.as_str())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"<section class="card webhook" data-id="{id}"><h2 class="key">{url}</h2><p>Sent {events}. Added {at}.</p>
<form method="post" action="/portal/webhooks/delete"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="id" value="{id}"><button type="submit" class="danger">Remove</button></form>
<h3>Latest deliveries</h3>{log}</section>"#,
        id = w.id,
        url = esc(&w.url),
        at = esc(&w.created_at.format("%Y-%m-%d %H:%M UTC").to_string()),
        csrf = esc(&v.csrf),
    )
}

/// The page: `notice` (already markup) above the endpoints and the add form.
async fn webhooks_list(state: &App, v: &Visitor, status: StatusCode, notice: &str) -> Response {
    let hdr = v.header(Nav::Webhooks);
    let hooks = match state.webhooks().list(&v.who).await {
        Ok(h) => h,
        Err(e) => return message_page(refused(&e), TITLE, &hdr, &app_error_message(&e)),
    };
    let mut cards = String::new();
    for w in &hooks {
        cards.push_str(&hook_card(state, v, w).await);
    }
    if hooks.is_empty() {
        cards = r#"<p class="card">No webhooks yet.</p>"#.to_string();
    }
    let boxes: String = event_names()
        .iter()
        .map(|e| {
            format!(
                r#"<label class="check"><input type="checkbox" name="event" value="{e}"> <code>{e}</code></label>"#,
                e = esc(e)
            )
        })
        .collect();
    let body = format!(
        r#"<h1>Webhooks</h1><p class="muted">keyplane POSTs each key event (a key registered, replaced, revoked or failing its check; a datacenter suspended, resumed, re-wrapped or shredded) to these endpoints as JSON, signed: <code>Keyplane-Signature: t=&lt;seconds&gt;,v1=&lt;hex HMAC-SHA256 of "t.body" with the secret&gt;</code>. An answer other than 2xx is retried with a growing wait.</p>{notice}{cards}
<section class="card"><h2>Add a webhook</h2><form method="post" action="/portal/webhooks" id="add-webhook"><input type="hidden" name="csrf" value="{csrf}">
<label for="url">Endpoint URL (https)</label><input id="url" name="url" type="url" required placeholder="https://hooks.example.com/keyplane">
<fieldset><legend>Events (none checked: every event)</legend>{boxes}</fieldset>
<button type="submit">Add webhook</button></form></section>"#,
        csrf = esc(&v.csrf),
    );
    respond(status, page(TITLE, &hdr, &body, None, ""), None)
}

/// The organization's webhooks with their delivery logs, and the form to add one.
#[utoipa::path(get, path = "/portal/webhooks", tag = TAG,
    responses((status = 200, description = "the webhooks page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn webhooks_page(State(state): State<App>, headers: HeaderMap) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    webhooks_list(&state, &v, StatusCode::OK, "").await
}

/// Adds a webhook (form: csrf, url, event…) and shows its secret, once.
#[utoipa::path(post, path = "/portal/webhooks", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, url, event (repeated; none: every event)"),
    responses(
        (status = 201, description = "added: the page with the secret, shown once", content_type = "text/html"),
        (status = 303, description = "not signed in"),
        (status = 400, description = "a bad URL or event: the page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn add_webhook(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, TITLE, Nav::Webhooks).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let url = form.get("url").map(String::as_str).unwrap_or_default();
    // Checkboxes repeat a field, which the form map keeps once: read them from the body.
    let events: Vec<String> = super::session::parse_form_all(&body)
        .into_iter()
        .filter(|(k, _)| k == "event")
        .map(|(_, e)| e)
        .collect();
    let events = (!events.is_empty()).then_some(events);
    match state
        .webhooks()
        .create(&v.who, url, events.as_deref())
        .await
    {
        Ok(created) => {
            let notice = format!(
                r#"<div class="card" role="status" id="webhook-secret"><h2>Webhook added</h2><p>Its signing secret, shown only now: store it where your endpoint verifies signatures.</p><p><code class="secret">{}</code></p></div>"#,
                esc(&created.secret)
            );
            webhooks_list(&state, &v, StatusCode::CREATED, &notice).await
        }
        Err(e) => refusal(&state, &v, &e).await,
    }
}

async fn refusal(state: &App, v: &Visitor, e: &AppError) -> Response {
    let notice = format!(
        r#"<p class="alert" role="alert" id="webhook-error">{}</p>"#,
        esc(&app_error_message(e))
    );
    webhooks_list(state, v, refused(e), &notice).await
}

/// Removes a webhook (form: csrf, id).
#[utoipa::path(post, path = "/portal/webhooks/delete", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, id"),
    responses(
        (status = 303, description = "removed: to the webhooks page (or, not signed in, to the sign-in page)"),
        (status = 404, description = "no such webhook: the page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn delete_webhook(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, TITLE, Nav::Webhooks).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = form.get("id").map(String::as_str).unwrap_or_default();
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        let e = AppError::Invalid {
            field: "id",
            message: format!("{id:?} is not a webhook ID"),
        };
        return refusal(&state, &v, &e).await;
    };
    match state.webhooks().delete(&v.who, id).await {
        Ok(()) => redirect("/portal/webhooks?removed=1"),
        Err(e) => refusal(&state, &v, &e).await,
    }
}
