//! Test harness: a real devkms server on a loopback port (from `keyplane-testkit`) and
//! unmodified aws-sdk-kms clients, plus what only devkms's own tests need: its admin routes,
//! hand-signed requests and short forms of the SDK calls they repeat.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::operation::encrypt::builders::EncryptFluentBuilder;
use aws_sdk_kms::primitives::Blob;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use keyplane_testkit::{
    ADMIN, CREATOR, DevKmsServer, REGION, SEED_GRANT_ACTIONS, SEED_USE_ACTIONS, VOLUMES,
    kms_client, new_key_arn, new_key_id, seed_policy,
};

/// The sample customer's account, which owns the test keys.
pub const CUSTOMER_ACCOUNT: &str = keyplane_devkms::CUSTOMER_ACCOUNT;
pub const CREATOR_SESSION: &str = "arn:aws:sts::222222222222:assumed-role/creator/keyplane";

/// Moves the server's clock forward (needs a server started with clock control).
pub async fn advance_clock(s: &DevKmsServer, seconds: i64) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{}/_admin/clock/advance", s.endpoint))
        .header("x-keyplane-admin-token", s.kms.admin_token())
        .body(format!("{{\"seconds\":{seconds}}}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends a hand-made, correctly signed request as `principal` (for inputs the SDK would never
/// send).
pub async fn raw(
    s: &DevKmsServer,
    principal: &str,
    target: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let c = s.kms.credentials(principal).unwrap();
    raw_signed(
        &s.endpoint,
        &c.access_key_id,
        &c.secret_access_key,
        target,
        body,
        chrono::Utc::now(),
    )
    .await
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

/// The AWS error code and message of a failed SDK call, from one request (panics if it
/// succeeded).
pub fn error_of<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> (String, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => (
            e.code().unwrap_or("<no code>").to_string(),
            e.message().unwrap_or("").to_string(),
        ),
    }
}

/// The AWS error code of a failed SDK call (panics if it succeeded).
pub fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> String {
    error_of(r).0
}

/// Asserts that an SDK call failed with the AWS error code `want`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
    want: &str,
) {
    assert_eq!(code(r), want);
}

pub fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An Encrypt request for `plaintext` under `key`, to send as is or to add to.
pub fn encrypt(client: &aws_sdk_kms::Client, key: &str, plaintext: &[u8]) -> EncryptFluentBuilder {
    client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(plaintext.to_vec()))
}

/// Encrypts `plaintext` under `key` with no encryption context; returns the ciphertext.
pub async fn ciphertext(client: &aws_sdk_kms::Client, key: &str, plaintext: &[u8]) -> Blob {
    encrypt(client, key, plaintext)
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .expect("Encrypt answered without a CiphertextBlob")
}

/// Decrypts a ciphertext made without encryption context; returns the plaintext.
pub async fn decrypt(client: &aws_sdk_kms::Client, ciphertext: &Blob) -> Vec<u8> {
    client
        .decrypt()
        .ciphertext_blob(ciphertext.clone())
        .send()
        .await
        .unwrap()
        .plaintext
        .expect("Decrypt answered without a Plaintext")
        .into_inner()
}

/// Replaces the key policy of `key` (PutKeyPolicy must succeed).
pub async fn put_policy(client: &aws_sdk_kms::Client, key: &str, policy: impl Into<String>) {
    client
        .put_key_policy()
        .key_id(key)
        .policy(policy)
        .send()
        .await
        .unwrap();
}

/// The customer's seed policy for the platform role `role/creator`, complete.
pub fn creator_policy() -> String {
    seed_policy(CUSTOMER_ACCOUNT, CREATOR, None)
}

/// [`creator_policy`] changed by `edit` (a statement added, a condition set, ...).
pub fn creator_policy_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut p: serde_json::Value = serde_json::from_str(&creator_policy()).unwrap();
    edit(&mut p);
    p.to_string()
}
