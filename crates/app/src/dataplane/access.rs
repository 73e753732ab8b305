//! The Data API's use of the data plane: an endpoint (`{databaseId}-{region}`) resolved for
//! one command of a requester. Reads are served by the endpoint's region; a write is applied
//! to every live region before it is acknowledged, or to none when one cannot take it. A key
//! the KMS now refuses suspends its datacenter at once.
use std::sync::Arc;

use keyplane_core::{DatabaseStatus, Permission};
use keyplane_docstore::{DocStore, DocStoreError};
use keyplane_store::{Database, Datacenter};
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::error::{AppError, AppResult, Resource};
use crate::keys::key_problem;

/// Held by a write command from before it lists the datacenters until it is answered.
type WriteGuard = tokio::sync::OwnedRwLockReadGuard<()>;

/// An endpoint resolved for one command.
pub struct Endpoint {
    app: App,
    database: Database,
    /// The database's live (not terminated) datacenters; for a write, listed under its lock.
    datacenters: Vec<Datacenter>,
    /// The endpoint's region.
    here: Datacenter,
    write_guard: Option<WriteGuard>,
}

impl App {
    /// Resolves `{databaseId}-{region}` for a command that reads (`db-read`) or writes
    /// (`db-write`).
    ///
    /// A write takes the database's write lock (shared with other writes) before it lists the
    /// datacenters: adding a region holds that lock alone while it copies the data and turns
    /// the region ACTIVE, so a write listed under the lock cannot miss a region that just
    /// became ACTIVE, and the one listing serves the whole command.
    pub async fn open_endpoint(
        &self,
        who: &Requester,
        endpoint: &str,
        write: bool,
    ) -> AppResult<Endpoint> {
        who.require(if write {
            Permission::DbWrite
        } else {
            Permission::DbRead
        })?;
        let not_found = || AppError::NotFound(Resource::Endpoint(endpoint.to_string()));
        if endpoint.len() < 38 || !endpoint.is_char_boundary(36) {
            return Err(not_found());
        }
        let (id, region) = endpoint.split_at(36);
        let id: Uuid = id.parse().map_err(|_| not_found())?;
        let region = region.strip_prefix('-').ok_or_else(not_found)?;
        let database = self
            .store
            .get_database(who.org_id(), id)
            .await?
            .ok_or_else(not_found)?;
        // Only after the database is known to be the requester's, so unknown ids add no locks.
        let write_guard = if write {
            Some(self.data.write_lock(&database.id).await.read_owned().await)
        } else {
            None
        };
        let datacenters: Vec<Datacenter> = self
            .store
            .list_datacenters(id)
            .await?
            .into_iter()
            .filter(|d| d.terminated_at.is_none())
            .collect();
        let here = datacenters
            .iter()
            .find(|d| d.region == region)
            .cloned()
            .ok_or_else(not_found)?;
        Ok(Endpoint {
            app: self.clone(),
            database,
            datacenters,
            here,
            write_guard,
        })
    }
}

async fn blocking<T: Send + 'static>(
    store: Arc<DocStore>,
    f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
) -> AppResult<T> {
    Ok(tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(AppError::internal)??)
}

impl Endpoint {
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Opens a datacenter's store; a key the KMS now refuses suspends the datacenter at once.
    async fn open(&self, dc: &Datacenter) -> AppResult<Arc<DocStore>> {
        match self.app.data.docstore(&dc.id).await {
            Ok(s) => Ok(s),
            Err(AppError::Kms(e)) if !e.kind.is_transient() => {
                let reason = key_problem(&e.kind, &dc.key_id, &e.message);
                if let Err(se) = self.app.monitor().suspend(dc, &reason).await {
                    tracing::error!(error = %se, "suspending a datacenter failed");
                }
                Err(AppError::Suspended(reason))
            }
            Err(AppError::Kms(e)) => Err(AppError::KmsUnavailable(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// A read on the endpoint's own region.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
    ) -> AppResult<T> {
        let store = self.open(&self.here).await?;
        blocking(store, f).await
    }

    /// Applies a write to every live region, or to none when one cannot take it.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&DocStore) -> Result<T, DocStoreError> + Send + Sync + Clone + 'static,
    ) -> AppResult<T> {
        if self.write_guard.is_none() {
            return Err(AppError::bug(
                "a data API write ran without the database's write lock",
            ));
        }
        if let Some(s) = self
            .datacenters
            .iter()
            .find(|d| d.status == DatabaseStatus::Suspended)
        {
            return Err(AppError::Suspended(format!(
                "region {} is suspended: {}",
                s.region, s.message
            )));
        }
        let targets: Vec<&Datacenter> = self
            .datacenters
            .iter()
            .filter(|d| d.status == DatabaseStatus::Active)
            .collect();
        let mut stores = Vec::with_capacity(targets.len());
        for dc in &targets {
            stores.push(self.open(dc).await?);
        }
        let mut result = None;
        for store in stores {
            let g = f.clone();
            result = Some(blocking(store, move |s| g(s)).await?);
        }
        result.ok_or_else(|| {
            AppError::DatacenterUnavailable("no region of the database is ACTIVE".to_string())
        })
    }
}
