//! The built-in KMS's Azure Key Vault surface: Key Vault's REST API (the api-version the
//! official SDKs send, 2025-07-01, and the older ones they still accept) over TLS with a
//! development CA, on its own listener, so `azure_security_keyvault_keys`,
//! `azure-keyvault-keys` and `azure_identity` work against it unmodified.
//!
//! **For development and tests only.** It shares the AWS surface's state file and root key
//! (key material and the CA key sealed, tokens and client secrets hashed).
//!
//! What it owns, one file per operation group: `keys` (create, get, list, update, delete,
//! recover, purge), `versions` (versions, rotation, rotation policy), `crypto` (wrapKey,
//! unwrapKey, encrypt, decrypt on RSA and oct-HSM keys), `rbac` (role definitions, the check on
//! every request, the ARM role-assignment routes), `auth` (bearer tokens, the 401 challenge,
//! the Entra ID token endpoint), `certificates` (applications' certificate credentials and the
//! client assertions signed with them), `tls` (the dev CA and the HTTPS loop), `state` (what is
//! stored). One directory (tenant, subscription, principals) holds every vault; each
//! [`AzureVault`] serves one vault on one listener.

mod auth;
mod certificates;
mod crypto;
mod error;
mod keys;
mod rbac;
mod state;
mod tls;
mod versions;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::DevKmsError;
use crate::{DevKms, Inner};
use error::VaultError;
pub(crate) use state::{AzureState, AzureStateRecord};
use state::{Directory, Principal, PrincipalKind, RoleAssignment, Vault, sha256_hex};

/// The dev tenant (the customer's directory in the built-in vault's world).
pub const DEV_TENANT_ID: &str = "11111111-1111-4111-8111-111111111111";
/// The subscription the built-in vaults belong to.
pub const DEV_SUBSCRIPTION_ID: &str = "11111111-2222-4333-8444-555555555555";
pub const DEV_RESOURCE_GROUP: &str = "keyplane-dev";
/// The sample customer's administrator (Owner of the subscription, Key Vault Administrator).
pub const CUSTOMER_ADMIN_OBJECT_ID: &str = "11111111-1111-4111-8111-0000000000ad";
/// The platform's application (client) ID: the Azure provider account keyplane's config
/// names by default.
pub const PLATFORM_APP_ID: &str = "7f3c2a10-0000-4000-8000-000000000222";
/// The object ID of the platform application's service principal in the dev tenant: what a
/// role assignment names.
pub const PLATFORM_OBJECT_ID: &str = "7f3c2a10-0000-4000-8000-0000000002a0";
pub const DEFAULT_VAULT_NAME: &str = "keyplane-dev";
pub const DEFAULT_VAULT_LOCATION: &str = "eastus";
/// The api-versions the vault answers; the official SDKs send the first.
pub const API_VERSIONS: &[&str] = &[
    "2025-07-01",
    "7.6",
    "7.5",
    "7.4",
    "7.3",
    "7.2",
    "7.1",
    "7.0",
    "2016-10-01",
];
/// Written to the data directory: the dev CA certificate clients trust.
pub const CA_FILE: &str = "azure-ca.pem";
/// Written to the data directory (0600): tenant, vaults, and the dev principals' tokens.
pub const CREDENTIALS_FILE: &str = "azure-credentials.json";
/// Written to the data directory (0600): the platform application's certificate and its
/// private key (PEM), for the certificate credential.
pub const PLATFORM_CERT_FILE: &str = "azure-platform-cert.pem";

const MAX_BODY: usize = 256 * 1024;

/// How to open one vault of the built-in Key Vault.
#[derive(Debug, Clone)]
pub struct AzureVaultConfig {
    /// The vault's name (3–24 letters, digits and dashes); created on first use.
    pub name: String,
    /// The Azure region it reports (`x-ms-keyvault-region`), e.g. `eastus`.
    pub location: String,
    /// Host names and addresses the TLS certificate covers; the first is the vault URL's host.
    pub hosts: Vec<String>,
}

impl Default for AzureVaultConfig {
    fn default() -> Self {
        AzureVaultConfig {
            name: DEFAULT_VAULT_NAME.to_string(),
            location: DEFAULT_VAULT_LOCATION.to_string(),
            hosts: vec!["localhost".to_string(), "127.0.0.1".to_string()],
        }
    }
}

/// A dev principal and its long-lived bearer token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureDevPrincipal {
    pub object_id: String,
    pub display_name: String,
    pub token: String,
}

impl fmt::Debug for AzureDevPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureDevPrincipal")
            .field("object_id", &self.object_id)
            .field("display_name", &self.display_name)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The platform's dev application: a client secret for the token endpoint, and a long-lived
/// token for clients that take a static bearer token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureDevApplication {
    pub client_id: String,
    pub object_id: String,
    pub display_name: String,
    pub client_secret: String,
    pub token: String,
    /// The PEM file with a certificate registered for the application and its private key.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
}

impl fmt::Debug for AzureDevApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureDevApplication")
            .field("client_id", &self.client_id)
            .field("object_id", &self.object_id)
            .field("client_secret", &"<redacted>")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Everything a client needs to use one vault: what `azure-credentials.json` holds for it and
/// what `serve --dev` can copy next to `dev-credentials.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureDevCredentials {
    pub tenant_id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub vault_name: String,
    pub location: String,
    /// `https://<host>:<port>`: the vault URL, also the authority host of the token endpoint.
    pub vault_url: String,
    /// The dev CA certificate to trust (PEM).
    pub ca_file: PathBuf,
    /// The vault's ARM ID, the scope of vault-wide role assignments.
    pub vault_scope: String,
    pub customer: AzureDevPrincipal,
    pub platform: AzureDevApplication,
}

/// One vault, bound to its listener and ready to [`run`](AzureVault::run).
pub struct AzureVault {
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ca_pem: String,
    credentials: AzureDevCredentials,
}

impl fmt::Debug for AzureVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureVault")
            .field("url", &self.ctx.base_url)
            .field("vault", &self.ctx.vault)
            .finish_non_exhaustive()
    }
}

impl AzureVault {
    /// `https://<host>:<port>`.
    pub fn url(&self) -> &str {
        &self.ctx.base_url
    }
    /// The dev CA certificate (PEM) that signs the vault's TLS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    pub fn ca_file(&self) -> &std::path::Path {
        &self.credentials.ca_file
    }
    pub fn credentials(&self) -> &AzureDevCredentials {
        &self.credentials
    }
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
    /// The `host:port` key IDs of this vault use, for `AzureKeyId::parse_allowing`.
    pub fn authority(&self) -> &str {
        self.ctx
            .base_url
            .strip_prefix("https://")
            .unwrap_or(&self.ctx.base_url)
    }

    /// Serves the vault over TLS until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(url = %self.ctx.base_url, vault = %self.ctx.vault, "built-in Azure Key Vault listening (development only)");
        let router = router(self.ctx.clone());
        tls::serve(self.listener, self.tls, router, shutdown).await
    }
}

/// What every handler of one vault shares.
pub(crate) struct Ctx {
    inner: Arc<Inner>,
    /// The vault's name as configured.
    vault: String,
    location: String,
    /// `https://<host>:<port>`, no trailing slash.
    base_url: String,
}

impl Ctx {
    fn vault_of<'a>(&self, st: &'a crate::state::State) -> Result<&'a Vault, VaultError> {
        st.azure
            .vaults
            .get(&self.vault.to_ascii_lowercase())
            .ok_or_else(|| VaultError::internal("the vault is not in the state"))
    }
    fn vault_of_mut<'a>(
        &self,
        st: &'a mut crate::state::State,
    ) -> Result<&'a mut Vault, VaultError> {
        st.azure
            .vaults
            .get_mut(&self.vault.to_ascii_lowercase())
            .ok_or_else(|| VaultError::internal("the vault is not in the state"))
    }

    /// Refuses the caller unless a role assignment grants `action` on the key `name` (or
    /// above it); every per-key operation asks this before it looks at the key.
    fn authorize_key(
        &self,
        st: &crate::state::State,
        caller: &Caller,
        action: &str,
        name: &str,
    ) -> Result<(), VaultError> {
        rbac::authorize(
            self,
            &st.azure,
            caller,
            action,
            &rbac::key_scope(&st.azure, &self.vault, name),
        )
    }

    /// The live key `name` (names are case-insensitive in Key Vault).
    fn key_of<'a>(
        &self,
        st: &'a crate::state::State,
        name: &str,
    ) -> Result<&'a state::KeyEntry, VaultError> {
        self.vault_of(st)?
            .keys
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| VaultError::key_not_found(name))
    }

    fn key_of_mut<'a>(
        &self,
        st: &'a mut crate::state::State,
        name: &str,
    ) -> Result<&'a mut state::KeyEntry, VaultError> {
        self.vault_of_mut(st)?
            .keys
            .get_mut(&name.to_ascii_lowercase())
            .ok_or_else(|| VaultError::key_not_found(name))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub object_id: String,
    pub app_id: Option<String>,
}

/// `maxresults` and `$skiptoken` of a list request.
pub(crate) struct Page {
    max: usize,
    skip: usize,
    api_version: String,
}

impl Page {
    fn apply(&self, ctx: &Ctx, path: &str, items: Vec<Value>) -> Value {
        let total = items.len();
        let value: Vec<Value> = items.into_iter().skip(self.skip).take(self.max).collect();
        let next = self.skip + value.len();
        let next_link = (next < total).then(|| {
            format!(
                "{}{path}?api-version={}&maxresults={}&$skiptoken={next}",
                ctx.base_url, self.api_version, self.max
            )
        });
        json!({ "value": value, "nextLink": next_link })
    }
}

fn valid_vault_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CredentialsFile {
    #[serde(default)]
    customer: Option<AzureDevPrincipal>,
    #[serde(default)]
    platform: Option<AzureDevApplication>,
}

fn new_principal(
    object_id: &str,
    name: &str,
    kind: PrincipalKind,
    app_id: Option<&str>,
) -> Principal {
    Principal {
        object_id: object_id.to_string(),
        display_name: name.to_string(),
        kind,
        app_id: app_id.map(str::to_string),
        token_sha256: String::new(),
        secret_sha256: None,
        certificates: Vec::new(),
    }
}

/// Reuses the token from the credentials file when it still matches the stored hash, else
/// makes a new one (and replaces the hash).
fn token_for(p: &mut Principal, from_file: Option<&str>) -> String {
    if let Some(t) = from_file
        && bool::from(sha256_hex(t).as_bytes().ct_eq(p.token_sha256.as_bytes()))
    {
        return t.to_string();
    }
    let t = auth::new_token();
    p.token_sha256 = sha256_hex(&t);
    t
}

fn secret_for(p: &mut Principal, from_file: Option<&str>) -> String {
    if let (Some(s), Some(h)) = (from_file, &p.secret_sha256)
        && bool::from(sha256_hex(s).as_bytes().ct_eq(h.as_bytes()))
    {
        return s.to_string();
    }
    let s = auth::new_client_secret();
    p.secret_sha256 = Some(sha256_hex(&s));
    s
}

impl DevKms {
    /// Opens (creating on first use) the Azure Key Vault `config.name` of this built-in KMS,
    /// to be served over TLS on `listener`, and writes `azure-ca.pem` and
    /// `azure-credentials.json` to the data directory. Call [`AzureVault::run`] to serve it.
    pub fn azure_vault(
        &self,
        config: AzureVaultConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<AzureVault, DevKmsError> {
        if !valid_vault_name(&config.name) {
            return Err(DevKmsError::InvalidAzureVault(format!(
                "vault name {:?} must be 3-24 letters, digits and dashes, start with a letter and end with a letter or digit",
                config.name
            )));
        }
        if !keyplane_core::regions::is_plausible_region_name(&config.location) {
            return Err(DevKmsError::InvalidAzureVault(format!(
                "location {:?} is not an Azure region name",
                config.location
            )));
        }
        let Some(host) = config.hosts.first() else {
            return Err(DevKmsError::InvalidAzureVault(
                "no host name for the TLS certificate".into(),
            ));
        };
        let port = listener
            .local_addr()
            .map_err(|e| DevKmsError::io(PathBuf::from("<listener>"), e))?
            .port();
        let base_url = format!("https://{host}:{port}");
        let dir = self.inner.store.dir().to_path_buf();
        let creds_path = dir.join(CREDENTIALS_FILE);
        let from_file: CredentialsFile = std::fs::read(&creds_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();

        let now = self.inner.now() as i64;
        let mut st = self.inner.write();
        if st.azure.directory.is_none() {
            let (ca_pem, ca_key) = tls::new_ca()?;
            let ca_key_sealed = self.inner.store.seal_b64(state::CA_KEY_PURPOSE, &ca_key);
            st.azure.directory = Some(Directory {
                tenant_id: DEV_TENANT_ID.to_string(),
                subscription_id: DEV_SUBSCRIPTION_ID.to_string(),
                resource_group: DEV_RESOURCE_GROUP.to_string(),
                principals: vec![
                    new_principal(
                        CUSTOMER_ADMIN_OBJECT_ID,
                        "admin@customer.example",
                        PrincipalKind::User,
                        None,
                    ),
                    new_principal(
                        PLATFORM_OBJECT_ID,
                        "keyplane-platform",
                        PrincipalKind::ServicePrincipal,
                        Some(PLATFORM_APP_ID),
                    ),
                ],
                ca_cert_pem: ca_pem,
                ca_key_sealed,
            });
        }
        let lower = config.name.to_ascii_lowercase();
        if !st.azure.vaults.contains_key(&lower) {
            st.azure.vaults.insert(
                lower.clone(),
                Vault {
                    name: config.name.clone(),
                    location: config.location.clone(),
                    created: now,
                    keys: Default::default(),
                    deleted: Default::default(),
                },
            );
        }
        let vault_scope = rbac::vault_scope(&st.azure, &config.name);
        let subscription_scope = format!("/subscriptions/{DEV_SUBSCRIPTION_ID}");
        for (scope, role_id) in [
            (subscription_scope, rbac::OWNER),
            (vault_scope.clone(), rbac::KEY_VAULT_ADMINISTRATOR),
        ] {
            let exists = st.azure.role_assignments.iter().any(|a| {
                a.principal_id == CUSTOMER_ADMIN_OBJECT_ID
                    && a.role_definition_id == role_id
                    && a.scope.eq_ignore_ascii_case(&scope)
            });
            if !exists {
                st.azure.role_assignments.push(RoleAssignment {
                    name: uuid::Uuid::new_v4().to_string(),
                    scope,
                    role_definition_id: role_id.to_string(),
                    principal_id: CUSTOMER_ADMIN_OBJECT_ID.to_string(),
                    principal_type: PrincipalKind::User.as_str().to_string(),
                    created_on: now,
                });
            }
        }
        let location = st
            .azure
            .vaults
            .get(&lower)
            .map(|v| v.location.clone())
            .unwrap_or_else(|| config.location.clone());
        let Some(directory) = st.azure.directory.as_mut() else {
            return Err(DevKmsError::InvalidAzureVault("directory missing".into()));
        };
        let mut customer = None;
        let mut platform = None;
        for p in directory.principals.iter_mut() {
            if p.object_id == CUSTOMER_ADMIN_OBJECT_ID {
                let token = token_for(p, from_file.customer.as_ref().map(|c| c.token.as_str()));
                customer = Some(AzureDevPrincipal {
                    object_id: p.object_id.clone(),
                    display_name: p.display_name.clone(),
                    token,
                });
            } else if p.object_id == PLATFORM_OBJECT_ID {
                let file = from_file.platform.as_ref();
                let token = token_for(p, file.map(|a| a.token.as_str()));
                let client_secret = secret_for(p, file.map(|a| a.client_secret.as_str()));
                let cert_file = dir.join(PLATFORM_CERT_FILE);
                certificates::dev_certificate_for(p, &cert_file, "keyplane-platform")?;
                platform = Some(AzureDevApplication {
                    client_id: p.app_id.clone().unwrap_or_default(),
                    object_id: p.object_id.clone(),
                    display_name: p.display_name.clone(),
                    client_secret,
                    token,
                    certificate_file: Some(cert_file),
                });
            }
        }
        let ca_pem = directory.ca_cert_pem.clone();
        let ca_key = self
            .inner
            .store
            .open_b64(state::CA_KEY_PURPOSE, &directory.ca_key_sealed)?;
        let (Some(customer), Some(platform)) = (customer, platform) else {
            return Err(DevKmsError::InvalidAzureVault(
                "the default principals are missing".into(),
            ));
        };
        self.inner
            .commit(st)
            .map_err(|e| DevKmsError::InvalidAzureVault(e.message))?;

        let tls = tls::server_config(&ca_key, &config.hosts)?;
        let ca_file = dir.join(CA_FILE);
        crate::state::write_private(&ca_file, ca_pem.as_bytes())?;
        let credentials = AzureDevCredentials {
            tenant_id: DEV_TENANT_ID.to_string(),
            subscription_id: DEV_SUBSCRIPTION_ID.to_string(),
            resource_group: DEV_RESOURCE_GROUP.to_string(),
            vault_name: config.name.clone(),
            location: location.clone(),
            vault_url: base_url.clone(),
            ca_file,
            vault_scope,
            customer,
            platform,
        };
        let body = Zeroizing::new(serde_json::to_vec_pretty(&credentials).unwrap_or_default());
        crate::state::write_private(&creds_path, &body)?;
        Ok(AzureVault {
            ctx: Arc::new(Ctx {
                inner: self.inner.clone(),
                vault: config.name,
                location,
                base_url,
            }),
            listener,
            tls,
            ca_pem,
            credentials,
        })
    }
}

fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

async fn handle(
    AxState(ctx): AxState<Arc<Ctx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    // RSA key generation and private-key operations are CPU work: keep them off the runtime.
    let ctx2 = ctx.clone();
    let method2 = method.clone();
    let resp =
        tokio::task::spawn_blocking(move || dispatch(&ctx2, &method2, &uri, &headers, &body))
            .await
            .unwrap_or_else(|_| {
                VaultError::internal("the request handler panicked").into_response()
            });
    let mut resp = resp;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "devkms azure request");
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.location) {
        h.insert("x-ms-keyvault-region", v);
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", v);
    }
    h.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("keyplane-devkms"),
    );
    resp
}

fn json_response(status: StatusCode, v: Value) -> Response {
    if v.is_null() {
        return status.into_response();
    }
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn dispatch(ctx: &Ctx, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut segs: Vec<&str> = uri.path().split('/').skip(1).collect();
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    // The Entra ID token endpoint: `/{tenant}/oauth2/v2.0/token`.
    if let [tenant, o, v, t] = segs.as_slice()
        && o.eq_ignore_ascii_case("oauth2")
        && *v == "v2.0"
        && t.eq_ignore_ascii_case("token")
    {
        if method != Method::POST {
            return VaultError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "POST only",
            )
            .into_response();
        }
        return match auth::token(ctx, tenant, body) {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => e.into_response(),
        };
    }
    if segs.as_slice() == ["_admin", "azure", "principals"] && method == Method::POST {
        return admin_add_principal(ctx, headers, body);
    }
    if let ["_admin", "azure", "principals", object_id, "certificates"] = segs.as_slice()
        && method == Method::POST
    {
        return admin_add_certificate(ctx, headers, object_id, body);
    }
    let result = (|| -> Result<(StatusCode, Value), VaultError> {
        let api_version = query_param(uri, "api-version").ok_or_else(|| {
            VaultError::bad_parameter("The api-version query parameter is required.")
        })?;
        if segs
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions"))
        {
            let caller = auth::caller(ctx, headers, auth::ARM_RESOURCE)?;
            return arm(ctx, &caller, method, &segs, body);
        }
        let caller = auth::caller(ctx, headers, error::VAULT_RESOURCE)?;
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(VaultError::bad_parameter(format!(
                "The specified version ({api_version}) is not recognized. Consider using the latest supported version ({}).",
                API_VERSIONS[0]
            )));
        }
        let page = Page {
            max: query_param(uri, "maxresults")
                .and_then(|m| m.parse().ok())
                .filter(|m: &usize| (1..=25).contains(m))
                .unwrap_or(25),
            skip: query_param(uri, "$skiptoken")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            api_version,
        };
        route(ctx, &caller, method, &segs, body, &page)
    })();
    match result {
        Ok((status, v)) => json_response(status, v),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, message = %e.message, "devkms azure internal error");
            }
            e.into_response()
        }
    }
}

fn is_version(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn route(
    ctx: &Ctx,
    caller: &Caller,
    method: &Method,
    segs: &[&str],
    body: &[u8],
    page: &Page,
) -> Result<(StatusCode, Value), VaultError> {
    let not_allowed = || {
        VaultError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not allowed here."),
        )
    };
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (l.as_slice(), segs) {
        (["keys"], _) => match *method {
            Method::GET => keys::list(ctx, caller, page),
            _ => Err(not_allowed()),
        },
        (["keys", _], [_, name]) | (["keys", _, ""], [_, name, _]) => match *method {
            Method::GET => keys::get(ctx, caller, name, None),
            Method::PATCH => keys::update(ctx, caller, name, None, body),
            Method::DELETE if segs.len() == 2 => keys::delete(ctx, caller, name),
            _ => Err(not_allowed()),
        },
        (["keys", _, "create"], [_, name, _]) if *method == Method::POST => {
            keys::create(ctx, caller, name, body)
        }
        (["keys", _, "rotate"], [_, name, _]) if *method == Method::POST => {
            versions::rotate(ctx, caller, name)
        }
        (["keys", _, "versions"], [_, name, _]) if *method == Method::GET => {
            versions::list(ctx, caller, name, page)
        }
        (["keys", _, "rotationpolicy"], [_, name, _]) => match *method {
            Method::GET => versions::get_policy(ctx, caller, name),
            Method::PUT => versions::put_policy(ctx, caller, name, body),
            _ => Err(not_allowed()),
        },
        (["keys", _, v], [_, name, _]) if is_version(v) => match *method {
            Method::GET => keys::get(ctx, caller, name, Some(v)),
            Method::PATCH => keys::update(ctx, caller, name, Some(v), body),
            _ => Err(not_allowed()),
        },
        (["keys", _, v, op], [_, name, _, _])
            if (v.is_empty() || is_version(v)) && crypto::CryptoOp::parse(op).is_some() =>
        {
            if *method != Method::POST {
                return Err(not_allowed());
            }
            let op = crypto::CryptoOp::parse(op).ok_or_else(not_allowed)?;
            let version = (!v.is_empty()).then_some(*v);
            crypto::operate(ctx, caller, name, version, op, body)
        }
        // The SDKs leave an empty version out of the path on some calls: `/keys/{name}/wrapkey`.
        (["keys", _, op], [_, name, _]) if crypto::CryptoOp::parse(op).is_some() => {
            if *method != Method::POST {
                return Err(not_allowed());
            }
            let op = crypto::CryptoOp::parse(op).ok_or_else(not_allowed)?;
            crypto::operate(ctx, caller, name, None, op, body)
        }
        (["deletedkeys"], _) if *method == Method::GET => keys::list_deleted(ctx, caller, page),
        (["deletedkeys", _], [_, name]) => match *method {
            Method::GET => keys::get_deleted(ctx, caller, name),
            Method::DELETE => keys::purge(ctx, caller, name),
            _ => Err(not_allowed()),
        },
        (["deletedkeys", _, "recover"], [_, name, _]) if *method == Method::POST => {
            keys::recover(ctx, caller, name)
        }
        (["keys", _, "backup" | "import" | "release" | "attestation"], _)
        | (["keys", _, "restore"], _) => Err(VaultError::bad_parameter(
            "This key operation is not implemented by keyplane's built-in vault.",
        )),
        _ => Err(VaultError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The built-in vault has no resource at /{}.", segs.join("/")),
        )),
    }
}

/// `/subscriptions/…/providers/Microsoft.Authorization/roleAssignments[/{name}]`.
fn arm(
    ctx: &Ctx,
    caller: &Caller,
    method: &Method,
    segs: &[&str],
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    let at = segs.windows(3).position(|w| {
        w[0].eq_ignore_ascii_case("providers")
            && w[1].eq_ignore_ascii_case("Microsoft.Authorization")
            && w[2].eq_ignore_ascii_case("roleAssignments")
    });
    let Some(at) = at else {
        return Err(VaultError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The built-in vault implements only role assignments of the ARM API.",
        ));
    };
    let scope = format!("/{}", segs[..at].join("/"));
    let rest = &segs[at + 3..];
    let name = match rest {
        [] => None,
        [n] => Some(*n),
        _ => {
            return Err(VaultError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "No such ARM resource.",
            ));
        }
    };
    rbac::role_assignments(ctx, caller, method, &scope, name, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPrincipal {
    display_name: String,
    #[serde(default)]
    kind: Option<String>,
}

/// `POST /_admin/azure/principals` (admin token): a new user or service principal and its
/// secrets, shown once. For tests that need another identity than the two defaults.
fn admin_add_principal(ctx: &Ctx, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Err(e) = admin_only(ctx, headers) {
        return e.into_response();
    }
    let req: NewPrincipal = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return VaultError::bad_parameter(format!("bad request: {e}")).into_response(),
    };
    let kind = match req.kind.as_deref().unwrap_or("servicePrincipal") {
        "user" | "User" => PrincipalKind::User,
        "servicePrincipal" | "ServicePrincipal" => PrincipalKind::ServicePrincipal,
        other => {
            return VaultError::bad_parameter(format!("unknown kind {other:?}")).into_response();
        }
    };
    if req.display_name.is_empty() || req.display_name.len() > 120 {
        return VaultError::bad_parameter("displayName must be 1-120 characters").into_response();
    }
    let object_id = uuid::Uuid::new_v4().to_string();
    let app_id =
        (kind == PrincipalKind::ServicePrincipal).then(|| uuid::Uuid::new_v4().to_string());
    let mut p = new_principal(&object_id, &req.display_name, kind, app_id.as_deref());
    let token = token_for(&mut p, None);
    let secret = app_id.as_ref().map(|_| secret_for(&mut p, None));
    let mut st = ctx.inner.write();
    let Some(dir) = st.azure.directory.as_mut() else {
        return VaultError::internal("no directory").into_response();
    };
    dir.principals.push(p);
    if let Err(e) = ctx.inner.commit(st) {
        return VaultError::internal(e.message).into_response();
    }
    json_response(
        StatusCode::CREATED,
        json!({
            "objectId": object_id,
            "displayName": req.display_name,
            "kind": kind.as_str(),
            "appId": app_id,
            "token": token,
            "clientSecret": secret,
        }),
    )
}

fn admin_only(ctx: &Ctx, headers: &HeaderMap) -> Result<(), VaultError> {
    let given = headers
        .get("x-keyplane-admin-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(ctx.inner.admin_token.as_bytes())) {
        return Err(VaultError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "admin token required (x-keyplane-admin-token)",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewCertificate {
    certificate_pem: String,
}

/// `POST /_admin/azure/principals/{objectId}/certificates` (admin token): registers an RSA
/// certificate as a credential of an application, as uploading one to its Entra ID app
/// registration does. Answers its thumbprint.
fn admin_add_certificate(ctx: &Ctx, headers: &HeaderMap, object_id: &str, body: &[u8]) -> Response {
    if let Err(e) = admin_only(ctx, headers) {
        return e.into_response();
    }
    let req: NewCertificate = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return VaultError::bad_parameter(format!("bad request: {e}")).into_response(),
    };
    match add_certificate(&ctx.inner, object_id, &req.certificate_pem) {
        Ok(thumbprint) => json_response(
            StatusCode::CREATED,
            json!({"objectId": object_id, "thumbprint": thumbprint}),
        ),
        Err(e) => e.into_response(),
    }
}

fn add_certificate(inner: &Inner, object_id: &str, pem: &str) -> Result<String, VaultError> {
    let cert = certificates::parse(pem, false).map_err(VaultError::bad_parameter)?;
    let mut st = inner.write();
    let Some(dir) = st.azure.directory.as_mut() else {
        return Err(VaultError::internal("no directory"));
    };
    let Some(p) = dir
        .principals
        .iter_mut()
        .find(|p| p.object_id.eq_ignore_ascii_case(object_id))
    else {
        return Err(VaultError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No principal {object_id} in the directory."),
        ));
    };
    if p.app_id.is_none() {
        return Err(VaultError::bad_parameter(format!(
            "{object_id} is not an application; only applications take certificate credentials"
        )));
    }
    let thumbprint = cert.thumbprint.clone();
    if !p.certificates.iter().any(|c| c.thumbprint == thumbprint) {
        p.certificates.push(cert);
    }
    inner
        .commit(st)
        .map_err(|e| VaultError::internal(e.message))?;
    Ok(thumbprint)
}

impl DevKms {
    /// Registers an RSA certificate (PEM) as a credential of the application whose service
    /// principal is `object_id`; answers its SHA-1 thumbprint (hex). Same as the admin route.
    pub fn azure_add_certificate(&self, object_id: &str, pem: &str) -> Result<String, DevKmsError> {
        add_certificate(&self.inner, object_id, pem)
            .map_err(|e| DevKmsError::InvalidAzureVault(e.message))
    }
}
