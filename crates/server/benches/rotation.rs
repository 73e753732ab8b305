//! Data-key rotation of a large datacenter, measured: a customer-keyed datacenter filled to
//! BENCH_MIB (default 1024) MiB, then rotated through the API (`POST …/rotate-data-key`)
//! while one reader (`findOne` by `_id`) and one writer (`insertOne`) run over HTTP without
//! pause. Prints the file's size, the rotation's time and MiB/s, the pauses the server
//! reports (writes held for the copy, reads held for the swap), and the longest request
//! each client saw during the rotation. Baselines in the same run: a plain file copy of the
//! same file (what the disk does without any encryption) and the longest request each
//! client saw over the same span before the rotation.
//!
//! `cargo bench -p keyplane-server --bench rotation`. Environment: BENCH_MIB (default 1024).
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

const DOC_BYTES: usize = 4000;

/// One client's longest request and how many it made, over a span.
#[derive(Default)]
struct Span {
    longest_us: AtomicU64,
    requests: AtomicU64,
}

impl Span {
    fn take(&self) -> (Duration, u64) {
        (
            Duration::from_micros(self.longest_us.swap(0, Ordering::SeqCst)),
            self.requests.swap(0, Ordering::SeqCst),
        )
    }
}

/// Sends `cmd(i)` one after the other until `stop`, recording each request's time in `span`.
async fn client(
    http: reqwest::Client,
    url: String,
    token: String,
    cmd: impl Fn(u64) -> Value,
    span: Arc<Span>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = http
            .post(&url)
            .header("Token", &token)
            .json(&cmd(i))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert!(body.get("errors").is_none(), "{body}");
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.longest_us.fetch_max(us, Ordering::SeqCst);
        span.requests.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}

async fn run() {
    let mib = env_u64("BENCH_MIB", 1024);
    let b = common::start(|c| c.data_cache_mib = 64).await;
    let db = b.dc_id.trim_end_matches("-1").to_string();
    let file = b.state.data.file(&b.dc_id);

    // Filled in process (the Data API would take minutes for 1 GiB), then checkpointed.
    let store = b.state.data.docstore(&b.dc_id).await.expect("open");
    let target = mib * 1024 * 1024;
    let filled = Instant::now();
    let docs = tokio::task::spawn_blocking(move || {
        store.create_collection("shop", "inv", None).expect("coll");
        let pad = "p".repeat(DOC_BYTES);
        let mut n = 0u64;
        while std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0)
            < target
        {
            let batch: Vec<Value> = (0..100)
                .map(|i| json!({"_id": format!("d{}", n + i), "pad": pad}))
                .collect();
            store
                .insert_many("shop", "inv", batch, true)
                .expect("insert");
            n += 100;
        }
        n
    })
    .await
    .expect("join");
    b.state.data.forget(&b.dc_id).await;
    let size = std::fs::metadata(&file).expect("file").len();
    let size_mib = size as f64 / 1024.0 / 1024.0;
    println!(
        "datacenter file: {size_mib:.0} MiB, {docs} documents of {DOC_BYTES} bytes, filled in {:.0} s",
        filled.elapsed().as_secs_f64()
    );

    // Baseline 1: the disk copying the same file, no encryption.
    let plain_copy = b.dir.path().join("plain-copy");
    let t = Instant::now();
    std::fs::copy(&file, &plain_copy).expect("copy");
    std::fs::File::open(&plain_copy)
        .and_then(|f| f.sync_all())
        .expect("sync");
    let copy_secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&plain_copy).expect("rm");
    println!(
        "baseline: plain file copy       {:>7.1} MiB/s ({copy_secs:.1} s)",
        size_mib / copy_secs
    );

    let http = reqwest::Client::new();
    let endpoint = format!("{}/db/{db}-us-east-2/api/json/v1/shop/inv", b.url);
    let (reads, writes) = (Arc::new(Span::default()), Arc::new(Span::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(client(
        http.clone(),
        endpoint.clone(),
        b.token.clone(),
        move |i| json!({"findOne": {"filter": {"_id": format!("d{}", (i * 7919) % docs)}}}),
        reads.clone(),
        stop.clone(),
    ));
    let writer = tokio::spawn(client(
        http.clone(),
        endpoint.clone(),
        b.token.clone(),
        |i| json!({"insertOne": {"document": {"_id": format!("w{i}"), "pad": "w".repeat(200)}}}),
        writes.clone(),
        stop.clone(),
    ));
    // Baseline 2: the clients' longest request over a span as long as the rotation will be
    // (estimated from the plain copy, at least 5 s), before it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reads.take();
    writes.take();
    tokio::time::sleep(Duration::from_secs_f64((copy_secs * 3.0).max(5.0))).await;
    let (idle_read, idle_reads) = reads.take();
    let (idle_write, idle_writes) = writes.take();

    let t = Instant::now();
    let r = http
        .post(format!(
            "{}/v2/databases/{db}/datacenters/{}/rotate-data-key",
            b.url, b.dc_id
        ))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("rotate");
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.expect("json");
    let secs = t.elapsed().as_secs_f64();
    // The requests held by the rotation finish just after it: counted in its span.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (busy_read, busy_reads) = reads.take();
    let (busy_write, busy_writes) = writes.take();
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader");
    writer.await.expect("writer");

    println!(
        "rotation:                        {:>7.1} MiB/s ({secs:.1} s for {} bytes)",
        size_mib / secs,
        rotated["bytes"]
    );
    println!(
        "server-reported pauses:          writes held {} ms (copy, check, swap), reads held {} ms (swap)",
        rotated["writesPausedMs"], rotated["readsPausedMs"]
    );
    println!(
        "longest reader request:          {:>7.0} ms during the rotation and 0.5 s after ({busy_reads} requests), {:.0} ms before it ({idle_reads})",
        busy_read.as_secs_f64() * 1000.0,
        idle_read.as_secs_f64() * 1000.0
    );
    println!(
        "longest writer request:          {:>7.0} ms during the rotation and 0.5 s after ({busy_writes} requests), {:.0} ms before it ({idle_writes})",
        busy_write.as_secs_f64() * 1000.0,
        idle_write.as_secs_f64() * 1000.0
    );
    // Everything still there, under the new key.
    let r = http
        .post(&endpoint)
        .header("Token", &b.token)
        .json(&json!({"estimatedDocumentCount": {}}))
        .send()
        .await
        .expect("count");
    let body: Value = r.json().await.expect("json");
    assert!(
        body["status"]["count"].as_u64().unwrap_or(0) >= docs,
        "{body}"
    );
    let dc = b
        .store
        .get_datacenter(&b.dc_id)
        .await
        .expect("dc")
        .expect("dc");
    assert!(dc.data_key_rotated_at.is_some() && dc.pending_wrapped_data_key.is_none());
}
