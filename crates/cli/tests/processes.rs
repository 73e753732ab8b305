//! One `keyplane serve` per data dir: a second one on the same SQLite data dir exits at start
//! with a message naming the first, and the lock goes with the first process however it
//! ends (kill -9 included). `--role data` is refused as not available yet; `--role api`
//! reports itself at `/readyz`.
#![cfg(unix)]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Proc, free_port, http_ok};

fn serve(data: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let (api, kms) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{api}")])
        .args(["--kms-listen", &format!("127.0.0.1:{kms}")])
        .args(["--azure-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{api}"))
}

fn wait_ready(url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(&format!("{url}/readyz")) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("serve exited during start ({status}):\n{err}");
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a process that must exit by itself; its exit code and standard error.
fn exit_of(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readyz(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(format!("{url}/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn a_second_serve_on_one_data_dir_is_refused_and_a_kill_9_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut first, url) = serve(&data, &[]);
    wait_ready(&url, &mut first);
    let ready = readyz(&url);
    assert_eq!(ready["role"], "all", "the default role: {ready}");
    let first_pid = first.id();

    let (second, second_url) = serve(&data, &[]);
    let (code, err) = exit_of(second);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("another `keyplane serve`"), "{err}");
    assert!(
        err.contains(&format!("pid {first_pid}")),
        "names the holder: {err}"
    );
    assert!(
        err.contains(&data.display().to_string()),
        "names the data dir: {err}"
    );
    assert!(err.contains("--data-dir"), "says what to do: {err}");
    assert!(
        !http_ok(&format!("{second_url}/healthz")),
        "the second never served"
    );
    assert!(
        http_ok(&format!("{url}/healthz")),
        "the first one is untouched"
    );

    // kill -9: the kernel drops the lock with the process; the next start takes it.
    {
        use std::os::unix::process::ExitStatusExt;
        first.kill().unwrap();
        assert_eq!(first.wait().unwrap().signal(), Some(9));
    }
    let (mut third, third_url) = serve(&data, &["--role", "api"]);
    wait_ready(&third_url, &mut third);
    let third = Proc(third);
    let ready = readyz(&third_url);
    assert_eq!(ready["role"], "api", "{ready}");
    assert!(
        ready["replicaId"]
            .as_str()
            .is_some_and(|id| id.contains(&format!("-{}-", third.0.id()))),
        "the replica ID names the process: {ready}"
    );
}

#[test]
fn serve_role_data_is_refused_as_not_yet_available() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, _) = serve(&tmp.path().join("data"), &["--role", "data"]);
    let (code, err) = exit_of(child);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("--role data is not available yet"), "{err}");
    assert!(
        !tmp.path().join("data").join("serve.lock").exists(),
        "refused before anything started"
    );
}
