//! Revoke on demand, measured: the time from `POST …/revoke` until every datacenter under the
//! key refuses reads, on the process that took the request and on a second process over the
//! same store file (which learns it from its suspension sync), and the time from
//! `POST …/unrevoke` until every one serves again on both. Baseline in the same run: the same
//! cut made the only way the customer had before, at the KMS (DisableKey), which each
//! process's key monitor finds on its next round, and EnableKey for the way back.
//!
//! `cargo bench -p keyplane-server --bench revoke`. Environment: BENCH_DATABASES (default
//! 20), BENCH_ROUNDS (default 3), BENCH_KEY_CHECK_MS (the monitor's interval for the baseline,
//! default 5000), BENCH_SYNC_MS (the suspension sync's interval, default 1000: the default).
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_app::{App, Config};
use keyplane_core::Role;
use keyplane_store::DynStore;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";
const KEY: &str = "/v2/kms/classic/provider/aws/region/us-east-2";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// A keyplane process on `store_path`, serving on a loopback port; its URL.
async fn process(
    store_path: &str,
    config: Config,
    connector: Arc<keyplane_kms_aws::AwsConnector>,
) -> (App, DynStore, String) {
    let store = keyplane_store::open(store_path).await.expect("store");
    let app = App::new(store.clone(), config, connector);
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    app.spawn_background(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(keyplane_server::run(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    (app, store, url)
}

/// Reads every database through `url` until each answers `want` (200 or 503); the time
/// until the last one did.
async fn until_all(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    dbs: &[String],
    want: u16,
    from: Instant,
) -> Duration {
    let mut tasks = vec![];
    for db in dbs {
        let (client, token) = (client.clone(), token.to_string());
        let endpoint = format!("{url}/db/{db}-us-east-2/api/json/v1/shop/inv");
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let r = client
                    .post(&endpoint)
                    .header("Token", &token)
                    .json(&json!({"countDocuments": {}}))
                    .send()
                    .await
                    .expect("read");
                if r.status().as_u16() == want {
                    return from.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "{endpoint} never answered {want}"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    let mut last = Duration::ZERO;
    for t in tasks {
        last = last.max(t.await.expect("join"));
    }
    last
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "{label:<58} median {:>8.1} ms   max {:>8.1} ms",
        ms(median),
        ms(max)
    );
}

async fn run() {
    let n = env_u64("BENCH_DATABASES", 20) as usize;
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1) as usize;
    let check = Duration::from_millis(env_u64("BENCH_KEY_CHECK_MS", 5000));
    let sync = Duration::from_millis(env_u64("BENCH_SYNC_MS", 1000));
    let dir = tempfile::tempdir().expect("tempdir");
    // The customer's KMS: keyplane's built-in one, in process (testkit's region is us-east-2).
    let kms_server = keyplane_testkit::DevKmsServer::start().await;
    let (kms, endpoint) = (&kms_server.kms, kms_server.endpoint.clone());
    let customer = kms_server.client(CUSTOMER);
    let platform = kms.credentials(ROLE).expect("platform");
    let mut settings = keyplane_kms_aws::AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        ..Default::default()
    };
    settings.static_credentials.insert(
        "222222222222".into(),
        keyplane_kms_aws::StaticCredentials {
            access_key_id: platform.access_key_id.clone(),
            secret_access_key: zeroize::Zeroizing::new(platform.secret_access_key.to_string()),
            session_token: None,
        },
    );
    let connector = Arc::new(keyplane_kms_aws::AwsConnector::new(settings));
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        worker_poll: Duration::from_millis(20),
        key_check_interval: check,
        suspension_sync_interval: sync,
        ..Default::default()
    };
    let path = dir.path().join("kp.db");
    let path = path.to_str().expect("path");
    let (_a, store, url_a) = process(path, config.clone(), connector.clone()).await;
    let (_b, _, url_b) = process(path, config, connector).await;

    let org = store.create_org("bench", None).await.expect("org");
    let (token, _) =
        keyplane_app::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "bench")
            .await
            .expect("token");
    let token = token.expose().to_string();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:organization": org.id.to_string()}}},
        {"Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]});
    let arn = customer
        .create_key()
        .policy(policy.to_string())
        .send()
        .await
        .expect("key")
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let r = http
                .post(path)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, body) = post(
        format!("{url_a}/v2/kms/classic"),
        json!({"orgId": org.id, "aws": {"keyID": arn, "region": "us-east-2"}}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let mut dbs = vec![];
    for i in 0..n {
        let (st, body) = post(
            format!("{url_a}/v2/databases"),
            json!({"name": format!("db{i}"), "keyspace": "shop", "cloudProvider": "AWS",
                   "tier": "C10", "region": "us-east-2"}),
        )
        .await;
        assert_eq!(st, 201, "{body}");
        dbs.push(body["id"].as_str().expect("id").to_string());
    }
    let ready = Instant::now() + Duration::from_secs(120);
    for db in &dbs {
        loop {
            let dc = store
                .get_datacenter(&format!("{db}-1"))
                .await
                .expect("dc")
                .expect("dc");
            if dc.status == keyplane_core::DatabaseStatus::Active {
                break;
            }
            assert!(Instant::now() < ready, "never ACTIVE");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (st, body) = post(
            format!("{url_a}/db/{db}-us-east-2/api/json/v1/shop"),
            json!({"createCollection": {"name": "inv"}}),
        )
        .await;
        assert!(st == 200, "{body}");
    }
    // Every database open (data key unwrapped) on both processes before each measurement.
    let warm = |from| until_all(&http, &url_a, &token, &dbs, 200, from);
    warm(Instant::now()).await;
    until_all(&http, &url_b, &token, &dbs, 200, Instant::now()).await;
    println!(
        "{n} databases under one customer key, two keyplane processes on one SQLite store, \
         suspension sync every {} ms, key monitor every {} ms, {rounds} rounds",
        sync.as_millis(),
        check.as_millis()
    );

    let (mut rev_a, mut rev_b, mut unrev_a, mut unrev_b) = (vec![], vec![], vec![], vec![]);
    let (mut kms_a, mut kms_b, mut back_a, mut back_b) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let (st, body) = post(format!("{url_a}{KEY}/revoke"), json!({})).await;
        assert_eq!(st, 200, "{body}");
        let (a, b) = tokio::join!(
            until_all(&http, &url_a, &token, &dbs, 503, t),
            until_all(&http, &url_b, &token, &dbs, 503, t)
        );
        rev_a.push(a);
        rev_b.push(b);
        let t = Instant::now();
        let (st, body) = post(format!("{url_a}{KEY}/unrevoke"), json!({})).await;
        assert_eq!(st, 200, "{body}");
        let (a, b) = tokio::join!(
            until_all(&http, &url_a, &token, &dbs, 200, t),
            until_all(&http, &url_b, &token, &dbs, 200, t)
        );
        unrev_a.push(a);
        unrev_b.push(b);

        // Baseline: the cut made at the KMS, found by the key monitors.
        let t = Instant::now();
        customer
            .disable_key()
            .key_id(&arn)
            .send()
            .await
            .expect("disable");
        let (a, b) = tokio::join!(
            until_all(&http, &url_a, &token, &dbs, 503, t),
            until_all(&http, &url_b, &token, &dbs, 503, t)
        );
        kms_a.push(a);
        kms_b.push(b);
        let t = Instant::now();
        customer
            .enable_key()
            .key_id(&arn)
            .send()
            .await
            .expect("enable");
        let (a, b) = tokio::join!(
            until_all(&http, &url_a, &token, &dbs, 200, t),
            until_all(&http, &url_b, &token, &dbs, 200, t)
        );
        back_a.push(a);
        back_b.push(b);
    }
    summary(
        "revoke → every read refused, process that took it",
        &mut rev_a,
    );
    summary(
        "revoke → every read refused, other process (target ≤ 2 s)",
        &mut rev_b,
    );
    summary(
        "unrevoke → every read served, process that took it",
        &mut unrev_a,
    );
    summary("unrevoke → every read served, other process", &mut unrev_b);
    summary(
        "baseline: DisableKey → every read refused, process A",
        &mut kms_a,
    );
    summary(
        "baseline: DisableKey → every read refused, process B",
        &mut kms_b,
    );
    summary(
        "baseline: EnableKey → every read served, process A",
        &mut back_a,
    );
    summary(
        "baseline: EnableKey → every read served, process B",
        &mut back_b,
    );
}
