//! The customer's side of Google Cloud KMS in the server tests: Google's own Rust client
//! (`google-cloud-kms-v1`, REST) acting as the built-in KMS's sample customer, which owns
//! project `customer-project`.
#![allow(dead_code)]

use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, KeyRing};
use keyplane_kms_gcp::GcpCredentials;

pub use keyplane_core::policy::gcp::{ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE};
// Not every test binary that includes `common` names each of these.
#[allow(unused_imports)]
pub use keyplane_devkms::{GCP_CUSTOMER, GCP_CUSTOMER_PROJECT, GCP_PLATFORM};

use super::TestKms;

/// The customer's key names in `customer-project`.
pub fn key_name(location: &str, ring: &str, key: &str) -> String {
    format!("projects/{GCP_CUSTOMER_PROJECT}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}")
}

/// Google's client acting as `member`, a built-in identity.
pub async fn client_as(kms: &TestKms, member: &str) -> KeyManagementService {
    let token = kms
        .kms
        .gcp_token(member)
        .unwrap_or_else(|| panic!("no identity {member}"));
    let creds = GcpCredentials::StaticToken(token)
        .to_client_credentials("test")
        .unwrap();
    KeyManagementService::builder()
        .with_endpoint(kms.endpoint.clone())
        .with_credentials(creds)
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .unwrap()
}

/// The customer: owns `customer-project`.
pub async fn customer(kms: &TestKms) -> KeyManagementService {
    client_as(kms, GCP_CUSTOMER).await
}

/// Creates key ring `ring` (if missing) and symmetric key `key` in `location`; its name.
pub async fn new_key(c: &KeyManagementService, location: &str, ring: &str, key: &str) -> String {
    let parent = format!("projects/{GCP_CUSTOMER_PROJECT}/locations/{location}");
    let ring_name = format!("{parent}/keyRings/{ring}");
    if c.get_key_ring().set_name(&ring_name).send().await.is_err() {
        c.create_key_ring()
            .set_parent(&parent)
            .set_key_ring_id(ring)
            .set_key_ring(KeyRing::new())
            .send()
            .await
            .unwrap();
    }
    c.create_crypto_key()
        .set_parent(&ring_name)
        .set_crypto_key_id(key)
        .set_crypto_key(CryptoKey::new().set_purpose(CryptoKeyPurpose::EncryptDecrypt))
        .send()
        .await
        .unwrap()
        .name
}

/// The key's IAM policy with `members` given `roles` (each role's binding replaced), written
/// back with the etag read (read-modify-write, as gcloud does).
pub async fn set_bindings(c: &KeyManagementService, key: &str, roles: &[(&str, Vec<String>)]) {
    let current = c.get_iam_policy().set_resource(key).send().await.unwrap();
    let mut bindings: Vec<Binding> = current
        .bindings
        .into_iter()
        .filter(|b| !roles.iter().any(|(r, _)| *r == b.role))
        .collect();
    for (role, members) in roles {
        if !members.is_empty() {
            bindings.push(Binding::new().set_role(*role).set_members(members.clone()));
        }
    }
    c.set_iam_policy()
        .set_resource(key)
        .set_policy(Policy::new().set_bindings(bindings).set_etag(current.etag))
        .send()
        .await
        .unwrap();
}

/// Grants `members` (IAM members) both roles keyplane needs, as the policy help says.
pub async fn grant(c: &KeyManagementService, key: &str, members: &[String]) {
    set_bindings(
        c,
        key,
        &[
            (ENCRYPTER_DECRYPTER_ROLE, members.to_vec()),
            (VIEWER_ROLE, members.to_vec()),
        ],
    )
    .await;
}

/// The key's IAM policy as getIamPolicy returns it, as JSON (what a customer pastes).
pub async fn iam_policy_json(kms: &TestKms, key: &str) -> serde_json::Value {
    let token = kms.kms.gcp_token(GCP_CUSTOMER).unwrap();
    let res = reqwest::Client::new()
        .get(format!("{}/v1/{key}:getIamPolicy", kms.endpoint))
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub async fn set_version_state(
    c: &KeyManagementService,
    version: &str,
    state: CryptoKeyVersionState,
) {
    c.update_crypto_key_version()
        .set_crypto_key_version(CryptoKeyVersion::new().set_name(version).set_state(state))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await
        .unwrap();
}

pub async fn disable(c: &KeyManagementService, version: &str) {
    set_version_state(c, version, CryptoKeyVersionState::Disabled).await;
}

pub async fn enable(c: &KeyManagementService, version: &str) {
    set_version_state(c, version, CryptoKeyVersionState::Enabled).await;
}

/// The key's primary version's name.
pub async fn primary(c: &KeyManagementService, key: &str) -> String {
    c.get_crypto_key()
        .set_name(key)
        .send()
        .await
        .unwrap()
        .primary
        .expect("a primary version")
        .name
}

/// A new version made primary (gcloud's `versions create --primary`); its name.
pub async fn rotate(c: &KeyManagementService, key: &str) -> String {
    let v = c
        .create_crypto_key_version()
        .set_parent(key)
        .set_crypto_key_version(CryptoKeyVersion::new())
        .send()
        .await
        .unwrap();
    let id = v.name.rsplit('/').next().unwrap().to_string();
    c.update_crypto_key_primary_version()
        .set_name(key)
        .set_crypto_key_version_id(id)
        .send()
        .await
        .unwrap();
    v.name
}
