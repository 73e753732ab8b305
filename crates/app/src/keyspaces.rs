//! A database's keyspaces beyond its initial one: created and dropped in every live region's
//! store through the data plane's all-regions write (the one the Data API's `createKeyspace`
//! and `dropKeyspace` take), and recorded in the store, which is what the DevOps API lists
//! (`info.keyspaces`) without opening any file. One change at a time per database, so the
//! files and the record cannot end up disagreeing when changes race.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyplane_core::audit::AuditAction;
use keyplane_core::databases::check_keyspace;
use keyplane_core::{DatabaseStatus, Permission};
use keyplane_store::Database;
use uuid::Uuid;

use crate::App;
use crate::audit::record_result;
use crate::auth::Requester;
use crate::dataplane::access::Endpoint;
use crate::error::{AppError, AppResult, ConflictReason, Resource};

/// One lock per database, held across a keyspace change's files and record. Taken after the
/// data plane's write lock (as every write takes it), never before, so it cannot join a cycle
/// with a region being added.
#[derive(Default)]
pub(crate) struct KeyspaceLocks(Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>);

impl KeyspaceLocks {
    fn of(&self, database: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(database).or_default().clone()
    }
}

/// The database's keyspaces in the DevOps API's order: the initial one first, then the others
/// oldest first.
pub fn all_keyspaces(database: &Database, additional: &[String]) -> Vec<String> {
    std::iter::once(database.keyspace.clone())
        .chain(
            additional
                .iter()
                .filter(|k| **k != database.keyspace)
                .cloned(),
        )
        .collect()
}

/// Creates `name` in every live region of the endpoint's database, then records it.
pub(crate) async fn create_on(app: &App, ep: &Endpoint, name: &str) -> AppResult<bool> {
    let database = ep.database().clone();
    let lock = app.keyspace_locks.of(database.id);
    let _one_change = lock.lock().await;
    let owned = name.to_string();
    let created = ep.write(move |s| s.create_keyspace(&owned)).await?;
    if name != database.keyspace {
        app.store.add_keyspace(database.id, name).await?;
    }
    Ok(created)
}

/// Drops `name` in every live region of the endpoint's database, then forgets it (also when
/// the files no longer had it: the record follows the files).
pub(crate) async fn drop_on(app: &App, ep: &Endpoint, name: &str) -> AppResult<bool> {
    let database = ep.database().clone();
    let lock = app.keyspace_locks.of(database.id);
    let _one_change = lock.lock().await;
    let owned = name.to_string();
    let dropped = ep.write(move |s| s.drop_keyspace(&owned)).await?;
    let recorded = app.store.remove_keyspace(database.id, name).await?;
    Ok(dropped || recorded)
}

pub struct Keyspaces<'a>(pub(crate) &'a App);

impl Keyspaces<'_> {
    async fn changeable(&self, who: &Requester, id: Uuid, name: &str) -> AppResult<Database> {
        check_keyspace(name).map_err(|m| AppError::invalid_parameter("keyspaceName", m))?;
        let database = self
            .0
            .store
            .get_database(who.org_id(), id)
            .await?
            .ok_or(AppError::NotFound(Resource::Database(id)))?;
        if database.status != DatabaseStatus::Active {
            return Err(AppError::Conflict(ConflictReason::KeyspaceChange(
                database.status,
            )));
        }
        Ok(database)
    }

    /// Adds a keyspace to the database, in every region. Adding one it has already succeeds,
    /// as the original does.
    pub async fn create(&self, who: &Requester, id: Uuid, name: &str) -> AppResult<()> {
        let res = self.create_checked(who, id, name).await;
        let target = format!("{id}/{}", name.chars().take(64).collect::<String>());
        record_result(
            self.0,
            who,
            AuditAction::DbKeyspaceCreate,
            &target,
            &res,
            "",
        )
        .await;
        res
    }

    async fn create_checked(&self, who: &Requester, id: Uuid, name: &str) -> AppResult<()> {
        who.require(Permission::DbKeyspaceCreate)?;
        let database = self.changeable(who, id, name).await?;
        let ep = self.0.open_database_for_schema(database).await?;
        create_on(self.0, &ep, name).await?;
        Ok(())
    }

    /// Removes a keyspace and every collection in it, in every region. The initial keyspace
    /// stays: the database's endpoints always have it to point at.
    pub async fn drop(&self, who: &Requester, id: Uuid, name: &str) -> AppResult<()> {
        let res = self.drop_checked(who, id, name).await;
        let target = format!("{id}/{}", name.chars().take(64).collect::<String>());
        record_result(self.0, who, AuditAction::DbKeyspaceDrop, &target, &res, "").await;
        res
    }

    async fn drop_checked(&self, who: &Requester, id: Uuid, name: &str) -> AppResult<()> {
        who.require(Permission::DbKeyspaceDrop)?;
        let database = self.changeable(who, id, name).await?;
        if database.keyspace == name {
            return Err(AppError::invalid_parameter(
                "keyspaceName",
                format!(
                    "{name} is the database's initial keyspace and cannot be dropped; drop the others, or terminate the database"
                ),
            ));
        }
        let ep = self.0.open_database_for_schema(database).await?;
        if drop_on(self.0, &ep, name).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(Resource::Keyspace {
                database: id,
                name: name.to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_keyspace_comes_first_and_once() {
        let db = Database {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "d".into(),
            keyspace: "main".into(),
            db_type: keyplane_core::DbType::Serverless,
            provider: keyplane_core::Provider::Aws,
            tier: "serverless".into(),
            capacity_units: 1,
            status: DatabaseStatus::Active,
            message: String::new(),
            owner: "c".into(),
            customer_keyed: false,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            terminated_at: None,
            last_used_at: None,
        };
        assert_eq!(all_keyspaces(&db, &[]), vec!["main"]);
        assert_eq!(
            all_keyspaces(&db, &["b".into(), "main".into(), "a".into()]),
            vec!["main", "b", "a"]
        );
    }

    #[test]
    fn one_lock_per_database() {
        let locks = KeyspaceLocks::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(Arc::ptr_eq(&locks.of(a), &locks.of(a)));
        assert!(!Arc::ptr_eq(&locks.of(a), &locks.of(b)));
    }
}
