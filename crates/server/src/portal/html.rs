//! Plain-Rust HTML: one escaping function for every user-visible value, the page layout
//! with inline CSS, and the security headers of every portal response.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for an HTML element's content or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}
header{background:#1b2a41;color:#fff;display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.6rem 1.2rem}
header .brand{font-weight:700;margin-right:auto}
header a,header button{color:#fff;text-decoration:none;font:inherit;background:none;border:0;padding:.3rem .2rem;cursor:pointer}
header a:hover,header button:hover,header a[aria-current]{text-decoration:underline}
header form{margin:0}
main{max-width:72rem;margin:0 auto;padding:1rem 1.2rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
a{color:#0b5cad}
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid #dde1e6;vertical-align:top}
td.key{word-break:break-all;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
.status{font-weight:600;font-size:.85rem;padding:.1rem .4rem;border-radius:.3rem;white-space:nowrap}
.AVAILABLE{background:#e3f4e8;color:#11612b}.IN_USE{background:#e2ecfb;color:#0b4a94}.INACCESSIBLE{background:#fde7e7;color:#9b1c1c}.REVOKED{background:#f1e4fb;color:#5b1a8c}
.card{background:#fff;border:1px solid #dde1e6;border-radius:.4rem;padding:1rem 1.2rem;margin:0 0 1rem}
.card>h2:first-child{margin-top:0}
fieldset{border:1px solid #dde1e6;border-radius:.4rem;margin:0 0 1rem;padding:.6rem 1rem;background:#fff}
legend{font-weight:600;padding:0 .3rem}
label{display:block;margin:.3rem 0}
label.choice{display:inline-flex;gap:.4rem;align-items:center;margin:.2rem 1.2rem .2rem 0}
.disabled{color:#6b7280}
input[type=text],input[type=password],textarea{width:100%;max-width:40rem;padding:.5rem;font:inherit;border:1px solid #9aa3ad;border-radius:.3rem}
button.primary,a.button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:.3rem;padding:.5rem 1rem;font:inherit;cursor:pointer;text-decoration:none}
button.copy{font:inherit;font-size:.85rem;padding:.2rem .6rem;border:1px solid #9aa3ad;border-radius:.3rem;background:#fff;cursor:pointer}
pre{background:#0f1720;color:#e6edf3;padding:.8rem;border-radius:.3rem;overflow-x:auto;font-size:.85rem;white-space:pre-wrap;word-break:break-all}
.error{color:#9b1c1c;font-weight:600}
.notice{background:#e3f4e8;border:1px solid #a6d8b4;padding:.5rem .8rem;border-radius:.3rem}
.alert{background:#fde7e7;border:1px solid #f0b4b4;padding:.5rem .8rem;border-radius:.3rem}
.muted{color:#5b6470;font-size:.9rem}
.ok{color:#11612b;font-weight:600}
.layout{display:flex;gap:1.5rem;align-items:flex-start}
.layout>nav{min-width:12rem;background:#fff;border:1px solid #dde1e6;border-radius:.4rem;padding:.6rem 1rem}
.layout>nav ul{list-style:none;margin:0;padding:0}.layout>nav li{margin:.3rem 0}
.layout>div{flex:1;min-width:0}
select{padding:.45rem;font:inherit;border:1px solid #9aa3ad;border-radius:.3rem;max-width:100%}
textarea{min-height:10rem;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
.row-actions{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
.row-actions form{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:0;max-width:100%}
.row-actions select{min-width:0;max-width:100%}
.replace-key{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:.4rem 0 0}
.replace-key input[type=text]{width:11rem;max-width:100%}
div.warning{margin-top:.3rem;padding:.3rem .5rem;border-left:3px solid #a15c00;background:#fff6e5;color:#5c3500;font-size:.9rem}
button.link{font:inherit;color:#0b5cad;text-decoration:underline;background:none;border:0;padding:0;cursor:pointer}
form.inline{display:inline;margin:0}
button.secondary{font:inherit;padding:.35rem .8rem;border:1px solid #9aa3ad;border-radius:.3rem;background:#fff;cursor:pointer}
a.button.secondary{padding:.35rem .8rem;border:1px solid #9aa3ad;background:#fff;color:inherit}
button.danger{display:inline-block;background:#9b1c1c;color:#fff;border:0;border-radius:.3rem;padding:.5rem 1rem;font:inherit;cursor:pointer}
.ACTIVE{background:#e3f4e8;color:#11612b}.SUSPENDED,.ERROR{background:#fde7e7;color:#9b1c1c}.PENDING,.INITIALIZING,.MAINTENANCE,.TERMINATING{background:#fff4d6;color:#7a5200}.TERMINATED{background:#eceef1;color:#4b5563}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:640px){
 main{padding:.8rem}
 table.keys thead{display:none}
 table.keys tr{display:block;border-bottom:2px solid #dde1e6;padding:.4rem 0}
 table.keys td{display:block;border:0;padding:.15rem .6rem}
 table.keys td::before{content:attr(data-label) ": ";font-weight:600}
 .layout{display:block}.layout>nav{margin-bottom:1rem}
 header nav{order:3;width:100%}
}
"#;

/// Where the visitor is, for the header's `aria-current`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    Settings,
    Security,
    Databases,
    Webhooks,
    Audit,
}

/// The signed-in header: organization name, Settings / Security / Databases / Webhooks /
/// Audit, Sign out.
pub fn header(org_name: &str, csrf: &str, nav: Nav) -> String {
    let cur = |n: Nav| {
        if n == nav {
            r#" aria-current="page""#
        } else {
            ""
        }
    };
    format!(
        r#"<header><span class="brand">keyplane · <span title="organization">{org}</span></span>
<nav aria-label="Main"><a href="/portal/settings"{s}>Settings</a> <a href="/portal/keys"{k}>Security</a> <a href="/portal/databases"{d}>Databases</a> <a href="/portal/webhooks"{w}>Webhooks</a> <a href="/portal/audit"{a}>Audit</a></nav>
<form method="post" action="/portal/signout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form></header>"#,
        org = esc(org_name),
        s = cur(Nav::Settings),
        k = cur(Nav::Security),
        d = cur(Nav::Databases),
        w = cur(Nav::Webhooks),
        a = cur(Nav::Audit),
        csrf = esc(csrf),
    )
}

/// A whole page. `head` is trusted markup built by this module; `body` likewise (every
/// value inside it already escaped).
pub fn page(
    title: &str,
    header: &str,
    body: &str,
    script_nonce: Option<&str>,
    script: &str,
) -> String {
    let script = match script_nonce {
        Some(n) if !script.is_empty() => format!(r#"<script nonce="{}">{script}</script>"#, esc(n)),
        _ => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · keyplane</title><style>{CSS}</style></head>
<body>{header}<main id="main">{body}</main>{script}</body></html>"#,
        title = esc(title),
    )
}

/// An HTML response with the portal's security headers. `nonce` allows one inline script.
pub fn respond(status: StatusCode, html: String, nonce: Option<&str>) -> Response {
    let script_src = match nonce {
        Some(n) => format!("'nonce-{n}'"),
        None => "'none'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src {script_src}; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a"&'b'</script>"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain"), "plain");
    }
}
