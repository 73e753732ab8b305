//! The web portal over a real server on a loopback port: sign in/out with an application
//! token and a server-side session cookie, CSRF on every form, the Key Encryption list,
//! Add Keys through the API's registration, and HTML escaping.
mod common;

use common::TestServer;
use keyplane_core::Role;
use serde_json::{Value, json};

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
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
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
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
    let res = c.get(format!("{}/portal/signin", s.url)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let csrf = cookie_value(&set_cookies(&res), "kp_csrf").expect("a CSRF cookie");
    let html = res.text().await.unwrap();
    assert_eq!(csrf_field(&html), csrf, "double-submit: the field repeats the cookie");
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
        location: res.headers().get("location").map(|v| v.to_str().unwrap().to_string()),
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
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
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
    let set = r.cookies.iter().find(|c| c.starts_with("kp_session=")).expect("session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    let id = cookie_value(&r.cookies, "kp_session").unwrap();
    assert_eq!(id.len(), 64, "256 random bits");
    assert!(!set.contains(s.admin.split(':').nth(2).unwrap()), "the token never reaches the browser");
    let cookie = format!("kp_session={id}");
    // Signed in, / leads to the keys page; without the cookie, to the sign-in page.
    let res = browser().get(format!("{}/", s.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/keys");
    let res = browser().get(format!("{}/portal/keys", s.url)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/portal/signin");
    let (st, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Key Encryption") && html.contains("Acme"), "{html}");
    assert!(html.contains(r#"name="viewport""#));
    for nav in ["Settings", "Security", "Databases", "Sign out"] {
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
    let res = post_form(&s, "/portal/signin", "kp_csrf=aaaa", &format!("csrf=bbbb&token={}", enc(&s.admin))).await;
    assert_eq!(res.status().as_u16(), 403);

    let (cookie, csrf) = session(&s, &s.admin).await;
    let res = post_form(&s, "/portal/keys", &cookie, "type=classic&provider=aws&region=us-east-2&key_id=x").await;
    assert_eq!(res.status().as_u16(), 403);
    let res = post_form(&s, "/portal/keys", &cookie, "csrf=wrong&type=classic&provider=aws&region=us-east-2&key_id=x").await;
    assert_eq!(res.status().as_u16(), 403);
    let res = post_form(&s, "/portal/signout", &cookie, "").await;
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 200, "still signed in");
    // Sign out with the token: the session is gone.
    let res = post_form(&s, "/portal/signout", &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(res.status().as_u16(), 303);
    assert!(set_cookies(&res).iter().any(|c| c.starts_with("kp_session=;") && c.contains("Max-Age=0")));
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 303);
}

#[tokio::test]
async fn a_revoked_token_ends_the_session() {
    let s = TestServer::start().await;
    let token = s.token(s.org, Role::OrgAdmin).await;
    let (cookie, _) = session(&s, &token).await;
    let client = token.split(':').nth(1).unwrap();
    assert!(s.store.revoke_token(s.org, client).await.unwrap());
    assert_eq!(get(&s, "/portal/keys", Some(&cookie)).await.0, 303);
}

#[tokio::test]
async fn an_organization_name_is_escaped() {
    let s = TestServer::start().await;
    let org = s.store.create_org("<script>alert(1)</script>", None).await.unwrap();
    let token = s.token(org.id, Role::OrgAdmin).await;
    let (cookie, _) = session(&s, &token).await;
    for path in ["/portal/keys", "/portal/settings", "/portal/keys/new?type=classic&provider=aws&region=us-east-2"] {
        let (st, html) = get(&s, path, Some(&cookie)).await;
        assert_eq!(st, 200, "{path}: {html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: {html}");
        assert!(!html.contains("<script>alert"), "{path}");
    }
}

/// The customer's side of the seed: a key in the built-in KMS with the helper's statements.
async fn customer_key(s: &TestServer, region: &str, statements: &Value) -> String {
    let mut all = vec![json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"})];
    all.extend(statements.as_array().unwrap().iter().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": all});
    let kms = s.kms.customer(region);
    let out = kms.create_key().description("customer key").policy(policy.to_string()).send().await.unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

#[tokio::test]
async fn the_keys_page_lists_a_key_registered_through_the_api() {
    let s = TestServer::start().await;
    let (st, help) = s.get("/v2/kms/classic/provider/aws/region/us-east-2/policy", &s.admin).await;
    assert_eq!(st, 200, "{help}");
    let arn = customer_key(&s, "us-east-2", &help["statements"]).await;
    let (st, body) = s
        .post("/v2/kms/classic", &s.admin, json!({"orgId": s.org.to_string(), "aws": {"keyID": arn, "region": "us-east-2"}}))
        .await;
    assert_eq!(st, 201, "{body}");
    let (cookie, _) = session(&s, &s.admin).await;
    let (st, html) = get(&s, "/portal/keys", Some(&cookie)).await;
    assert_eq!(st, 200);
    assert!(html.contains(&arn), "{html}");
    assert!(html.contains("AVAILABLE") && html.contains("Classic") && html.contains("us-east-2") && html.contains("AWS"));
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
    let (st, html) = get(&s, "/portal/keys/new?type=classic&provider=aws&region=us-east-2", Some(&cookie)).await;
    assert_eq!(st, 200);
    let (_, help) = s.get("/v2/kms/classic/provider/aws/region/us-east-2/policy", &s.admin).await;
    let provider_id = help["providerId"].as_str().unwrap();
    assert!(html.contains(&format!(r#"<pre id="provider-id" aria-labelledby="pid-h">{provider_id}</pre>"#)), "{html}");
    assert!(html.contains("Allow an external account to use this KMS key"));
    assert!(html.contains(&format!("arn:aws:iam::{provider_id}:role/creator")));
    assert_eq!(html.matches(r#"class="copy""#).count(), 2);
    assert!(html.contains(r#"name="key_id""#));

    // A key in another region: refused in words, the form kept as typed.
    let wrong = customer_key(&s, "eu-west-1", &help["statements"]).await;
    let form = |arn: &str| format!("csrf={csrf}&type=classic&provider=aws&region=us-east-2&key_id={}", enc(arn));
    let res = post_form(&s, "/portal/keys", &cookie, &form(&wrong)).await;
    let st = res.status().as_u16();
    let html = res.text().await.unwrap();
    assert!((400..500).contains(&st), "{st} {html}");
    assert!(html.contains(r#"class="error""#), "{html}");
    assert!(html.contains(&format!(r#"value="{wrong}""#)), "kept as typed");

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
        .set_unlocked_regions(s.org, keyplane_core::Provider::Aws, Some(vec!["us-east-2".to_string()]))
        .await
        .unwrap();
    let (cookie, _) = session(&s, &s.admin).await;
    let (_, html) = get(&s, "/portal/keys/new?type=classic&provider=aws", Some(&cookie)).await;
    assert!(html.contains(r#"value="us-east-2">"#), "{html}");
    assert!(html.contains(r#"value="eu-west-1" disabled"#), "{html}");
    assert!(html.contains("contact support"));
}
