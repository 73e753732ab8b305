//! Loopback ports.

use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, polling every 100 ms.
/// Panics after `within`, or as soon as `exited` reports that `what` (the would-be listener, a
/// child process say) is gone, with that report.
pub async fn wait_for_port(
    what: &str,
    port: u16,
    within: Duration,
    mut exited: impl FnMut() -> Option<String>,
) {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Some(how) = exited() {
            panic!("{what} exited ({how}) before listening on port {port}");
        }
        assert!(
            started.elapsed() < within,
            "{what} did not listen on port {port} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
