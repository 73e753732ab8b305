//! The cost of encryption on the data path, in one run: document inserts/s and point
//! reads/s on a customer-keyed datacenter (SQLCipher file, data key unwrapped by keyplane's
//! built-in KMS and cached) against the same workload on a plain SQLite file through the
//! same code, the overhead ratio, and the KMS calls made per 100,000 operations after
//! warm-up.
//!
//! `cargo bench -p keyplane-server --bench datapath` (BENCH_DOCS, default 20000).
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_core::Role;
use keyplane_docstore::DocStore;
use keyplane_server::{AppState, Config};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn doc(i: usize) -> Value {
    json!({"_id": format!("d{i}"), "customer": format!("c{}", i % 97), "total": i, "note": "x".repeat(900)})
}

/// The workload, through `spawn_blocking` as the API runs it: inserts, then point reads.
async fn workload(label: &str, get: impl Fn() -> futures_lite::Store, n: usize) -> (f64, f64) {
    let start = Instant::now();
    for i in 0..n {
        let s = get().await;
        tokio::task::spawn_blocking(move || s.insert_one("shop", "orders", doc(i)).map(|_| ()))
            .await
            .expect("join")
            .expect("insert");
    }
    let ins = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..n {
        let s = get().await;
        let found = tokio::task::spawn_blocking(move || s.get("shop", "orders", &json!(format!("d{i}"))))
            .await
            .expect("join")
            .expect("get");
        assert!(found.is_some());
    }
    let reads = n as f64 / start.elapsed().as_secs_f64();
    println!("{label:<16} inserts {ins:>9.0}/s   point reads {reads:>9.0}/s");
    (ins, reads)
}

mod futures_lite {
    pub type Store = std::pin::Pin<Box<dyn std::future::Future<Output = std::sync::Arc<keyplane_docstore::DocStore>> + Send>>;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let n = env_usize("BENCH_DOCS", 20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = keyplane_devkms::DevKms::open(keyplane_devkms::DevKmsConfig {
        data_dir: dir.path().join("kms"),
        extra_identities: vec![],
        allow_clock_control: false,
    })
    .expect("kms");
    let kl = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", kl.local_addr().expect("addr"));
    tokio::spawn(kms.clone().run(kl, std::future::pending()));
    let client_as = |principal: &str| {
        let c = kms.credentials(principal).expect("identity");
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-2"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                c.access_key_id.clone(), c.secret_access_key.to_string(), None, None, "bench"))
            .endpoint_url(&endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    };
    let platform = kms.credentials(ROLE).expect("platform");
    let mut settings = keyplane_kms_aws::AwsSettings::default();
    settings.endpoint_url = Some(endpoint.clone());
    settings.static_credentials.insert(
        "222222222222".into(),
        keyplane_kms_aws::StaticCredentials {
            access_key_id: platform.access_key_id.clone(),
            secret_access_key: zeroize::Zeroizing::new(platform.secret_access_key.to_string()),
            session_token: None,
        },
    );
    let mut config = Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.worker_poll = Duration::from_millis(20);
    config.key_check_interval = Duration::from_secs(3600);
    let store = keyplane_store::open(dir.path().join("kp.db").to_str().expect("path")).await.expect("store");
    let state = AppState::new(store.clone(), config, Arc::new(keyplane_kms_aws::AwsConnector::new(settings)));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    keyplane_server::spawn_background(&state, rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(keyplane_server::run(listener, state.clone(), std::future::pending()));

    // A customer key, registered, and a database deployed under it.
    let org = store.create_org("bench", None).await.expect("org");
    let (token, _) = keyplane_server::routes::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "bench")
        .await
        .expect("token");
    let token = token.expose().to_string();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*"}]});
    let key = client_as(CUSTOMER).create_key().policy(policy.to_string()).send().await.expect("key");
    let arn = key.key_metadata().and_then(|m| m.arn()).expect("arn").to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/v2/kms/classic"))
        .bearer_auth(&token)
        .json(&json!({"orgId": org.id, "aws": {"keyID": arn, "region": "us-east-2"}}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = http
        .post(format!("{url}/v2/databases"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}))
        .send()
        .await
        .expect("create");
    let db: Value = r.json().await.expect("json");
    let dc_id = format!("{}-1", db["id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dc = store.get_datacenter(&dc_id).await.expect("dc").expect("dc");
        if dc.status == keyplane_core::DatabaseStatus::Active {
            break;
        }
        assert!(Instant::now() < deadline, "never ACTIVE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s0 = state.data.docstore(&dc_id).await.expect("open");
    tokio::task::spawn_blocking(move || s0.create_collection("shop", "orders", None)).await.expect("join").expect("coll");

    // Baseline: the same code on a plain SQLite file.
    let plain_path = dir.path().join("plain.db");
    let plain = Arc::new(DocStore::create_plain(&plain_path).expect("plain"));
    plain.create_keyspace("shop").expect("ks");
    plain.create_collection("shop", "orders", None).expect("coll");

    let p = plain.clone();
    let (pi, pr) = workload("plain SQLite", move || {
        let p = p.clone();
        Box::pin(async move { p })
    }, n)
    .await;
    let before = state.data.kms_calls();
    let st = state.clone();
    let id = dc_id.clone();
    let (ei, er) = workload("customer-keyed", move || {
        let st = st.clone();
        let id = id.clone();
        Box::pin(async move { st.data.docstore(&id).await.expect("docstore") })
    }, n)
    .await;
    let calls = state.data.kms_calls() - before;
    let ops = 2 * n;
    println!(
        "overhead         inserts {:>+8.1}%   point reads {:>+8.1}%   (target <= 10%)",
        (pi / ei - 1.0) * 100.0,
        (pr / er - 1.0) * 100.0
    );
    println!(
        "KMS calls        {calls} in {ops} operations after warm-up = {:.1} per 100,000 (target 0 within one cache TTL)",
        calls as f64 * 100_000.0 / ops as f64
    );
}
