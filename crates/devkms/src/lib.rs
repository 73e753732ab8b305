//! keyplane's built-in KMS: an AWS-KMS-compatible server (JSON 1.1 over HTTP, SigV4) that, unlike
//! public emulators, enforces key policies (through `keyplane_core::policy`), key states, grants
//! and cross-account rules the way AWS KMS does, so the bring-your-own-key flow can be developed
//! and tested end to end without an AWS account.
//!
//! **For development and tests only, not for production secrets.** Its root key sits in a file
//! next to the state it protects, the generated access keys are written to `credentials.json`
//! in the data directory, and its clock can be moved by an admin route when configured to.
//!
//! It also speaks Azure Key Vault over TLS on a listener of its own (`azure`, see
//! [`DevKms::azure_vault`]).
//!
//! The crate owns: the wire protocol and SigV4 verification, the identities (accounts, IAM users
//! and roles with access keys), key storage and the KMS operations, and the admin routes
//! (`/_admin/identities`, `/_admin/clock/advance`). `gcp/` is the Google Cloud KMS surface
//! (REST v1 under `/v1/`) on the same port, state and root key.
//!
//! A change is persisted (temp file, fsync, rename) before its request is answered, on the
//! blocking pool: handlers only take the snapshot, and the router's `persist` layer writes it
//! after the handler, never on an async worker.
#![forbid(unsafe_code)]

mod admin;
mod aws;
pub mod azure;
mod crypto;
mod error;
mod gcp;
mod sigv4;
mod state;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use zeroize::{Zeroize, Zeroizing};

pub use azure::{
    AzureDevApplication, AzureDevCredentials, AzureDevPrincipal, AzureVault, AzureVaultConfig,
};
pub use error::DevKmsError;
pub use gcp::{GCP_CUSTOMER, GCP_CUSTOMER_PROJECT, GCP_PLATFORM, GCP_PLATFORM_PROJECT};
pub use state::{IdentityConfig, IdentityKind};

use error::ApiError;
use state::{Identity, State, Store};

/// The sample customer's account (holds `user/admin`).
pub const CUSTOMER_ACCOUNT: &str = "111111111111";
/// The platform's account (holds `role/creator` and `role/keyplane-volumes`).
pub const PROVIDER_ACCOUNT: &str = "222222222222";

/// How to open a [`DevKms`].
#[derive(Debug, Clone)]
pub struct DevKmsConfig {
    /// Holds the root key, admin token, state and `credentials.json`; created if missing.
    pub data_dir: PathBuf,
    /// Identities to create besides the defaults (kept if they already exist).
    pub extra_identities: Vec<IdentityConfig>,
    /// Lets `POST /_admin/clock/advance` move time forward; for tests only.
    pub allow_clock_control: bool,
}

/// The signing credentials of one identity.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    /// Wiped when dropped; never shown by `Debug`.
    pub secret_access_key: String,
    /// The IAM ARN (`…:user/NAME` or `…:role/NAME`).
    pub principal_arn: String,
    pub account: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("principal_arn", &self.principal_arn)
            .field("account", &self.account)
            .finish()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
    }
}

impl Credentials {
    fn of(i: &Identity) -> Credentials {
        Credentials {
            access_key_id: i.access_key_id.clone(),
            secret_access_key: i.secret.to_string(),
            principal_arn: i.principal_arn(),
            account: i.account.clone(),
        }
    }
}

/// The server: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct DevKms {
    inner: Arc<Inner>,
}

impl fmt::Debug for DevKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevKms")
            .field("allow_clock_control", &self.inner.allow_clock_control)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    state: RwLock<State>,
    store: Store,
    admin_token: Zeroizing<String>,
    /// Seconds added to the wall clock by `/_admin/clock/advance`.
    clock_offset: AtomicI64,
    allow_clock_control: bool,
    /// The newest snapshot taken by a request and not yet written (see `persist`).
    pending: Mutex<Option<(u64, Zeroizing<Vec<u8>>)>>,
    /// Microseconds every request waits before it is handled ([`DevKms::set_added_latency`]).
    added_latency_us: AtomicU64,
}

tokio::task_local! {
    /// Inside a request: the newest generation the request committed, which the `persist`
    /// layer writes before the answer leaves.
    static COMMITTED: Arc<AtomicU64>;
}

impl Inner {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since the epoch on the server's (movable) clock.
    pub(crate) fn now(&self) -> f64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        wall + self.clock_offset.load(Ordering::Relaxed) as f64
    }

    /// Persists the state after a change: the snapshot is taken under the lock. Inside a
    /// request the file is written by the `persist` layer on the blocking pool before the
    /// answer leaves; elsewhere (start, the sweeper on the blocking pool) right here.
    pub(crate) fn commit(&self, mut st: RwLockWriteGuard<'_, State>) -> Result<(), ApiError> {
        st.generation += 1;
        let generation = st.generation;
        let bytes = Zeroizing::new(
            self.store
                .snapshot(&st, self.clock_offset.load(Ordering::Relaxed)),
        );
        drop(st);
        if COMMITTED
            .try_with(|c| c.fetch_max(generation, Ordering::SeqCst))
            .is_ok()
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.as_ref().is_none_or(|(g, _)| *g < generation) {
                *pending = Some((generation, bytes));
            }
            return Ok(());
        }
        self.store.write(generation, &bytes).map_err(persist_error)
    }

    /// Writes the newest snapshot if generation `upto` is not on disk yet (blocking). A
    /// snapshot taken by another request covers this one's change as well.
    fn persist_upto(&self, upto: u64) -> Result<(), ApiError> {
        loop {
            if self.store.written() >= upto {
                return Ok(());
            }
            let snapshot = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match snapshot {
                Some((generation, bytes)) => self
                    .store
                    .write(generation, &bytes)
                    .map_err(persist_error)?,
                // Another request took it (it is at least `upto`) and `written` waited for its
                // write; if that write failed, this change is not on disk either.
                None if self.store.written() >= upto => return Ok(()),
                None => {
                    return Err(ApiError::internal(
                        "keyplane's KMS could not persist its state",
                    ));
                }
            }
        }
    }

    /// Deletes keys past their deletion date and performs due automatic rotations.
    pub(crate) fn sweep(&self) -> Result<(), ApiError> {
        let now = self.now();
        let mut st = self.write();
        let mut changed = st.purge_deleted(now);
        changed |= st.azure.purge_due(now as i64);
        for k in st.keys.values_mut() {
            let before = k.materials.len();
            aws::auto_rotate(self, k, now);
            changed |= k.materials.len() != before;
        }
        changed |= gcp::sweep(self, &mut st.gcp, now);
        if changed { self.commit(st) } else { Ok(()) }
    }

    /// Creates the identity if no identity of that account, kind and name exists yet (or
    /// replaces its keys when the config names them); returns its access key id.
    pub(crate) fn ensure_identity(
        st: &mut State,
        cfg: &IdentityConfig,
    ) -> Result<String, DevKmsError> {
        if !state::valid_account(&cfg.account) {
            return Err(DevKmsError::InvalidIdentity(format!(
                "account {:?} must be 12 digits",
                cfg.account
            )));
        }
        if !state::valid_name(&cfg.name) {
            return Err(DevKmsError::InvalidIdentity(format!(
                "name {:?} is not a valid IAM name",
                cfg.name
            )));
        }
        let existing = st
            .identities
            .values()
            .find(|i| i.account == cfg.account && i.kind == cfg.kind && i.name == cfg.name)
            .map(|i| i.access_key_id.clone());
        let wanted_key = cfg.access_key_id.clone();
        if let Some(akid) = &existing {
            let same_key = wanted_key.as_ref().is_none_or(|k| k == akid);
            let same_secret = cfg.secret_access_key.as_ref().is_none_or(|s| {
                st.identities
                    .get(akid)
                    .is_some_and(|i| i.secret.as_str() == s)
            });
            if same_key && same_secret {
                return Ok(akid.clone());
            }
            st.identities.remove(akid);
        }
        let akid = wanted_key.unwrap_or_else(|| state::new_access_key_id(cfg.kind));
        if akid.len() < 16 || akid.len() > 128 || !akid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(DevKmsError::InvalidIdentity(format!(
                "access key id {akid:?} must be 16-128 letters or digits"
            )));
        }
        if let Some(other) = st.identities.get(&akid) {
            return Err(DevKmsError::InvalidIdentity(format!(
                "access key id {akid} already belongs to {}",
                other.principal_arn()
            )));
        }
        let secret = Zeroizing::new(
            cfg.secret_access_key
                .clone()
                .unwrap_or_else(state::new_secret),
        );
        st.identities.insert(
            akid.clone(),
            Identity {
                account: cfg.account.clone(),
                kind: cfg.kind,
                name: cfg.name.clone(),
                access_key_id: akid.clone(),
                secret,
            },
        );
        Ok(akid)
    }
}

fn default_identities() -> Vec<IdentityConfig> {
    let id = |account: &str, kind, name: &str| IdentityConfig {
        account: account.to_string(),
        kind,
        name: name.to_string(),
        access_key_id: None,
        secret_access_key: None,
    };
    vec![
        id(CUSTOMER_ACCOUNT, IdentityKind::User, "admin"),
        id(PROVIDER_ACCOUNT, IdentityKind::Role, "creator"),
        id(PROVIDER_ACCOUNT, IdentityKind::Role, "keyplane-volumes"),
    ]
}

impl DevKms {
    /// Opens the data directory (creating the root key, admin token and default identities on
    /// first start) and reloads any saved state.
    pub fn open(config: DevKmsConfig) -> Result<DevKms, DevKmsError> {
        let (store, admin_token) = Store::open(&config.data_dir)?;
        let (mut st, offset) = store.load()?.unwrap_or_default();
        for cfg in default_identities()
            .iter()
            .chain(config.extra_identities.iter())
        {
            Inner::ensure_identity(&mut st, cfg)?;
        }
        gcp::ensure_defaults(&mut st.gcp)?;
        let inner = Inner {
            state: RwLock::new(State::default()),
            store,
            admin_token,
            clock_offset: AtomicI64::new(offset),
            allow_clock_control: config.allow_clock_control,
            pending: Mutex::new(None),
            added_latency_us: AtomicU64::new(0),
        };
        st.generation = 1;
        let bytes = Zeroizing::new(inner.store.snapshot(&st, offset));
        inner.store.write(1, &bytes)?;
        inner.store.write_credentials(&st)?;
        *inner.write() = st;
        let kms = DevKms {
            inner: Arc::new(inner),
        };
        kms.inner.sweep().map_err(|e| DevKmsError::CorruptState {
            path: config.data_dir.join(state::STATE_FILE),
            reason: e.message,
        })?;
        Ok(kms)
    }

    /// The credentials of an identity, by its IAM ARN (`arn:aws:iam::111111111111:user/admin`,
    /// `arn:aws:iam::222222222222:role/creator`) or its assumed-role ARN.
    pub fn credentials(&self, principal_arn: &str) -> Option<Credentials> {
        self.inner
            .read()
            .identity_by_principal(principal_arn)
            .map(Credentials::of)
    }

    /// The token the admin routes require in `x-keyplane-admin-token`.
    pub fn admin_token(&self) -> String {
        self.inner.admin_token.to_string()
    }

    /// Makes every request wait `latency` before it is handled, like a KMS across a network
    /// (benchmarks: the key monitor against 5 ms). Zero, the default, adds nothing.
    pub fn set_added_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner.added_latency_us.store(us, Ordering::Relaxed);
    }

    /// The KMS endpoint (`POST /`) and the admin routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(aws::handle))
            .route("/_admin/identities", post(admin::add_identity))
            .route("/_admin/clock/advance", post(admin::advance_clock))
            .merge(gcp::routes())
            .with_state(self.inner.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.inner.clone(),
                persist,
            ))
    }

    /// Serves on `listener` until `shutdown` completes, sweeping expired keys and due rotations
    /// every few seconds.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let inner = self.inner.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let inner = inner.clone();
                // A sweep that changed something writes the state file: off the async workers.
                match tokio::task::spawn_blocking(move || inner.sweep()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e.message, "devkms sweep failed"),
                    Err(e) => tracing::warn!(error = %e, "devkms sweep failed"),
                }
            }
        });
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        sweeper.abort();
        result
    }
}

fn persist_error(e: DevKmsError) -> ApiError {
    tracing::error!(error = %e, "devkms could not persist its state");
    ApiError::internal("keyplane's KMS could not persist its state")
}

/// Around every request: the added latency, then the handler, then the write of what it
/// committed (on the blocking pool) before its answer goes out, so an answered change is on
/// disk and no fsync runs on an async worker.
async fn persist(AxState(inner): AxState<Arc<Inner>>, req: Request, next: Next) -> Response {
    let latency = inner.added_latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let committed = Arc::new(AtomicU64::new(0));
    let resp = COMMITTED.scope(committed.clone(), next.run(req)).await;
    let upto = committed.load(Ordering::SeqCst);
    if upto == 0 {
        return resp;
    }
    match tokio::task::spawn_blocking(move || inner.persist_upto(upto)).await {
        Ok(Ok(())) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "devkms could not persist its state");
            ApiError::internal("keyplane's KMS could not persist its state").into_response()
        }
    }
}
