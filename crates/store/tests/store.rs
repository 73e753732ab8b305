//! The Store contract, written once and run on both backends: every suite runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (from `KEYPLANE_TEST_PG_URL`; run
//! `scripts/with-postgres cargo test -p keyplane-store` to get one).

use chrono::{Duration, SubsecRound, Utc};
use keyplane_core::Provider;
use keyplane_store::{DynStore, PostgresStore, SqliteStore, StoreError, TokenRecord};
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
);

on_both_backends!(harness:
    suite_reopen_keeps_data_and_migrations_are_idempotent,
    suite_concurrent_first_open,
    suite_open_by_url,
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
