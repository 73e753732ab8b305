//! Unwrapping a data key through the adapter against a real `bao server -dev`, next to the
//! same Transit decrypt sent as a bare HTTP request with a token in hand (the baseline: what
//! the server itself costs). Prints operations per second and latency percentiles for both.
//! `cargo bench -p keyplane-kms-openbao --bench transit` (part of `scripts/bench`).
//! Tunables: OPENBAO_BENCH_SECS (default 5 per side), OPENBAO_BENCH_TASKS (default 16).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs `op` from `tasks` tasks for `secs` seconds; every call must succeed.
async fn measure<F, Fut>(tasks: u64, secs: u64, op: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                op().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("a bench task panicked"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        ops: all.len(),
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>8.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops in {:.1} s)",
        f.ops as f64 / f.elapsed.as_secs_f64(),
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.ops,
        f.elapsed.as_secs_f64()
    );
}

fn main() {
    let secs = env_num("OPENBAO_BENCH_SECS", 5);
    let tasks = env_num("OPENBAO_BENCH_TASKS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let c = Customer::new(BaoServer::start().await, "bench", "aes256-gcm96", &[]).await;
        let kms = c.platform();
        let key = c.key_id();
        let a = ctx(&[("org", "o1"), ("datacenter", "dc-1")]);
        let wrapped = kms
            .generate_data_key_without_plaintext(&key, &a)
            .await
            .expect("a data key");

        // The baseline's token: a login as the same role, with the bao CLI.
        let token = c
            .bao(&[
                "write",
                "-field=token",
                "auth/approle/login",
                &format!("role_id={}", c.role_id),
                &format!("secret_id={}", c.secret_id),
            ])
            .await
            .trim()
            .to_string();
        let bind = base64::engine::general_purpose::STANDARD.encode(canonical_context(&a));
        let body = serde_json::to_vec(&serde_json::json!({
            "ciphertext": String::from_utf8(wrapped.clone()).expect("text"),
            "associated_data": bind,
            "context": bind,
        }))
        .expect("json");
        let url = format!("{}/v1/transit/decrypt/bench", c.bao.address);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        let baseline = {
            let (http, url, token, body) = (http.clone(), url.clone(), token.clone(), body.clone());
            measure(tasks, secs, move || {
                let req = http
                    .post(url.as_str())
                    .header("X-Vault-Token", token.as_str())
                    .body(body.clone());
                async move {
                    let resp = req.send().await.expect("an answer");
                    assert_eq!(resp.status(), 200);
                    resp.bytes().await.expect("a body");
                }
            })
            .await
        };
        let adapter = {
            let (kms, key, a, wrapped) = (kms.clone(), key.clone(), a.clone(), wrapped.clone());
            measure(tasks, secs, move || {
                let (kms, key, a, wrapped) = (kms.clone(), key.clone(), a.clone(), wrapped.clone());
                async move {
                    let plain = kms.decrypt(&key, &wrapped, &a).await.expect("decrypt");
                    assert_eq!(plain.len(), 32);
                }
            })
            .await
        };
        println!(
            "Transit decrypt of a wrapped data key, {tasks} tasks, bao server -dev on loopback:"
        );
        print("baseline: bare HTTP request", &baseline);
        print("keyplane-kms-openbao decrypt", &adapter);
        println!(
            "adapter throughput / baseline: {:.2}; logins during the run: {}",
            (adapter.ops as f64 / adapter.elapsed.as_secs_f64())
                / (baseline.ops as f64 / baseline.elapsed.as_secs_f64()),
            kms.session_stats().logins
        );
    });
}
