//! No secret reaches a log line or a `Debug` string: every log record of the adapter, the SDK,
//! the HTTP and TLS stacks and the built-in vault is captured at TRACE level while the platform
//! authenticates with its client secret and with a static token, succeeds and fails, and the
//! capture is searched for each secret and for the shape of every token the vault issues.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use azure_security_keyvault_keys::models::KeyType;
use common::{CSEU, Vault, ctx};
use keyplane_kms::KeyProvider;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_client_secret_or_token_in_logs_or_debug_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;

    let mut debug_strings = Vec::new();
    for credential in [v.client_secret(), v.static_token(), v.client_certificate()] {
        debug_strings.push(format!("{credential:?}"));
        let settings = v.settings(credential.clone());
        debug_strings.push(format!("{settings:?}"));
        let p = v.platform_with(credential);
        debug_strings.push(format!("{p:?}"));
        let dk = p.generate_data_key(&key, &ctx("org-1")).await.unwrap();
        debug_strings.push(format!("{dk:?}"));
        p.decrypt(&key, &dk.ciphertext, &ctx("org-1"))
            .await
            .unwrap();
        // Failures are logged by the application with the error's Display and Debug.
        let e = p
            .decrypt(&key, &dk.ciphertext, &ctx("org-2"))
            .await
            .unwrap_err();
        tracing::warn!(error = %e, debug = ?e, "decrypt refused");
        let e = p
            .describe_key(&format!("{}/keys/missing", v.url))
            .await
            .unwrap_err();
        tracing::warn!(error = %e, debug = ?e, "describe refused");
    }
    let wrong = keyplane_kms_azure::AzureCredentialConfig::ClientSecret {
        tenant_id: v.creds.tenant_id.clone(),
        client_id: v.creds.platform.client_id.clone(),
        client_secret: zeroize::Zeroizing::new("kpsecret.the-wrong-one".into()),
        authority_host: Some(v.url.clone()),
    };
    let e = v.platform_with(wrong).describe_key(&key).await.unwrap_err();
    tracing::warn!(error = %e, debug = ?e, "credentials refused");
    debug_strings.push(format!("{:?}", v.creds));
    let creds = v.creds.clone();
    let pem = v.platform_certificate_pem();
    v.stop().await;

    let log = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture saw the traffic: the challenge round trip and the token endpoint.
    assert!(log.contains("devkms azure request"), "nothing was captured");
    assert!(
        log.contains("status=401"),
        "the 401 challenge is not in the log"
    );
    assert!(
        log.contains("issued an access token"),
        "the token endpoint was not used"
    );
    // The certificate's private key, by its base64 body lines (any of them would be a leak).
    let key_block = pem.split("-----BEGIN PRIVATE KEY-----").nth(1).unwrap();
    let key_lines: Vec<&str> = key_block
        .lines()
        .filter(|l| l.len() > 40 && !l.starts_with("-----"))
        .collect();
    assert!(key_lines.len() > 10, "the PEM holds no PKCS#8 key");
    let secrets = [
        creds.platform.client_secret.as_str(),
        creds.platform.token.as_str(),
        creds.customer.token.as_str(),
        "kpsecret.the-wrong-one",
    ]
    .into_iter()
    .chain(key_lines);
    for s in secrets {
        assert!(!log.contains(s), "a secret is in the log");
        for d in &debug_strings {
            assert!(!d.contains(s), "a secret is in a Debug string: {d}");
        }
    }
    // Issued access tokens, dev tokens and client secrets have recognizable prefixes.
    for prefix in ["kpat.", "kpdev.", "kpsecret."] {
        assert!(
            !log.contains(prefix),
            "a {prefix}… credential is in the log"
        );
    }
}
