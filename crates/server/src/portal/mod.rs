//! The web portal, server-rendered in plain Rust: sign in with an application token (a
//! server-side session in an HttpOnly, SameSite=Strict cookie), Settings, and Security →
//! Key Encryption with Add Keys. No JavaScript framework and nothing fetched at run time;
//! the only script is a few lines for the copy buttons, allowed by a per-response nonce.
//!
//! Every route is registered through `utoipa_axum::routes!` like the API's, documented as
//! an HTML operation without the Bearer scheme (the portal authenticates by its cookie).
pub mod html;
pub mod session;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::{DbType, Permission, Provider};

use crate::app::AppState;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::keys::{self, ProviderKey, RegisterKey, RegisterQuery};
use html::{Nav, esc, header, page, respond};
use session::{CSRF_COOKIE, SESSION_COOKIE, Session};

const TAG: &str = "portal";

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")));
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn add_cookie(res: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(SET_COOKIE, v);
    }
}

/// The signed-in visitor, or the redirect to the sign-in page. The token is resolved on
/// every request: a revoked token ends the session.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<(String, Session, Caller), Response> {
    let Some((id, s)) = session::current(headers) else {
        return Err(redirect("/portal/signin"));
    };
    match Caller::from_token(state, s.token()).await {
        Ok(c) => Ok((id, s, c)),
        Err(_) => {
            session::destroy(&id);
            let mut res = redirect("/portal/signin");
            add_cookie(&mut res, session::set_cookie(SESSION_COOKIE, None));
            Err(res)
        }
    }
}

/// A CSRF check of a signed-in form: the field must equal the session's token.
fn csrf_ok(s: &Session, form: &HashMap<String, String>) -> bool {
    form.get("csrf").is_some_and(|v| session::same_secret(v, &s.csrf))
}

fn message_page(status: StatusCode, title: &str, hdr: &str, msg: &str) -> Response {
    let body = format!(r#"<h1>{}</h1><p class="alert" role="alert">{}</p><p><a href="/">Back</a></p>"#, esc(title), esc(msg));
    respond(status, page(title, hdr, &body, None, ""), None)
}

// ---------------------------------------------------------------- sign in / out

/// The portal's entry: the keys page when signed in, else the sign-in page.
#[utoipa::path(get, path = "/", tag = TAG,
    responses((status = 303, description = "to the portal's keys page or its sign-in page")))]
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(_) => redirect("/portal/keys"),
        Err(r) => r,
    }
}

fn signin_form(status: StatusCode, message: Option<&str>) -> Response {
    let csrf = session::random_hex();
    let msg = message
        .map(|m| format!(r#"<p class="alert" role="alert" id="signin-error">{}</p>"#, esc(m)))
        .unwrap_or_default();
    let described = if message.is_some() { r#" aria-describedby="signin-error""# } else { "" };
    let body = format!(
        r#"<h1>Sign in</h1>
<div class="card"><form method="post" action="/portal/signin">{msg}
<input type="hidden" name="csrf" value="{csrf}">
<label for="token">Application token</label>
<input type="password" id="token" name="token" autocomplete="off" required placeholder="AstraCS:…"{described}>
<p class="muted">A token of your organization (Settings → Tokens in the API: <code>POST /v2/clientIdSecrets</code>). It stays on the server; the browser keeps only a session cookie.</p>
<button class="primary" type="submit">Sign in</button></form></div>"#,
        csrf = esc(&csrf),
    );
    let hdr = r#"<header><span class="brand">keyplane</span></header>"#;
    let mut res = respond(status, page("Sign in", hdr, &body, None, ""), None);
    add_cookie(&mut res, session::set_cookie(CSRF_COOKIE, Some(&csrf)));
    res
}

/// The sign-in form (application token).
#[utoipa::path(get, path = "/portal/signin", tag = TAG,
    responses((status = 200, description = "the sign-in form", content_type = "text/html")))]
pub async fn signin_page() -> Response {
    signin_form(StatusCode::OK, None)
}

/// Signs in with an application token: starts a server-side session.
#[utoipa::path(post, path = "/portal/signin", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token, csrf"),
    responses(
        (status = 303, description = "signed in: to the keys page"),
        (status = 401, description = "the token was refused", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn signin(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = session::parse_form(&body);
    let cookie = session::cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    let field = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !session::same_secret(&cookie, field) {
        return signin_form(StatusCode::FORBIDDEN, Some("The form expired or was not sent by this page; please sign in again."));
    }
    let raw = form.get("token").map(String::as_str).unwrap_or_default();
    let caller = match Caller::from_token(&state, raw).await {
        Ok(c) => c,
        Err(e) => return signin_form(StatusCode::UNAUTHORIZED, Some(&format!("That token was not accepted: {}", e.public_message()))),
    };
    crate::audit::record(&state, &caller, "portal.signin", &caller.client_id, "success", "").await;
    let (id, _) = session::create(caller.client_id.clone(), raw.trim().to_string());
    let mut res = redirect("/portal/keys");
    add_cookie(&mut res, session::set_cookie(SESSION_COOKIE, Some(&id)));
    add_cookie(&mut res, session::set_cookie(CSRF_COOKIE, None));
    res
}

/// Signs out: ends the session.
#[utoipa::path(post, path = "/portal/signout", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf"),
    responses(
        (status = 303, description = "to the sign-in page"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn signout(headers: HeaderMap, body: Bytes) -> Response {
    let Some((id, s)) = session::current(&headers) else {
        return redirect("/portal/signin");
    };
    if !csrf_ok(&s, &session::parse_form(&body)) {
        return message_page(StatusCode::FORBIDDEN, "Not signed out", "", "The form was not sent by this portal's page (CSRF check failed).");
    }
    session::destroy(&id);
    let mut res = redirect("/portal/signin");
    add_cookie(&mut res, session::set_cookie(SESSION_COOKIE, None));
    res
}

// ---------------------------------------------------------------- settings

/// Settings: the organization managed in this session.
#[utoipa::path(get, path = "/portal/settings", tag = TAG,
    responses((status = 200, description = "the settings page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn settings_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s, caller) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let hdr = header(&caller.org.name, &s.csrf, Nav::Settings);
    let body = format!(
        r#"<h1>Settings</h1>
<div class="card"><h2>Organization</h2><dl><dt>Name</dt><dd>{name}</dd><dt>ID</dt><dd><code>{id}</code></dd><dt>Signed in as</dt><dd>token <code>{client}</code> ({role})</dd></dl></div>
<div class="card"><h2>Security</h2><p><a href="/portal/keys">Key Encryption</a>: the customer keys that encrypt this organization's databases.</p></div>"#,
        name = esc(&caller.org.name),
        id = esc(&caller.org.id.to_string()),
        client = esc(&caller.client_id),
        role = esc(&format!("{:?}", caller.role)),
    );
    respond(StatusCode::OK, page("Settings", &hdr, &body, None, ""), None)
}

// ---------------------------------------------------------------- key encryption

/// Security → Key Encryption: the organization's registered keys.
#[utoipa::path(get, path = "/portal/keys", tag = TAG,
    params(("added" = Option<String>, Query, description = "set after a key was added")),
    responses((status = 200, description = "the keys page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn keys_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (_, s, caller) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let hdr = header(&caller.org.name, &s.csrf, Nav::Security);
    if let Err(e) = caller.require(Permission::OrgCmkRead) {
        return message_page(StatusCode::FORBIDDEN, "Key Encryption", &hdr, &e.public_message());
    }
    let keys = match state.store.list_customer_keys(caller.org_id(), None).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "portal: listing keys");
            return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Key Encryption", &hdr, "The keys could not be read; please retry.");
        }
    };
    let notice = match q.get("added") {
        Some(k) => format!(r#"<p class="notice" role="status">Key added: <code>{}</code></p>"#, esc(k)),
        None => String::new(),
    };
    let rows: String = keys
        .iter()
        .map(|k| {
            let status = k.status.as_str();
            let reason = k
                .status_reason
                .as_deref()
                .map(|r| format!(r#"<div class="muted">{}</div>"#, esc(r)))
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
            format!(
                r#"<tr><td data-label="Database type">{ty}</td><td data-label="Provider">{prov}</td><td data-label="Region">{region}</td><td data-label="Key ID" class="key">{key}</td><td data-label="Status"><span class="status {status}">{status}</span>{reason}</td><td data-label="Last check">{check}</td></tr>"#,
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
            r#"<table class="keys"><caption class="muted" style="text-align:left">Registered keys ({n})</caption><thead><tr><th scope="col">Database type</th><th scope="col">Provider</th><th scope="col">Region</th><th scope="col">Key ID</th><th scope="col">Status</th><th scope="col">Last check</th></tr></thead><tbody>{rows}</tbody></table>"#,
            n = keys.len()
        )
    };
    let body = format!(
        r#"<p class="muted"><a href="/portal/settings">Settings</a> › Security</p><h1>Key Encryption</h1>{notice}
<p><a class="button" href="/portal/keys/new">Add Keys</a></p>{table}"#
    );
    respond(StatusCode::OK, page("Key Encryption", &hdr, &body, None, ""), None)
}

fn type_label(t: DbType) -> &'static str {
    match t {
        DbType::Classic => "Classic",
        DbType::Serverless => "Serverless",
    }
}

fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Aws => "AWS",
        Provider::Gcp => "GCP",
        Provider::Azure => "Azure",
    }
}

const COPY_SCRIPT: &str = r#"document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){var t=document.getElementById(b.getAttribute('data-target')).textContent;navigator.clipboard.writeText(t).then(function(){b.textContent='Copied';setTimeout(function(){b.textContent='Copy'},1500)},function(){b.textContent='Select and copy manually'})})})"#;

/// What the Add Keys form was given so far.
struct Choice {
    db_type: Option<DbType>,
    provider: Option<Provider>,
    region: Option<String>,
}

fn choice(q: &HashMap<String, String>) -> Choice {
    let db_type = q.get("type").and_then(|t| t.parse::<DbType>().ok());
    let provider = q.get("provider").and_then(|p| p.parse::<Provider>().ok());
    let region = q.get("region").filter(|r| !r.is_empty()).cloned();
    Choice { db_type, provider, region }
}

async fn new_key_form(
    state: &AppState,
    s: &Session,
    caller: &Caller,
    c: &Choice,
    key_id: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hdr = header(&caller.org.name, &s.csrf, Nav::Security);
    if let Err(e) = caller.require(Permission::OrgCmkWrite) {
        return message_page(StatusCode::FORBIDDEN, "Add Keys", &hdr, &e.public_message());
    }
    let radio = |name: &str, value: &str, label: &str, checked: bool, disabled: bool, note: &str| {
        format!(
            r#"<label class="choice{cls}"><input type="radio" name="{name}" value="{value}"{chk}{dis}> {label}{note}</label>"#,
            cls = if disabled { " disabled" } else { "" },
            name = esc(name),
            value = esc(value),
            chk = if checked { " checked" } else { "" },
            dis = if disabled { " disabled" } else { "" },
            label = esc(label),
            note = if note.is_empty() { String::new() } else { format!(r#" <span class="muted">({})</span>"#, esc(note)) },
        )
    };
    let mut steps = String::new();
    steps.push_str(r#"<fieldset><legend>1. Database type</legend>"#);
    for t in [DbType::Classic, DbType::Serverless] {
        steps.push_str(&radio("type", t.as_str(), type_label(t), c.db_type == Some(t), false, ""));
    }
    steps.push_str("</fieldset>");
    let mut region_ok = false;
    if let Some(t) = c.db_type {
        steps.push_str(r#"<fieldset><legend>2. Provider</legend>"#);
        for p in Provider::ALL {
            let ok = p.supports(t);
            let note = if ok { String::new() } else { format!("not available for {}", type_label(t)) };
            steps.push_str(&radio("provider", p.as_str(), provider_label(p), ok && c.provider == Some(p), !ok, &note));
        }
        steps.push_str("</fieldset>");
        if let Some(p) = c.provider.filter(|p| p.supports(t)) {
            let unlocked = crate::regions::unlocked(&state.config, &caller.org, p);
            steps.push_str(r#"<fieldset><legend>3. Region</legend>"#);
            for r in state.config.regions(p) {
                let open = unlocked.contains(&r.as_str());
                let chosen = c.region.as_deref() == Some(r.as_str());
                region_ok |= open && chosen;
                steps.push_str(&radio("region", r, r, open && chosen, !open, if open { "" } else { "contact support" }));
            }
            if state.config.regions(p).is_empty() {
                steps.push_str(r#"<p class="muted">No region of this provider is in the catalog; contact support.</p>"#);
            }
            steps.push_str("</fieldset>");
        }
    }
    let chooser = format!(
        r#"<form method="get" action="/portal/keys/new">{steps}<button class="primary" type="submit">Continue</button></form>"#
    );
    let mut details = String::new();
    let mut nonce = None;
    if let (Some(t), Some(p), Some(region), true) = (c.db_type, c.provider, c.region.as_deref(), region_ok) {
        match crate::registration::platform_identity(state, caller.org_id(), p, region).await {
            Err(e) => details.push_str(&format!(r#"<p class="alert" role="alert">{}</p>"#, esc(&e.public_message()))),
            Ok(identity) => {
                nonce = Some(session::random_hex());
                details.push_str(&format!(
                    r#"<div class="card"><h2 id="pid-h">4. Cloud Provider ID</h2><p class="muted">The account keyplane acts from in {region}. Trust it in your key policy.</p>
<pre id="provider-id" aria-labelledby="pid-h">{acct}</pre><button type="button" class="copy" data-target="provider-id" aria-label="Copy the Cloud Provider ID">Copy</button></div>"#,
                    region = esc(region),
                    acct = esc(&identity.account_id),
                ));
                if p == Provider::Aws {
                    let statements = keyplane_core::policy::recommended_statements(&identity.principal);
                    let text = statements
                        .iter()
                        .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(",\n");
                    details.push_str(&format!(
                        r#"<div class="card"><h2 id="pol-h">5. Key policy statements</h2><p class="muted">Add these statements to the <code>Statement</code> list of your key's policy (principal <code>{principal}</code>).</p>
<pre id="policy" aria-labelledby="pol-h">{text}</pre><button type="button" class="copy" data-target="policy" aria-label="Copy the key policy statements">Copy</button></div>"#,
                        principal = esc(&identity.principal),
                        text = esc(&text),
                    ));
                } else {
                    details.push_str(&format!(
                        r#"<div class="card"><p>Grant <code>{}</code> the use of your key.</p></div>"#,
                        esc(&identity.principal)
                    ));
                }
                let hint = match p {
                    Provider::Aws => format!("arn:aws:kms:{region}:ACCOUNT:key/KEY-ID"),
                    Provider::Gcp => "projects/P/locations/L/keyRings/R/cryptoKeys/K".to_string(),
                    Provider::Azure => "the key's identifier".to_string(),
                };
                let err = error
                    .map(|m| format!(r#"<p class="error" id="key-error" role="alert">{}</p>"#, esc(m)))
                    .unwrap_or_default();
                let described = if error.is_some() { "key-hint key-error" } else { "key-hint" };
                details.push_str(&format!(
                    r#"<form method="post" action="/portal/keys" class="card"><h2>6. Key ID</h2>
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="type" value="{t}"><input type="hidden" name="provider" value="{p}"><input type="hidden" name="region" value="{region}">
<label for="key_id">Key ID</label><input type="text" id="key_id" name="key_id" value="{key_id}" required spellcheck="false" autocomplete="off" aria-describedby="{described}"{invalid}>
<p class="muted" id="key-hint">Format: <code>{hint}</code></p>{err}
<button class="primary" type="submit">Add Key</button></form>"#,
                    csrf = esc(&s.csrf),
                    t = esc(t.as_str()),
                    p = esc(p.as_str()),
                    region = esc(region),
                    key_id = esc(key_id),
                    hint = esc(&hint),
                    invalid = if error.is_some() { r#" aria-invalid="true""# } else { "" },
                ));
            }
        }
    }
    let body = format!(
        r#"<p class="muted"><a href="/portal/settings">Settings</a> › <a href="/portal/keys">Security</a> › Add Keys</p><h1>Add Keys</h1>{chooser}{details}"#
    );
    let script = if nonce.is_some() { COPY_SCRIPT } else { "" };
    respond(status, page("Add Keys", &hdr, &body, nonce.as_deref(), script), nonce.as_deref())
}

/// Add Keys: database type → provider → region → the provider ID and policy → key ID.
#[utoipa::path(get, path = "/portal/keys/new", tag = TAG,
    params(
        ("type" = Option<String>, Query, description = "classic or serverless"),
        ("provider" = Option<String>, Query, description = "aws, gcp or azure"),
        ("region" = Option<String>, Query, description = "a catalog region"),
    ),
    responses((status = 200, description = "the Add Keys form", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn new_key_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let (_, s, caller) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    new_key_form(&state, &s, &caller, &choice(&q), "", None, StatusCode::OK).await
}

/// Adds a key: the API's registration (every check, the live one included) through the
/// same handler; on failure the form again with the reason next to the Key ID.
#[utoipa::path(post, path = "/portal/keys", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, type, provider, region, key_id"),
    responses(
        (status = 303, description = "added: to the keys page (or not signed in: to the sign-in page)"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
        (status = 400, description = "refused: the form with the reason", content_type = "text/html"),
    ))]
pub async fn add_key(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, s, caller) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let form = session::parse_form(&body);
    if !csrf_ok(&s, &form) {
        let hdr = header(&caller.org.name, &s.csrf, Nav::Security);
        return message_page(StatusCode::FORBIDDEN, "Add Keys", &hdr, "The form was not sent by this portal's page (CSRF check failed). Nothing was added.");
    }
    let c = choice(&form);
    let key_id = form.get("key_id").map(|k| k.trim().to_string()).unwrap_or_default();
    let (Some(t), Some(p), Some(region)) = (c.db_type, c.provider, c.region.clone()) else {
        return new_key_form(&state, &s, &caller, &c, &key_id, Some("Choose a database type, provider and region first."), StatusCode::BAD_REQUEST).await;
    };
    if key_id.is_empty() {
        return new_key_form(&state, &s, &caller, &c, &key_id, Some("Enter the key's ID."), StatusCode::BAD_REQUEST).await;
    }
    let pk = Some(ProviderKey { key_id: key_id.clone(), region });
    let body = RegisterKey {
        org_id: caller.org_id(),
        aws: if p == Provider::Aws { pk.clone() } else { None },
        gcp: if p == Provider::Gcp { pk.clone() } else { None },
        azure: if p == Provider::Azure { pk } else { None },
    };
    let q = ApiQuery(RegisterQuery::default());
    let result = match t {
        DbType::Classic => keys::register_classic(State(state.clone()), caller.clone(), q, ApiJson(body)).await,
        DbType::Serverless => keys::register_serverless(State(state.clone()), caller.clone(), q, ApiJson(body)).await,
    };
    match result {
        Ok(res) if res.status().is_success() => redirect(&format!("/portal/keys?added={}", url_encode(&key_id))),
        Ok(res) => {
            let st = res.status();
            new_key_form(&state, &s, &caller, &c, &key_id, Some("The key was not added."), st).await
        }
        Err(e) => {
            let st = if e.status().is_server_error() { StatusCode::BAD_GATEWAY } else { e.status() };
            new_key_form(&state, &s, &caller, &c, &key_id, Some(&e.public_message()), st).await
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- databases (read-only)

/// Databases: the organization's databases with status and, per region, the key that
/// encrypts them (read-only for now; create, add region and terminate come next).
#[utoipa::path(get, path = "/portal/databases", tag = TAG,
    responses((status = 200, description = "the databases page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn databases_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, s, caller) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let hdr = header(&caller.org.name, &s.csrf, Nav::Databases);
    if let Err(e) = caller.require(Permission::OrgDbView) {
        return message_page(StatusCode::FORBIDDEN, "Databases", &hdr, &e.public_message());
    }
    let filter = keyplane_store::DatabaseFilter { limit: 100, ..Default::default() };
    let dbs = match state.store.list_databases(caller.org_id(), &filter).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "portal: listing databases");
            return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Databases", &hdr, "The databases could not be read; please retry.");
        }
    };
    let mut rows = String::new();
    for db in &dbs {
        let dcs = state.store.list_datacenters(db.id).await.unwrap_or_default();
        let enc: String = dcs
            .iter()
            .map(|dc| {
                let key = match dc.key_kind {
                    keyplane_store::KeyKind::Customer => format!("customer key <code>{}</code>", esc(&dc.key_id)),
                    keyplane_store::KeyKind::Platform => "platform-managed key".to_string(),
                };
                format!("<div>{} {}: {key}</div>", esc(provider_label(dc.provider)), esc(&dc.region))
            })
            .collect();
        rows.push_str(&format!(
            r#"<tr><td data-label="Name">{name}</td><td data-label="Type">{ty}</td><td data-label="Status">{status}{msg}</td><td data-label="Encryption" class="key">{enc}</td></tr>"#,
            name = esc(&db.name),
            ty = esc(type_label(db.db_type)),
            status = esc(db.status.as_str()),
            msg = if db.message.is_empty() { String::new() } else { format!(r#"<div class="muted">{}</div>"#, esc(&db.message)) },
        ));
    }
    let table = if dbs.is_empty() {
        r#"<p class="card">No databases yet.</p>"#.to_string()
    } else {
        format!(
            r#"<table class="keys"><thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Encryption</th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    let body = format!(r#"<h1>Databases</h1>{table}"#);
    respond(StatusCode::OK, page("Databases", &hdr, &body, None, ""), None)
}
