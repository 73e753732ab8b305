//! The retry loop on the wire: which failures are retried, how often, and within what time.
//!
//! HAND-WRITTEN FAKE, documented as such: no real server throttles, fails with a 500 or goes
//! silent on demand, so `FaultyKms` below is a small TCP server written for these tests. It
//! answers the first connections with scripted AWS-shaped errors and then, where a test needs
//! a real answer, proxies the connection byte for byte to keyplane's built-in KMS (SigV4 still
//! verifies: the Host header the client signed reaches the server unchanged). Every scripted
//! answer carries `Connection: close`, so each attempt is one connection and the connection
//! count is the attempt count.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use keyplane_kms::{ErrorKind, KmsError};
use keyplane_kms_aws::RetrySettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
enum Fault {
    /// Answer with this HTTP status and AWS error code.
    Error(u16, &'static str),
    /// Read the request and never answer.
    Silence,
}

struct FaultyKms {
    endpoint: String,
    connections: Arc<AtomicUsize>,
}

impl FaultyKms {
    /// Connection `n` (0-based) gets `script[n]`; later ones are proxied to `upstream`, or get
    /// the script's last fault again when there is no upstream.
    async fn start(script: Vec<Fault>, upstream: Option<String>) -> FaultyKms {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let fault = match (script.get(n), &upstream) {
                    (Some(f), _) => Some(f.clone()),
                    (None, Some(_)) => None,
                    (None, None) => script.last().cloned(),
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    match (fault, upstream) {
                        (Some(f), _) => answer(sock, f).await,
                        (None, Some(up)) => proxy(sock, &up).await,
                        (None, None) => {}
                    }
                });
            }
        });
        FaultyKms {
            endpoint,
            connections,
        }
    }

    fn attempts(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn read_request(sock: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

async fn answer(mut sock: TcpStream, fault: Fault) {
    read_request(&mut sock).await;
    match fault {
        Fault::Error(status, code) => {
            let body = format!(r#"{{"__type":"{code}","message":"injected by the test"}}"#);
            let resp = format!(
                "HTTP/1.1 {status} Injected\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
        Fault::Silence => {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}

async fn proxy(mut sock: TcpStream, upstream: &str) {
    let addr = upstream.trim_start_matches("http://");
    if let Ok(mut up) = TcpStream::connect(addr).await {
        let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
    }
}

/// The common fast settings with another attempt budget.
fn retries(max_attempts: u32) -> RetrySettings {
    RetrySettings {
        max_attempts,
        ..fast_retries()
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_success() {
    let s = DevKmsServer::start().await;
    let customer = s.client(CUSTOMER);
    let key = customer_key(&customer, CUSTOMER_ACCOUNT, CREATOR, None).await;
    let fake = FaultyKms::start(
        vec![
            Fault::Error(400, "ThrottlingException"),
            Fault::Error(500, "KMSInternalException"),
        ],
        Some(s.endpoint.clone()),
    )
    .await;
    let (_c, kms) = platform_at(
        &fake.endpoint,
        PLATFORM_ACCOUNT,
        s.creator_credentials(),
        retries(3),
    );
    let start = Instant::now();
    let c = ctx(&[("db", "d1")]);
    let ct = kms.encrypt(&key, b"through the faults", &c).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(fake.attempts(), 3);
    // Backoffs of at least 25 ms and 50 ms (half of 50 ms, then of 100 ms).
    assert!(elapsed >= Duration::from_millis(75), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // The proxied answer is the real server's.
    assert_eq!(
        kms.decrypt(&key, &ct, &c).await.unwrap().as_slice(),
        b"through the faults"
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let fake = FaultyKms::start(vec![Fault::Error(503, "ServiceUnavailableException")], None).await;
    let (_c, kms) = platform_at(
        &fake.endpoint,
        PLATFORM_ACCOUNT,
        bogus_credentials(),
        retries(3),
    );
    let start = Instant::now();
    let e = kms.describe_key("alias/anything").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e:?}");
    assert!(e.message.contains("after 3 attempts"), "{}", e.message);
    assert_eq!(fake.attempts(), 3);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // An unknown 5xx code is still a server error, hence retryable.
    let fake = FaultyKms::start(vec![Fault::Error(502, "SomethingNewException")], None).await;
    let (_c, kms) = platform_at(
        &fake.endpoint,
        PLATFORM_ACCOUNT,
        bogus_credentials(),
        retries(2),
    );
    let e = kms.describe_key("alias/anything").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e:?}");
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test]
async fn failures_about_the_key_or_the_caller_are_not_retried() {
    for (status, code, kind) in [
        (
            400,
            "AccessDeniedException",
            ErrorKind::AccessDenied {
                action: "kms:GenerateDataKey".into(),
            },
        ),
        (400, "NotFoundException", ErrorKind::NotFound),
        (400, "DisabledException", ErrorKind::Disabled),
        (400, "KMSInvalidStateException", ErrorKind::InvalidState),
        (400, "UnrecognizedClientException", ErrorKind::Credentials),
        (400, "ValidationException", ErrorKind::Invalid),
    ] {
        let fake = FaultyKms::start(vec![Fault::Error(status, code)], None).await;
        let (_c, kms) = platform_at(
            &fake.endpoint,
            PLATFORM_ACCOUNT,
            bogus_credentials(),
            retries(5),
        );
        let e = kms
            .generate_data_key("alias/anything", &ctx(&[]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{code}: {e:?}");
        assert_eq!(fake.attempts(), 1, "{code} was retried");
    }
}

/// DescribeKey against a server that reads every request and never answers, with 10 ms
/// backoffs and the given budget; returns the error, the time it took and the attempts made.
async fn describe_on_a_silent_server(
    max_attempts: u32,
    attempt_timeout: Duration,
    operation_timeout: Duration,
) -> (KmsError, Duration, usize) {
    let fake = FaultyKms::start(vec![Fault::Silence], None).await;
    let settings = RetrySettings {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        attempt_timeout,
        operation_timeout,
    };
    let (_c, kms) = platform_at(
        &fake.endpoint,
        PLATFORM_ACCOUNT,
        bogus_credentials(),
        settings,
    );
    let start = Instant::now();
    let e = kms.describe_key("alias/anything").await.unwrap_err();
    (e, start.elapsed(), fake.attempts())
}

#[tokio::test]
async fn a_silent_server_hits_the_attempt_and_operation_timeouts() {
    let (e, elapsed, attempts) =
        describe_on_a_silent_server(2, Duration::from_millis(300), Duration::from_secs(10)).await;
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(e.message.contains("after 2 attempts"), "{}", e.message);
    assert_eq!(attempts, 2);
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    // The operation timeout caps the total, whatever the attempt budget.
    let (e, elapsed, attempts) =
        describe_on_a_silent_server(50, Duration::from_millis(200), Duration::from_millis(700))
            .await;
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert!(attempts <= 4, "{attempts}");
}
