//! One OpenBao server (and namespace) over HTTP: the hyper client with its TLS roots, and
//! sending one request with the token marked sensitive. Nothing here retries or interprets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keyplane_kms::{ErrorKind, KmsError, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::errors::{OpenbaoError, transport_error};
use crate::retry::OpenbaoRetrySettings;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

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
    http: HttpClient,
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

impl Server {
    pub fn new(
        address: &str,
        namespace: Option<&str>,
        ca_bundle_pem: Option<&str>,
        retry: &OpenbaoRetrySettings,
    ) -> Result<Server> {
        // An http address never uses TLS; its (empty) root store is never consulted.
        let roots = if address.starts_with("https://") {
            root_store(ca_bundle_pem)?
        } else {
            rustls::RootCertStore::empty()
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KmsError {
                kind: ErrorKind::Other,
                operation: "Connect",
                message: format!("TLS setup failed: {e}"),
                source: Some(Box::new(OpenbaoError::Tls(e))),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut plain = HttpConnector::new();
        plain.enforce_http(false);
        plain.set_connect_timeout(Some(retry.attempt_timeout));
        plain.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain);
        // No redirect is ever followed (this client has none), so the token cannot be carried
        // to another host.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
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
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                USER_AGENT,
                concat!("keyplane-kms-openbao/", env!("CARGO_PKG_VERSION")),
            );
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
        let body = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::copy_from_slice(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| {
            KmsError::new(
                ErrorKind::Invalid,
                operation,
                format!("could not build the request: {e}"),
            )
        })?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| transport_error(operation, !e.is_connect(), Box::new(e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport_error(operation, true, Box::new(e)))?
            .to_bytes();
        Ok(Reply {
            status,
            body: Zeroizing::new(bytes.to_vec()),
        })
    }
}
