//! `keyplane login`/`logout` against a real `serve --dev`: the token is checked, saved owner-only
//! in the user config and never printed; every API command falls back to it after its flags and
//! the environment, and sends it only to the URL it was saved for.
#![cfg(unix)]
mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{Customer, serve_dev};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_saves_a_checked_token_that_every_api_command_falls_back_to() {
    // The server runs in one directory; the customer works in another, without its
    // dev-credentials file, so only what login saved tells the commands where to go.
    let host = Customer::new();
    let (_server, creds) = serve_dev(&host);
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let token = creds["token"].as_str().unwrap().to_string();
    let secret = token.rsplit(':').next().unwrap().to_string();
    let client_id = token.split(':').nth(1).unwrap().to_string();
    let me = Customer::new();

    let before = me.run(&["db", "list"]);
    assert_eq!(before.code, Some(1));
    assert!(before.stderr.contains("no API URL"), "{before:?}");
    assert!(before.stderr.contains("keyplane login"), "{before:?}");

    // A well-formed token the server does not know is refused, and nothing is saved.
    let wrong = format!("AstraCS:{client_id}:{}", "0".repeat(64));
    let refused = me.run(&["login", "--api-url", &api, "--token", &wrong]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("refused the token"), "{refused:?}");
    assert!(!me.config_file().exists());
    let malformed = me.run(&["login", "--api-url", &api, "--token", "hunter2"]);
    assert_eq!(malformed.code, Some(1));
    assert!(
        malformed.stderr.contains("not an application token"),
        "{malformed:?}"
    );
    assert!(!malformed.stderr.contains("hunter2"), "{malformed:?}");

    // The token read from standard input, checked, saved 0600 in a 0700 directory.
    let mut child = me
        .command()
        .args(["login", "--api-url", &format!("{api}/"), "--token", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let login = common::Run::of(child.wait_with_output().unwrap());
    login.ok();
    assert!(login.stdout.contains(&client_id), "{login:?}");
    assert!(login.stdout.contains("Dev Organization"), "{login:?}");
    for out in [&login.stdout, &login.stderr] {
        assert!(!out.contains(&secret), "the token was printed: {login:?}");
    }
    let file = me.config_file();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(&token) && saved.contains(&api), "{saved}");

    // Every API command reads it.
    let listed = me.run(&["db", "list", "--output", "json"]);
    assert_eq!(listed.ok().json(), serde_json::json!([]));
    me.run(&["key", "list"]).ok();
    let policy = me.run(&["key", "policy", "--region", "us-east-2"]);
    assert_eq!(policy.ok().json()["providerId"], "222222222222");

    // Flags and the environment come first.
    let bad_flag = me.run(&["db", "list", "--token", &wrong]);
    assert_eq!(bad_flag.code, Some(1));
    assert!(bad_flag.stderr.contains("401"), "{bad_flag:?}");
    let bad_env = me
        .command()
        .args(["db", "list"])
        .env("KEYPLANE_TOKEN", &wrong)
        .output()
        .unwrap();
    let bad_env = common::Run::of(bad_env);
    assert_eq!(bad_env.code, Some(1));
    assert!(bad_env.stderr.contains("401"), "{bad_env:?}");

    // An explicit --credentials-file comes before the saved login too (the test suites'
    // scripts pass serve --dev's file explicitly); here it holds a token the server refuses.
    let other = me.cwd().join("other-credentials.json");
    std::fs::write(
        &other,
        serde_json::json!({"apiUrl": api, "token": wrong}).to_string(),
    )
    .unwrap();
    let explicit = me.run(&["db", "list", "--credentials-file", other.to_str().unwrap()]);
    assert_eq!(explicit.code, Some(1));
    assert!(explicit.stderr.contains("401"), "{explicit:?}");
    let host_file = host.cwd().join("keyplane-data/dev-credentials.json");
    me.run(&[
        "key",
        "list",
        "--credentials-file",
        host_file.to_str().unwrap(),
    ])
    .ok();

    // The saved token goes only to the URL it was saved for.
    let elsewhere = me.run(&["db", "list", "--api-url", "http://127.0.0.1:9"]);
    assert_eq!(elsewhere.code, Some(1));
    assert!(
        elsewhere.stderr.contains("no token for http://127.0.0.1:9"),
        "{elsewhere:?}"
    );

    // A config others can read draws a warning.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = me.run(&["db", "list"]);
    assert!(
        warned.ok().stderr.contains("readable by others"),
        "{warned:?}"
    );

    // Logout forgets it; a second logout says there was nothing.
    let out = me.run(&["logout"]);
    assert!(out.ok().stdout.contains("removed"), "{out:?}");
    assert!(!file.exists());
    let again = me.run(&["logout"]);
    assert!(again.ok().stdout.contains("Not logged in"), "{again:?}");
    let after = me.run(&["db", "list"]);
    assert_eq!(after.code, Some(1));
    assert!(after.stderr.contains("no API URL"), "{after:?}");
}

#[test]
fn without_xdg_config_home_the_login_lives_under_home() {
    let host = Customer::new();
    let (_server, creds) = serve_dev(&host);
    let me = Customer::new();
    let out = me
        .command()
        .env_remove("XDG_CONFIG_HOME")
        .args([
            "login",
            "--api-url",
            creds["apiUrl"].as_str().unwrap(),
            "--token",
            creds["token"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    common::Run::of(out).ok();
    let file = me.cwd().join("home/.config/keyplane/config.toml");
    assert_eq!(mode(&file), 0o600);
    let listed = me
        .command()
        .env_remove("XDG_CONFIG_HOME")
        .args(["key", "list"])
        .output()
        .unwrap();
    common::Run::of(listed).ok();
}
