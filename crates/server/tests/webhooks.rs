//! Webhooks over real servers: keyplane on a port with its built-in KMS, and a receiver that
//! is a real HTTP server on loopback. It verifies every signature as a customer would, answers
//! 500 when told to, and records every request, so the test sees each event, each retry and
//! the delivery log.
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::{TestServer, assert_error, create_db, register_key, wait_status};
use keyplane_app::Config;
use keyplane_app::webhooks::WebhookSettings;
use keyplane_core::{Role, SealingKey, webhook};
use serde_json::{Value, json};

const KEY: &str = "/v2/kms/classic/provider/aws/region/us-east-2";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    event_id: String,
    event: String,
    attempt: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Received>>,
    /// `path:event type` → how many more of its requests to answer 500.
    fail: Mutex<BTreeMap<String, u32>>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let got = Received {
        path: path.clone(),
        event_id: h(webhook::EVENT_ID_HEADER),
        event: h(webhook::EVENT_TYPE_HEADER),
        attempt: h(webhook::ATTEMPT_HEADER),
        signature: h(webhook::SIGNATURE_HEADER),
        body: body.to_vec(),
    };
    let fail = {
        let mut f = r.fail.lock().unwrap();
        match f.get_mut(&format!("{path}:{}", got.event)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    r.got.lock().unwrap().push(got);
    if fail || path == "always-500" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// A receiver on a loopback port; its URL prefix.
async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Fast retries and test targets allowed; a sealing key to keep the secrets.
fn config() -> Config {
    Config {
        sealing_key: Some(SealingKey::generate()),
        key_check_interval: Duration::from_millis(200),
        kms_grace_period: Duration::from_secs(3600),
        suspension_sync_interval: Duration::from_millis(100),
        worker_poll: Duration::from_millis(50),
        webhooks: WebhookSettings {
            allow_private_targets: true,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            max_attempts: 3,
            poll: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            max_per_org: 4,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits until `done` holds over what the receiver got.
async fn until(r: &Receiver, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    let start = Instant::now();
    loop {
        let got = r.got.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: timed out; received {:?}",
            got.iter()
                .map(|g| (&g.path, &g.event, &g.attempt))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(got: &'a [Received], path: &str) -> Vec<&'a Received> {
    got.iter().filter(|g| g.path == path).collect()
}

fn events(got: &[&Received]) -> Vec<String> {
    let mut seen = Vec::new();
    for g in got {
        if !seen.contains(&g.event) {
            seen.push(g.event.clone());
        }
    }
    seen
}

/// Every event of a key's life reaches the endpoint, signed; a 500 is retried with the same
/// event ID and the next attempt number until it is accepted; the delivery log shows each
/// attempt; a filtered endpoint gets only its events; one that always fails is given up after
/// the last attempt; a deleted one gets nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_events_are_delivered_signed_and_retried() {
    let (r, base) = receiver().await;
    let s = TestServer::with_config(config()).await;

    let (st, all) = s
        .post(
            "/v2/webhooks",
            &s.admin,
            json!({"url": format!("{base}/all")}),
        )
        .await;
    assert_eq!(st, 201, "{all}");
    let secret = all["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with(webhook::SECRET_PREFIX), "{all}");
    assert_eq!(all["events"], json!([]));
    let (st, suspends) = s
        .post(
            "/v2/webhooks",
            &s.admin,
            json!({"url": format!("{base}/suspends"), "events": ["datacenter.suspend"]}),
        )
        .await;
    assert_eq!(st, 201, "{suspends}");
    let suspends_secret = suspends["secret"].as_str().unwrap().to_string();
    assert_ne!(secret, suspends_secret);
    let (st, failing) = s
        .post(
            "/v2/webhooks",
            &s.admin,
            json!({"url": format!("{base}/always-500"), "events": ["cmk.register"]}),
        )
        .await;
    assert_eq!(st, 201, "{failing}");
    // The secret is never shown again.
    let (st, list) = s.get("/v2/webhooks", &s.admin).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(!list.to_string().contains(&secret), "{list}");

    // The registration's event fails twice at the first endpoint, then gets through.
    r.fail.lock().unwrap().insert("all:cmk.register".into(), 2);
    register_key(&s, "us-east-2").await;
    let db = create_db(&s, "shop", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    wait_status(&s, &db, "SUSPENDED").await;
    let (st, body) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    wait_status(&s, &db, "ACTIVE").await;

    let got = until(&r, "every event at /all", |g| {
        events(&of(g, "all")).len() == 6 && of(g, "all").len() >= 8
    })
    .await;
    let at_all = of(&got, "all");
    let mut seen = events(&at_all);
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "cmk.alert",
            "cmk.register",
            "cmk.revoke",
            "cmk.unrevoke",
            "datacenter.resume",
            "datacenter.suspend",
        ]
    );
    let now = chrono::Utc::now().timestamp();
    for g in &at_all {
        webhook::verify(&secret, &g.signature, &g.body, now, 300)
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", g.event));
        let body: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(body["type"], g.event.as_str());
        assert_eq!(body["id"], g.event_id.as_str());
        assert_eq!(body["organizationId"], s.org.to_string());
        // The other endpoint's secret does not verify it.
        assert!(webhook::verify(&suspends_secret, &g.signature, &g.body, now, 300).is_err());
    }
    let suspend_body: Value = serde_json::from_slice(
        &at_all
            .iter()
            .find(|g| g.event == "datacenter.suspend")
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(
        suspend_body["reason"].as_str().unwrap().contains("revoked"),
        "{suspend_body}"
    );
    assert!(
        suspend_body["target"].as_str().unwrap().contains(&db),
        "{suspend_body}"
    );
    // The retries: one event ID, attempts 1, 2, 3, the same body each time.
    let register: Vec<_> = at_all
        .iter()
        .filter(|g| g.event == "cmk.register")
        .collect();
    assert_eq!(
        register
            .iter()
            .map(|g| g.attempt.as_str())
            .collect::<Vec<_>>(),
        vec!["1", "2", "3"]
    );
    assert!(
        register
            .iter()
            .all(|g| g.event_id == register[0].event_id && g.body == register[0].body)
    );
    // Every other event once; the alert is the monitor's "resolved" on resuming.
    assert_eq!(at_all.len(), 3 + 5, "{:?}", events(&at_all));
    let alert: Value =
        serde_json::from_slice(&at_all.iter().find(|g| g.event == "cmk.alert").unwrap().body)
            .unwrap();
    assert!(
        alert["reason"].as_str().unwrap().starts_with("resolved"),
        "{alert}"
    );

    // The filtered endpoint: only the suspension.
    let at_suspends = of(&got, "suspends");
    assert_eq!(events(&at_suspends), vec!["datacenter.suspend"]);
    assert_eq!(at_suspends.len(), 1);
    webhook::verify(
        &suspends_secret,
        &at_suspends[0].signature,
        &at_suspends[0].body,
        now,
        300,
    )
    .unwrap();

    // The delivery log of the first endpoint.
    let all_id = all["id"].as_str().unwrap();
    let (st, log) = s
        .get(&format!("/v2/webhooks/{all_id}/deliveries"), &s.admin)
        .await;
    assert_eq!(st, 200, "{log}");
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(log[0]["event"], "cmk.unrevoke", "newest first");
    assert_eq!(log[5]["event"], "cmk.register");
    let reg = log.iter().find(|d| d["event"] == "cmk.register").unwrap();
    assert_eq!(reg["state"], "delivered");
    let statuses: Vec<Value> = reg["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(500), json!(204)]);
    assert!(
        reg["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert!(log.iter().all(|d| d["state"] == "delivered"));

    // The endpoint that always answers 500: three attempts, then given up.
    let failing_id = failing["id"].as_str().unwrap();
    let start = Instant::now();
    let failed = loop {
        let (_, log) = s
            .get(&format!("/v2/webhooks/{failing_id}/deliveries"), &s.admin)
            .await;
        if log[0]["state"] == "failed" {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        failed.as_array().unwrap().len(),
        1,
        "only cmk.register: {failed}"
    );
    assert_eq!(
        failed[0]["attempts"].as_array().unwrap().len(),
        3,
        "{failed}"
    );
    assert!(failed[0]["nextAttemptAt"].is_null());
    assert_eq!(of(&r.got.lock().unwrap(), "always-500").len(), 3);

    // Deleted: nothing more is sent there, and its log is gone.
    let (st, _) =
        common::send(s.req("DELETE", &format!("/v2/webhooks/{all_id}"), Some(&s.admin))).await;
    assert_eq!(st, 204);
    let before = of(&r.got.lock().unwrap(), "all").len();
    let (st, body) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    until(&r, "the second suspension at /suspends", |g| {
        of(g, "suspends").len() == 2
    })
    .await;
    assert_eq!(
        of(&r.got.lock().unwrap(), "all").len(),
        before,
        "a deleted webhook gets nothing"
    );
    let (st, body) = s
        .get(&format!("/v2/webhooks/{all_id}/deliveries"), &s.admin)
        .await;
    assert_error(st, &body, 404, 4000);

    // The audit log records the webhook changes.
    let (_, audit) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=500", s.org),
            &s.admin,
        )
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "webhook.create").count(),
        3
    );
    for e in audit["entries"].as_array().unwrap() {
        if e["action"] == "webhook.create" {
            let target = e["target"].as_str().unwrap();
            assert!(
                target.ends_with("http://127.0.0.1") && !target.contains("/all"),
                "the endpoint by its host only (a path may hold the receiver's secret): {target}"
            );
        }
    }
    assert_eq!(
        actions.iter().filter(|a| **a == "webhook.delete").count(),
        1
    );
}

/// Bad input gets a clear 4xx and stores nothing; roles apply; the cap holds; another
/// organization's webhook is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_requests_are_checked() {
    let (_r, base) = receiver().await;
    let s = TestServer::with_config(config()).await;
    let hook = format!("{base}/x");
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "https"),
        (json!({"url": "not a url"}), "absolute URL"),
        (json!({"url": "https://user:pw@example.com/"}), "user name"),
        (json!({"url": hook, "events": []}), "omit it"),
        (json!({"url": hook, "events": ["cmk.list"]}), "not an event"),
        (
            json!({"url": hook, "events": ["nonsense"]}),
            "datacenter.suspend",
        ),
    ] {
        let (st, res) = s.post("/v2/webhooks", &s.admin, body.clone()).await;
        let msg = assert_error(st, &res, 400, 1000);
        assert!(msg.contains(field), "{body}: {msg}");
    }
    for body in [
        json!({}),
        json!({"url": hook, "extra": 1}),
        json!({"url": 5}),
    ] {
        let (st, res) = s.post("/v2/webhooks", &s.admin, body.clone()).await;
        assert_eq!(st, 400, "{body}: {res}");
    }
    let (_, list) = s.get("/v2/webhooks", &s.admin).await;
    assert_eq!(list, json!([]), "nothing stored");

    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, res) = s.post("/v2/webhooks", &ro, json!({"url": hook})).await;
    assert_error(st, &res, 403, 3000);
    let (_, audit) = s
        .get(&format!("/v2/organizations/{}/audit", s.org), &s.admin)
        .await;
    let denied = &audit["entries"][0];
    assert_eq!(
        (denied["action"].as_str(), denied["outcome"].as_str()),
        (Some("webhook.create"), Some("denied")),
        "{denied}"
    );
    let (st, _) = s.get("/v2/webhooks", &ro).await;
    assert_eq!(st, 200, "a read-only token may list");

    for _ in 0..4 {
        let (st, res) = s.post("/v2/webhooks", &s.admin, json!({"url": hook})).await;
        assert_eq!(st, 201, "{res}");
    }
    let (st, res) = s.post("/v2/webhooks", &s.admin, json!({"url": hook})).await;
    let msg = assert_error(st, &res, 409, 4090);
    assert!(msg.contains("4 webhooks"), "{msg}");

    let (_, list) = s.get("/v2/webhooks", &s.admin).await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    let other = s.store.create_org("Other", None).await.unwrap().id;
    let theirs = s.token(other, Role::OrgAdmin).await;
    let (st, res) = s
        .get(&format!("/v2/webhooks/{id}/deliveries"), &theirs)
        .await;
    assert_error(st, &res, 404, 4000);
    let (st, res) =
        common::send(s.req("DELETE", &format!("/v2/webhooks/{id}"), Some(&theirs))).await;
    assert_error(st, &res, 404, 4000);
    let (st, res) = s.get("/v2/webhooks/not-a-uuid/deliveries", &s.admin).await;
    assert_eq!(st, 400, "{res}");
    let (st, res) = s
        .get(&format!("/v2/webhooks/{id}/deliveries?limit=0"), &s.admin)
        .await;
    assert_error(st, &res, 400, 1002);

    // Where the operator allows no test targets, a private address is refused; without a
    // sealing key no secret can be kept.
    let strict = TestServer::with_config(Config::default()).await;
    let (st, res) = strict
        .post(
            "/v2/webhooks",
            &strict.admin,
            json!({"url": "https://169.254.169.254/x"}),
        )
        .await;
    let msg = assert_error(st, &res, 400, 1000);
    assert!(msg.contains("non-public"), "{msg}");
    let (st, res) = strict
        .post("/v2/webhooks", &strict.admin, json!({"url": hook}))
        .await;
    assert_error(st, &res, 400, 1000);
    let (st, res) = strict
        .post(
            "/v2/webhooks",
            &strict.admin,
            json!({"url": "https://hooks.example.com/"}),
        )
        .await;
    let msg = assert_error(st, &res, 501, 5010);
    assert!(msg.contains("sealing key"), "{msg}");
}

/// Two processes on one store, each with its dispatcher, and events recorded by both from
/// eight concurrent tasks: every event reaches the endpoint exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_deliver_each_event_once() {
    let (r, base) = receiver().await;
    let cfg = config();
    let key = cfg.sealing_key.clone();
    let s = TestServer::with_config(cfg).await;
    let replica = s
        .replica(Config {
            sealing_key: key,
            ..config()
        })
        .await;
    let (st, hook) = s
        .post(
            "/v2/webhooks",
            &s.admin,
            json!({"url": format!("{base}/once"), "events": ["cmk.on_inaccessible"]}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = s.client.clone();
        let url = if i % 2 == 0 {
            s.url.clone()
        } else {
            replica.url.clone()
        };
        let token = s.admin.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let res = client
                    .put(format!("{url}/v2/kms/on-inaccessible"))
                    .bearer_auth(&token)
                    .json(&json!({"action": "alert-only", "alertOnlySeconds": 60 + i * 10 + j}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    until(&r, "40 events", |g| of(g, "once").len() >= 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = r.got.lock().unwrap().clone();
    let mut ids: Vec<&str> = of(&got, "once")
        .iter()
        .map(|g| g.event_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "40 distinct events");
    assert_eq!(
        of(&got, "once").len(),
        40,
        "each delivered once, by one process"
    );
    drop(replica);
}

/// A hand-written fake, for a fault no real key service produces on demand: a key whose
/// automatic rotation is late (AWS and Cloud KMS, the built-in KMS included, rotate on the
/// date). Every operation goes to the built-in KMS but the rotation facts, which say
/// automatic, next rotation in 30 days, or three days ago while `late` is set.
struct LateRotation {
    inner: Arc<dyn keyplane_kms::KmsConnector>,
    late: Arc<std::sync::atomic::AtomicBool>,
}

struct LateProvider {
    inner: Arc<dyn keyplane_kms::KeyProvider>,
    late: Arc<std::sync::atomic::AtomicBool>,
}

impl keyplane_kms::KmsConnector for LateRotation {
    fn connect(
        &self,
        identity: &keyplane_kms::PlatformIdentity,
    ) -> keyplane_kms::Result<Arc<dyn keyplane_kms::KeyProvider>> {
        Ok(Arc::new(LateProvider {
            inner: self.inner.connect(identity)?,
            late: self.late.clone(),
        }))
    }

    fn volume_grantee(&self, identity: &keyplane_kms::PlatformIdentity) -> String {
        self.inner.volume_grantee(identity)
    }
}

#[async_trait::async_trait]
impl keyplane_kms::KeyProvider for LateProvider {
    async fn describe_key(
        &self,
        key_id: &str,
    ) -> keyplane_kms::Result<keyplane_kms::KeyDescription> {
        self.inner.describe_key(key_id).await
    }
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &keyplane_kms::EncryptionContext,
    ) -> keyplane_kms::Result<Vec<u8>> {
        self.inner.encrypt(key_id, plaintext, context).await
    }
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &keyplane_kms::EncryptionContext,
    ) -> keyplane_kms::Result<zeroize::Zeroizing<Vec<u8>>> {
        self.inner.decrypt(key_id, ciphertext, context).await
    }
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &keyplane_kms::EncryptionContext,
    ) -> keyplane_kms::Result<keyplane_kms::DataKeyPair> {
        self.inner.generate_data_key(key_id, context).await
    }
    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &keyplane_kms::EncryptionContext,
    ) -> keyplane_kms::Result<Vec<u8>> {
        self.inner
            .generate_data_key_without_plaintext(key_id, context)
            .await
    }
    async fn create_grant(
        &self,
        key_id: &str,
        grantee: &str,
        operations: &[&str],
        name: &str,
        constraint: &keyplane_kms::GrantConstraint,
    ) -> keyplane_kms::Result<String> {
        self.inner
            .create_grant(key_id, grantee, operations, name, constraint)
            .await
    }
    async fn list_grants(&self, key_id: &str) -> keyplane_kms::Result<Vec<keyplane_kms::Grant>> {
        self.inner.list_grants(key_id).await
    }
    async fn revoke_grant(&self, key_id: &str, grant_id: &str) -> keyplane_kms::Result<()> {
        self.inner.revoke_grant(key_id, grant_id).await
    }
    async fn rotation_facts(
        &self,
        _key_id: &str,
    ) -> keyplane_kms::Result<keyplane_kms::RotationFacts> {
        let days = if self.late.load(std::sync::atomic::Ordering::SeqCst) {
            -3
        } else {
            30
        };
        let next = chrono::Utc::now() + chrono::Duration::days(days);
        Ok(keyplane_kms::RotationFacts {
            enabled: true,
            period_days: Some(90),
            last_rotated_at: None,
            next_rotation_at: Some(next.to_rfc3339()),
        })
    }
}

/// A key whose own rotation is late raises `cmk.rotation.overdue` once however many looks see
/// it, delivered signed to the organization's endpoint; once the key is rotated the alert is
/// cleared, and a later lapse raises it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_key_rotation_is_told_once() {
    let (r, base) = receiver().await;
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = late.clone();
    let s = TestServer::with_wrapped_kms(
        Config {
            key_rotation_check_interval: Duration::from_millis(150),
            ..config()
        },
        move |inner| Arc::new(LateRotation { inner, late: flag }),
    )
    .await;
    let (st, hook) = s
        .post(
            "/v2/webhooks",
            &s.admin,
            json!({"url": format!("{base}/rot"), "events": ["cmk.rotation.overdue"]}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let arn = register_key(&s, "us-east-2").await;
    let db = create_db(&s, "shop", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        r.got.lock().unwrap().is_empty(),
        "an alert with the rotation on time"
    );

    late.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = until(&r, "the overdue alert", |g| !g.is_empty()).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(got[0].event, "cmk.rotation.overdue");
    assert!(
        webhook::verify(
            &secret,
            &got[0].signature,
            &got[0].body,
            chrono::Utc::now().timestamp(),
            300
        )
        .is_ok(),
        "the signature does not verify"
    );
    assert!(body["target"].as_str().unwrap().contains(&arn), "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("was due on"),
        "{body}"
    );
    // More looks, no second alert.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.got.lock().unwrap().len(), 1);

    // Rotated (the next date ahead again): cleared; late again: told again.
    late.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    late.store(true, std::sync::atomic::Ordering::SeqCst);
    until(&r, "the second alert", |g| g.len() >= 2).await;
    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=100", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200);
    let overdue = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "cmk.rotation.overdue")
        .count();
    assert_eq!(overdue, 2, "{page}");
}
