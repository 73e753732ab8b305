//! moto's server (a public AWS emulator) on a free loopback port. It must be installed
//! (`scripts/setup-test-deps` puts it in `<workspace>/.venv`): the tests that start it fail,
//! never skip, without it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{REGION, credentials, free_port, kms_client, wait_for_port};

/// The one account moto runs everything in.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn find_moto_server() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(workspace.join(".venv/bin/moto_server"));
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "moto_server is not installed (looked in $PATH and {}): run scripts/setup-test-deps",
            workspace.join(".venv/bin").display()
        )
    })
}

impl Moto {
    /// Starts `moto_server` and waits (up to 60 s) until it listens.
    pub async fn start() -> Moto {
        let bin = find_moto_server();
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let child = &mut moto.child;
        wait_for_port("moto_server", port, Duration::from_secs(60), || {
            child.try_wait().ok().flatten().map(|s| s.to_string())
        })
        .await;
        moto
    }

    /// A client in [`REGION`]; moto ignores the signature's credentials, so any will do.
    pub fn client(&self) -> aws_sdk_kms::Client {
        kms_client(
            &self.endpoint,
            REGION,
            credentials("AKIDMOTOCUSTOMER", "moto-ignores-secrets"),
        )
    }

    /// A plain HTTP/1.0 GET on moto's own API (its recorded state), as text.
    pub async fn get(&self, path: &str) -> String {
        self.http("GET", path).await
    }

    /// Forgets every resource moto holds (`POST /moto-api/reset`), as if freshly started.
    pub async fn reset(&self) {
        let answer = self.http("POST", "/moto-api/reset").await;
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "moto refused the reset: {answer}"
        );
    }

    async fn http(&self, method: &str, path: &str) -> String {
        let host = self.endpoint.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(host).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
        sock.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        sock.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}
