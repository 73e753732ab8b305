//! The web portal over a real server on a loopback port: sign in/out with an application
//! token and a server-side session cookie, CSRF on every form, the Key Encryption list,
//! Add Keys through the API's registration (the pasted-policy checker included), the
//! enterprise/organization filter, databases (create, add region, terminate, live status),
//! the audit log, the `--dev` sign-in link, and HTML escaping.
mod common;

use common::TestServer;
use keyplane_app::Config;
use keyplane_core::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap().to_string())
        .filter(|v| !v.is_empty())
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at =
        html.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_string()
}

struct SignIn {
    status: u16,
    cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

async fn sign_in(s: &TestServer, token: &str) -> SignIn {
    let c = browser();
    let res = c
        .get(format!("{}/portal/signin", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let csrf = cookie_value(&set_cookies(&res), "kp_csrf").expect("a CSRF cookie");
    let html = res.text().await.unwrap();
    assert_eq!(
        csrf_field(&html),
        csrf,
        "double-submit: the field repeats the cookie"
    );
    let res = c
        .post(format!("{}/portal/signin", s.url))
        .header("cookie", format!("kp_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={}", token.replace(':', "%3A")))
        .send()
        .await
        .unwrap();
    SignIn {
        status: res.status().as_u16(),
        cookies: set_cookies(&res),
        location: res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string()),
        body: res.text().await.unwrap(),
    }
}

/// A signed-in browser: (session cookie header, session CSRF token).
async fn session(s: &TestServer, token: &str) -> (String, String) {
    let r = sign_in(s, token).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = cookie_value(&r.cookies, "kp_session").unwrap();
    let cookie = format!("kp_session={id}");
    let (st, html) = get(s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200, "{html}");
    (cookie, csrf_field(&html))
}

async fn get(s: &TestServer, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut b = browser().get(format!("{}{path}", s.url));
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    let res = b.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn post_form(s: &TestServer, path: &str, cookie: &str, body: &str) -> reqwest::Response {
    browser()
        .post(format!("{}{path}", s.url))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_bad_token_is_refused_with_the_form_again() {
    let s = TestServer::start().await;
    let r = sign_in(&s, "AstraCS:nope").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("not accepted"), "{}", r.body);
    assert!(r.body.contains(r#"name="token""#));
    assert!(cookie_value(&r.cookies, "kp_session").is_none());
    // A well-formed token that does not exist.
    let fake = format!("AstraCS:{}:{}", "A".repeat(24), "0".repeat(64));
    assert_eq!(sign_in(&s, &fake).await.status, 401);
}

#[tokio::test]
async fn the_admin_token_starts_an_httponly_strict_session() {
    let s = TestServer::start().await;
    let r = sign_in(&s, &s.admin).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/portal/keys"));
    let set = r
        .cookies
        .iter()
        .find(|c| c.starts_with("kp_session="))
        .expect("session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    let id = cookie_value(&r.cookies, "kp_session").unwrap();
    assert_eq!(id.len(), 64, "256 random bits");
    assert!(
        !set.contains(s.admin.split(':').nth(2).unwrap()),
        "the token never reaches the browser"
    );
    let cookie = format!("kp_session={id}");
    // Signed in, / leads to the keys page; without the cookie, to the sign-in page.
    let res = browser()
        .get(format!("{}/", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/keys");
    let res = browser()
        .get(format!("{}/portal/keys", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/signin");
    let (st, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(
        html.contains("Key Encryption") && html.contains("Acme"),
        "{html}"
    );
    assert!(html.contains(r#"name="viewport""#));
    for nav in ["Settings", "Security", "Databases", "Audit", "Sign out"] {
        assert!(html.contains(nav), "header shows {nav}");
    }
    let (st, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains(&s.org.to_string()));
    let (st, html) = get(&s, "/portal/databases", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains("No databases yet"), "{html}");
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_refused() {
    let s = TestServer::start().await;
    // Sign-in without the double-submit cookie, or with a field that differs from it.
    let res = browser()
        .post(format!("{}/portal/signin", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", enc(&s.admin)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(cookie_value(&set_cookies(&res), "kp_session").is_none());
    let res = post_form(
        &s,
        "/portal/signin",
        "kp_csrf=aaaa",
        &format!("csrf=bbbb&token={}", enc(&s.admin)),
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);

    let (cookie, csrf) = session(&s, &s.admin).await;
    let res = post_form(
        &s,
        "/portal/keys",
        &cookie,
        "type=classic&provider=aws&region=us-east-2&key_id=x",
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);
    let res = post_form(
        &s,
        "/portal/keys",
        &cookie,
        "csrf=wrong&type=classic&provider=aws&region=us-east-2&key_id=x",
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);
    let res = post_form(&s, "/portal/signout", &cookie, "").await;
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(
        get(&s, "/portal/keys", Some(&cookie)).await.0,
        200,
        "still signed in"
    );
    // Sign out with the token: the session is gone.
    let res = post_form(&s, "/portal/signout", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(res.status().as_u16(), 303);
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("kp_session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 303);
}

#[tokio::test]
async fn a_revoked_token_ends_the_session() {
    let s = TestServer::start().await;
    let token = s.token(s.org, Role::OrgAdmin).await;
    let (cookie, _) = session(&s, &token).await;
    let client = token.split(':').nth(1).unwrap();
    assert!(s.store.revoke_token(s.org, client).await.unwrap());
    let res = browser()
        .get(format!("{}/portal/keys", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/signin");
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("kp_session=;") && c.contains("Max-Age=0")),
        "the dead session's cookie is cleared"
    );
}

async fn get_at(url: &str, path: &str, cookie: &str) -> (u16, String) {
    let res = browser()
        .get(format!("{url}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn post_at(url: &str, path: &str, cookie: &str, body: &str) -> reqwest::Response {
    browser()
        .post(format!("{url}{path}"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Sessions live in the store: a browser signed in on one server is served by another
/// server over the same store (a second replica, nothing shared in memory), its forms
/// accepted there with the same CSRF token, and signing out on either ends it on both.
#[tokio::test]
async fn a_session_started_on_one_server_is_served_by_another_over_the_same_store() {
    let s = TestServer::start().await;
    let other = s.replica(Config::default()).await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (st, html) = get_at(&other.url, "/portal/keys", &cookie).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Acme"), "{html}");
    assert_eq!(
        csrf_field(&html),
        csrf,
        "one CSRF token for the session, on every server"
    );
    // A form posted to the other server: a platform-keyed database created from there.
    let res = post_at(
        &other.url,
        "/portal/databases",
        &cookie,
        &format!("csrf={csrf}&name=elsewhere&keyspace=ks&type=classic&provider=aws&region=us-west-2&tier=C10"),
    )
    .await;
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    let (_, html) = get(&s, "/portal/databases", Some(&cookie)).await;
    assert!(html.contains("elsewhere"), "{html}");
    // A wrong CSRF token is refused there too.
    let res = post_at(&other.url, "/portal/signout", &cookie, "csrf=0000").await;
    assert_eq!(res.status().as_u16(), 403);
    let res = post_at(
        &other.url,
        "/portal/signout",
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        get(&s, "/portal/keys", Some(&cookie)).await.0,
        303,
        "signed out everywhere"
    );
    assert_eq!(get_at(&other.url, "/portal/keys", &cookie).await.0, 303);
}

/// A restart signs no one out: a session started on a server that stopped is served by the
/// server started after it (a new process's memory holds nothing of the old one).
#[tokio::test]
async fn a_session_survives_a_restart() {
    let s = TestServer::start().await;
    let first = s.replica(Config::default()).await;
    let token = s.token(s.org, Role::OrgAdmin).await;
    let c = browser();
    let res = c
        .get(format!("{}/portal/signin", first.url))
        .send()
        .await
        .unwrap();
    let form_csrf = cookie_value(&set_cookies(&res), "kp_csrf").unwrap();
    let res = c
        .post(format!("{}/portal/signin", first.url))
        .header("cookie", format!("kp_csrf={form_csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={form_csrf}&token={}", enc(&token)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let cookie = format!(
        "kp_session={}",
        cookie_value(&set_cookies(&res), "kp_session").unwrap()
    );
    assert_eq!(get_at(&first.url, "/portal/keys", &cookie).await.0, 200);
    let old_url = first.url.clone();
    first.stop().await;
    assert!(
        browser()
            .get(format!("{old_url}/portal/keys"))
            .send()
            .await
            .is_err(),
        "stopped"
    );
    let restarted = s.replica(Config::default()).await;
    let (st, html) = get_at(&restarted.url, "/portal/keys", &cookie).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Acme"));
}

/// Revoking the token on one server ends the session on every other at its next request.
#[tokio::test]
async fn revoking_the_token_on_one_server_ends_the_session_on_another() {
    let s = TestServer::start().await;
    let other = s.replica(Config::default()).await;
    let token = s.token(s.org, Role::OrgAdmin).await;
    let (cookie, _) = session(&s, &token).await;
    assert_eq!(get_at(&other.url, "/portal/keys", &cookie).await.0, 200);
    let client = token.split(':').nth(1).unwrap();
    let res = s
        .client
        .delete(format!("{}/v2/clientIdSecrets/{client}", other.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 303);
    assert_eq!(get_at(&other.url, "/portal/keys", &cookie).await.0, 303);
}

/// A session ends at its expiry, on every server, whatever the activity.
#[tokio::test]
async fn an_expired_session_is_refused() {
    let short = Config {
        portal_session_lifetime: Duration::from_millis(1500),
        ..Config::default()
    };
    let s = TestServer::with_config(short.clone()).await;
    let other = s.replica(short).await;
    let (cookie, _) = session(&s, &s.admin).await;
    assert_eq!(get_at(&other.url, "/portal/keys", &cookie).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 303);
    assert_eq!(get_at(&other.url, "/portal/keys", &cookie).await.0, 303);
}

/// What the store keeps of a session opens nothing: the SHA-256 of the cookie, no cookie,
/// no CSRF token and no token secret anywhere in the database's files.
#[tokio::test]
async fn the_store_keeps_no_session_secret() {
    use sha2::Digest;
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let id = cookie.strip_prefix("kp_session=").unwrap().to_string();
    let hash = sha2::Sha256::digest(id.as_bytes()).to_vec();
    let stored = s
        .store
        .get_portal_session(&hash, chrono::Utc::now())
        .await
        .unwrap()
        .expect("the session is stored under the cookie's SHA-256");
    assert_eq!(stored.logins.len(), 1);
    assert_eq!(
        stored.logins[0].client_id,
        s.admin.split(':').nth(1).unwrap()
    );
    let secret = s.admin.split(':').nth(2).unwrap();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", s.db_path.display());
        if let Ok(b) = std::fs::read(&path) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&hash),
        "the hash is there (the check below can find things)"
    );
    for (what, needle) in [
        ("cookie", id.as_bytes()),
        ("CSRF token", csrf.as_bytes()),
        ("token secret", secret.as_bytes()),
    ] {
        assert!(!contains(needle), "the store's files hold the {what}");
    }
}

#[tokio::test]
async fn an_organization_name_is_escaped() {
    let s = TestServer::start().await;
    let org = s
        .store
        .create_org("<script>alert(1)</script>", None)
        .await
        .unwrap();
    let token = s.token(org.id, Role::OrgAdmin).await;
    let (cookie, _) = session(&s, &token).await;
    for path in [
        "/portal/keys",
        "/portal/settings",
        "/portal/keys/new?type=classic&provider=aws&region=us-east-2",
    ] {
        let (st, html) = get(&s, path, Some(&cookie)).await;
        assert_eq!(st, 200, "{path}: {html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {html}"
        );
        assert!(!html.contains("<script>alert"), "{path}");
    }
}

/// The customer's side of the seed: a key in the built-in KMS with the helper's statements.
async fn customer_key(s: &TestServer, region: &str, statements: &Value) -> String {
    let mut all = vec![
        json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}),
    ];
    all.extend(statements.as_array().unwrap().iter().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": all});
    let kms = s.kms.customer(region);
    let out = kms
        .create_key()
        .description("customer key")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

#[tokio::test]
async fn the_keys_page_lists_a_key_registered_through_the_api() {
    let s = TestServer::start().await;
    let (st, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    let arn = customer_key(&s, "us-east-2", &help["statements"]).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgId": s.org.to_string(), "aws": {"keyID": arn, "region": "us-east-2"}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (cookie, _) = session(&s, &s.admin).await;
    let (st, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains(&arn), "{html}");
    assert!(
        html.contains("AVAILABLE")
            && html.contains("Classic")
            && html.contains("us-east-2")
            && html.contains("Amazon Web Services")
    );
    assert!(
        html.contains(&format!(r#"<tr data-key-id="{arn}">"#)),
        "{html}"
    );
    assert!(html.contains(r#"data-lifecycle="ENABLED""#), "{html}");
}

#[tokio::test]
async fn a_key_is_revoked_unrevoked_and_deregistered_from_the_keys_page() {
    let s = TestServer::start().await;
    let (_, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    let arn = customer_key(&s, "us-east-2", &help["statements"]).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgId": s.org.to_string(), "aws": {"keyID": arn, "region": "us-east-2"}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    let confirm = "/portal/keys/revoke?type=classic&amp;provider=aws&amp;region=us-east-2";
    assert!(
        html.contains(confirm) && html.contains(">Revoke</a>"),
        "{html}"
    );
    // Revoke asks first, naming the key; nothing is revoked by reading the page.
    let (st, page) = get(&s, &confirm.replace("&amp;", "&"), Some(&cookie)).await;
    assert_eq!(st, 200, "{page}");
    assert!(
        page.contains(r#"action="/portal/keys/revoke""#)
            && page.contains(">Revoke key</button>")
            && page.contains(&arn),
        "{page}"
    );
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(
        html.contains(r#"<span class="status AVAILABLE">"#)
            && !html.contains(r#"<span class="status REVOKED">"#),
        "{html}"
    );
    let (st, _) = get(
        &s,
        "/portal/keys/revoke?type=classic&provider=aws&region=eu-west-1",
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 404);
    let form = format!(
        "csrf={}&type=classic&provider=aws&region=us-east-2",
        enc(&csrf)
    );
    // Without the CSRF token nothing is revoked.
    let res = post_form(
        &s,
        "/portal/keys/revoke",
        &cookie,
        "type=classic&provider=aws&region=us-east-2",
    )
    .await;
    assert_eq!(res.status(), 403);
    let (_, st) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            &s.admin,
        )
        .await;
    assert_eq!(st["status"], "AVAILABLE");

    let res = post_form(&s, "/portal/keys/revoke", &cookie, &form).await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_string();
    let (_, html) = get(&s, &to, Some(&cookie)).await;
    assert!(html.contains("Key revoked"), "{html}");
    assert!(
        html.contains(r#"<span class="status REVOKED">REVOKED</span>"#),
        "{html}"
    );
    assert!(html.contains("revoked by the customer"), "{html}");
    assert!(
        html.contains(r#"action="/portal/keys/unrevoke""#) && html.contains(">Unrevoke</button>"),
        "{html}"
    );
    let (_, st) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            &s.admin,
        )
        .await;
    assert_eq!(st["status"], "REVOKED");

    // A refusal is shown on the page: no such key in another region.
    let other = format!(
        "csrf={}&type=classic&provider=aws&region=eu-west-1",
        enc(&csrf)
    );
    let res = post_form(&s, "/portal/keys/unrevoke", &cookie, &other).await;
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="key-action-error""#), "{html}");

    let res = post_form(&s, "/portal/keys/unrevoke", &cookie, &form).await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_string();
    let (_, html) = get(&s, &to, Some(&cookie)).await;
    assert!(html.contains("Key unrevoked"), "{html}");
    assert!(
        html.contains(r#"<span class="status AVAILABLE">AVAILABLE</span>"#),
        "{html}"
    );
    // A read-only session sees no buttons.
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (ro_cookie, _) = session(&s, &ro).await;
    let (_, html) = get(&s, "/portal/keys", Some(&ro_cookie)).await;
    assert!(
        html.contains(&arn) && !html.contains(">Revoke</button>"),
        "{html}"
    );
    // No database uses it: Deregister removes it.
    let res = post_form(&s, "/portal/keys/deregister", &cookie, &form).await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_string();
    let (_, html) = get(&s, &to, Some(&cookie)).await;
    assert!(html.contains("Key deregistered"), "{html}");
    assert!(
        !html.contains(&format!(r#"<tr data-key-id="{arn}">"#)),
        "{html}"
    );
}

#[tokio::test]
async fn the_keys_page_shows_a_keys_binding_warning() {
    let s = TestServer::start().await;
    common::register_key(&s, "us-east-2").await;
    let (cookie, _) = session(&s, &s.admin).await;
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(!html.contains("Warning:"), "a bound key has none: {html}");
    // As the key monitor leaves a key registered before the binding (the probe itself is
    // tested in org_binding.rs).
    let legacy = keyplane_store::CustomerKey {
        bound_at: None,
        ..s.store
            .get_customer_key(
                s.org,
                keyplane_core::DbType::Classic,
                keyplane_core::Provider::Aws,
                "us-east-2",
            )
            .await
            .unwrap()
            .unwrap()
    };
    let mut legacy = legacy;
    legacy.db_type = keyplane_core::DbType::Serverless;
    s.store.insert_customer_key(&legacy).await.unwrap();
    assert!(
        s.store
            .record_key_binding(
                s.org,
                keyplane_core::DbType::Serverless,
                keyplane_core::Provider::Aws,
                "us-east-2",
                &keyplane_store::KeyBinding::Unbound {
                    warning: "usable for <any> organization".into()
                },
            )
            .await
            .unwrap()
    );
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(
        html.matches("<strong>Warning:</strong>").count(),
        1,
        "{html}"
    );
    assert!(
        html.contains("usable for &lt;any&gt; organization"),
        "escaped: {html}"
    );
}

#[tokio::test]
async fn add_keys_walks_type_provider_region_and_registers() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    // Classic offers no Azure; Serverless does.
    let (_, html) = get(&s, "/portal/keys/new?type=classic", Some(&cookie)).await;
    assert!(html.contains(r#"value="azure" disabled"#), "{html}");
    let (_, html) = get(&s, "/portal/keys/new?type=serverless", Some(&cookie)).await;
    assert!(!html.contains(r#"value="azure" disabled"#), "{html}");
    // Classic → AWS → us-east-2: the provider ID and the statements, with a copy button each.
    let (st, html) = get(
        &s,
        "/portal/keys/new?type=classic&provider=aws&region=us-east-2",
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 200);
    let (_, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    let provider_id = help["providerId"].as_str().unwrap();
    assert!(
        html.contains(&format!(
            r#"<pre id="provider-id" aria-labelledby="pid-h">{provider_id}</pre>"#
        )),
        "{html}"
    );
    assert!(html.contains("Allow an external account to use this KMS key"));
    assert!(html.contains(&format!("arn:aws:iam::{provider_id}:role/creator")));
    assert_eq!(html.matches(r#"class="copy""#).count(), 2);
    assert!(html.contains(r#"name="key_id""#));

    // A key in another region: refused in words, the form kept as typed.
    let wrong = customer_key(&s, "eu-west-1", &help["statements"]).await;
    let form = |arn: &str| {
        format!(
            "csrf={csrf}&type=classic&provider=aws&region=us-east-2&key_id={}",
            enc(arn)
        )
    };
    let res = post_form(&s, "/portal/keys", &cookie, &form(&wrong)).await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(html.contains(r#"class="error""#), "{html}");
    assert!(
        html.contains(&format!(r#"value="{wrong}""#)),
        "kept as typed"
    );

    // The right key: added, back to the list.
    let arn = customer_key(&s, "us-east-2", &help["statements"]).await;
    let res = post_form(&s, "/portal/keys", &cookie, &form(&arn)).await;
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    let to = res.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/portal/keys?added="), "{to}");
    let (st, html) = get(&s, &to, Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Key added") && html.contains(&arn), "{html}");
    let (_, listed) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn locked_regions_are_shown_disabled_with_contact_support() {
    let s = TestServer::start().await;
    s.store
        .set_unlocked_regions(
            s.org,
            keyplane_core::Provider::Aws,
            Some(vec!["us-east-2".to_string()]),
        )
        .await
        .unwrap();
    let (cookie, _) = session(&s, &s.admin).await;
    let (_, html) = get(
        &s,
        "/portal/keys/new?type=classic&provider=aws",
        Some(&cookie),
    )
    .await;
    assert!(html.contains(r#"value="us-east-2">"#), "{html}");
    assert!(html.contains(r#"value="eu-west-1" disabled"#), "{html}");
    assert!(html.contains("contact support"));
}

async fn form(
    s: &TestServer,
    path: &str,
    cookie: &str,
    body: &str,
) -> (u16, Option<String>, String) {
    let res = post_form(s, path, cookie, body).await;
    let st = res.status().as_u16();
    let loc = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (st, loc, res.text().await.unwrap())
}

#[tokio::test]
async fn a_pasted_policy_is_checked_in_place() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (_, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    let root = json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"});
    let mut stmts = vec![root.clone()];
    stmts.extend(help["statements"].as_array().unwrap().iter().cloned());
    let good = json!({"Version": "2012-10-17", "Statement": stmts});
    let base = format!("csrf={csrf}&type=classic&provider=aws&region=us-east-2&policy=");
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc(&good.to_string())),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("grants everything keyplane needs"), "{html}");
    assert!(
        html.contains("Enable IAM User Permissions"),
        "the pasted text is kept"
    );

    // Without kms:Decrypt in the use statement: the finding names it.
    let mut broken = good.clone();
    let acts = broken["Statement"][1]["Action"].as_array_mut().unwrap();
    acts.retain(|a| a != "kms:Decrypt");
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc(&broken.to_string())),
    )
    .await;
    assert_eq!(st, 200);
    assert!(html.contains("would be denied 1 action"), "{html}");
    assert!(html.contains("<code>kms:Decrypt</code>"), "{html}");

    // The seed's policy from before the binding: everything allowed, but for any organization.
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc(&common::seed_policy().to_string())),
    )
    .await;
    assert_eq!(st, 200);
    assert!(html.contains(r#"id="unbound-finding""#), "{html}");
    assert!(html.contains("use this key for any organization"), "{html}");
    assert!(
        html.contains("7 action(s) need the organization condition"),
        "{html}"
    );
    assert!(
        html.contains("kms:EncryptionContext:organization"),
        "{html}"
    );
    assert!(!html.contains("grants everything keyplane needs"), "{html}");

    // Not JSON: said so, 400, nothing else changes.
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc("{\"Statement\": [")),
    )
    .await;
    assert_eq!(st, 400);
    assert!(html.contains("not valid JSON"), "{html}");
    // CSRF applies here too.
    let (st, _, _) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        "type=classic&provider=aws&region=us-east-2&policy=%7B%7D",
    )
    .await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn the_add_keys_page_checks_the_key_id_as_typed() {
    let s = TestServer::start().await;
    let (cookie, _) = session(&s, &s.admin).await;
    let (_, html) = get(
        &s,
        "/portal/keys/new?type=classic&provider=aws&region=us-east-2",
        Some(&cookie),
    )
    .await;
    // The field carries what the script compares with, and the message has a live region.
    assert!(
        html.contains(r#"data-provider="aws" data-region="us-east-2""#),
        "{html}"
    );
    assert!(html.contains(r#"id="key-format""#) && html.contains(r#"role="status""#));
    assert!(
        html.contains("but you chose"),
        "the region-mismatch message is in the script"
    );
    // The inline script runs under the page's nonce (the CSP forbids any other).
    let nonce = html
        .split(r#"<script nonce=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(nonce.len(), 64);
}

#[tokio::test]
async fn settings_filter_switches_between_organizations_of_an_enterprise() {
    let s = TestServer::start().await;
    let ent = s.store.create_enterprise("Globex").await.unwrap();
    let a = s
        .store
        .create_org("Globex East", Some(ent.id))
        .await
        .unwrap();
    let b = s
        .store
        .create_org("Globex West", Some(ent.id))
        .await
        .unwrap();
    let ta = s.token(a.id, Role::OrgAdmin).await;
    let tb = s.token(b.id, Role::OrgAdmin).await;
    let (cookie, csrf) = session(&s, &ta).await;
    let (st, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(
        html.contains(&format!(
            r#"<option value="enterprise:{}" selected>Enterprise: Globex</option>"#,
            ent.id
        )),
        "{html}"
    );
    assert!(
        html.contains("Globex East") && html.contains("Globex West"),
        "the enterprise's organizations are listed"
    );
    assert!(
        !html.contains("Acme"),
        "another enterprise's organization is not"
    );
    assert!(html.contains(r#"nav aria-label="Settings""#));

    // Picking West without a token of it asks for one; nothing changes meanwhile.
    let pick = |org: uuid::Uuid| {
        format!(
            "csrf={csrf}&filter={}&org={org}",
            enc(&format!("enterprise:{}", ent.id))
        )
    };
    assert!(
        html.contains(&format!(
            r#"<input type="hidden" name="org" value="{}">"#,
            b.id
        )),
        "each organization is a form posting its ID: {html}"
    );
    let (st, _, html) = form(&s, "/portal/settings", &cookie, &pick(b.id)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Sign in to Globex West"), "{html}");
    assert!(html.contains(r#"<dd id="org-name">Globex East</dd>"#));
    // A token of West joins the session (sent with the session's CSRF token).
    let (st, loc, body) = form(
        &s,
        "/portal/signin",
        &cookie,
        &format!("csrf={csrf}&token={}", enc(&tb)),
    )
    .await;
    assert_eq!(st, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/portal/keys"));
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(html.contains("Globex West"), "now managing West");
    // And the filter switches back to East, and again to West, with no token asked: each a
    // POST answered with a redirect to the page, which says so.
    let (st, loc, _) = form(&s, "/portal/settings", &cookie, &pick(a.id)).await;
    assert_eq!(st, 303);
    let loc = loc.unwrap();
    assert!(loc.starts_with("/portal/settings?"), "{loc}");
    let (_, html) = get(&s, &loc, Some(&cookie)).await;
    assert!(
        html.contains("Now managing <strong>Globex East</strong>"),
        "{html}"
    );
    assert!(html.contains(r#"<dd id="org-name">Globex East</dd>"#));
    let (st, _, _) = form(&s, "/portal/settings", &cookie, &pick(b.id)).await;
    assert_eq!(st, 303);
    let (_, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert!(
        html.contains(r#"<dd id="org-name">Globex West</dd>"#),
        "{html}"
    );
    // An organization outside the session's enterprises is never switched to.
    let (st, _, html) = form(&s, "/portal/settings", &cookie, &pick(s.org)).await;
    assert_eq!(st, 400);
    assert!(html.contains("not in the filter"), "{html}");
    assert!(html.contains(r#"<dd id="org-name">Globex West</dd>"#));
    // Nor without the session's CSRF token.
    let (st, _, html) = form(
        &s,
        "/portal/settings",
        &cookie,
        &format!("org={}&filter=enterprise%3A{}", a.id, ent.id),
    )
    .await;
    assert_eq!(st, 403, "{html}");
    let (_, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert!(html.contains(r#"<dd id="org-name">Globex West</dd>"#));

    // Revoking West's token drops it; the session falls back to East.
    let client = tb.split(':').nth(1).unwrap();
    assert!(s.store.revoke_token(b.id, client).await.unwrap());
    let (st, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(
        html.contains(r#"<dd id="org-name">Globex East</dd>"#),
        "{html}"
    );
}

/// Reading the settings page changes nothing, whatever its query says: the organization the
/// session manages changes only on a POST carrying the CSRF token.
#[tokio::test]
async fn the_settings_get_does_not_change_the_managed_organization() {
    let s = TestServer::start().await;
    let ent = s.store.create_enterprise("Initech").await.unwrap();
    let a = s.store.create_org("Initech A", Some(ent.id)).await.unwrap();
    let b = s.store.create_org("Initech B", Some(ent.id)).await.unwrap();
    let ta = s.token(a.id, Role::OrgAdmin).await;
    let tb = s.token(b.id, Role::OrgAdmin).await;
    let (cookie, csrf) = session(&s, &ta).await;
    let (st, _, _) = form(
        &s,
        "/portal/signin",
        &cookie,
        &format!("csrf={csrf}&token={}", enc(&tb)),
    )
    .await;
    assert_eq!(st, 303);
    let managed =
        |html: &str, name: &str| html.contains(&format!(r#"<dd id="org-name">{name}</dd>"#));
    let (_, html) = get(&s, "/portal/settings", Some(&cookie)).await;
    assert!(
        managed(&html, "Initech B"),
        "the last sign-in is managed: {html}"
    );
    // What a link on another site could make the browser fetch: the old switch URL, and the
    // new one's fields as a query.
    for q in [
        format!("?org={}", a.id),
        format!("?filter=enterprise%3A{}&org={}", ent.id, a.id),
        format!("?filter=enterprise%3A{}&org={}&csrf={csrf}", ent.id, a.id),
        format!("?managing={}", a.id),
    ] {
        let (st, html) = get(&s, &format!("/portal/settings{q}"), Some(&cookie)).await;
        assert_eq!(st, 200, "{q}");
        assert!(
            managed(&html, "Initech B"),
            "{q} changed the organization: {html}"
        );
        assert!(!html.contains("Now managing"), "{q}: {html}");
    }
    // The keys page (acting on the managed organization) agrees.
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(html.contains("Initech B"), "{html}");
    assert!(!html.contains("Initech A"), "{html}");
}

async fn wait_db(s: &TestServer, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
        if body["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "never {want}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn databases_are_created_expanded_and_terminated_from_the_portal() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    // Before any key: the form says the platform's key will be used.
    let (st, html) = get(
        &s,
        "/portal/databases/new?type=classic&provider=aws&region=us-east-2",
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 200);
    assert!(html.contains("platform-managed key"), "{html}");
    for id in ["db-name", "db-type", "db-provider", "db-region", "db-tier"] {
        assert!(
            html.contains(&format!(r#"<label for="{id}">"#)),
            "{id} is labelled"
        );
    }
    let arn = common::register_key(&s, "us-east-2").await;
    // Now the notice names the customer key, before anything is created.
    let (_, html) = get(
        &s,
        "/portal/databases/new?type=classic&provider=aws&region=us-east-2",
        Some(&cookie),
    )
    .await;
    assert!(
        html.contains(&format!("encrypted with your customer key {arn}")),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"data-classic="customer:{arn}""#)),
        "the script knows it too"
    );

    // Bad input: the form again with the reason and the values kept.
    let (st, _, html) = form(
        &s,
        "/portal/databases",
        &cookie,
        &format!(
            "csrf={csrf}&name=&type=classic&provider=aws&region=us-east-2&tier=C10&keyspace=ks"
        ),
    )
    .await;
    assert_eq!(st, 400, "{html}");
    assert!(html.contains(r#"id="create-error""#), "{html}");
    let (st, _, _) = form(
        &s,
        "/portal/databases",
        &cookie,
        "name=x&type=classic&provider=aws&region=us-east-2&tier=C10",
    )
    .await;
    assert_eq!(st, 403, "CSRF");

    let (st, loc, body) = form(&s, "/portal/databases", &cookie, &format!("csrf={csrf}&name=portaldb&keyspace=shop&type=classic&provider=aws&region=us-east-2&tier=C10")).await;
    assert_eq!(st, 303, "{body}");
    let loc = loc.unwrap();
    let id = loc
        .strip_prefix("/portal/databases?created=")
        .expect("created")
        .to_string();
    let (_, view) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
    assert_eq!(view["info"]["name"], "portaldb");
    assert_eq!(view["customerKeyed"], true);
    let (_, html) = get(&s, &loc, Some(&cookie)).await;
    assert!(
        html.contains(&format!(r#"<tr data-db-id="{id}">"#)),
        "{html}"
    );
    assert!(
        html.contains(&format!("customer key <code>{arn}</code>")),
        "{html}"
    );
    wait_db(&s, &id, "ACTIVE").await;

    // The live status endpoint the page polls.
    let res = browser()
        .get(format!("{}/portal/databases/status", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let live: Value = res.json().await.unwrap();
    let me = live["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["status"], "ACTIVE");
    assert_eq!(me["regions"][0]["region"], "us-east-2");
    assert_eq!(
        browser()
            .get(format!("{}/portal/databases/status", s.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    // Adding eu-west-1, where no key is registered: refused in the row, with a link to Add Keys.
    let (_, html) = get(&s, "/portal/databases", Some(&cookie)).await;
    assert!(html.contains("eu-west-1 (no key registered)"), "{html}");
    let (st, _, html) = form(
        &s,
        &format!("/portal/databases/{id}/regions"),
        &cookie,
        &format!("csrf={csrf}&region=eu-west-1"),
    )
    .await;
    assert_eq!(st, 422, "{html}");
    assert!(html.contains(r#"id="region-error""#), "{html}");
    assert!(
        html.contains(
            r#"href="/portal/keys/new?type=classic&amp;provider=aws&amp;region=eu-west-1""#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<option value="eu-west-1" selected>"#),
        "the region asked for stays selected"
    );
    let (_, dcs) = s
        .get(&format!("/v2/databases/{id}/datacenters"), &s.admin)
        .await;
    assert_eq!(dcs.as_array().unwrap().len(), 1, "nothing was added");

    // Terminate: the wrong name is refused, the right one terminates.
    let (st, html) = get(
        &s,
        &format!("/portal/databases/{id}/terminate"),
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 200);
    assert!(html.contains(r#"id="confirm-name""#) && html.contains("us-east-2"));
    let (st, _, html) = form(
        &s,
        &format!("/portal/databases/{id}/terminate"),
        &cookie,
        &format!("csrf={csrf}&confirm=nope"),
    )
    .await;
    assert_eq!(st, 400);
    assert!(html.contains("does not match"), "{html}");
    let (_, view) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
    assert_eq!(view["status"], "ACTIVE", "still there");
    let (st, loc, _) = form(
        &s,
        &format!("/portal/databases/{id}/terminate"),
        &cookie,
        &format!("csrf={csrf}&confirm=portaldb"),
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(
        loc.as_deref(),
        Some(format!("/portal/databases?terminated={id}").as_str())
    );
    wait_db(&s, &id, "TERMINATED").await;
    let (_, html) = get(
        &s,
        &format!("/portal/databases?terminated={id}"),
        Some(&cookie),
    )
    .await;
    assert!(
        html.contains("TERMINATED"),
        "the terminated database stays in view: {html}"
    );
    let (st, _) = get(&s, "/portal/databases/not-a-uuid/terminate", Some(&cookie)).await;
    assert_eq!(st, 404);
    // The live status follows the terminated database's regions too.
    let res = browser()
        .get(format!("{}/portal/databases/status", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let live: Value = res.json().await.unwrap();
    let me = live["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["regions"][0]["status"], "TERMINATED", "{me}");

    // Every change, and the refusal, is in the audit log (the API's handlers record them).
    let (_, audit) = s
        .get(&format!("/v2/organizations/{}/audit", s.org), &s.admin)
        .await;
    let seen: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
                e["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("db.create".into(), id.clone(), "success".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("db.region.add".into(), id.clone(), "failure".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("db.terminate".into(), id.clone(), "success".into())),
        "{seen:?}"
    );
    let create = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "db.create" && e["outcome"] == "success")
        .unwrap();
    assert!(
        create["reason"].as_str().unwrap().contains(&arn),
        "the entry names the key: {create}"
    );
    let (_, html) = get(&s, "/portal/audit", Some(&cookie)).await;
    assert!(
        html.contains("db.terminate") && html.contains("db.create"),
        "{html}"
    );
}

#[tokio::test]
async fn the_favicon_request_gets_no_404() {
    let s = TestServer::start().await;
    let res = browser()
        .get(format!("{}/favicon.ico", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
}

#[tokio::test]
async fn a_platform_keyed_database_gains_a_region_from_the_portal() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (st, loc, body) = form(&s, "/portal/databases", &cookie, &format!("csrf={csrf}&name=plain&keyspace=shop&type=classic&provider=aws&region=us-east-2&tier=C10")).await;
    assert_eq!(st, 303, "{body}");
    let id = loc.unwrap().rsplit('=').next().unwrap().to_string();
    wait_db(&s, &id, "ACTIVE").await;
    let (st, _, body) = form(
        &s,
        &format!("/portal/databases/{id}/regions"),
        &cookie,
        &format!("csrf={csrf}&region=eu-west-1"),
    )
    .await;
    assert_eq!(st, 303, "{body}");
    let (_, dcs) = s
        .get(&format!("/v2/databases/{id}/datacenters"), &s.admin)
        .await;
    assert_eq!(dcs.as_array().unwrap().len(), 2, "{dcs}");
}

#[tokio::test]
async fn the_audit_page_pages_newest_first() {
    let s = TestServer::start().await;
    // 30 policy checks give 30 entries (plus the sign-in).
    let (_, help) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/policy",
            &s.admin,
        )
        .await;
    let policy = json!({"Version": "2012-10-17", "Statement": help["statements"]});
    for _ in 0..30 {
        let (st, _) = s
            .post(
                "/v2/kms/classic/provider/aws/region/us-east-2/policy/check",
                &s.admin,
                policy.clone(),
            )
            .await;
        assert_eq!(st, 200);
    }
    let (cookie, _) = session(&s, &s.admin).await;
    let (st, html) = get(&s, "/portal/audit", Some(&cookie)).await;
    assert_eq!(st, 200);
    let seqs: Vec<i64> = html
        .split(r#"data-seq=""#)
        .skip(1)
        .map(|x| x.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs.len(), 25, "one page");
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert!(
        html.contains("portal.signin"),
        "the newest entry is the sign-in"
    );
    let next = html
        .split(r#"rel="next""#)
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(next, format!("/portal/audit?before={}", seqs[24]));
    let (_, html) = get(&s, &next, Some(&cookie)).await;
    let older: Vec<i64> = html
        .split(r#"data-seq=""#)
        .skip(1)
        .map(|x| x.split('"').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        !older.is_empty() && older.iter().all(|x| *x < seqs[24]),
        "{older:?}"
    );
    assert!(!html.contains(r#"rel="next""#), "the last page");
    assert_eq!(
        get(&s, "/portal/audit?before=x", Some(&cookie)).await.0,
        400
    );
    // A read-only token may not read the audit log: said in words, with a 403.
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (c2, _) = session(&s, &ro).await;
    let (st, html) = get(&s, "/portal/audit", Some(&c2)).await;
    assert_eq!(st, 403, "{html}");
    assert!(html.contains(r#"role="alert""#));
}

#[tokio::test]
async fn the_dev_sign_in_link_signs_in_and_a_wrong_code_does_not() {
    // A store with the dev organization's token made first, as `serve --dev` does.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keyplane.db");
    let store = keyplane_store::open(db_path.to_str().unwrap())
        .await
        .unwrap();
    let org = store.create_org("Dev Organization", None).await.unwrap();
    let (token, _) =
        keyplane_app::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "dev")
            .await
            .unwrap();
    let code = "c0de".repeat(16);
    let cfg = Config {
        dev_signin: Some(keyplane_app::DevSignin {
            code: code.clone(),
            token: token.expose().to_string(),
        }),
        ..Config::default()
    };
    assert!(
        !format!("{cfg:?}").contains(&code),
        "the code is never printed by Debug"
    );
    let s = TestServer::with_store(store, cfg, dir, db_path, None).await;
    let res = browser()
        .get(format!("{}/portal/signin/dev?code={code}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/keys");
    let id = cookie_value(&set_cookies(&res), "kp_session").expect("a session");
    let (st, html) = get(&s, "/portal/keys", Some(&format!("kp_session={id}"))).await;
    assert_eq!(st, 200);
    assert!(html.contains("Dev Organization"), "{html}");
    let res = browser()
        .get(format!(
            "{}/portal/signin/dev?code={}",
            s.url,
            "beef".repeat(16)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert!(cookie_value(&set_cookies(&res), "kp_session").is_none());

    // Without --dev there is no link at all.
    let plain = TestServer::start().await;
    let res = browser()
        .get(format!("{}/portal/signin/dev?code={code}", plain.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn cookies_are_secure_when_the_portal_is_served_over_https() {
    let cfg = Config {
        public_url: "https://keys.example.com".into(),
        ..Config::default()
    };
    let s = TestServer::with_config(cfg).await;
    let r = sign_in(&s, &s.admin).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .cookies
        .iter()
        .find(|c| c.starts_with("kp_session="))
        .unwrap();
    assert!(set.contains("; Secure"), "{set}");
    let plain = TestServer::start().await;
    let r = sign_in(&plain, &plain.admin).await;
    assert!(
        !r.cookies.iter().any(|c| c.contains("Secure")),
        "plain http keeps cookies usable on localhost"
    );
}

#[tokio::test]
async fn a_provider_without_an_adapter_is_refused_as_not_implemented() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let key = "https://vault-one.vault.azure.net/keys/k";
    let (st, _, html) = form(
        &s,
        "/portal/keys",
        &cookie,
        &format!(
            "csrf={csrf}&type=serverless&provider=azure&region=eastus&key_id={}",
            enc(key)
        ),
    )
    .await;
    assert_eq!(st, 501, "{html}");
    assert!(
        html.contains(r#"role="alert">this deployment has no azure key service configured"#),
        "{html}"
    );
}

/// Add Keys with Google Cloud: the project and the service account to grant, the bindings and
/// gcloud commands with copy buttons, a pasted getIamPolicy output checked in place, then the
/// key registered and listed.
#[tokio::test]
async fn add_keys_with_google_cloud_shows_the_binding_checks_and_registers() {
    let s = TestServer::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let member = common::gcp::GCP_PLATFORM;
    let (st, html) = get(
        &s,
        "/portal/keys/new?type=classic&provider=gcp&region=us-east1",
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("keyplane-dev"), "the project: {html}");
    assert!(html.contains(member), "the service account: {html}");
    assert!(
        html.contains("roles/cloudkms.cryptoKeyEncrypterDecrypter")
            && html.contains("roles/cloudkms.viewer"),
        "{html}"
    );
    assert!(
        html.contains("gcloud kms keys add-iam-policy-binding"),
        "{html}"
    );
    assert!(html.matches(r#"class="copy""#).count() >= 2, "{html}");
    assert!(
        html.contains(r#"data-provider="gcp" data-region="us-east1""#),
        "{html}"
    );

    let c = common::gcp::customer(&s.kms).await;
    let key = common::gcp::new_key(&c, "us-east1", "portal", "orders").await;
    // Only the viewer role: the pasted policy is insufficient, naming the permission.
    common::gcp::set_bindings(
        &c,
        &key,
        &[(common::gcp::VIEWER_ROLE, vec![member.to_string()])],
    )
    .await;
    let pasted = common::gcp::iam_policy_json(&s.kms, &key).await;
    let base = format!("csrf={csrf}&type=classic&provider=gcp&region=us-east1&policy=");
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc(&pasted.to_string())),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(
        html.contains("cloudkms.cryptoKeyVersions.useToEncrypt"),
        "{html}"
    );
    // Registering now is refused with the binding to add, the key kept as typed.
    let register = format!(
        "csrf={csrf}&type=classic&provider=gcp&region=us-east1&key_id={}",
        enc(&key)
    );
    let (st, _, html) = form(&s, "/portal/keys", &cookie, &register).await;
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(
        html.contains("roles/cloudkms.cryptoKeyEncrypterDecrypter"),
        "{html}"
    );
    assert!(html.contains(&format!(r#"value="{key}""#)), "kept as typed");

    // Granted as the page says: the check passes and the key is added and listed.
    common::gcp::grant(&c, &key, &[member.to_string()]).await;
    let pasted = common::gcp::iam_policy_json(&s.kms, &key).await;
    let (st, _, html) = form(
        &s,
        "/portal/keys/policy-check",
        &cookie,
        &format!("{base}{}", enc(&pasted.to_string())),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(
        !html.contains("cloudkms.cryptoKeyVersions.useToEncrypt</code>"),
        "{html}"
    );
    let (st, to, html) = form(&s, "/portal/keys", &cookie, &register).await;
    assert_eq!(st, 303, "{html}");
    let (st, html) = get(&s, &to.unwrap(), Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Key added") && html.contains(&key), "{html}");
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(html.contains(&key), "{html}");
}

/// Add Keys with Azure Key Vault (serverless): the platform application to trust, the role
/// assignment and the commands with copy buttons, the key's role assignments (as ARM lists
/// them) checked in place for the key typed beside them, then the key registered and listed.
#[tokio::test]
async fn add_keys_with_azure_shows_the_role_checks_the_assignments_and_registers() {
    let (vault, s) = common::azure::start().await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let app = vault.creds.platform.client_id.clone();
    let (st, html) = get(
        &s,
        "/portal/keys/new?type=serverless&provider=azure&region=eastus",
        Some(&cookie),
    )
    .await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Entra ID application"), "{html}");
    assert!(html.contains(&app), "the client ID: {html}");
    assert!(html.contains(common::azure::ROLE), "{html}");
    assert!(
        html.contains("keyplane kms azure assign-role --key"),
        "the built-in vault's command: {html}"
    );
    assert!(html.matches(r#"class="copy""#).count() >= 3, "{html}");
    assert!(html.contains(r#"name="key_id""#), "{html}");

    let key = vault.create_key("orders").await;
    let check = |listed: serde_json::Value| {
        format!(
            "csrf={csrf}&type=serverless&provider=azure&region=eastus&key_id={}&policy={}",
            enc(&key),
            enc(&listed.to_string())
        )
    };
    let listed = vault.roles().list(&vault.scope("orders")).await.unwrap();
    let (st, _, html) = form(&s, "/portal/keys/policy-check", &cookie, &check(listed)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("would lack 3 permission(s)"), "{html}");
    let register = format!(
        "csrf={csrf}&type=serverless&provider=azure&region=eastus&key_id={}",
        enc(&key)
    );
    let (st, _, html) = form(&s, "/portal/keys", &cookie, &register).await;
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(html.contains(common::azure::ROLE), "{html}");

    vault.grant("orders").await;
    let listed = vault.roles().list(&vault.scope("orders")).await.unwrap();
    let (st, _, html) = form(&s, "/portal/keys/policy-check", &cookie, &check(listed)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("holds get, wrapKey and unwrapKey"), "{html}");
    let (st, to, html) = form(&s, "/portal/keys", &cookie, &register).await;
    assert_eq!(st, 303, "{html}");
    let (st, html) = get(&s, &to.unwrap(), Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Key added") && html.contains(&key), "{html}");
}

/// Add Keys for an OpenBao key, against a real `bao server -dev`: the role to bind, the
/// policy and the `bao` commands, fields for the role ID and secret ID (a password field); a
/// wrong secret ID refused in place without echoing it, the right one added. A deployment
/// with no OpenBao site does not offer the provider at all.
#[tokio::test]
async fn add_keys_registers_an_openbao_key_with_its_login() {
    let plain = TestServer::start().await;
    let (cookie, _) = session(&plain, &plain.admin).await;
    let (_, html) = get(&plain, "/portal/keys/new?type=classic", Some(&cookie)).await;
    assert!(!html.contains(r#"value="openbao""#), "{html}");
    drop(plain);

    let (bao, s) = common::openbao::start().await;
    bao.bao(&["write", "-f", "transit/keys/orders", "type=aes256-gcm96"])
        .await;
    let key = format!("{}/v1/transit/keys/orders", bao.address);
    let (cookie, csrf) = session(&s, &s.admin).await;
    let page = "/portal/keys/new?type=classic&provider=openbao&region=local";
    let (st, html) = get(&s, page, Some(&cookie)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("auth/approle/role/keyplane"), "{html}");
    assert!(
        html.contains("OpenBao policy") && html.contains("bao-commands"),
        "{html}"
    );
    assert!(html.contains(r#"type="password" id="secret_id""#), "{html}");
    let (_, role_id, secret_id) = common::openbao::apply_policy_help(&bao, &s, &key).await;
    let form = |secret: &str| {
        format!(
            "csrf={csrf}&type=classic&provider=openbao&region=local&key_id={}&role_id={}&secret_id={}",
            enc(&key),
            enc(&role_id),
            enc(secret)
        )
    };
    let res = post_form(&s, "/portal/keys", &cookie, &form("wrong-secret-id")).await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(
        html.contains("did not accept the role credentials"),
        "{html}"
    );
    assert!(!html.contains("wrong-secret-id"), "the secret was echoed");
    let res = post_form(&s, "/portal/keys", &cookie, &form(&secret_id)).await;
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    let (_, listed) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let (_, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert!(html.contains(&key), "{html}");
    assert!(!html.contains(&secret_id) && !html.contains(&role_id));
}

/// Add Keys for an OpenBao key under a JWT role: choosing "JWT role" shows the role bound to
/// this organization and the mount's trust of keyplane's public key, asks for no secret, and
/// registers the key once the customer ran the commands (before, the live check refuses it
/// with OpenBao's reason).
#[tokio::test]
async fn add_keys_registers_an_openbao_key_under_a_jwt_role() {
    let (bao, s) = common::openbao::start().await;
    bao.bao(&["auth", "enable", "jwt"]).await;
    bao.bao(&["write", "-f", "transit/keys/jwtkey", "type=aes256-gcm96"])
        .await;
    let key = format!("{}/v1/transit/keys/jwtkey", bao.address);
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (_, html) = get(
        &s,
        "/portal/keys/new?type=classic&provider=openbao&region=local",
        Some(&cookie),
    )
    .await;
    assert!(
        html.contains(r#"name="auth" value="jwt""#) && html.contains("JWT role"),
        "the login choice is not offered: {html}"
    );
    let page = "/portal/keys/new?type=classic&provider=openbao&region=local&auth=jwt";
    let (st, html) = get(&s, page, Some(&cookie)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("auth/jwt/role/keyplane"), "{html}");
    assert!(html.contains("BEGIN PUBLIC KEY"), "{html}");
    assert!(
        html.contains(&format!("bound_subject={}", s.org)),
        "the role is not bound to the organization: {html}"
    );
    assert!(
        !html.contains(r#"id="secret_id""#),
        "a JWT role asks for no secret"
    );
    assert!(
        html.contains(r#"type="hidden" name="auth" value="jwt""#),
        "{html}"
    );
    let form = format!(
        "csrf={csrf}&type=classic&provider=openbao&region=local&auth=jwt&role={}&key_id={}",
        enc("auth/jwt/role/keyplane"),
        enc(&key)
    );
    // The role does not exist yet: refused in place.
    let res = post_form(&s, "/portal/keys", &cookie, &form).await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(html.contains(r#"id="key-error""#), "{html}");
    let (_, listed) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    // The same commands the page shows, from the API's policy help.
    let (st, help) = s
        .get(
            &format!("/v2/kms/classic/provider/openbao/region/local/policy?keyID={key}&auth=jwt"),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    bao.run_help_commands(&help["openbao"]["commands"]).await;
    let res = post_form(&s, "/portal/keys", &cookie, &form).await;
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    let (_, listed) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// The keys page's "When a key fails its check": the organization's choice shown and changed
/// through the same service as the API; a bad duration refused in place; a key's own choice
/// (made over the API) listed.
#[tokio::test]
async fn the_keys_page_sets_what_a_failing_key_does() {
    let s = TestServer::start().await;
    let arn = common::register_key(&s, "us-east-2").await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (st, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("suspend its databases at once"), "{html}");
    assert!(
        html.contains(r#"action="/portal/keys/on-inaccessible""#),
        "{html}"
    );

    let form = |action: &str, secs: &str| format!("csrf={csrf}&action={action}&seconds={secs}");
    let res = post_form(
        &s,
        "/portal/keys/on-inaccessible",
        &cookie,
        &form("alert-only", "0"),
    )
    .await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert_eq!(st, 400, "{html}");
    assert!(
        html.contains(r#"id="choice-error""#) && html.contains("86400"),
        "{html}"
    );
    let res = post_form(
        &s,
        "/portal/keys/on-inaccessible",
        &cookie,
        &form("alert-only", "soon"),
    )
    .await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert_eq!(st, 400, "{html}");
    assert!(html.contains("whole number of seconds"), "{html}");
    let res = post_form(
        &s,
        "/portal/keys/on-inaccessible",
        &cookie,
        &form("alert-only", "600"),
    )
    .await;
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    let (_, v) = s.get("/v2/kms/on-inaccessible", &s.admin).await;
    assert_eq!(v["organization"]["action"], "alert-only", "{v}");
    assert_eq!(v["organization"]["alertOnlySeconds"], 600, "{v}");

    let r = s
        .req(
            "PUT",
            "/v2/kms/classic/provider/aws/region/us-east-2/on-inaccessible",
            Some(&s.admin),
        )
        .json(&serde_json::json!({"action": "suspend"}));
    assert_eq!(common::send(r).await.0, 200);
    let (_, html) = get(&s, "/portal/keys?choice=saved", Some(&cookie)).await;
    assert!(html.contains("alert for 600 s"), "{html}");
    assert!(
        html.contains(r#"id="key-choices""#) && html.contains(&arn),
        "{html}"
    );

    // Without the form's CSRF token, nothing changes.
    let res = post_form(
        &s,
        "/portal/keys/on-inaccessible",
        &cookie,
        "csrf=wrong&action=suspend",
    )
    .await;
    assert_eq!(res.status().as_u16(), 403);
    let (_, v) = s.get("/v2/kms/on-inaccessible", &s.admin).await;
    assert_eq!(v["organization"]["action"], "alert-only", "{v}");
}

/// Webhooks from the portal: added with two events checked (the secret shown once, then
/// never), refused with the reason for a bad URL, listed with its delivery log (here every
/// attempt failing, since nothing listens at the endpoint), and removed.
#[tokio::test]
async fn webhooks_are_added_logged_and_removed_from_the_portal() {
    let s = TestServer::with_config(Config {
        sealing_key: Some(keyplane_core::SealingKey::generate()),
        webhooks: keyplane_app::webhooks::WebhookSettings {
            allow_private_targets: true,
            retry_base: Duration::from_millis(100),
            poll: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (cookie, csrf) = session(&s, &s.admin).await;
    let (st, html) = get(&s, "/portal/webhooks", Some(&cookie)).await;
    assert_eq!(st, 200, "{html}");
    assert!(
        html.contains("No webhooks yet") && html.contains(r#"value="cmk.revoke""#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/portal/webhooks" aria-current="page""#),
        "{html}"
    );

    let res = post_form(
        &s,
        "/portal/webhooks",
        &cookie,
        &format!("csrf={csrf}&url=ftp%3A%2F%2Fx"),
    )
    .await;
    assert_eq!(res.status().as_u16(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains(r#"id="webhook-error""#) && html.contains("https"),
        "{html}"
    );

    // Port 9 on loopback: nothing answers there.
    let url = "http://127.0.0.1:9/hook";
    let res = post_form(
        &s,
        "/portal/webhooks",
        &cookie,
        &format!(
            "csrf={csrf}&url={}&event=cmk.on_inaccessible&event=cmk.revoke",
            enc(url)
        ),
    )
    .await;
    assert_eq!(res.status().as_u16(), 201);
    let html = res.text().await.unwrap();
    let secret = html
        .split(r#"<code class="secret">"#)
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    assert!(secret.starts_with("whsec_"), "{html}");
    let (_, list) = s.get("/v2/webhooks", &s.admin).await;
    assert_eq!(list[0]["url"], url);
    assert_eq!(
        list[0]["events"],
        json!(["cmk.on_inaccessible", "cmk.revoke"])
    );
    let id = list[0]["id"].as_str().unwrap().to_string();

    let r = s
        .req("PUT", "/v2/kms/on-inaccessible", Some(&s.admin))
        .json(&json!({"action": "suspend"}));
    assert_eq!(common::send(r).await.0, 200);
    let start = Instant::now();
    let html = loop {
        let (_, html) = get(&s, "/portal/webhooks", Some(&cookie)).await;
        if html.contains(r#"data-event="cmk.on_inaccessible""#) && html.contains("#2 ") {
            break html;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{html}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        html.contains("no answer") && html.contains(r#"data-state="pending""#),
        "{html}"
    );
    assert!(!html.contains(&secret), "the secret is shown only once");

    let delete = |csrf: &str| {
        let body = format!("csrf={csrf}&id={id}");
        let (s, cookie) = (&s, &cookie);
        async move { post_form(s, "/portal/webhooks/delete", cookie, &body).await }
    };
    assert_eq!(delete("nope").await.status().as_u16(), 403);
    assert_eq!(delete(&csrf).await.status().as_u16(), 303);
    let (_, list) = s.get("/v2/webhooks", &s.admin).await;
    assert_eq!(list, json!([]));
    assert_eq!(
        delete(&csrf).await.status().as_u16(),
        404,
        "already removed"
    );
}
