//! Settings: the enterprise/organization filter of the seed's step 2 and the organization
//! the portal manages. A token speaks for one organization, so the session keeps one token
//! per organization it signed in to; picking an organization it has no token for asks for
//! one (nothing about that organization beyond its name is shown until then).
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uuid::Uuid;

use super::html::{Nav, esc, page, respond};
use super::{TAG, Visitor, message_page, session, signed_in};
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
    for org_id in v.session.org_ids() {
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
/// manage), and the managed organization.
#[utoipa::path(get, path = "/portal/settings", tag = TAG,
    params(
        ("filter" = Option<String>, Query, description = "enterprise:ID or organization:ID"),
        ("org" = Option<Uuid>, Query, description = "the organization to manage"),
    ),
    responses((status = 200, description = "the settings page", content_type = "text/html"), (status = 303, description = "not signed in")))]
pub async fn settings_page(
    State(state): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut v = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match render(&state, &mut v, &headers, &q).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "portal: settings");
            message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Settings",
                &v.header(Nav::Settings),
                "The settings could not be read; please retry.",
            )
        }
    }
}

async fn render(
    state: &App,
    v: &mut Visitor,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> AppResult<Response> {
    let choices = choices(state, v).await?;
    let own = match v.who.org.enterprise_id {
        Some(e) => Filter::Enterprise(e),
        None => Filter::Organization(v.who.org_id()),
    };
    // Only the session's own choices can be filtered on.
    let filter = q
        .get("filter")
        .and_then(|f| Filter::parse(f))
        .filter(|f| choices.iter().any(|(c, _)| c == f))
        .unwrap_or(own);
    let orgs = organizations(state, filter).await?;
    let mut notice = String::new();
    let mut ask_token: Option<&Organization> = None;
    if let Some(target) = q.get("org").and_then(|o| o.parse::<Uuid>().ok()) {
        match orgs.iter().find(|o| o.id == target) {
            Some(o) if o.id == v.who.org_id() => {}
            Some(o) if session::switch(&v.id, o.id) => {
                // Re-read the visitor: the pages now act on the chosen organization.
                match signed_in(state, headers).await {
                    Ok(nv) => *v = nv,
                    Err(r) => return Ok(r),
                }
                notice = format!(
                    r#"<p class="notice" role="status">Now managing <strong>{}</strong>.</p>"#,
                    esc(&o.name)
                );
            }
            Some(o) => ask_token = Some(o),
            None => {
                notice = r#"<p class="alert" role="alert">That organization is not in the filter's list.</p>"#.to_string();
            }
        }
    }
    let signed: Vec<Uuid> = v.session.org_ids();
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
                r#"<li><a href="/portal/settings?filter={f}&amp;org={id}"{current}>{name}</a>{state_note}</li>"#,
                f = esc(&super::url_encode(&filter.value())),
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
                csrf = esc(&v.session.csrf),
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
    Ok(respond(
        StatusCode::OK,
        page(
            "Settings",
            &v.header(Nav::Settings),
            &body,
            Some(&nonce),
            script,
        ),
        Some(&nonce),
    ))
}
