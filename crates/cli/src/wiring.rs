//! The one place vendors are wired in: one connector per key service (the AWS adapter, the
//! Google Cloud KMS adapter, the Azure Key Vault adapter, the OpenBao Transit adapter) behind the single connector the
//! application uses, which routes each platform identity to its service's adapter.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keyplane_core::Provider;
use keyplane_kms::{KmsConnector, ServiceConnectors};
use keyplane_kms_aws::{AwsConnector, AwsSettings, StaticCredentials};
use keyplane_kms_azure::{AzureConnector, AzureCredentialConfig, AzureSettings};
use keyplane_kms_gcp::{GcpConnector, GcpCredentials, GcpSettings};
use keyplane_kms_openbao::{JwtSigner, OpenbaoConnector, OpenbaoSettings};
use zeroize::Zeroizing;

use crate::dev::PlatformKms;
use crate::settings::{FileAws, FileAzure, FileGcp};

/// The connector of every key service this binary has, from the `[aws]`, `[gcp]` and
/// `[azure]` sections; in dev mode, where a section names no endpoint, the built-in KMS.
pub fn kms_connector(
    aws: &FileAws,
    gcp: &FileGcp,
    azure: &FileAzure,
    dev_kms: Option<&PlatformKms>,
    openbao_jwt: Option<Arc<JwtSigner>>,
) -> anyhow::Result<Arc<dyn KmsConnector>> {
    Ok(Arc::new(
        ServiceConnectors::new()
            .with(Provider::Aws, aws_connector(aws, dev_kms))
            .with(Provider::Gcp, gcp_connector(gcp, dev_kms)?)
            .with(Provider::Azure, azure_connector(azure, dev_kms)?)
            // Each OpenBao key comes with its customer's login and server address; JWT roles
            // trust the platform's signing key.
            .with(
                Provider::Openbao,
                Arc::new(OpenbaoConnector::new(OpenbaoSettings {
                    jwt: openbao_jwt,
                    ..OpenbaoSettings::default()
                })),
            ),
    ))
}

/// The Azure Key Vault connector: each platform application's client secret, certificate or
/// token, the extra CA; in dev mode, the built-in vault (its dev CA trusted, its host accepted)
/// and the platform application's certificate, exchanged at the vault's own token endpoint.
fn azure_connector(
    azure: &FileAzure,
    dev_kms: Option<&PlatformKms>,
) -> anyhow::Result<Arc<dyn KmsConnector>> {
    let mut settings = AzureSettings {
        dev_hosts: azure.dev_hosts.clone(),
        ..AzureSettings::default()
    };
    let mut cas = Vec::new();
    if let Some(path) = &azure.ca_file {
        cas.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("azure.ca_file: reading {}", path.display()))?,
        );
    }
    for (client_id, c) in &azure.credentials {
        let tenant = || {
            c.tenant_id.clone().with_context(|| {
                format!("azure.credentials.{client_id:?}: a client secret or certificate needs its tenant_id")
            })
        };
        let creds = match (&c.client_secret, &c.certificate_file, &c.token) {
            (Some(secret), None, None) => AzureCredentialConfig::ClientSecret {
                tenant_id: tenant()?,
                client_id: client_id.clone(),
                client_secret: Zeroizing::new(secret.clone()),
                authority_host: c.authority_host.clone(),
            },
            (None, Some(path), None) => AzureCredentialConfig::ClientCertificate {
                tenant_id: tenant()?,
                client_id: client_id.clone(),
                certificate_pem: read_certificate(path).with_context(|| {
                    format!("azure.credentials.{client_id:?}: certificate_file")
                })?,
                authority_host: c.authority_host.clone(),
            },
            (None, None, Some(token)) => AzureCredentialConfig::StaticToken {
                token: Zeroizing::new(token.clone()),
            },
            _ => anyhow::bail!(
                "azure.credentials.{client_id:?}: give exactly one of client_secret, certificate_file or token"
            ),
        };
        settings.credentials.insert(client_id.clone(), creds);
    }
    if let Some(dev) = dev_kms {
        let vault = &dev.azure;
        cas.push(vault.ca_pem.clone());
        settings.dev_hosts.push(vault.authority.clone());
        let app = &vault.credentials.platform;
        if !settings.credentials.contains_key(&app.client_id) {
            // The dev application's certificate when the vault wrote one, else its secret.
            let creds = match &app.certificate_file {
                Some(path) => AzureCredentialConfig::ClientCertificate {
                    tenant_id: vault.credentials.tenant_id.clone(),
                    client_id: app.client_id.clone(),
                    certificate_pem: read_certificate(path)?,
                    authority_host: Some(vault.credentials.vault_url.clone()),
                },
                None => AzureCredentialConfig::ClientSecret {
                    tenant_id: vault.credentials.tenant_id.clone(),
                    client_id: app.client_id.clone(),
                    client_secret: Zeroizing::new(app.client_secret.clone()),
                    authority_host: Some(vault.credentials.vault_url.clone()),
                },
            };
            settings.credentials.insert(app.client_id.clone(), creds);
        }
    }
    if !cas.is_empty() {
        settings.ca_bundle_pem = Some(cas.join("\n"));
    }
    let connector = AzureConnector::new(settings).map_err(|e| anyhow::anyhow!("azure: {e}"))?;
    Ok(Arc::new(connector))
}

fn read_certificate(path: &std::path::Path) -> anyhow::Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .with_context(|| format!("reading {}", path.display()))
}

/// The Google Cloud KMS connector: each service account's key file or token; in dev mode,
/// with no endpoint configured, the built-in KMS with its platform service accounts' tokens.
fn gcp_connector(
    gcp: &FileGcp,
    dev_kms: Option<&PlatformKms>,
) -> anyhow::Result<Arc<dyn KmsConnector>> {
    let mut settings = GcpSettings {
        endpoint: gcp.endpoint.clone(),
        ..GcpSettings::default()
    };
    for (email, c) in &gcp.credentials {
        let creds = match (&c.key_file, &c.token) {
            (Some(path), None) => GcpCredentials::ServiceAccountKey(Zeroizing::new(
                std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "gcp.credentials.{email:?}: reading key file {}",
                        path.display()
                    )
                })?,
            )),
            (None, Some(token)) => GcpCredentials::StaticToken(Zeroizing::new(token.clone())),
            _ => anyhow::bail!("gcp.credentials.{email:?}: give exactly one of key_file or token"),
        };
        settings.credentials.insert(email.clone(), creds);
    }
    if let Some(dev) = dev_kms
        && settings.endpoint.is_none()
    {
        settings.endpoint = Some(dev.endpoint.clone());
        for (email, token) in &dev.gcp_platform {
            settings
                .credentials
                .entry(email.clone())
                .or_insert_with(|| GcpCredentials::StaticToken(token.clone()));
        }
    }
    Ok(Arc::new(GcpConnector::new(settings)))
}

/// The AWS connector from the `[aws]` section; in dev mode, with no endpoint configured,
/// it acts on the built-in KMS with the platform role's credentials.
fn aws_connector(aws: &FileAws, dev_kms: Option<&PlatformKms>) -> Arc<dyn KmsConnector> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::FileAzureCredentials;

    fn with(c: FileAzureCredentials) -> FileAzure {
        FileAzure {
            credentials: [("app".to_string(), c)].into(),
            ..FileAzure::default()
        }
    }

    fn creds(
        tenant: Option<&str>,
        secret: Option<&str>,
        token: Option<&str>,
    ) -> FileAzureCredentials {
        FileAzureCredentials {
            tenant_id: tenant.map(String::from),
            client_secret: secret.map(String::from),
            certificate_file: None,
            authority_host: None,
            token: token.map(String::from),
        }
    }

    #[test]
    fn an_azure_application_takes_a_client_secret_with_its_tenant_or_a_token() {
        assert!(azure_connector(&with(creds(Some("t"), Some("s"), None)), None).is_ok());
        assert!(azure_connector(&with(creds(None, None, Some("tok"))), None).is_ok());
        let both = azure_connector(&with(creds(Some("t"), Some("s"), Some("tok"))), None)
            .err()
            .unwrap();
        assert!(both.to_string().contains("exactly one of"), "{both}");
        let none = azure_connector(&with(creds(Some("t"), None, None)), None)
            .err()
            .unwrap();
        assert!(none.to_string().contains("exactly one of"), "{none}");
        let no_tenant = azure_connector(&with(creds(None, Some("s"), None)), None)
            .err()
            .unwrap();
        assert!(no_tenant.to_string().contains("tenant_id"), "{no_tenant}");
        let mut missing_cert = creds(Some("t"), None, None);
        missing_cert.certificate_file = Some("/nonexistent/platform.pem".into());
        let e = azure_connector(&with(missing_cert), None).err().unwrap();
        assert!(
            format!("{e:#}").contains("certificate_file")
                && format!("{e:#}").contains("/nonexistent"),
            "{e:#}"
        );
        let mut secret_and_cert = creds(Some("t"), Some("s"), None);
        secret_and_cert.certificate_file = Some("/nonexistent/platform.pem".into());
        let e = azure_connector(&with(secret_and_cert), None).err().unwrap();
        assert!(e.to_string().contains("exactly one of"), "{e}");
        let missing_ca = FileAzure {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..FileAzure::default()
        };
        let e = azure_connector(&missing_ca, None).err().unwrap();
        assert!(e.to_string().contains("azure.ca_file"), "{e}");
    }

    #[test]
    fn the_azure_section_parses_from_toml_and_keeps_secrets_out_of_debug() {
        let f: crate::settings::FileConfig = toml::from_str(
            r#"
azure_listen = "127.0.0.1:4700"
[azure]
dev_hosts = ["localhost:4700"]
[azure.credentials."app"]
tenant_id = "t"
client_secret = "very-secret-value"
[[provider_accounts.azure]]
id = "app"
object_id = "oid"
"#,
        )
        .unwrap();
        let azure = f.azure.unwrap();
        assert_eq!(azure.dev_hosts, ["localhost:4700"]);
        assert!(!format!("{azure:?}").contains("very-secret-value"));
        assert_eq!(
            f.provider_accounts.unwrap()[&Provider::Azure][0]
                .object_id
                .as_deref(),
            Some("oid")
        );
    }
}
