//! [`AwsKeyProvider`]: the [`KeyProvider`] operations as aws-sdk-kms calls.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantConstraints, GrantOperation, KeyMetadata};
use keyplane_kms::{
    DataKeyPair, EncryptionContext, ErrorKind, Grant, GrantConstraint, KeyDescription, KeyProvider,
    KeyState, KmsError, Result, RotationFacts,
};
use zeroize::Zeroizing;

use crate::errors::classify;
use crate::retry::{RetrySettings, with_retries};

/// A data key is always AES-256: 32 bytes.
use keyplane_kms::DATA_KEY_LEN;

/// The platform's view of AWS KMS in one region, as one identity. Cheap to share: the SDK
/// client is reference-counted and holds the connection pool and credential cache.
#[derive(Debug, Clone)]
pub struct AwsKeyProvider {
    client: aws_sdk_kms::Client,
    region: String,
    retry: RetrySettings,
}

impl AwsKeyProvider {
    /// Wraps a client built for `region`. The client's own retries should be disabled
    /// (`RetryConfig::disabled()`), or they multiply with `retry`'s.
    pub fn new(
        client: aws_sdk_kms::Client,
        region: impl Into<String>,
        retry: RetrySettings,
    ) -> AwsKeyProvider {
        AwsKeyProvider {
            client,
            region: region.into(),
            retry,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn retry_settings(&self) -> &RetrySettings {
        &self.retry
    }

    /// AWS answers a key ARN from another region with a bare "not found" (or "invalid ARN"),
    /// which would read as a deleted key; the ARN alone tells the real problem.
    fn check_region(&self, operation: &'static str, key_id: &str) -> Result<()> {
        match parse_arn(key_id) {
            Some(arn) if arn.region != self.region => Err(KmsError::new(
                ErrorKind::WrongRegion,
                operation,
                format!(
                    "key {key_id} is in region {}, not {}",
                    arn.region, self.region
                ),
            )),
            _ => Ok(()),
        }
    }

    /// One KMS operation on `key_ids`: refuses a key of another region up front, then
    /// [`sends`](Self::send) the request.
    async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        key_ids: &[&str],
        send: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        for key_id in key_ids {
            self.check_region(operation, key_id)?;
        }
        self.send(operation, send).await
    }

    /// Sends a request (built afresh by `send` for each attempt) through the retry loop,
    /// sorting failures into [`ErrorKind`]s.
    async fn send<T, E, F, Fut>(&self, operation: &'static str, mut send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        with_retries(&self.retry, operation, || {
            let sent = send();
            async move { sent.await.map_err(|e| classify(operation, e)) }
        })
        .await
    }
}

/// The parts of `arn:aws:kms:REGION:ACCOUNT:key/ID` keyplane reads.
struct Arn<'a> {
    region: &'a str,
    account: &'a str,
}

fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut parts = s.splitn(6, ':');
    let (arn, _partition, service, region, account, _resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn == "arn" && service == "kms").then_some(Arn { region, account })
}

/// `None` for an empty context: the request then carries no context at all, which is what
/// AWS and every compatible server expect for "no context".
fn context_map(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The SDK's form of a grant constraint (None for no constraint).
fn grant_constraints(c: &GrantConstraint) -> Option<GrantConstraints> {
    let pairs = |ctx: &EncryptionContext| {
        ctx.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    };
    match c {
        GrantConstraint::None => None,
        GrantConstraint::ContextSubset(ctx) => Some(
            GrantConstraints::builder()
                .set_encryption_context_subset(Some(pairs(ctx)))
                .build(),
        ),
        GrantConstraint::ContextEquals(ctx) => Some(
            GrantConstraints::builder()
                .set_encryption_context_equals(Some(pairs(ctx)))
                .build(),
        ),
    }
}

/// A listed grant's constraint (Equals wins if a KMS reported both).
fn constraint_of(c: Option<&GrantConstraints>) -> GrantConstraint {
    let Some(c) = c else {
        return GrantConstraint::None;
    };
    let ctx = |m: &HashMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<EncryptionContext>()
    };
    match (c.encryption_context_equals(), c.encryption_context_subset()) {
        (Some(eq), _) => GrantConstraint::ContextEquals(ctx(eq)),
        (None, Some(sub)) => GrantConstraint::ContextSubset(ctx(sub)),
        (None, None) => GrantConstraint::None,
    }
}

fn missing(operation: &'static str, field: &str) -> KmsError {
    KmsError::new(
        ErrorKind::Other,
        operation,
        format!("the response has no {field}"),
    )
}

/// The `CiphertextBlob` every wrapping operation answers with.
fn ciphertext_of(operation: &'static str, blob: Option<Blob>) -> Result<Vec<u8>> {
    Ok(blob
        .ok_or_else(|| missing(operation, "CiphertextBlob"))?
        .into_inner())
}

fn describe(md: &KeyMetadata) -> Result<KeyDescription> {
    let arn = md
        .arn()
        .ok_or_else(|| missing("DescribeKey", "KeyMetadata.Arn"))?
        .to_string();
    let parsed = parse_arn(&arn).ok_or_else(|| {
        KmsError::new(
            ErrorKind::Other,
            "DescribeKey",
            format!("the response's key ARN {arn:?} is not a KMS key ARN"),
        )
    })?;
    let region = parsed.region.to_string();
    let account = md.aws_account_id().unwrap_or(parsed.account).to_string();
    use aws_sdk_kms::types::KeyState as S;
    let state = match md.key_state() {
        Some(S::Enabled) => KeyState::Enabled,
        Some(S::Disabled) => KeyState::Disabled,
        // A replica awaiting deletion is, for the platform, a key about to disappear.
        Some(S::PendingDeletion) | Some(S::PendingReplicaDeletion) => KeyState::PendingDeletion,
        Some(other) => KeyState::Other(other.as_str().to_string()),
        // Old servers only report `Enabled`.
        None if md.enabled() => KeyState::Enabled,
        None => KeyState::Other("Unknown".to_string()),
    };
    Ok(KeyDescription {
        arn,
        account,
        region,
        state,
        key_spec: md
            .key_spec()
            .map_or("SYMMETRIC_DEFAULT", |s| s.as_str())
            .to_string(),
        key_usage: md
            .key_usage()
            .map_or("ENCRYPT_DECRYPT", |u| u.as_str())
            .to_string(),
        multi_region: md.multi_region().unwrap_or(false),
        primary_version: None,
    })
}

fn check_data_key_len(operation: &'static str, len: usize) -> Result<()> {
    if len == DATA_KEY_LEN {
        Ok(())
    } else {
        Err(KmsError::new(
            ErrorKind::Other,
            operation,
            format!("the KMS returned a {len}-byte data key instead of {DATA_KEY_LEN} bytes"),
        ))
    }
}

#[async_trait]
impl KeyProvider for AwsKeyProvider {
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription> {
        const OP: &str = "DescribeKey";
        let out = self
            .call(OP, &[key_id], || {
                self.client.describe_key().key_id(key_id).send()
            })
            .await?;
        describe(
            out.key_metadata()
                .ok_or_else(|| missing(OP, "KeyMetadata"))?,
        )
    }

    async fn enable_key(&self, key_id: &str) -> Result<()> {
        const OP: &str = "EnableKey";
        self.call(OP, &[key_id], || {
            self.client.enable_key().key_id(key_id).send()
        })
        .await
        .map_err(|mut e| {
            // AWS has no cross-account EnableKey, whatever the key policy allows, and answers
            // with the same NotFound as for a missing key: say so, lest a caller take a key it
            // can otherwise use for deleted.
            if e.kind == ErrorKind::NotFound && key_id.starts_with("arn:") {
                e.message.push_str(
                    " (AWS does not allow EnableKey across accounts: a key of another account is \
                     reported as not found even when its policy allows kms:EnableKey)",
                );
            }
            e
        })?;
        Ok(())
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "Encrypt";
        let out = self
            .call(OP, &[key_id], || {
                self.client
                    .encrypt()
                    .key_id(key_id)
                    .plaintext(Blob::new(plaintext.to_vec()))
                    .set_encryption_context(context_map(context))
                    .send()
            })
            .await?;
        ciphertext_of(OP, out.ciphertext_blob)
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        const OP: &str = "Decrypt";
        // The key ID is sent although symmetric ciphertexts name their key: AWS then refuses a
        // ciphertext of any other key instead of quietly decrypting it.
        let out = self
            .call(OP, &[key_id], || {
                self.client
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(Blob::new(ciphertext.to_vec()))
                    .set_encryption_context(context_map(context))
                    .send()
            })
            .await?;
        let plaintext = out.plaintext.ok_or_else(|| missing(OP, "Plaintext"))?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKeyPair> {
        const OP: &str = "GenerateDataKey";
        let out = self
            .call(OP, &[key_id], || {
                self.client
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(context_map(context))
                    .send()
            })
            .await?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| missing(OP, "Plaintext"))?
                .into_inner(),
        );
        check_data_key_len(OP, plaintext.len())?;
        let ciphertext = ciphertext_of(OP, out.ciphertext_blob)?;
        Ok(DataKeyPair {
            plaintext,
            ciphertext,
        })
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let out = self
            .call(OP, &[key_id], || {
                self.client
                    .generate_data_key_without_plaintext()
                    .key_id(key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(context_map(context))
                    .send()
            })
            .await?;
        ciphertext_of(OP, out.ciphertext_blob)
    }

    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        source_key_id: &str,
        destination_key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        const OP: &str = "ReEncrypt";
        let out = self
            .call(OP, &[source_key_id, destination_key_id], || {
                self.client
                    .re_encrypt()
                    .ciphertext_blob(Blob::new(ciphertext.to_vec()))
                    .source_key_id(source_key_id)
                    .destination_key_id(destination_key_id)
                    .set_source_encryption_context(context_map(context))
                    .set_destination_encryption_context(context_map(context))
                    .send()
            })
            .await?;
        ciphertext_of(OP, out.ciphertext_blob)
    }

    async fn create_grant(
        &self,
        key_id: &str,
        grantee: &str,
        operations: &[&str],
        name: &str,
        constraint: &GrantConstraint,
    ) -> Result<String> {
        const OP: &str = "CreateGrant";
        // Callers may name operations as IAM actions (`kms:Decrypt`) or as grant operations.
        let ops: Vec<GrantOperation> = operations
            .iter()
            .map(|o| GrantOperation::from(o.strip_prefix("kms:").unwrap_or(o)))
            .collect();
        let constraints = grant_constraints(constraint);
        // Retrying is safe: AWS answers a repeated CreateGrant with identical parameters and
        // name with the existing grant instead of a second one.
        let out = self
            .call(OP, &[key_id], || {
                self.client
                    .create_grant()
                    .key_id(key_id)
                    .grantee_principal(grantee)
                    .set_operations(Some(ops.clone()))
                    .set_constraints(constraints.clone())
                    .name(name)
                    .send()
            })
            .await?;
        out.grant_id.ok_or_else(|| missing(OP, "GrantId"))
    }

    async fn list_grants(&self, key_id: &str) -> Result<Vec<Grant>> {
        const OP: &str = "ListGrants";
        self.check_region(OP, key_id)?;
        let mut grants = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            // The region was checked once above; each page is only sent.
            let page = self
                .send(OP, || {
                    self.client
                        .list_grants()
                        .key_id(key_id)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            for g in page.grants() {
                grants.push(Grant {
                    grant_id: g.grant_id().unwrap_or_default().to_string(),
                    grantee: g.grantee_principal().unwrap_or_default().to_string(),
                    operations: g
                        .operations()
                        .iter()
                        .map(|o| o.as_str().to_string())
                        .collect(),
                    name: g.name().filter(|n| !n.is_empty()).map(str::to_string),
                    constraint: constraint_of(g.constraints()),
                });
            }
            match (page.truncated(), page.next_marker()) {
                // A truncated page without a marker would loop forever; stop instead.
                (true, Some(m)) if marker.as_deref() != Some(m) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(grants)
    }

    async fn revoke_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        const OP: &str = "RevokeGrant";
        self.call(OP, &[key_id], || {
            self.client
                .revoke_grant()
                .key_id(key_id)
                .grant_id(grant_id)
                .send()
        })
        .await?;
        Ok(())
    }

    /// GetKeyRotationStatus (allowed across accounts). The date of the last rotation stays
    /// unknown: ListKeyRotations, which has it, is not allowed across accounts, so the
    /// platform cannot call it on a customer's key.
    async fn rotation_facts(&self, key_id: &str) -> Result<RotationFacts> {
        const OP: &str = "GetKeyRotationStatus";
        let status = self
            .call(OP, &[key_id], || {
                self.client.get_key_rotation_status().key_id(key_id).send()
            })
            .await?;
        Ok(RotationFacts {
            enabled: status.key_rotation_enabled(),
            period_days: status
                .rotation_period_in_days()
                .and_then(|d| u32::try_from(d).ok()),
            last_rotated_at: None,
            next_rotation_at: status.next_rotation_date().and_then(|t| {
                t.fmt(aws_sdk_kms::primitives::DateTimeFormat::DateTime)
                    .ok()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_parsed() {
        let a = parse_arn("arn:aws:kms:us-east-2:111111111111:key/1234").unwrap();
        assert_eq!((a.region, a.account), ("us-east-2", "111111111111"));
        assert!(parse_arn("1234abcd").is_none());
        assert!(parse_arn("alias/foo").is_none());
        assert!(parse_arn("arn:aws:iam::111111111111:role/creator").is_none());
    }
}
