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
use crate::metrics::Counters;
use crate::monitor::Monitor;
use crate::orgs::Orgs;
use crate::tokens::Tokens;

#[derive(Clone)]
pub struct App {
    pub store: DynStore,
    pub config: Arc<Config>,
    /// Acts as the platform's identities on customer (and platform) keys.
    pub kms: Arc<dyn KmsConnector>,
    /// Datacenter files and their in-memory data keys.
    pub data: Arc<DataPlane>,
    pub counters: Arc<Counters>,
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
        }
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

    pub fn databases(&self) -> Databases<'_> {
        Databases(self)
    }

    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }

    pub fn monitor(&self) -> Monitor<'_> {
        Monitor(self)
    }

    /// Whether the application can serve: its store answers.
    pub async fn ready(&self) -> crate::AppResult<()> {
        self.store
            .ping()
            .await
            .map_err(crate::AppError::StoreUnreachable)
    }

    /// Starts the background work (provisioning worker, key health monitor); both stop when
    /// `stop` turns true.
    pub fn spawn_background(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        vec![
            tokio::spawn(crate::jobs::run_worker(self.clone(), until(stop.clone()))),
            tokio::spawn(crate::monitor::run_monitor(self.clone(), until(stop))),
        ]
    }
}
