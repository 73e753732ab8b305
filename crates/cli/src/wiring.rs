//! The one place vendors are wired in: the AWS adapter as the server's KMS connector.
use std::sync::Arc;
use std::time::Duration;

use keyplane_kms::KmsConnector;
use keyplane_kms_aws::{AwsConnector, AwsSettings, StaticCredentials};
use zeroize::Zeroizing;

use crate::dev::PlatformKms;
use crate::settings::FileAws;

/// The AWS connector from the `[aws]` section; in dev mode, with no endpoint configured,
/// it acts on the built-in KMS with the platform role's credentials.
pub fn kms_connector(aws: &FileAws, dev_kms: Option<&PlatformKms>) -> Arc<dyn KmsConnector> {
    let mut settings = AwsSettings {
        endpoint_url: aws.endpoint_url.clone(),
        assume_role: aws.assume_role,
        ..AwsSettings::default()
    };
    if let Some(role) = &aws.volume_role {
        settings.volume_role = role.clone();
    }
    if let Some(n) = aws.max_attempts {
        settings.retry.max_attempts = n.max(1);
    }
    if let Some(ms) = aws.attempt_timeout_ms {
        settings.retry.attempt_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = aws.operation_timeout_ms {
        settings.retry.operation_timeout = Duration::from_millis(ms);
    }
    for (account, c) in &aws.credentials {
        settings.static_credentials.insert(
            account.clone(),
            StaticCredentials {
                access_key_id: c.access_key_id.clone(),
                secret_access_key: Zeroizing::new(c.secret_access_key.clone()),
                session_token: None,
            },
        );
    }
    if let Some(dev) = dev_kms
        && settings.endpoint_url.is_none()
    {
        settings.endpoint_url = Some(dev.endpoint.clone());
        for c in &dev.platform {
            settings
                .static_credentials
                .entry(c.account.clone())
                .or_insert_with(|| StaticCredentials {
                    access_key_id: c.access_key_id.clone(),
                    secret_access_key: Zeroizing::new(c.secret_access_key.to_string()),
                    session_token: None,
                });
        }
    }
    Arc::new(AwsConnector::new(settings))
}
