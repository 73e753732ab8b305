//! TLS for the vault: a development CA (generated once; its certificate is written next to the
//! state for clients to trust, its key sealed in the state), a server certificate for the
//! configured host names signed by it at every start, and the HTTPS accept loop.
//!
//! The SDKs insist on TLS: both refuse to send a bearer token over plain HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::error::DevKmsError;

const CA_NAME: &str = "keyplane built-in vault development CA";

fn tls_error(reason: impl std::fmt::Display) -> DevKmsError {
    DevKmsError::Tls(reason.to_string())
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name
        .push(DnType::OrganizationName, "keyplane (development only)");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    p
}

/// A new CA: its certificate (PEM) and its PKCS#8 private key.
pub(crate) fn new_ca() -> Result<(String, Zeroizing<Vec<u8>>), DevKmsError> {
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = ca_params().self_signed(&key).map_err(tls_error)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_der())))
}

/// A server certificate for `hosts` (DNS names or IP addresses) signed by the CA, with its key.
fn leaf(
    ca_key_pkcs8: &[u8],
    hosts: &[String],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), DevKmsError> {
    let ca_key = KeyPair::try_from(ca_key_pkcs8).map_err(tls_error)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut p = CertificateParams::new(hosts.to_vec()).map_err(tls_error)?;
    p.distinguished_name.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = p.signed_by(&key, &issuer).map_err(tls_error)?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

pub(crate) fn server_config(
    ca_key_pkcs8: &[u8],
    hosts: &[String],
) -> Result<Arc<rustls::ServerConfig>, DevKmsError> {
    let (cert, key) = leaf(ca_key_pkcs8, hosts)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(tls_error)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves `router` over TLS until `shutdown` completes; open connections are dropped then.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then keep serving.
                    tracing::warn!(error = %e, "devkms azure: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        connections.spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "devkms azure: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper_util::service::TowerToHyperService::new(router);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "devkms azure: connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}
