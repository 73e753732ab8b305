//! Customer key registrations per second against keyplane's built-in KMS, over loopback:
//! each registration runs the full live check, the organization-binding probe included. Prints registrations/s, p50/p99 latency and
//! the KMS calls one registration makes.
//!
//! `cargo bench -p keyplane-server --bench registration` (BENCH_REGISTRATIONS, default 300;
//! BENCH_CONCURRENCY, default 8).
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_app::{App, Config};
use keyplane_core::Role;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The key policy of a key of `org`: the organization-bound statements, written out.
fn policy(org: uuid::Uuid) -> Value {
    let only_org = json!({"StringEquals": {"kms:EncryptionContext:organization": org.to_string()}});
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:ReEncryptTo", "kms:ReEncryptFrom"],
         "Resource": "*", "Condition": only_org},
        {"Sid": "Allow an external account to describe this KMS key", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:EnableKey", "kms:DescribeKey"], "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:CreateGrant"], "Resource": "*", "Condition": only_org},
        {"Sid": "Allow an external account to list and revoke its grants", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]})
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = keyplane_devkms::DevKms::open(keyplane_devkms::DevKmsConfig {
        data_dir: dir.path().join("kms"),
        extra_identities: vec![],
        allow_clock_control: false,
    })
    .expect("kms");
    let kms_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", kms_listener.local_addr().expect("addr"));
    tokio::spawn(kms.clone().run(kms_listener, std::future::pending()));

    let platform = kms.credentials(ROLE).expect("platform role");
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
    let store = keyplane_store::open(dir.path().join("kp.db").to_str().expect("path"))
        .await
        .expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = App::new(
        store.clone(),
        Config::default(),
        Arc::new(keyplane_kms_aws::AwsConnector::new(settings)),
    );
    tokio::spawn(keyplane_server::run(
        listener,
        state,
        std::future::pending(),
    ));

    let n = env_usize("BENCH_REGISTRATIONS", 300);
    let conc = env_usize("BENCH_CONCURRENCY", 8);
    // Setup, untimed: one organization (one registration slot) and one key per registration.
    let c = kms.credentials(CUSTOMER).expect("customer");
    let customer = keyplane_testkit::kms_client(
        &endpoint,
        "us-east-2",
        keyplane_testkit::credentials(&c.access_key_id, &c.secret_access_key.to_string()),
    );
    let mut work = Vec::with_capacity(n);
    for i in 0..n {
        let org = store
            .create_org(&format!("org{i}"), None)
            .await
            .expect("org");
        let (token, _) =
            keyplane_app::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "bench")
                .await
                .expect("token");
        let key = customer
            .create_key()
            .policy(policy(org.id).to_string())
            .send()
            .await
            .expect("key");
        let arn = key
            .key_metadata()
            .and_then(|m| m.arn())
            .expect("arn")
            .to_string();
        work.push((
            token.expose().to_string(),
            json!({"orgId": org.id, "aws": {"keyID": arn, "region": "us-east-2"}}),
        ));
    }
    let client = reqwest::Client::new();
    // How many KMS calls one registration makes: the dry run reports it.
    let (tok, body) = &work[0];
    let dry: Value = client
        .post(format!("{url}/v2/kms/classic?dryRun=true"))
        .bearer_auth(tok)
        .json(body)
        .send()
        .await
        .expect("dry run")
        .json()
        .await
        .expect("json");
    let calls = dry["checks"]["kmsCalls"].as_u64().unwrap_or(0);

    let queue = Arc::new(tokio::sync::Mutex::new(work));
    let start = Instant::now();
    let mut handles = vec![];
    for _ in 0..conc {
        let queue = queue.clone();
        let client = client.clone();
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = vec![];
            loop {
                let Some((tok, body)) = queue.lock().await.pop() else {
                    break;
                };
                let t = Instant::now();
                let res = client
                    .post(format!("{url}/v2/kms/classic"))
                    .bearer_auth(&tok)
                    .json(&body)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(
                    res.status(),
                    201,
                    "{}",
                    res.text().await.unwrap_or_default()
                );
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = vec![];
    for h in handles {
        lat.extend(h.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "registration  {n} keys, concurrency {conc}: {:>7.1} registrations/s  p50 {:>7.2} ms  p99 {:>7.2} ms  KMS calls per registration: {calls}",
        n as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
}
