//! Settings: the enterprise/organization filter of the seed's step 2 and the organization
//! the portal manages. A token speaks for one organization, so the session keeps one token
//! per organization it signed in to; picking an organization it has no token for asks for
//! one (nothing about that organization beyond its name is shown until then).
//!
//! Reading the page changes nothing (the filter is a GET); picking the organization to
//! manage changes the session, so it is a POST carrying the CSRF token like every other
//! change, answered with a redirect back to the page.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uuid::Uuid;

use super::html::{Nav, esc, page, respond};
use super::{TAG, Visitor, form_post, message_page, redirect, session, signed_in, url_encode};
use keyplane_app::App;
use keyplane_app::AppResult;
use keyplane_store::Organization;

/// What the filter can be set to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    Enterprise(Uuid),
    Organization(Uuid),
}

impl Filter {
    fn value(self) -> String {
        match self {
            Filter::Enterprise(id) => format!("enterprise:{id}"),
            Filter::Organization(id) => format!("organization:{id}"),
        }
    }

    fn parse(s: &str) -> Option<Filter> {
        let (kind, id) = s.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "enterprise" => Some(Filter::Enterprise(id)),
            "organization" => Some(Filter::Organization(id)),
            _ => None,
        }
    }
}

/// The filter's choices: the enterprise of every organization the session signed in to,
/// and each such organization that belongs to no enterprise.
async fn choices(state: &App, v: &Visitor) -> AppResult<Vec<(Filter, String)>> {
    let mut out: Vec<(Filter, String)> = Vec::new();
    for org_id in v.org_ids.clone() {
        let Some((org, enterprise)) = state.orgs().with_enterprise(org_id).await? else {
            continue;
        };
        let choice = match org.enterprise_id {
            Some(e) => {
                let name = enterprise.map(|e| e.name).unwrap_or_default();
                (Filter::Enterprise(e), format!("Enterprise: {name}"))
            }
            None => (
                Filter::Organization(org.id),
                format!("Organization: {}", org.name),
            ),
        };
        if !out.iter().any(|(f, _)| *f == choice.0) {
            out.push(choice);
        }
    }
    Ok(out)
}

/// The organizations a filter lists.
async fn organizations(state: &App, f: Filter) -> AppResult<Vec<Organization>> {
    Ok(match f {
        Filter::Enterprise(e) => state.orgs().of_enterprise(e).await?,
        Filter::Organization(o) => state.orgs().by_id(o).await?.into_iter().collect(),
    })
}

/// Settings: the enterprise/organization filter, the filter's organizations (pick one to
/// manage: a POST), and the managed organization. Reading it changes nothing.
#[utoipa::path(get, path = "/portal/settings", tag = TAG,
    params(
        ("filter" = Option<String>, Query, description = "enterprise:ID or organization:ID"),
        ("managing" = Option<Uuid>, Query, description = "set by the switch's redirect: says which organization is now managed"),
    ),
    responses((status = 200, description = "the settings page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn settings_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let view = match filtered(&state, &v, q.get("filter").map(String::as_str)).await {
        Ok(f) => f,
        Err(e) => return unreadable(&v, &e),
    };
    // Only a statement of what is already so: the redirect after a switch names the
    // organization now managed.
    let notice = match q.get("managing").and_then(|o| o.parse::<Uuid>().ok()) {
        Some(id) if id == v.who.org_id() => format!(
            r#"<p class="notice" role="status">Now managing <strong>{}</strong>.</p>"#,
            esc(&v.who.org.name)
        ),
        _ => String::new(),
    };
    render(&v, &view, StatusCode::OK, &notice, None)
}

/// Switches the organization the session manages to one of the filter's organizations: the
/// session must hold a token of it (else the page asks for one, changing nothing). Answers
/// with a redirect to the settings page.
#[utoipa::path(post, path = "/portal/settings", tag = TAG,
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, filter, org"),
    responses(
        (status = 303, description = "switched (or already managing it): to the settings page; or not signed in"),
        (status = 200, description = "the session has no token of that organization: the page asks for one", content_type = "text/html"),
        (status = 400, description = "the organization is not in the filter's list; nothing changed", content_type = "text/html"),
        (status = 403, description = "the form's CSRF token is missing or wrong; nothing changed", content_type = "text/html"),
    ))]
pub async fn switch_organization(
    State(state): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (v, form) = match form_post(&state, &headers, &body, "Settings", Nav::Settings).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let view = match filtered(&state, &v, form.get("filter").map(String::as_str)).await {
        Ok(f) => f,
        Err(e) => return unreadable(&v, &e),
    };
    let back = |managing: Uuid| {
        redirect(&format!(
            "/portal/settings?filter={}&managing={managing}",
            url_encode(&view.filter.value())
        ))
    };
    let target = form.get("org").and_then(|o| o.parse::<Uuid>().ok());
    match target.and_then(|t| view.orgs.iter().find(|o| o.id == t)) {
        Some(o) if o.id == v.who.org_id() => back(o.id),
        Some(o) if v.org_ids.contains(&o.id) => match state.sessions().switch(&v.id, o.id).await {
            Ok(true) => back(o.id),
            Ok(false) => render(&v, &view, StatusCode::OK, "", Some(o)),
            Err(e) => unreadable(&v, &e),
        },
        Some(o) => render(&v, &view, StatusCode::OK, "", Some(o)),
        None => render(
            &v,
            &view,
            StatusCode::BAD_REQUEST,
            r#"<p class="alert" role="alert">That organization is not in the filter's list; nothing was changed.</p>"#,
            None,
        ),
    }
}

fn unreadable(v: &Visitor, e: &keyplane_app::AppError) -> Response {
    tracing::error!(error = %e, "portal: settings");
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Settings",
        &v.header(Nav::Settings),
        "The settings could not be read; please retry.",
    )
}

/// The filter's choices, the one in effect and its organizations.
struct FilterView {
    choices: Vec<(Filter, String)>,
    filter: Filter,
    orgs: Vec<Organization>,
}

async fn filtered(state: &App, v: &Visitor, asked: Option<&str>) -> AppResult<FilterView> {
    let choices = choices(state, v).await?;
    let own = match v.who.org.enterprise_id {
        Some(e) => Filter::Enterprise(e),
        None => Filter::Organization(v.who.org_id()),
    };
    // Only the session's own choices can be filtered on.
    let filter = asked
        .and_then(Filter::parse)
        .filter(|f| choices.iter().any(|(c, _)| c == f))
        .unwrap_or(own);
    let orgs = organizations(state, filter).await?;
    Ok(FilterView {
        choices,
        filter,
        orgs,
    })
}

fn render(
    v: &Visitor,
    view: &FilterView,
    status: StatusCode,
    notice: &str,
    ask_token: Option<&Organization>,
) -> Response {
    let (choices, filter, orgs) = (&view.choices, view.filter, &view.orgs);
    let signed: Vec<Uuid> = v.org_ids.clone();
    let options: String = choices
        .iter()
        .map(|(f, label)| {
            format!(
                r#"<option value="{}"{}>{}</option>"#,
                esc(&f.value()),
                if *f == filter { " selected" } else { "" },
                esc(label)
            )
        })
        .collect();
    let list: String = orgs
        .iter()
        .map(|o| {
            let state_note = if o.id == v.who.org_id() {
                r#" <span class="status AVAILABLE">managing</span>"#
            } else if signed.contains(&o.id) {
                ""
            } else {
                r#" <span class="muted">(needs a token of this organization)</span>"#
            };
            let current = if o.id == v.who.org_id() { r#" aria-current="true""# } else { "" };
            format!(
                r#"<li><form method="post" action="/portal/settings" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="filter" value="{f}"><input type="hidden" name="org" value="{id}"><button type="submit" class="link"{current}>{name}</button></form>{state_note}</li>"#,
                csrf = esc(&v.csrf),
                f = esc(&filter.value()),
                id = o.id,
                name = esc(&o.name),
            )
        })
        .collect();
    let token_form = ask_token
        .map(|o| {
            format!(
                r#"<div class="card" id="org-signin"><h2>Sign in to {name}</h2><form method="post" action="/portal/signin">
<input type="hidden" name="csrf" value="{csrf}">
<label for="org-token">Application token of {name}</label>
<input type="password" id="org-token" name="token" autocomplete="off" required placeholder="AstraCS:…">
<p class="muted">Your tokens speak for one organization each; this one is added to your session, and the filter then switches between them.</p>
<button class="primary" type="submit">Sign in to {name}</button></form></div>"#,
                name = esc(&o.name),
                csrf = esc(&v.csrf),
            )
        })
        .unwrap_or_default();
    let c = &v.who;
    let body = format!(
        r#"<h1>Settings</h1>{notice}
<div class="layout"><nav aria-label="Settings">
<form method="get" action="/portal/settings" id="filter-form"><label for="org-filter">Enterprise / organization</label>
<select id="org-filter" name="filter">{options}</select> <button class="secondary" type="submit">Filter</button></form>
<ul><li><a href="/portal/settings" aria-current="page">Organization</a></li><li><a href="/portal/keys">Security</a></li><li><a href="/portal/databases">Databases</a></li><li><a href="/portal/audit">Audit log</a></li></ul>
</nav><div>
<div class="card"><h2 id="orgs-h">Organizations</h2><ul id="org-list" aria-labelledby="orgs-h">{list}</ul></div>{token_form}
<div class="card"><h2>Organization</h2><dl><dt>Name</dt><dd id="org-name">{name}</dd><dt>ID</dt><dd><code>{id}</code></dd><dt>Signed in as</dt><dd>token <code>{client}</code> ({role})</dd></dl></div>
<div class="card"><h2>Security</h2><p><a href="/portal/keys">Key Encryption</a>: the customer keys that encrypt this organization's databases.</p></div>
</div></div>"#,
        name = esc(&c.org.name),
        id = esc(&c.org.id.to_string()),
        client = esc(&c.client_id),
        role = esc(c.role.name()),
    );
    let nonce = session::random_hex();
    let script = r#"var f=document.getElementById('org-filter');if(f){f.addEventListener('change',function(){document.getElementById('filter-form').submit()})}"#;
    respond(
        status,
        page(
            "Settings",
            &v.header(Nav::Settings),
            &body,
            Some(&nonce),
            script,
        ),
        Some(&nonce),
    )
}
