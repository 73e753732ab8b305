//! Load on `GET /v2/kms/classic/provider/aws/region/us-east-2/accounts` over loopback:
//! prints requests/s and p50/p99 latency on SQLite, and on PostgreSQL when
//! `KEYPLANE_TEST_PG_URL` names a server (as `scripts/with-postgres` sets it).
//!
//! `cargo bench -p keyplane-server --bench accounts` (or `scripts/bench`).
//! Knobs: BENCH_REQUESTS (default 100000), BENCH_CONCURRENCY (default 32).
use std::time::{Duration, Instant};

use keyplane_app::{App, Config};
use keyplane_core::Role;
use keyplane_store::DynStore;

const PATH: &str = "/v2/kms/classic/provider/aws/region/us-east-2/accounts";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn load(label: &str, store: DynStore) {
    let org = store.create_org("bench", None).await.expect("org");
    let (token, _) =
        keyplane_app::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "bench")
            .await
            .expect("token");
    let token = token.expose().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}{PATH}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(keyplane_server::run(
        listener,
        App::new(
            store,
            Config::default(),
            std::sync::Arc::new(keyplane_kms_aws::AwsConnector::new(Default::default())),
        ),
        async move {
            let _ = rx.await;
        },
    ));

    let total = env_usize("BENCH_REQUESTS", 100_000);
    let conc = env_usize("BENCH_CONCURRENCY", 32);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .expect("client");
    // Warm-up: connections, prepared statements, the account assignment.
    run_workers(&client, &url, &token, conc, 2_000).await;
    let start = Instant::now();
    let mut lat = run_workers(&client, &url, &token, conc, total).await;
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{label:<10} {total} requests, concurrency {conc}: {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        total as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
    );
    let _ = tx.send(());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run_workers(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    conc: usize,
    total: usize,
) -> Vec<Duration> {
    let per = total / conc;
    let mut handles = Vec::with_capacity(conc);
    for _ in 0..conc {
        let client = client.clone();
        let url = url.to_string();
        let auth = format!("Bearer {token}");
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let res = client
                    .get(&url)
                    .header("authorization", &auth)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(res.status(), 200);
                let _ = res.bytes().await.expect("body");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for h in handles {
        all.extend(h.await.expect("worker"));
    }
    all
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bench.db");
        let sqlite = keyplane_store::open(path.to_str().expect("path"))
            .await
            .expect("sqlite");
        load("sqlite", sqlite).await;

        match std::env::var("KEYPLANE_TEST_PG_URL") {
            Ok(admin_url) => {
                let db = format!("kp_bench_{}", uuid::Uuid::new_v4().simple());
                let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                    .await
                    .expect("pg");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE DATABASE {db}"))
                    .await
                    .expect("create db");
                let url = replace_db(&admin_url, &db);
                let pg = keyplane_store::open(&url).await.expect("postgres");
                load("postgres", pg).await;
            }
            Err(_) => {
                println!("postgres   skipped: KEYPLANE_TEST_PG_URL is not set (run scripts/bench)")
            }
        }
    });
}

fn replace_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{db}", &url[..i]),
        _ => format!("{url}/{db}"),
    }
}
