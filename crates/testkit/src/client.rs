//! aws-sdk-kms clients for loopback endpoints, and the key-creating calls every suite makes.

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

/// Static credentials (no session token) for `akid` / `secret`.
pub fn credentials(akid: &str, secret: &str) -> Credentials {
    Credentials::new(akid, secret, None, None, "keyplane-testkit")
}

/// An unmodified SDK client signing as `credentials` for `region`, sending to `endpoint` over
/// plain HTTP.
pub fn kms_client(endpoint: &str, region: &str, credentials: Credentials) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// Creates a key with every default (symmetric, the account's default policy) and returns its
/// metadata.
async fn new_key(client: &aws_sdk_kms::Client) -> aws_sdk_kms::types::KeyMetadata {
    client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .expect("CreateKey answered without KeyMetadata")
}

/// Creates a default key as `client` and returns its ARN.
pub async fn new_key_arn(client: &aws_sdk_kms::Client) -> String {
    new_key(client)
        .await
        .arn
        .expect("CreateKey answered without an Arn")
}

/// Creates a default key as `client` and returns its bare key ID.
pub async fn new_key_id(client: &aws_sdk_kms::Client) -> String {
    new_key(client).await.key_id
}
