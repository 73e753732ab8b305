//! The customer's side of the OpenBao tests: a real `bao server -dev` with Transit and
//! AppRole enabled, and a keyplane server whose OpenBao region is `local`, its OpenBao adapter
//! with short retries, and a sealing key.
use std::sync::Arc;
use std::time::Duration;

use keyplane_app::Config;
use keyplane_core::platform_jwt::PlatformJwtKey;
use keyplane_core::{Provider, SealingKey};
use keyplane_kms_openbao::{JwtSigner, OpenbaoConnector, OpenbaoSettings, RetrySettings};
use keyplane_testkit::BaoServer;
use serde_json::{Value, json};

use super::TestServer;

/// The platform's site the tests register OpenBao keys for.
pub const REGION: &str = "local";

pub fn config() -> Config {
    let mut c = Config {
        key_check_interval: Duration::from_millis(300),
        kms_grace_period: Duration::from_secs(3600),
        suspension_sync_interval: Duration::from_millis(100),
        worker_poll: Duration::from_millis(50),
        // Short, so that the files close and reopen (one unwrap each) within the test.
        data_key_ttl: Duration::from_secs(2),
        sealing_key: Some(SealingKey::generate()),
        ..Config::default()
    };
    c.catalog
        .insert(Provider::Openbao, vec![REGION.to_string()]);
    c
}

/// The OpenBao adapter as the binary wires it for `config`: short retries, and the JWT signing
/// key derived from its sealing key.
pub fn connector(config: &Config) -> Arc<dyn keyplane_kms::KmsConnector> {
    let jwt = config.sealing_key.as_ref().map(|k| {
        Arc::new(JwtSigner {
            key: PlatformJwtKey::derive(k).unwrap(),
        })
    });
    let settings = OpenbaoSettings {
        jwt,
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
        },
    };
    Arc::new(
        keyplane_kms::ServiceConnectors::new()
            .with(Provider::Openbao, Arc::new(OpenbaoConnector::new(settings))),
    )
}

pub async fn start() -> (BaoServer, TestServer) {
    let bao = BaoServer::start().await;
    bao.bao(&["secrets", "enable", "transit"]).await;
    bao.bao(&["auth", "enable", "approle"]).await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keyplane.db");
    let store = keyplane_store::open(db_path.to_str().unwrap())
        .await
        .unwrap();
    let config = config();
    let connector = connector(&config);
    let s = TestServer::with_store(store, config, dir, db_path, Some(connector)).await;
    (bao, s)
}

/// What keyplane's policy help says to run for `key`, run as printed; the role ID and a
/// secret ID (the last two commands' output).
pub async fn apply_policy_help(
    bao: &BaoServer,
    s: &TestServer,
    key: &str,
) -> (Value, String, String) {
    let (st, help) = s
        .get(
            &format!("/v2/kms/serverless/provider/openbao/region/{REGION}/policy?keyID={key}"),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{help}");
    let outputs = bao.run_help_commands(&help["openbao"]["commands"]).await;
    let n = outputs.len();
    (help, outputs[n - 2].clone(), outputs[n - 1].clone())
}

pub fn body(s: &TestServer, key: &str, role_id: &str, secret_id: &str) -> Value {
    json!({"orgId": s.org, "openbao": {"keyID": key, "region": REGION, "roleID": role_id, "secretID": secret_id}})
}
