//! The application's state, shared by every service: the store, the operator's
//! configuration, the KMS connector, the data plane and the counters. Cheap to clone.
use std::sync::Arc;

use keyplane_kms::KmsConnector;
use keyplane_store::DynStore;

use crate::accounts::Accounts;
use crate::audit::Audit;
use crate::config::Config;
use crate::databases::Databases;
use crate::dataplane::DataPlane;
use crate::keys::Keys;
use crate::keyspaces::{KeyspaceLocks, Keyspaces};
use crate::metrics::Counters;
use crate::monitor::Monitor;
use crate::orgs::Orgs;
use crate::regions::Regions;
use crate::sessions::Sessions;
use crate::tokens::Tokens;
use crate::usage::UsageClock;
use crate::webhooks::{WebhookSender, Webhooks};

#[derive(Clone)]
pub struct App {
    pub store: DynStore,
    pub config: Arc<Config>,
    /// Acts as the platform's identities on customer (and platform) keys.
    pub kms: Arc<dyn KmsConnector>,
    /// Datacenter files and their in-memory data keys.
    pub data: Arc<DataPlane>,
    pub counters: Arc<Counters>,
    /// One keyspace change at a time per database.
    pub(crate) keyspace_locks: Arc<KeyspaceLocks>,
    /// When each database's use was last written to the store.
    pub(crate) usage: Arc<UsageClock>,
    /// One live check at a time per customer key.
    pub(crate) key_checks: Arc<crate::keys::KeyCheckLocks>,
    /// Posts webhook deliveries; None (no dispatcher runs) until the binary wires one.
    pub(crate) webhook_sender: Option<Arc<dyn WebhookSender>>,
    /// Wakes the dispatcher when this process records an event, so a delivery does not wait
    /// for the poll interval.
    pub(crate) webhook_wake: Arc<tokio::sync::Notify>,
}

impl App {
    pub fn new(store: DynStore, config: Config, kms: Arc<dyn KmsConnector>) -> App {
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let data = Arc::new(DataPlane::new(
            store.clone(),
            kms.clone(),
            config.clone(),
            counters.clone(),
        ));
        App {
            store,
            config,
            kms,
            data,
            counters,
            keyspace_locks: Arc::default(),
            usage: Arc::default(),
            key_checks: Arc::default(),
            webhook_sender: None,
            webhook_wake: Arc::default(),
        }
    }

    /// Delivers webhooks through `sender`: the background work then runs the dispatcher.
    pub fn with_webhook_sender(mut self, sender: Arc<dyn WebhookSender>) -> App {
        self.webhook_sender = Some(sender);
        self
    }

    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks(self)
    }

    pub fn orgs(&self) -> Orgs<'_> {
        Orgs(self)
    }

    pub fn tokens(&self) -> Tokens<'_> {
        Tokens(self)
    }

    pub fn accounts(&self) -> Accounts<'_> {
        Accounts(self)
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys(self)
    }

    pub fn data_keys(&self) -> crate::data_keys::DataKeys<'_> {
        crate::data_keys::DataKeys(self)
    }

    pub fn databases(&self) -> Databases<'_> {
        Databases(self)
    }

    pub fn keyspaces(&self) -> Keyspaces<'_> {
        Keyspaces(self)
    }

    pub fn regions(&self) -> Regions<'_> {
        Regions(self)
    }

    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }

    pub fn monitor(&self) -> Monitor<'_> {
        Monitor(self)
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions(self)
    }

    /// Whether this process serves the Data API: an API replica (`--role api`) keeps no
    /// datacenter files, so it refuses every Data API request with this message.
    pub fn serves_data(&self) -> crate::AppResult<()> {
        if self.config.role.holds_data_files() {
            Ok(())
        } else {
            Err(crate::AppError::DatacenterUnavailable(format!(
                "this keyplane process (replica {}) runs with --role api: it serves the DevOps API and the \
                 portal, not the Data API; send Data API requests to a process started with --role all",
                self.config.replica_id
            )))
        }
    }

    /// Whether the application can serve: its store answers.
    pub async fn ready(&self) -> crate::AppResult<()> {
        self.store
            .ping()
            .await
            .map_err(crate::AppError::StoreUnreachable)
    }

    /// Starts the background work (provisioning worker, key health monitor, the reaper of
    /// expired data keys, the suspension sync, the data-key rotation schedule, the keys' rotation watch, the webhook dispatcher); all stop when `stop` turns true.
    pub fn spawn_background(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        vec![
            tokio::spawn(crate::jobs::run_worker(self.clone(), until(stop.clone()))),
            tokio::spawn(crate::monitor::run_monitor(
                self.clone(),
                until(stop.clone()),
            )),
            tokio::spawn(crate::dataplane::run_reaper(
                self.data.clone(),
                until(stop.clone()),
            )),
            tokio::spawn(crate::dataplane::run_suspension_sync(
                self.data.clone(),
                until(stop.clone()),
            )),
            tokio::spawn(crate::rotation_watch::run_rotation_watch(
                self.clone(),
                until(stop.clone()),
            )),
            tokio::spawn(crate::data_keys::run_schedule(
                self.clone(),
                until(stop.clone()),
            )),
            tokio::spawn(crate::webhooks::run_dispatcher(self.clone(), until(stop))),
        ]
    }
}
