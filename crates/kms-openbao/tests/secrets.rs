//! No secret the platform holds for a customer's OpenBao (role ID, secret ID, token) reaches a
//! log line, an error message or a Debug output, through success and every failure path:
//! every trace event is captured and searched for them.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Service tokens OpenBao issues: `s.` and 24 letters or digits.
fn find_token(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(26)).find_map(|i| {
        let candidate = &b[i..i + 26];
        (candidate.starts_with(b"s.")
            && candidate[2..].iter().all(|c| c.is_ascii_alphanumeric())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 26).is_none_or(|c| !c.is_ascii_alphanumeric()))
        .then(|| &text[i..i + 26])
    })
}

// A current-thread runtime: the subscriber set below sees every task, hyper's included.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_any_log_line_error_or_debug_output() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let c = Customer::new(BaoServer::start().await, "k", "aes256-gcm96", &[]).await;
    // What a platform token looks like, to prove the search finds one.
    let sample = c
        .bao(&["token", "create", "-field=token", "-policy=default"])
        .await;
    assert_eq!(
        find_token(&format!("x {} y", sample.trim())),
        Some(sample.trim())
    );

    let kms = c.platform();
    let key = c.key_id();
    let a = ctx(&[("org", "o1")]);
    let mut seen = Vec::new();
    let pair = kms.generate_data_key(&key, &a).await.unwrap();
    seen.push(format!("{pair:?} {kms:?} {:?}", c.access()));
    let ct = kms.encrypt(&key, b"x", &a).await.unwrap();
    // Failures of every kind, each printed as a caller would.
    let mut record = |e: KmsError| seen.push(format!("{e} {e:?}"));
    record(
        kms.decrypt(&key, &ct, &ctx(&[("org", "o2")]))
            .await
            .unwrap_err(),
    );
    c.bao(&["policy", "delete", &c.policy_name]).await;
    record(kms.decrypt(&key, &ct, &a).await.unwrap_err());
    c.bao
        .bao_stdin(&["policy", "write", &c.policy_name, "-"], &c.policy_hcl)
        .await;
    c.bao(&["token", "revoke", "-mode=path", "auth/approle/login"])
        .await;
    kms.decrypt(&key, &ct, &a).await.unwrap();
    assert_eq!(kms.session_stats().logins, 2);
    c.bao(&[
        "write",
        "auth/approle/role/keyplane/secret-id/destroy",
        &format!("secret_id={}", c.secret_id),
    ])
    .await;
    c.bao(&["token", "revoke", "-mode=path", "auth/approle/login"])
        .await;
    record(kms.decrypt(&key, &ct, &a).await.unwrap_err());
    c.bao.seal().await;
    record(kms.describe_key(&key).await.unwrap_err());

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("logged in to OpenBao"),
        "nothing was captured:\n{logs}"
    );
    let everything = format!("{logs}\n{}", seen.join("\n"));
    assert!(everything.contains("Credentials"), "{everything}");
    for (what, secret) in [("secret ID", &c.secret_id), ("role ID", &c.role_id)] {
        assert!(
            !everything.contains(secret.as_str()),
            "the {what} was printed:\n{everything}"
        );
    }
    assert_eq!(
        find_token(&everything),
        None,
        "a token was printed:\n{everything}"
    );
    assert!(!everything.contains(&c.bao.root_token));
}
