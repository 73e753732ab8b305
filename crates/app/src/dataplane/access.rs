//! The Data API's use of the data plane: an endpoint (`{databaseId}-{region}`) resolved for
//! one command of a requester. Reads are served by the endpoint's region; a write runs in the
//! endpoint's region and is copied by `_id` to every other ACTIVE region before it is
//! acknowledged, one write per database at a time (`super::order`). A key the KMS now refuses
//! suspends its datacenter at once.
use std::sync::Arc;

use keyplane_core::{DatabaseStatus, Permission};
use keyplane_docstore::{DocStore, DocStoreError};
use keyplane_store::{Database, Datacenter};
use uuid::Uuid;

use super::order::{self, Region};
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
        // A command on one of its regions: a use of the database's data (recorded cheaply).
        self.note_use(database.id);
        Ok(Endpoint {
            app: self.clone(),
            database,
            datacenters,
            here,
            write_guard,
        })
    }
}

impl App {
    /// Resolves a database for a schema change through the DevOps API (its keyspaces), which
    /// the caller's own permission already allowed: the write path of the Data API's
    /// `createKeyspace`, served by the first live region.
    pub(crate) async fn open_database_for_schema(&self, database: Database) -> AppResult<Endpoint> {
        let write_guard = self.data.write_lock(&database.id).await.read_owned().await;
        let datacenters: Vec<Datacenter> = self
            .store
            .list_datacenters(database.id)
            .await?
            .into_iter()
            .filter(|d| d.terminated_at.is_none())
            .collect();
        let here = datacenters.first().cloned().ok_or_else(|| {
            AppError::DatacenterUnavailable(format!("database {} has no live region", database.id))
        })?;
        Ok(Endpoint {
            app: self.clone(),
            database,
            datacenters,
            here,
            write_guard: Some(write_guard),
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

    /// Creates a keyspace in every live region and records it for the database's listing
    /// (the Data API's `createKeyspace`); false when it existed already.
    pub async fn create_keyspace(&self, name: &str) -> AppResult<bool> {
        crate::keyspaces::create_on(&self.app, self, name).await
    }

    /// Drops a keyspace, and every collection in it, in every live region, and forgets it
    /// (the Data API's `dropKeyspace`); false when it did not exist.
    pub async fn drop_keyspace(&self, name: &str) -> AppResult<bool> {
        crate::keyspaces::drop_on(&self.app, self, name).await
    }

    /// A read on the endpoint's own region. The first access of a database with several
    /// regions in this process settles them first (completes a write a crash interrupted), so
    /// no region serves what another lost.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
    ) -> AppResult<T> {
        let store = self.open(&self.here).await?;
        let serving = self.serving();
        if serving.len() > 1 {
            let order = self.app.data.order(&self.database.id);
            // Busy means a write holds it, and that write settles the regions itself.
            let unknown = order.last.try_lock().map(|l| l.is_none()).unwrap_or(false);
            if unknown && let Err(e) = self.settle_for_read(&serving).await {
                // The read is still the region's own committed state; the next write tries
                // again (and fails if it cannot settle).
                tracing::warn!(database = %self.database.id, error = %e, "could not settle the regions before a read");
            }
        }
        blocking(store, f).await
    }

    async fn settle_for_read(&self, serving: &[&Datacenter]) -> AppResult<()> {
        let order = self.app.data.order(&self.database.id);
        let mut last = order.last.lock().await;
        if last.is_none()
            && self
                .datacenters
                .iter()
                .all(|d| d.status != DatabaseStatus::Suspended)
        {
            let regions = self.open_all(serving).await?;
            *last = Some(settle(regions).await?);
        }
        Ok(())
    }

    /// The ACTIVE datacenters, the endpoint's own first when it is one of them: the order
    /// in which a write visits them (the first is its primary).
    fn serving(&self) -> Vec<&Datacenter> {
        let mut v: Vec<&Datacenter> = self
            .datacenters
            .iter()
            .filter(|d| d.status == DatabaseStatus::Active)
            .collect();
        if let Some(i) = v.iter().position(|d| d.id == self.here.id) {
            v.swap(0, i);
        }
        v
    }

    async fn open_all(&self, dcs: &[&Datacenter]) -> AppResult<Vec<Region>> {
        let mut out = Vec::with_capacity(dcs.len());
        for dc in dcs {
            out.push((dc.id.clone(), self.open(dc).await?));
        }
        Ok(out)
    }

    /// Applies a write to every ACTIVE region: chosen and run in the first (the endpoint's
    /// region when ACTIVE), copied by `_id` to the others, before the next write of the
    /// database may start. Refused when a region is suspended.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DocStore) -> Result<T, DocStoreError> + Send + 'static,
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
        let targets = self.serving();
        if targets.is_empty() {
            return Err(AppError::DatacenterUnavailable(
                "no region of the database is ACTIVE".to_string(),
            ));
        }
        let regions = self.open_all(&targets).await?;
        if regions.len() == 1 {
            // One region: nothing to order or copy.
            let store = regions[0].1.clone();
            return blocking(store, f).await;
        }
        let order = self.app.data.order(&self.database.id);
        let mut last = order.last.lock().await;
        let known = match *last {
            Some(n) => n,
            None => settle(regions.clone()).await?,
        };
        // Unknown again until every region has this write.
        *last = None;
        let seq = known + 1;
        let (result, changed) =
            tokio::task::spawn_blocking(move || order::apply(&regions, 0, seq, f))
                .await
                .map_err(AppError::internal)??;
        *last = Some(if changed { seq } else { known });
        Ok(result?)
    }
}

/// [`order::settle`] on the blocking pool.
async fn settle(regions: Vec<Region>) -> AppResult<u64> {
    tokio::task::spawn_blocking(move || order::settle(&regions))
        .await
        .map_err(AppError::internal)?
}
