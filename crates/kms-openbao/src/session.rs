//! The platform's token on one customer's OpenBao: logging in with the AppRole, renewing the
//! token before its lease runs out, logging in again at the lease's maximum, and telling an
//! expired or revoked token (log in again) from a policy refusal (report it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use keyplane_core::OpenbaoRole;
use keyplane_core::platform_jwt::LoginClaims;
use keyplane_kms::LoginCredential;
use keyplane_kms::{ErrorKind, KmsError, Result};
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::JwtSigner;
use crate::errors::{kind_for_login_status, kind_for_status, status_error};
use crate::transport::Server;

/// A token in hand and which login produced it, so that a caller that saw it fail can drop
/// exactly that one and not a newer token another caller already obtained.
pub(crate) struct Token {
    pub value: Zeroizing<String>,
    pub generation: u64,
}

struct Session {
    token: Zeroizing<String>,
    generation: u64,
    /// When to renew (half the lease), None for a token without expiry.
    renew_at: Option<Instant>,
    /// When the lease ends, None for a token without expiry.
    expires_at: Option<Instant>,
    renewable: bool,
    /// The lease the login granted: the increment asked for on renewal.
    lease: Duration,
}

/// Counts of what the session did, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub logins: u64,
    pub renewals: u64,
}

pub(crate) struct Sessions {
    role: OpenbaoRole,
    credential: LoginCredential,
    jwt: Option<Arc<JwtSigner>>,
    state: Mutex<Option<Session>>,
    generations: AtomicU64,
    logins: AtomicU64,
    renewals: AtomicU64,
}

#[derive(Deserialize)]
struct AuthReply {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    #[serde(deserialize_with = "crate::transport::secret_string")]
    client_token: Zeroizing<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// Time kept in hand before a lease ends, so a request started just before expiry still
/// carries a live token.
fn margin(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(30))
}

impl Sessions {
    pub fn new(
        role: OpenbaoRole,
        credential: LoginCredential,
        jwt: Option<Arc<JwtSigner>>,
    ) -> Sessions {
        Sessions {
            role,
            credential,
            jwt,
            state: Mutex::new(None),
            generations: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    pub fn role(&self) -> &OpenbaoRole {
        &self.role
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            logins: self.logins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }

    /// A live token: the cached one, renewed first when half its lease has passed, or a new
    /// login. Callers wait on each other here, so one login serves them all.
    pub async fn token(&self, server: &Server, operation: &'static str) -> Result<Token> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(s) = state.as_mut() {
            let expired = s.expires_at.is_some_and(|end| now + margin(s.lease) >= end);
            let due = s.renew_at.is_some_and(|at| now >= at);
            if !expired && !due {
                return Ok(Token {
                    value: s.token.clone(),
                    generation: s.generation,
                });
            }
            if !expired && s.renewable && self.renew(server, s).await {
                return Ok(Token {
                    value: s.token.clone(),
                    generation: s.generation,
                });
            }
            if !expired && !s.renewable {
                // Not renewable and not expired: use it until the margin, then log in.
                s.renew_at = None;
                return Ok(Token {
                    value: s.token.clone(),
                    generation: s.generation,
                });
            }
        }
        let session = self.login(server, operation).await?;
        let token = Token {
            value: session.token.clone(),
            generation: session.generation,
        };
        *state = Some(session);
        Ok(token)
    }

    /// Forgets the token of `generation` if it is still the current one.
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|s| s.generation == generation) {
            *state = None;
        }
    }

    /// Whether the server still honours `token` (`auth/token/lookup-self`, which every
    /// token's default policy allows). A 403 here means the token expired or was revoked.
    pub async fn is_live(
        &self,
        server: &Server,
        operation: &'static str,
        token: &Token,
    ) -> Result<bool> {
        let reply = server
            .send(
                operation,
                Method::GET,
                "auth/token/lookup-self",
                Some(&token.value),
                None,
            )
            .await?;
        match reply.status {
            200..=299 => Ok(true),
            401 | 403 => Ok(false),
            status => {
                let errors = reply.errors();
                let kind = kind_for_status(status, &errors, "read auth/token/lookup-self");
                Err(status_error(
                    operation,
                    kind,
                    status,
                    errors.clone(),
                    format!(
                        "checking the platform's token failed: HTTP {status} {}",
                        errors.join("; ")
                    ),
                ))
            }
        }
    }

    /// Renews `s` in place; false when the server refused (the caller then logs in again).
    async fn renew(&self, server: &Server, s: &mut Session) -> bool {
        let body = format!("{{\"increment\":\"{}s\"}}", s.lease.as_secs());
        let reply = match server
            .send(
                "RenewToken",
                Method::POST,
                "auth/token/renew-self",
                Some(&s.token),
                Some(body.as_bytes()),
            )
            .await
        {
            Ok(r) if r.is_success() => r,
            Ok(r) => {
                tracing::debug!(status = r.status, errors = ?r.errors(), "OpenBao refused to renew the platform's token; logging in again");
                return false;
            }
            Err(e) => {
                tracing::debug!(error = %e, "renewing the platform's token failed; logging in again");
                return false;
            }
        };
        let Ok(AuthReply { auth: Some(auth) }) = reply.json::<AuthReply>("RenewToken") else {
            return false;
        };
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let granted = Duration::from_secs(auth.lease_duration);
        s.expires_at = Some(now + granted);
        // Less than asked means the role's token_max_ttl caps it: no renewal can extend it,
        // so use it to the end and log in then.
        s.renew_at = if granted < s.lease {
            None
        } else {
            Some(now + granted / 2)
        };
        true
    }

    async fn login(&self, server: &Server, operation: &'static str) -> Result<Session> {
        let (body, what) = match &self.credential {
            LoginCredential::AppRole { role_id, secret_id } => (
                serde_json::json!({
                    "role_id": role_id.as_str(),
                    "secret_id": secret_id.as_str(),
                }),
                "the role ID or secret ID is wrong, revoked or expired, or the role no longer exists",
            ),
            LoginCredential::PlatformJwt { subject } => {
                let signer = self.jwt.as_ref().ok_or_else(|| {
                    KmsError::new(
                        ErrorKind::Credentials,
                        operation,
                        "this deployment has no JWT signing key for OpenBao JWT roles",
                    )
                })?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                let jwt = signer.key.mint(&LoginClaims {
                    subject,
                    audience: &server.address,
                    now,
                });
                (
                    serde_json::json!({"role": self.role.role_name(), "jwt": jwt.as_str()}),
                    "the JWT role does not trust keyplane's JWT: check the mount's jwt_validation_pubkeys and \
                     bound_issuer, and the role's bound_subject and bound_audiences (GET …/policy?auth=jwt \
                     prints them), or the role no longer exists",
                )
            }
        };
        let body = Zeroizing::new(
            serde_json::to_vec(&body)
                .map_err(|e| KmsError::new(ErrorKind::Other, operation, e.to_string()))?,
        );
        let path = self.role.login_path();
        let reply = server
            .send(operation, Method::POST, &path, None, Some(&body))
            .await?;
        if !reply.is_success() {
            let errors = reply.errors();
            let kind = kind_for_login_status(reply.status, &errors);
            let message = format!(
                "OpenBao at {}{} refused the platform's login as {} (HTTP {}: {}); {what}",
                server.address,
                server
                    .namespace
                    .as_deref()
                    .map(|ns| format!(" (namespace {ns})"))
                    .unwrap_or_default(),
                self.role.provider_id(),
                reply.status,
                errors.join("; "),
            );
            return Err(status_error(operation, kind, reply.status, errors, message));
        }
        let auth = reply.json::<AuthReply>(operation)?.auth.ok_or_else(|| {
            KmsError::new(
                ErrorKind::Credentials,
                operation,
                "OpenBao's login answer carries no token",
            )
        })?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let lease = Duration::from_secs(auth.lease_duration);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(role = %self.role.provider_id(), lease_secs = lease.as_secs(), renewable = auth.renewable, "logged in to OpenBao");
        Ok(Session {
            token: auth.client_token,
            generation,
            renew_at: (!lease.is_zero() && auth.renewable).then(|| now + lease / 2),
            expires_at: (!lease.is_zero()).then(|| now + lease),
            renewable: auth.renewable,
            lease,
        })
    }
}
