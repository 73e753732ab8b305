//! The PostgreSQL backend: a deadpool pool of plain-TCP (NoTls) connections with cached
//! prepared statements. Owns the PostgreSQL schema migrations (`migrations/postgres/`) and
//! their cross-process locking.

use crate::{
    AccountAssignment, Enterprise, Organization, Result, Store, StoreError, TokenRecord, now_ms,
    truncate_ms,
};
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use keyplane_core::Provider;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

/// Numbered migrations, applied in order, each in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/postgres/0001_init.sql"))];

/// Key of the transaction-scoped advisory lock that serializes migrations of one database
/// across processes ("kplane" in ASCII). Advisory locks are per database, so stores on other
/// databases of the same server do not wait on each other.
const MIGRATION_LOCK: i64 = 0x6b70_6c61_6e65;

const POOL_SIZE: usize = 16;

/// Bounded so that readiness checks and requests fail instead of hanging while the server is
/// unreachable.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

type Regions = BTreeMap<Provider, Vec<String>>;

pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `url` names and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url.parse()?;
        // Fast recycling skips a round trip per checkout; a broken connection is still
        // noticed (the client reports closed) and replaced.
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        {
            // Two processes racing on CREATE TABLE IF NOT EXISTS can still collide in the
            // catalog; the lock makes the second one wait and then find the table.
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    BIGINT PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await?;
            tx.commit().await?;
        }
        for &(version, sql) in MIGRATIONS {
            apply_migration(&mut client, version, sql)
                .await
                .map_err(|e| StoreError::Migration {
                    version,
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }
}

/// Checks and applies under the advisory lock, in one transaction: a second process waits for
/// the first to commit and then sees the version as applied.
async fn apply_migration(client: &mut Object, version: i64, sql: &str) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = tx
        .query_opt(
            "SELECT 1 FROM schema_migrations WHERE version = $1",
            &[&version],
        )
        .await?
        .is_some();
    if !applied {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Keeps the driver's error (and its source) when that is what failed.
fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Postgres(e),
        other => StoreError::Pool(other.to_string()),
    }
}

/// Turns a foreign-key failure into NotFound(what): the caller named a parent that does not exist.
fn missing_parent(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::NotFound(what)
        } else {
            StoreError::Postgres(e)
        }
    }
}

fn parse_provider(s: &str) -> Result<Provider> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("provider: {e}")))
}

// Column lists as macros so that every query stays a `&'static str` (`concat!`), the key of
// deadpool's statement cache.
macro_rules! org_columns {
    () => {
        "o.id, o.name, o.enterprise_id, o.unlocked_regions, o.created_at"
    };
}
macro_rules! token_columns {
    () => {
        "t.client_id, t.org_id, t.role, t.secret_hash, t.description, t.created_at, t.revoked_at"
    };
}
const TOKEN_COLUMN_COUNT: usize = 7;

fn enterprise_from_row(row: &Row) -> Result<Enterprise> {
    Ok(Enterprise {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        created_at: row.try_get(2)?,
    })
}

fn org_from_row(row: &Row, at: usize) -> Result<Organization> {
    let Json(unlocked_regions): Json<Regions> = row.try_get(at + 3)?;
    Ok(Organization {
        id: row.try_get(at)?,
        name: row.try_get(at + 1)?,
        enterprise_id: row.try_get(at + 2)?,
        unlocked_regions,
        created_at: row.try_get(at + 4)?,
    })
}

fn token_from_row(row: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        client_id: row.try_get(0)?,
        org_id: row.try_get(1)?,
        role: row.try_get(2)?,
        secret_hash: row.try_get(3)?,
        description: row.try_get(4)?,
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

fn assignment_from_row(row: &Row) -> Result<AccountAssignment> {
    Ok(AccountAssignment {
        org_id: row.try_get(0)?,
        provider: parse_provider(row.try_get(1)?)?,
        account_id: row.try_get(2)?,
        ordinal: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT 1").await?;
        client.query_one(&stmt, &[]).await?;
        Ok(())
    }

    async fn create_enterprise(&self, name: &str) -> Result<Enterprise> {
        let enterprise = Enterprise {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("INSERT INTO enterprises (id, name, created_at) VALUES ($1, $2, $3)")
            .await?;
        client
            .execute(
                &stmt,
                &[&enterprise.id, &enterprise.name, &enterprise.created_at],
            )
            .await?;
        Ok(enterprise)
    }

    async fn get_enterprise(&self, id: Uuid) -> Result<Option<Enterprise>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, name, created_at FROM enterprises WHERE id = $1")
            .await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(enterprise_from_row)
            .transpose()
    }

    async fn list_enterprises(&self) -> Result<Vec<Enterprise>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, name, created_at FROM enterprises ORDER BY name, id")
            .await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(enterprise_from_row)
            .collect()
    }

    async fn create_org(&self, name: &str, enterprise_id: Option<Uuid>) -> Result<Organization> {
        let org = Organization {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            enterprise_id,
            unlocked_regions: BTreeMap::new(),
            created_at: now_ms(),
        };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO organizations (id, name, enterprise_id, unlocked_regions, created_at)
                 VALUES ($1, $2, $3, '{}'::jsonb, $4)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[&org.id, &org.name, &org.enterprise_id, &org.created_at],
            )
            .await
            .map_err(missing_parent("enterprise"))?;
        Ok(org)
    }

    async fn get_org(&self, id: Uuid) -> Result<Option<Organization>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                org_columns!(),
                " FROM organizations o WHERE o.id = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .map(|row| org_from_row(&row, 0))
            .transpose()
    }

    async fn list_orgs(&self, enterprise_id: Option<Uuid>) -> Result<Vec<Organization>> {
        let client = self.client().await?;
        let rows = match enterprise_id {
            None => {
                let stmt = client
                    .prepare_cached(concat!(
                        "SELECT ",
                        org_columns!(),
                        " FROM organizations o ORDER BY o.name, o.id"
                    ))
                    .await?;
                client.query(&stmt, &[]).await?
            }
            Some(ent) => {
                let stmt = client
                    .prepare_cached(concat!(
                        "SELECT ",
                        org_columns!(),
                        " FROM organizations o WHERE o.enterprise_id = $1 ORDER BY o.name, o.id"
                    ))
                    .await?;
                client.query(&stmt, &[&ent]).await?
            }
        };
        rows.iter().map(|row| org_from_row(row, 0)).collect()
    }

    async fn set_unlocked_regions(
        &self,
        org_id: Uuid,
        provider: Provider,
        regions: Option<Vec<String>>,
    ) -> Result<()> {
        let client = self.client().await?;
        // One statement each way: the JSON is edited in place, so concurrent edits of two
        // providers of the same organization cannot overwrite each other.
        let changed = match regions {
            None => {
                let stmt = client
                    .prepare_cached(
                        "UPDATE organizations SET unlocked_regions = unlocked_regions - $2::text WHERE id = $1",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&org_id, &provider.as_str()])
                    .await?
            }
            Some(regions) => {
                let stmt = client
                    .prepare_cached(
                        "UPDATE organizations
                         SET unlocked_regions = jsonb_set(unlocked_regions, ARRAY[$2::text], $3::jsonb)
                         WHERE id = $1",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&org_id, &provider.as_str(), &Json(&regions)])
                    .await?
            }
        };
        if changed == 0 {
            Err(StoreError::NotFound("organization"))
        } else {
            Ok(())
        }
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO tokens (client_id, org_id, role, secret_hash, description, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &token.client_id,
                    &token.org_id,
                    &token.role,
                    &token.secret_hash,
                    &token.description,
                    &truncate_ms(token.created_at),
                    &token.revoked_at.map(truncate_ms),
                ],
            )
            .await
            .map_err(missing_parent("organization"))?;
        Ok(())
    }

    async fn authenticate(&self, client_id: &str) -> Result<Option<(TokenRecord, Organization)>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                token_columns!(),
                ", ",
                org_columns!(),
                " FROM tokens t JOIN organizations o ON o.id = t.org_id WHERE t.client_id = $1"
            ))
            .await?;
        match client.query_opt(&stmt, &[&client_id]).await? {
            Some(row) => Ok(Some((
                token_from_row(&row)?,
                org_from_row(&row, TOKEN_COLUMN_COUNT)?,
            ))),
            None => Ok(None),
        }
    }

    async fn list_tokens(&self, org_id: Uuid) -> Result<Vec<TokenRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens t WHERE t.org_id = $1 ORDER BY t.created_at DESC, t.client_id"
            ))
            .await?;
        client
            .query(&stmt, &[&org_id])
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn revoke_token(&self, org_id: Uuid, client_id: &str) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE tokens SET revoked_at = $3 WHERE org_id = $1 AND client_id = $2 AND revoked_at IS NULL",
            )
            .await?;
        Ok(client
            .execute(&stmt, &[&org_id, &client_id, &now_ms()])
            .await?
            == 1)
    }

    async fn assigned_accounts(
        &self,
        org_id: Uuid,
        provider: Provider,
    ) -> Result<Vec<AccountAssignment>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT org_id, provider, account_id, ordinal, created_at FROM account_assignments
                 WHERE org_id = $1 AND provider = $2 ORDER BY ordinal",
            )
            .await?;
        client
            .query(&stmt, &[&org_id, &provider.as_str()])
            .await?
            .iter()
            .map(assignment_from_row)
            .collect()
    }

    async fn account_usage(&self, provider: Provider) -> Result<BTreeMap<String, i64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT account_id, COUNT(*) FROM account_assignments WHERE provider = $1 GROUP BY account_id",
            )
            .await?;
        let mut usage = BTreeMap::new();
        for row in client.query(&stmt, &[&provider.as_str()]).await? {
            usage.insert(row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?);
        }
        Ok(usage)
    }

    async fn try_assign_account(
        &self,
        org_id: Uuid,
        provider: Provider,
        account_id: &str,
        ordinal: i64,
    ) -> Result<bool> {
        let client = self.client().await?;
        // DO NOTHING without a target covers both unique constraints (ordinal and account)
        // and nothing else: a missing organization still fails.
        let stmt = client
            .prepare_cached(
                "INSERT INTO account_assignments (org_id, provider, account_id, ordinal, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .await?;
        let n = client
            .execute(
                &stmt,
                &[
                    &org_id,
                    &provider.as_str(),
                    &account_id,
                    &ordinal,
                    &now_ms(),
                ],
            )
            .await
            .map_err(missing_parent("organization"))?;
        Ok(n == 1)
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT value FROM settings WHERE key = $1")
            .await?;
        Ok(client
            .query_opt(&stmt, &[&key])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?)
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let mut client = self.client().await?;
        // Two statements on purpose: under READ COMMITTED the SELECT takes a fresh snapshot and
        // so sees a value that a concurrent transaction committed while the INSERT waited on
        // it, which a single INSERT … RETURNING / CTE would not.
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .await?;
        tx.execute(&insert, &[&key, &value]).await?;
        let select = tx
            .prepare_cached("SELECT value FROM settings WHERE key = $1")
            .await?;
        let stored: String = tx.query_one(&select, &[&key]).await?.try_get(0)?;
        tx.commit().await?;
        Ok(stored)
    }
}
