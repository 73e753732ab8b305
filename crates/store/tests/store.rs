//! The Store contract, written once and run on both backends: every suite runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (from `KEYPLANE_TEST_PG_URL`; run
//! `scripts/with-postgres cargo test -p keyplane-store` to get one).

use chrono::{Duration, SubsecRound, Utc};
use keyplane_core::audit::{AuditFields, GENESIS, entry_hash};
use keyplane_core::{DbType, KeyStatus, Provider};
use keyplane_store::{
    AuditEntry, CustomerKey, DynStore, KeyStatusUpdate, NewAuditEntry, PostgresStore, SqliteStore,
    StoreError, TokenRecord,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

const PG_ENV: &str = "KEYPLANE_TEST_PG_URL";

/// Where a suite's store lives, so that suites about reopening can open it again.
enum Harness {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        db: String,
        url: String,
    },
}

impl Harness {
    fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // A missing parent directory: open must create it.
        let path = dir.path().join("nested").join("keyplane.db");
        Harness::Sqlite { _dir: dir, path }
    }

    async fn postgres() -> Harness {
        let admin_url = std::env::var(PG_ENV).unwrap_or_else(|_| {
            panic!(
                "{PG_ENV} is not set, so the PostgreSQL half of the store tests cannot run. \
                 Run them with a throwaway server: scripts/with-postgres cargo test -p keyplane-store"
            )
        });
        let db = format!("kp_test_{}", Uuid::new_v4().simple());
        admin_exec(&admin_url, &format!("CREATE DATABASE {db}")).await;
        let url = with_database(&admin_url, &db);
        Harness::Postgres { admin_url, db, url }
    }

    async fn open(&self) -> DynStore {
        match self {
            Harness::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Harness::Postgres { url, .. } => Arc::new(PostgresStore::connect(url).await.unwrap()),
        }
    }

    fn url(&self) -> String {
        match self {
            Harness::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Harness::Postgres { url, .. } => url.clone(),
        }
    }

    /// Drops the test database (only reached when the suite passed, so a failure leaves it
    /// to inspect).
    async fn finish(self) {
        if let Harness::Postgres { admin_url, db, .. } = self {
            admin_exec(
                &admin_url,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            )
            .await;
        }
    }
}

async fn admin_exec(admin_url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV}={admin_url}: {e}"));
    let task = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}

/// The admin URL with its path (the database name) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5/postgres", "x"),
        "postgres://postgres@127.0.0.1:5/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h:5", "x"), "postgresql://h:5/x");
}

/// Suites taking a store run on a fresh one; suites taking the harness open stores themselves.
macro_rules! on_both_backends {
    (store: $($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let h = super::Harness::sqlite();
                super::$suite(h.open().await).await;
                h.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let h = super::Harness::postgres().await;
                super::$suite(h.open().await).await;
                h.finish().await;
            }
        }
    )*};
    (harness: $($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let h = super::Harness::sqlite();
                super::$suite(&h).await;
                h.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let h = super::Harness::postgres().await;
                super::$suite(&h).await;
                h.finish().await;
            }
        }
    )*};
}

on_both_backends!(store:
    suite_ping_and_backend,
    suite_enterprises,
    suite_orgs,
    suite_unlocked_regions,
    suite_tokens,
    suite_account_assignments,
    suite_settings,
    suite_concurrent_assign,
    suite_concurrent_settings,
    suite_customer_keys,
    suite_customer_key_status,
    suite_audit_chain,
    suite_concurrent_audit,
);

on_both_backends!(harness:
    suite_reopen_keeps_data_and_migrations_are_idempotent,
    suite_concurrent_first_open,
    suite_open_by_url,
    suite_keys_and_audit_survive_reopen,
    suite_audit_log_is_append_only,
);

fn is_ms(t: chrono::DateTime<Utc>) -> bool {
    t.timestamp_subsec_nanos().is_multiple_of(1_000_000)
}

fn token(org_id: Uuid, client_id: &str, age_secs: i64) -> TokenRecord {
    TokenRecord {
        client_id: client_id.to_owned(),
        org_id,
        role: "org-admin".to_owned(),
        secret_hash: vec![0, 1, 2, 0xfe, 0xff, client_id.len() as u8],
        description: format!("token {client_id}"),
        created_at: (Utc::now() - Duration::seconds(age_secs)).trunc_subsecs(3),
        revoked_at: None,
    }
}

async fn suite_ping_and_backend(store: DynStore) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
}

async fn suite_enterprises(store: DynStore) {
    assert!(store.list_enterprises().await.unwrap().is_empty());
    let b = store.create_enterprise("beta").await.unwrap();
    let a = store.create_enterprise("alpha").await.unwrap();
    assert_eq!(a.name, "alpha");
    assert!(is_ms(a.created_at), "created_at is cut to milliseconds");
    assert_eq!(store.get_enterprise(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_enterprise(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        store.list_enterprises().await.unwrap(),
        vec![a, b],
        "ordered by name"
    );
}

async fn suite_orgs(store: DynStore) {
    let ent = store.create_enterprise("ent").await.unwrap();
    let other = store.create_enterprise("other").await.unwrap();
    let zeta = store.create_org("zeta", None).await.unwrap();
    let mid = store.create_org("mid", Some(ent.id)).await.unwrap();
    let alpha = store.create_org("alpha", Some(ent.id)).await.unwrap();

    assert!(
        zeta.unlocked_regions.is_empty(),
        "every region unlocked by default"
    );
    assert_eq!(zeta.enterprise_id, None);
    assert!(is_ms(zeta.created_at));
    assert_eq!(store.get_org(mid.id).await.unwrap(), Some(mid.clone()));
    assert_eq!(store.get_org(Uuid::new_v4()).await.unwrap(), None);

    assert_eq!(
        store.list_orgs(None).await.unwrap(),
        vec![alpha.clone(), mid.clone(), zeta]
    );
    assert_eq!(
        store.list_orgs(Some(ent.id)).await.unwrap(),
        vec![alpha, mid]
    );
    assert!(store.list_orgs(Some(other.id)).await.unwrap().is_empty());
    assert!(
        store
            .list_orgs(Some(Uuid::new_v4()))
            .await
            .unwrap()
            .is_empty()
    );

    let err = store
        .create_org("orphan", Some(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("enterprise")), "{err:?}");
}

async fn suite_unlocked_regions(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let untouched = store.create_org("untouched", None).await.unwrap();

    store
        .set_unlocked_regions(
            org.id,
            Provider::Aws,
            Some(vec!["us-east-2".into(), "eu-west-1".into()]),
        )
        .await
        .unwrap();
    store
        .set_unlocked_regions(org.id, Provider::Gcp, Some(vec![]))
        .await
        .unwrap();
    let got = store.get_org(org.id).await.unwrap().unwrap();
    let expected = BTreeMap::from([
        (
            Provider::Aws,
            vec!["us-east-2".to_owned(), "eu-west-1".to_owned()],
        ),
        (Provider::Gcp, vec![]),
    ]);
    assert_eq!(
        got.unlocked_regions, expected,
        "order kept; an empty list locks everything"
    );
    assert_eq!(got.created_at, org.created_at);

    store
        .set_unlocked_regions(org.id, Provider::Aws, Some(vec!["us-west-2".into()]))
        .await
        .unwrap();
    let got = store.get_org(org.id).await.unwrap().unwrap();
    assert_eq!(
        got.unlocked_regions[&Provider::Aws],
        vec!["us-west-2".to_owned()],
        "replaced, not merged"
    );

    store
        .set_unlocked_regions(org.id, Provider::Aws, None)
        .await
        .unwrap();
    let got = store.get_org(org.id).await.unwrap().unwrap();
    assert_eq!(
        got.unlocked_regions,
        BTreeMap::from([(Provider::Gcp, vec![])]),
        "reset unlocks all again"
    );
    // Resetting a provider that was never restricted is fine.
    store
        .set_unlocked_regions(org.id, Provider::Azure, None)
        .await
        .unwrap();

    assert!(
        store
            .get_org(untouched.id)
            .await
            .unwrap()
            .unwrap()
            .unlocked_regions
            .is_empty()
    );
    let (_, authed_org) = {
        store
            .insert_token(&token(org.id, "regions-token", 0))
            .await
            .unwrap();
        store.authenticate("regions-token").await.unwrap().unwrap()
    };
    assert_eq!(
        authed_org.unlocked_regions,
        BTreeMap::from([(Provider::Gcp, vec![])])
    );

    for regions in [Some(vec!["us-east-2".to_owned()]), None] {
        let err = store
            .set_unlocked_regions(Uuid::new_v4(), Provider::Aws, regions)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound("organization")),
            "{err:?}"
        );
    }
}

async fn suite_tokens(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let old = token(org.id, "client-old", 60);
    let new = token(org.id, "client-new", 1);
    let foreign = token(other.id, "client-foreign", 0);
    for t in [&old, &new, &foreign] {
        store.insert_token(t).await.unwrap();
    }

    let (t, o) = store.authenticate("client-old").await.unwrap().unwrap();
    assert_eq!(t, old, "round-trips exactly, timestamps included");
    assert_eq!(o, org);
    assert_eq!(store.authenticate("nobody").await.unwrap(), None);

    assert_eq!(
        store.list_tokens(org.id).await.unwrap(),
        vec![new.clone(), old.clone()],
        "newest first"
    );
    assert_eq!(
        store.list_tokens(other.id).await.unwrap(),
        vec![foreign.clone()]
    );
    assert!(store.list_tokens(Uuid::new_v4()).await.unwrap().is_empty());

    assert!(
        !store.revoke_token(other.id, "client-old").await.unwrap(),
        "another org's token"
    );
    assert_eq!(
        store
            .authenticate("client-old")
            .await
            .unwrap()
            .unwrap()
            .0
            .revoked_at,
        None
    );
    assert!(!store.revoke_token(org.id, "nobody").await.unwrap());

    let before = Utc::now().trunc_subsecs(3);
    assert!(store.revoke_token(org.id, "client-old").await.unwrap());
    let (revoked, _) = store.authenticate("client-old").await.unwrap().unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked_at set");
    assert!(
        revoked_at >= before && revoked_at <= Utc::now(),
        "{revoked_at} vs {before}"
    );
    assert!(is_ms(revoked_at));
    assert!(
        !store.revoke_token(org.id, "client-old").await.unwrap(),
        "already revoked"
    );
    assert_eq!(
        store
            .authenticate("client-old")
            .await
            .unwrap()
            .unwrap()
            .0
            .revoked_at,
        Some(revoked_at),
        "a second revoke keeps the first time"
    );

    let listed = store.list_tokens(org.id).await.unwrap();
    assert_eq!(listed.len(), 2, "revoked tokens stay listed");
    assert_eq!(
        listed[1],
        TokenRecord {
            revoked_at: Some(revoked_at),
            ..old
        }
    );
    assert_eq!(listed[0], new);

    // A token may arrive already revoked, and sub-millisecond input is cut on the way in.
    let mut pre = token(org.id, "client-pre", 5);
    pre.created_at += Duration::microseconds(123);
    pre.revoked_at = Some(pre.created_at);
    store.insert_token(&pre).await.unwrap();
    let (got, _) = store.authenticate("client-pre").await.unwrap().unwrap();
    assert_eq!(got.created_at, pre.created_at.trunc_subsecs(3));
    assert_eq!(got.revoked_at, Some(pre.created_at.trunc_subsecs(3)));

    assert!(
        store.insert_token(&new).await.is_err(),
        "client ids are unique"
    );
    let err = store
        .insert_token(&token(Uuid::new_v4(), "client-orphan", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("organization")),
        "{err:?}"
    );
}

async fn suite_account_assignments(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let aws = Provider::Aws;

    assert!(
        store
            .assigned_accounts(org.id, aws)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .try_assign_account(org.id, aws, "111111111111", 0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_assign_account(org.id, aws, "222222222222", 0)
            .await
            .unwrap(),
        "ordinal taken"
    );
    assert!(
        !store
            .try_assign_account(org.id, aws, "111111111111", 1)
            .await
            .unwrap(),
        "account taken"
    );
    assert!(
        store
            .try_assign_account(org.id, aws, "222222222222", 1)
            .await
            .unwrap()
    );
    // Other providers and other organizations are separate.
    assert!(
        store
            .try_assign_account(org.id, Provider::Gcp, "111111111111", 0)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_assign_account(other.id, aws, "111111111111", 0)
            .await
            .unwrap()
    );

    let assigned = store.assigned_accounts(org.id, aws).await.unwrap();
    let summary: Vec<_> = assigned
        .iter()
        .map(|a| (a.account_id.as_str(), a.ordinal))
        .collect();
    assert_eq!(summary, vec![("111111111111", 0), ("222222222222", 1)]);
    assert!(
        assigned
            .iter()
            .all(|a| a.org_id == org.id && a.provider == aws && is_ms(a.created_at))
    );

    assert_eq!(
        store.account_usage(aws).await.unwrap(),
        BTreeMap::from([
            ("111111111111".to_owned(), 2),
            ("222222222222".to_owned(), 1)
        ])
    );
    assert_eq!(
        store.account_usage(Provider::Gcp).await.unwrap(),
        BTreeMap::from([("111111111111".to_owned(), 1)])
    );
    assert!(
        store
            .account_usage(Provider::Azure)
            .await
            .unwrap()
            .is_empty()
    );

    let err = store
        .try_assign_account(Uuid::new_v4(), aws, "111111111111", 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("organization")),
        "{err:?}"
    );
}

async fn suite_settings(store: DynStore) {
    assert_eq!(store.get_setting("bootstrap").await.unwrap(), None);
    assert_eq!(
        store
            .put_setting_if_absent("bootstrap", "first")
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        store
            .put_setting_if_absent("bootstrap", "second")
            .await
            .unwrap(),
        "first"
    );
    assert_eq!(
        store.get_setting("bootstrap").await.unwrap(),
        Some("first".to_owned())
    );
    assert_eq!(store.put_setting_if_absent("other", "").await.unwrap(), "");
}

async fn suite_concurrent_assign(store: DynStore) {
    let org = store.create_org("racy", None).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .try_assign_account(org.id, Provider::Aws, &format!("acct-{i}"), 0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one racer wins ordinal 0");
    assert_eq!(
        store
            .assigned_accounts(org.id, Provider::Aws)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn suite_concurrent_settings(store: DynStore) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .put_setting_if_absent("race", &format!("v{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    let stored = store.get_setting("race").await.unwrap().unwrap();
    assert!(
        seen.iter().all(|v| *v == stored),
        "every caller sees the one stored value: {seen:?} vs {stored}"
    );
}

async fn suite_reopen_keeps_data_and_migrations_are_idempotent(h: &Harness) {
    let (org, tok) = {
        let store = h.open().await;
        let ent = store.create_enterprise("ent").await.unwrap();
        let org = store.create_org("org", Some(ent.id)).await.unwrap();
        store
            .set_unlocked_regions(org.id, Provider::Aws, Some(vec!["us-east-2".into()]))
            .await
            .unwrap();
        let tok = token(org.id, "persisted", 3);
        store.insert_token(&tok).await.unwrap();
        assert!(
            store
                .try_assign_account(org.id, Provider::Aws, "111111111111", 0)
                .await
                .unwrap()
        );
        store.put_setting_if_absent("k", "v").await.unwrap();
        (store.get_org(org.id).await.unwrap().unwrap(), tok)
    };
    // Open twice more: re-running the migrations must be a no-op each time, and two stores on
    // the same database at once must work.
    let first = h.open().await;
    let second = h.open().await;
    for store in [&first, &second] {
        assert_eq!(
            store.authenticate("persisted").await.unwrap(),
            Some((tok.clone(), org.clone()))
        );
        assert_eq!(store.get_setting("k").await.unwrap(), Some("v".to_owned()));
        assert_eq!(
            store
                .assigned_accounts(org.id, Provider::Aws)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.list_enterprises().await.unwrap().len(), 1);
    }
    // A write through one is visible through the other.
    assert!(first.revoke_token(org.id, "persisted").await.unwrap());
    assert!(
        second
            .authenticate("persisted")
            .await
            .unwrap()
            .unwrap()
            .0
            .revoked_at
            .is_some()
    );
}

async fn suite_concurrent_first_open(h: &Harness) {
    let opens: Vec<_> = (0..4)
        .map(|_| async {
            let store = h.open().await;
            store.ping().await.unwrap();
            store
        })
        .collect();
    let stores = futures_join_all(opens).await;
    let org = stores[0].create_org("after-race", None).await.unwrap();
    for store in &stores {
        assert_eq!(store.get_org(org.id).await.unwrap(), Some(org.clone()));
    }
}

async fn suite_open_by_url(h: &Harness) {
    let store = keyplane_store::open(&h.url()).await.unwrap();
    store.ping().await.unwrap();
    let expected = match h {
        Harness::Sqlite { .. } => "sqlite",
        Harness::Postgres { .. } => "postgres",
    };
    assert_eq!(store.backend(), expected);
}

fn customer_key(org_id: Uuid, db_type: DbType, region: &str, key_id: &str) -> CustomerKey {
    let now = Utc::now().trunc_subsecs(3);
    CustomerKey {
        org_id,
        db_type,
        provider: Provider::Aws,
        region: region.to_owned(),
        key_id: key_id.to_owned(),
        provider_account: "111111111111".to_owned(),
        created_at: now,
        created_by: "client-admin".to_owned(),
        status: KeyStatus::Available,
        status_reason: None,
        status_since: now,
        last_check_at: Some(now),
        last_check_ok: Some(true),
        last_check_message: Some("registration check passed".to_owned()),
    }
}

async fn suite_customer_keys(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let arn = |n: u32| format!("arn:aws:kms:us-east-2:222222222222:key/{n}");

    assert!(
        store
            .list_customer_keys(org.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    let serverless_west = customer_key(org.id, DbType::Serverless, "us-west-2", &arn(1));
    let classic_west = customer_key(org.id, DbType::Classic, "us-west-2", &arn(2));
    let mut classic_east = customer_key(org.id, DbType::Classic, "us-east-2", &arn(3));
    // Sub-millisecond input is cut on the way in; never-checked keys have no check fields.
    classic_east.created_at += Duration::microseconds(321);
    classic_east.last_check_at = None;
    classic_east.last_check_ok = None;
    classic_east.last_check_message = None;
    for k in [&serverless_west, &classic_west, &classic_east] {
        assert_eq!(
            store.insert_customer_key(k).await.unwrap(),
            None,
            "inserted"
        );
    }
    let classic_east = CustomerKey {
        created_at: classic_east.created_at.trunc_subsecs(3),
        ..classic_east
    };

    assert_eq!(
        store
            .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-west-2")
            .await
            .unwrap(),
        Some(classic_west.clone()),
        "round-trips exactly"
    );
    assert_eq!(
        store
            .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
            .await
            .unwrap(),
        Some(classic_east.clone())
    );
    for (db_type, provider, region) in [
        (DbType::Serverless, Provider::Aws, "us-east-2"),
        (DbType::Classic, Provider::Gcp, "us-west-2"),
        (DbType::Classic, Provider::Aws, "eu-west-1"),
    ] {
        assert_eq!(
            store
                .get_customer_key(org.id, db_type, provider, region)
                .await
                .unwrap(),
            None
        );
    }

    assert_eq!(
        store.list_customer_keys(org.id, None).await.unwrap(),
        vec![
            classic_east.clone(),
            classic_west.clone(),
            serverless_west.clone()
        ],
        "ordered by type, provider, region"
    );
    assert_eq!(
        store
            .list_customer_keys(org.id, Some(DbType::Classic))
            .await
            .unwrap(),
        vec![classic_east.clone(), classic_west.clone()]
    );
    assert_eq!(
        store
            .list_customer_keys(org.id, Some(DbType::Serverless))
            .await
            .unwrap(),
        vec![serverless_west.clone()]
    );

    // A second key for a taken slot: the stored one comes back and nothing changes.
    let mut rival = customer_key(org.id, DbType::Classic, "us-west-2", &arn(9));
    rival.created_by = "client-rival".to_owned();
    rival.status = KeyStatus::Inaccessible;
    assert_eq!(
        store.insert_customer_key(&rival).await.unwrap(),
        Some(classic_west.clone())
    );
    assert_eq!(
        store
            .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-west-2")
            .await
            .unwrap(),
        Some(classic_west.clone()),
        "unchanged"
    );
    assert_eq!(
        store.insert_customer_key(&classic_west).await.unwrap(),
        Some(classic_west.clone()),
        "the same key again is a conflict too"
    );

    // Other organizations have slots of their own.
    assert!(
        store
            .list_customer_keys(other.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .get_customer_key(other.id, DbType::Classic, Provider::Aws, "us-west-2")
            .await
            .unwrap(),
        None
    );
    let foreign = customer_key(other.id, DbType::Classic, "us-west-2", &arn(4));
    assert_eq!(store.insert_customer_key(&foreign).await.unwrap(), None);
    assert_eq!(
        store.list_customer_keys(other.id, None).await.unwrap(),
        vec![foreign]
    );
    assert_eq!(
        store.list_customer_keys(org.id, None).await.unwrap().len(),
        3
    );

    let err = store
        .insert_customer_key(&customer_key(
            Uuid::new_v4(),
            DbType::Classic,
            "us-west-2",
            &arn(5),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("organization")),
        "{err:?}"
    );
}

async fn suite_customer_key_status(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let mut key = customer_key(
        org.id,
        DbType::Classic,
        "us-east-2",
        "arn:aws:kms:us-east-2:2:key/a",
    );
    key.created_at -= Duration::hours(1);
    key.status_since = key.created_at;
    store.insert_customer_key(&key).await.unwrap();
    let get = || {
        let store = Arc::clone(&store);
        async move {
            store
                .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
                .await
                .unwrap()
                .unwrap()
        }
    };

    // Same status: the check is recorded, status_since stays.
    let checked = Utc::now() - Duration::minutes(30) + Duration::microseconds(7);
    let same = KeyStatusUpdate {
        status: KeyStatus::Available,
        status_reason: None,
        checked_at: checked,
        check_ok: true,
        check_message: "still fine".to_owned(),
    };
    assert!(
        store
            .update_customer_key_status(org.id, DbType::Classic, Provider::Aws, "us-east-2", &same)
            .await
            .unwrap()
    );
    let got = get().await;
    assert_eq!(
        got,
        CustomerKey {
            last_check_at: Some(checked.trunc_subsecs(3)),
            last_check_ok: Some(true),
            last_check_message: Some("still fine".to_owned()),
            ..key.clone()
        },
        "status_since kept; the check time is cut to milliseconds"
    );

    // A new status moves status_since to the check.
    let lost = Utc::now().trunc_subsecs(3) - Duration::minutes(10);
    let inaccessible = KeyStatusUpdate {
        status: KeyStatus::Inaccessible,
        status_reason: Some("key disabled".to_owned()),
        checked_at: lost,
        check_ok: false,
        check_message: "DisabledException".to_owned(),
    };
    assert!(
        store
            .update_customer_key_status(
                org.id,
                DbType::Classic,
                Provider::Aws,
                "us-east-2",
                &inaccessible
            )
            .await
            .unwrap()
    );
    let got = get().await;
    assert_eq!(got.status, KeyStatus::Inaccessible);
    assert_eq!(got.status_reason.as_deref(), Some("key disabled"));
    assert_eq!(got.status_since, lost);
    assert_eq!(got.last_check_at, Some(lost));
    assert_eq!(got.last_check_ok, Some(false));
    assert_eq!(got.last_check_message.as_deref(), Some("DisabledException"));
    assert_eq!(
        (got.key_id, got.created_at),
        (key.key_id.clone(), key.created_at)
    );

    // Still inaccessible a minute later: status_since stays at the first failed check.
    let later = KeyStatusUpdate {
        checked_at: lost + Duration::minutes(1),
        status_reason: Some("key pending deletion".to_owned()),
        ..inaccessible.clone()
    };
    assert!(
        store
            .update_customer_key_status(org.id, DbType::Classic, Provider::Aws, "us-east-2", &later)
            .await
            .unwrap()
    );
    let got = get().await;
    assert_eq!(got.status_since, lost);
    assert_eq!(got.last_check_at, Some(lost + Duration::minutes(1)));
    assert_eq!(got.status_reason.as_deref(), Some("key pending deletion"));

    // Recovered: back to AVAILABLE, reason cleared, status_since moves again.
    let back = Utc::now().trunc_subsecs(3);
    let recovered = KeyStatusUpdate {
        checked_at: back,
        ..same.clone()
    };
    assert!(
        store
            .update_customer_key_status(
                org.id,
                DbType::Classic,
                Provider::Aws,
                "us-east-2",
                &recovered
            )
            .await
            .unwrap()
    );
    let got = get().await;
    assert_eq!(
        (got.status, got.status_reason, got.status_since),
        (KeyStatus::Available, None, back)
    );

    // No such key: false, and nothing else is touched.
    for (org_id, db_type, region) in [
        (org.id, DbType::Serverless, "us-east-2"),
        (org.id, DbType::Classic, "us-west-2"),
        (Uuid::new_v4(), DbType::Classic, "us-east-2"),
    ] {
        assert!(
            !store
                .update_customer_key_status(org_id, db_type, Provider::Aws, region, &inaccessible)
                .await
                .unwrap()
        );
    }
    assert_eq!(get().await.status, KeyStatus::Available);
    assert_eq!(
        store.list_customer_keys(org.id, None).await.unwrap().len(),
        1
    );
}

fn audit_entry(org_id: Uuid, n: usize) -> NewAuditEntry {
    NewAuditEntry {
        org_id,
        actor: format!("token:client-{n}"),
        action: "cmk.register".to_owned(),
        target: format!("classic/aws/us-east-2#{n}"),
        outcome: if n.is_multiple_of(3) {
            "failure"
        } else {
            "success"
        }
        .to_owned(),
        reason: if n.is_multiple_of(3) {
            format!("reason {n}: \"quoted\"\nnewline")
        } else {
            String::new()
        },
    }
}

fn recompute(e: &AuditEntry) -> String {
    entry_hash(
        &e.prev_hash,
        &AuditFields {
            seq: e.seq,
            org_id: &e.org_id.to_string(),
            at: &e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: &e.actor,
            action: &e.action,
            target: &e.target,
            outcome: &e.outcome,
            reason: &e.reason,
        },
    )
}

/// Walks the whole chain from GENESIS in pages; Err(seq) names the first broken entry.
async fn verify_chain(store: &DynStore) -> Result<Vec<AuditEntry>, i64> {
    let mut all = Vec::new();
    let mut prev = GENESIS.to_owned();
    let mut after = 0;
    loop {
        let page = store.audit_after(after, 7).await.unwrap();
        if page.is_empty() {
            return Ok(all);
        }
        for e in page {
            if e.seq != after + 1 || e.prev_hash != prev || recompute(&e) != e.hash {
                return Err(e.seq);
            }
            after = e.seq;
            prev = e.hash.clone();
            all.push(e);
        }
    }
}

async fn suite_audit_chain(store: DynStore) {
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    assert!(store.audit_after(0, 100).await.unwrap().is_empty());
    assert!(store.list_audit(a, None, 100).await.unwrap().is_empty());

    let before = Utc::now().trunc_subsecs(3);
    let mut appended = Vec::new();
    for n in 0..20 {
        let org = if n % 4 == 1 { b } else { a };
        let new = audit_entry(org, n);
        let e = store.append_audit(&new).await.unwrap();
        assert_eq!(e.seq, n as i64 + 1);
        assert_eq!(
            (
                &e.org_id, &e.actor, &e.action, &e.target, &e.outcome, &e.reason
            ),
            (
                &new.org_id,
                &new.actor,
                &new.action,
                &new.target,
                &new.outcome,
                &new.reason
            )
        );
        assert!(is_ms(e.at) && e.at >= before && e.at <= Utc::now());
        assert_eq!(e.hash, recompute(&e));
        assert_eq!(e.hash.len(), 64);
        appended.push(e);
    }
    assert_eq!(appended[0].prev_hash, GENESIS);
    assert!(
        appended
            .windows(2)
            .all(|w| w[1].prev_hash == w[0].hash && w[1].at >= w[0].at)
    );

    let chain = verify_chain(&store).await.expect("the chain verifies");
    assert_eq!(chain, appended, "stored entries equal the returned ones");
    assert_eq!(
        store.audit_after(15, 100).await.unwrap(),
        appended[15..].to_vec(),
        "seq > after, oldest first"
    );
    assert_eq!(
        store.audit_after(3, 2).await.unwrap(),
        appended[3..5].to_vec()
    );
    assert!(store.audit_after(20, 100).await.unwrap().is_empty());

    // Per organization, newest first, paged with `before`.
    let of = |org: Uuid| -> Vec<AuditEntry> {
        appended
            .iter()
            .rev()
            .filter(|e| e.org_id == org)
            .cloned()
            .collect()
    };
    let all_a = of(a);
    assert_eq!(all_a.len(), 15);
    assert_eq!(store.list_audit(a, None, 100).await.unwrap(), all_a);
    assert_eq!(store.list_audit(b, None, 100).await.unwrap(), of(b));
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_audit(a, cursor, 4).await.unwrap();
        assert!(page.len() <= 4);
        match page.last() {
            Some(last) => cursor = Some(last.seq),
            None => break,
        }
        paged.extend(page);
    }
    assert_eq!(paged, all_a, "pages cover every entry once, newest first");
    assert_eq!(
        store.list_audit(a, Some(5), 100).await.unwrap(),
        all_a
            .iter()
            .filter(|e| e.seq < 5)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(store.list_audit(a, Some(1), 100).await.unwrap().is_empty());
    assert!(store.list_audit(a, None, 0).await.unwrap().is_empty());
    assert!(
        store
            .list_audit(Uuid::new_v4(), None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn suite_concurrent_audit(store: DynStore) {
    let tasks = 16;
    let per_task = 10;
    let orgs: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            let org = orgs[t % orgs.len()];
            tokio::spawn(async move {
                barrier.wait().await;
                let mut seqs = Vec::new();
                for i in 0..per_task {
                    seqs.push(
                        store
                            .append_audit(&audit_entry(org, t * 100 + i))
                            .await
                            .unwrap()
                            .seq,
                    );
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for h in handles {
        let mine = h.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's appends are ordered"
        );
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    let n = (tasks * per_task) as i64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "gap-free, no duplicates");
    let chain = verify_chain(&store).await.expect("the chain verifies");
    assert_eq!(chain.len() as i64, n);
    for org in orgs {
        assert_eq!(
            store.list_audit(org, None, 1000).await.unwrap().len(),
            tasks / 4 * per_task
        );
    }
}

async fn suite_keys_and_audit_survive_reopen(h: &Harness) {
    let (org, key, last) = {
        let store = h.open().await;
        let org = store.create_org("org", None).await.unwrap();
        let key = customer_key(
            org.id,
            DbType::Serverless,
            "eu-west-1",
            "arn:aws:kms:eu-west-1:2:key/p",
        );
        assert_eq!(store.insert_customer_key(&key).await.unwrap(), None);
        let mut last = None;
        for n in 0..3 {
            last = Some(store.append_audit(&audit_entry(org.id, n)).await.unwrap());
        }
        (org, key, last.unwrap())
    };
    let store = h.open().await;
    assert_eq!(
        store.list_customer_keys(org.id, None).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(store.insert_customer_key(&key).await.unwrap(), Some(key));
    assert_eq!(
        store.list_audit(org.id, None, 1).await.unwrap(),
        vec![last.clone()]
    );
    // The chain continues where it stopped.
    let next = store.append_audit(&audit_entry(org.id, 3)).await.unwrap();
    assert_eq!(next.seq, last.seq + 1);
    assert_eq!(next.prev_hash, last.hash);
    assert_eq!(
        verify_chain(&store)
            .await
            .expect("the chain verifies")
            .len(),
        4
    );
}

/// Raw SQL on the store's database, outside the Store trait (to tamper with it).
async fn raw_exec(h: &Harness, sql: &str) -> Result<(), String> {
    match h {
        Harness::Sqlite { path, .. } => {
            let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            conn.execute_batch(sql).map_err(|e| e.to_string())
        }
        Harness::Postgres { url, .. } => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(connection);
            // The server's own message, e.g. the trigger's exception.
            let result = client
                .batch_execute(sql)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => e.to_string(),
                });
            drop(client);
            let _ = task.await;
            result
        }
    }
}

async fn suite_audit_log_is_append_only(h: &Harness) {
    let store = h.open().await;
    let org = Uuid::new_v4();
    for n in 0..5 {
        store.append_audit(&audit_entry(org, n)).await.unwrap();
    }
    for sql in [
        "UPDATE audit_log SET reason = 'edited' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 5",
    ] {
        let err = raw_exec(h, sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if matches!(h, Harness::Postgres { .. }) {
        let err = raw_exec(h, "TRUNCATE audit_log").await.unwrap_err();
        assert!(err.contains("append-only"), "{err}");
    }
    assert_eq!(verify_chain(&store).await.expect("untouched").len(), 5);

    // Someone with the power to drop the guard: the chain still shows the edit.
    let drop_guard = match h {
        Harness::Sqlite { .. } => "DROP TRIGGER audit_log_no_update",
        Harness::Postgres { .. } => "DROP TRIGGER audit_log_no_update_delete ON audit_log",
    };
    raw_exec(h, drop_guard).await.unwrap();
    raw_exec(h, "UPDATE audit_log SET reason = 'edited' WHERE seq = 2")
        .await
        .unwrap();
    assert_eq!(verify_chain(&store).await, Err(2));
}

/// Polls the futures together on this task (no `futures` dependency for one helper).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

/// A rough read benchmark: `cargo test -p keyplane-store --release -- --ignored --nocapture bench`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_authenticate_sqlite() {
    let h = Harness::sqlite();
    bench_authenticate(h.open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_authenticate_postgres() {
    let h = Harness::postgres().await;
    bench_authenticate(h.open().await).await;
    h.finish().await;
}

async fn bench_authenticate(store: DynStore) {
    let org = store.create_org("bench", None).await.unwrap();
    for i in 0..100 {
        store
            .insert_token(&token(org.id, &format!("bench-{i}"), 0))
            .await
            .unwrap();
    }
    let per_task = 20_000;
    let tasks = 16;
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..per_task {
                    let id = format!("bench-{}", (i + t) % 100);
                    assert!(store.authenticate(&id).await.unwrap().is_some());
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = start.elapsed();
    let n = per_task * tasks;
    println!(
        "{}: {n} authenticate calls in {elapsed:?}: {:.0}/s",
        store.backend(),
        n as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn sqlite_refuses_in_memory_databases() {
    // Each connection of the pool would get a database of its own.
    let err = SqliteStore::open(std::path::Path::new(":memory:"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
}
