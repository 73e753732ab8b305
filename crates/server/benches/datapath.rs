//! The cost of encryption on the data path, in one run, measured two ways:
//!
//! 1. In process, at the document store: document inserts/s and point reads/s on a
//!    customer-keyed datacenter (SQLCipher file, data key unwrapped by keyplane's built-in KMS
//!    and cached) against the same workload on a plain SQLite file through the same code, the
//!    overhead ratio, and the KMS calls made per 100,000 operations after warm-up.
//! 2. Over HTTP, the "must show": a real HTTP client (reqwest, one connection, one
//!    request at a time) against this keyplane server on a loopback port, through the Data
//!    API's routes: `insertMany` of ~1 KB documents in batches of 100, `findOne` by `_id`, and
//!    `find` paged with `pageState` through every match of an equality filter
//!    (`{"customer": "c17"}`) and of a range filter (`{"amount": {"$gte": 500, "$lt": 520}}`)
//!    over the whole corpus. Two databases: one customer-keyed, one whose datacenter file
//!    the harness swapped for plain SQLite (`DataPlane::bench_only_use_plain_file`, which
//!    nothing but this harness calls), so both go through the same routes and code. Requests
//!    alternate between the two, so both see the same machine state. Prints docs/s, p50/p99
//!    latencies per operation and the overhead ratio (target <= 10%).
//!
//! 3. Writes on a two-region database, one writer and 8 concurrent writers, against a plain
//!    two-region baseline (see `mod regions`).
//!
//! `cargo bench -p keyplane-server --bench datapath`. Environment: BENCH_DOCS (in-process
//! documents, default 20000), BENCH_HTTP_DOCS (HTTP corpus, default 100000), BENCH_HTTP_READS
//! (findOne requests per database, default 5000), BENCH_HTTP_SCANS (full pagings of each
//! filter, default 3), BENCH_SKIP_INPROCESS=1 (only the HTTP part).
mod common;

use std::sync::Arc;
use std::time::Instant;

use keyplane_docstore::DocStore;
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
        let found =
            tokio::task::spawn_blocking(move || s.get("shop", "orders", &json!(format!("d{i}"))))
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
    pub type Store = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::sync::Arc<keyplane_docstore::DocStore>> + Send>,
    >;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let n = env_usize("BENCH_DOCS", 20_000);
    let common::Bench {
        dir,
        state,
        store,
        url,
        token,
        dc_id,
    } = common::start(|_| {}).await;
    let in_process = std::env::var("BENCH_SKIP_INPROCESS")
        .map(|v| v != "1")
        .unwrap_or(true);
    if std::env::var("BENCH_ONLY_REGIONS").is_ok_and(|v| v == "1") {
        regions::run(&state, &store, &url, &token).await;
        return;
    }
    if !in_process {
        http::run(&state, &store, &url, &token).await;
        println!();
        regions::run(&state, &store, &url, &token).await;
        return;
    }
    let s0 = state.data.docstore(&dc_id).await.expect("open");
    tokio::task::spawn_blocking(move || s0.create_collection("shop", "orders", None))
        .await
        .expect("join")
        .expect("coll");

    // Baseline: the same code on a plain SQLite file.
    let plain_path = dir.path().join("plain.db");
    let plain = Arc::new(DocStore::create_plain(&plain_path).expect("plain"));
    plain.create_keyspace("shop").expect("ks");
    plain
        .create_collection("shop", "orders", None)
        .expect("coll");

    let p = plain.clone();
    let (pi, pr) = workload(
        "plain SQLite",
        move || {
            let p = p.clone();
            Box::pin(async move { p })
        },
        n,
    )
    .await;
    let before = state.data.kms_calls();
    let st = state.clone();
    let id = dc_id.clone();
    let (ei, er) = workload(
        "customer-keyed",
        move || {
            let st = st.clone();
            let id = id.clone();
            Box::pin(async move { st.data.docstore(&id).await.expect("docstore") })
        },
        n,
    )
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
    println!();
    http::run(&state, &store, &url, &token).await;
    println!();
    regions::run(&state, &store, &url, &token).await;
}

/// The Data API over HTTP: a customer-keyed database against a plain-SQLite baseline.
mod http {
    use std::time::{Duration, Instant};

    use keyplane_app::App;
    use keyplane_store::DynStore;
    use serde_json::{Value, json};

    use super::env_usize;

    /// One database's endpoint and the latencies of its requests, per operation.
    struct Target {
        label: &'static str,
        url: String,
        samples: Vec<Vec<Duration>>,
        docs: Vec<u64>,
    }

    const OPS: [&str; 4] = [
        "insertMany (100 docs/request)",
        "findOne by _id",
        "find {customer: c17}, paged",
        "find amount in [500,520), paged",
    ];

    /// A ~1 KB document: `customer` spreads over 97 values, `amount` over 0..999 in no
    /// particular order, so both filters read matches from all over the collection.
    fn doc(i: usize, pad: &str) -> Value {
        json!({"_id": format!("d{i}"), "customer": format!("c{}", i % 97), "amount": (i * 7919) % 1000,
               "total": i, "note": pad})
    }

    pub(super) async fn post(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        cmd: &Value,
    ) -> (Duration, Value) {
        let start = Instant::now();
        let r = client
            .post(url)
            .header("Token", token)
            .json(cmd)
            .send()
            .await
            .expect("send");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        let took = start.elapsed();
        assert!(
            status.is_success() && body.get("errors").is_none(),
            "{cmd}: {status} {body}"
        );
        (took, body)
    }

    pub(super) async fn database(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        store: &DynStore,
        name: &str,
    ) -> (String, String) {
        let r = http
            .post(format!("{url}/v2/databases"))
            .bearer_auth(token)
            .json(&json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let db: Value = r.json().await.expect("json");
        let id = db["id"].as_str().expect("id").to_string();
        let dc_id = format!("{id}-1");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let dc = store.get_datacenter(&dc_id).await.expect("dc").expect("dc");
            if dc.status == keyplane_core::DatabaseStatus::Active {
                assert_eq!(
                    dc.key_kind,
                    keyplane_store::KeyKind::Customer,
                    "the database is customer-keyed"
                );
                break;
            }
            assert!(Instant::now() < deadline, "never ACTIVE");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (id, dc_id)
    }

    pub(super) fn pct(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
    }

    /// Pages through every match of `filter`; returns the documents seen.
    async fn page_all(
        client: &reqwest::Client,
        t: &mut Target,
        token: &str,
        op: usize,
        filter: &Value,
    ) -> u64 {
        let mut state: Option<String> = None;
        let mut n = 0u64;
        loop {
            let mut opts = json!({});
            if let Some(p) = &state {
                opts["pageState"] = json!(p);
            }
            let cmd = json!({"find": {"filter": filter, "options": opts}});
            let (took, body) = post(client, &t.url, token, &cmd).await;
            t.samples[op].push(took);
            let docs = body["data"]["documents"].as_array().expect("documents");
            n += docs.len() as u64;
            match body["data"]["nextPageState"].as_str() {
                Some(p) => state = Some(p.to_string()),
                None => break,
            }
        }
        t.docs[op] += n;
        n
    }

    pub async fn run(state: &App, store: &DynStore, url: &str, token: &str) {
        let n = env_usize("BENCH_HTTP_DOCS", 100_000).max(100);
        let reads = env_usize("BENCH_HTTP_READS", 5_000);
        let scans = env_usize("BENCH_HTTP_SCANS", 3).max(1);
        let client = reqwest::Client::new();
        let (enc_db, enc_dc) = database(&client, url, token, store, "http-encrypted").await;
        let (plain_db, plain_dc) = database(&client, url, token, store, "http-plain").await;
        state
            .data
            .bench_only_use_plain_file(&plain_dc, "shop")
            .await
            .expect("plain baseline");
        let make = |label, db: &str| Target {
            label,
            url: format!("{url}/db/{db}-us-east-2/api/json/v1/shop"),
            samples: vec![Vec::new(); OPS.len()],
            docs: vec![0; OPS.len()],
        };
        let mut targets = [
            make("plain SQLite", &plain_db),
            make("customer-keyed", &enc_db),
        ];
        for t in &mut targets {
            post(
                &client,
                &t.url,
                token,
                &json!({"createCollection": {"name": "orders"}}),
            )
            .await;
            t.url.push_str("/orders");
        }
        let enc_file = state.data.file(&enc_dc);
        let plain_file = state.data.file(&plain_dc);
        assert!(
            !keyplane_docstore::is_plain_sqlite(&enc_file),
            "the customer-keyed file is encrypted"
        );
        assert!(
            keyplane_docstore::is_plain_sqlite(&plain_file),
            "the baseline file is plain SQLite"
        );

        // Pad so a document is ~1 KB of JSON.
        let probe = serde_json::to_string(&doc(n / 2, "")).expect("json").len();
        let pad = "x".repeat(1024usize.saturating_sub(probe));
        let doc_bytes = serde_json::to_string(&doc(n / 2, &pad))
            .expect("json")
            .len();
        println!(
            "Data API over HTTP: {n} documents of {doc_bytes} bytes, one client, one request at a time, keyplane at {url}, \
             page cache {} MiB per datacenter (data_cache_mib)",
            state.config.data_cache_mib
        );

        let kms_before = state.data.kms_calls();
        // insertMany, batches of 100, the two databases alternating (and which goes first).
        for (b, start) in (0..n).step_by(100).enumerate() {
            let batch: Vec<Value> = (start..(start + 100).min(n))
                .map(|i| doc(i, &pad))
                .collect();
            let cmd = json!({"insertMany": {"documents": batch}});
            for k in 0..2 {
                let t = &mut targets[(b + k) % 2];
                let (took, body) = post(&client, &t.url, token, &cmd).await;
                assert_eq!(
                    body["status"]["insertedIds"].as_array().map(Vec::len),
                    Some((n - start).min(100))
                );
                t.samples[0].push(took);
                t.docs[0] += (n - start).min(100) as u64;
            }
        }
        // findOne by _id, random ids.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for r in 0..reads {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = format!("d{}", x % n as u64);
            let cmd = json!({"findOne": {"filter": {"_id": id}}});
            for k in 0..2 {
                let t = &mut targets[(r + k) % 2];
                let (took, body) = post(&client, &t.url, token, &cmd).await;
                assert_eq!(body["data"]["document"]["_id"], json!(id));
                t.samples[1].push(took);
                t.docs[1] += 1;
            }
        }
        // Filtered finds, paged to the end, several times over.
        let filters = [
            json!({"customer": "c17"}),
            json!({"amount": {"$gte": 500, "$lt": 520}}),
        ];
        for round in 0..scans {
            for (f, filter) in filters.iter().enumerate() {
                let mut counts = [0u64; 2];
                for k in 0..2 {
                    let i = (round + f + k) % 2;
                    counts[i] = page_all(&client, &mut targets[i], token, 2 + f, filter).await;
                }
                assert_eq!(
                    counts[0], counts[1],
                    "both databases find the same documents"
                );
                assert!(counts[0] > 0);
            }
        }
        let kms_calls = state.data.kms_calls() - kms_before;

        println!(
            "{:<32} {:<15} {:>10} {:>9} {:>9} {:>9}",
            "operation", "database", "docs/s", "requests", "p50 ms", "p99 ms"
        );
        for (op, name) in OPS.iter().enumerate() {
            let mut rates = [0.0f64; 2];
            let mut p50s = [0.0f64; 2];
            for (i, t) in targets.iter().enumerate() {
                let mut sorted = t.samples[op].clone();
                sorted.sort();
                let total: f64 = sorted.iter().map(Duration::as_secs_f64).sum();
                rates[i] = t.docs[op] as f64 / total.max(f64::MIN_POSITIVE);
                p50s[i] = pct(&sorted, 0.5);
                println!(
                    "{:<32} {:<15} {:>10.0} {:>9} {:>9.2} {:>9.2}",
                    if i == 0 { *name } else { "" },
                    t.label,
                    rates[i],
                    sorted.len(),
                    p50s[i],
                    pct(&sorted, 0.99)
                );
            }
            println!(
                "{:<32} {:<15} {:>+9.1}% throughput, {:>+6.1}% p50  (target <= 10%)",
                "",
                "overhead",
                (rates[0] / rates[1] - 1.0) * 100.0,
                (p50s[1] / p50s[0] - 1.0) * 100.0
            );
        }
        let requests: usize = targets[1].samples.iter().map(Vec::len).sum();
        println!(
            "KMS calls for the customer-keyed database: {kms_calls} in {requests} requests after warm-up"
        );
        for (label, f) in [("customer-keyed", &enc_file), ("plain SQLite", &plain_file)] {
            let size: u64 = ["", "-wal"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", f.display())).ok())
                .map(|m| m.len())
                .sum();
            println!(
                "{label:<15} file and WAL: {:.1} MiB",
                size as f64 / (1024.0 * 1024.0)
            );
        }
    }
}

/// Writes on a two-region database (us-east-2 + eu-west-1), each acknowledged only once both
/// regions have it (one ordered write per database, copied by `_id`), customer-keyed against a
/// two-region database whose two files the harness swapped for plain SQLite: one writer, then
/// 8 concurrent writers, the two databases taking turns in blocks so both see the same machine
/// state. Operations: `insertOne` of a ~1 KB document, `updateOne` `$inc` by `_id`.
/// Environment: BENCH_REGION_WRITES (writes per operation and database, default 2000),
/// BENCH_ONLY_REGIONS=1 (only this part).
mod regions {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use keyplane_app::App;
    use keyplane_store::DynStore;
    use serde_json::{Value, json};

    use super::env_usize;
    use super::http::{database, pct, post};

    const WRITERS: usize = 8;
    const BLOCK: usize = 200;

    async fn add_region(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        store: &DynStore,
        db: &str,
    ) -> String {
        let r = client
            .post(format!("{url}/v2/databases/{db}/datacenters"))
            .bearer_auth(token)
            .json(&json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]))
            .send()
            .await
            .expect("add region");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let dc_id = format!("{db}-2");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(dc) = store.get_datacenter(&dc_id).await.expect("dc")
                && dc.status == keyplane_core::DatabaseStatus::Active
            {
                return dc_id;
            }
            assert!(Instant::now() < deadline, "second region never ACTIVE");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn command(op: usize, i: usize, pad: &str) -> Value {
        match op {
            0 => json!({"insertOne": {"document": {"_id": format!("d{i}"), "n": i, "note": pad}}}),
            // A document the one-writer inserts made (ids from 1,000,000): every update changes one.
            _ => {
                json!({"updateOne": {"filter": {"_id": format!("d{}", 1_000_000 + i % 500)}, "update": {"$inc": {"n": 1}}}})
            }
        }
    }

    /// Commands `op` numbered `ids` from `writers` tasks at once; returns the latencies and the
    /// wall time.
    async fn block(
        (client, url, token): (&reqwest::Client, &str, &str),
        op: usize,
        ids: std::ops::Range<usize>,
        writers: usize,
        pad: &Arc<String>,
    ) -> (Vec<Duration>, Duration) {
        let (from, count) = (ids.start, ids.len());
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for w in 0..writers {
            let (client, url, token, pad) = (
                client.clone(),
                url.to_string(),
                token.to_string(),
                pad.clone(),
            );
            set.spawn(async move {
                let mut lat = vec![];
                let mut i = w;
                while i < count {
                    let (took, body) =
                        post(&client, &url, &token, &command(op, from + i, &pad)).await;
                    if op == 1 {
                        assert_eq!(body["status"]["modifiedCount"], json!(1), "{body}");
                    }
                    lat.push(took);
                    i += writers;
                }
                lat
            });
        }
        let mut all = vec![];
        while let Some(r) = set.join_next().await {
            all.extend(r.expect("writer"));
        }
        (all, start.elapsed())
    }

    pub async fn run(state: &App, store: &DynStore, url: &str, token: &str) {
        let writes = env_usize("BENCH_REGION_WRITES", 2000).max(BLOCK);
        let client = reqwest::Client::new();
        let (enc_db, _) = database(&client, url, token, store, "regions-encrypted").await;
        let (plain_db, plain_dc1) = database(&client, url, token, store, "regions-plain").await;
        state
            .data
            .bench_only_use_plain_file(&plain_dc1, "shop")
            .await
            .expect("plain baseline");
        add_region(&client, url, token, store, &enc_db).await;
        let plain_dc2 = add_region(&client, url, token, store, &plain_db).await;
        state
            .data
            .bench_only_use_plain_file(&plain_dc2, "shop")
            .await
            .expect("plain baseline");
        for (db, plain) in [(&enc_db, false), (&plain_db, true)] {
            for n in 1..=2 {
                let f = state.data.file(&format!("{db}-{n}"));
                assert_eq!(
                    keyplane_docstore::is_plain_sqlite(&f),
                    plain,
                    "{}",
                    f.display()
                );
            }
        }
        let targets = [
            (
                "plain SQLite",
                format!("{url}/db/{plain_db}-us-east-2/api/json/v1/shop"),
            ),
            (
                "customer-keyed",
                format!("{url}/db/{enc_db}-us-east-2/api/json/v1/shop"),
            ),
        ];
        for (_, t) in &targets {
            post(
                &client,
                t,
                token,
                &json!({"createCollection": {"name": "orders"}}),
            )
            .await;
        }
        let pad = Arc::new("x".repeat(960));
        println!(
            "Two-region writes over HTTP (us-east-2 + eu-west-1, each write in both files before its answer): \
             {writes} writes per operation and database, blocks of {BLOCK}, databases taking turns"
        );
        println!(
            "{:<34} {:<15} {:>10} {:>9} {:>9}",
            "operation", "database", "writes/s", "p50 ms", "p99 ms"
        );
        let ops = ["insertOne (~1 KB)", "updateOne $inc by _id"];
        for writers in [1, WRITERS] {
            for (op, name) in ops.iter().enumerate() {
                let mut lat = [vec![], vec![]];
                let mut wall = [Duration::ZERO; 2];
                let base = if op == 0 { writers * 1_000_000 } else { 0 };
                for (b, from) in (0..writes).step_by(BLOCK).enumerate() {
                    for k in 0..2 {
                        let i = (b + k) % 2;
                        let (l, w) = block(
                            (&client, &format!("{}/orders", targets[i].1), token),
                            op,
                            base + from..base + from + BLOCK.min(writes - from),
                            writers,
                            &pad,
                        )
                        .await;
                        lat[i].extend(l);
                        wall[i] += w;
                    }
                }
                let label = format!(
                    "{name}, {writers} writer{}",
                    if writers > 1 { "s" } else { "" }
                );
                let mut rates = [0.0; 2];
                for i in 0..2 {
                    lat[i].sort();
                    rates[i] = lat[i].len() as f64 / wall[i].as_secs_f64().max(f64::MIN_POSITIVE);
                    println!(
                        "{:<34} {:<15} {:>10.0} {:>9.2} {:>9.2}",
                        if i == 0 { label.as_str() } else { "" },
                        targets[i].0,
                        rates[i],
                        pct(&lat[i], 0.5),
                        pct(&lat[i], 0.99)
                    );
                }
                println!(
                    "{:<34} {:<15} {:>+9.1}% throughput  (target <= 10%)",
                    "",
                    "overhead",
                    (rates[0] / rates[1] - 1.0) * 100.0
                );
            }
        }
        // Both regions hold the same documents, in both databases.
        for db in [&enc_db, &plain_db] {
            let mut counts = vec![];
            for n in 1..=2 {
                let s = state
                    .data
                    .docstore(&format!("{db}-{n}"))
                    .await
                    .expect("open");
                counts.push(
                    tokio::task::spawn_blocking(move || s.estimated_count("shop", "orders"))
                        .await
                        .expect("join")
                        .expect("count"),
                );
            }
            assert_eq!(counts[0], counts[1], "regions of {db} differ: {counts:?}");
        }
    }
}
