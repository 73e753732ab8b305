//! OpenBao / Vault Transit customer keys end to end, over real servers: a real `bao server
//! -dev` as the customer's key service (driven with the `bao` CLI, running the commands
//! keyplane's policy help prints), keyplane on a port with its worker, monitor and Data API,
//! the OpenBao adapter logging in with the AppRole credentials registered with the key.
//! Registration's refusals, a classic and a serverless database on one key, the policy
//! revoked and restored, the key rotated, `min_decryption_version` raised past a database's
//! wrapped key; and no role ID, secret ID or token in any log line, answer or stored byte.
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::openbao::{REGION, apply_policy_help, body, start};
use common::{TestServer, send, wait_status};
use keyplane_core::Provider;
use serde_json::{Value, json};

/// Every log line of this test binary (a global subscriber: the server's tasks run on the
/// runtime's worker threads).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

/// Service tokens OpenBao issues: `s.` and 24 letters or digits.
fn find_token(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(26)).find_map(|i| {
        let c = &b[i..i + 26];
        (c.starts_with(b"s.")
            && c[2..].iter().all(|x| x.is_ascii_alphanumeric())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 26).is_none_or(|x| !x.is_ascii_alphanumeric()))
        .then(|| text[i..i + 26].to_string())
    })
}

fn message(v: &Value) -> String {
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn create_db(s: &TestServer, name: &str, tier: &str) -> String {
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(
            &json!({"name": name, "keyspace": "shop", "cloudProvider": "OPENBAO", "tier": tier,
                      "capacityUnits": 1, "region": REGION}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    loc.rsplit('/').next().unwrap().to_string()
}

async fn data(s: &TestServer, db: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("{}/db/{db}-{REGION}/api/json/v1/shop{path}", s.url);
    send(s.client.post(url).header("Token", &s.admin).json(&cmd)).await
}

async fn fill(s: &TestServer, db: &str, n: usize) {
    let (st, v) = data(s, db, "", json!({"createCollection": {"name": "inv"}})).await;
    assert_eq!(st, 200, "{v}");
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"_id": format!("d{i}"), "v": i}))
        .collect();
    let (st, v) = data(s, db, "/inv", json!({"insertMany": {"documents": docs}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["status"]["insertedIds"].as_array().unwrap().len(),
        n,
        "{v}"
    );
}

async fn count(s: &TestServer, db: &str) -> (u16, Value) {
    data(s, db, "/inv", json!({"countDocuments": {}})).await
}

/// Polls until the database's status is `want` and its Data API answers `status` (20 s).
async fn until(s: &TestServer, db: &str, want: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        let (st, body) = count(s, db).await;
        if v["status"] == want && st == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{db} never became {want} with reads answering {status}: {v} / {st} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openbao_keys_from_registration_to_suspension_rotation_and_back() {
    logs();
    let (bao, s) = start().await;
    let key = format!("{}/v1/transit/keys/orders", bao.address);
    bao.bao(&["write", "-f", "transit/keys/orders", "type=aes256-gcm96"])
        .await;
    let mut answers: Vec<String> = Vec::new();

    // The provider ID: the role the customer's policy is bound to.
    let (st, v) = s
        .get(
            &format!("/v2/kms/provider/openbao/region/{REGION}/accounts"),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.to_string().contains("auth/approle/role/keyplane"), "{v}");

    // The help names every path and the commands; running them makes the role and its login.
    let (help, role_id, secret_id) = apply_policy_help(&bao, &s, &key).await;
    assert_eq!(help["providerId"], "auth/approle/role/keyplane", "{help}");
    let hcl = help["openbao"]["policyHcl"].as_str().unwrap().to_string();
    assert!(hcl.contains("path \"transit/decrypt/orders\""), "{hcl}");
    let policy = help["openbao"]["policyName"].as_str().unwrap().to_string();
    assert!(!role_id.is_empty() && !secret_id.is_empty());

    // Refusals, each naming what to change; nothing stored.
    let slot = format!("/v2/kms/provider/openbao/region/{REGION}");
    let (st, v) = s
        .post(
            "/v2/kms",
            &s.admin,
            json!({"orgId": s.org, "openbao": {"keyID": key, "region": REGION}}),
        )
        .await;
    assert_eq!(st, 400, "no credentials: {v}");
    assert!(message(&v).contains("secretID"), "{v}");
    let (st, v) = s
        .post(
            "/v2/kms",
            &s.admin,
            body(&s, &key, &role_id, "not-the-secret"),
        )
        .await;
    assert_eq!(st, 422, "wrong secret ID: {v}");
    assert!(
        message(&v).contains("did not accept the role credentials"),
        "{v}"
    );
    answers.push(v.to_string());
    let (st, v) = s
        .post(
            "/v2/kms",
            &s.admin,
            body(&s, "orders", &role_id, &secret_id),
        )
        .await;
    assert_eq!(st, 400, "not a key URL: {v}");
    // A policy without decrypt: the missing capability, with its path.
    let without_decrypt = hcl.replace("transit/decrypt/orders", "transit/decrypt/other");
    bao.bao_stdin(&["policy", "write", &policy, "-"], &without_decrypt)
        .await;
    let (st, v) = s
        .post("/v2/kms", &s.admin, body(&s, &key, &role_id, &secret_id))
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        message(&v).contains("\"update transit/decrypt/orders\""),
        "{v}"
    );
    // An unknown key the policy grants: not found.
    let ghost = format!("{}/v1/transit/keys/ghost", bao.address);
    bao.bao_stdin(
        &["policy", "write", &policy, "-"],
        &format!("{hcl}\n{}", hcl.replace("/orders", "/ghost")),
    )
    .await;
    let (st, v) = s
        .post("/v2/kms", &s.admin, body(&s, &ghost, &role_id, &secret_id))
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("was not found"), "{v}");
    let (st, v) = s.get(&slot, &s.admin).await;
    assert_eq!(st, 404, "nothing was stored: {v}");

    // Registered for both database types; the answer never carries the login.
    bao.bao_stdin(&["policy", "write", &policy, "-"], &hcl)
        .await;
    for path in ["/v2/kms", "/v2/kms/classic"] {
        let (st, v) = s
            .post(path, &s.admin, body(&s, &key, &role_id, &secret_id))
            .await;
        assert_eq!(st, 201, "{path}: {v}");
        assert_eq!(v["openbao"]["keyID"], key.as_str(), "{v}");
        answers.push(v.to_string());
    }
    let (st, v) = s.get(&format!("{slot}/status"), &s.admin).await;
    assert_eq!(st, 200, "{v}");
    answers.push(v.to_string());
    let (st, v) = s.get("/v2/kms", &s.admin).await;
    assert_eq!(st, 200, "{v}");
    answers.push(v.to_string());

    // A serverless and a classic database on the key, with documents.
    let serverless = create_db(&s, "events", "serverless").await;
    let classic = create_db(&s, "ledger", "C10").await;
    for db in [&serverless, &classic] {
        let v = wait_status(&s, db, "ACTIVE").await;
        answers.push(v.to_string());
        fill(&s, db, 25).await;
    }

    // The customer deletes keyplane's policy: both suspend within the monitor's interval.
    bao.bao(&["policy", "delete", &policy]).await;
    for db in [&serverless, &classic] {
        let body = until(&s, db, "SUSPENDED", 503).await;
        answers.push(body.to_string());
    }
    let (_, v) = s.get(&format!("{slot}/status"), &s.admin).await;
    answers.push(v.to_string());
    // Restored: both come back with every document.
    bao.bao_stdin(&["policy", "write", &policy, "-"], &hcl)
        .await;
    for db in [&serverless, &classic] {
        let body = until(&s, db, "ACTIVE", 200).await;
        assert_eq!(body["status"]["count"], 25, "{body}");
    }

    // Rotating the key: existing data keys (wrapped by version 1) still unwrap once the
    // files were closed and reopened; a database made now is wrapped by version 2.
    bao.bao(&["write", "-f", "transit/keys/orders/rotate"])
        .await;
    let newer = create_db(&s, "after-rotation", "serverless").await;
    wait_status(&s, &newer, "ACTIVE").await;
    fill(&s, &newer, 5).await;
    let unwraps = s.app.data.kms_calls();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.app.data.kms_calls() < unwraps + 2 {
        assert!(Instant::now() < deadline, "the files were never reopened");
        for db in [&serverless, &classic] {
            let (st, body) = count(&s, db).await;
            assert_eq!(st, 200, "{body}");
            assert_eq!(body["status"]["count"], 25, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wrapped = |db: &str| {
        let store = s.store.clone();
        let db = db.to_string();
        async move {
            let dcs = store.list_datacenters(db.parse().unwrap()).await.unwrap();
            String::from_utf8(dcs[0].wrapped_data_key.clone().unwrap()).unwrap()
        }
    };
    assert!(wrapped(&serverless).await.starts_with("vault:v1:"));
    assert!(wrapped(&newer).await.starts_with("vault:v2:"));

    // min_decryption_version past version 1: the older databases suspend naming the
    // version; the one under version 2 keeps serving.
    bao.bao(&[
        "write",
        "transit/keys/orders/config",
        "min_decryption_version=2",
    ])
    .await;
    for db in [&serverless, &classic] {
        until(&s, db, "SUSPENDED", 503).await;
    }
    let (_, v) = s
        .get(&format!("/v2/databases/{serverless}"), &s.admin)
        .await;
    assert!(v.to_string().contains("min_decryption_version"), "{v}");
    let (st, body) = count(&s, &newer).await;
    assert_eq!((st, &body["status"]["count"]), (200, &json!(5)), "{body}");
    bao.bao(&[
        "write",
        "transit/keys/orders/config",
        "min_decryption_version=1",
    ])
    .await;
    for db in [&serverless, &classic] {
        let body = until(&s, db, "ACTIVE", 200).await;
        assert_eq!(body["status"]["count"], 25, "{body}");
    }

    // No secret anywhere: log lines, answers, the store's files and the data directory.
    let log_text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("logged in to OpenBao"),
        "nothing was captured"
    );
    let mut files = String::new();
    for entry in walk(&s.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        files.push_str(&String::from_utf8_lossy(&bytes));
        files.push('\n');
    }
    let everything = format!("{log_text}\n{}\n{files}", answers.join("\n"));
    for (what, secret) in [("secret ID", &secret_id), ("role ID", &role_id)] {
        assert!(!everything.contains(secret.as_str()), "the {what} leaked");
    }
    assert_eq!(find_token(&everything), None, "a token leaked");
    assert!(!everything.contains(&bao.root_token));
    // The search finds a token where there is one.
    let sample = bao
        .bao(&["token", "create", "-field=token", "-policy=default"])
        .await;
    assert!(find_token(&format!("x {} y", sample.trim())).is_some());
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Eight registrations of one key with one login at once: stored once, each answer the same
/// key, the login sealed once, and a database deployed under it served through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_registrations_at_once_store_one_key_and_one_login() {
    logs();
    let (bao, s) = start().await;
    let key = format!("{}/v1/transit/keys/shared", bao.address);
    bao.bao(&["write", "-f", "transit/keys/shared", "type=aes256-gcm96"])
        .await;
    let (_, role_id, secret_id) = apply_policy_help(&bao, &s, &key).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, body) = (s.clone(), body(&s, &key, &role_id, &secret_id));
        tasks.push(tokio::spawn(async move {
            s.post("/v2/kms/classic", &s.admin, body).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert!(st == 201 || st == 200, "{st} {v}");
        assert_eq!(v["openbao"]["keyID"], key.as_str(), "{v}");
        created += usize::from(st == 201);
    }
    assert!(created >= 1, "no registration stored the key");
    let (_, list) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let sealed = s
        .store
        .get_key_login(s.org, Provider::Openbao, &key)
        .await
        .unwrap()
        .expect("the login is stored");
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret_id));

    // A database deployed under it serves: its data key came through the sealed login.
    let db = create_db(&s, "one", "C10").await;
    wait_status(&s, &db, "ACTIVE").await;
    fill(&s, &db, 3).await;
    let (st, v) = count(&s, &db).await;
    assert_eq!((st, &v["status"]["count"]), (200, &json!(3)), "{v}");
}

/// A JWT auth role instead of an AppRole: the help names keyplane's public key, its issuer,
/// the organization and the server; the customer runs it and registers the key giving nothing
/// secret. Another organization naming the same key and role is refused (the role is bound to
/// the first one's subject), a database under the key serves, and it follows the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jwt_role_bound_to_the_organization_needs_no_secret() {
    logs();
    let (bao, s) = start().await;
    bao.bao(&["auth", "enable", "jwt"]).await;
    bao.bao(&["write", "-f", "transit/keys/jwtkey", "type=aes256-gcm96"])
        .await;
    let key = format!("{}/v1/transit/keys/jwtkey", bao.address);
    let (st, help) = s
        .get(
            &format!(
                "/v2/kms/classic/provider/openbao/region/{REGION}/policy?keyID={key}&auth=jwt"
            ),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    assert_eq!(help["providerId"], "auth/jwt/role/keyplane", "{help}");
    let commands = help["commands"].to_string();
    assert!(commands.contains("BEGIN PUBLIC KEY"), "{help}");
    assert!(
        commands.contains(&format!("bound_subject={}", s.org)),
        "{help}"
    );
    assert!(
        commands.contains(&format!("bound_audiences={}", bao.address)),
        "{help}"
    );
    bao.run_help_commands(&help["openbao"]["commands"]).await;
    let policy = help["openbao"]["policyName"].as_str().unwrap().to_string();
    let hcl = help["openbao"]["policyHcl"].as_str().unwrap().to_string();
    let jwt_body = |org: uuid::Uuid| json!({"orgId": org, "openbao": {"keyID": key, "region": REGION, "auth": "jwt"}});

    // Secrets with a JWT role are refused: they would be ignored.
    let (st, v) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgId": s.org, "openbao": {"keyID": key, "region": REGION, "auth": "jwt", "secretID": "x"}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    // Another organization cannot use the role: its JWT names another subject.
    let other = s.store.create_org("Other", None).await.unwrap().id;
    let other_admin = s.token(other, keyplane_core::Role::OrgAdmin).await;
    let (st, v) = s
        .post("/v2/kms/classic", &other_admin, jwt_body(other))
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(message(&v).contains("JWT role"), "{v}");

    let (st, v) = s.post("/v2/kms/classic", &s.admin, jwt_body(s.org)).await;
    assert_eq!(st, 201, "{v}");
    let db = create_db(&s, "jwt-ledger", "C10").await;
    wait_status(&s, &db, "ACTIVE").await;
    fill(&s, &db, 4).await;
    bao.bao(&["policy", "delete", &policy]).await;
    until(&s, &db, "SUSPENDED", 503).await;
    bao.bao_stdin(&["policy", "write", &policy, "-"], &hcl)
        .await;
    let body = until(&s, &db, "ACTIVE", 200).await;
    assert_eq!(body["status"]["count"], 4, "{body}");
}
