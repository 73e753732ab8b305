//! The GCP adapter's test harness: keyplane's built-in KMS in-process on a free port (from
//! `keyplane-testkit`), the customer acting on it with Google's own Rust client, and the
//! platform acting through [`GcpConnector`].
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, KeyRing};
use keyplane_core::Provider;
use keyplane_core::policy::gcp::{ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE};
use keyplane_kms::PlatformIdentity;
use keyplane_kms_gcp::{GcpConnector, GcpCredentials, GcpKeyProvider, GcpSettings, RetrySettings};
use zeroize::Zeroizing;

pub use keyplane_devkms::{GCP_CUSTOMER, GCP_CUSTOMER_PROJECT, GCP_PLATFORM};
pub use keyplane_testkit::DevKmsServer;

pub const REGION: &str = "us-east1";
/// The platform's service account email (the identity's principal).
pub const PLATFORM_EMAIL: &str = "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";

pub fn fast_retries() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        attempt_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(15),
    }
}

fn token_credentials(token: &str) -> google_cloud_auth::credentials::Credentials {
    GcpCredentials::StaticToken(Zeroizing::new(token.to_string()))
        .to_client_credentials("test")
        .unwrap()
}

/// Google's Rust client acting as `member` (a built-in identity) against the server.
pub async fn client_as(s: &DevKmsServer, member: &str) -> KeyManagementService {
    let token = s
        .kms
        .gcp_token(member)
        .unwrap_or_else(|| panic!("no identity {member}"));
    KeyManagementService::builder()
        .with_endpoint(s.endpoint.clone())
        .with_credentials(token_credentials(&token))
        .with_retry_policy(NeverRetry)
        .build()
        .await
        .unwrap()
}

pub async fn customer(s: &DevKmsServer) -> KeyManagementService {
    client_as(s, GCP_CUSTOMER).await
}

pub fn identity(region: &str) -> PlatformIdentity {
    PlatformIdentity {
        provider: Provider::Gcp,
        region: region.to_string(),
        account_id: PLATFORM_EMAIL.to_string(),
        principal: PLATFORM_EMAIL.to_string(),
    }
}

pub fn connector(endpoint: &str, token: &str, retry: RetrySettings) -> GcpConnector {
    let mut settings = GcpSettings {
        endpoint: Some(endpoint.to_string()),
        retry,
        ..GcpSettings::default()
    };
    settings.credentials.insert(
        PLATFORM_EMAIL.to_string(),
        GcpCredentials::StaticToken(Zeroizing::new(token.to_string())),
    );
    GcpConnector::new(settings)
}

/// The adapter acting as the platform's service account in `region`.
pub fn platform(s: &DevKmsServer, region: &str) -> Arc<GcpKeyProvider> {
    let token = s.kms.gcp_token(GCP_PLATFORM).unwrap();
    connector(&s.endpoint, &token, fast_retries())
        .provider(&identity(region))
        .unwrap()
}

/// Creates key ring `ring` (if missing) and symmetric key `key` in it, as the customer, in
/// `location`; returns the key's name.
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

/// Replaces the key's IAM policy with one binding per role for `member` (read-modify-write
/// with the etag, as gcloud does).
pub async fn set_roles(c: &KeyManagementService, key: &str, member: &str, roles: &[&str]) {
    let current = c.get_iam_policy().set_resource(key).send().await.unwrap();
    let bindings: Vec<Binding> = roles
        .iter()
        .map(|r| Binding::new().set_role(*r).set_members([member]))
        .collect();
    c.set_iam_policy()
        .set_resource(key)
        .set_policy(Policy::new().set_bindings(bindings).set_etag(current.etag))
        .send()
        .await
        .unwrap();
}

/// What the customer is told to grant: both roles to the platform's service account.
pub async fn grant_platform(c: &KeyManagementService, key: &str) {
    set_roles(
        c,
        key,
        GCP_PLATFORM,
        &[ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE],
    )
    .await;
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

/// Creates a new version and makes it primary (gcloud's `versions create --primary`).
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

pub async fn advance_clock(s: &DevKmsServer, seconds: i64) {
    let status = reqwest::Client::new()
        .post(format!("{}/_admin/clock/advance", s.endpoint))
        .header("x-keyplane-admin-token", s.kms.admin_token())
        .body(format!("{{\"seconds\":{seconds}}}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

pub fn ctx(org: &str) -> keyplane_kms::EncryptionContext {
    keyplane_kms::EncryptionContext::from([
        ("organization".to_string(), org.to_string()),
        ("database".to_string(), "db1".to_string()),
        ("datacenter".to_string(), "db1-1".to_string()),
    ])
}
