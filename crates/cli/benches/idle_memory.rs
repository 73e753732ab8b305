//! The server's memory with many idle databases: a real `keyplane serve --dev` process,
//! 10,000 customer-keyed databases (one datacenter each, under one registered key), each read
//! once through the Data API, then left idle past the data-key TTL. Prints the server's
//! resident memory while they were being read (sampled peak) and after the idle period
//! (target <= 200 MiB), and the plaintext data keys it still holds (its
//! `keyplane_data_keys_held` gauge; target 0), with the peak of that gauge.
//!
//! `cargo bench -p keyplane --bench idle_memory`. Environment: BENCH_DATABASES (default
//! 10000), BENCH_TTL_SECS (the server's --data-key-ttl, default 20), BENCH_CONCURRENCY
//! (requests in flight, default 16).
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keyplane");
const REGION: &str = "us-east-2";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `keyplane …` in the bench's working directory (where `serve --dev` keeps its data and the
/// customer-side commands find `keyplane-data/dev-credentials.json`); its standard output.
fn keyplane(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run keyplane");
    assert!(
        out.status.success(),
        "keyplane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn gauge(http: &reqwest::Client, api: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(u64::MAX)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let n = env_usize("BENCH_DATABASES", 10_000);
    let ttl = env_usize("BENCH_TTL_SECS", 20) as u64;
    let concurrency = env_usize("BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let port = free_port();
    let kms_port = free_port();
    let log = std::fs::File::create(cwd.join("server.log")).expect("log");
    let child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--kms-listen", &format!("127.0.0.1:{kms_port}")])
        .args(["--azure-listen", "127.0.0.1:0"])
        .args(["--data-key-ttl", &ttl.to_string()])
        // One organization holds all the databases: its quotas are raised to fit them.
        .args([
            "--max-databases",
            &n.to_string(),
            "--max-datacenters",
            &n.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("serve");
    let pid = child.id();
    let _server = Server(child);
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{api}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve --dev did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(cwd.join("keyplane-data/dev-credentials.json")).expect("creds"),
    )
    .expect("creds json");
    let token = creds["token"].as_str().expect("token").to_string();

    // The customer's key, registered the way the README says.
    let key = keyplane(cwd, &["kms", "create-key", "--output", "arn"]);
    keyplane(cwd, &["kms", "put-key-policy", "--key-id", &key, "--merge"]);
    keyplane(
        cwd,
        &["key", "register", "--region", REGION, "--key-id", &key],
    );
    let started_kib = proc_kib(pid, "VmRSS:");
    println!(
        "keyplane serve (pid {pid}), data-key TTL {ttl} s, {} MiB resident at start; creating {n} customer-keyed databases…",
        mib(started_kib) as u64
    );

    // The databases, `concurrency` requests at a time; the worker provisions them.
    let setup = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, api, token, next, ids) = (
            http.clone(),
            api.clone(),
            token.clone(),
            next.clone(),
            ids.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = http
                    .post(format!("{api}/v2/databases"))
                    .bearer_auth(&token)
                    .json(&json!({"name": format!("idle{i}"), "keyspace": "shop", "cloudProvider": "AWS",
                                  "tier": "C10", "capacityUnits": 1, "region": REGION}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status(), 201);
                let body: Value = r.json().await.expect("json");
                let id = body["id"].as_str().expect("id").to_string();
                ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("create task");
    }
    // Wait for the worker to finish every provisioning job, then check each database's status
    // in pages of 100 (the listing's largest page).
    loop {
        let failed = gauge(&http, &api, "keyplane_jobs_failed_total").await;
        assert_eq!(failed, 0, "databases failed to provision");
        if gauge(&http, &api, "keyplane_jobs_done_total").await >= n as u64 {
            break;
        }
        assert!(
            setup.elapsed() < Duration::from_secs(3600),
            "provisioning unfinished after an hour"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (mut active, mut after) = (0, None::<String>);
    loop {
        let mut url = format!("{api}/v2/databases?limit=100");
        if let Some(last) = &after {
            url.push_str(&format!("&starting_after={last}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list json");
        let page = page.as_array().cloned().unwrap_or_default();
        active += page.iter().filter(|d| d["status"] == "ACTIVE").count();
        match page.last() {
            Some(last) => after = last["id"].as_str().map(str::to_string),
            None => break,
        }
    }
    assert_eq!(active, n, "every database ACTIVE");
    let ids: Vec<String> = ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let unwraps_before = gauge(&http, &api, "keyplane_data_key_unwraps_total").await;
    let before_kib = proc_kib(pid, "VmRSS:");
    println!(
        "{n} databases ACTIVE in {:.0} s; {} MiB resident, {} data keys held",
        setup.elapsed().as_secs_f64(),
        mib(before_kib) as u64,
        gauge(&http, &api, "keyplane_data_keys_held").await
    );

    // Each read once, while sampling the server's memory and held keys.
    let reading = Arc::new(AtomicBool::new(true));
    let peak_kib = Arc::new(AtomicU64::new(0));
    let peak_keys = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (reading, peak_kib, peak_keys, http, api) = (
            reading.clone(),
            peak_kib.clone(),
            peak_keys.clone(),
            http.clone(),
            api.clone(),
        );
        tokio::spawn(async move {
            while reading.load(Ordering::Relaxed) {
                peak_kib.fetch_max(proc_kib(pid, "VmRSS:"), Ordering::Relaxed);
                let held = gauge(&http, &api, "keyplane_data_keys_held").await;
                if held != u64::MAX {
                    peak_keys.fetch_max(held, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let read_start = Instant::now();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, api, token, next, ids) = (
            http.clone(),
            api.clone(),
            token.clone(),
            next.clone(),
            ids.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let r = http
                    .post(format!("{api}/db/{id}-{REGION}/api/json/v1/shop"))
                    .header("Token", &token)
                    .json(&json!({"findCollections": {}}))
                    .send()
                    .await
                    .expect("read");
                let status = r.status();
                let body: Value = r.json().await.expect("json");
                assert!(
                    status.is_success() && body.get("errors").is_none(),
                    "{id}: {status} {body}"
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("read task");
    }
    reading.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let read_secs = read_start.elapsed().as_secs_f64();
    let unwraps = gauge(&http, &api, "keyplane_data_key_unwraps_total").await - unwraps_before;
    let right_after_kib = proc_kib(pid, "VmRSS:");
    let open_after = gauge(&http, &api, "keyplane_open_datacenter_files").await;
    println!(
        "read each once in {read_secs:.0} s ({unwraps} KMS Decrypts); while open: peak {} MiB resident, peak {} data keys held; right after: {} MiB, {open_after} files open",
        mib(peak_kib.load(Ordering::Relaxed)) as u64,
        peak_keys.load(Ordering::Relaxed),
        mib(right_after_kib) as u64
    );

    // Idle past the TTL (plus the reaper's period and a margin), touching nothing.
    tokio::time::sleep(Duration::from_secs(ttl + 5 + 2)).await;
    let idle_kib = proc_kib(pid, "VmRSS:");
    let held = gauge(&http, &api, "keyplane_data_keys_held").await;
    let open = gauge(&http, &api, "keyplane_open_datacenter_files").await;
    println!(
        "after {} s idle: {:.0} MiB resident (target <= 200 MiB: {}), {held} plaintext data keys held (target 0: {}), {open} files open; process peak (VmHWM) {} MiB",
        ttl + 7,
        mib(idle_kib),
        if mib(idle_kib) <= 200.0 {
            "met"
        } else {
            "MISSED"
        },
        if held == 0 { "met" } else { "MISSED" },
        mib(proc_kib(pid, "VmHWM:")) as u64
    );
}
