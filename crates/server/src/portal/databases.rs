//! Databases: the organization's databases with status and, per region, the key that
//! encrypts them; create (saying which key will encrypt it before it is created), add a
//! region (refused in place, with a link to Add Keys, where a customer-keyed database has
//! no key), rewrap a region onto its region's current key after a replacement, terminate
//! after typing the name. Status follows the database without a reload.
//! Every change goes through the application's services, the ones the API calls, so the portal
//! enforces the same rules.
use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_app::databases::{DatabaseDetail, DatabaseQuery, KeyBinding, NewDatabase, NewRegion};
use keyplane_app::{App, AppError, Resource};
use keyplane_core::databases::CLASSIC_TIERS;
use keyplane_core::{DatabaseStatus, DbType, Permission, Provider};
use keyplane_store::{Database, KeyKind};
use uuid::Uuid;

use super::html::{Nav, esc, page, respond};
use super::{
    TAG, Visitor, form_post, message_page, provider_label, redirect, refused, session, signed_in,
    type_label, url_encode,
};
use crate::error::app_error_message;

fn tier_label(db: &Database) -> String {
    match db.db_type {
        DbType::Classic => format!("{} × {}", db.tier, db.capacity_units),
        DbType::Serverless => "serverless".to_string(),
    }
}

/// How the page's script and notices name a [`KeyBinding`]: `customer:ARN`, `platform`, or
/// `none` (it cannot be deployed there).
fn binding_code(b: &KeyBinding) -> String {
    match b {
        KeyBinding::Customer(arn) => format!("customer:{arn}"),
        KeyBinding::Platform => "platform".to_string(),
        KeyBinding::None => "none".to_string(),
    }
}

/// The notice shown before a database is created (the script computes the same text).
fn notice_text(code: &str, t: DbType, p: Provider, region: &str) -> String {
    match code.split_once(':') {
        Some(("customer", arn)) => format!(
            "This database will be encrypted with your customer key {arn}, registered for {} databases in {} {region}.",
            type_label(t),
            provider_label(p)
        ),
        _ if code == "platform" => format!(
            "No customer key is registered for {} databases in {} {region}: this database will be encrypted with a platform-managed key, and keeps it. Add a key first to use your own.",
            type_label(t),
            provider_label(p)
        ),
        _ => format!(
            "Databases cannot be deployed in {} {region}: there is no key for it. Contact support.",
            provider_label(p)
        ),
    }
}

/// Databases: the organization's databases.
#[utoipa::path(get, path = "/portal/databases", tag = TAG,
    params(
        ("created" = Option<Uuid>, Query, description = "set after a database was created"),
        ("terminated" = Option<Uuid>, Query, description = "set after a database was terminated"),
        ("rewrapped" = Option<String>, Query, description = "set after a region was rewrapped: the region"),
        ("rotated" = Option<String>, Query, description = "set after a region's data key was rotated: the region"),
    ),
    responses((status = 200, description = "the databases page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn databases_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut notice = String::new();
    if let Some(id) = q.get("created") {
        notice = format!(
            r#"<p class="notice" role="status">Database <code>{}</code> is being created.</p>"#,
            esc(id)
        );
    }
    if let Some(region) = q.get("rewrapped") {
        notice = format!(
            r#"<p class="notice" role="status">Rewrapped: the data key of {} is now encrypted under the region's current key. No data was rewritten.</p>"#,
            esc(region)
        );
    }
    if let Some(region) = q.get("rotated") {
        notice = format!(
            r#"<p class="notice" role="status">Data key rotated: the data of {} is now encrypted under a new data key.</p>"#,
            esc(region)
        );
    }
    if let Some(id) = q.get("terminated") {
        notice = format!(
            r#"<p class="notice" role="status">Database <code>{}</code> is being terminated: its data and its data keys are deleted.</p>"#,
            esc(id)
        );
    }
    let extra = q.get("terminated").and_then(|i| i.parse::<Uuid>().ok());
    list_page(&state, &v, StatusCode::OK, &notice, None, extra).await
}

/// A refusal shown in the database's row (adding a region, rewrapping one).
struct RowError {
    db: Uuid,
    /// The region asked for, kept selected.
    region: String,
    html: String,
}

async fn list_page(
    state: &App,
    v: &Visitor,
    status: StatusCode,
    notice: &str,
    row_error: Option<RowError>,
    extra: Option<Uuid>,
) -> Response {
    let hdr = v.header(Nav::Databases);
    let query = DatabaseQuery {
        limit: Some(100),
        ..Default::default()
    };
    let mut dbs = match state.databases().list(&v.who, &query).await {
        Ok(d) => d,
        Err(e @ AppError::Forbidden(_)) => {
            return message_page(
                StatusCode::FORBIDDEN,
                "Databases",
                &hdr,
                &app_error_message(&e),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: listing databases");
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Databases",
                &hdr,
                "The databases could not be read; please retry.",
            );
        }
    };
    // A database just terminated stays in view until the page is left.
    if let Some(id) = extra.filter(|id| !dbs.iter().any(|d| d.database.id == *id))
        && let Ok(d) = state.databases().get(&v.who, id).await
    {
        dbs.push(d);
    }
    let keys = state.databases().key_bindings(&v.who).await;
    let can_rewrap = v.who.require(Permission::OrgCmkWrite).is_ok();
    let mut rows = String::new();
    for detail in &dbs {
        let db = &detail.database;
        let live: Vec<_> = detail.live().collect();
        let done = matches!(
            db.status,
            DatabaseStatus::Terminating | DatabaseStatus::Terminated
        );
        let enc: String = live
            .iter()
            .map(|dc| {
                let key = match dc.key_kind {
                    KeyKind::Customer => format!("customer key <code>{}</code>", esc(&dc.key_id)),
                    KeyKind::Platform => "platform-managed key".to_string(),
                };
                // A region whose key was replaced since this datacenter was made: say so, and
                // offer to move it (the service checks again, in its transaction).
                let moved = match keys.binding(&state.config, db.db_type, db.provider, &dc.region) {
                    KeyBinding::Customer(current)
                        if dc.key_kind == KeyKind::Customer && current != dc.key_id && !done =>
                    {
                        let button = if can_rewrap {
                            format!(
                                r#"<form method="post" action="/portal/databases/{id}/datacenters/{dc}/rewrap" class="rewrap"><input type="hidden" name="csrf" value="{csrf}"><button class="secondary" type="submit" aria-label="Rewrap {r} of {name} onto the region's current key">Rewrap</button></form>"#,
                                id = db.id,
                                dc = esc(&url_encode(&dc.id)),
                                csrf = esc(&v.csrf),
                                r = esc(&dc.region),
                                name = esc(&db.name),
                            )
                        } else {
                            String::new()
                        };
                        format!(
                            r#"<div class="muted rewrap-due">The region's key is now <code>{}</code>.{button}</div>"#,
                            esc(&current)
                        )
                    }
                    _ => String::new(),
                };
                // The data key's age, and a rotation on request for an ACTIVE region.
                let rotated = match dc.data_key_rotated_at {
                    Some(t) => format!("data key rotated {}", t.format("%Y-%m-%d %H:%M UTC")),
                    None => "data key from deployment".to_string(),
                };
                let rotate = if state.data.rotating(dc) {
                    r#" <span class="status ROTATING" data-rotating="true">ROTATING</span>"#.to_string()
                } else if can_rewrap && dc.status == DatabaseStatus::Active && !done {
                    format!(
                        r#"<form method="post" action="/portal/databases/{id}/datacenters/{dc}/rotate-data-key" class="rotate"><input type="hidden" name="csrf" value="{csrf}"><button class="secondary" type="submit" aria-label="Rotate data key of {r} of {name}">Rotate data key</button></form>"#,
                        id = db.id,
                        dc = esc(&url_encode(&dc.id)),
                        csrf = esc(&v.csrf),
                        r = esc(&dc.region),
                        name = esc(&db.name),
                    )
                } else {
                    String::new()
                };
                format!(r#"<div data-region="{r}" data-datacenter-id="{d}">{r} <span class="status {s}">{s}</span>: {key}{moved} <span class="muted data-key-age">({rotated})</span>{rotate}</div>"#, r = esc(&dc.region), d = esc(&dc.id), s = dc.status.as_str())
            })
            .collect();
        let mut actions = String::new();
        if !done {
            let unlocked = keyplane_app::regions::unlocked(&state.config, &v.who.org, db.provider);
            let mut options = String::new();
            for r in unlocked
                .iter()
                .filter(|r| !live.iter().any(|d| d.region == **r))
            {
                let binding = keys.binding(&state.config, db.db_type, db.provider, r);
                let note = match (
                    db.customer_keyed,
                    matches!(binding, KeyBinding::Customer(_)),
                ) {
                    (true, false) => " (no key registered)",
                    (true, true) => " (customer key)",
                    (false, _) => "",
                };
                let chosen = row_error
                    .as_ref()
                    .is_some_and(|e| e.db == db.id && e.region == *r);
                options.push_str(&format!(
                    r#"<option value="{r}"{sel}>{r}{note}</option>"#,
                    r = esc(r),
                    sel = if chosen { " selected" } else { "" }
                ));
            }
            if !options.is_empty() {
                actions.push_str(&format!(
                    r#"<form method="post" action="/portal/databases/{id}/regions" class="add-region"><input type="hidden" name="csrf" value="{csrf}"><label class="visually-hidden" for="add-region-{id}">Region to add to {name}</label><select id="add-region-{id}" name="region">{options}</select><button class="secondary" type="submit">Add Region</button></form>"#,
                    id = db.id,
                    csrf = esc(&v.csrf),
                    name = esc(&db.name),
                ));
            }
            actions.push_str(&format!(
                r#"<a href="/portal/databases/{}/terminate">Terminate</a>"#,
                db.id
            ));
        }
        rows.push_str(&format!(
            r#"<tr data-db-id="{id}"><td data-label="Name" class="db-name">{name}</td><td data-label="Type">{ty} · {prov} · {tier}</td><td data-label="Status" class="db-status"><span class="status {status}">{status}</span><div class="muted db-message">{msg}</div></td><td data-label="Encryption" class="key db-encryption">{enc}</td><td data-label="Actions"><div class="row-actions">{actions}</div></td></tr>"#,
            id = db.id,
            name = esc(&db.name),
            ty = esc(type_label(db.db_type)),
            prov = esc(provider_label(db.provider)),
            tier = esc(&tier_label(db)),
            status = db.status.as_str(),
            msg = esc(&db.message),
        ));
        if let Some(err) = row_error.as_ref().filter(|e| e.db == db.id) {
            rows.push_str(&format!(
                r#"<tr class="row-error"><td colspan="5">{}</td></tr>"#,
                err.html
            ));
        }
    }
    let table = if dbs.is_empty() {
        r#"<p class="card">No databases yet.</p>"#.to_string()
    } else {
        format!(
            r#"<table class="keys" id="databases"><thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Encryption (per region)</th><th scope="col">Actions</th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    let body = format!(
        r#"<h1>Databases</h1>{notice}<p><a class="button" id="create-db" href="/portal/databases/new">Create Database</a></p>{table}"#
    );
    let nonce = session::random_hex();
    respond(
        status,
        page("Databases", &hdr, &body, Some(&nonce), LIVE_SCRIPT),
        Some(&nonce),
    )
}

/// Polls the status endpoint and updates each row's status in place.
const LIVE_SCRIPT: &str = r#"
(function(){var t=document.getElementById('databases');if(!t)return;
function tick(){fetch('/portal/databases/status',{credentials:'same-origin',headers:{'accept':'application/json'}}).then(function(r){return r.ok?r.json():null}).then(function(j){if(!j)return;
j.databases.forEach(function(d){var row=t.querySelector('tr[data-db-id="'+d.id+'"]');if(!row)return;
var s=row.querySelector('td.db-status .status');if(s&&s.textContent!==d.status){s.textContent=d.status;s.className='status '+d.status}
var m=row.querySelector('td.db-status .db-message');if(m)m.textContent=d.message;
d.regions.forEach(function(g){var e=row.querySelector('td.db-encryption [data-region="'+g.region+'"] .status');if(e&&e.textContent!==g.status){e.textContent=g.status;e.className='status '+g.status}})})}).catch(function(){})}
setInterval(tick,1500);})();
"#;

#[derive(serde::Serialize)]
struct LiveRegion {
    region: String,
    status: &'static str,
}

#[derive(serde::Serialize)]
struct LiveDatabase {
    id: Uuid,
    status: &'static str,
    message: String,
    regions: Vec<LiveRegion>,
}

#[derive(serde::Serialize)]
struct LiveStatus {
    databases: Vec<LiveDatabase>,
}

/// The databases' statuses, for the page's live updates (cookie session; JSON).
#[utoipa::path(get, path = "/portal/databases/status", tag = TAG,
    responses(
        (status = 200, description = "every database's status, terminated ones included", content_type = "application/json"),
        (status = 401, description = "not signed in"),
    ))]
pub async fn databases_status(State(state): State<App>, headers: HeaderMap) -> Response {
    let Ok(v) = signed_in(&state, &headers).await else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"errors": [{"message": "not signed in"}]})),
        )
            .into_response();
    };
    let query = DatabaseQuery {
        include: Some("all".to_string()),
        limit: Some(100),
        ..Default::default()
    };
    let dbs = match state.databases().list(&v.who, &query).await {
        Ok(d) => d,
        Err(AppError::Forbidden(_)) => {
            return (
                StatusCode::FORBIDDEN,
                Json(
                    serde_json::json!({"errors": [{"message": "no permission to view databases"}]}),
                ),
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: database status");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"errors": [{"message": "internal error"}]})),
            )
                .into_response();
        }
    };
    let mut out = Vec::with_capacity(dbs.len());
    for DatabaseDetail {
        database: db,
        datacenters,
        ..
    } in dbs
    {
        let regions = datacenters
            .into_iter()
            // Terminated regions too (oldest first, so a region added again wins): the page
            // shows a terminated database's regions going TERMINATED.
            .map(|d| LiveRegion {
                region: d.region,
                status: d.status.as_str(),
            })
            .collect();
        out.push(LiveDatabase {
            id: db.id,
            status: db.status.as_str(),
            message: db.message,
            regions,
        });
    }
    let mut res = Json(LiveStatus { databases: out }).into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

/// What the create form was given.
#[derive(Clone)]
struct CreateForm {
    name: String,
    keyspace: String,
    db_type: DbType,
    provider: Provider,
    region: String,
    tier: String,
}

impl CreateForm {
    fn from(form: &HashMap<String, String>, state: &App) -> CreateForm {
        let db_type = form
            .get("type")
            .and_then(|t| t.parse().ok())
            .unwrap_or(DbType::Classic);
        let provider = form
            .get("provider")
            .and_then(|p| p.parse().ok())
            .unwrap_or(Provider::Aws);
        let region = form
            .get("region")
            .filter(|r| !r.is_empty())
            .cloned()
            .or_else(|| state.config.regions(provider).first().cloned())
            .unwrap_or_default();
        let default_tier = if db_type == DbType::Serverless {
            "serverless"
        } else {
            CLASSIC_TIERS[0]
        };
        CreateForm {
            name: form.get("name").cloned().unwrap_or_default(),
            keyspace: form
                .get("keyspace")
                .filter(|k| !k.is_empty())
                .cloned()
                .unwrap_or_else(|| "default_keyspace".into()),
            db_type,
            provider,
            region,
            tier: form
                .get("tier")
                .filter(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| default_tier.into()),
        }
    }
}

/// Shows the region's key as the selections change (the server said the same at load).
const CREATE_SCRIPT: &str = r#"
(function(){var ty=document.getElementById('db-type'),pr=document.getElementById('db-provider'),rg=document.getElementById('db-region'),ti=document.getElementById('db-tier'),n=document.getElementById('encryption-notice');
var labels={aws:'Amazon Web Services',gcp:'Google Cloud',azure:'Microsoft Azure'},tl={classic:'Classic',serverless:'Serverless'};
function sync(){var p=pr.value,t=ty.value;
Array.prototype.forEach.call(rg.options,function(o){var ok=o.getAttribute('data-provider')===p;o.hidden=!ok;o.disabled=!ok||o.hasAttribute('data-locked')});
if(rg.selectedOptions.length===0||rg.selectedOptions[0].disabled){var f=Array.prototype.find.call(rg.options,function(o){return !o.disabled});if(f)rg.value=f.value}
Array.prototype.forEach.call(ti.options,function(o){var ok=(t==='serverless')===(o.value==='serverless');o.hidden=!ok;o.disabled=!ok});
if(ti.selectedOptions.length===0||ti.selectedOptions[0].disabled){var g=Array.prototype.find.call(ti.options,function(o){return !o.disabled});if(g)ti.value=g.value}
var o=rg.selectedOptions[0];if(!o){n.textContent='Choose a region.';return}
var code=o.getAttribute('data-'+t)||'none',r=o.value;
if(code.indexOf('customer:')===0){n.textContent='This database will be encrypted with your customer key '+code.slice(9)+', registered for '+tl[t]+' databases in '+labels[p]+' '+r+'.';n.className='notice'}
else if(code==='platform'){n.textContent='No customer key is registered for '+tl[t]+' databases in '+labels[p]+' '+r+': this database will be encrypted with a platform-managed key, and keeps it. Add a key first to use your own.';n.className='alert'}
else{n.textContent='Databases cannot be deployed in '+labels[p]+' '+r+': there is no key for it. Contact support.';n.className='alert'}}
[ty,pr,rg].forEach(function(e){e.addEventListener('change',sync)});sync();})();
"#;

async fn create_form(
    state: &App,
    v: &Visitor,
    f: &CreateForm,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hdr = v.header(Nav::Databases);
    if let Err(e) = v.who.require(Permission::OrgDbCreate) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Create Database",
            &hdr,
            &app_error_message(&e),
        );
    }
    let sel = |a: bool| if a { " selected" } else { "" };
    let types: String = [DbType::Classic, DbType::Serverless]
        .iter()
        .map(|t| {
            format!(
                r#"<option value="{}"{}>{}</option>"#,
                t.as_str(),
                sel(*t == f.db_type),
                type_label(*t)
            )
        })
        .collect();
    let providers: String = Provider::ALL
        .iter()
        .filter(|p| !state.config.regions(**p).is_empty())
        .map(|p| {
            format!(
                r#"<option value="{}"{}>{}</option>"#,
                p.as_str(),
                sel(*p == f.provider),
                provider_label(*p)
            )
        })
        .collect();
    let keys = state.databases().key_bindings(&v.who).await;
    let mut regions = String::new();
    for p in Provider::ALL {
        let unlocked = keyplane_app::regions::unlocked(&state.config, &v.who.org, p);
        for r in state.config.regions(p) {
            let open = unlocked.contains(&r.as_str());
            let classic = binding_code(&keys.binding(&state.config, DbType::Classic, p, r));
            let serverless = binding_code(&keys.binding(&state.config, DbType::Serverless, p, r));
            regions.push_str(&format!(
                r#"<option value="{r}" data-provider="{p}" data-classic="{c}" data-serverless="{s}"{sel}{locked}>{r}{note}</option>"#,
                r = esc(r),
                p = p.as_str(),
                c = esc(&classic),
                s = esc(&serverless),
                sel = sel(p == f.provider && *r == f.region),
                locked = if open { "" } else { " data-locked disabled" },
                note = if open { "" } else { " (contact support)" },
            ));
        }
    }
    let tiers: String = CLASSIC_TIERS
        .iter()
        .copied()
        .chain(["serverless"])
        .map(|t| {
            format!(
                r#"<option value="{t}"{}>{t}</option>"#,
                sel(f.tier.eq_ignore_ascii_case(t))
            )
        })
        .collect();
    let code = binding_code(&keys.binding(&state.config, f.db_type, f.provider, &f.region));
    let notice_class = if code.starts_with("customer:") {
        "notice"
    } else {
        "alert"
    };
    let err = error
        .map(|m| {
            format!(
                r#"<p class="alert" role="alert" id="create-error">{}</p>"#,
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<p class="muted"><a href="/portal/databases">Databases</a> › Create</p><h1>Create Database</h1>{err}
<form method="post" action="/portal/databases" class="card"><input type="hidden" name="csrf" value="{csrf}">
<label for="db-name">Database name</label><input type="text" id="db-name" name="name" value="{name}" required maxlength="50" autocomplete="off">
<label for="db-keyspace">Keyspace</label><input type="text" id="db-keyspace" name="keyspace" value="{keyspace}" required maxlength="48">
<label for="db-type">Database type</label><select id="db-type" name="type">{types}</select>
<label for="db-provider">Provider</label><select id="db-provider" name="provider">{providers}</select>
<label for="db-region">Region</label><select id="db-region" name="region">{regions}</select>
<label for="db-tier">Tier</label><select id="db-tier" name="tier">{tiers}</select>
<h2>Encryption</h2><p id="encryption-notice" class="{notice_class}" role="status" aria-live="polite">{notice}</p>
<p class="muted">The key is fixed when the database is created: registering a key later does not change existing databases.</p>
<button class="primary" type="submit">Create Database</button></form>"#,
        csrf = esc(&v.csrf),
        name = esc(&f.name),
        keyspace = esc(&f.keyspace),
        notice = esc(&notice_text(&code, f.db_type, f.provider, &f.region)),
    );
    let nonce = session::random_hex();
    respond(
        status,
        page("Create Database", &hdr, &body, Some(&nonce), CREATE_SCRIPT),
        Some(&nonce),
    )
}

/// The create-database form, which says which key will encrypt the database.
#[utoipa::path(get, path = "/portal/databases/new", tag = TAG,
    params(
        ("type" = Option<String>, Query, description = "classic or serverless"),
        ("provider" = Option<String>, Query, description = "aws, gcp or azure"),
        ("region" = Option<String>, Query, description = "a catalog region"),
    ),
    responses((status = 200, description = "the form", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn new_database_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let f = CreateForm::from(&q, &state);
    create_form(&state, &v, &f, None, StatusCode::OK).await
}

/// Creates a database through the application's service, as the API does.
#[utoipa::path(post, path = "/portal/databases", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, name, keyspace, type, provider, region, tier"),
    responses(
        (status = 303, description = "created: to the databases page"),
        (status = 400, description = "refused: the form with the reason", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn create_database(
    State(state): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, "Databases", Nav::Databases).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let f = CreateForm::from(&form, &state);
    let req = NewDatabase {
        name: f.name.trim().to_string(),
        keyspace: f.keyspace.trim().to_string(),
        cloud_provider: f.provider.as_str().to_ascii_uppercase(),
        tier: if f.db_type == DbType::Serverless {
            "serverless".into()
        } else {
            f.tier.clone()
        },
        capacity_units: 1,
        region: f.region.clone(),
        db_type: (f.db_type == DbType::Serverless).then(|| "vector".to_string()),
    };
    match state.databases().create(&v.who, &req).await {
        Ok(d) => redirect(&format!("/portal/databases?created={}", d.database.id)),
        Err(e) => create_form(&state, &v, &f, Some(&app_error_message(&e)), refused(&e)).await,
    }
}

fn parse_id(raw: &str) -> Option<Uuid> {
    raw.parse().ok()
}

async fn find_db(state: &App, v: &Visitor, raw: &str) -> Result<DatabaseDetail, Response> {
    let not_found = || {
        message_page(
            StatusCode::NOT_FOUND,
            "Databases",
            &v.header(Nav::Databases),
            "No such database in this organization.",
        )
    };
    let Some(id) = parse_id(raw) else {
        return Err(not_found());
    };
    match state.databases().lookup(&v.who, id).await {
        Ok(d) => Ok(d),
        Err(AppError::NotFound(Resource::Database(_))) => Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "portal: reading a database");
            Err(message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Databases",
                &v.header(Nav::Databases),
                "The database could not be read; please retry.",
            ))
        }
    }
}

/// A signed-in, CSRF-checked form about one of the organization's databases.
async fn db_form(
    state: &App,
    headers: &HeaderMap,
    body: &[u8],
    id: &str,
) -> Result<(Visitor, HashMap<String, String>, DatabaseDetail), Response> {
    let (v, form) = form_post(state, headers, body, "Databases", Nav::Databases).await?;
    let db = find_db(state, &v, id).await?;
    Ok((v, form, db))
}

/// Adds a region through the application's service; a refusal is shown in the database's row, with
/// a link to Add Keys for that region when the database needs a customer key there.
#[utoipa::path(post, path = "/portal/databases/{id}/regions", tag = TAG,
    params(("id" = Uuid, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, region"),
    responses(
        (status = 303, description = "the region is being added: to the databases page"),
        (status = 422, description = "refused: the databases page with the reason in the row", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn add_region(
    State(state): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (v, form, detail) = match db_form(&state, &headers, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let db = &detail.database;
    let region = form.get("region").cloned().unwrap_or_default();
    let add = NewRegion {
        tier: db.tier.clone(),
        cloud_provider: db.provider.as_str().to_ascii_uppercase(),
        region: region.clone(),
    };
    match state.databases().add_region(&v.who, db.id, &[add]).await {
        Ok(()) => redirect(&format!("/portal/databases?created={}", db.id)),
        Err(e) => {
            let html = if matches!(e, AppError::NoCustomerKey { .. }) {
                format!(
                    r#"<p class="alert" role="alert" id="region-error">{name} is encrypted with customer keys, and no {ty} key is registered for {prov} {region}. Register one first, then add the region. <a class="add-key-link" href="/portal/keys/new?type={t}&amp;provider={p}&amp;region={r}">Add a key for {region}</a></p>"#,
                    name = esc(&db.name),
                    ty = esc(type_label(db.db_type)),
                    prov = esc(provider_label(db.provider)),
                    region = esc(&region),
                    t = db.db_type.as_str(),
                    p = db.provider.as_str(),
                    r = esc(&url_encode(&region)),
                )
            } else {
                format!(
                    r#"<p class="alert" role="alert" id="region-error">{}</p>"#,
                    esc(&app_error_message(&e))
                )
            };
            let row = RowError {
                db: db.id,
                region: region.clone(),
                html,
            };
            list_page(&state, &v, refused(&e), "", Some(row), None).await
        }
    }
}

/// Rewraps one datacenter onto its region's current key through the application's service; a
/// refusal is shown in the database's row.
#[utoipa::path(post, path = "/portal/databases/{id}/datacenters/{dc_id}/rewrap", tag = TAG,
    params(("id" = Uuid, Path), ("dc_id" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf"),
    responses(
        (status = 303, description = "rewrapped: to the databases page"),
        (status = 404, description = "no such database or datacenter", content_type = "text/html"),
        (status = 409, description = "refused (not ready, key revoked, platform-keyed): the databases page with the reason in the row", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn rewrap(
    State(state): State<App>,
    headers: HeaderMap,
    Path((id, dc_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (v, _, detail) = match db_form(&state, &headers, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let db = &detail.database;
    match state.keys().rewrap(&v.who, db.id, &dc_id).await {
        Ok(dc) => redirect(&format!(
            "/portal/databases?rewrapped={}",
            url_encode(&dc.region)
        )),
        Err(e) => refused_in_row(&state, &v, db.id, "rewrap-error", &e).await,
    }
}

/// The databases page with a datacenter action's refusal in the database's row.
async fn refused_in_row(state: &App, v: &Visitor, db: Uuid, id: &str, e: &AppError) -> Response {
    let html = format!(
        r#"<p class="alert" role="alert" id="{id}">{}</p>"#,
        esc(&app_error_message(e))
    );
    let row = RowError {
        db,
        region: String::new(),
        html,
    };
    list_page(state, v, refused(e), "", Some(row), None).await
}

/// Rotates one datacenter's data key through the application's service; a refusal is shown
/// in the database's row.
#[utoipa::path(post, path = "/portal/databases/{id}/datacenters/{dc_id}/rotate-data-key", tag = TAG,
    params(("id" = Uuid, Path), ("dc_id" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf"),
    responses(
        (status = 303, description = "rotated (to the databases page), or not signed in"),
        (status = 404, description = "no such database or datacenter", content_type = "text/html"),
        (status = 409, description = "refused (not ACTIVE, a rotation already running): the databases page with the reason in the row", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong, or the role may not", content_type = "text/html"),
    ))]
pub async fn rotate_data_key(
    State(state): State<App>,
    headers: HeaderMap,
    Path((id, dc_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (v, _, detail) = match db_form(&state, &headers, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let db = &detail.database;
    match state.data_keys().rotate(&v.who, db.id, &dc_id).await {
        Ok((dc, _)) => redirect(&format!(
            "/portal/databases?rotated={}",
            url_encode(&dc.region)
        )),
        Err(e) => refused_in_row(&state, &v, db.id, "rotate-error", &e).await,
    }
}

fn terminate_form(
    v: &Visitor,
    db: &Database,
    regions: &[String],
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let err = error
        .map(|m| {
            format!(
                r#"<p class="alert" role="alert" id="confirm-error">{}</p>"#,
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<p class="muted"><a href="/portal/databases">Databases</a> › Terminate</p><h1>Terminate {name}</h1>{err}
<div class="card"><p>Terminating deletes the database in every region ({regions}): its data files and its data keys. This cannot be undone.</p>
<form method="post" action="/portal/databases/{id}/terminate"><input type="hidden" name="csrf" value="{csrf}">
<label for="confirm-name">Type the database name, <strong>{name}</strong>, to confirm</label>
<input type="text" id="confirm-name" name="confirm" autocomplete="off" spellcheck="false"{invalid}>
<p><button class="danger" type="submit">Terminate database</button> <a href="/portal/databases">Cancel</a></p></form></div>"#,
        name = esc(&db.name),
        regions = esc(&regions.join(", ")),
        id = db.id,
        csrf = esc(&v.csrf),
        invalid = if error.is_some() {
            r#" aria-invalid="true" aria-describedby="confirm-error""#
        } else {
            ""
        },
    );
    respond(
        status,
        page(
            "Terminate database",
            &v.header(Nav::Databases),
            &body,
            None,
            "",
        ),
        None,
    )
}

fn live_regions(d: &DatabaseDetail) -> Vec<String> {
    d.live().map(|dc| dc.region.clone()).collect()
}

/// The confirmation page of a termination.
#[utoipa::path(get, path = "/portal/databases/{id}/terminate", tag = TAG,
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the confirmation form", content_type = "text/html"), (status = 303, description = "not signed in"), (status = 404, description = "no such database", content_type = "text/html")))]
pub async fn terminate_page(
    State(state): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let detail = match find_db(&state, &v, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    terminate_form(
        &v,
        &detail.database,
        &live_regions(&detail),
        None,
        StatusCode::OK,
    )
}

/// Terminates a database once its name was typed, through the application's service.
#[utoipa::path(post, path = "/portal/databases/{id}/terminate", tag = TAG,
    params(("id" = Uuid, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, confirm"),
    responses(
        (status = 303, description = "terminating: to the databases page"),
        (status = 400, description = "the name was not typed: the form again", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn terminate(
    State(state): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (v, form, detail) = match db_form(&state, &headers, &body, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let db = &detail.database;
    if form.get("confirm").map(|c| c.trim()) != Some(db.name.as_str()) {
        return terminate_form(
            &v,
            db,
            &live_regions(&detail),
            Some("The name typed does not match; nothing was terminated."),
            StatusCode::BAD_REQUEST,
        );
    }
    match state.databases().terminate(&v.who, db.id).await {
        Ok(()) => redirect(&format!("/portal/databases?terminated={}", db.id)),
        Err(e) => {
            // As the database is now, which the refusal may be about.
            let now = state.databases().lookup(&v.who, db.id).await;
            let regions = live_regions(now.as_ref().unwrap_or(&detail));
            terminate_form(&v, db, &regions, Some(&app_error_message(&e)), refused(&e))
        }
    }
}
