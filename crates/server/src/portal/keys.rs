//! Settings → Security → Key Encryption: the organization's registered keys, and Add Keys
//! (database type → provider → region → Cloud Provider ID and policy statements → the
//! pasted policy checked → key ID checked as typed → the registration service, live check
//! included, as the API runs it).
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyplane_core::{DbType, KeyStatus, Permission, Provider};

use super::html::{Nav, esc, page, respond};
use super::{
    TAG, Visitor, form_post, message_page, provider_label, redirect, refused, session, signed_in,
    type_label, url_encode,
};
use crate::error::app_error_message;
use keyplane_app::App;
use keyplane_app::keys::on_inaccessible::{ChoiceScope, InaccessibleChoices};
use keyplane_app::keys::policy::{LoginKind, PolicyReview, PolicyVerdict};
use keyplane_app::keys::{AccessGrant, KeyInUse, KeyRegistration, PolicyFindings, Trust};
use keyplane_core::keys::OnInaccessible;
use keyplane_kms::{KeyLogin, LoginCredential};
use zeroize::Zeroizing;

/// Security → Key Encryption: the organization's registered keys.
#[utoipa::path(get, path = "/portal/keys", tag = TAG,
    params(("added" = Option<String>, Query, description = "set after a key was added")),
    responses((status = 200, description = "the keys page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn keys_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (v, hdr) = match permitted(&state, &headers, "Key Encryption", Permission::OrgCmkRead).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let keys = match state.keys().list_in_use(&v.who).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "portal: listing keys");
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Key Encryption",
                &hdr,
                "The keys could not be read; please retry.",
            );
        }
    };
    let notice = match (q.get("added"), q.get("revoked"), q.get("unrevoked")) {
        (Some(k), _, _) => format!(
            r#"<p class="notice" role="status">Key added: <code>{}</code></p>"#,
            esc(k)
        ),
        (_, Some(k), _) => format!(
            r#"<p class="notice" role="status">Key revoked: <code>{}</code>. Every database under it is suspended until you unrevoke it.</p>"#,
            esc(k)
        ),
        (_, _, Some(k)) => format!(
            r#"<p class="notice" role="status">Key unrevoked: <code>{}</code>. Its databases resume.</p>"#,
            esc(k)
        ),
        _ => match (q.get("deregistered"), q.get("replaced")) {
            (Some(k), _) => format!(
                r#"<p class="notice" role="status">Key deregistered: <code>{}</code>. The region takes another key.</p>"#,
                esc(k)
            ),
            (_, Some(k)) => format!(
                r#"<p class="notice" role="status">Key replaced: new databases in the region use <code>{}</code>. Existing ones keep their key until you rewrap them (Databases → Rewrap).</p>"#,
                esc(k)
            ),
            _ => String::new(),
        },
    };
    let notice = if q.contains_key("choice") && notice.is_empty() {
        r#"<p class="notice" role="status">Saved: what a failing key does to your databases.</p>"#
            .to_string()
    } else {
        notice
    };
    let choices = state.keys().on_inaccessible(&v.who).await.ok();
    keys_list(&v, &hdr, &keys, choices.as_ref(), &notice, StatusCode::OK)
}

/// The signed-in visitor and the page header, for a page titled `title` that needs
/// `permission`; otherwise the page that says why not.
async fn permitted(
    state: &App,
    headers: &HeaderMap,
    title: &str,
    permission: Permission,
) -> Result<(Visitor, String), Response> {
    let v = signed_in(state, headers).await?;
    let hdr = v.header(Nav::Security);
    match v.who.require(permission) {
        Ok(()) => Ok((v, hdr)),
        Err(e) => Err(message_page(
            StatusCode::FORBIDDEN,
            title,
            &hdr,
            &app_error_message(&e),
        )),
    }
}

/// The Key Encryption page: `notice` above the table, answered with `status`.
fn keys_list(
    v: &Visitor,
    hdr: &str,
    keys: &[KeyInUse],
    choices: Option<&InaccessibleChoices>,
    notice: &str,
    status: StatusCode,
) -> Response {
    let can_write = v.who.require(Permission::OrgCmkWrite).is_ok();
    let rows: String = keys
        .iter()
        .map(|KeyInUse { key: k, earlier, state, .. }| {
            let status = k.status.as_str();
            let n = state.databases.len();
            let lifecycle = format!(
                r#"<div class="lifecycle" data-lifecycle="{s}">{s} since <time datetime="{iso}">{at}</time>{dbs}</div>"#,
                s = state.state.as_str(),
                iso = esc(&state.since.to_rfc3339()),
                at = esc(&state.since.format("%Y-%m-%d %H:%M UTC").to_string()),
                dbs = if n == 0 {
                    String::new()
                } else {
                    format!(" · {n} database{}", if n == 1 { "" } else { "s" })
                },
            );
            let reason = k
                .status_reason
                .as_deref()
                .map(|r| format!(r#"<div class="muted">{}</div>"#, esc(r)))
                .unwrap_or_default();
            let warning = k
                .binding_warning
                .as_deref()
                .map(|w| {
                    format!(
                        r#"<div class="warning" role="note"><strong>Warning:</strong> {}</div>"#,
                        esc(w)
                    )
                })
                .unwrap_or_default();
            let check = match (&k.last_check_at, k.last_check_ok) {
                (Some(at), ok) => format!(
                    r#"<time datetime="{iso}">{shown}</time>{res}{msg}"#,
                    iso = esc(&at.to_rfc3339()),
                    shown = esc(&at.format("%Y-%m-%d %H:%M UTC").to_string()),
                    res = match ok {
                        Some(true) => " · passed",
                        Some(false) => " · failed",
                        None => "",
                    },
                    msg = k
                        .last_check_message
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(r#"<div class="muted">{}</div>"#, esc(m)))
                        .unwrap_or_default(),
                ),
                (None, _) => "never".to_string(),
            };
            let button = |verb: &str, label: &str| {
                format!(
                    r#"<form method="post" action="/portal/keys/{verb}" class="key-action"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="type" value="{t}"><input type="hidden" name="provider" value="{p}"><input type="hidden" name="region" value="{region}"><button class="secondary" type="submit" aria-label="{label} the {ty} key for {region}">{label}</button></form>"#,
                    csrf = esc(&v.csrf),
                    t = k.db_type.as_str(),
                    p = k.provider.as_str(),
                    region = esc(&k.region),
                    ty = esc(type_label(k.db_type)),
                )
            };
            let replace = if k.status == KeyStatus::Revoked {
                // A revoked key is not replaced (the service refuses): unrevoke it first.
                String::new()
            } else {
                format!(
                    r#"<form method="post" action="/portal/keys/replace" class="key-action replace-key"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="type" value="{t}"><input type="hidden" name="provider" value="{p}"><input type="hidden" name="region" value="{region}"><label class="visually-hidden" for="{id}">New key ID for the {ty} key in {region}</label><input type="text" id="{id}" name="key_id" placeholder="New key ID" autocomplete="off" spellcheck="false" required><button class="secondary" type="submit" aria-label="Replace the {ty} key for {region}">Replace</button></form>"#,
                    csrf = esc(&v.csrf),
                    t = k.db_type.as_str(),
                    p = k.provider.as_str(),
                    region = esc(&k.region),
                    ty = esc(type_label(k.db_type)),
                    id = esc(&format!(
                        "replace-{}-{}-{}",
                        k.db_type.as_str(),
                        k.provider.as_str(),
                        k.region
                    )),
                )
            };
            // Revoking suspends databases: it is confirmed on a page of its own first.
            let first = if k.status == KeyStatus::Revoked {
                button("unrevoke", "Unrevoke")
            } else {
                format!(
                    r#"<a class="button secondary key-action" href="/portal/keys/revoke?type={t}&amp;provider={p}&amp;region={r}" aria-label="Revoke the {ty} key for {region}">Revoke</a>"#,
                    t = k.db_type.as_str(),
                    p = k.provider.as_str(),
                    r = esc(&url_encode(&k.region)),
                    ty = esc(type_label(k.db_type)),
                    region = esc(&k.region),
                )
            };
            let action = if can_write {
                first + &button("deregister", "Deregister") + &replace
            } else {
                String::new()
            };
            let earlier: String = earlier
                .iter()
                .map(|e| {
                    let n = e.datacenters.len();
                    format!(
                        r#"<div class="muted previous-key" data-previous-key="{key}">Earlier key <code class="key">{key}</code> still encrypts {n} datacenter{s}: rewrap {them} from Databases.</div>"#,
                        key = esc(&e.key_id),
                        s = if n == 1 { "" } else { "s" },
                        them = if n == 1 { "it" } else { "them" },
                    )
                })
                .collect();
            format!(
                r#"<tr data-key-id="{key}"><td data-label="Database type">{ty}</td><td data-label="Provider">{prov}</td><td data-label="Region">{region}</td><td data-label="Key ID" class="key">{key}</td><td data-label="Status"><span class="status {status}">{status}</span>{lifecycle}{reason}{warning}{earlier}</td><td data-label="Last check">{check}</td><td data-label="Actions">{action}</td></tr>"#,
                ty = esc(type_label(k.db_type)),
                prov = esc(provider_label(k.provider)),
                region = esc(&k.region),
                key = esc(&k.key_id),
            )
        })
        .collect();
    let table = if keys.is_empty() {
        r#"<p class="card">No customer keys are registered yet. Databases use platform-managed keys until you add one.</p>"#.to_string()
    } else {
        format!(
            r#"<table class="keys"><caption class="muted" style="text-align:left">Registered keys ({n})</caption><thead><tr><th scope="col">Database type</th><th scope="col">Provider</th><th scope="col">Region</th><th scope="col">Key ID</th><th scope="col">Status</th><th scope="col">Last check</th><th scope="col">Actions</th></tr></thead><tbody>{rows}</tbody></table>"#,
            n = keys.len()
        )
    };
    let body = format!(
        r#"<p class="muted"><a href="/portal/settings">Settings</a> › Security</p><h1>Key Encryption</h1>{notice}
<p>Databases deployed in a region where a key is registered are encrypted with it; existing databases keep their key.</p>
<p><a class="button" href="/portal/keys/new">Add Keys</a></p>{table}{failing}"#,
        failing = choices
            .map(|c| choices_card(v, c, can_write))
            .unwrap_or_default(),
    );
    respond(status, page("Key Encryption", hdr, &body, None, ""), None)
}

/// What a key that fails its check does: the organization's choice (a form to change it)
/// and the keys with their own.
fn choices_card(v: &Visitor, c: &InaccessibleChoices, can_write: bool) -> String {
    let describe = |choice: OnInaccessible| match choice {
        OnInaccessible::Suspend => "suspend its databases at once".to_string(),
        OnInaccessible::AlertOnly { for_secs } => {
            format!("keep its databases serving with an alert for {for_secs} s, then suspend them")
        }
    };
    let current = c
        .organization
        .as_ref()
        .map(|o| o.choice)
        .unwrap_or(OnInaccessible::Suspend);
    let overrides: String = c
        .keys
        .iter()
        .map(|k| {
            format!(
                "<li><code>{}</code>: {}</li>",
                esc(k.key_id.as_deref().unwrap_or_default()),
                esc(&describe(k.choice))
            )
        })
        .collect();
    let overrides = if overrides.is_empty() {
        String::new()
    } else {
        format!(r#"<p>Keys with their own choice:</p><ul id="key-choices">{overrides}</ul>"#)
    };
    let form = if can_write {
        let alert_only = matches!(current, OnInaccessible::AlertOnly { .. });
        format!(
            r#"<form method="post" action="/portal/keys/on-inaccessible"><input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>When a key fails</legend>
<label><input type="radio" name="action" value="suspend"{s}> Suspend at once</label>
<label><input type="radio" name="action" value="alert-only"{a}> Alert only, for</label>
<label for="alert-seconds">Seconds before suspending</label><input type="number" id="alert-seconds" name="seconds" min="1" max="{max}" value="{secs}">
</fieldset><button class="secondary" type="submit">Save</button></form>"#,
            csrf = esc(&v.csrf),
            s = if alert_only { "" } else { " checked" },
            a = if alert_only { " checked" } else { "" },
            max = c.max_alert_secs,
            secs = match current {
                OnInaccessible::AlertOnly { for_secs } => for_secs,
                OnInaccessible::Suspend => 3600.min(c.max_alert_secs),
            },
        )
    } else {
        String::new()
    };
    format!(
        r#"<div class="card" id="on-inaccessible"><h2>When a key fails its check</h2><p>Your organization's choice: <strong id="org-choice">{}</strong>. Either way an alert is recorded in the audit log; databases resume by themselves when the key is usable again. A database whose data key has left memory cannot be opened while its key fails.</p>{overrides}{form}</div>"#,
        esc(&describe(current))
    )
}

/// Sets the organization's choice of what a failing key does (form: csrf, action, seconds).
#[utoipa::path(post, path = "/portal/keys/on-inaccessible", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, action (suspend or alert-only), seconds"),
    responses(
        (status = 303, description = "saved: to the keys page"),
        (status = 400, description = "a bad choice: the keys page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn set_on_inaccessible(
    State(state): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, "Key Encryption", Nav::Security).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let action = form.get("action").map(String::as_str).unwrap_or_default();
    let seconds = match (action, form.get("seconds").map(|s| s.trim())) {
        ("alert-only", Some(s)) => {
            s.parse::<i64>()
                .map(Some)
                .map_err(|_| keyplane_app::AppError::Invalid {
                    field: "seconds",
                    message: format!(
                        "the alert-only time must be a whole number of seconds, not {s:?}"
                    ),
                })
        }
        _ => Ok(None),
    };
    let keys = state.keys();
    let result = match seconds.and_then(|secs| keys.parse_choice(action, secs)) {
        Ok(choice) => {
            keys.set_on_inaccessible(&v.who, ChoiceScope::Organization, Some(choice))
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => redirect("/portal/keys?choice=saved"),
        Err(e) => {
            let hdr = v.header(Nav::Security);
            let notice = format!(
                r#"<p class="alert" role="alert" id="choice-error">{}</p>"#,
                esc(&app_error_message(&e))
            );
            let listed = keys.list_in_use(&v.who).await.unwrap_or_default();
            let choices = keys.on_inaccessible(&v.who).await.ok();
            keys_list(&v, &hdr, &listed, choices.as_ref(), &notice, refused(&e))
        }
    }
}

/// Asks before revoking: which key, and which datacenters the revoke suspends.
#[utoipa::path(get, path = "/portal/keys/revoke", tag = TAG,
    params(
        ("type" = String, Query, description = "classic or serverless"),
        ("provider" = String, Query, description = "the key's provider"),
        ("region" = String, Query, description = "the key's region"),
    ),
    responses(
        (status = 200, description = "the confirmation page", content_type = "text/html"),
        (status = 400, description = "no such database type, provider or region", content_type = "text/html"),
        (status = 404, description = "no key registered there", content_type = "text/html"),
        (status = 403, description = "the role may not revoke", content_type = "text/html"),
        (status = 303, description = "not signed in"),
    ))]
pub async fn revoke_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (v, hdr) = match permitted(&state, &headers, "Revoke key", Permission::OrgCmkWrite).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let found = match field("type").parse::<DbType>() {
        Ok(t) => {
            state
                .keys()
                .in_use(&v.who, t, field("provider"), field("region"))
                .await
        }
        Err(e) => Err(keyplane_app::AppError::Invalid {
            field: "type",
            message: e.to_string(),
        }),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return message_page(refused(&e), "Revoke key", &hdr, &app_error_message(&e)),
    };
    let k = &found.key;
    let n = found.datacenters.len();
    let affected = if n == 0 {
        "No database is encrypted with it now; new ones in the region are refused while it is revoked.".to_string()
    } else {
        let list: String = found
            .datacenters
            .iter()
            .map(|d| format!("<li><code>{}</code></li>", esc(&d.datacenter_id)))
            .collect();
        format!(
            r#"Every datacenter encrypted with it is suspended at once, on every server, until you unrevoke it ({n} datacenter{s}):</p><ul id="revoke-affected">{list}</ul><p>"#,
            s = if n == 1 { "" } else { "s" },
        )
    };
    let body = format!(
        r#"<p class="muted"><a href="/portal/keys">Key Encryption</a> › Revoke</p><h1>Revoke key</h1>
<div class="card"><p>Revoke the {ty} key for {prov} {region}, <code class="key">{key}</code>? keyplane stops using it: your KMS is not changed. {affected}</p>
<form method="post" action="/portal/keys/revoke"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="type" value="{t}"><input type="hidden" name="provider" value="{p}"><input type="hidden" name="region" value="{region}">
<p><button class="danger" type="submit">Revoke key</button> <a href="/portal/keys">Cancel</a></p></form></div>"#,
        ty = esc(type_label(k.db_type)),
        prov = esc(provider_label(k.provider)),
        region = esc(&k.region),
        key = esc(&k.key_id),
        csrf = esc(&v.csrf),
        t = k.db_type.as_str(),
        p = k.provider.as_str(),
    );
    respond(
        StatusCode::OK,
        page("Revoke key", &hdr, &body, None, ""),
        None,
    )
}

/// Revokes a key (form: csrf, type, provider, region) through the application's service.
#[utoipa::path(post, path = "/portal/keys/revoke", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region"),
    responses(
        (status = 303, description = "revoked: to the keys page"),
        (status = 404, description = "no such key: the keys page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn revoke_key(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    key_action(&state, &headers, &body, KeyAction::Revoke).await
}

/// Unrevokes a key after its live check (form: csrf, type, provider, region).
#[utoipa::path(post, path = "/portal/keys/unrevoke", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region"),
    responses(
        (status = 303, description = "unrevoked: to the keys page"),
        (status = 422, description = "the live check failed: the keys page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn unrevoke_key(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    key_action(&state, &headers, &body, KeyAction::Unrevoke).await
}

/// Deregisters a key no live database uses (form: csrf, type, provider, region).
#[utoipa::path(post, path = "/portal/keys/deregister", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region"),
    responses(
        (status = 303, description = "deregistered: to the keys page"),
        (status = 409, description = "databases use it: the keys page naming them", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn deregister_key(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    key_action(&state, &headers, &body, KeyAction::Deregister).await
}

/// Replaces a key by another after its live check (form: csrf, type, provider, region,
/// key_id): new databases in the region use the new key; existing ones keep theirs.
#[utoipa::path(post, path = "/portal/keys/replace", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region, key_id"),
    responses(
        (status = 303, description = "replaced: to the keys page"),
        (status = 400, description = "the new key ID is missing or malformed: the keys page with the reason", content_type = "text/html"),
        (status = 409, description = "the key is revoked or changed meanwhile: the keys page with the reason", content_type = "text/html"),
        (status = 422, description = "the live check failed: the keys page with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn replace_key(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    key_action(&state, &headers, &body, KeyAction::Replace).await
}

#[derive(Clone, Copy)]
enum KeyAction {
    Revoke,
    Unrevoke,
    Deregister,
    Replace,
}

async fn key_action(state: &App, headers: &HeaderMap, body: &[u8], action: KeyAction) -> Response {
    let (v, form) = match form_post(state, headers, body, "Key Encryption", Nav::Security).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let db_type = match field("type").parse::<DbType>() {
        Ok(t) => t,
        Err(e) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "Key Encryption",
                &v.header(Nav::Security),
                &e.to_string(),
            );
        }
    };
    let (provider, region) = (field("provider"), field("region"));
    let keys = state.keys();
    let done = match action {
        KeyAction::Revoke => keys
            .revoke(&v.who, db_type, provider, region)
            .await
            .map(|d| ("revoked", d.key.key_id)),
        KeyAction::Unrevoke => keys
            .unrevoke(&v.who, db_type, provider, region)
            .await
            .map(|d| ("unrevoked", d.key.key_id)),
        KeyAction::Deregister => keys
            .deregister(&v.who, db_type, provider, region)
            .await
            .map(|k| ("deregistered", k.key_id)),
        // The service refuses an empty or malformed key ID in its own words.
        KeyAction::Replace => match provider.parse::<Provider>() {
            Ok(p) => {
                let req = KeyRegistration::one(v.who.org_id(), p, field("key_id").trim(), region);
                keys.replace(&v.who, db_type, provider, region, &req)
                    .await
                    .map(|d| ("replaced", d.key.key_id))
            }
            Err(e) => Err(keyplane_app::AppError::Invalid {
                field: "provider",
                message: e.to_string(),
            }),
        },
    };
    match done {
        Ok((what, key_id)) => redirect(&format!("/portal/keys?{what}={}", url_encode(&key_id))),
        Err(e) => {
            let hdr = v.header(Nav::Security);
            let notice = format!(
                r#"<p class="alert" role="alert" id="key-action-error">{}</p>"#,
                esc(&app_error_message(&e))
            );
            let listed = state.keys().list_in_use(&v.who).await.unwrap_or_default();
            let choices = state.keys().on_inaccessible(&v.who).await.ok();
            keys_list(&v, &hdr, &listed, choices.as_ref(), &notice, refused(&e))
        }
    }
}

/// Copy buttons, and the Key ID's format and region checked as it is typed (the server
/// checks again on Add Key).
const SCRIPT: &str = r#"
document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){var t=document.getElementById(b.getAttribute('data-target')).textContent;navigator.clipboard.writeText(t).then(function(){b.textContent='Copied';setTimeout(function(){b.textContent='Copy'},1500)},function(){b.textContent='Select and copy manually'})})});
(function(){var k=document.getElementById('key_id'),m=document.getElementById('key-format');if(!k||!m)return;
var region=k.getAttribute('data-region'),provider=k.getAttribute('data-provider');
function check(){var v=k.value.trim(),msg='',ok=false,r;
if(!v){msg=''}
else if(provider==='aws'){
 if(/^alias\//.test(v)||/:alias\//.test(v)){msg='An alias is not accepted: paste the key ARN (arn:aws:kms:'+region+':ACCOUNT:key/KEY-ID).'}
 else if(!(r=/^arn:aws(-cn|-us-gov)?:kms:([^:]*):([^:]*):key\/(.*)$/.exec(v))){msg='Not a KMS key ARN: expected arn:aws:kms:'+region+':ACCOUNT:key/KEY-ID.'}
 else if(r[2]!==region){msg='The key is in '+(r[2]||'no region')+', but you chose '+region+': register a key of the region its databases run in.'}
 else if(!/^[0-9]{12}$/.test(r[3])){msg='The account in the ARN must be 12 digits.'}
 else if(!/^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/.test(r[4])){msg='The key ID at the end of the ARN is not a KMS key ID.'}
 else{ok=true;msg='Format OK: a key in '+region+' of account '+r[3]+'.'}}
else if(provider==='gcp'){
 if(!(r=/^(?:\/\/cloudkms\.googleapis\.com\/)?projects\/([^\/]+)\/locations\/([^\/]+)\/keyRings\/([^\/]+)\/cryptoKeys\/([^\/]+)(\/cryptoKeyVersions\/([^\/]*))?$/.exec(v))){msg='Expected projects/PROJECT/locations/'+region+'/keyRings/RING/cryptoKeys/KEY.'}
 else if(r[2]!==region){msg='The key ring is in location '+r[2]+', but you chose '+region+': create a key ring and key in '+region+'.'}
 else if(!/^[A-Za-z0-9_-]{1,63}$/.test(r[3])||!/^[A-Za-z0-9_-]{1,63}$/.test(r[4])){msg='Key ring and key IDs are 1-63 letters, digits, underscores or hyphens.'}
 else if(r[5]&&!/^[1-9][0-9]*$/.test(r[6])){msg='The key version must be a positive number.'}
 else{ok=true;msg='Format OK: key '+r[4]+' of key ring '+r[3]+' in project '+r[1]+(r[5]?' (version '+r[6]+' given; the key is registered and follows its primary version).':'.')}}
else if(provider==='azure'){
 if(!(r=/^https:\/\/([^\/]+)\/keys\/([^\/]+)(\/([^\/]*))?\/?$/.exec(v))){msg='Expected the key identifier https://VAULT.vault.azure.net/keys/NAME.'}
 else if(!/^[A-Za-z0-9-]{1,127}$/.test(r[2])){msg='A key name is 1-127 letters, digits and dashes.'}
 else if(r[3]&&!/^[0-9a-fA-F]{32}$/.test(r[4])){msg='The key version must be 32 hexadecimal digits.'}
 else{ok=true;msg='Format OK: key '+r[2]+' of '+r[1]+(r[3]?' (version given; the key is registered and follows its current version).':'.')}}
m.textContent=msg;m.className=ok?'ok':(msg?'error':'muted');
if(msg&&!ok){k.setAttribute('aria-invalid','true')}else{k.removeAttribute('aria-invalid')}}
k.addEventListener('input',check);check();})();
"#;

/// What the Add Keys form was given so far.
struct Choice {
    db_type: Option<DbType>,
    provider: Option<Provider>,
    region: Option<String>,
    /// How keyplane logs in to an OpenBao key (`auth=jwt`; AppRole otherwise).
    login: LoginKind,
}

fn choice(q: &HashMap<String, String>) -> Choice {
    let db_type = q.get("type").and_then(|t| t.parse::<DbType>().ok());
    let provider = q.get("provider").and_then(|p| p.parse::<Provider>().ok());
    let region = q.get("region").filter(|r| !r.is_empty()).cloned();
    let login = match (provider, q.get("auth").map(String::as_str)) {
        (Some(Provider::Openbao), Some("jwt")) => LoginKind::Jwt,
        _ => LoginKind::AppRole,
    };
    Choice {
        db_type,
        provider,
        region,
        login,
    }
}

fn auth_value(login: LoginKind) -> &'static str {
    match login {
        LoginKind::AppRole => "approle",
        LoginKind::Jwt => "jwt",
    }
}

/// The parts of the form that come back as typed, and the messages next to them.
#[derive(Default)]
struct Typed {
    key_id: String,
    key_error: Option<String>,
    policy: String,
    findings: Option<String>,
}

fn radio(
    name: &str,
    value: &str,
    label: &str,
    checked: bool,
    disabled: bool,
    note: &str,
) -> String {
    format!(
        r#"<label class="choice{cls}"><input type="radio" name="{name}" value="{value}"{chk}{dis}> {label}{note}</label>"#,
        cls = if disabled { " disabled" } else { "" },
        name = esc(name),
        value = esc(value),
        chk = if checked { " checked" } else { "" },
        dis = if disabled { " disabled" } else { "" },
        label = esc(label),
        note = if note.is_empty() {
            String::new()
        } else {
            format!(r#" <span class="muted">({})</span>"#, esc(note))
        },
    )
}

async fn new_key_form(
    state: &App,
    v: &Visitor,
    c: &Choice,
    typed: &Typed,
    status: StatusCode,
) -> Response {
    let hdr = v.header(Nav::Security);
    let caller = &v.who;
    if let Err(e) = caller.require(Permission::OrgCmkWrite) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Add Keys",
            &hdr,
            &app_error_message(&e),
        );
    }
    let mut steps = String::new();
    steps.push_str(r#"<fieldset><legend>1. Database type</legend>"#);
    for t in [DbType::Classic, DbType::Serverless] {
        steps.push_str(&radio(
            "type",
            t.as_str(),
            type_label(t),
            c.db_type == Some(t),
            false,
            "",
        ));
    }
    steps.push_str("</fieldset>");
    let mut region_ok = false;
    if let Some(t) = c.db_type {
        steps.push_str(r#"<fieldset><legend>2. Provider</legend>"#);
        // A provider without regions (OpenBao where the operator named no site) is not offered.
        for p in Provider::ALL
            .into_iter()
            .filter(|p| !state.config.regions(*p).is_empty())
        {
            let ok = p.supports(t);
            let note = if ok {
                String::new()
            } else {
                format!("not available for {}", type_label(t))
            };
            steps.push_str(&radio(
                "provider",
                p.as_str(),
                provider_label(p),
                ok && c.provider == Some(p),
                !ok,
                &note,
            ));
        }
        steps.push_str("</fieldset>");
        if let Some(p) = c.provider.filter(|p| p.supports(t)) {
            let unlocked = keyplane_app::regions::unlocked(&state.config, &caller.org, p);
            steps.push_str(r#"<fieldset><legend>3. Region</legend>"#);
            for r in state.config.regions(p) {
                let open = unlocked.contains(&r.as_str());
                let chosen = c.region.as_deref() == Some(r.as_str());
                region_ok |= open && chosen;
                steps.push_str(&radio(
                    "region",
                    r,
                    r,
                    open && chosen,
                    !open,
                    if open { "" } else { "contact support" },
                ));
            }
            if state.config.regions(p).is_empty() {
                steps.push_str(r#"<p class="muted">No region of this provider is in the catalog; contact support.</p>"#);
            }
            steps.push_str("</fieldset>");
            if p == Provider::Openbao {
                steps.push_str(r#"<fieldset><legend>How keyplane logs in</legend>"#);
                for (login, label, note) in [
                    (
                        LoginKind::AppRole,
                        "AppRole",
                        "you give a role ID and a secret ID",
                    ),
                    (
                        LoginKind::Jwt,
                        "JWT role",
                        "keyplane signs short-lived JWTs for this organization; no secret",
                    ),
                ] {
                    steps.push_str(&radio(
                        "auth",
                        auth_value(login),
                        label,
                        c.login == login,
                        false,
                        note,
                    ));
                }
                steps.push_str("</fieldset>");
            }
        }
    }
    let chooser = format!(
        r#"<form method="get" action="/portal/keys/new" id="chooser">{steps}<button class="primary" type="submit">Continue</button></form>"#
    );
    let mut details = String::new();
    let mut nonce = None;
    if let (Some(t), Some(p), Some(region), true) =
        (c.db_type, c.provider, c.region.as_deref(), region_ok)
    {
        match state.keys().trust(caller, t, p, region, c.login).await {
            Err(e) => details.push_str(&format!(
                r#"<p class="alert" role="alert">{}</p>"#,
                esc(&app_error_message(&e))
            )),
            Ok(trust) => {
                nonce = Some(session::random_hex());
                let hidden = format!(
                    r#"<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="type" value="{t}"><input type="hidden" name="provider" value="{p}"><input type="hidden" name="region" value="{region}"><input type="hidden" name="auth" value="{auth}">"#,
                    auth = auth_value(c.login),
                    csrf = esc(&v.csrf),
                    t = esc(t.as_str()),
                    p = esc(p.as_str()),
                    region = esc(region),
                );
                details.push_str(&provider_id_card(p, region, &trust));
                details.push_str(&grant_card(region, &trust, &hidden, typed, c.login));
                let hint = match p {
                    Provider::Aws => format!("arn:aws:kms:{region}:ACCOUNT:key/KEY-ID"),
                    Provider::Gcp => {
                        format!("projects/PROJECT/locations/{region}/keyRings/RING/cryptoKeys/KEY")
                    }
                    Provider::Azure => match &trust.grant {
                        AccessGrant::Azure(apps) => {
                            apps.first().map(|a| a.key_id.clone()).unwrap_or_default()
                        }
                        _ => "https://VAULT.vault.azure.net/keys/NAME".to_string(),
                    },
                    Provider::Openbao => {
                        "https://bao.example.com:8200/v1/transit/keys/NAME".to_string()
                    }
                };
                // OpenBao: the login keyplane uses the key with, sealed once the check passes.
                let login_fields = if p == Provider::Openbao && c.login == LoginKind::Jwt {
                    format!(
                        r#"<label for="role">JWT role (path)</label><input type="text" id="role" name="role" value="{role}" spellcheck="false" autocomplete="off">
<p class="muted">The role the commands above create, bound to this organization; keyplane logs in with a JWT it signs for each login.</p>"#,
                        role = esc(&trust.provider_id),
                    )
                } else if p == Provider::Openbao {
                    format!(
                        r#"<label for="role">Role (path)</label><input type="text" id="role" name="role" value="{role}" spellcheck="false" autocomplete="off">
<label for="role_id">Role ID</label><input type="text" id="role_id" name="role_id" required spellcheck="false" autocomplete="off">
<label for="secret_id">Secret ID</label><input type="password" id="secret_id" name="secret_id" required autocomplete="off">
<p class="muted">The AppRole login keyplane uses the key with (<code>bao read -field=role_id {role}/role-id</code>, <code>bao write -f -field=secret_id {role}/secret-id</code>). Sealed at rest and never shown again.</p>"#,
                        role = esc(&trust.provider_id),
                    )
                } else {
                    String::new()
                };
                let err = typed
                    .key_error
                    .as_deref()
                    .map(|m| {
                        format!(
                            r#"<p class="error" id="key-error" role="alert">{}</p>"#,
                            esc(m)
                        )
                    })
                    .unwrap_or_default();
                let described = if typed.key_error.is_some() {
                    "key-hint key-format key-error"
                } else {
                    "key-hint key-format"
                };
                details.push_str(&format!(
                    r#"<form method="post" action="/portal/keys#key-id-h" class="card"><h2 id="key-id-h">6. Key ID</h2>{hidden}
<label for="key_id">Key ID</label><input type="text" id="key_id" name="key_id" value="{key_id}" required spellcheck="false" autocomplete="off" data-provider="{p}" data-region="{region}" aria-describedby="{described}"{invalid}>
<p class="muted" id="key-hint">{what}, for example <code>{hint}</code></p><p id="key-format" class="muted" role="status" aria-live="polite"></p>{err}{login_fields}
<button class="primary" type="submit">Add Key</button></form>"#,
                    key_id = esc(&typed.key_id),
                    p = esc(p.as_str()),
                    region = esc(region),
                    hint = esc(&hint),
                    what = match p {
                        Provider::Aws => "The key's ARN",
                        Provider::Gcp => "The key's resource name (a version's name is accepted too; the key is stored)",
                        Provider::Azure => "The key's identifier without a version (a version's is accepted too; the key is stored and follows its current version)",
                        Provider::Openbao => "The Transit key's API URL, <address>/v1/<mount>/keys/<name>",
                    },
                    invalid = if typed.key_error.is_some() { r#" aria-invalid="true""# } else { "" },
                ));
            }
        }
    }
    let body = format!(
        r#"<p class="muted"><a href="/portal/settings">Settings</a> › <a href="/portal/keys">Security</a> › Add Keys</p><h1>Add Keys</h1>{chooser}{details}"#
    );
    let script = if nonce.is_some() { SCRIPT } else { "" };
    respond(
        status,
        page("Add Keys", &hdr, &body, nonce.as_deref(), script),
        nonce.as_deref(),
    )
}

/// Step 4: the provider ID (and, for GCP, the service accounts) the key's policy trusts.
fn provider_id_card(p: Provider, region: &str, trust: &Trust) -> String {
    let mut card = format!(
        r#"<div class="card"><h2 id="pid-h">4. Cloud Provider ID</h2><p class="muted">{what} in {region}. Trust it in your key's policy.</p>
<pre id="provider-id" aria-labelledby="pid-h">{id}</pre><button type="button" class="copy" data-target="provider-id" aria-label="Copy the Cloud Provider ID">Copy</button>"#,
        what = match p {
            Provider::Gcp => "The platform's Google Cloud project keyplane acts from",
            Provider::Azure => "The platform's Entra ID application (client ID) keyplane acts as",
            Provider::Aws => "The account keyplane acts from",
            Provider::Openbao => "The role in your OpenBao that keyplane logs in as",
        },
        region = esc(region),
        id = esc(&trust.provider_id),
    );
    if p == Provider::Gcp {
        let list = trust
            .principals
            .iter()
            .map(|m| esc(m))
            .collect::<Vec<_>>()
            .join("\n");
        card.push_str(&format!(
            r#"<h3 id="sa-h">Service account{s} to grant</h3><pre id="service-accounts" aria-labelledby="sa-h">{list}</pre><button type="button" class="copy" data-target="service-accounts" aria-label="Copy the service accounts">Copy</button>"#,
            s = if trust.principals.len() == 1 { "" } else { "s" },
        ));
    }
    card.push_str("</div>");
    card
}

/// Step 5: what to grant (AWS key-policy statements; GCP IAM bindings and gcloud commands),
/// and the pasted-policy check.
fn grant_card(
    region: &str,
    trust: &Trust,
    hidden: &str,
    typed: &Typed,
    login: LoginKind,
) -> String {
    let (title, intro, text, extra, paste) = match &trust.grant {
        AccessGrant::AwsStatements(statements) => (
            "5. Key policy statements",
            format!(
                "In your KMS, create a symmetric encryption key in {} and add these statements to the <code>Statement</code> list of its key policy (principal <code>{}</code>). Their condition <code>kms:EncryptionContext:organization</code> lets keyplane use the key only for this organization; Add Key checks that it does.",
                esc(region),
                esc(&trust.identity.principal)
            ),
            statements
                .iter()
                .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",\n"),
            String::new(),
            "Paste the key's policy as your KMS shows it; keyplane evaluates it as AWS would for its role and names every action it would be denied, and why. Nothing is stored.",
        ),
        AccessGrant::GcpBindings { bindings, commands } => (
            "5. IAM bindings",
            format!(
                "In Cloud KMS, create a key ring in location {} and a symmetric encryption key in it, then add these bindings to the key's IAM policy.",
                esc(region)
            ),
            serde_json::to_string_pretty(bindings).unwrap_or_default(),
            format!(
                r#"<h3 id="gcloud-h">With gcloud</h3><pre id="gcloud" aria-labelledby="gcloud-h">{}</pre><button type="button" class="copy" data-target="gcloud" aria-label="Copy the gcloud commands">Copy</button>"#,
                esc(&commands.join("\n"))
            ),
            "Paste the key's IAM policy (gcloud kms keys get-iam-policy KEY --keyring RING --location LOCATION --format=json); keyplane names what each service account would lack, and why. Nothing is stored.",
        ),
        AccessGrant::Azure(apps) => (
            "5. Role assignment",
            format!(
                "In Azure Key Vault, create an RSA key in a vault in {} and assign this role on the key to the platform's application (or, in a vault that uses access policies, grant it the key permissions get, wrapKey and unwrapKey).",
                esc(region)
            ),
            serde_json::to_string_pretty(
                &apps
                    .iter()
                    .map(|a| &a.role_assignment.json)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
            format!(
                r#"<h3 id="az-h">Commands</h3><pre id="az-commands" aria-labelledby="az-h">{}</pre><button type="button" class="copy" data-target="az-commands" aria-label="Copy the commands">Copy</button><ul class="muted">{}</ul>"#,
                esc(&apps
                    .iter()
                    .flat_map(|a| a.commands.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("\n")),
                apps.first()
                    .map(|a| a
                        .notes
                        .iter()
                        .map(|n| format!("<li>{}</li>", esc(n)))
                        .collect::<String>())
                    .unwrap_or_default()
            ),
            "Paste the key's role assignments (az role assignment list --scope KEY-RESOURCE-ID, or keyplane kms azure list-roles --key NAME) or the vault's access policies (az keyvault show --query properties), with the key's ID below; keyplane names every permission the application would lack, and why. Nothing is stored.",
        ),
        AccessGrant::Openbao(help) => (
            "5. OpenBao policy",
            if login == LoginKind::Jwt {
                format!(
                    "In your OpenBao or Vault, create a Transit key of type aes256-gcm96, write this policy, and run the commands below: they make the JWT mount trust keyplane's signing key and create the role <code>{}</code>, bound to this organization, with the policy. No secret is exchanged.",
                    esc(&help.provider_id)
                )
            } else {
                format!(
                    "In your OpenBao or Vault, create a Transit key of type aes256-gcm96, write this policy and bind it to the role <code>{}</code>; then give keyplane the role's role ID and a secret ID below.",
                    esc(&help.provider_id)
                )
            },
            help.policy_hcl.clone(),
            format!(
                r#"<h3 id="bao-h">With bao</h3><pre id="bao-commands" aria-labelledby="bao-h">{}</pre><button type="button" class="copy" data-target="bao-commands" aria-label="Copy the bao commands">Copy</button>"#,
                esc(&help
                    .commands
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"))
            ),
            "Paste the role's policy (bao policy read NAME), HCL or JSON, with the key's ID below; keyplane names every capability and path the role would lack, deciding as OpenBao's ACL does. Nothing is stored.",
        ),
    };
    let key_field = if matches!(trust.grant, AccessGrant::Azure(_) | AccessGrant::Openbao(_)) {
        format!(
            r#"<label for="policy-key-id">Key ID the policy is for</label><input type="text" id="policy-key-id" name="key_id" value="{}" spellcheck="false" autocomplete="off">"#,
            esc(&typed.key_id)
        )
    } else {
        String::new()
    };
    format!(
        r#"<div class="card"><h2 id="pol-h">{title}</h2><p class="muted">{intro}</p>
<pre id="policy" aria-labelledby="pol-h">{text}</pre><button type="button" class="copy" data-target="policy" aria-label="Copy what to grant">Copy</button>{extra}
<form method="post" action="/portal/keys/policy-check#policy-findings">{hidden}
<h3><label for="policy-paste">Optional: check your whole policy</label></h3>
<p class="muted" id="paste-hint">{paste}</p>
<textarea id="policy-paste" name="policy" spellcheck="false" aria-describedby="paste-hint">{pasted}</textarea>{key_field}
<div id="policy-findings" role="status">{findings}</div>
<button class="secondary" type="submit">Check policy</button></form></div>"#,
        text = esc(&text),
        pasted = esc(&typed.policy),
        findings = typed.findings.as_deref().unwrap_or_default(),
    )
}

/// The checker's answer as the form shows it.
fn findings_html(r: &PolicyReview) -> String {
    let principal = esc(&r.principal);
    match (&r.findings, r.verdict()) {
        (PolicyFindings::Aws(report), PolicyVerdict::Ok) => format!(
            r#"<p class="ok">The policy grants everything keyplane needs, for this organization only: {} actions allowed for <code>{principal}</code>.</p>"#,
            report.allowed.len(),
        ),
        (PolicyFindings::Aws(report), PolicyVerdict::Unbound) => {
            unbound_findings(&principal, report)
        }
        (PolicyFindings::Aws(report), PolicyVerdict::Insufficient) => {
            let items = finding_items(
                report
                    .findings
                    .iter()
                    .map(|f| (f.action.as_str(), f.message.as_str())),
            );
            let mut html = format!(
                r#"<p class="error">keyplane's role <code>{principal}</code> would be denied {} action(s):</p><ul>{items}</ul>"#,
                report.findings.len()
            );
            if !report.organization_findings.is_empty() {
                html.push_str(&unbound_findings(&principal, report));
            }
            html
        }
        (PolicyFindings::Gcp(report), _) if report.verdict_ok => format!(
            r#"<p class="ok">The IAM policy grants everything keyplane needs to {}.</p>"#,
            report
                .members
                .iter()
                .map(|m| format!("<code>{}</code>", esc(&m.member)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (PolicyFindings::Openbao(report), _) if report.ok => format!(
            r#"<p class="ok">The policy grants the role <code>{principal}</code> all {} capabilities keyplane needs on the key.</p>"#,
            report.findings.len()
        ),
        (PolicyFindings::Openbao(report), _) => {
            let problems: Vec<_> = report.problems().collect();
            let items: String = problems
                .iter()
                .map(|f| {
                    format!(
                        r#"<li><code>{} {}</code>: {}</li>"#,
                        esc(f.requirement.capability.as_str()),
                        esc(&f.requirement.path),
                        esc(&f.message)
                    )
                })
                .collect();
            format!(
                r#"<p class="error">The role <code>{principal}</code> would lack {} capability(ies):</p><ul>{items}</ul>"#,
                problems.len()
            )
        }
        (PolicyFindings::Azure(report), _) if report.verdict_ok => format!(
            r#"<p class="ok">The platform's application <code>{principal}</code> holds get, wrapKey and unwrapKey on the key.</p>"#
        ),
        (PolicyFindings::Azure(report), _) => {
            let items = finding_items(
                report
                    .findings
                    .iter()
                    .map(|f| (f.permission.as_str(), f.message.as_str())),
            );
            format!(
                r#"<p class="error">keyplane's application <code>{principal}</code> would lack {} permission(s):</p><ul>{items}</ul>"#,
                report.findings.len()
            )
        }
        (PolicyFindings::Gcp(report), _) => {
            let items: String = report
                .members
                .iter()
                .flat_map(|m| m.findings.iter().map(move |f| (m, f)))
                .map(|(m, f)| {
                    format!(
                        r#"<li><code>{}</code> lacks <code>{}</code>: {}</li>"#,
                        esc(&m.member),
                        esc(&f.permission),
                        esc(&f.message)
                    )
                })
                .collect();
            let n: usize = report.members.iter().map(|m| m.findings.len()).sum();
            format!(
                r#"<p class="error">keyplane's service account(s) would lack {n} permission(s):</p><ul>{items}</ul>"#
            )
        }
    }
}

/// Add Keys: database type → provider → region → the provider ID and policy → key ID.
#[utoipa::path(get, path = "/portal/keys/new", tag = TAG,
    params(
        ("type" = Option<String>, Query, description = "classic or serverless"),
        ("provider" = Option<String>, Query, description = "aws, gcp or azure"),
        ("region" = Option<String>, Query, description = "a catalog region"),
    ),
    responses((status = 200, description = "the Add Keys form", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn new_key_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    new_key_form(&state, &v, &choice(&q), &Typed::default(), StatusCode::OK).await
}

/// The pasted text as the provider's policy: a whole policy, or (leniently) a part of one,
/// wrapped into one: AWS a statement list or one statement, GCP a binding list or one binding.
fn as_policy(provider: Provider, text: &str) -> Result<serde_json::Value, String> {
    // An OpenBao policy is pasted as HCL (or its JSON form, which the checker reads too).
    if provider == Provider::Openbao {
        return Ok(serde_json::Value::String(text.to_string()));
    }
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("The policy is not valid JSON: {e}."))?;
    Ok(match (provider, v) {
        (Provider::Gcp, v @ serde_json::Value::Array(_)) => serde_json::json!({"bindings": v}),
        (Provider::Gcp, serde_json::Value::Object(o)) if o.contains_key("role") => {
            serde_json::json!({"bindings": [o]})
        }
        (Provider::Gcp, other) => other,
        // A role assignment list (an array, or ARM's `{"value": […]}`) or access policies.
        (Provider::Azure, v) => v,
        (_, v @ serde_json::Value::Array(_)) => {
            serde_json::json!({"Version": "2012-10-17", "Statement": v})
        }
        (_, serde_json::Value::Object(o)) if o.contains_key("Effect") => {
            serde_json::json!({"Version": "2012-10-17", "Statement": [o]})
        }
        (_, other) => other,
    })
}

/// Checks a pasted key policy with the application's checker (the API's) and shows the
/// findings in the form.
#[utoipa::path(post, path = "/portal/keys/policy-check", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region, policy"),
    responses(
        (status = 200, description = "the Add Keys form with the findings", content_type = "text/html"),
        (status = 303, description = "not signed in"),
        (status = 400, description = "the policy could not be read: the form with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn policy_check(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, "Add Keys", Nav::Security).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let c = choice(&form);
    let text = form.get("policy").cloned().unwrap_or_default();
    let key_id = form
        .get("key_id")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let mut typed = Typed {
        policy: text.clone(),
        key_id: key_id.clone().unwrap_or_default(),
        ..Typed::default()
    };
    let (Some(t), Some(p), Some(region)) = (c.db_type, c.provider, c.region.clone()) else {
        typed.findings = Some(
            r#"<p class="error">Choose a database type, provider and region first.</p>"#
                .to_string(),
        );
        return new_key_form(&state, &v, &c, &typed, StatusCode::BAD_REQUEST).await;
    };
    let doc = match as_policy(p, &text) {
        Ok(d) => d,
        Err(m) => {
            typed.findings = Some(format!(r#"<p class="error">{}</p>"#, esc(&m)));
            return new_key_form(&state, &v, &c, &typed, StatusCode::BAD_REQUEST).await;
        }
    };
    let (status, html) = match state
        .keys()
        .policy_check(&v.who, t, p.as_str(), &region, key_id.as_deref(), &doc)
        .await
    {
        Ok(r) => (StatusCode::OK, findings_html(&r)),
        Err(e) => (
            refused(&e),
            format!(r#"<p class="error">{}</p>"#, esc(&app_error_message(&e))),
        ),
    };
    typed.findings = Some(html);
    new_key_form(&state, &v, &c, &typed, status).await
}

/// One `<li>` per (what, why) finding, escaped.
fn finding_items<'a>(findings: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    findings
        .map(|(what, why)| format!(r#"<li><code>{}</code>: {}</li>"#, esc(what), esc(why)))
        .collect()
}

/// The organization findings: what lets the platform use the key for another organization.
fn unbound_findings(principal: &str, report: &keyplane_core::policy::CheckReport) -> String {
    let items = finding_items(
        report
            .organization_findings
            .iter()
            .map(|f| (f.action.as_str(), f.message.as_str())),
    );
    format!(
        r#"<p class="error" id="unbound-finding">The policy lets keyplane's role <code>{principal}</code> use this key for any organization, so registration refuses it: {} action(s) need the organization condition.</p><ul>{items}</ul>"#,
        report.organization_findings.len()
    )
}

/// Adds a key: the application's registration (every check, the live one included), as the
/// API runs it; on failure the form again with the reason next to the Key ID.
#[utoipa::path(post, path = "/portal/keys", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region, key_id"),
    responses(
        (status = 303, description = "added: to the keys page (or not signed in: to the sign-in page)"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
        (status = 400, description = "refused: the form with the reason", content_type = "text/html"),
    ))]
pub async fn add_key(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, "Add Keys", Nav::Security).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let c = choice(&form);
    let key_id = form
        .get("key_id")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let mut typed = Typed {
        key_id: key_id.clone(),
        ..Typed::default()
    };
    let (Some(t), Some(p), Some(region)) = (c.db_type, c.provider, c.region.clone()) else {
        typed.key_error = Some("Choose a database type, provider and region first.".into());
        return new_key_form(&state, &v, &c, &typed, StatusCode::BAD_REQUEST).await;
    };
    if key_id.is_empty() {
        typed.key_error = Some("Enter the key's ID.".into());
        return new_key_form(&state, &v, &c, &typed, StatusCode::BAD_REQUEST).await;
    }
    let mut req = KeyRegistration::one(v.who.org_id(), p, &key_id, &region);
    if p == Provider::Openbao
        && let Some((_, key)) = req.keys.first_mut()
    {
        let given = |f: &str| {
            form.get(f)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let credential = match c.login {
            LoginKind::AppRole => LoginCredential::AppRole {
                role_id: Zeroizing::new(given("role_id")),
                secret_id: Zeroizing::new(given("secret_id")),
            },
            // The application names the signed-in organization as the subject.
            LoginKind::Jwt => LoginCredential::PlatformJwt {
                subject: String::new(),
            },
        };
        key.login = Some(KeyLogin {
            role: given("role"),
            credential,
            ca_bundle_pem: None,
        });
    }
    match state.keys().register(&v.who, t, &req).await {
        Ok(_) => redirect(&format!("/portal/keys?added={}", url_encode(&key_id))),
        Err(e) => {
            let st = refused(&e);
            typed.key_error = Some(app_error_message(&e));
            new_key_form(&state, &v, &c, &typed, st).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::as_policy;
    use keyplane_core::Provider;

    #[test]
    fn pasted_statements_become_a_policy() {
        let aws = Provider::Aws;
        let p = as_policy(aws, r#"[{"Effect":"Allow"}]"#).unwrap();
        assert_eq!(p["Statement"][0]["Effect"], "Allow");
        let p = as_policy(aws, r#"{"Effect":"Deny"}"#).unwrap();
        assert_eq!(p["Statement"][0]["Effect"], "Deny");
        let p = as_policy(aws, r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
        assert_eq!(p["Statement"], serde_json::json!([]));
        assert!(
            as_policy(aws, "{oops")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn pasted_bindings_become_an_iam_policy() {
        let gcp = Provider::Gcp;
        let p = as_policy(gcp, r#"[{"role":"roles/x","members":["a"]}]"#).unwrap();
        assert_eq!(p["bindings"][0]["role"], "roles/x");
        let p = as_policy(gcp, r#"{"role":"roles/y","members":[]}"#).unwrap();
        assert_eq!(p["bindings"][0]["role"], "roles/y");
        let whole = r#"{"version":1,"etag":"BwX","bindings":[]}"#;
        assert_eq!(
            as_policy(gcp, whole).unwrap(),
            serde_json::from_str::<serde_json::Value>(whole).unwrap()
        );
    }
}
