//! Helpers shared by the customer-side CLI tests: the binary run as a customer would run it
//! (in a working directory of its own, with a user config directory of its own and no
//! `KEYPLANE_*` variable from the developer's shell), and `serve --dev` on free ports;
//! `fleet`: several `keyplane serve` on one PostgreSQL; `readme`: the README's flow, run
//! verbatim.
#![allow(dead_code)]

#[cfg(unix)]
pub mod fleet;
pub mod readme;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyplane");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed (and reaped) when dropped; resumed first if a test stopped it.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        signal(&self.0, "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A customer's machine: a working directory and a home with its own config directory.
pub struct Customer {
    pub dir: tempfile::TempDir,
}

impl Customer {
    pub fn new() -> Customer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Customer { dir }
    }

    pub fn cwd(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_home().join("keyplane").join("config.toml")
    }

    /// `keyplane` with this customer's environment: nothing inherited that names a server.
    pub fn command(&self) -> Command {
        self.with_env(Command::new(BIN))
    }

    /// bash with this customer's environment and `keyplane` first on its PATH.
    pub fn shell(&self) -> Command {
        let mut c = self.with_env(Command::new("bash"));
        c.env(
            "PATH",
            format!(
                "{}:{}",
                Customer::bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args(["--noprofile", "--norc"]);
        c
    }

    /// `cmdline` run by util-linux `script` on a pseudo-terminal, whose output (what the
    /// terminal would show) is `script`'s standard output.
    pub fn with_terminal(&self, cmdline: &str) -> Command {
        let mut c = self.with_env(Command::new("script"));
        c.args(["-qfec", cmdline, "/dev/null"])
            .env("TERM", "xterm")
            .env("COLUMNS", "120");
        c
    }

    fn with_env(&self, mut c: Command) -> Command {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("KEYPLANE_") {
                c.env_remove(&k);
            }
        }
        c.current_dir(self.cwd())
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", self.config_home())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args).output().unwrap())
    }

    /// The directory `keyplane` lives in, for scripts that call it by name.
    pub fn bin_dir() -> PathBuf {
        Path::new(BIN).parent().unwrap().to_path_buf()
    }
}

/// What one command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

pub fn http_ok(url: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        matches!(c.get(url).send().await, Ok(r) if r.status() == 200)
    })
}

pub fn wait_healthy(api: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(&format!("{api}/healthz")) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited: {status}");
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `keyplane serve --dev` started in the customer's working directory on free ports, the
/// way the README starts it (its data in `./keyplane-data`); returns the dev credentials.
pub fn serve_dev(customer: &Customer) -> (Proc, Value) {
    serve_dev_with(customer, &[])
}

/// [`serve_dev`] with `flags` after `serve --dev`.
pub fn serve_dev_with(customer: &Customer, flags: &[&str]) -> (Proc, Value) {
    let api = free_port();
    let kms = free_port();
    let log = std::fs::File::create(customer.cwd().join("serve.log")).unwrap();
    let mut child = customer
        .command()
        .args(["serve", "--dev"])
        .args(flags)
        .env("KEYPLANE_LISTEN", format!("127.0.0.1:{api}"))
        .env("KEYPLANE_KMS_LISTEN", format!("127.0.0.1:{kms}"))
        // The built-in Azure vault on a port of its own choosing (its URL is in the dev
        // credentials), so that servers of parallel tests never collide.
        .env("KEYPLANE_AZURE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{api}");
    wait_healthy(&url, &mut child);
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(customer.cwd().join("keyplane-data/dev-credentials.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(creds["apiUrl"], url);
    (Proc(child), creds)
}

/// One Data API command over HTTP: the status and the JSON answer.
pub fn data_api_call(url: &str, token: &str, command: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let res = reqwest::Client::new()
            .post(url)
            .header("Token", token)
            .header("content-type", "application/json")
            .body(command.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    })
}

/// One request a receiver got: its headers (names lower-cased) and body.
pub type Delivered = (std::collections::BTreeMap<String, String>, Vec<u8>);

/// A loopback HTTP server that answers every POST with 204 and hands over each request.
pub fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Delivered>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            // A thread per connection: the sender keeps several open at once.
            std::thread::spawn(move || serve_webhook_connection(conn, tx));
        }
    });
    (url, rx)
}

/// Answers one connection's requests until it closes (or breaks: a killed sender).
fn serve_webhook_connection(
    mut conn: std::net::TcpStream,
    tx: std::sync::mpsc::Sender<Delivered>,
) -> Option<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    loop {
        let mut headers = std::collections::BTreeMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return Some(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .ok()?;
        tx.send((headers, body)).ok()?;
    }
}
