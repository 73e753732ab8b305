//! The binary as an operator runs it: `serve --dev` on real ports, restart, signals, and
//! the admin commands against the same data dir.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyplane");
const ACCOUNTS: &str = "/v2/kms/classic/provider/aws/region/us-east-2/accounts";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_dev(data: &Path) -> (Server, Value) {
    let creds = data.join("dev-credentials.json");
    let api = free_port();
    let kms = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--kms-listen",
            &format!("127.0.0.1:{kms}"),
            "--azure-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    // The API serves only after the bootstrap wrote the credentials file.
    while !wait_http(&format!("http://127.0.0.1:{api}/healthz")) {
        assert!(Instant::now() < deadline, "serve --dev did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(v["apiUrl"], format!("http://127.0.0.1:{api}"));
    (server, v)
}

fn wait_http(url: &str) -> bool {
    reqwest::blocking_get(url)
}

mod reqwest {
    /// A minimal blocking GET over the async client, to keep these tests synchronous.
    pub fn blocking_get(url: &str) -> bool {
        get(url, None).map(|(s, _)| s == 200).unwrap_or(false)
    }

    pub fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let client = ::reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .ok()?;
            let mut b = client.get(url);
            if let Some(t) = token {
                b = b.bearer_auth(t);
            }
            let res = b.send().await.ok()?;
            let status = res.status().as_u16();
            Some((status, res.text().await.ok()?))
        })
    }
}

fn admin(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dev_mode_serves_the_accounts_route_and_reuses_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (server, creds) = start_dev(dir.path());
    let token = creds["token"].as_str().unwrap().to_string();
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    assert_eq!(creds["kms"]["customer"]["accountId"], "111111111111");
    assert!(
        creds["kms"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("dev-credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (st, body) = reqwest::get(&format!("{api}{ACCOUNTS}"), Some(&token)).unwrap();
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["provider_id"], "222222222222");
    assert_eq!(v[0]["organization_id"], creds["orgId"]);
    drop(server);

    let (_server, again) = start_dev(dir.path());
    assert_eq!(
        again["orgId"], creds["orgId"],
        "same organization after restart"
    );
    assert_eq!(again["token"], creds["token"], "same token after restart");
    assert_eq!(
        again["kms"]["customer"]["accessKeyId"],
        creds["kms"]["customer"]["accessKeyId"]
    );
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _) = start_dev(dir.path());
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_commands_create_orgs_and_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = admin(dir.path(), &["create-enterprise", "Globex"]);
    assert!(ok, "{err}");
    let ent: Value = serde_json::from_str(&out).unwrap();
    let (ok, out, err) = admin(
        dir.path(),
        &[
            "create-org",
            "Globex Billing",
            "--enterprise",
            ent["id"].as_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let org: Value = serde_json::from_str(&out).unwrap();
    let org_id = org["id"].as_str().unwrap().to_string();
    let (ok, out, err) = admin(
        dir.path(),
        &[
            "create-token",
            "--org",
            &org_id,
            "--role",
            "custom:org-cmk-read",
        ],
    );
    assert!(ok, "{err}");
    let tok: Value = serde_json::from_str(&out).unwrap();
    let token = tok["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 97);

    let (ok, _, err) = admin(
        dir.path(),
        &["create-token", "--org", &org_id, "--role", "superuser"],
    );
    assert!(!ok);
    assert!(
        err.contains("Organization Administrator"),
        "lists the roles: {err}"
    );
    let (ok, _, err) = admin(
        dir.path(),
        &[
            "set-regions",
            "--org",
            &org_id,
            "--provider",
            "aws",
            "--regions",
            "mars-1",
        ],
    );
    assert!(!ok);
    assert!(err.contains("us-east-2"), "{err}");
    let (ok, _, err) = admin(
        dir.path(),
        &[
            "set-regions",
            "--org",
            &org_id,
            "--provider",
            "aws",
            "--regions",
            "eu-west-1",
        ],
    );
    assert!(ok, "{err}");

    let (server, creds) = start_dev(dir.path());
    let api = creds["apiUrl"].as_str().unwrap();
    let (st, body) = reqwest::get(
        &format!("{api}/v2/kms/classic/provider/aws/region/eu-west-1/accounts"),
        Some(&token),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let (st, body) = reqwest::get(&format!("{api}{ACCOUNTS}"), Some(&token)).unwrap();
    assert_eq!(st, 404, "us-east-2 is locked for this org: {body}");

    let client_id = tok["clientId"].as_str().unwrap();
    let (ok, _, err) = admin(
        dir.path(),
        &["revoke-token", "--org", &org_id, "--client-id", client_id],
    );
    assert!(ok, "{err}");
    // The running server refuses it at once: no cache between it and the store.
    let (st, _) = reqwest::get(
        &format!("{api}/v2/kms/classic/provider/aws/region/eu-west-1/accounts"),
        Some(&token),
    )
    .unwrap();
    assert_eq!(st, 401);
    drop(server);
}

#[test]
fn json_logs_never_contain_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let kms = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--dev",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--kms-listen",
            &format!("127.0.0.1:{kms}"),
            "--azure-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the logs as they come, so a full pipe never blocks the server.
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let server = Server(child);
    let creds_path = dir.path().join("dev-credentials.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wait_http(&format!("http://127.0.0.1:{api}/healthz")) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(creds_path).unwrap()).unwrap();
    let token = creds["token"].as_str().unwrap();
    let _ = reqwest::get(&format!("http://127.0.0.1:{api}{ACCOUNTS}"), Some(token));
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let logs = reader.join().unwrap();
    drop(server);
    let secret = token.rsplit(':').next().unwrap();
    assert!(logs.lines().count() > 2, "{logs}");
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.get("level").is_some());
    }
    assert!(!logs.contains(secret), "the token's secret is in the logs");
    let kms_secret = creds["kms"]["customer"]["secretAccessKey"]
        .as_str()
        .unwrap();
    assert!(!logs.contains(kms_secret), "a KMS secret is in the logs");
    assert!(logs.contains("\"request\""), "debug request logs are there");
}

fn sqlite(db: &Path, sql: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect({:?}); c.executescript({sql:?}); c.commit()",
            db.to_str().unwrap()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verify_audit_detects_a_changed_and_a_missing_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (server, creds) = start_dev(dir.path());
    let api = creds["apiUrl"].as_str().unwrap();
    let token = creds["token"].as_str().unwrap();
    for _ in 0..3 {
        let (st, body) = reqwest::get(&format!("{api}/v2/kms/classic"), Some(token)).unwrap();
        assert_eq!(st, 200, "{body}");
    }
    drop(server);

    let (ok, out, err) = admin(dir.path(), &["verify-audit"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], 3);

    let db = dir.path().join("keyplane.db");
    sqlite(
        &db,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'denied' WHERE seq = 2;",
    );
    let (ok, _, err) = admin(dir.path(), &["verify-audit"]);
    assert!(!ok);
    assert!(err.contains("entry 2") && err.contains("changed"), "{err}");

    sqlite(
        &db,
        "UPDATE audit_log SET outcome = 'success' WHERE seq = 2; DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;",
    );
    let (ok, _, err) = admin(dir.path(), &["verify-audit"]);
    assert!(!ok);
    assert!(err.contains("entry 2 is missing"), "{err}");
}

/// `serve --dev` prints a portal sign-in link that signs the browser in, once per start.
#[test]
fn dev_mode_prints_a_working_portal_sign_in_link() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let kms = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--kms-listen",
            &format!("127.0.0.1:{kms}"),
            "--azure-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut link = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("portal:") {
            link = Some(rest.trim().to_string());
            break;
        }
    }
    let link = link.expect("a portal line on stdout");
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{api}/portal/signin/dev?code=")),
        "{link}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wait_http(&format!("http://127.0.0.1:{api}/healthz")) {
        assert!(Instant::now() < deadline, "serve --dev did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = ::reqwest::Client::builder()
            .redirect(::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let res = c.get(&link).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 303);
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("kp_session="))
            .expect("a session cookie");
        let res = c
            .get(format!("http://127.0.0.1:{api}/portal/keys"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.text().await.unwrap().contains("Dev Organization"));
        // A tampered code signs nobody in.
        let bad = format!("{}0", &link[..link.len() - 1]);
        let bad = if bad == link {
            format!("{}1", &link[..link.len() - 1])
        } else {
            bad
        };
        assert_eq!(c.get(&bad).send().await.unwrap().status().as_u16(), 404);
    });
}
