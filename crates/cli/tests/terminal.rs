//! What `keyplane db create` shows while it waits: on a pseudo-terminal (util-linux `script`),
//! a spinner redrawn in place with the current status and the elapsed time; piped, plain lines,
//! one per change of status.
//!
//! To make creation take as long as the test needs, keyplane's KMS is a separate
//! `keyplane kms serve` process that the test stops (SIGSTOP) while the database is being
//! created: provisioning waits on it in INITIALIZING, as it would on a slow KMS, and goes on
//! to ACTIVE once it is resumed (SIGCONT). Everything here is the real binary; the server
//! runs without `--dev`, with an organization and token made by `keyplane admin` and the CLI
//! signed in with `keyplane login`.
#![cfg(unix)]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, Customer, Proc, free_port, signal, wait_healthy};
use serde_json::Value;

/// A server whose KMS the test can stop and resume.
struct Platform {
    _server: Proc,
    kms: Proc,
    kms_flags: Vec<String>,
}

impl Platform {
    fn stop_kms(&self) {
        signal(&self.kms.0, "STOP");
    }

    fn resume_kms(&self) {
        signal(&self.kms.0, "CONT");
    }
}

fn start(customer: &Customer) -> Platform {
    let root = customer.cwd();
    // The KMS on its own, on a free port; it prints its endpoint and the customer's keys.
    let mut kms = customer
        .command()
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("kms"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(kms.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let kms = Proc(kms);
    let hello: Value = serde_json::from_str(&first).unwrap();
    let endpoint = hello["endpoint"].as_str().unwrap().to_string();
    let ids: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("kms/credentials.json")).unwrap())
            .unwrap();
    let creator = ids["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["principalArn"] == "arn:aws:iam::222222222222:role/creator")
        .expect("the built-in KMS knows the platform's role");
    // keyplane acts on that KMS as the platform account; each attempt is bounded, so a
    // stopped KMS shows as a slow one and provisioning retries.
    std::fs::write(
        root.join("keyplane.toml"),
        format!(
            "[aws]\nendpoint_url = \"{endpoint}\"\nmax_attempts = 1\nattempt_timeout_ms = 2000\noperation_timeout_ms = 4000\n\
             [aws.credentials.\"222222222222\"]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            creator["accessKeyId"].as_str().unwrap(),
            creator["secretAccessKey"].as_str().unwrap()
        ),
    )
    .unwrap();
    let data = root.join("data");
    let admin = |args: &[&str]| {
        let r = customer.run(
            &[
                &["admin", "--data-dir", data.to_str().unwrap(), "--config"][..],
                &[root.join("keyplane.toml").to_str().unwrap()],
                args,
            ]
            .concat(),
        );
        r.ok().json()
    };
    let org = admin(&["create-org", "Acme"]);
    let token = admin(&[
        "create-token",
        "--org",
        org["id"].as_str().unwrap(),
        "--role",
        "Organization Administrator",
    ]);
    let port = free_port();
    let mut server = customer
        .command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config")
        .arg(root.join("keyplane.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}");
    wait_healthy(&api, &mut server);
    let server = Proc(server);
    customer
        .run(&[
            "login",
            "--api-url",
            &api,
            "--token",
            token["token"].as_str().unwrap(),
        ])
        .ok();
    let kms_flags = vec![
        "--endpoint".to_string(),
        endpoint,
        "--access-key-id".to_string(),
        hello["customer"]["accessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        "--secret-access-key".to_string(),
        hello["customer"]["secretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let p = Platform {
        _server: server,
        kms,
        kms_flags,
    };
    let flags: Vec<&str> = p.kms_flags.iter().map(String::as_str).collect();
    let key = customer.run(&[&["kms", "create-key", "--output", "arn"][..], &flags].concat());
    let key = key.ok().stdout.trim().to_string();
    customer
        .run(
            &[
                &["kms", "put-key-policy", "--key-id", &key, "--merge"][..],
                &flags,
            ]
            .concat(),
        )
        .ok();
    customer
        .run(&["key", "register", "--region", "us-east-2", "--key-id", &key])
        .ok();
    p
}

/// Collects a child's output as it arrives, from another thread.
fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the command did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One drawn spinner frame: `<glyph> <label>: <STATUS>  <seconds>s`.
#[derive(Debug)]
struct Frame {
    glyph: char,
    status: String,
    tenths: u64,
}

fn frame(s: &str, label: &str) -> Option<Frame> {
    let s = s.trim_end();
    let mut chars = s.chars();
    let glyph = chars.next()?;
    if !"|/-\\".contains(glyph) {
        return None;
    }
    let rest = chars.as_str().strip_prefix(' ')?;
    let rest = rest.strip_prefix(&format!("{label}: "))?;
    let (status, secs) = rest.rsplit_once("  ")?;
    let secs = secs.strip_suffix('s')?;
    let (whole, tenth) = secs.split_once('.')?;
    Some(Frame {
        glyph,
        status: status.to_string(),
        tenths: whole.parse::<u64>().ok()? * 10 + tenth.parse::<u64>().ok()?,
    })
}

#[test]
fn on_a_terminal_a_spinner_shows_status_and_time_and_piped_output_is_plain_lines() {
    assert!(
        Path::new("/usr/bin/script").exists(),
        "util-linux `script` provides the pseudo-terminal"
    );
    let customer = Customer::new();
    let platform = start(&customer);

    // On a pseudo-terminal.
    platform.stop_kms();
    let mut shown = customer
        .with_terminal(&format!(
            "{BIN} db create --name orders --keyspace shop --region us-east-2"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = collect(shown.stdout.take().unwrap());
    let shown = Proc(shown);
    // The database waits in INITIALIZING on the stopped KMS; watch the spinner a while.
    wait_until("the spinner to show INITIALIZING", 30, || {
        text(&out).contains("orders: INITIALIZING")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let while_stopped = text(&out);
    platform.resume_kms();
    let mut shown = shown;
    let status = wait_exit(&mut shown.0, 60);
    let all = text(&out);
    assert!(status.success(), "{status}: {all}");

    let frames: Vec<Frame> = while_stopped
        .split(['\r', '\n'])
        .filter_map(|f| frame(f, "orders"))
        .collect();
    let waiting: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.status.starts_with("INITIALIZING"))
        .collect();
    assert!(
        waiting.len() >= 8,
        "the spinner is redrawn every 100 ms while the database initializes: {frames:?}"
    );
    let glyphs: std::collections::BTreeSet<char> = waiting.iter().map(|f| f.glyph).collect();
    assert_eq!(glyphs.len(), 4, "the spinner turns: {frames:?}");
    assert!(
        frames.windows(2).all(|w| w[0].tenths <= w[1].tenths),
        "elapsed time never goes back: {frames:?}"
    );
    assert!(
        waiting.last().unwrap().tenths >= waiting[0].tenths + 10,
        "elapsed time advances: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .all(|f| f.status.starts_with("PENDING") || f.status.starts_with("INITIALIZING")),
        "{frames:?}"
    );
    // Redrawn in place, then replaced by a line that stays, then the table.
    assert!(
        while_stopped.contains("\r|") || while_stopped.contains("\r/"),
        "{while_stopped:?}"
    );
    assert!(all.contains("orders: ACTIVE after"), "{all:?}");
    assert!(all.contains("Status:         ACTIVE"), "{all:?}");

    // Piped: plain lines on stderr, JSON alone on stdout.
    platform.stop_kms();
    let mut piped = customer
        .command()
        .args([
            "db",
            "create",
            "--name",
            "orders2",
            "--keyspace",
            "shop",
            "--region",
            "us-east-2",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(piped.stdout.take().unwrap());
    let stderr = collect(piped.stderr.take().unwrap());
    let mut piped = Proc(piped);
    wait_until("a plain INITIALIZING line", 30, || {
        text(&stderr).contains("orders2: INITIALIZING after")
    });
    std::thread::sleep(Duration::from_millis(1500));
    platform.resume_kms();
    let status = wait_exit(&mut piped.0, 60);
    let err = text(&stderr);
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    // One line per status seen, not one per tick: no two lines in a row say the same thing.
    // (PENDING may be over before the first look; a status request the server fails under
    // load adds a line with a note.)
    let said: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.strip_prefix("orders2: ")
                .and_then(|l| l.rsplit_once(" after "))
                .map(|(status, _)| status)
                .unwrap_or_else(|| panic!("not a progress line: {l:?} in {lines:?}"))
        })
        .collect();
    assert!(said.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
    assert!(said.len() <= 5, "{lines:?}");
    assert!(said.contains(&"INITIALIZING"), "{lines:?}");
    assert_eq!(said.last(), Some(&"ACTIVE"), "{lines:?}");
    let v: Value = serde_json::from_str(&text(&stdout)).unwrap();
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["info"]["name"], "orders2");
}
