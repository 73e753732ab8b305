//! What the data benchmarks share: a keyplane server on a loopback port with the built-in
//! KMS as the customer's and the platform's, a customer key registered in us-east-2 and
//! eu-west-1, and one customer-keyed database in us-east-2, ACTIVE.
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_app::{App, Config};
use keyplane_core::Role;
use keyplane_store::DynStore;
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::222222222222:role/creator";
const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub state: App,
    pub store: DynStore,
    pub url: String,
    pub token: String,
    /// The us-east-2 datacenter of the database "bench".
    pub dc_id: String,
}

/// Starts it all; `tune` adjusts the server's configuration.
pub async fn start(tune: impl FnOnce(&mut Config)) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = keyplane_devkms::DevKms::open(keyplane_devkms::DevKmsConfig {
        data_dir: dir.path().join("kms"),
        extra_identities: vec![],
        allow_clock_control: false,
    })
    .expect("kms");
    let kl = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", kl.local_addr().expect("addr"));
    tokio::spawn(kms.clone().run(kl, std::future::pending()));
    let client_in = |principal: &str, region: &str| {
        let c = kms.credentials(principal).expect("identity");
        keyplane_testkit::kms_client(
            &endpoint,
            region,
            keyplane_testkit::credentials(&c.access_key_id, &c.secret_access_key.to_string()),
        )
    };
    let platform = kms.credentials(ROLE).expect("platform");
    let mut settings = keyplane_kms_aws::AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        ..Default::default()
    };
    settings.static_credentials.insert(
        "222222222222".into(),
        keyplane_kms_aws::StaticCredentials {
            access_key_id: platform.access_key_id.clone(),
            secret_access_key: zeroize::Zeroizing::new(platform.secret_access_key.to_string()),
            session_token: None,
        },
    );
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        worker_poll: Duration::from_millis(20),
        key_check_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    tune(&mut config);
    let store = keyplane_store::open(dir.path().join("kp.db").to_str().expect("path"))
        .await
        .expect("store");
    let state = App::new(
        store.clone(),
        config,
        Arc::new(keyplane_kms_aws::AwsConnector::new(settings)),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    state.spawn_background(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(keyplane_server::run(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    // A customer key, registered, and a database deployed under it.
    let org = store.create_org("bench", None).await.expect("org");
    let (token, _) =
        keyplane_app::tokens::issue_token(store.as_ref(), org.id, &Role::OrgAdmin, "bench")
            .await
            .expect("token");
    let token = token.expose().to_string();
    // The platform role may use the key only for this organization, as registration requires.
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:organization": org.id.to_string()}}},
        {"Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": ["kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]});
    let http = reqwest::Client::new();
    // us-east-2 for every database, eu-west-1 for the second region of the two-region part.
    for region in ["us-east-2", "eu-west-1"] {
        let key = client_in(CUSTOMER, region)
            .create_key()
            .policy(policy.to_string())
            .send()
            .await
            .expect("key");
        let arn = key
            .key_metadata()
            .and_then(|m| m.arn())
            .expect("arn")
            .to_string();
        let r = http
            .post(format!("{url}/v2/kms/classic"))
            .bearer_auth(&token)
            .json(&json!({"orgId": org.id, "aws": {"keyID": arn, "region": region}}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }
    let r = http
        .post(format!("{url}/v2/databases"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}))
        .send()
        .await
        .expect("create");
    let db: Value = r.json().await.expect("json");
    let dc_id = format!("{}-1", db["id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dc = store.get_datacenter(&dc_id).await.expect("dc").expect("dc");
        if dc.status == keyplane_core::DatabaseStatus::Active {
            break;
        }
        assert!(Instant::now() < deadline, "never ACTIVE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Bench {
        dir,
        state,
        store,
        url,
        token,
        dc_id,
    }
}
