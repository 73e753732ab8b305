//! The registration's live check against moto, a public AWS emulator: proves the AWS adapter
//! speaks the real wire protocol (grant constraints included), not just keyplane's own KMS.
//! moto enforces no key policy, so its keys let the platform act for any organization: every
//! call of the check passes and the binding check then refuses the key, as it must refuse
//! any key that cannot prove it serves one organization only.
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_server() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|c| c.exists())
    });
    found.unwrap_or_else(|| {
        panic!("moto_server not found in .venv/bin or PATH: run scripts/setup-test-deps")
    })
}

async fn start_moto() -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Moto(child), url)
}

#[tokio::test]
async fn registration_runs_every_call_against_moto_and_refuses_the_unbound_key() {
    let (_moto, endpoint) = start_moto().await;
    let mut settings = keyplane_kms_aws::AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        ..Default::default()
    };
    settings.static_credentials.insert(
        "222222222222".into(),
        keyplane_kms_aws::StaticCredentials {
            access_key_id: "AKIDMOTO".into(),
            secret_access_key: zeroize::Zeroizing::new("moto".into()),
            session_token: None,
        },
    );
    let s = TestServer::with_connector(std::sync::Arc::new(keyplane_kms_aws::AwsConnector::new(
        settings,
    )))
    .await;

    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-2"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "AKIDMOTO", "moto", None, None, "test",
        ))
        .endpoint_url(&endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let customer = aws_sdk_kms::Client::from_conf(conf);
    let key = customer
        .create_key()
        .description("moto key")
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();

    let body = json!({"orgId": s.org, "aws": {"keyID": arn, "region": "us-east-2"}});
    let (st, refused) = s.post("/v2/kms/classic", &s.admin, body).await;
    let msg = common::assert_error(st, &refused, 422, 4220);
    // Every earlier call (DescribeKey … the constrained CreateGrant, ListGrants, RevokeGrant)
    // went through moto's wire protocol; only the binding failed.
    assert!(msg.contains("use the key for any organization"), "{msg}");
    assert!(
        msg.contains(&format!(
            r#""kms:EncryptionContext:organization":"{}""#,
            s.org
        )),
        "{msg}"
    );
    let (st, list) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(st, 200);
    assert_eq!(list, json!([]));
    // The audit log shows the check got as far as the binding.
    let entries = s.store.list_audit(s.org, None, 10).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.reason.contains("use the key for any organization")),
        "{entries:?}"
    );
    // The live check left no grant on moto's key either.
    let grants = customer.list_grants().key_id(&arn).send().await.unwrap();
    assert!(grants.grants().is_empty());
}
