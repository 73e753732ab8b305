//! A real keyplane server on a loopback port for the tests, over a fresh SQLite store, with
//! keyplane's built-in KMS on another loopback port as the customers' KMS.
#![allow(dead_code)]

pub mod azure;
pub mod data;
pub mod gcp;
pub mod openbao;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_app::{App, Config};
use keyplane_core::{Provider, Role};
use keyplane_store::DynStore;
use serde_json::{Value, json};
use uuid::Uuid;

pub const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";
pub const PLATFORM_ROLE: &str = "arn:aws:iam::222222222222:role/creator";

/// The customer account's own statement (AWS's default key policy).
pub fn root_statement() -> Value {
    serde_json::json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"})
}

/// The platform role's statements bound to organization `org`, written out (not taken from
/// the code under test) as a customer pastes them: every use AWS gives an encryption context
/// only for the organization's, grants only carrying it, and the calls AWS gives no context
/// (DescribeKey, EnableKey, ListGrants, RevokeGrant) in statements of their own.
pub fn bound_statements(role: &str, org: Uuid) -> Vec<Value> {
    let only_org = serde_json::json!({"StringEquals": {"kms:EncryptionContext:organization": org.to_string()}});
    vec![
        serde_json::json!({"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
            "Principal": {"AWS": role},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                       "kms:ReEncryptTo", "kms:ReEncryptFrom"],
            "Resource": "*", "Condition": only_org}),
        serde_json::json!({"Sid": "Allow an external account to describe this KMS key", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:EnableKey", "kms:DescribeKey"], "Resource": "*"}),
        serde_json::json!({"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:CreateGrant"], "Resource": "*", "Condition": only_org}),
        serde_json::json!({"Sid": "Allow an external account to list and revoke its grants", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}),
    ]
}

/// The key policy of a key of organization `org`: the customer account's own statement, then
/// the platform role's statements bound to `org`.
pub fn full_policy(org: Uuid) -> Value {
    let mut statements = vec![root_statement()];
    statements.extend(bound_statements(PLATFORM_ROLE, org));
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

/// The seed document's key policy as keys were registered before the binding (written out):
/// the platform role may use the key for any organization.
pub fn seed_policy() -> Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [
        root_statement(),
        {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow", "Principal": {"AWS": PLATFORM_ROLE},
         "Action": ["kms:EnableKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom", "kms:DescribeKey"],
         "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow", "Principal": {"AWS": PLATFORM_ROLE},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]})
}

/// A key in the built-in KMS with [`full_policy`], registered as the organization's classic
/// key for `region` through the API; its ARN.
pub async fn register_key(s: &TestServer, region: &str) -> String {
    let kms = s.kms.customer(region);
    let key = kms
        .create_key()
        .policy(full_policy(s.org).to_string())
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            serde_json::json!({"orgId": s.org, "aws": {"keyID": arn, "region": region}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    arn
}

/// keyplane's built-in KMS on a loopback port.
pub struct TestKms {
    pub endpoint: String,
    pub kms: keyplane_devkms::DevKms,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestKms {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl TestKms {
    /// Stops serving: later calls find the port closed, as when the KMS is down.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn start() -> TestKms {
        Self::start_for(&Config::default()).await
    }

    /// The built-in KMS knowing every platform identity `config` names: a role (and the
    /// volume role) per AWS account, and each GCP service account (with no project of its
    /// own: it holds only what customers grant it).
    pub async fn start_for(config: &Config) -> TestKms {
        let dir = tempfile::tempdir().unwrap();
        let mut extra = Vec::new();
        for a in config.accounts(Provider::Aws) {
            for name in [a.role.as_str(), keyplane_kms_aws::DEFAULT_VOLUME_ROLE] {
                extra.push(keyplane_devkms::IdentityConfig {
                    account: a.id.clone(),
                    kind: keyplane_devkms::IdentityKind::Role,
                    name: name.to_string(),
                    access_key_id: None,
                    secret_access_key: None,
                });
            }
        }
        let kms = keyplane_devkms::DevKms::open(keyplane_devkms::DevKmsConfig {
            data_dir: dir.path().join("kms"),
            extra_identities: extra,
            allow_clock_control: true,
        })
        .unwrap();
        for a in config.accounts(Provider::Gcp) {
            let member = a.principal(Provider::Gcp);
            if kms.gcp_token(&member).is_none() {
                kms.add_gcp_identity(&member, &[]).unwrap();
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(kms.clone().run(listener, async move {
            let _ = rx.await;
        }));
        TestKms {
            endpoint,
            kms,
            _dir: dir,
            stop: Some(tx),
        }
    }

    /// The platform's side: keyplane acting as 222222222222's role through the AWS adapter.
    pub fn connector(&self) -> Arc<dyn keyplane_kms::KmsConnector> {
        self.connector_for(&Config::default())
    }

    /// The platform's side for every identity `config` names: the AWS adapter with each
    /// account's role credentials and the GCP adapter with each service account's token,
    /// behind the one connector the binary's wiring builds too.
    pub fn connector_for(&self, config: &Config) -> Arc<dyn keyplane_kms::KmsConnector> {
        let mut settings = keyplane_kms_aws::AwsSettings {
            endpoint_url: Some(self.endpoint.clone()),
            ..Default::default()
        };
        for a in config.accounts(Provider::Aws) {
            let creds = self
                .kms
                .credentials(&a.principal(Provider::Aws))
                .expect("platform role");
            settings.static_credentials.insert(
                a.id.clone(),
                keyplane_kms_aws::StaticCredentials {
                    access_key_id: creds.access_key_id.clone(),
                    secret_access_key: zeroize::Zeroizing::new(creds.secret_access_key.to_string()),
                    session_token: None,
                },
            );
        }
        let mut gcp = keyplane_kms_gcp::GcpSettings {
            endpoint: Some(self.endpoint.clone()),
            ..Default::default()
        };
        for a in config.accounts(Provider::Gcp) {
            let token = self
                .kms
                .gcp_token(&a.principal(Provider::Gcp))
                .expect("platform service account");
            gcp.credentials.insert(
                a.id.clone(),
                keyplane_kms_gcp::GcpCredentials::StaticToken(token),
            );
        }
        Arc::new(
            keyplane_kms::ServiceConnectors::new()
                .with(
                    Provider::Aws,
                    Arc::new(keyplane_kms_aws::AwsConnector::new(settings)),
                )
                .with(
                    Provider::Gcp,
                    Arc::new(keyplane_kms_gcp::GcpConnector::new(gcp)),
                ),
        )
    }

    /// The customer's side: an unmodified aws-sdk-kms client as 111111111111's admin.
    pub fn customer(&self, region: &str) -> aws_sdk_kms::Client {
        self.client_as(CUSTOMER, region)
    }

    /// A client as any identity of the built-in KMS.
    pub fn client_as(&self, principal: &str, region: &str) -> aws_sdk_kms::Client {
        let c = self.kms.credentials(principal).expect("identity");
        keyplane_testkit::kms_client(
            &self.endpoint,
            region,
            keyplane_testkit::credentials(&c.access_key_id, &c.secret_access_key.to_string()),
        )
    }
}

/// The platform's own keys (in its own account), as dev mode creates them.
pub async fn platform_keys(
    kms: &TestKms,
    regions: &[&str],
) -> std::collections::BTreeMap<String, keyplane_app::PlatformKey> {
    let mut out = std::collections::BTreeMap::new();
    for r in regions {
        let c = kms.client_as(PLATFORM_ROLE, r);
        let k = c
            .create_key()
            .description("platform key")
            .send()
            .await
            .unwrap();
        out.insert(
            r.to_string(),
            keyplane_app::PlatformKey {
                key_id: k.key_metadata().unwrap().arn().unwrap().to_string(),
                account: "222222222222".into(),
            },
        );
    }
    out
}

/// The application with the binary's webhook sender, as `keyplane serve` wires it.
fn with_webhooks(app: App) -> App {
    let sender = keyplane_server::webhook_sender::HttpWebhookSender::new(&app.config.webhooks)
        .expect("webhook sender");
    app.with_webhook_sender(Arc::new(sender))
}

pub struct TestServer {
    pub app: App,
    pub data_dir: std::path::PathBuf,
    pub kms: TestKms,
    pub url: String,
    pub store: DynStore,
    pub client: reqwest::Client,
    pub org: Uuid,
    pub admin: String,
    pub db_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> TestServer {
        Self::build(config, None).await
    }

    /// With another KMS than the built-in one (e.g. moto).
    pub async fn with_connector(connector: Arc<dyn keyplane_kms::KmsConnector>) -> TestServer {
        Self::build(Config::default(), Some(connector)).await
    }

    async fn build(
        config: Config,
        connector: Option<Arc<dyn keyplane_kms::KmsConnector>>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("keyplane.db");
        let store = keyplane_store::open(db_path.to_str().unwrap())
            .await
            .unwrap();
        Self::with_store(store, config, dir, db_path, connector).await
    }

    pub async fn with_store(
        store: DynStore,
        config: Config,
        dir: tempfile::TempDir,
        db_path: std::path::PathBuf,
        connector: Option<Arc<dyn keyplane_kms::KmsConnector>>,
    ) -> TestServer {
        Self::with_store_wrapped(store, config, dir, db_path, connector, |c| c).await
    }

    /// With the built-in KMS's connector seen through `wrap` (e.g. [`CountingConnector`]).
    pub async fn with_wrapped_kms(
        config: Config,
        wrap: impl FnOnce(Arc<dyn keyplane_kms::KmsConnector>) -> Arc<dyn keyplane_kms::KmsConnector>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("keyplane.db");
        let store = keyplane_store::open(db_path.to_str().unwrap())
            .await
            .unwrap();
        Self::with_store_wrapped(store, config, dir, db_path, None, wrap).await
    }

    async fn with_store_wrapped(
        store: DynStore,
        config: Config,
        dir: tempfile::TempDir,
        db_path: std::path::PathBuf,
        connector: Option<Arc<dyn keyplane_kms::KmsConnector>>,
        wrap: impl FnOnce(Arc<dyn keyplane_kms::KmsConnector>) -> Arc<dyn keyplane_kms::KmsConnector>,
    ) -> TestServer {
        let kms = TestKms::start_for(&config).await;
        let connector = wrap(connector.unwrap_or_else(|| kms.connector_for(&config)));
        let mut config = config;
        config.data_dir = dir.path().to_path_buf();
        if config.platform_keys.is_empty() {
            let keys = platform_keys(&kms, &["us-east-2", "eu-west-1", "us-west-2"]).await;
            config.platform_keys.insert(Provider::Aws, keys);
        }
        let org = store.create_org("Acme", None).await.unwrap().id;
        let (token, _) =
            keyplane_app::tokens::issue_token(store.as_ref(), org, &Role::OrgAdmin, "test")
                .await
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = with_webhooks(App::new(store.clone(), config, connector));
        let (bg_tx, bg_rx) = tokio::sync::watch::channel(false);
        app.spawn_background(bg_rx);
        tokio::spawn(keyplane_server::run(listener, app.clone(), async move {
            let _ = rx.await;
            let _ = bg_tx.send(true);
        }));
        TestServer {
            app,
            data_dir: dir.path().to_path_buf(),
            kms,
            url,
            store,
            client: reqwest::Client::new(),
            org,
            admin: token.expose().to_string(),
            db_path,
            _dir: dir,
            stop: Some(tx),
        }
    }

    /// Another server over this one's store file, as a second process would run it: its own
    /// store connections, application (nothing in memory shared) and port, the same KMS.
    /// Dropping it stops it, as a restart would.
    pub async fn replica(&self, config: Config) -> Replica {
        let store = keyplane_store::open(self.db_path.to_str().unwrap())
            .await
            .unwrap();
        let mut config = config;
        config.data_dir = self.data_dir.clone();
        config.platform_keys = self.app.config.platform_keys.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = with_webhooks(App::new(store, config, self.kms.connector()));
        let (bg_tx, bg_rx) = tokio::sync::watch::channel(false);
        app.spawn_background(bg_rx);
        let server = tokio::spawn(keyplane_server::run(listener, app.clone(), async move {
            let _ = rx.await;
            let _ = bg_tx.send(true);
        }));
        Replica {
            url,
            app,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// A token of `org` with `role`.
    pub async fn token(&self, org: Uuid, role: Role) -> String {
        let (t, _) = keyplane_app::tokens::issue_token(self.store.as_ref(), org, &role, "test")
            .await
            .unwrap();
        t.expose().to_string()
    }

    pub fn req(&self, method: &str, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut b = self.client.request(m, format!("{}{}", self.url, path));
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        b
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req("GET", path, Some(token))).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(self.req("POST", path, Some(token)).json(&body)).await
    }
}

/// A real connector that counts the key providers handed out: every use of a key by the
/// application (a data key unwrapped, a check, a status read) asks for one first, so a count
/// that does not move means keyplane made no call to any key.
pub struct CountingConnector {
    pub inner: Arc<dyn keyplane_kms::KmsConnector>,
    pub connects: Arc<std::sync::atomic::AtomicUsize>,
}

impl keyplane_kms::KmsConnector for CountingConnector {
    fn connect(
        &self,
        identity: &keyplane_kms::PlatformIdentity,
    ) -> keyplane_kms::Result<Arc<dyn keyplane_kms::KeyProvider>> {
        self.connects
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.connect(identity)
    }

    fn volume_grantee(&self, identity: &keyplane_kms::PlatformIdentity) -> String {
        self.inner.volume_grantee(identity)
    }
}

/// A second server on a [`TestServer`]'s store.
pub struct Replica {
    pub url: String,
    pub app: App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Replica {
    /// Stops serving and waits until the port is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Sends and returns status and JSON body; asserts a JSON body whenever there is one.
pub async fn send(b: reqwest::RequestBuilder) -> (u16, Value) {
    let res = b.send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// Asserts the API's error body: exactly `{"errors":[{"ID":<int>,"message":"…"}]}`.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_id: u64) -> String {
    assert_eq!(status, want_status, "body: {body}");
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    let e = errors[0].as_object().unwrap();
    assert_eq!(e.len(), 2, "error item has exactly ID and message: {body}");
    assert_eq!(e["ID"].as_u64(), Some(want_id), "{body}");
    let msg = e["message"].as_str().unwrap().to_string();
    assert!(msg.len() > 10, "message says what is wrong: {body}");
    msg
}

/// Creates a classic database (keyspace "shop", AWS, tier C10) in `region` as the admin; its ID.
/// A key in the customer's KMS (us-east-2) whose policy lets the organization in, not
/// registered.
pub async fn unregistered_key(s: &TestServer) -> String {
    let key = s
        .kms
        .customer("us-east-2")
        .create_key()
        .policy(full_policy(s.org).to_string())
        .send()
        .await
        .unwrap();
    key.key_metadata().unwrap().arn().unwrap().to_string()
}

/// Asks, with `token`, to replace the classic AWS key of us-east-2 by `arn` in `region` (a
/// region other than the route's is refused).
pub async fn replace(s: &TestServer, token: &str, arn: &str, region: &str) -> (u16, Value) {
    let body = json!({"orgId": s.org, "aws": {"keyID": arn, "region": region}});
    let path = "/v2/kms/classic/provider/aws/region/us-east-2";
    send(s.req("PUT", path, Some(token)).json(&body)).await
}

pub async fn create_db(s: &TestServer, name: &str, region: &str) -> String {
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(
            &json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                      "capacityUnits": 1, "region": region}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    loc.rsplit('/').next().unwrap().to_string()
}

/// Polls the database until its status is `want` (30 s at most); its last view.
pub async fn wait_status(s: &TestServer, db: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, body) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        assert_eq!(st, 200, "{body}");
        if body["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "database never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
