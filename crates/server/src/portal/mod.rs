//! The web portal, server-rendered in plain Rust: sign in with an application token (a
//! server-side session in an HttpOnly, SameSite=Strict cookie), Settings with the
//! enterprise/organization filter, Security → Key Encryption with Add Keys (policy checker
//! and key ID checked as typed), Databases (create, add region, terminate, live status)
//! webhooks with their delivery logs, and the audit log. No JavaScript framework and nothing fetched at run time: the few
//! scripts are inline, allowed by a per-response nonce, and every form works without them.
//!
//! Every route is registered through `utoipa_axum::routes!` like the API's, documented as
//! an HTML operation without the Bearer scheme (the portal authenticates by its cookie).
pub mod audit;
pub mod databases;
pub mod html;
pub mod keys;
pub mod session;
pub mod settings;
pub mod webhooks;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::{DbType, Provider};

use keyplane_app::auth::SignIn;
use keyplane_app::sessions::{ActiveSession, SessionStart};
use keyplane_app::{App, AppError, Requester};
use keyplane_core::PortalSessionId;

use crate::error::{app_error_message, app_error_status};
use html::{Nav, esc, page, respond};
use session::{CSRF_COOKIE, SESSION_COOKIE};

const TAG: &str = "portal";

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    res
}

fn add_cookie(res: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(SET_COOKIE, v);
    }
}

/// Whether cookies get the `Secure` attribute: when the portal's public URL is https.
fn secure(state: &App) -> bool {
    state
        .config
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://")
}

/// A signed-in request: its session (ID, CSRF token, organizations) and the requester of
/// its current organization, resolved on this request.
pub(crate) struct Visitor {
    pub id: PortalSessionId,
    pub csrf: String,
    pub org_ids: Vec<uuid::Uuid>,
    pub who: Requester,
}

impl Visitor {
    fn new(s: ActiveSession) -> Visitor {
        Visitor {
            id: s.id,
            csrf: s.csrf,
            org_ids: s.org_ids,
            who: s.who,
        }
    }

    /// The page header for this visitor.
    fn header(&self, nav: Nav) -> String {
        html::header(&self.who.org.name, &self.csrf, nav)
    }

    /// A CSRF check of a signed-in form: the field must be the session's token.
    fn csrf_ok(&self, form: &HashMap<String, String>) -> bool {
        form.get("csrf").is_some_and(|v| self.id.csrf_matches(v))
    }
}

/// The browser's live session, if its cookie names one (read from the store, so any replica
/// knows it). A store failure is the page to answer instead.
async fn live_session(state: &App, headers: &HeaderMap) -> Result<Option<ActiveSession>, Response> {
    let Some(cookie) = session::session_cookie(headers) else {
        return Ok(None);
    };
    state.sessions().resolve(&cookie).await.map_err(|e| {
        tracing::warn!(error = %e, "reading a portal session failed");
        message_page(
            refused(&e),
            "Portal unavailable",
            r#"<header><span class="brand">keyplane</span></header>"#,
            &app_error_message(&e),
        )
    })
}

/// The signed-in visitor, or the redirect to the sign-in page (clearing a cookie that names
/// no live session). The token is resolved on every request: a revoked token ends that
/// organization's login at once.
async fn signed_in(state: &App, headers: &HeaderMap) -> Result<Visitor, Response> {
    match live_session(state, headers).await? {
        Some(session) => Ok(Visitor::new(session)),
        None => {
            let mut res = redirect("/portal/signin");
            if session::session_cookie(headers).is_some() {
                add_cookie(
                    &mut res,
                    session::set_cookie(SESSION_COOKIE, None, secure(state)),
                );
            }
            Err(res)
        }
    }
}

/// A signed-in form post whose CSRF token matches, with its fields; or the page to answer
/// instead (the sign-in redirect, or a 403 saying nothing was changed).
async fn form_post(
    state: &App,
    headers: &HeaderMap,
    body: &[u8],
    title: &str,
    nav: Nav,
) -> Result<(Visitor, HashMap<String, String>), Response> {
    let v = signed_in(state, headers).await?;
    let form = session::parse_form(body);
    if !v.csrf_ok(&form) {
        return Err(message_page(
            StatusCode::FORBIDDEN,
            title,
            &v.header(nav),
            "The form was not sent by this portal's page (CSRF check failed). Nothing was changed.",
        ));
    }
    Ok((v, form))
}

/// Whether signing in failed because of the token itself (shown as 401 with the form).
fn is_token_refusal(e: &AppError) -> bool {
    matches!(e, AppError::MalformedToken(_) | AppError::InvalidToken)
}

/// The status of a page refusing a form on the application's behalf: the API's own, except
/// that a server-side failure behind it is a 502 (a not-implemented provider stays a 501).
fn refused(e: &AppError) -> StatusCode {
    match app_error_status(e) {
        StatusCode::NOT_IMPLEMENTED => StatusCode::NOT_IMPLEMENTED,
        s if s.is_server_error() => StatusCode::BAD_GATEWAY,
        s => s,
    }
}

fn message_page(status: StatusCode, title: &str, hdr: &str, msg: &str) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="alert" role="alert">{}</p><p><a href="/">Back</a></p>"#,
        esc(title),
        esc(msg)
    );
    respond(status, page(title, hdr, &body, None, ""), None)
}

fn type_label(t: DbType) -> &'static str {
    match t {
        DbType::Classic => "Classic",
        DbType::Serverless => "Serverless",
    }
}

fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Aws => "Amazon Web Services",
        Provider::Gcp => "Google Cloud",
        Provider::Azure => "Microsoft Azure",
        Provider::Openbao => "OpenBao / Vault",
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- sign in / out

/// No icon: an empty answer, so browsers do not log a 404 for the icon they ask for.
#[utoipa::path(get, path = "/favicon.ico", tag = TAG, responses((status = 204, description = "no icon")))]
pub async fn favicon() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    res
}

/// The portal's entry: the keys page when signed in, else the sign-in page.
#[utoipa::path(get, path = "/", tag = TAG,
    responses((status = 303, description = "to the portal's keys page or its sign-in page")))]
pub async fn index(State(state): State<App>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(_) => redirect("/portal/keys"),
        Err(r) => r,
    }
}

fn signin_form(
    state: &App,
    status: StatusCode,
    message: Option<&str>,
    org_hint: Option<&str>,
) -> Response {
    let csrf = session::random_hex();
    let msg = message
        .map(|m| {
            format!(
                r#"<p class="alert" role="alert" id="signin-error">{}</p>"#,
                esc(m)
            )
        })
        .unwrap_or_default();
    let described = if message.is_some() {
        r#" aria-describedby="signin-error""#
    } else {
        ""
    };
    let hint = org_hint
        .map(|o| format!(r#"<p>To manage <strong>{}</strong>, sign in with a token of that organization.</p>"#, esc(o)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Sign in</h1>
<div class="card"><form method="post" action="/portal/signin">{msg}{hint}
<input type="hidden" name="csrf" value="{csrf}">
<label for="token">Application token</label>
<input type="password" id="token" name="token" autocomplete="off" required placeholder="AstraCS:…"{described}>
<p class="muted">A token of your organization (in the API: <code>POST /v2/clientIdSecrets</code>). It stays on the server; the browser keeps only a session cookie.</p>
<button class="primary" type="submit">Sign in</button></form></div>"#,
        csrf = esc(&csrf),
    );
    let hdr = r#"<header><span class="brand">keyplane</span></header>"#;
    let mut res = respond(status, page("Sign in", hdr, &body, None, ""), None);
    add_cookie(
        &mut res,
        session::set_cookie(CSRF_COOKIE, Some(&csrf), secure(state)),
    );
    res
}

/// The sign-in form (application token).
#[utoipa::path(get, path = "/portal/signin", tag = TAG,
    responses((status = 200, description = "the sign-in form", content_type = "text/html")))]
pub async fn signin_page(State(state): State<App>) -> Response {
    signin_form(&state, StatusCode::OK, None, None)
}

/// Signs in with an application token. A browser already signed in keeps its session and
/// gains this token's organization (the Settings filter switches between them).
#[utoipa::path(post, path = "/portal/signin", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token, csrf"),
    responses(
        (status = 303, description = "signed in: to the keys page"),
        (status = 401, description = "the token was refused", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn signin(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = session::parse_form(&body);
    let cookie = session::cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    let field = form.get("csrf").map(String::as_str).unwrap_or_default();
    let live = match live_session(&state, &headers).await {
        Ok(live) => live,
        Err(page) => return page,
    };
    // A signed-in browser adding an organization sends its session's CSRF token instead.
    let csrf_ok = session::same_secret(&cookie, field)
        || live.as_ref().is_some_and(|s| s.id.csrf_matches(field));
    if !csrf_ok {
        return signin_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("The form expired or was not sent by this page; please sign in again."),
            None,
        );
    }
    let raw = form
        .get("token")
        .map(String::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    start_session(&state, live, &raw, SignIn::Token).await
}

/// Signs `raw` in: into the browser's live session when it has one, else a new session.
async fn start_session(
    state: &App,
    live: Option<ActiveSession>,
    raw: &str,
    how: SignIn,
) -> Response {
    let started = match state
        .sessions()
        .sign_in(live.as_ref().map(|s| &s.id), raw, how)
        .await
    {
        Ok(started) => started,
        Err(e) if is_token_refusal(&e) => {
            return signin_form(
                state,
                StatusCode::UNAUTHORIZED,
                Some(&format!(
                    "That token was not accepted: {}",
                    app_error_message(&e)
                )),
                None,
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting a portal session failed");
            return signin_form(
                state,
                refused(&e),
                Some(&format!("Signing in failed: {}", app_error_message(&e))),
                None,
            );
        }
    };
    let mut res = redirect("/portal/keys");
    let SessionStart::New(id) = started else {
        return res;
    };
    add_cookie(
        &mut res,
        session::set_cookie(SESSION_COOKIE, Some(id.expose()), secure(state)),
    );
    add_cookie(
        &mut res,
        session::set_cookie(CSRF_COOKIE, None, secure(state)),
    );
    res
}

/// `serve --dev` only: the sign-in link printed at start signs in with the dev token.
#[utoipa::path(get, path = "/portal/signin/dev", tag = TAG,
    params(("code" = String, Query, description = "the code of the link printed by `serve --dev`")),
    responses(
        (status = 303, description = "signed in: to the keys page"),
        (status = 404, description = "not in dev mode, or a wrong code", content_type = "text/html"),
    ))]
pub async fn dev_signin(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let given = q.get("code").map(String::as_str).unwrap_or_default();
    match &state.config.dev_signin {
        Some(d) if session::same_secret(given, &d.code) => {
            let token = d.token.clone();
            match live_session(&state, &headers).await {
                Ok(live) => start_session(&state, live, &token, SignIn::DevLink).await,
                Err(page) => page,
            }
        }
        _ => message_page(
            StatusCode::NOT_FOUND,
            "Sign in",
            r#"<header><span class="brand">keyplane</span></header>"#,
            "This sign-in link is not valid (it works only with the server that printed it, in --dev mode). Sign in with a token instead.",
        ),
    }
}

/// Signs out: ends the session.
#[utoipa::path(post, path = "/portal/signout", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf"),
    responses(
        (status = 303, description = "to the sign-in page"),
        (status = 403, description = "the form's CSRF token is missing or wrong", content_type = "text/html"),
    ))]
pub async fn signout(State(state): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let s = match live_session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect("/portal/signin"),
        Err(page) => return page,
    };
    let form = session::parse_form(&body);
    if !form.get("csrf").is_some_and(|v| s.id.csrf_matches(v)) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "",
            "The form was not sent by this portal's page (CSRF check failed).",
        );
    }
    if let Err(e) = state.sessions().end(&s.id).await {
        tracing::warn!(error = %e, "ending a portal session failed");
        return message_page(refused(&e), "Not signed out", "", &app_error_message(&e));
    }
    let mut res = redirect("/portal/signin");
    add_cookie(
        &mut res,
        session::set_cookie(SESSION_COOKIE, None, secure(&state)),
    );
    res
}
