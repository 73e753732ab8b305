//! The outbound side of HTTP: posting webhook deliveries to customers' endpoints. One
//! client for the process, with the system's trust roots, no redirects, no proxy from the
//! environment, and a resolver that refuses names resolving to non-public addresses (a
//! customer's URL must not reach the platform's own network, cloud metadata included) unless
//! the operator allows test targets.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyplane_app::webhooks::{SendFailure, WebhookSender, WebhookSettings};
use keyplane_core::webhook::is_public;
use reqwest13::dns::{Addrs, Name, Resolve, Resolving};

/// Posts deliveries with reqwest.
pub struct HttpWebhookSender {
    http: reqwest13::Client,
    allow_private: bool,
}

/// Why the sender could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSenderError {
    #[error("TLS setup for webhooks failed: {0}")]
    Tls(#[source] rustls::Error),
    #[error("HTTP client setup for webhooks failed: {0}")]
    Client(#[source] reqwest13::Error),
}

/// Resolves through the system, keeping only public addresses (all, when allowed).
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                let why: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} does not resolve").into()
                } else {
                    format!(
                        "{host} resolves only to non-public addresses, which webhooks are not sent to"
                    )
                    .into()
                };
                return Err(why);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

impl HttpWebhookSender {
    pub fn new(settings: &WebhookSettings) -> Result<HttpWebhookSender, WebhookSenderError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(WebhookSenderError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest13::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .redirect(reqwest13::redirect::Policy::none())
            .no_proxy()
            .retry(reqwest13::retry::never())
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: settings.allow_private_targets,
            }))
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("keyplane-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookSenderError::Client)?;
        Ok(HttpWebhookSender {
            http,
            allow_private: settings.allow_private_targets,
        })
    }
}

/// The innermost cause of a reqwest error: "connection refused", not "error sending request".
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[async_trait::async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<u16, SendFailure> {
        let parsed =
            reqwest13::Url::parse(url).map_err(|e| SendFailure(format!("bad URL: {e}")))?;
        // An address literal never reaches the resolver: check it here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(SendFailure(format!(
                "{ip} is not a public address; webhooks are not sent to it"
            )));
        }
        let mut req = self
            .http
            .post(parsed)
            .header(reqwest13::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        match req.send().await {
            Ok(res) => Ok(res.status().as_u16()),
            Err(e) if e.is_timeout() => {
                Err(SendFailure("the endpoint did not answer in time".into()))
            }
            Err(e) => Err(SendFailure(format!("no answer: {}", cause(&e)))),
        }
    }
}
