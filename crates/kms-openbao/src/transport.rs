//! One OpenBao server (and namespace) over HTTP: the reqwest client with its TLS roots, and
//! sending one request with the token marked sensitive. Nothing here retries or interprets.

use std::sync::Arc;
use std::time::Duration;

use keyplane_kms::retry::RetrySettings;
use keyplane_kms::{ErrorKind, KmsError, Result};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::errors::{OpenbaoError, transport_error};

/// The header Transit reads the token from.
const TOKEN_HEADER: &str = "X-Vault-Token";

/// An HTTP answer. The body is wiped on drop: it may hold a plaintext data key or a token.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `errors` sentences of an error answer (none if the body is not that shape).
    pub fn errors(&self) -> Vec<String> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|b| b.errors)
            .unwrap_or_default()
    }

    pub fn json<T: DeserializeOwned>(&self, operation: &'static str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| KmsError {
            kind: ErrorKind::Other,
            operation,
            message: format!(
                "OpenBao's answer (HTTP {}) is not what Transit sends: {e}",
                self.status
            ),
            source: Some(Box::new(OpenbaoError::Decode(e))),
        })
    }
}

/// Deserializes a string straight into wiped-on-drop memory (zeroize's own serde support is
/// not enabled in this workspace, and enabling it would rebuild much of the tree).
pub(crate) fn secret_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Zeroizing<String>, D::Error> {
    <String as serde::Deserialize>::deserialize(d).map(Zeroizing::new)
}

/// The server the platform's credentials for one customer key belong to.
pub(crate) struct Server {
    http: reqwest::Client,
    /// `scheme://host[:port]`.
    pub address: String,
    pub namespace: Option<String>,
    /// `<address>/v1/[<namespace>/]`.
    base: String,
}

/// The roots a TLS connection to the server is checked against: the customer's CA bundle when
/// one is configured (alone, so a public CA cannot vouch for a private server), else the
/// system's roots.
fn root_store(ca_bundle_pem: Option<&str>) -> Result<rustls::RootCertStore> {
    const OP: &str = "Connect";
    let bad = |m: String| KmsError {
        kind: ErrorKind::Invalid,
        operation: OP,
        message: format!("the CA bundle is not usable: {m}"),
        source: Some(Box::new(OpenbaoError::CaBundle(m))),
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| bad(format!("a certificate does not parse: {e}")))?;
                roots.add(cert).map_err(|e| {
                    bad(format!(
                        "a certificate is not a CA certificate rustls accepts: {e}"
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(bad("it holds no PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(KmsError::new(
                    ErrorKind::Invalid,
                    OP,
                    "no system CA certificates found to check OpenBao's TLS certificate; configure a CA bundle",
                ));
            }
        }
    }
    Ok(roots)
}

fn setup_error(message: String, source: OpenbaoError) -> KmsError {
    KmsError {
        kind: ErrorKind::Other,
        operation: "Connect",
        message,
        source: Some(Box::new(source)),
    }
}

impl Server {
    pub fn new(
        address: &str,
        namespace: Option<&str>,
        ca_bundle_pem: Option<&str>,
        retry: &RetrySettings,
    ) -> Result<Server> {
        // An http address never uses TLS; its (empty) root store is never consulted.
        let roots = if address.starts_with("https://") {
            root_store(ca_bundle_pem)?
        } else {
            rustls::RootCertStore::empty()
        };
        // The TLS configuration is built here rather than by reqwest so that the roots are
        // exactly the ones above (the customer's CA alone when given) and the crypto provider
        // is the aws-lc-rs one the AWS SDK already builds, whatever the process default.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(format!("TLS setup failed: {e}"), OpenbaoError::Tls(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // No redirect is followed and no proxy from the environment is used, so the token
        // goes to this server and nowhere else; retries are the shared loop's alone.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .retry(reqwest::retry::never())
            .connect_timeout(retry.attempt_timeout)
            .tcp_keepalive(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("keyplane-kms-openbao/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                setup_error(
                    format!("HTTP client setup failed: {e}"),
                    OpenbaoError::Http(Box::new(e)),
                )
            })?;
        let base = match namespace {
            Some(ns) => format!("{address}/v1/{ns}/"),
            None => format!("{address}/v1/"),
        };
        Ok(Server {
            http,
            address: address.to_string(),
            namespace: namespace.map(str::to_string),
            base,
        })
    }

    /// Sends one request to the namespace-relative `path`. `token` goes in a header marked
    /// sensitive, so that no Debug output of the request shows it.
    pub async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                KmsError::new(
                    ErrorKind::Credentials,
                    operation,
                    "OpenBao issued a token that is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            req = req.header(TOKEN_HEADER, value);
        }
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(operation, !e.is_connect(), Box::new(e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(operation, true, Box::new(e)))?;
        Ok(Reply {
            status,
            body: Zeroizing::new(bytes.to_vec()),
        })
    }
}
