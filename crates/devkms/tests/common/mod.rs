//! Test harness: a real devkms server on a loopback port and unmodified aws-sdk-kms clients.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use hmac::{Hmac, Mac};
use keyplane_devkms::{DevKms, DevKmsConfig};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

pub const REGION: &str = "us-east-2";
pub const ADMIN: &str = "arn:aws:iam::111111111111:user/admin";
pub const CREATOR: &str = "arn:aws:iam::222222222222:role/creator";
pub const CREATOR_SESSION: &str = "arn:aws:sts::222222222222:assumed-role/creator/keyplane";
pub const VOLUMES: &str = "arn:aws:iam::222222222222:role/keyplane-volumes";

pub struct Server {
    pub kms: DevKms,
    pub endpoint: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kms");
        let mut s = Server::start_in(&dir, true).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: &Path, allow_clock_control: bool) -> Server {
        let kms = DevKms::open(DevKmsConfig {
            data_dir: dir.to_path_buf(),
            extra_identities: vec![],
            allow_clock_control,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kms.clone().run(listener, async {
            let _ = rx.await;
        }));
        Server {
            kms,
            endpoint,
            dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and returns the temp dir guard so the data survives for a restart.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self._tmp.take()
    }

    pub fn client(&self, principal: &str) -> aws_sdk_kms::Client {
        let c = self
            .kms
            .credentials(principal)
            .unwrap_or_else(|| panic!("no identity {principal}"));
        self.client_with(&c.access_key_id, &c.secret_access_key)
    }

    pub fn client_with(&self, akid: &str, secret: &str) -> aws_sdk_kms::Client {
        client(&self.endpoint, akid, secret)
    }

    pub async fn advance_clock(&self, seconds: i64) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}/_admin/clock/advance", self.endpoint))
            .header("x-keyplane-admin-token", self.kms.admin_token())
            .body(format!("{{\"seconds\":{seconds}}}"))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Sends a hand-made, correctly signed request (for inputs the SDK would never send).
    pub async fn raw(&self, principal: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
        let c = self.kms.credentials(principal).unwrap();
        let now = chrono::Utc::now();
        raw_signed(
            &self.endpoint,
            &c.access_key_id,
            &c.secret_access_key,
            target,
            body,
            now,
        )
        .await
    }
}

pub fn client(endpoint: &str, akid: &str, secret: &str) -> aws_sdk_kms::Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(akid, secret, None, None, "devkms-test"))
        .endpoint_url(endpoint)
        .http_client(http)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A minimal SigV4 signer, independent of the server's verifier.
pub async fn raw_signed(
    endpoint: &str,
    akid: &str,
    secret: &str,
    target: &str,
    body: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> (u16, serde_json::Value) {
    let host = endpoint.trim_start_matches("http://");
    let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let payload_hash = hex::encode(Sha256::digest(body.as_bytes()));
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{target}\n\ncontent-type;host;x-amz-date;x-amz-target\n{payload_hash}"
    );
    let scope = format!("{date}/{REGION}/kms/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, REGION.as_bytes());
    let k = hmac(&k, b"kms");
    let k = hmac(&k, b"aws4_request");
    let sig = hex::encode(hmac(&k, sts.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}"
    );
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-date", amz_date)
        .header("x-amz-target", target)
        .header("authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The AWS error code of a failed SDK call (panics if it succeeded).
pub fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or("<no code>").to_string(),
    }
}

pub fn message<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.message().unwrap_or("").to_string(),
    }
}

pub const SEED_USE_ACTIONS: [&str; 8] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
];
pub const SEED_GRANT_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];

/// The customer's key policy from the seed document: IAM delegation for the key's account, the
/// platform role's use statement and its grant statement, with `missing` left out.
pub fn seed_policy(account: &str, principal: &str, missing: Option<&str>) -> String {
    let use_actions: Vec<&str> = SEED_USE_ACTIONS
        .iter()
        .copied()
        .filter(|a| Some(*a) != missing)
        .collect();
    let grant_actions: Vec<&str> = SEED_GRANT_ACTIONS
        .iter()
        .copied()
        .filter(|a| Some(*a) != missing)
        .collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-consolepolicy-3",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "Allow an external account to use this KMS key",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": use_actions,
                "Resource": "*"
            },
            {
                "Sid": "Allow attachment of persistent resources",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": grant_actions,
                "Resource": "*"
            }
        ]
    })
    .to_string()
}
