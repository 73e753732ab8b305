//! GenerateDataKey + Decrypt pairs over loopback with the unmodified Rust SDK, many tasks at
//! once; prints pairs per second. `cargo bench -p keyplane-devkms` (release build).
//! Tunables: DEVKMS_BENCH_SECS (default 10), DEVKMS_BENCH_TASKS (default 64).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::DataKeySpec;
use keyplane_devkms::{DevKms, DevKmsConfig};

/// The client SDK allocates heavily per request; glibc malloc made it the bottleneck on 2 cores.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes --bench; nothing else to parse.
    let secs = env_num("DEVKMS_BENCH_SECS", 10);
    let tasks = env_num("DEVKMS_BENCH_TASKS", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // DEVKMS_BENCH_ENDPOINT + DEVKMS_BENCH_CREDENTIALS (a credentials.json) drive a server in
        // another process instead, to see the server's own CPU cost.
        let tmp = tempfile::tempdir()?;
        let (endpoint, akid, secret, stop) = match std::env::var("DEVKMS_BENCH_ENDPOINT") {
            Ok(ep) => {
                let path = std::env::var("DEVKMS_BENCH_CREDENTIALS")?;
                let creds: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
                let admin = creds["identities"]
                    .as_array()
                    .and_then(|ids| ids.iter().find(|i| i["principalArn"] == "arn:aws:iam::111111111111:user/admin"))
                    .ok_or("no customer identity in the credentials file")?;
                let field = |k: &str| admin[k].as_str().map(String::from).ok_or("bad credentials file");
                (ep, field("accessKeyId")?, field("secretAccessKey")?, None)
            }
            Err(_) => {
                let kms = DevKms::open(DevKmsConfig {
                    data_dir: tmp.path().join("kms"),
                    extra_identities: vec![],
                    allow_clock_control: false,
                })?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let endpoint = format!("http://{}", listener.local_addr()?);
                let creds = kms.credentials("arn:aws:iam::111111111111:user/admin").ok_or("no customer identity")?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(kms.clone().run(listener, async {
                    let _ = rx.await;
                }));
                (endpoint, creds.access_key_id.clone(), creds.secret_access_key.clone(), Some((tx, server)))
            }
        };
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-2"))
            .credentials_provider(Credentials::new(&akid, &secret, None, None, "bench"))
            .endpoint_url(&endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        let client = aws_sdk_kms::Client::from_conf(conf);
        let created = client.create_key().send().await?;
        let key = created.key_metadata().and_then(|m| m.arn()).ok_or("CreateKey returned no ARN")?.to_string();

        let pairs = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        // Warm up connections.
        let warm_until = Instant::now() + Duration::from_secs(1);
        let deadline = warm_until + Duration::from_secs(secs);
        let mut handles = vec![];
        for _ in 0..tasks {
            let (client, key, pairs, errors) = (client.clone(), key.clone(), pairs.clone(), errors.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let ok = async {
                        let dk = client.generate_data_key().key_id(&key).key_spec(DataKeySpec::Aes256).send().await.ok()?;
                        let back = client.decrypt().ciphertext_blob(dk.ciphertext_blob()?.clone()).send().await.ok()?;
                        (back.plaintext()?.as_ref() == dk.plaintext()?.as_ref()).then_some(())
                    }
                    .await;
                    if now >= warm_until {
                        match ok {
                            Some(()) => pairs.fetch_add(1, Ordering::Relaxed),
                            None => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        let n = pairs.load(Ordering::Relaxed);
        let rate = n as f64 / secs as f64;
        println!(
            "devkms GenerateDataKey+Decrypt: {n} pairs in {secs}s with {tasks} tasks = {rate:.0} pairs/s ({:.0} requests/s), {} errors",
            rate * 2.0,
            errors.load(Ordering::Relaxed)
        );
        if let Some((tx, server)) = stop {
            let _ = tx.send(());
            let _ = server.await;
        }
        Ok(())
    })
}
