//! The Store contract, written once and run on both backends: every suite runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (from `KEYPLANE_TEST_PG_URL`; run
//! `scripts/with-postgres cargo test -p keyplane-store` to get one).

use chrono::{Duration, SubsecRound, Utc};
use keyplane_core::audit::{AuditAction, AuditFields, AuditOutcome, GENESIS, entry_hash};
use keyplane_core::databases::RegionChangeRefusal;
use keyplane_core::keys::OnInaccessible;
use keyplane_core::{DatabaseStatus, DbType, KeyStatus, Provider, Quotas, Role};
use keyplane_core::{QuotaExceeded, QuotaKind};
use keyplane_store::{
    AddRegionOutcome, AuditEntry, CreateOutcome, CustomerKey, Database, DatabaseFilter, Datacenter,
    DeleteKeyOutcome, DynStore, JobKind, JobState, KeyBinding, KeyKind, KeyStatusUpdate, Lease,
    NewAuditEntry, NewJob, NewPortalSession, PortalSession, PostgresStore, RemoveRegionOutcome,
    ReplaceKeyOutcome, Rewrap, RewrapOutcome, SqliteStore, StoreError, TokenRecord,
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
    suite_exclusive_accounts,
    suite_concurrent_exclusive_first_requests,
    suite_concurrent_settings,
    suite_customer_keys,
    suite_customer_key_status,
    suite_key_binding,
    suite_audit_chain,
    suite_concurrent_audit,
    suite_databases,
    suite_add_datacenter,
    suite_remove_datacenter,
    suite_concurrent_region_changes,
    suite_quotas,
    suite_concurrent_quotas,
    suite_datacenter_keys,
    suite_data_key_rotation,
    suite_rotation_overdue,
    suite_job_lifecycle,
    suite_concurrent_claim,
    suite_renewal_races_takeover,
    suite_job_leases,
    suite_portal_sessions,
    suite_concurrent_portal_logins,
    suite_database_keyspaces,
    suite_parts_of_many_databases,
    suite_concurrent_keyspaces,
    suite_database_use,
    suite_serverless_provider_ids,
    suite_concurrent_serverless_provider_ids,
    suite_key_revocation,
    suite_concurrent_revoke_and_resume,
    suite_key_deregistration,
    suite_concurrent_deregistration_and_creation,
    suite_activation_under_a_revoked_key,
    suite_key_replacement,
    suite_rewrap,
    suite_concurrent_rewraps,
    suite_key_logins,
    suite_on_inaccessible,
    suite_webhooks,
    suite_concurrent_delivery_claims,
);

on_both_backends!(harness:
    suite_reopen_keeps_data_and_migrations_are_idempotent,
    suite_concurrent_first_open,
    suite_open_by_url,
    suite_keys_and_audit_survive_reopen,
    suite_audit_log_is_append_only,
    suite_jobs_resumed_after_crash,
    suite_databases_survive_reopen,
    suite_portal_sessions_survive_reopen,
);

/// The replica the single-claimer suites claim as.
const ME: &str = "replica-a";

/// The suites' lease: 30 s from `from`.
fn lease_from(from: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    from + Duration::seconds(30)
}

/// Claims as [`ME`] at `now`, for [`lease_from`].
async fn claim(store: &DynStore, now: chrono::DateTime<Utc>) -> Option<keyplane_store::Job> {
    store.claim_job(ME, now, lease_from(now)).await.unwrap()
}

fn is_ms(t: chrono::DateTime<Utc>) -> bool {
    t.timestamp_subsec_nanos().is_multiple_of(1_000_000)
}

fn token(org_id: Uuid, client_id: &str, age_secs: i64) -> TokenRecord {
    TokenRecord {
        client_id: client_id.to_owned(),
        org_id,
        role: Role::OrgAdmin,
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
            .insert_token(&token(org.id, "regions-token", 0), &Quotas::UNLIMITED)
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
        store.insert_token(t, &Quotas::UNLIMITED).await.unwrap();
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
    store.insert_token(&pre, &Quotas::UNLIMITED).await.unwrap();
    let (got, _) = store.authenticate("client-pre").await.unwrap().unwrap();
    assert_eq!(got.created_at, pre.created_at.trunc_subsecs(3));
    assert_eq!(got.revoked_at, Some(pre.created_at.trunc_subsecs(3)));

    assert!(
        store.insert_token(&new, &Quotas::UNLIMITED).await.is_err(),
        "client ids are unique"
    );
    let err = store
        .insert_token(
            &token(Uuid::new_v4(), "client-orphan", 0),
            &Quotas::UNLIMITED,
        )
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

async fn suite_key_logins(store: DynStore) {
    let a = store.create_org("a", None).await.unwrap().id;
    let b = store.create_org("b", None).await.unwrap().id;
    let key = "http://127.0.0.1:8200/v1/transit/keys/orders";
    assert_eq!(
        store
            .get_key_login(a, Provider::Openbao, key)
            .await
            .unwrap(),
        None
    );
    let now = Utc::now();
    store
        .put_key_login(a, Provider::Openbao, key, &[1, 2, 0, 255], now)
        .await
        .unwrap();
    store
        .put_key_login(b, Provider::Openbao, key, &[9], now)
        .await
        .unwrap();
    // Given again: the newer login replaces the older, per organization.
    store
        .put_key_login(a, Provider::Openbao, key, &[3, 4], now)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_key_login(a, Provider::Openbao, key)
            .await
            .unwrap(),
        Some(vec![3, 4])
    );
    assert_eq!(
        store
            .get_key_login(b, Provider::Openbao, key)
            .await
            .unwrap(),
        Some(vec![9])
    );
    assert_eq!(
        store.get_key_login(a, Provider::Aws, key).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .get_key_login(
                a,
                Provider::Openbao,
                "http://127.0.0.1:8200/v1/transit/keys/other"
            )
            .await
            .unwrap(),
        None
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

async fn suite_exclusive_accounts(store: DynStore) {
    let a = store.create_org("a", None).await.unwrap().id;
    let b = store.create_org("b", None).await.unwrap().id;
    let assign = |org: Uuid, account: &'static str, ordinal: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .try_assign_exclusive_account(org, Provider::Gcp, account, ordinal)
                .await
                .unwrap()
        }
    };
    assert!(assign(a, "sa-1", 0).await);
    // Held by A: never B's, whatever the ordinal.
    assert!(!assign(b, "sa-1", 0).await);
    assert!(!assign(b, "sa-1", 3).await);
    // A's own ordinal and account rules hold as for shared accounts.
    assert!(!assign(a, "sa-1", 1).await, "one assignment per account");
    assert!(!assign(a, "sa-2", 0).await, "ordinal 0 is taken");
    assert!(assign(b, "sa-2", 0).await);
    assert!(assign(a, "sa-3", 1).await);
    // An identity assigned the shared way (before identities were exclusive) is taken too.
    assert!(
        store
            .try_assign_account(a, Provider::Gcp, "sa-4", 2)
            .await
            .unwrap()
    );
    assert!(!assign(b, "sa-4", 1).await);
    // The same account name of another provider is another identity.
    assert!(
        store
            .try_assign_exclusive_account(b, Provider::Azure, "sa-1", 0)
            .await
            .unwrap()
    );
    let ids = |v: Vec<keyplane_store::AccountAssignment>| {
        v.into_iter().map(|a| a.account_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.assigned_accounts(a, Provider::Gcp).await.unwrap()),
        ["sa-1", "sa-3", "sa-4"]
    );
    assert_eq!(
        ids(store.assigned_accounts(b, Provider::Gcp).await.unwrap()),
        ["sa-2"]
    );
    assert_eq!(
        store.account_usage(Provider::Gcp).await.unwrap(),
        BTreeMap::from([
            ("sa-1".to_string(), 1),
            ("sa-2".to_string(), 1),
            ("sa-3".to_string(), 1),
            ("sa-4".to_string(), 1)
        ])
    );
    // A missing organization is refused as such, not silently.
    let err = store
        .try_assign_exclusive_account(Uuid::new_v4(), Provider::Gcp, "sa-9", 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("organization")),
        "{err:?}"
    );
}

/// Eight organizations' first requests at once, each taking the first free identity of one
/// pool the way the accounts service does (re-reading after a lost race): no identity ever
/// ends up with two organizations, and each organization gets one.
async fn suite_concurrent_exclusive_first_requests(store: DynStore) {
    const POOL: [&str; 8] = [
        "sa-0", "sa-1", "sa-2", "sa-3", "sa-4", "sa-5", "sa-6", "sa-7",
    ];
    // First: eight organizations racing for one identity; exactly one gets it.
    let mut orgs = Vec::new();
    for i in 0..8 {
        orgs.push(
            store
                .create_org(&format!("org-{i}"), None)
                .await
                .unwrap()
                .id,
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = orgs
        .iter()
        .map(|&org| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .try_assign_exclusive_account(org, Provider::Azure, "app-shared", 0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one organization holds the identity");

    // Then: every organization takes the first free identity of the pool, all at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = orgs
        .iter()
        .map(|&org| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..=POOL.len() {
                    let usage = store.account_usage(Provider::Gcp).await.unwrap();
                    let free = POOL.iter().find(|a| !usage.contains_key(**a))?;
                    if store
                        .try_assign_exclusive_account(org, Provider::Gcp, free, 0)
                        .await
                        .unwrap()
                    {
                        return Some(free.to_string());
                    }
                }
                None
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(
            t.await
                .unwrap()
                .expect("an identity for every organization"),
        );
    }
    got.sort();
    assert_eq!(got, POOL, "eight organizations, eight distinct identities");
    let usage = store.account_usage(Provider::Gcp).await.unwrap();
    assert!(usage.values().all(|n| *n == 1), "{usage:?}");
    for org in &orgs {
        assert_eq!(
            store
                .assigned_accounts(*org, Provider::Gcp)
                .await
                .unwrap()
                .len(),
            1
        );
    }
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
        store.insert_token(&tok, &Quotas::UNLIMITED).await.unwrap();
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
        bound_at: Some(now),
        binding_warning: None,
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
    // Whether the update found the key.
    let update = |update: KeyStatusUpdate| {
        let store = Arc::clone(&store);
        async move {
            store
                .update_customer_key_status(
                    org.id,
                    DbType::Classic,
                    Provider::Aws,
                    "us-east-2",
                    &update,
                )
                .await
                .unwrap()
        }
    };

    // Same status: the check is recorded, status_since stays.
    let checked = Utc::now() - Duration::minutes(30) + Duration::microseconds(7);
    let same = KeyStatusUpdate {
        key_id: key.key_id.clone(),
        status: KeyStatus::Available,
        status_reason: None,
        checked_at: checked,
        check_ok: true,
        check_message: "still fine".to_owned(),
    };
    assert!(update(same.clone()).await);
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
        key_id: key.key_id.clone(),
        status: KeyStatus::Inaccessible,
        status_reason: Some("key disabled".to_owned()),
        checked_at: lost,
        check_ok: false,
        check_message: "DisabledException".to_owned(),
    };
    assert!(update(inaccessible.clone()).await);
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
    assert!(update(later).await);
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
    assert!(update(recovered).await);
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

async fn suite_key_binding(store: DynStore) {
    let org = store.create_org("binding", None).await.unwrap();
    // A key registered before registration proved the binding, and one registered after.
    let legacy = CustomerKey {
        bound_at: None,
        ..customer_key(org.id, DbType::Classic, "us-east-2", "arn:legacy")
    };
    let proven = customer_key(org.id, DbType::Serverless, "us-east-2", "arn:proven");
    assert_eq!(store.insert_customer_key(&legacy).await.unwrap(), None);
    assert_eq!(store.insert_customer_key(&proven).await.unwrap(), None);
    let unbound = store.unbound_customer_keys().await.unwrap();
    assert_eq!(unbound, vec![legacy.clone()]);

    let slot = |t: DbType| (org.id, t, Provider::Aws, "us-east-2");
    let record = |t: DbType, b: KeyBinding| {
        let store = Arc::clone(&store);
        async move {
            let (o, t, p, r) = slot(t);
            store.record_key_binding(o, t, p, r, &b).await.unwrap()
        }
    };
    let get = |t: DbType| {
        let store = Arc::clone(&store);
        async move {
            let (o, t, p, r) = slot(t);
            store.get_customer_key(o, t, p, r).await.unwrap().unwrap()
        }
    };
    let warn = || KeyBinding::Unbound {
        warning: "usable for any organization".into(),
    };
    // The warning appears once: the first record says so, the next ones do not.
    assert!(record(DbType::Classic, warn()).await);
    assert!(!record(DbType::Classic, warn()).await);
    let k = get(DbType::Classic).await;
    assert_eq!(
        k.binding_warning.as_deref(),
        Some("usable for any organization")
    );
    assert_eq!(k.bound_at, None);
    assert_eq!(
        (k.status, &k.status_reason),
        (legacy.status, &legacy.status_reason),
        "a warning is not a status"
    );
    // Proven later: the warning goes, the key leaves the monitor's list.
    let at = Utc::now().trunc_subsecs(3);
    assert!(record(DbType::Classic, KeyBinding::Bound { at }).await);
    let k = get(DbType::Classic).await;
    assert_eq!((k.bound_at, k.binding_warning), (Some(at), None));
    assert!(store.unbound_customer_keys().await.unwrap().is_empty());
    // A proven key takes neither a warning nor a second proof.
    assert!(!record(DbType::Classic, warn()).await);
    assert!(!record(DbType::Classic, KeyBinding::Bound { at: Utc::now() }).await);
    assert!(!record(DbType::Serverless, warn()).await);
    assert_eq!(get(DbType::Serverless).await.binding_warning, None);
    // No such key: nothing changes.
    assert!(
        !store
            .record_key_binding(org.id, DbType::Classic, Provider::Aws, "eu-west-1", &warn())
            .await
            .unwrap()
    );

    // Monitors racing on a new warning record its appearance exactly once.
    let racy = CustomerKey {
        bound_at: None,
        ..customer_key(org.id, DbType::Classic, "eu-west-1", "arn:racy")
    };
    store.insert_customer_key(&racy).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .record_key_binding(
                        org.id,
                        DbType::Classic,
                        Provider::Aws,
                        "eu-west-1",
                        &KeyBinding::Unbound {
                            warning: "w".into(),
                        },
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut firsts = 0;
    for t in tasks {
        firsts += usize::from(t.await.unwrap());
    }
    assert_eq!(firsts, 1);
}

fn audit_entry(org_id: Uuid, n: usize) -> NewAuditEntry {
    NewAuditEntry {
        org_id,
        actor: format!("token:client-{n}"),
        action: AuditAction::CmkRegister,
        target: format!("classic/aws/us-east-2#{n}"),
        outcome: if n.is_multiple_of(3) {
            AuditOutcome::Failure
        } else {
            AuditOutcome::Success
        },
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
            action: e.action.as_str(),
            target: &e.target,
            outcome: e.outcome.as_str(),
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
            .insert_token(&token(org.id, &format!("bench-{i}"), 0), &Quotas::UNLIMITED)
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

/// The job queue under concurrent claimers: `cargo test -p keyplane-store -- --ignored
/// --nocapture bench_job_queue` (under `scripts/with-postgres`). Each claimer claims and
/// finishes until the queue is empty; the baseline is one claimer, in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_job_queue_sqlite() {
    let h = Harness::sqlite();
    bench_job_queue(h.open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_job_queue_postgres() {
    let h = Harness::postgres().await;
    bench_job_queue(h.open().await).await;
    h.finish().await;
}

async fn bench_job_queue(store: DynStore) {
    let org = store.create_org("bench", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .insert_token(&token(org.id, "benchtoken", 0), &Quotas::UNLIMITED)
        .await
        .unwrap();
    let jobs = 1_000;
    for claimers in [1usize, 8] {
        for _ in 0..jobs {
            store.enqueue_job(&provision_job(&dc), None).await.unwrap();
        }
        let start = std::time::Instant::now();
        let handles: Vec<_> = (0..claimers)
            .map(|c| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let owner = format!("bench-{c}");
                    let mut n = 0u32;
                    loop {
                        let now = Utc::now();
                        let Some(job) =
                            store.claim_job(&owner, now, lease_from(now)).await.unwrap()
                        else {
                            return n;
                        };
                        assert_eq!(store.finish_job(job.id, &owner).await.unwrap(), Lease::Held);
                        n += 1;
                    }
                })
            })
            .collect();
        let mut done = 0;
        for h in handles {
            done += h.await.unwrap();
        }
        let elapsed = start.elapsed();
        println!(
            "{}: {claimers} claimer(s): {done} jobs claimed and finished in {elapsed:?}: {:.0} jobs/s",
            store.backend(),
            f64::from(done) / elapsed.as_secs_f64()
        );
    }
    // A portal request's session lookup against the token lookup every request makes.
    let now = Utc::now();
    store
        .create_portal_session(&new_session(
            1,
            org.id,
            "benchtoken",
            now,
            Duration::hours(1),
        ))
        .await
        .unwrap();
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert!(store.authenticate("benchtoken").await.unwrap().is_some());
    }
    let auth = start.elapsed();
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert!(
            store
                .get_portal_session(&session_hash(1), now)
                .await
                .unwrap()
                .is_some()
        );
    }
    let session = start.elapsed();
    println!(
        "{}: one caller, {n} each: authenticate {:.1} µs, get_portal_session {:.1} µs",
        store.backend(),
        auth.as_secs_f64() * 1e6 / f64::from(n),
        session.as_secs_f64() * 1e6 / f64::from(n)
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

fn new_database(
    org_id: Uuid,
    name: &str,
    provider: Provider,
    region: &str,
    age_secs: i64,
) -> (Database, Datacenter, NewJob) {
    let created_at = (Utc::now() - Duration::seconds(age_secs)).trunc_subsecs(3);
    let db = Database {
        id: Uuid::new_v4(),
        org_id,
        name: name.to_owned(),
        keyspace: "ks".to_owned(),
        db_type: DbType::Classic,
        provider,
        tier: "C10".to_owned(),
        capacity_units: 3,
        status: DatabaseStatus::Pending,
        message: "provisioning".to_owned(),
        owner: "client-1".to_owned(),
        customer_keyed: true,
        created_at,
        updated_at: created_at,
        terminated_at: None,
        last_used_at: None,
    };
    let dc = new_datacenter(&db, 1, region, KeyKind::Customer);
    let job = NewJob {
        kind: JobKind::ProvisionDatacenter,
        database_id: db.id,
        datacenter_id: Some(dc.id.clone()),
    };
    (db, dc, job)
}

fn new_datacenter(db: &Database, ordinal: i32, region: &str, key_kind: KeyKind) -> Datacenter {
    Datacenter {
        id: format!("{}-{ordinal}", db.id),
        database_id: db.id,
        org_id: db.org_id,
        ordinal,
        provider: db.provider,
        region: region.to_owned(),
        tier: db.tier.clone(),
        status: DatabaseStatus::Pending,
        message: String::new(),
        key_kind,
        key_id: format!("arn:aws:kms:{region}:1:key/{ordinal}"),
        provider_account: "111111111111".to_owned(),
        wrapped_data_key: None,
        kms_failing_since: None,
        created_at: db.created_at,
        updated_at: db.created_at,
        terminated_at: None,
        pending_wrapped_data_key: None,
        data_key_rotated_at: None,
    }
}

fn provision_job(dc: &Datacenter) -> NewJob {
    NewJob {
        kind: JobKind::ProvisionDatacenter,
        database_id: dc.database_id,
        datacenter_id: Some(dc.id.clone()),
    }
}

fn page_filter(limit: u32) -> DatabaseFilter {
    DatabaseFilter {
        limit,
        ..DatabaseFilter::default()
    }
}

async fn activate(store: &DynStore, id: Uuid) {
    store
        .set_database_status(id, DatabaseStatus::Active, "")
        .await
        .unwrap();
}

async fn suite_databases(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();

    // Two share a creation time: the id breaks the tie.
    let base = Utc::now().trunc_subsecs(3);
    let mut created = Vec::new();
    for (n, (provider, age)) in [
        (Provider::Aws, 50),
        (Provider::Gcp, 40),
        (Provider::Aws, 30),
        (Provider::Gcp, 30),
        (Provider::Aws, 20),
        (Provider::Azure, 10),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut db, dc, job) = new_database(org.id, &format!("db{n}"), provider, "us-east-2", age);
        db.created_at = base - Duration::seconds(age);
        db.updated_at = db.created_at;
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await
            .unwrap();
        assert_eq!(
            store.get_database(org.id, db.id).await.unwrap(),
            Some(db.clone())
        );
        assert_eq!(
            store.get_datacenter(&dc.id).await.unwrap(),
            Some(dc.clone())
        );
        assert_eq!(store.list_datacenters(db.id).await.unwrap(), vec![dc]);
        created.push(db);
    }
    assert_eq!(created[2].created_at, created[3].created_at);

    let mut expected = created.clone();
    expected.sort_by_key(|d| (d.created_at, d.id));
    let all = store
        .list_databases(org.id, &page_filter(100))
        .await
        .unwrap();
    assert_eq!(all, expected);
    assert!(
        all.iter()
            .all(|d| is_ms(d.created_at) && is_ms(d.updated_at))
    );

    // Other organizations see none of them.
    assert_eq!(
        store.get_database(other.id, created[0].id).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_database(org.id, Uuid::new_v4()).await.unwrap(),
        None
    );
    assert!(
        store
            .list_databases(other.id, &page_filter(100))
            .await
            .unwrap()
            .is_empty()
    );

    // Paging: each page starts strictly after the previous page's last item.
    for limit in [1, 2, 4] {
        let mut pages = Vec::new();
        let mut filter = page_filter(limit);
        loop {
            let page = store.list_databases(org.id, &filter).await.unwrap();
            assert!(page.len() <= limit as usize);
            let Some(last) = page.last() else { break };
            filter.starting_after = Some(last.id);
            pages.extend(page);
        }
        assert_eq!(pages, expected, "limit {limit}");
    }
    let after_first = DatabaseFilter {
        starting_after: Some(expected[0].id),
        ..page_filter(2)
    };
    assert_eq!(
        store.list_databases(org.id, &after_first).await.unwrap(),
        expected[1..3].to_vec()
    );
    assert!(
        store
            .list_databases(org.id, &page_filter(0))
            .await
            .unwrap()
            .is_empty()
    );
    // Another organization's database is no cursor here.
    let foreign = DatabaseFilter {
        starting_after: Some(expected[0].id),
        ..page_filter(100)
    };
    assert!(
        store
            .list_databases(other.id, &foreign)
            .await
            .unwrap()
            .is_empty()
    );

    // Provider filter.
    let gcp = DatabaseFilter {
        provider: Some(Provider::Gcp),
        ..page_filter(100)
    };
    let want: Vec<_> = expected
        .iter()
        .filter(|d| d.provider == Provider::Gcp)
        .cloned()
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(store.list_databases(org.id, &gcp).await.unwrap(), want);

    // Status and termination.
    let target = expected[1].id;
    store
        .set_database_status(target, DatabaseStatus::Error, "it broke")
        .await
        .unwrap();
    let db = store.get_database(org.id, target).await.unwrap().unwrap();
    assert_eq!(
        (db.status, db.message.as_str()),
        (DatabaseStatus::Error, "it broke")
    );
    assert!(db.updated_at >= expected[1].updated_at);
    // By status: only that one, in any page position.
    let errored = DatabaseFilter {
        status: Some(DatabaseStatus::Error),
        ..page_filter(100)
    };
    assert_eq!(
        store
            .list_databases(org.id, &errored)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![target]
    );
    let pending_gcp = DatabaseFilter {
        status: Some(DatabaseStatus::Pending),
        provider: Some(Provider::Gcp),
        ..page_filter(100)
    };
    assert_eq!(
        store
            .list_databases(org.id, &pending_gcp)
            .await
            .unwrap()
            .len(),
        1,
        "the other GCP database is in ERROR"
    );
    store.mark_database_terminated(target).await.unwrap();
    let db = store.get_database(org.id, target).await.unwrap().unwrap();
    assert_eq!(db.status, DatabaseStatus::Terminated);
    let terminated_at = db.terminated_at.expect("terminated_at is set");
    assert!(is_ms(terminated_at));
    // A re-run keeps the first time.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.mark_database_terminated(target).await.unwrap();
    assert_eq!(
        store
            .get_database(org.id, target)
            .await
            .unwrap()
            .unwrap()
            .terminated_at,
        Some(terminated_at)
    );

    let ids = |dbs: Vec<Database>| dbs.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let live: Vec<_> = expected
        .iter()
        .map(|d| d.id)
        .filter(|id| *id != target)
        .collect();
    assert_eq!(
        ids(store
            .list_databases(org.id, &page_filter(100))
            .await
            .unwrap()),
        live
    );
    let include = DatabaseFilter {
        include_terminated: true,
        ..page_filter(100)
    };
    assert_eq!(
        ids(store.list_databases(org.id, &include).await.unwrap()),
        expected.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    let terminated_by_status = DatabaseFilter {
        status: Some(DatabaseStatus::Terminated),
        include_terminated: true,
        ..page_filter(100)
    };
    assert_eq!(
        ids(store
            .list_databases(org.id, &terminated_by_status)
            .await
            .unwrap()),
        vec![target]
    );
    for include_terminated in [false, true] {
        let only = DatabaseFilter {
            only_terminated: true,
            include_terminated,
            ..page_filter(100)
        };
        assert_eq!(
            ids(store.list_databases(org.id, &only).await.unwrap()),
            vec![target]
        );
    }
    // A terminated database still serves as a cursor.
    let after_terminated = DatabaseFilter {
        starting_after: Some(target),
        ..page_filter(100)
    };
    assert_eq!(
        ids(store
            .list_databases(org.id, &after_terminated)
            .await
            .unwrap()),
        live[1..].to_vec()
    );

    // Unknown rows.
    assert!(matches!(
        store
            .set_database_status(Uuid::new_v4(), DatabaseStatus::Active, "")
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.mark_database_terminated(Uuid::new_v4()).await,
        Err(StoreError::NotFound(_))
    ));
    let (db, dc, job) = new_database(Uuid::new_v4(), "orphan", Provider::Aws, "us-east-2", 0);
    assert!(matches!(
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await,
        Err(StoreError::NotFound("organization"))
    ));

    // One transaction: when the datacenter cannot be inserted, neither is the database.
    let (db, _, job) = new_database(org.id, "half", Provider::Aws, "us-east-2", 0);
    let mut clash = new_datacenter(&db, 1, "us-east-2", KeyKind::Platform);
    clash.id = format!("{}-1", expected[0].id);
    assert!(
        store
            .create_database(&db, &clash, &job, &Quotas::UNLIMITED)
            .await
            .is_err()
    );
    assert_eq!(store.get_database(org.id, db.id).await.unwrap(), None);
    assert_eq!(
        store
            .get_datacenter(&clash.id)
            .await
            .unwrap()
            .unwrap()
            .database_id,
        expected[0].id
    );
    // Nor when the job cannot be.
    let (db, dc, mut job) = new_database(org.id, "half2", Provider::Aws, "us-east-2", 0);
    job.database_id = Uuid::new_v4();
    assert!(matches!(
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_database(org.id, db.id).await.unwrap(), None);
    assert_eq!(store.get_datacenter(&dc.id).await.unwrap(), None);
}

async fn suite_add_datacenter(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc1, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc1, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();

    // Not ACTIVE yet: refused, nothing changes.
    let dc2 = new_datacenter(&db, 2, "eu-west-1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc2, &provision_job(&dc2), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Refused(RegionChangeRefusal::NotActive(DatabaseStatus::Pending))
    );
    assert_eq!(
        store.list_datacenters(db.id).await.unwrap(),
        vec![dc1.clone()]
    );
    assert_eq!(
        store
            .get_database(org.id, db.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DatabaseStatus::Pending
    );

    activate(&store, db.id).await;
    // A region it already has: refused.
    let same = new_datacenter(&db, 2, "us-east-2", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&same, &provision_job(&same), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Refused(RegionChangeRefusal::RegionTaken("us-east-2".into()))
    );
    assert_eq!(store.list_datacenters(db.id).await.unwrap().len(), 1);

    // A new region: added, the database goes MAINTENANCE, the job is queued.
    assert_eq!(
        store
            .add_datacenter(&dc2, &provision_job(&dc2), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    assert_eq!(
        store.list_datacenters(db.id).await.unwrap(),
        vec![dc1.clone(), dc2.clone()]
    );
    assert_eq!(
        store
            .get_database(org.id, db.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DatabaseStatus::Maintenance
    );
    let now = Utc::now() + Duration::seconds(1);
    let first = claim(&store, now).await.unwrap();
    assert_eq!(first.datacenter_id.as_deref(), Some(dc1.id.as_str()));
    let second = claim(&store, now).await.unwrap();
    assert_eq!(second.kind, JobKind::ProvisionDatacenter);
    assert_eq!(second.database_id, db.id);
    assert_eq!(second.datacenter_id.as_deref(), Some(dc2.id.as_str()));
    assert!(second.id > first.id);
    assert_eq!(claim(&store, now).await, None);

    // In MAINTENANCE: refused.
    let dc3 = new_datacenter(&db, 3, "ap-south-1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc3, &provision_job(&dc3), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Refused(RegionChangeRefusal::NotActive(DatabaseStatus::Maintenance))
    );
    assert_eq!(store.get_datacenter(&dc3.id).await.unwrap(), None);

    // A terminated datacenter's region is free again.
    activate(&store, db.id).await;
    store.mark_datacenter_terminated(&dc2.id).await.unwrap();
    let again = new_datacenter(&db, 3, "eu-west-1", KeyKind::Platform);
    assert_eq!(
        store
            .add_datacenter(&again, &provision_job(&again), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    let regions: Vec<_> = store
        .list_datacenters(db.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.ordinal, d.region, d.status))
        .collect();
    assert_eq!(
        regions,
        vec![
            (1, "us-east-2".to_owned(), DatabaseStatus::Pending),
            (2, "eu-west-1".to_owned(), DatabaseStatus::Terminated),
            (3, "eu-west-1".to_owned(), DatabaseStatus::Pending),
        ]
    );

    // Unknown database, or another organization's: NotFound.
    let (ghost, _, _) = new_database(org.id, "ghost", Provider::Aws, "us-east-2", 0);
    let ghost_dc = new_datacenter(&ghost, 1, "us-east-2", KeyKind::Customer);
    assert!(matches!(
        store
            .add_datacenter(&ghost_dc, &provision_job(&ghost_dc), &Quotas::UNLIMITED)
            .await,
        Err(StoreError::NotFound("database"))
    ));
    let other = store.create_org("other", None).await.unwrap();
    let mut foreign = new_datacenter(&db, 4, "us-west-2", KeyKind::Customer);
    foreign.org_id = other.id;
    activate(&store, db.id).await;
    assert!(matches!(
        store
            .add_datacenter(&foreign, &provision_job(&foreign), &Quotas::UNLIMITED)
            .await,
        Err(StoreError::NotFound("database"))
    ));

    // Racing additions of different regions: exactly one wins.
    let adds: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            let dc = new_datacenter(&db, 10 + n, &format!("region-{n}"), KeyKind::Customer);
            tokio::spawn(async move {
                store
                    .add_datacenter(&dc, &provision_job(&dc), &Quotas::UNLIMITED)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for add in adds {
        wins += usize::from(add.await.unwrap() == AddRegionOutcome::Added);
    }
    assert_eq!(wins, 1);
    assert_eq!(store.list_datacenters(db.id).await.unwrap().len(), 4);
}

fn terminate_job(database_id: Uuid, dc_id: &str) -> NewJob {
    NewJob {
        kind: JobKind::TerminateDatacenter,
        database_id,
        datacenter_id: Some(dc_id.to_owned()),
    }
}

/// An ACTIVE database with ACTIVE datacenters in `regions`, added one by one as the API does.
async fn multi_region_db(store: &DynStore, org: Uuid, regions: &[&str]) -> (Database, Vec<String>) {
    let (db, dc1, job) = new_database(org, "multi", Provider::Aws, regions[0], 0);
    store
        .create_database(&db, &dc1, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .set_datacenter_status(&dc1.id, DatabaseStatus::Active, "")
        .await
        .unwrap();
    activate(store, db.id).await;
    let mut ids = vec![dc1.id.clone()];
    for (i, region) in regions.iter().enumerate().skip(1) {
        let dc = new_datacenter(&db, i as i32 + 1, region, KeyKind::Customer);
        assert_eq!(
            store
                .add_datacenter(&dc, &provision_job(&dc), &Quotas::UNLIMITED)
                .await
                .unwrap(),
            AddRegionOutcome::Added
        );
        store
            .set_datacenter_status(&dc.id, DatabaseStatus::Active, "")
            .await
            .unwrap();
        activate(store, db.id).await;
        ids.push(dc.id);
    }
    (db, ids)
}

/// What the terminate job does once it ran: the datacenter TERMINATED, the database ACTIVE.
async fn finish_removal(store: &DynStore, db: Uuid, dc: &str) {
    store.mark_datacenter_terminated(dc).await.unwrap();
    activate(store, db).await;
}

async fn serving_regions(store: &DynStore, db: Uuid) -> Vec<String> {
    store
        .list_datacenters(db)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| {
            !matches!(
                d.status,
                DatabaseStatus::Terminated | DatabaseStatus::Terminating
            )
        })
        .map(|d| d.region)
        .collect()
}

async fn db_status(store: &DynStore, org: Uuid, db: Uuid) -> (DatabaseStatus, String) {
    let d = store.get_database(org, db).await.unwrap().unwrap();
    (d.status, d.message)
}

async fn suite_remove_datacenter(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dcs) = multi_region_db(&store, org.id, &["us-east-2", "eu-west-1", "us-west-2"]).await;
    let remove = |dc: String| {
        let store = Arc::clone(&store);
        async move {
            store
                .remove_datacenter(org.id, db.id, &dc, &terminate_job(db.id, &dc))
                .await
                .unwrap()
        }
    };

    assert_eq!(
        remove(format!("{}-9", db.id)).await,
        RemoveRegionOutcome::NoSuchDatacenter
    );

    // Removing one: the datacenter TERMINATING, the database in MAINTENANCE, the job queued.
    assert_eq!(remove(dcs[1].clone()).await, RemoveRegionOutcome::Requested);
    let dc = store.get_datacenter(&dcs[1]).await.unwrap().unwrap();
    assert_eq!(dc.status, DatabaseStatus::Terminating);
    assert_eq!(dc.terminated_at, None, "the job terminates it");
    assert_eq!(
        db_status(&store, org.id, db.id).await,
        (
            DatabaseStatus::Maintenance,
            keyplane_store::REMOVING_A_REGION.to_owned()
        )
    );
    let mut queued = Vec::new();
    while let Some(job) = claim(&store, Utc::now() + Duration::seconds(1)).await {
        queued.push((job.kind, job.datacenter_id));
    }
    assert!(
        queued.contains(&(JobKind::TerminateDatacenter, Some(dcs[1].clone()))),
        "{queued:?}"
    );

    // Again while it is being removed: nothing more happens.
    assert_eq!(
        remove(dcs[1].clone()).await,
        RemoveRegionOutcome::AlreadyRemoved
    );
    // No other region change during MAINTENANCE, in either direction.
    assert_eq!(
        remove(dcs[2].clone()).await,
        RemoveRegionOutcome::Refused(RegionChangeRefusal::InMaintenance)
    );
    assert_eq!(
        store.get_datacenter(&dcs[2]).await.unwrap().unwrap().status,
        DatabaseStatus::Active
    );
    let extra = new_datacenter(&db, 7, "ap-south-1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&extra, &provision_job(&extra), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Refused(RegionChangeRefusal::NotActive(DatabaseStatus::Maintenance))
    );

    finish_removal(&store, db.id, &dcs[1]).await;
    assert_eq!(
        remove(dcs[1].clone()).await,
        RemoveRegionOutcome::AlreadyRemoved
    );
    assert_eq!(remove(dcs[2].clone()).await, RemoveRegionOutcome::Requested);
    finish_removal(&store, db.id, &dcs[2]).await;

    // The last region stays.
    assert_eq!(
        remove(dcs[0].clone()).await,
        RemoveRegionOutcome::Refused(RegionChangeRefusal::LastRegion)
    );
    assert_eq!(
        store.get_datacenter(&dcs[0]).await.unwrap().unwrap().status,
        DatabaseStatus::Active
    );
    assert_eq!(
        db_status(&store, org.id, db.id).await.0,
        DatabaseStatus::Active
    );
    assert_eq!(serving_regions(&store, db.id).await, vec!["us-east-2"]);

    // Unknown database, or another organization's: NotFound.
    let other = store.create_org("other", None).await.unwrap();
    for (org_id, db_id) in [(org.id, Uuid::new_v4()), (other.id, db.id)] {
        assert!(matches!(
            store
                .remove_datacenter(org_id, db_id, &dcs[0], &terminate_job(db_id, &dcs[0]))
                .await,
            Err(StoreError::NotFound("database"))
        ));
    }
}

async fn suite_concurrent_region_changes(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();

    // 8 concurrent removals on a 3-region database, round after round, each finished as its
    // job would: at most one passes per round, and the database keeps a region.
    let (db, dcs) = multi_region_db(&store, org.id, &["us-east-2", "eu-west-1", "us-west-2"]).await;
    let mut removed = 0;
    for _round in 0..4 {
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = Arc::clone(&store);
                let dc = dcs[n % dcs.len()].clone();
                let job = terminate_job(db.id, &dc);
                tokio::spawn(async move {
                    let out = store.remove_datacenter(org.id, db.id, &dc, &job).await;
                    (dc, out.unwrap())
                })
            })
            .collect();
        let mut passed = Vec::new();
        for t in tasks {
            let (dc, out) = t.await.unwrap();
            if out == RemoveRegionOutcome::Requested {
                passed.push(dc);
            }
        }
        assert!(passed.len() <= 1, "two removals passed at once: {passed:?}");
        for dc in &passed {
            finish_removal(&store, db.id, dc).await;
        }
        removed += passed.len();
    }
    assert_eq!(removed, 2);
    assert_eq!(serving_regions(&store, db.id).await.len(), 1);

    // Even when the database's status is set back to ACTIVE before a removal's job ran (as a
    // stray status refresh could), a TERMINATING region does not count as one that serves.
    let (db, dcs) = multi_region_db(&store, org.id, &["us-east-2", "eu-west-1", "us-west-2"]).await;
    let remove = |dc: &str| {
        let (store, dc, job) = (Arc::clone(&store), dc.to_owned(), terminate_job(db.id, dc));
        async move {
            store
                .remove_datacenter(org.id, db.id, &dc, &job)
                .await
                .unwrap()
        }
    };
    assert_eq!(remove(&dcs[0]).await, RemoveRegionOutcome::Requested);
    activate(&store, db.id).await;
    assert_eq!(remove(&dcs[1]).await, RemoveRegionOutcome::Requested);
    activate(&store, db.id).await;
    assert_eq!(
        remove(&dcs[2]).await,
        RemoveRegionOutcome::Refused(RegionChangeRefusal::LastRegion)
    );
    assert_eq!(serving_regions(&store, db.id).await, vec!["us-west-2"]);

    // A concurrent add-region and terminate-datacenter on an ACTIVE database: never both.
    for n in 0..6 {
        let (db, dcs) = multi_region_db(&store, org.id, &["us-east-2", "eu-west-1"]).await;
        let add = {
            let store = Arc::clone(&store);
            let dc = new_datacenter(&db, 3, "us-west-2", KeyKind::Customer);
            tokio::spawn(async move {
                store
                    .add_datacenter(&dc, &provision_job(&dc), &Quotas::UNLIMITED)
                    .await
                    .unwrap()
            })
        };
        let rm = {
            let store = Arc::clone(&store);
            let (dc, job) = (dcs[n % 2].clone(), terminate_job(db.id, &dcs[n % 2]));
            tokio::spawn(async move {
                store
                    .remove_datacenter(org.id, db.id, &dc, &job)
                    .await
                    .unwrap()
            })
        };
        let (added, removed) = (add.await.unwrap(), rm.await.unwrap());
        let passes = usize::from(added == AddRegionOutcome::Added)
            + usize::from(removed == RemoveRegionOutcome::Requested);
        assert_eq!(passes, 1, "{added:?} {removed:?}");
        assert_eq!(
            db_status(&store, org.id, db.id).await.0,
            DatabaseStatus::Maintenance
        );
    }

    // During MAINTENANCE (a region being added), both are refused.
    let (db, dcs) = multi_region_db(&store, org.id, &["us-east-2", "eu-west-1"]).await;
    let adding = new_datacenter(&db, 3, "us-west-2", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&adding, &provision_job(&adding), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    let add = {
        let store = Arc::clone(&store);
        let dc = new_datacenter(&db, 4, "ap-south-1", KeyKind::Customer);
        tokio::spawn(async move {
            store
                .add_datacenter(&dc, &provision_job(&dc), &Quotas::UNLIMITED)
                .await
                .unwrap()
        })
    };
    let rm = {
        let store = Arc::clone(&store);
        let (dc, job) = (dcs[1].clone(), terminate_job(db.id, &dcs[1]));
        tokio::spawn(async move {
            store
                .remove_datacenter(org.id, db.id, &dc, &job)
                .await
                .unwrap()
        })
    };
    assert_eq!(
        add.await.unwrap(),
        AddRegionOutcome::Refused(RegionChangeRefusal::NotActive(DatabaseStatus::Maintenance))
    );
    assert_eq!(
        rm.await.unwrap(),
        RemoveRegionOutcome::Refused(RegionChangeRefusal::InMaintenance)
    );
    assert_eq!(serving_regions(&store, db.id).await.len(), 3);
}

async fn suite_quotas(store: DynStore) {
    let org = store.create_org("quota", None).await.unwrap().id;
    let other = store.create_org("other", None).await.unwrap().id;
    let q = Quotas {
        databases: 2,
        datacenters: 3,
        tokens: 2,
    };
    let over = |kind: QuotaKind, limit: u32| QuotaExceeded { kind, limit };

    // Databases: two fit, the third is refused and leaves nothing behind.
    let mut made = Vec::new();
    for name in ["one", "two"] {
        let (db, dc, job) = new_database(org, name, Provider::Aws, "us-east-2", 0);
        assert_eq!(
            store.create_database(&db, &dc, &job, &q).await.unwrap(),
            CreateOutcome::Created
        );
        made.push((db, dc));
    }
    let (db3, dc3, job3) = new_database(org, "three", Provider::Aws, "us-east-2", 0);
    assert_eq!(
        store.create_database(&db3, &dc3, &job3, &q).await.unwrap(),
        CreateOutcome::OverQuota(over(QuotaKind::Databases, 2))
    );
    assert_eq!(store.get_database(org, db3.id).await.unwrap(), None);
    assert_eq!(store.get_datacenter(&dc3.id).await.unwrap(), None);
    assert!(claim(&store, Utc::now()).await.is_some(), "one's job");
    assert!(claim(&store, Utc::now()).await.is_some(), "two's job");
    assert!(
        claim(&store, Utc::now()).await.is_none(),
        "no job for the refused database"
    );
    // Another organization has quotas of its own.
    let (odb, odc, ojob) = new_database(other, "theirs", Provider::Aws, "us-east-2", 0);
    assert_eq!(
        store.create_database(&odb, &odc, &ojob, &q).await.unwrap(),
        CreateOutcome::Created
    );

    // Datacenters: a third region fits, a fourth is refused.
    let (db1, _) = &made[0];
    activate(&store, db1.id).await;
    let dc2 = new_datacenter(db1, 2, "eu-west-1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc2, &provision_job(&dc2), &q)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    activate(&store, db1.id).await;
    let dc3 = new_datacenter(db1, 3, "us-west-2", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc3, &provision_job(&dc3), &q)
            .await
            .unwrap(),
        AddRegionOutcome::OverQuota(over(QuotaKind::Datacenters, 3))
    );
    assert_eq!(store.get_datacenter(&dc3.id).await.unwrap(), None);
    let (status, _) = db_status(&store, org, db1.id).await;
    assert_eq!(status, DatabaseStatus::Active, "not left in MAINTENANCE");
    // A terminated database and its region no longer count.
    let (db2, dc_of_2) = &made[1];
    store.mark_datacenter_terminated(&dc_of_2.id).await.unwrap();
    store.mark_database_terminated(db2.id).await.unwrap();
    assert_eq!(
        store
            .add_datacenter(&dc3, &provision_job(&dc3), &q)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    // Now 1 database but 3 datacenters: a new database is refused for its datacenter.
    let (db4, dc4, job4) = new_database(org, "four", Provider::Aws, "us-east-2", 0);
    assert_eq!(
        store.create_database(&db4, &dc4, &job4, &q).await.unwrap(),
        CreateOutcome::OverQuota(over(QuotaKind::Datacenters, 3))
    );
    assert_eq!(
        store
            .create_database(&db4, &dc4, &job4, &Quotas::UNLIMITED)
            .await
            .unwrap(),
        CreateOutcome::Created,
        "no limit: the operator's own path"
    );

    // Tokens: unrevoked ones count.
    for c in ["t1", "t2"] {
        assert_eq!(
            store.insert_token(&token(org, c, 0), &q).await.unwrap(),
            CreateOutcome::Created
        );
    }
    assert_eq!(
        store.insert_token(&token(org, "t3", 0), &q).await.unwrap(),
        CreateOutcome::OverQuota(over(QuotaKind::Tokens, 2))
    );
    assert!(store.authenticate("t3").await.unwrap().is_none());
    assert!(store.revoke_token(org, "t1").await.unwrap());
    assert_eq!(
        store.insert_token(&token(org, "t3", 0), &q).await.unwrap(),
        CreateOutcome::Created
    );
    // A missing organization is still refused as such under a limit.
    let err = store
        .insert_token(&token(Uuid::new_v4(), "t-orphan", 0), &q)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("organization")),
        "{err:?}"
    );
}

/// What one test does in sequence above, from 8 tasks at once: the count is taken in the
/// transaction that creates, so the quota is never overshot.
async fn suite_concurrent_quotas(store: DynStore) {
    let org = store.create_org("burst", None).await.unwrap().id;
    let q = Quotas {
        databases: 3,
        datacenters: 5,
        tokens: 2,
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                let (db, dc, job) =
                    new_database(org, &format!("db-{i}"), Provider::Aws, "us-east-2", 0);
                barrier.wait().await;
                store.create_database(&db, &dc, &job, &q).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            CreateOutcome::Created => created += 1,
            CreateOutcome::OverQuota(e) => assert_eq!(e.kind, QuotaKind::Databases),
        }
    }
    assert_eq!(created, 3);
    let live = store.list_databases(org, &page_filter(100)).await.unwrap();
    assert_eq!(live.len(), 3, "exactly the quota, whoever won");

    // Regions: 3 datacenters live, room for 2 more; 8 concurrent additions (each to its own
    // database, so the region rule admits them all) add exactly 2.
    let mut targets = Vec::new();
    for i in 0..8 {
        let (db, dc, job) = new_database(org, &format!("extra-{i}"), Provider::Aws, "us-east-2", 0);
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await
            .unwrap();
        store.mark_datacenter_terminated(&dc.id).await.unwrap();
        activate(&store, db.id).await;
        targets.push(db);
    }
    let loose = Quotas {
        databases: u32::MAX,
        ..q
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|db| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                let dc = new_datacenter(&db, 2, "eu-west-1", KeyKind::Customer);
                barrier.wait().await;
                store
                    .add_datacenter(&dc, &provision_job(&dc), &loose)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        match t.await.unwrap() {
            AddRegionOutcome::Added => added += 1,
            AddRegionOutcome::OverQuota(e) => assert_eq!(e.kind, QuotaKind::Datacenters),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(added, 2);

    // Tokens: 8 at once, 2 admitted.
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .insert_token(&token(org, &format!("burst-{i}"), 0), &q)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap() == CreateOutcome::Created);
    }
    assert_eq!(admitted, 2);
    assert_eq!(store.list_tokens(org).await.unwrap().len(), 2);
}

/// A rotation's pending data key: recorded once over the key of record, then promoted or
/// forgotten, never left beside a shredded datacenter; and which datacenters are due.
async fn suite_data_key_rotation(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    assert!(store.set_wrapped_data_key(&dc.id, &[1]).await.unwrap());
    let due = |before| {
        let store = store.clone();
        async move {
            let found = store.data_keys_due(before, 10).await.unwrap();
            found.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    // Only an ACTIVE datacenter is due.
    assert!(due(Utc::now() + Duration::days(1)).await.is_empty());
    store.activate_datacenter(&dc.id).await.unwrap();
    assert_eq!(
        due(Utc::now() + Duration::days(1)).await,
        vec![dc.id.clone()]
    );
    assert!(due(dc.created_at - Duration::seconds(1)).await.is_empty());

    // Begun only over the key of record, and once.
    assert!(
        !store
            .begin_data_key_rotation(&dc.id, &[9], &[2])
            .await
            .unwrap()
    );
    assert!(
        store
            .begin_data_key_rotation(&dc.id, &[1], &[2])
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_data_key_rotation(&dc.id, &[1], &[3])
            .await
            .unwrap()
    );
    let now = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(now.wrapped_data_key, Some(vec![1]));
    assert_eq!(now.pending_wrapped_data_key, Some(vec![2]));
    // A pending rotation is due whenever its rotation was last made.
    assert_eq!(
        due(dc.created_at - Duration::seconds(1)).await,
        vec![dc.id.clone()]
    );

    // Forgotten only by the one that is pending.
    assert!(!store.abandon_data_key_rotation(&dc.id, &[3]).await.unwrap());
    assert!(store.abandon_data_key_rotation(&dc.id, &[2]).await.unwrap());
    let now = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(
        (now.wrapped_data_key, now.pending_wrapped_data_key),
        (Some(vec![1]), None)
    );

    // Eight at once: exactly one begins.
    let mut tasks = vec![];
    for i in 0..8u8 {
        let (store, id) = (store.clone(), dc.id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .begin_data_key_rotation(&id, &[1], &[10 + i])
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    let pending = store
        .get_datacenter(&dc.id)
        .await
        .unwrap()
        .unwrap()
        .pending_wrapped_data_key
        .unwrap();

    // Promoted only by the one that is pending; the old wrapped key is gone.
    assert!(!store.finish_data_key_rotation(&dc.id, &[99]).await.unwrap());
    let before = Utc::now() - Duration::seconds(1);
    assert!(
        store
            .finish_data_key_rotation(&dc.id, &pending)
            .await
            .unwrap()
    );
    let now = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(now.wrapped_data_key, Some(pending.clone()));
    assert_eq!(now.pending_wrapped_data_key, None);
    let rotated = now.data_key_rotated_at.expect("rotated_at set");
    assert!(rotated > before, "{rotated}");
    assert!(due(rotated).await.is_empty());
    assert_eq!(
        due(rotated + Duration::seconds(1)).await,
        vec![dc.id.clone()]
    );

    // Terminated mid-rotation: both wrapped keys are shredded and nothing promotes after.
    assert!(
        store
            .begin_data_key_rotation(&dc.id, &pending, &[42])
            .await
            .unwrap()
    );
    store.mark_datacenter_terminated(&dc.id).await.unwrap();
    let gone = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(
        (gone.wrapped_data_key, gone.pending_wrapped_data_key),
        (None, None)
    );
    assert!(!store.finish_data_key_rotation(&dc.id, &[42]).await.unwrap());
    assert!(
        !store
            .begin_data_key_rotation(&dc.id, &pending, &[43])
            .await
            .unwrap()
    );
    assert!(due(Utc::now() + Duration::days(1)).await.is_empty());
}

/// A key's overdue-rotation record changes once each way, from 8 processes at once too.
async fn suite_rotation_overdue(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let key = "arn:aws:kms:us-east-2:1:key/k";
    assert!(!store.set_rotation_overdue(org.id, key, None).await.unwrap());
    let mut tasks = vec![];
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let reason = format!("due since day {i}");
            store
                .set_rotation_overdue(org.id, key, Some(&reason))
                .await
                .unwrap()
        }));
    }
    let mut changed = 0;
    for t in tasks {
        changed += usize::from(t.await.unwrap());
    }
    assert_eq!(changed, 1, "raised once");
    assert!(
        !store
            .set_rotation_overdue(org.id, key, Some("again"))
            .await
            .unwrap()
    );
    // Another organization's record of the same key ID is its own.
    assert!(
        store
            .set_rotation_overdue(other.id, key, Some("x"))
            .await
            .unwrap()
    );
    assert!(store.set_rotation_overdue(org.id, key, None).await.unwrap());
    assert!(!store.set_rotation_overdue(org.id, key, None).await.unwrap());
    assert!(
        store
            .set_rotation_overdue(org.id, key, Some("later"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_rotation_overdue(other.id, key, Some("y"))
            .await
            .unwrap()
    );
}

async fn suite_datacenter_keys(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();

    // The wrapped data key is stored once.
    assert!(
        store
            .set_wrapped_data_key(&dc.id, &[1, 2, 0, 255])
            .await
            .unwrap()
    );
    assert!(!store.set_wrapped_data_key(&dc.id, &[9, 9]).await.unwrap());
    assert_eq!(
        store
            .get_datacenter(&dc.id)
            .await
            .unwrap()
            .unwrap()
            .wrapped_data_key,
        Some(vec![1, 2, 0, 255])
    );
    assert!(matches!(
        store.set_wrapped_data_key("nope-1", &[1]).await,
        Err(StoreError::NotFound("datacenter"))
    ));

    // The KMS grace period marker.
    let since = Utc::now() - Duration::minutes(3);
    store
        .set_kms_failing_since(&dc.id, Some(since))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_datacenter(&dc.id)
            .await
            .unwrap()
            .unwrap()
            .kms_failing_since,
        Some(since.trunc_subsecs(3))
    );
    store.set_kms_failing_since(&dc.id, None).await.unwrap();
    assert_eq!(
        store
            .get_datacenter(&dc.id)
            .await
            .unwrap()
            .unwrap()
            .kms_failing_since,
        None
    );
    store
        .set_datacenter_status(&dc.id, DatabaseStatus::Active, "")
        .await
        .unwrap();
    store
        .set_datacenter_status(&dc.id, DatabaseStatus::Error, "key gone")
        .await
        .unwrap();
    let got = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.message.as_str()),
        (DatabaseStatus::Error, "key gone")
    );
    for result in [
        store.set_kms_failing_since("nope-1", None).await,
        store
            .set_datacenter_status("nope-1", DatabaseStatus::Active, "")
            .await,
        store.mark_datacenter_terminated("nope-1").await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound("datacenter"))),
            "{result:?}"
        );
    }

    // Live customer-keyed datacenters, of every organization, by id.
    let (db2, dc2, job2) = new_database(other.id, "db2", Provider::Gcp, "us-east1", 0);
    store
        .create_database(&db2, &dc2, &job2, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (db3, mut dc3, job3) = new_database(org.id, "db3", Provider::Aws, "us-east-2", 0);
    dc3.key_kind = KeyKind::Platform;
    store
        .create_database(&db3, &dc3, &job3, &Quotas::UNLIMITED)
        .await
        .unwrap();
    activate(&store, db2.id).await;
    let dc2b = new_datacenter(&db2, 2, "europe-west1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc2b, &provision_job(&dc2b), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    let mut want = vec![dc.id.clone(), dc2.id.clone(), dc2b.id.clone()];
    want.sort();
    let live = |v: Vec<Datacenter>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(live(store.live_customer_datacenters().await.unwrap()), want);
    // One key's: only its organization's, its key and its region; the platform-keyed db3
    // shares the region but not the key kind.
    assert_eq!(
        live(
            store
                .live_datacenters_of_key(org.id, &dc.key_id, &dc.region)
                .await
                .unwrap()
        ),
        vec![dc.id.clone()]
    );
    assert_eq!(
        live(
            store
                .live_datacenters_of_key(other.id, &dc2b.key_id, "europe-west1")
                .await
                .unwrap()
        ),
        vec![dc2b.id.clone()]
    );
    assert!(
        store
            .live_datacenters_of_key(other.id, &dc.key_id, &dc.region)
            .await
            .unwrap()
            .is_empty(),
        "another organization's"
    );
    assert!(
        store
            .live_datacenters_of_key(org.id, &dc.key_id, "eu-west-1")
            .await
            .unwrap()
            .is_empty(),
        "another region"
    );
    assert!(
        store
            .live_datacenters_of_key(org.id, &dc3.key_id, &dc3.region)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != dc3.id),
        "platform-keyed"
    );

    // Termination forgets the wrapped key (crypto-shredding) and for good.
    store.mark_datacenter_terminated(&dc.id).await.unwrap();
    let gone = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(gone.status, DatabaseStatus::Terminated);
    assert_eq!(gone.wrapped_data_key, None);
    assert_eq!(gone.kms_failing_since, None);
    let terminated_at = gone.terminated_at.expect("terminated_at is set");
    assert!(is_ms(terminated_at));
    // Every process finds it among the lately terminated, until the window passes it.
    let lately = store
        .terminated_since(terminated_at - Duration::seconds(1))
        .await
        .unwrap();
    assert!(lately.contains(&dc.id), "{lately:?}");
    assert!(
        !store
            .terminated_since(terminated_at)
            .await
            .unwrap()
            .contains(&dc.id)
    );
    // SQLite erases its copies of deleted values; PostgreSQL says it cannot.
    assert_eq!(
        store.erase_deleted().await.unwrap(),
        store.backend() == "sqlite"
    );
    assert!(!store.set_wrapped_data_key(&dc.id, &[7]).await.unwrap());
    store.mark_datacenter_terminated(&dc.id).await.unwrap();
    let gone = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(gone.wrapped_data_key, None);
    assert_eq!(gone.terminated_at, Some(terminated_at));
    want.retain(|id| *id != dc.id);
    assert_eq!(live(store.live_customer_datacenters().await.unwrap()), want);
    assert!(
        store
            .live_datacenters_of_key(org.id, &dc.key_id, &dc.region)
            .await
            .unwrap()
            .is_empty(),
        "terminated"
    );
    store
        .set_datacenter_status(&dc2.id, DatabaseStatus::Terminated, "")
        .await
        .unwrap();
    assert_eq!(
        live(store.live_customer_datacenters().await.unwrap()),
        vec![dc2b.id.clone()]
    );
}

async fn suite_job_lifecycle(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    let before = Utc::now().trunc_subsecs(3);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let now = Utc::now() + Duration::milliseconds(1);

    // The creation queued the provisioning job.
    let claimed = claim(&store, now).await.unwrap();
    assert_eq!(claimed.kind, JobKind::ProvisionDatacenter);
    assert_eq!(claimed.database_id, db.id);
    assert_eq!(claimed.datacenter_id, Some(dc.id.clone()));
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.last_error, "");
    assert!(claimed.created_at >= before && is_ms(claimed.created_at));
    assert!(claimed.not_before <= now && is_ms(claimed.not_before));
    assert_eq!(claimed.lease_owner.as_deref(), Some(ME));
    assert_eq!(claimed.lease_until, Some(lease_from(now).trunc_subsecs(3)));
    assert_eq!(claimed.taken_over_from, None);
    assert_eq!(claim(&store, now).await, None);

    // Retry: not before its time.
    let later = now + Duration::seconds(60);
    assert_eq!(
        store
            .retry_job(claimed.id, ME, later, "throttled")
            .await
            .unwrap(),
        Lease::Held
    );
    assert_eq!(claim(&store, now).await, None);
    assert_eq!(claim(&store, later - Duration::milliseconds(1)).await, None);
    let again = claim(&store, later).await.unwrap();
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.last_error, "throttled");
    assert_eq!(again.not_before, later.trunc_subsecs(3));
    assert_eq!(again.created_at, claimed.created_at);
    assert_eq!(
        again.taken_over_from, None,
        "a retry is claimed from the queue"
    );

    // Failed: never claimed again, not even once its leases are expired.
    assert_eq!(
        store.fail_job(again.id, ME, "key disabled").await.unwrap(),
        Lease::Held
    );
    assert_eq!(store.expire_job_leases(later).await.unwrap(), 0);
    assert_eq!(claim(&store, later + Duration::days(1)).await, None);

    // Termination: job and status change together.
    let terminate = NewJob {
        kind: JobKind::TerminateDatabase,
        database_id: db.id,
        datacenter_id: None,
    };
    let id = store
        .enqueue_job(&terminate, Some((db.id, DatabaseStatus::Terminating)))
        .await
        .unwrap();
    assert!(id > claimed.id);
    assert_eq!(
        store
            .get_database(org.id, db.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DatabaseStatus::Terminating
    );
    let job = claim(&store, Utc::now() + Duration::milliseconds(1))
        .await
        .unwrap();
    assert_eq!(
        (job.id, job.kind, job.datacenter_id.clone()),
        (id, JobKind::TerminateDatabase, None)
    );
    assert_eq!(store.finish_job(job.id, ME).await.unwrap(), Lease::Held);
    assert_eq!(store.expire_job_leases(later).await.unwrap(), 0);
    assert_eq!(claim(&store, later + Duration::days(1)).await, None);

    // Oldest first.
    let mut ids = Vec::new();
    for kind in [
        JobKind::TerminateDatacenter,
        JobKind::ProvisionDatacenter,
        JobKind::TerminateDatacenter,
    ] {
        let job = NewJob {
            kind,
            database_id: db.id,
            datacenter_id: Some(dc.id.clone()),
        };
        ids.push(store.enqueue_job(&job, None).await.unwrap());
    }
    let mut claimed_ids = Vec::new();
    let mut kinds = Vec::new();
    while let Some(job) = claim(&store, later).await {
        claimed_ids.push(job.id);
        kinds.push(job.kind);
    }
    assert_eq!(claimed_ids, ids);
    assert_eq!(
        kinds,
        vec![
            JobKind::TerminateDatacenter,
            JobKind::ProvisionDatacenter,
            JobKind::TerminateDatacenter
        ]
    );
    // A sole runner's restart ends the leases of all three at once.
    assert_eq!(store.expire_job_leases(later).await.unwrap(), 3);
    assert_eq!(store.expire_job_leases(later).await.unwrap(), 0);
    let resumed = claim(&store, later).await.unwrap();
    assert_eq!(
        (
            resumed.id,
            resumed.attempts,
            resumed.taken_over_from.as_deref()
        ),
        (ids[0], 2, Some(ME))
    );

    // Unknown rows: nothing is queued, nothing changes.
    let ghost = NewJob {
        kind: JobKind::TerminateDatabase,
        database_id: Uuid::new_v4(),
        datacenter_id: None,
    };
    assert!(matches!(
        store.enqueue_job(&ghost, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .enqueue_job(
                &ghost,
                Some((ghost.database_id, DatabaseStatus::Terminating))
            )
            .await,
        Err(StoreError::NotFound("database"))
    ));
    let bad_dc = NewJob {
        kind: JobKind::TerminateDatacenter,
        database_id: db.id,
        datacenter_id: Some("nope-1".to_owned()),
    };
    assert!(matches!(
        store
            .enqueue_job(&bad_dc, Some((db.id, DatabaseStatus::Maintenance)))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .get_database(org.id, db.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DatabaseStatus::Terminating,
        "the failed enqueue rolled back its status change"
    );
    for result in [
        store.finish_job(-1, ME).await,
        store.fail_job(-1, ME, "x").await,
        store.retry_job(-1, ME, later, "x").await,
        store.renew_job_lease(-1, ME, later).await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound("job"))),
            "{result:?}"
        );
    }
}

async fn suite_concurrent_claim(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let mut queued = Vec::new();
    for _ in 1..20 {
        queued.push(store.enqueue_job(&provision_job(&dc), None).await.unwrap());
    }
    // 8 replicas claim at once, from the queue, then again once every lease has passed (each
    // job taken over from the one that held it).
    let now = Utc::now() + Duration::seconds(1);
    let takeover = lease_from(now) + Duration::milliseconds(1);
    let mut holders = std::collections::HashMap::new();
    let mut first_holders = std::collections::HashMap::new();
    for (round, at) in [(1, now), (2, takeover)] {
        let claimers: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let owner = format!("replica-{round}-{i}");
                    let mut mine = Vec::new();
                    while let Some(job) = store.claim_job(&owner, at, lease_from(at)).await.unwrap()
                    {
                        assert_eq!(job.attempts, round);
                        assert_eq!(job.state, JobState::Running);
                        assert_eq!(job.lease_owner.as_deref(), Some(owner.as_str()));
                        mine.push((job.id, owner.clone(), job.taken_over_from));
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.unwrap());
        }
        assert_eq!(
            all.len(),
            20,
            "round {round}: every job claimed once: {all:?}"
        );
        let mut ids: Vec<i64> = all.iter().map(|(id, _, _)| *id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20, "round {round}: no job claimed twice");
        assert!(queued.iter().all(|id| ids.contains(id)));
        for (id, owner, from) in all {
            if round == 1 {
                assert_eq!(from, None);
            } else {
                assert_eq!(from.as_ref(), first_holders.get(&id), "job {id}");
            }
            holders.insert(id, owner);
        }
        if round == 1 {
            first_holders = holders.clone();
        }
    }
    // The first round's replicas lost every job: none of them records an outcome.
    for (id, owner) in &holders {
        assert_eq!(
            store.finish_job(*id, &first_holders[id]).await.unwrap(),
            Lease::Lost
        );
        assert_eq!(store.finish_job(*id, owner).await.unwrap(), Lease::Held);
    }
}

/// A renewal racing a takeover: exactly one of them wins, every time. The holder renews
/// its passed lease while another replica claims; either the renewal came first (and the
/// lease is held again, so the claim finds nothing) or the claim did (and the renewal is
/// refused).
async fn suite_renewal_races_takeover(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (mut renewed, mut taken) = (0, 0);
    for round in 0..24 {
        let t = Utc::now() + Duration::seconds(1) + Duration::minutes(10 * round);
        let holder = format!("holder-{round}");
        let job = store
            .claim_job(&holder, t, t + Duration::seconds(1))
            .await
            .unwrap()
            .unwrap();
        let after = t + Duration::seconds(2);
        let renewal = {
            let store = Arc::clone(&store);
            let holder = holder.clone();
            tokio::spawn(async move {
                store
                    .renew_job_lease(job.id, &holder, after + Duration::seconds(60))
                    .await
                    .unwrap()
            })
        };
        let takeover = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .claim_job("thief", after, after + Duration::seconds(1))
                    .await
                    .unwrap()
            })
        };
        // Started in both orders, on the runtime's two threads.
        let (renew, claim) = if round % 2 == 0 {
            let (r, c) = tokio::join!(renewal, takeover);
            (r.unwrap(), c.unwrap())
        } else {
            let (c, r) = tokio::join!(takeover, renewal);
            (r.unwrap(), c.unwrap())
        };
        match (renew, claim) {
            (Lease::Held, None) => renewed += 1,
            (Lease::Lost, Some(j)) => {
                assert_eq!(
                    (j.id, j.taken_over_from.as_deref()),
                    (job.id, Some(holder.as_str()))
                );
                taken += 1;
            }
            other => panic!("round {round}: both or neither won: {other:?}"),
        }
        // Whoever holds it finishes it; the other is refused.
        let (winner, loser) = if renew == Lease::Held {
            (holder.as_str(), "thief")
        } else {
            ("thief", holder.as_str())
        };
        assert_eq!(store.finish_job(job.id, loser).await.unwrap(), Lease::Lost);
        assert_eq!(store.finish_job(job.id, winner).await.unwrap(), Lease::Held);
        store.enqueue_job(&provision_job(&dc), None).await.unwrap();
    }
    eprintln!("renewal vs takeover: renewal first {renewed}, takeover first {taken}");
}

/// The lease's rules, one by one: a held lease is not claimable, a renewed one neither, a
/// passed one is taken over; the replica that lost it renews, finishes, fails and retries
/// nothing; a lease that passed without a takeover still lets its holder finish.
async fn suite_job_leases(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let t0 = Utc::now() + Duration::seconds(1);
    let s = Duration::seconds;

    let job = store.claim_job("a", t0, t0 + s(10)).await.unwrap().unwrap();
    assert_eq!(
        store.claim_job("b", t0 + s(5), t0 + s(15)).await.unwrap(),
        None,
        "held"
    );
    assert_eq!(
        store
            .renew_job_lease(job.id, "a", t0 + s(15))
            .await
            .unwrap(),
        Lease::Held
    );
    assert_eq!(
        store.claim_job("b", t0 + s(12), t0 + s(22)).await.unwrap(),
        None,
        "renewed: still held after the first lease's end"
    );
    assert_eq!(
        store
            .renew_job_lease(job.id, "b", t0 + s(99))
            .await
            .unwrap(),
        Lease::Lost,
        "only the holder renews"
    );
    // Passed (lease_until <= now): taken over.
    let b = store
        .claim_job("b", t0 + s(15), t0 + s(25))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, job.id);
    assert_eq!(b.attempts, 2);
    assert_eq!(b.lease_owner.as_deref(), Some("b"));
    assert_eq!(b.taken_over_from.as_deref(), Some("a"));
    assert_eq!(b.lease_until, Some((t0 + s(25)).trunc_subsecs(3)));
    // "a" comes back: it changes nothing.
    assert_eq!(
        store
            .renew_job_lease(job.id, "a", t0 + s(99))
            .await
            .unwrap(),
        Lease::Lost
    );
    assert_eq!(store.finish_job(job.id, "a").await.unwrap(), Lease::Lost);
    assert_eq!(store.fail_job(job.id, "a", "x").await.unwrap(), Lease::Lost);
    assert_eq!(
        store.retry_job(job.id, "a", t0, "x").await.unwrap(),
        Lease::Lost
    );
    assert_eq!(
        store.claim_job("c", t0 + s(20), t0 + s(30)).await.unwrap(),
        None,
        "b holds it"
    );
    // "b"'s lease passes, nobody takes it: b still records the outcome.
    assert_eq!(store.finish_job(job.id, "b").await.unwrap(), Lease::Held);
    assert_eq!(
        store.finish_job(job.id, "b").await.unwrap(),
        Lease::Lost,
        "done already"
    );
    assert_eq!(
        store
            .renew_job_lease(job.id, "b", t0 + s(99))
            .await
            .unwrap(),
        Lease::Lost
    );
    assert_eq!(
        store.claim_job("c", t0 + s(99), t0 + s(109)).await.unwrap(),
        None
    );

    // A retried job is back in the queue: claimed from it, not taken over.
    let id = store.enqueue_job(&provision_job(&dc), None).await.unwrap();
    let j = store.claim_job("a", t0, t0 + s(10)).await.unwrap().unwrap();
    assert_eq!(j.id, id);
    assert_eq!(
        store.retry_job(id, "a", t0 + s(1), "slow").await.unwrap(),
        Lease::Held
    );
    assert_eq!(
        store.renew_job_lease(id, "a", t0 + s(99)).await.unwrap(),
        Lease::Lost,
        "released"
    );
    let j = store
        .claim_job("b", t0 + s(1), t0 + s(11))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j.id, j.taken_over_from, j.last_error.as_str()),
        (id, None, "slow")
    );

    // expire_job_leases ends a lease that has not passed yet.
    assert_eq!(
        store.claim_job("c", t0 + s(2), t0 + s(12)).await.unwrap(),
        None
    );
    assert_eq!(store.expire_job_leases(t0 + s(2)).await.unwrap(), 1);
    let j = store
        .claim_job("c", t0 + s(2), t0 + s(12))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((j.id, j.taken_over_from.as_deref()), (id, Some("b")));
    assert_eq!(
        store.fail_job(id, "c", "key disabled").await.unwrap(),
        Lease::Held
    );
}

/// A process dies holding a job. On a shared store the job waits out its lease (another
/// replica may be alive and working on it); a sole runner's restart ends the dead run's
/// leases at once.
async fn suite_jobs_resumed_after_crash(h: &Harness) {
    let lease = Duration::seconds(30);
    let t = Utc::now() + Duration::seconds(1);
    let (db, claimed) = {
        let store = h.open().await;
        let org = store.create_org("org", None).await.unwrap();
        let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await
            .unwrap();
        store.enqueue_job(&provision_job(&dc), None).await.unwrap();
        let claimed = store
            .claim_job("dead", t, t + lease)
            .await
            .unwrap()
            .unwrap();
        let second = store
            .claim_job("dead", t, t + lease)
            .await
            .unwrap()
            .unwrap();
        // The process dies here, both jobs still running.
        (db, vec![claimed, second])
    };
    let store = h.open().await;
    assert_eq!(
        store
            .claim_job("next", t + Duration::seconds(1), t + lease)
            .await
            .unwrap(),
        None,
        "still leased"
    );
    // A replica on a shared store takes it over once the lease passed.
    let again = store
        .claim_job("next", t + lease, t + lease + lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, claimed[0].id);
    assert_eq!(again.database_id, db.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.state, JobState::Running);
    assert_eq!(again.taken_over_from.as_deref(), Some("dead"));
    assert_eq!(
        store.finish_job(again.id, "next").await.unwrap(),
        Lease::Held
    );
    // A sole runner's restart: the other one is claimable at once.
    assert_eq!(
        store
            .expire_job_leases(t + Duration::seconds(2))
            .await
            .unwrap(),
        1
    );
    let resumed = store
        .claim_job("restarted", t + Duration::seconds(2), t + lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.id, claimed[1].id);
    assert_eq!(resumed.taken_over_from.as_deref(), Some("dead"));
    assert_eq!(
        store.finish_job(resumed.id, "restarted").await.unwrap(),
        Lease::Held
    );
    assert_eq!(
        store
            .claim_job("x", t + lease * 9, t + lease * 10)
            .await
            .unwrap(),
        None
    );
}

fn session_hash(n: u8) -> [u8; 32] {
    [n; 32]
}

fn new_session(
    n: u8,
    org_id: Uuid,
    client_id: &str,
    at: chrono::DateTime<Utc>,
    lifetime: Duration,
) -> NewPortalSession {
    NewPortalSession {
        id_hash: session_hash(n),
        org_id,
        client_id: client_id.to_owned(),
        created_at: at,
        expires_at: at + lifetime,
    }
}

fn logins(s: &PortalSession) -> Vec<(Uuid, &str)> {
    s.logins
        .iter()
        .map(|l| (l.org_id, l.client_id.as_str()))
        .collect()
}

async fn suite_portal_sessions(store: DynStore) {
    let org1 = store.create_org("one", None).await.unwrap();
    let org2 = store.create_org("two", None).await.unwrap();
    store
        .insert_token(&token(org1.id, "tokenone", 0), &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .insert_token(&token(org2.id, "tokentwo", 0), &Quotas::UNLIMITED)
        .await
        .unwrap();
    let now = Utc::now().trunc_subsecs(3);
    let hour = Duration::hours(1);
    let h = session_hash(1);

    store
        .create_portal_session(&new_session(1, org1.id, "tokenone", now, hour))
        .await
        .unwrap();
    let s = store.get_portal_session(&h, now).await.unwrap().unwrap();
    assert_eq!(s.id_hash, h.to_vec());
    assert_eq!(s.current_org, Some(org1.id));
    assert_eq!(logins(&s), vec![(org1.id, "tokenone")]);
    assert_eq!((s.created_at, s.expires_at), (now, now + hour));
    assert_eq!(s.logins[0].added_at, now);
    assert_eq!(
        store
            .get_portal_session(&session_hash(9), now)
            .await
            .unwrap(),
        None
    );
    // Expired: from its expiry on.
    assert_eq!(
        store.get_portal_session(&h, now + hour).await.unwrap(),
        None
    );
    assert!(
        store
            .get_portal_session(&h, now + hour - Duration::milliseconds(1))
            .await
            .unwrap()
            .is_some()
    );

    // A second organization joins and becomes current; oldest login first.
    let t1 = now + Duration::seconds(1);
    assert!(
        store
            .add_portal_login(&h, org2.id, "tokentwo", t1)
            .await
            .unwrap()
    );
    let s = store.get_portal_session(&h, t1).await.unwrap().unwrap();
    assert_eq!(s.current_org, Some(org2.id));
    assert_eq!(
        logins(&s),
        vec![(org1.id, "tokenone"), (org2.id, "tokentwo")]
    );
    assert!(store.switch_portal_org(&h, org1.id, t1).await.unwrap());
    assert_eq!(
        store
            .get_portal_session(&h, t1)
            .await
            .unwrap()
            .unwrap()
            .current_org,
        Some(org1.id)
    );
    assert!(
        !store
            .switch_portal_org(&h, Uuid::new_v4(), t1)
            .await
            .unwrap(),
        "no login there"
    );
    assert!(
        !store
            .switch_portal_org(&h, org2.id, now + hour)
            .await
            .unwrap(),
        "expired"
    );
    assert!(
        !store
            .switch_portal_org(&session_hash(9), org2.id, t1)
            .await
            .unwrap()
    );
    // Signing in to org1 again moves its login last.
    let t2 = now + Duration::seconds(2);
    assert!(
        store
            .add_portal_login(&h, org1.id, "tokenone", t2)
            .await
            .unwrap()
    );
    let s = store.get_portal_session(&h, t2).await.unwrap().unwrap();
    assert_eq!(
        logins(&s),
        vec![(org2.id, "tokentwo"), (org1.id, "tokenone")]
    );
    // No live session: nothing added; a token that does not exist: refused, nothing added.
    assert!(
        !store
            .add_portal_login(&session_hash(9), org2.id, "tokentwo", t2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_portal_login(&h, org2.id, "tokentwo", now + hour)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.add_portal_login(&h, org2.id, "nosuchtoken", t2).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .create_portal_session(&new_session(2, org1.id, "nosuchtoken", t2, hour))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .create_portal_session(&new_session(3, Uuid::new_v4(), "tokenone", t2, hour))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .get_portal_session(&session_hash(2), t2)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_portal_session(&session_hash(3), t2)
            .await
            .unwrap(),
        None
    );

    // A login whose token stopped working is dropped; the session lives on with the other.
    assert!(store.remove_portal_login(&h, org1.id).await.unwrap());
    let s = store.get_portal_session(&h, t2).await.unwrap().unwrap();
    assert_eq!(logins(&s), vec![(org2.id, "tokentwo")]);
    // Revoking a token ends its logins with it, in every session.
    let other = session_hash(4);
    store
        .create_portal_session(&new_session(4, org2.id, "tokentwo", t2, hour))
        .await
        .unwrap();
    assert!(store.revoke_token(org2.id, "tokentwo").await.unwrap());
    for hash in [h, other] {
        let s = store.get_portal_session(&hash, t2).await.unwrap().unwrap();
        assert!(s.logins.is_empty(), "{s:?}");
        // The last login removed takes the session with it.
        assert!(!store.remove_portal_login(&hash, org2.id).await.unwrap());
        assert_eq!(store.get_portal_session(&hash, t2).await.unwrap(), None);
    }
    assert!(
        !store.remove_portal_login(&h, org2.id).await.unwrap(),
        "gone already"
    );

    // Sign-out deletes; expired sessions are deleted when a new one starts.
    store
        .create_portal_session(&new_session(
            5,
            org1.id,
            "tokenone",
            t2,
            Duration::seconds(1),
        ))
        .await
        .unwrap();
    store
        .create_portal_session(&new_session(6, org1.id, "tokenone", t2, hour))
        .await
        .unwrap();
    store
        .create_portal_session(&new_session(
            7,
            org1.id,
            "tokenone",
            t2 + Duration::seconds(5),
            hour,
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_portal_session(&session_hash(5), t2)
            .await
            .unwrap(),
        None,
        "purged by the later start, even read at a time before its expiry"
    );
    assert!(
        store
            .get_portal_session(&session_hash(6), t2)
            .await
            .unwrap()
            .is_some()
    );
    store.delete_portal_session(&session_hash(6)).await.unwrap();
    assert_eq!(
        store
            .get_portal_session(&session_hash(6), t2)
            .await
            .unwrap(),
        None
    );
    store.delete_portal_session(&session_hash(6)).await.unwrap();
}

/// One session's logins changed from 8 tasks at once (a browser's tabs on several replicas):
/// every addition lands, and of concurrent removals exactly the one that removes the last
/// login ends the session.
async fn suite_concurrent_portal_logins(store: DynStore) {
    let now = Utc::now().trunc_subsecs(3);
    let first = store.create_org("org-first", None).await.unwrap();
    store
        .insert_token(&token(first.id, "tokenfirst", 0), &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .create_portal_session(&new_session(
            1,
            first.id,
            "tokenfirst",
            now,
            Duration::hours(1),
        ))
        .await
        .unwrap();
    let mut orgs = vec![first.id];
    for i in 0..8 {
        let org = store.create_org(&format!("org{i}"), None).await.unwrap();
        store
            .insert_token(&token(org.id, &format!("token{i}"), 0), &Quotas::UNLIMITED)
            .await
            .unwrap();
        orgs.push(org.id);
    }
    let adds: Vec<_> = (0..8)
        .map(|i| {
            let (store, org) = (Arc::clone(&store), orgs[i + 1]);
            tokio::spawn(async move {
                store
                    .add_portal_login(&session_hash(1), org, &format!("token{i}"), now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for a in adds {
        assert!(a.await.unwrap());
    }
    let s = store
        .get_portal_session(&session_hash(1), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.logins.len(), 9, "{s:?}");
    let removals: Vec<_> = orgs
        .iter()
        .map(|org| {
            let (store, org) = (Arc::clone(&store), *org);
            tokio::spawn(async move {
                store
                    .remove_portal_login(&session_hash(1), org)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut left = Vec::new();
    for r in removals {
        left.push(r.await.unwrap());
    }
    assert_eq!(left.iter().filter(|l| !**l).count(), 1, "{left:?}");
    assert_eq!(
        store
            .get_portal_session(&session_hash(1), now)
            .await
            .unwrap(),
        None
    );
}

/// Every replica (or a restarted process) finds a session another one started.
async fn suite_portal_sessions_survive_reopen(h: &Harness) {
    let now = Utc::now().trunc_subsecs(3);
    let (org, session) = {
        let store = h.open().await;
        let org = store.create_org("one", None).await.unwrap();
        store
            .insert_token(&token(org.id, "tokenone", 0), &Quotas::UNLIMITED)
            .await
            .unwrap();
        store
            .create_portal_session(&new_session(1, org.id, "tokenone", now, Duration::hours(1)))
            .await
            .unwrap();
        let session = store
            .get_portal_session(&session_hash(1), now)
            .await
            .unwrap()
            .unwrap();
        (org, session)
    };
    let a = h.open().await;
    let b = h.open().await;
    assert_eq!(
        a.get_portal_session(&session_hash(1), now).await.unwrap(),
        Some(session.clone())
    );
    let org2 = a.create_org("two", None).await.unwrap();
    a.insert_token(&token(org2.id, "tokentwo", 0), &Quotas::UNLIMITED)
        .await
        .unwrap();
    assert!(
        a.add_portal_login(&session_hash(1), org2.id, "tokentwo", now)
            .await
            .unwrap()
    );
    let seen = b
        .get_portal_session(&session_hash(1), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.current_org, Some(org2.id));
    assert_eq!(seen.logins.len(), 2);
    assert!(b.revoke_token(org.id, "tokenone").await.unwrap());
    let seen = a
        .get_portal_session(&session_hash(1), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logins(&seen), vec![(org2.id, "tokentwo")]);
}

async fn suite_databases_survive_reopen(h: &Harness) {
    let (org, db, dcs, job_id) = {
        let store = h.open().await;
        let org = store.create_org("org", None).await.unwrap();
        let (db, dc, job) = new_database(org.id, "db", Provider::Aws, "us-east-2", 0);
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await
            .unwrap();
        assert!(
            store
                .set_wrapped_data_key(&dc.id, b"wrapped")
                .await
                .unwrap()
        );
        activate(&store, db.id).await;
        let dc2 = new_datacenter(&db, 2, "eu-west-1", KeyKind::Platform);
        assert_eq!(
            store
                .add_datacenter(&dc2, &provision_job(&dc2), &Quotas::UNLIMITED)
                .await
                .unwrap(),
            AddRegionOutcome::Added
        );
        store
            .set_kms_failing_since(&dc2.id, Some(Utc::now()))
            .await
            .unwrap();
        let terminate = NewJob {
            kind: JobKind::TerminateDatacenter,
            database_id: db.id,
            datacenter_id: Some(dc2.id.clone()),
        };
        let job_id = store.enqueue_job(&terminate, None).await.unwrap();
        (
            org.clone(),
            store.get_database(org.id, db.id).await.unwrap().unwrap(),
            store.list_datacenters(db.id).await.unwrap(),
            job_id,
        )
    };
    assert_eq!(db.status, DatabaseStatus::Maintenance);
    assert_eq!(dcs[0].wrapped_data_key.as_deref(), Some(&b"wrapped"[..]));
    assert!(dcs[1].kms_failing_since.is_some());
    let store = h.open().await;
    assert_eq!(
        store.get_database(org.id, db.id).await.unwrap(),
        Some(db.clone())
    );
    assert_eq!(
        store
            .list_databases(org.id, &page_filter(10))
            .await
            .unwrap(),
        vec![db.clone()]
    );
    assert_eq!(store.list_datacenters(db.id).await.unwrap(), dcs);
    assert_eq!(
        store.live_customer_datacenters().await.unwrap(),
        vec![dcs[0].clone()]
    );
    // The queue continues: the three jobs in order, and new ids after them.
    let now = Utc::now() + Duration::seconds(1);
    let mut kinds = Vec::new();
    let mut last = 0;
    while let Some(job) = claim(&store, now).await {
        kinds.push(job.kind);
        last = job.id;
    }
    assert_eq!(last, job_id);
    assert_eq!(
        kinds,
        vec![
            JobKind::ProvisionDatacenter,
            JobKind::ProvisionDatacenter,
            JobKind::TerminateDatacenter
        ]
    );
    let next = store
        .enqueue_job(&provision_job(&dcs[0]), None)
        .await
        .unwrap();
    assert!(next > job_id);
}

async fn suite_database_keyspaces(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "ks", Provider::Aws, "us-east-2", 10);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (other, dc2, job2) = new_database(org.id, "other", Provider::Aws, "us-east-2", 5);
    store
        .create_database(&other, &dc2, &job2, &Quotas::UNLIMITED)
        .await
        .unwrap();

    // Only the keyspaces beyond the initial one are recorded.
    assert!(store.list_keyspaces(db.id).await.unwrap().is_empty());
    assert!(store.add_keyspace(db.id, "sales").await.unwrap());
    assert!(!store.add_keyspace(db.id, "sales").await.unwrap());
    // Oldest first, whatever the names.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(store.add_keyspace(db.id, "archive").await.unwrap());
    assert_eq!(
        store.list_keyspaces(db.id).await.unwrap(),
        vec!["sales".to_string(), "archive".to_string()]
    );
    // Per database.
    assert!(store.list_keyspaces(other.id).await.unwrap().is_empty());
    assert!(store.add_keyspace(other.id, "sales").await.unwrap());
    assert!(store.remove_keyspace(db.id, "sales").await.unwrap());
    assert!(!store.remove_keyspace(db.id, "sales").await.unwrap());
    assert_eq!(store.list_keyspaces(db.id).await.unwrap(), vec!["archive"]);
    assert_eq!(store.list_keyspaces(other.id).await.unwrap(), vec!["sales"]);
    // A keyspace of a database that does not exist is refused, naming what is missing.
    assert!(matches!(
        store.add_keyspace(Uuid::new_v4(), "x").await,
        Err(StoreError::NotFound("database"))
    ));
    assert!(!store.remove_keyspace(Uuid::new_v4(), "x").await.unwrap());
}

/// The listing's batch reads answer what the per-database reads answer, for any set of IDs.
async fn suite_parts_of_many_databases(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let mut ids = Vec::new();
    for (n, name) in ["a", "b", "c"].into_iter().enumerate() {
        let (db, dc, job) = new_database(org.id, name, Provider::Aws, "us-east-2", n as i64);
        store
            .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
            .await
            .unwrap();
        ids.push(db.id);
    }
    // "a" gets a second region, "b" and "c" keyspaces beyond their initial one.
    activate(&store, ids[0]).await;
    let a = store.get_database(org.id, ids[0]).await.unwrap().unwrap();
    let dc2 = new_datacenter(&a, 2, "eu-west-1", KeyKind::Customer);
    assert_eq!(
        store
            .add_datacenter(&dc2, &provision_job(&dc2), &Quotas::UNLIMITED)
            .await
            .unwrap(),
        AddRegionOutcome::Added
    );
    assert!(store.add_keyspace(ids[1], "sales").await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(store.add_keyspace(ids[1], "archive").await.unwrap());
    assert!(store.add_keyspace(ids[2], "logs").await.unwrap());

    for wanted in [
        &ids[..],
        &ids[..1],
        &ids[1..],
        &[ids[2], Uuid::new_v4()][..],
        &[][..],
    ] {
        let mut one_by_one = Vec::new();
        let mut keyspaces = Vec::new();
        for id in wanted {
            one_by_one.extend(store.list_datacenters(*id).await.unwrap());
            for name in store.list_keyspaces(*id).await.unwrap() {
                keyspaces.push((*id, name));
            }
        }
        let mut batch = store.list_datacenters_of(wanted).await.unwrap();
        // Grouped per database, each in ordinal order; the groups in any order.
        batch.sort_by_key(|d| wanted.iter().position(|id| *id == d.database_id));
        assert_eq!(batch, one_by_one);
        let mut batch = store.list_keyspaces_of(wanted).await.unwrap();
        batch.sort_by_key(|(db, _)| wanted.iter().position(|id| id == db));
        assert_eq!(batch, keyspaces);
    }
    assert_eq!(
        store.list_datacenters_of(&ids[..1]).await.unwrap().len(),
        2,
        "both regions of a"
    );
    assert_eq!(
        store.list_keyspaces_of(&ids[1..2]).await.unwrap(),
        vec![
            (ids[1], "sales".to_string()),
            (ids[1], "archive".to_string())
        ]
    );
}

/// Eight tasks add and remove the same keyspaces at once: each add or remove reports a change
/// exactly once per state it changes, and the list ends as the last step left it.
async fn suite_concurrent_keyspaces(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "ks", Provider::Aws, "us-east-2", 10);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    for round in 0..3 {
        let name = format!("ks{round}");
        let adds = (0..8).map(|_| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move { store.add_keyspace(db.id, &name).await.unwrap() })
        });
        let added = futures_count(adds).await;
        assert_eq!(added, 1, "round {round}: one of eight adds records it");
        let removes = (0..8).map(|_| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move { store.remove_keyspace(db.id, &name).await.unwrap() })
        });
        let removed = futures_count(removes).await;
        assert_eq!(removed, 1, "round {round}: one of eight removes forgets it");
    }
    let many = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.add_keyspace(db.id, &format!("k{i}")).await.unwrap() })
    });
    assert_eq!(futures_count(many).await, 8);
    let mut listed = store.list_keyspaces(db.id).await.unwrap();
    listed.sort();
    assert_eq!(listed, (0..8).map(|i| format!("k{i}")).collect::<Vec<_>>());
}

/// How many of the spawned tasks answered true.
async fn futures_count(tasks: impl Iterator<Item = tokio::task::JoinHandle<bool>>) -> usize {
    let mut n = 0;
    for t in tasks.collect::<Vec<_>>() {
        if t.await.unwrap() {
            n += 1;
        }
    }
    n
}

async fn suite_database_use(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "used", Provider::Aws, "us-east-2", 10);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let last_used = |store: DynStore| async move {
        let got = store.get_database(org.id, db.id).await.unwrap().unwrap();
        let listed = store
            .list_databases(org.id, &page_filter(10))
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == db.id)
            .unwrap();
        assert_eq!(got.last_used_at, listed.last_used_at);
        got.last_used_at
    };
    assert_eq!(last_used(store.clone()).await, None);
    let t1 = Utc::now().trunc_subsecs(3);
    store.record_database_use(db.id, t1).await.unwrap();
    assert_eq!(last_used(store.clone()).await, Some(t1));
    // An older use recorded late changes nothing; a newer one moves it on.
    store
        .record_database_use(db.id, t1 - Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(last_used(store.clone()).await, Some(t1));
    let t2 = t1 + Duration::milliseconds(1500);
    store.record_database_use(db.id, t2).await.unwrap();
    assert_eq!(last_used(store.clone()).await, Some(t2));
    // Sub-millisecond precision is dropped as for every stored time.
    let t3 = t2 + Duration::microseconds(1_500);
    store.record_database_use(db.id, t3).await.unwrap();
    assert_eq!(last_used(store.clone()).await, Some(t3.trunc_subsecs(3)));
    // An unknown database: nothing to record, no error.
    store.record_database_use(Uuid::new_v4(), t2).await.unwrap();
    // Eight uses recorded at once, in any order: the latest wins.
    let base = t3.trunc_subsecs(3);
    let tasks: Vec<_> = (1..=8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_database_use(db.id, base + Duration::seconds(i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        last_used(store.clone()).await,
        Some(base + Duration::seconds(8))
    );
}

/// A serverless database `name` under a customer key in `region`, acting as `account`.
fn serverless_db(
    org: Uuid,
    name: &str,
    region: &str,
    account: &str,
) -> (Database, Datacenter, NewJob) {
    let (mut db, _, _) = new_database(org, name, Provider::Gcp, region, 0);
    db.db_type = DbType::Serverless;
    db.tier = "serverless".to_owned();
    let mut dc = new_datacenter(&db, 1, region, KeyKind::Customer);
    dc.provider_account = account.to_owned();
    let job = provision_job(&dc);
    (db, dc, job)
}

/// A live serverless datacenter holds its provider ID alone in its organization's region;
/// refused whole (no database, datacenter or job written); classic ones, other regions and
/// other organizations are not concerned; a terminated one frees it.
async fn suite_serverless_provider_ids(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let (a, dc_a, job) = serverless_db(org.id, "a", "us-east1", "sa-1");
    store
        .create_database(&a, &dc_a, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();

    let (b, dc_b, job) = serverless_db(org.id, "b", "us-east1", "sa-1");
    let err = store
        .create_database(&b, &dc_b, &job, &Quotas::UNLIMITED)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::ProviderIdTaken(id) if id == "sa-1"),
        "{err:?}"
    );
    assert!(store.get_database(org.id, b.id).await.unwrap().is_none());
    assert!(store.get_datacenter(&dc_b.id).await.unwrap().is_none());
    assert_eq!(
        store
            .list_databases(org.id, &page_filter(10))
            .await
            .unwrap()
            .len(),
        1
    );

    // Another provider ID; a classic database, another region, another organization.
    let (b, dc_b, job) = serverless_db(org.id, "b", "us-east1", "sa-2");
    store
        .create_database(&b, &dc_b, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (mut c, mut dc_c, _) = serverless_db(org.id, "c", "us-east1", "sa-1");
    c.db_type = DbType::Classic;
    c.tier = "C10".to_owned();
    dc_c.tier = "C10".to_owned();
    store
        .create_database(&c, &dc_c, &provision_job(&dc_c), &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (d, dc_d, job) = serverless_db(org.id, "d", "europe-west1", "sa-1");
    store
        .create_database(&d, &dc_d, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let (e, dc_e, job) = serverless_db(other.id, "e", "us-east1", "sa-1");
    store
        .create_database(&e, &dc_e, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();

    // A second region of a serverless database takes the same rule.
    activate(&store, d.id).await;
    let mut dc_d2 = new_datacenter(&d, 2, "us-east1", KeyKind::Customer);
    dc_d2.provider_account = "sa-2".to_owned();
    let err = store
        .add_datacenter(&dc_d2, &provision_job(&dc_d2), &Quotas::UNLIMITED)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::ProviderIdTaken(id) if id == "sa-2"),
        "{err:?}"
    );
    assert_eq!(store.list_datacenters(d.id).await.unwrap().len(), 1);

    // Terminated: the provider ID is free again.
    store.mark_datacenter_terminated(&dc_a.id).await.unwrap();
    let (f, dc_f, job) = serverless_db(org.id, "f", "us-east1", "sa-1");
    store
        .create_database(&f, &dc_f, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_datacenter(&dc_f.id)
            .await
            .unwrap()
            .unwrap()
            .provider_account,
        "sa-1"
    );
}

/// Eight deployments race for one provider ID: exactly one takes it, the others are refused
/// whole.
async fn suite_concurrent_serverless_provider_ids(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (db, dc, job) = serverless_db(org.id, &format!("db{i}"), "us-east1", "sa-1");
            store
                .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(CreateOutcome::Created) => ok += 1,
            Ok(CreateOutcome::OverQuota(e)) => panic!("{e:?}"),
            Err(StoreError::ProviderIdTaken(id)) => assert_eq!(id, "sa-1"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        store
            .list_databases(org.id, &page_filter(20))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A classic database in `region` of `org`, ACTIVE, under the key `customer_key` gives for it.
async fn keyed_active_db(
    store: &DynStore,
    org: Uuid,
    name: &str,
    region: &str,
) -> (Database, Datacenter) {
    let (db, dc, job) = new_database(org, name, Provider::Aws, region, 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .set_datacenter_status(&dc.id, DatabaseStatus::Active, "")
        .await
        .unwrap();
    activate(store, db.id).await;
    (db, dc)
}

async fn dc_state(store: &DynStore, id: &str) -> (DatabaseStatus, String) {
    let dc = store.get_datacenter(id).await.unwrap().unwrap();
    (dc.status, dc.message)
}

async fn suite_key_revocation(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let other = store.create_org("other", None).await.unwrap();
    let (_, a) = keyed_active_db(&store, org.id, "a", "us-east-2").await;
    let (_, b) = keyed_active_db(&store, org.id, "b", "us-east-2").await;
    let (_, elsewhere) = keyed_active_db(&store, org.id, "c", "eu-west-1").await;
    let (_, theirs) = keyed_active_db(&store, other.id, "d", "us-east-2").await;
    // a and b share a key ID (new_datacenter's, by region and ordinal).
    assert_eq!(a.key_id, b.key_id);
    for (o, region, key) in [
        (org.id, "us-east-2", &a.key_id),
        (org.id, "eu-west-1", &elsewhere.key_id),
        (other.id, "us-east-2", &theirs.key_id),
    ] {
        assert_eq!(
            store
                .insert_customer_key(&customer_key(o, DbType::Classic, region, key))
                .await
                .unwrap(),
            None
        );
    }
    // b was suspended by the monitor before: the revoke relabels it too.
    store
        .set_datacenter_status(&b.id, DatabaseStatus::Suspended, "the key is disabled")
        .await
        .unwrap();
    let at = Utc::now().trunc_subsecs(3);
    let reason = "revoked by the customer (client-admin)";
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(
        store
            .revoke_customer_key(
                org.id,
                DbType::Classic,
                Provider::Aws,
                "us-east-2",
                reason,
                at
            )
            .await
            .unwrap(),
        Some(want.clone())
    );
    for id in [&a.id, &b.id] {
        assert_eq!(
            dc_state(&store, id).await,
            (DatabaseStatus::Suspended, reason.to_owned())
        );
    }
    // Only that key's: not another region's, not another organization's, not the serverless slot.
    assert_eq!(
        dc_state(&store, &elsewhere.id).await.0,
        DatabaseStatus::Active
    );
    assert_eq!(dc_state(&store, &theirs.id).await.0, DatabaseStatus::Active);
    assert_eq!(
        store
            .revoke_customer_key(
                org.id,
                DbType::Serverless,
                Provider::Aws,
                "us-east-2",
                reason,
                at
            )
            .await
            .unwrap(),
        None,
        "no serverless key is registered"
    );
    let key = store
        .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.status, KeyStatus::Revoked);
    assert_eq!(key.status_reason.as_deref(), Some(reason));
    assert_eq!(key.status_since, at);
    let revoked = store.revoked_customer_keys().await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].key_id, a.key_id);

    // A check result never overwrites the revocation, though it is recorded.
    let check = KeyStatusUpdate {
        key_id: key.key_id.clone(),
        status: KeyStatus::InUse,
        status_reason: None,
        checked_at: at + Duration::seconds(5),
        check_ok: true,
        check_message: "the key is usable".into(),
    };
    assert!(
        store
            .update_customer_key_status(org.id, DbType::Classic, Provider::Aws, "us-east-2", &check)
            .await
            .unwrap()
    );
    let key = store
        .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((key.status, key.status_since), (KeyStatus::Revoked, at));
    assert_eq!(key.last_check_message.as_deref(), Some("the key is usable"));

    // Nothing resumes a revoked key's datacenter; another suspended one resumes.
    assert!(!store.resume_datacenter(&a.id).await.unwrap());
    assert_eq!(dc_state(&store, &a.id).await.0, DatabaseStatus::Suspended);
    store
        .set_datacenter_status(
            &elsewhere.id,
            DatabaseStatus::Suspended,
            "the key is disabled",
        )
        .await
        .unwrap();
    let mut suspended = store.suspended_datacenters().await.unwrap();
    suspended.sort();
    let mut expect = vec![
        (a.id.clone(), reason.to_owned()),
        (b.id.clone(), reason.to_owned()),
        (elsewhere.id.clone(), "the key is disabled".to_owned()),
    ];
    expect.sort();
    assert_eq!(suspended, expect);
    assert!(store.resume_datacenter(&elsewhere.id).await.unwrap());
    assert_eq!(
        dc_state(&store, &elsewhere.id).await,
        (DatabaseStatus::Active, String::new())
    );
    assert!(
        !store.resume_datacenter(&elsewhere.id).await.unwrap(),
        "not suspended"
    );

    // Unrevoke: once, from REVOKED only; the datacenters then resume.
    let back = KeyStatusUpdate {
        key_id: key.key_id.clone(),
        status: KeyStatus::InUse,
        status_reason: None,
        checked_at: at + Duration::seconds(10),
        check_ok: true,
        check_message: "unrevoked: live check passed".into(),
    };
    assert!(
        store
            .unrevoke_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2", &back)
            .await
            .unwrap()
    );
    assert!(
        !store
            .unrevoke_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2", &back)
            .await
            .unwrap(),
        "not revoked any more"
    );
    let key = store
        .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((key.status, key.status_reason), (KeyStatus::InUse, None));
    assert_eq!(key.status_since, at + Duration::seconds(10));
    assert!(store.revoked_customer_keys().await.unwrap().is_empty());
    // Its datacenters stay suspended, no longer for the revoke, until a check resumes them.
    assert_eq!(
        dc_state(&store, &a.id).await,
        (
            DatabaseStatus::Suspended,
            keyplane_core::keys::UNREVOKED_REASON.to_owned()
        )
    );
    assert!(store.resume_datacenter(&a.id).await.unwrap());
    assert!(store.resume_datacenter(&b.id).await.unwrap());
    assert_eq!(dc_state(&store, &b.id).await.0, DatabaseStatus::Active);
}

/// A revoke racing 8 resumes of its datacenters: whatever the interleaving, every datacenter
/// ends SUSPENDED with the revoke's reason.
async fn suite_concurrent_revoke_and_resume(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let mut dcs = vec![];
    for i in 0..8 {
        let (_, dc) = keyed_active_db(&store, org.id, &format!("db{i}"), "us-east-2").await;
        store
            .set_datacenter_status(&dc.id, DatabaseStatus::Suspended, "the key is disabled")
            .await
            .unwrap();
        dcs.push(dc);
    }
    store
        .insert_customer_key(&customer_key(
            org.id,
            DbType::Classic,
            "us-east-2",
            &dcs[0].key_id,
        ))
        .await
        .unwrap();
    let reason = "revoked by the customer (client-admin)";
    let mut tasks = vec![];
    for dc in &dcs {
        let (store, id) = (store.clone(), dc.id.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                store.resume_datacenter(&id).await.unwrap();
            }
        }));
    }
    let revoker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .revoke_customer_key(
                    org.id,
                    DbType::Classic,
                    Provider::Aws,
                    "us-east-2",
                    reason,
                    Utc::now(),
                )
                .await
                .unwrap()
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    assert!(revoker.await.unwrap().is_some());
    // Resumes after the revoke committed change nothing either.
    for dc in &dcs {
        assert!(!store.resume_datacenter(&dc.id).await.unwrap());
        assert_eq!(
            dc_state(&store, &dc.id).await,
            (DatabaseStatus::Suspended, reason.to_owned()),
            "{}",
            dc.id
        );
    }
}

async fn suite_key_deregistration(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (_, dc) = keyed_active_db(&store, org.id, "a", "us-east-2").await;
    store
        .insert_customer_key(&customer_key(
            org.id,
            DbType::Classic,
            "us-east-2",
            &dc.key_id,
        ))
        .await
        .unwrap();
    // The same key ID registered for serverless: no serverless datacenter uses it.
    store
        .insert_customer_key(&customer_key(
            org.id,
            DbType::Serverless,
            "us-east-2",
            &dc.key_id,
        ))
        .await
        .unwrap();
    // A login stored with the key stays while any slot or live datacenter uses the key.
    store
        .put_key_login(org.id, Provider::Aws, &dc.key_id, b"sealed", Utc::now())
        .await
        .unwrap();
    let login = || store.get_key_login(org.id, Provider::Aws, &dc.key_id);
    assert_eq!(
        store
            .delete_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
            .await
            .unwrap(),
        DeleteKeyOutcome::InUse(vec![dc.id.clone()])
    );
    assert!(
        store
            .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
            .await
            .unwrap()
            .is_some(),
        "refused: nothing changed"
    );
    match store
        .delete_customer_key(org.id, DbType::Serverless, Provider::Aws, "us-east-2")
        .await
        .unwrap()
    {
        DeleteKeyOutcome::Deleted(k) => assert_eq!(k.key_id, dc.key_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .delete_customer_key(org.id, DbType::Serverless, Provider::Aws, "us-east-2")
            .await
            .unwrap(),
        DeleteKeyOutcome::NotRegistered
    );
    assert!(
        login().await.unwrap().is_some(),
        "the classic slot still uses it"
    );
    // A terminated datacenter does not hold its key.
    store.mark_datacenter_terminated(&dc.id).await.unwrap();
    assert!(matches!(
        store
            .delete_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
            .await
            .unwrap(),
        DeleteKeyOutcome::Deleted(_)
    ));
    assert_eq!(login().await.unwrap(), None, "the last use took the login");
    assert!(
        store
            .list_customer_keys(org.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The slot is free again: another key may be registered there.
    assert_eq!(
        store
            .insert_customer_key(&customer_key(
                org.id,
                DbType::Classic,
                "us-east-2",
                "arn:other"
            ))
            .await
            .unwrap(),
        None
    );
}

/// 8 deregistrations racing the creation of a database under the key: either the creation
/// committed first and every deregistration is refused naming it, or one deregistration won
/// before the creation (which the store does not refuse: the application refuses a creation
/// under an unregistered key before it reaches the store).
async fn suite_concurrent_deregistration_and_creation(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "racer", Provider::Aws, "us-east-2", 0);
    store
        .insert_customer_key(&customer_key(
            org.id,
            DbType::Classic,
            "us-east-2",
            &dc.key_id,
        ))
        .await
        .unwrap();
    let create = {
        let (store, db, dc, job) = (store.clone(), db.clone(), dc.clone(), job.clone());
        tokio::spawn(async move {
            store
                .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
                .await
                .unwrap()
        })
    };
    let deletes: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .delete_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(create.await.unwrap(), CreateOutcome::Created);
    let mut deleted = 0;
    for d in deletes {
        match d.await.unwrap() {
            DeleteKeyOutcome::Deleted(_) => deleted += 1,
            DeleteKeyOutcome::InUse(ids) => assert_eq!(ids, vec![dc.id.clone()]),
            DeleteKeyOutcome::NotRegistered => {}
        }
    }
    assert!(deleted <= 1, "deleted {deleted} times");
    let registered = store
        .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap();
    assert_eq!(registered.is_none(), deleted == 1);
}

/// A datacenter being provisioned when its key is revoked never starts serving: the revoke
/// suspends it, and its activation keeps it suspended until the key is unrevoked.
async fn suite_activation_under_a_revoked_key(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "new", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    store
        .insert_customer_key(&customer_key(
            org.id,
            DbType::Classic,
            "us-east-2",
            &dc.key_id,
        ))
        .await
        .unwrap();
    let reason = "revoked by the customer (client-admin)";
    assert_eq!(
        store
            .revoke_customer_key(
                org.id,
                DbType::Classic,
                Provider::Aws,
                "us-east-2",
                reason,
                Utc::now()
            )
            .await
            .unwrap(),
        Some(vec![dc.id.clone()]),
        "a PENDING datacenter is suspended too"
    );
    // The job runs again from the start (it resets the status), then activates.
    store
        .set_datacenter_status(&dc.id, DatabaseStatus::Initializing, "")
        .await
        .unwrap();
    assert_eq!(
        store.activate_datacenter(&dc.id).await.unwrap(),
        DatabaseStatus::Suspended
    );
    assert_eq!(
        dc_state(&store, &dc.id).await,
        (DatabaseStatus::Suspended, reason.to_owned()),
        "the key's reason"
    );
    // Relabelled by the revoke while running, it stays suspended with that reason too.
    assert_eq!(
        store.activate_datacenter(&dc.id).await.unwrap(),
        DatabaseStatus::Suspended
    );
    let back = KeyStatusUpdate {
        key_id: dc.key_id.clone(),
        status: KeyStatus::Available,
        status_reason: None,
        checked_at: Utc::now(),
        check_ok: true,
        check_message: "unrevoked".into(),
    };
    assert!(
        store
            .unrevoke_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2", &back)
            .await
            .unwrap()
    );
    assert_eq!(
        store.activate_datacenter(&dc.id).await.unwrap(),
        DatabaseStatus::Active
    );
    assert_eq!(
        dc_state(&store, &dc.id).await,
        (DatabaseStatus::Active, String::new())
    );
    // A platform-keyed datacenter, and one under a key that is not revoked: ACTIVE.
    let (db2, mut dc2, job2) = new_database(org.id, "platform", Provider::Aws, "eu-west-1", 0);
    dc2.key_kind = KeyKind::Platform;
    store
        .create_database(&db2, &dc2, &job2, &Quotas::UNLIMITED)
        .await
        .unwrap();
    assert_eq!(
        store.activate_datacenter(&dc2.id).await.unwrap(),
        DatabaseStatus::Active
    );
    assert!(matches!(
        store.activate_datacenter("nope").await,
        Err(StoreError::NotFound(_))
    ));
}

/// A classic key in us-east-2 replaced by another: one transaction, only from the key the
/// replacement was checked against, never from a revoked key; datacenters keep their key.
async fn suite_key_replacement(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (_, dc) = keyed_active_db(&store, org.id, "a", "us-east-2").await;
    let old = customer_key(org.id, DbType::Classic, "us-east-2", &dc.key_id);
    let new = CustomerKey {
        key_id: "arn:aws:kms:us-east-2:1:key/new".to_owned(),
        provider_account: "222222222222".to_owned(),
        last_check_message: Some("replacement check passed".to_owned()),
        ..old.clone()
    };
    assert_eq!(
        store.replace_customer_key(&old.key_id, &new).await.unwrap(),
        ReplaceKeyOutcome::NotRegistered
    );
    store.insert_customer_key(&old).await.unwrap();
    let get = || async {
        store
            .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
            .await
            .unwrap()
            .unwrap()
    };

    // Checked against another key: refused, and the slot says what it holds.
    assert_eq!(
        store
            .replace_customer_key("arn:aws:kms:us-east-2:1:key/stale", &new)
            .await
            .unwrap(),
        ReplaceKeyOutcome::Changed(Box::new(old.clone()))
    );
    assert_eq!(get().await, old);

    // Revoked: refused.
    store
        .revoke_customer_key(
            org.id,
            DbType::Classic,
            Provider::Aws,
            "us-east-2",
            "revoked",
            Utc::now(),
        )
        .await
        .unwrap();
    let revoked = get().await;
    assert_eq!(
        store.replace_customer_key(&old.key_id, &new).await.unwrap(),
        ReplaceKeyOutcome::Revoked(Box::new(revoked.clone()))
    );
    assert_eq!(get().await, revoked);
    let back = KeyStatusUpdate {
        key_id: old.key_id.clone(),
        status: KeyStatus::InUse,
        status_reason: None,
        checked_at: Utc::now(),
        check_ok: true,
        check_message: "unrevoked".into(),
    };
    assert!(
        store
            .unrevoke_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2", &back)
            .await
            .unwrap()
    );

    // Replaced: the slot holds the new key whole; the datacenter stays under the old one.
    match store.replace_customer_key(&old.key_id, &new).await.unwrap() {
        ReplaceKeyOutcome::Replaced(was) => assert_eq!(was.key_id, old.key_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(get().await, new);
    assert_eq!(
        store.get_datacenter(&dc.id).await.unwrap().unwrap().key_id,
        dc.key_id
    );
    let in_slot = store
        .live_datacenters_in_slot(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap();
    assert_eq!(
        in_slot.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![dc.id.clone()]
    );
    assert!(
        store
            .live_datacenters_in_slot(org.id, DbType::Serverless, Provider::Aws, "us-east-2")
            .await
            .unwrap()
            .is_empty()
    );

    // A check of the old key (a datacenter still under it) is not recorded on the new key.
    let stale = KeyStatusUpdate {
        key_id: old.key_id.clone(),
        status: KeyStatus::Inaccessible,
        status_reason: Some("the old key is disabled".into()),
        checked_at: Utc::now(),
        check_ok: false,
        check_message: "DisabledException".into(),
    };
    assert!(
        !store
            .update_customer_key_status(org.id, DbType::Classic, Provider::Aws, "us-east-2", &stale)
            .await
            .unwrap()
    );
    assert_eq!(get().await, new);
    let fresh = KeyStatusUpdate {
        key_id: new.key_id.clone(),
        ..stale
    };
    assert!(
        store
            .update_customer_key_status(org.id, DbType::Classic, Provider::Aws, "us-east-2", &fresh)
            .await
            .unwrap()
    );
    assert_eq!(get().await.status, KeyStatus::Inaccessible);
}

/// A datacenter's data key moved to the slot's new key: only from the wrapped key it holds,
/// only to the slot's current unrevoked key, and the old wrapped key is gone at once.
async fn suite_rewrap(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (_, dc) = keyed_active_db(&store, org.id, "a", "us-east-2").await;
    assert!(
        store
            .set_wrapped_data_key(&dc.id, b"under-old")
            .await
            .unwrap()
    );
    let old = customer_key(org.id, DbType::Classic, "us-east-2", &dc.key_id);
    store.insert_customer_key(&old).await.unwrap();
    let new_id = "arn:aws:kms:us-east-2:1:key/new";
    let rewrap = Rewrap {
        datacenter_id: dc.id.clone(),
        db_type: DbType::Classic,
        from_key_id: dc.key_id.clone(),
        from_wrapped: b"under-old".to_vec(),
        to_key_id: new_id.to_owned(),
        to_account: "222222222222".to_owned(),
        to_wrapped: b"under-new".to_vec(),
    };
    // The slot still holds the old key.
    assert_eq!(
        store.rewrap_datacenter(&rewrap).await.unwrap(),
        RewrapOutcome::DestinationChanged
    );
    let new = CustomerKey {
        key_id: new_id.to_owned(),
        provider_account: "222222222222".to_owned(),
        status: KeyStatus::Available,
        ..old.clone()
    };
    assert!(matches!(
        store.replace_customer_key(&old.key_id, &new).await.unwrap(),
        ReplaceKeyOutcome::Replaced(_)
    ));
    // Started from a wrapped key the datacenter no longer holds.
    let stale = Rewrap {
        from_wrapped: b"something else".to_vec(),
        ..rewrap.clone()
    };
    assert_eq!(
        store.rewrap_datacenter(&stale).await.unwrap(),
        RewrapOutcome::Stale
    );
    // The new key revoked meanwhile.
    store
        .revoke_customer_key(
            org.id,
            DbType::Classic,
            Provider::Aws,
            "us-east-2",
            "revoked",
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.rewrap_datacenter(&rewrap).await.unwrap(),
        RewrapOutcome::DestinationChanged
    );
    let unchanged = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(
        (
            unchanged.key_id.as_str(),
            unchanged.wrapped_data_key.as_deref()
        ),
        (dc.key_id.as_str(), Some(&b"under-old"[..]))
    );
    let back = KeyStatusUpdate {
        key_id: new_id.to_owned(),
        status: KeyStatus::Available,
        status_reason: None,
        checked_at: Utc::now(),
        check_ok: true,
        check_message: "unrevoked".into(),
    };
    assert!(
        store
            .unrevoke_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2", &back)
            .await
            .unwrap()
    );

    // Done: the datacenter is under the new key only, and that key is in use.
    assert_eq!(
        store.rewrap_datacenter(&rewrap).await.unwrap(),
        RewrapOutcome::Rewrapped
    );
    let moved = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(
        (
            moved.key_id.as_str(),
            moved.provider_account.as_str(),
            moved.wrapped_data_key.as_deref()
        ),
        (new_id, "222222222222", Some(&b"under-new"[..]))
    );
    let key = store
        .get_customer_key(org.id, DbType::Classic, Provider::Aws, "us-east-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.status, KeyStatus::InUse);
    assert!(
        store
            .live_datacenters_of_key(org.id, &dc.key_id, "us-east-2")
            .await
            .unwrap()
            .is_empty(),
        "nothing is left under the old key"
    );
    // Again: the datacenter no longer holds the old wrapped key.
    assert_eq!(
        store.rewrap_datacenter(&rewrap).await.unwrap(),
        RewrapOutcome::Stale
    );

    // A terminated datacenter is not rewrapped.
    let (_, gone) = keyed_active_db(&store, org.id, "b", "us-east-2").await;
    assert!(
        store
            .set_wrapped_data_key(&gone.id, b"under-old")
            .await
            .unwrap()
    );
    store.mark_datacenter_terminated(&gone.id).await.unwrap();
    let of_gone = Rewrap {
        datacenter_id: gone.id.clone(),
        ..rewrap
    };
    assert_eq!(
        store.rewrap_datacenter(&of_gone).await.unwrap(),
        RewrapOutcome::Stale
    );
}

/// Eight rewraps of one datacenter at once, each with its own new wrapped key: exactly one
/// wins, and the datacenter holds that one's.
async fn suite_concurrent_rewraps(store: DynStore) {
    let org = store.create_org("org", None).await.unwrap();
    let (_, dc) = keyed_active_db(&store, org.id, "a", "us-east-2").await;
    assert!(
        store
            .set_wrapped_data_key(&dc.id, b"under-old")
            .await
            .unwrap()
    );
    let old = customer_key(org.id, DbType::Classic, "us-east-2", &dc.key_id);
    store.insert_customer_key(&old).await.unwrap();
    let new_id = "arn:aws:kms:us-east-2:1:key/new";
    let new = CustomerKey {
        key_id: new_id.to_owned(),
        ..old.clone()
    };
    assert!(matches!(
        store.replace_customer_key(&old.key_id, &new).await.unwrap(),
        ReplaceKeyOutcome::Replaced(_)
    ));
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = Arc::clone(&store);
            let rewrap = Rewrap {
                datacenter_id: dc.id.clone(),
                db_type: DbType::Classic,
                from_key_id: dc.key_id.clone(),
                from_wrapped: b"under-old".to_vec(),
                to_key_id: new_id.to_owned(),
                to_account: old.provider_account.clone(),
                to_wrapped: vec![i; 4],
            };
            tokio::spawn(async move { (i, store.rewrap_datacenter(&rewrap).await.unwrap()) })
        })
        .collect();
    let mut winners = vec![];
    for t in tasks {
        let (i, outcome) = t.await.unwrap();
        match outcome {
            RewrapOutcome::Rewrapped => winners.push(i),
            RewrapOutcome::Stale => {}
            RewrapOutcome::DestinationChanged => panic!("the destination did not change"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let moved = store.get_datacenter(&dc.id).await.unwrap().unwrap();
    assert_eq!(moved.key_id, new_id);
    assert_eq!(moved.wrapped_data_key, Some(vec![winners[0]; 4]));
}

/// Crypto-shredding on SQLite: once a datacenter is terminated and the store has erased what
/// it keeps of deleted values, its wrapped data key is in none of the store's files, neither
/// in the main file's free space nor in the write-ahead log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_no_copy_of_a_shredded_wrapped_key() {
    let h = Harness::sqlite();
    let Harness::Sqlite { path, .. } = &h else {
        unreachable!()
    };
    let store = h.open().await;
    let org = store.create_org("Acme", None).await.unwrap();
    let (db, dc, job) = new_database(org.id, "ledger", Provider::Aws, "us-east-2", 0);
    store
        .create_database(&db, &dc, &job, &Quotas::UNLIMITED)
        .await
        .unwrap();
    let wrapped: Vec<u8> = (0..184u32).map(|i| (i * 7 + 13) as u8).collect();
    assert!(store.set_wrapped_data_key(&dc.id, &wrapped).await.unwrap());
    let files = || {
        ["", "-wal"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", path.display())))
            .filter(|p| {
                std::fs::read(p)
                    .map(|b| b.windows(wrapped.len()).any(|w| w == wrapped.as_slice()))
                    .unwrap_or(false)
            })
            .collect::<Vec<_>>()
    };
    // Checkpointed into the main file, where the scan finds it.
    assert!(store.erase_deleted().await.unwrap());
    assert_eq!(files(), vec![path.clone()]);
    store.mark_datacenter_terminated(&dc.id).await.unwrap();
    assert!(store.erase_deleted().await.unwrap());
    assert_eq!(
        files(),
        Vec::<PathBuf>::new(),
        "a copy of the wrapped key is left"
    );
    h.finish().await;
}

/// The choice of what an inaccessible key does: per organization and per key, replaced when
/// made again, cleared, kept apart between organizations, and refused for an unknown one.
async fn suite_on_inaccessible(store: DynStore) {
    let a = store.create_org("a", None).await.unwrap().id;
    let b = store.create_org("b", None).await.unwrap().id;
    let now = Utc::now().trunc_subsecs(3);
    let key = "arn:aws:kms:us-east-2:111122223333:key/k1";
    assert_eq!(
        store.on_inaccessible_choices(Some(a)).await.unwrap(),
        vec![]
    );
    let alert = OnInaccessible::AlertOnly { for_secs: 600 };
    store
        .set_on_inaccessible(a, None, Some(alert), now)
        .await
        .unwrap();
    store
        .set_on_inaccessible(a, Some(key), Some(OnInaccessible::Suspend), now)
        .await
        .unwrap();
    store
        .set_on_inaccessible(
            b,
            Some(key),
            Some(OnInaccessible::AlertOnly { for_secs: 5 }),
            now,
        )
        .await
        .unwrap();
    // Made again: replaced, not added.
    let longer = OnInaccessible::AlertOnly { for_secs: 900 };
    store
        .set_on_inaccessible(a, None, Some(longer), now)
        .await
        .unwrap();
    let mine = store.on_inaccessible_choices(Some(a)).await.unwrap();
    let got: Vec<(Option<&str>, OnInaccessible)> = mine
        .iter()
        .map(|c| (c.key_id.as_deref(), c.choice))
        .collect();
    assert_eq!(
        got,
        vec![(None, longer), (Some(key), OnInaccessible::Suspend)]
    );
    assert_eq!(mine[0].updated_at, now);
    assert_eq!(store.on_inaccessible_choices(None).await.unwrap().len(), 3);
    // Cleared: the key falls back to the organization's choice.
    store
        .set_on_inaccessible(a, Some(key), None, now)
        .await
        .unwrap();
    let mine = store.on_inaccessible_choices(Some(a)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].key_id, None);
    let theirs = store.on_inaccessible_choices(Some(b)).await.unwrap();
    assert_eq!(theirs[0].choice, OnInaccessible::AlertOnly { for_secs: 5 });
    // Eight writers at once on the same choice: one row, one of theirs.
    let mut tasks = Vec::new();
    for i in 1..=8u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let c = OnInaccessible::AlertOnly { for_secs: i };
            store.set_on_inaccessible(b, None, Some(c), now).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let theirs = store.on_inaccessible_choices(Some(b)).await.unwrap();
    let org_rows: Vec<_> = theirs.iter().filter(|c| c.key_id.is_none()).collect();
    assert_eq!(org_rows.len(), 1, "{theirs:?}");
    assert!((1..=8).contains(&org_rows[0].choice.alert_for_secs()));
    // Clearing what was never set is not an error; an unknown organization is.
    store
        .set_on_inaccessible(a, Some("never-set"), None, now)
        .await
        .unwrap();
    assert!(
        store
            .set_on_inaccessible(Uuid::new_v4(), None, Some(alert), now)
            .await
            .is_err()
    );
}

fn hook(org_id: Uuid, url: &str, events: Vec<AuditAction>) -> keyplane_store::Webhook {
    keyplane_store::Webhook {
        id: Uuid::new_v4(),
        org_id,
        url: url.to_string(),
        events,
        sealed_secret: vec![1, 2, 3, 0xff],
        after_seq: -1,
        created_at: Utc::now(),
    }
}

async fn audit_once(store: &DynStore, org_id: Uuid, action: AuditAction) -> i64 {
    store
        .append_audit(&NewAuditEntry {
            org_id,
            actor: "system:test".into(),
            action,
            target: "dc-1".into(),
            outcome: AuditOutcome::Success,
            reason: String::new(),
        })
        .await
        .unwrap()
        .seq
}

fn delivery(
    w: &keyplane_store::Webhook,
    seq: i64,
    event: AuditAction,
) -> keyplane_store::NewDelivery {
    keyplane_store::NewDelivery {
        webhook_id: w.id,
        org_id: w.org_id,
        audit_seq: seq,
        event,
        payload: format!("{{\"id\":\"{seq}\"}}"),
    }
}

/// Webhooks: created after the audit log's head, capped per organization, listed per
/// organization, deleted with their deliveries; the outbox cursor moves once (a stale mover
/// creates nothing); claims lease and count attempts; a stale attempt is ignored.
async fn suite_webhooks(store: DynStore) {
    use keyplane_store::{AttemptResult, DeliveryAttempt, DeliveryState};
    let a = store.create_org("a", None).await.unwrap().id;
    let b = store.create_org("b", None).await.unwrap().id;
    let start = store.webhook_cursor().await.unwrap();
    let before = audit_once(&store, a, AuditAction::CmkRevoke).await;
    let w = store
        .create_webhook(&hook(a, "https://a.example/hook", vec![]), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.after_seq, before, "only what happens from now on is sent");
    let w2 = store
        .create_webhook(
            &hook(
                a,
                "https://a.example/two",
                vec![AuditAction::DatacenterSuspend],
            ),
            2,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(w2.wants(AuditAction::DatacenterSuspend) && !w2.wants(AuditAction::CmkRevoke));
    assert!(w.wants(AuditAction::CmkRevoke));
    assert_eq!(
        store
            .create_webhook(&hook(a, "https://a.example/three", vec![]), 2)
            .await
            .unwrap(),
        None,
        "the third is over the cap"
    );
    let wb = store
        .create_webhook(&hook(b, "https://b.example/", vec![]), 2)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store
            .create_webhook(&hook(Uuid::new_v4(), "https://x.example/", vec![]), 2)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Oldest first; two made in the same millisecond come in ID order.
    let mut listed = store.list_webhooks(Some(a)).await.unwrap();
    let mut want = vec![w.clone(), w2.clone()];
    if w.created_at == w2.created_at {
        want.sort_by_key(|x| x.id);
    }
    assert_eq!(listed, want);
    listed.retain(|x| x.id == w2.id);
    assert_eq!(listed[0].events, vec![AuditAction::DatacenterSuspend]);
    assert_eq!(store.list_webhooks(None).await.unwrap().len(), 3);
    assert!(
        !format!("{w:?}").contains("255"),
        "the sealed secret stays out of Debug"
    );

    // The cursor: a mover from the wrong place creates nothing.
    let seq = audit_once(&store, a, AuditAction::DatacenterSuspend).await;
    let now = Utc::now().trunc_subsecs(3);
    let batch = vec![
        delivery(&w, seq, AuditAction::DatacenterSuspend),
        delivery(&w2, seq, AuditAction::DatacenterSuspend),
    ];
    assert!(
        !store
            .enqueue_deliveries(start + 100, seq, &batch, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_deliveries(start, seq, &batch, now)
            .await
            .unwrap()
    );
    assert_eq!(store.webhook_cursor().await.unwrap(), seq);
    assert!(
        !store
            .enqueue_deliveries(start, seq, &batch, now)
            .await
            .unwrap(),
        "moved once"
    );

    // Claims: both due, leased, attempts counted; nothing more to claim inside the lease.
    let lease = now + Duration::seconds(30);
    let claimed = store.claim_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|d| d.attempts == 1 && d.next_attempt_at == lease)
    );
    assert!(
        claimed
            .iter()
            .all(|d| d.state == DeliveryState::Pending && d.audit_seq == seq)
    );
    assert!(
        store
            .claim_deliveries(now, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = claimed
        .iter()
        .find(|d| d.webhook_id == w.id)
        .unwrap()
        .clone();
    let failed = |n: i32, status: Option<i32>, next: DeliveryState, at| AttemptResult {
        delivery_id: first.id,
        attempt: DeliveryAttempt {
            attempt: n,
            at: now,
            status,
            error: if status == Some(200) {
                String::new()
            } else {
                "HTTP 500".into()
            },
            millis: 12,
        },
        next,
        next_attempt_at: at,
    };
    // A retry in 1 s.
    assert!(
        store
            .record_attempt(&failed(
                1,
                Some(500),
                DeliveryState::Pending,
                now + Duration::seconds(1)
            ))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_deliveries(now, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let again = store
        .claim_deliveries(now + Duration::seconds(1), lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first.id, 2));
    assert_eq!(again[0].last_status, Some(500));
    // Attempt 1 recorded late (its claim had expired): ignored.
    assert!(
        !store
            .record_attempt(&failed(1, Some(200), DeliveryState::Delivered, now))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_attempt(&failed(2, Some(200), DeliveryState::Delivered, now))
            .await
            .unwrap()
    );
    let log = store.list_deliveries(a, w.id, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].delivery.state, DeliveryState::Delivered);
    assert_eq!(log[0].delivery.payload, format!("{{\"id\":\"{seq}\"}}"));
    assert_eq!(
        log[0]
            .attempts
            .iter()
            .map(|x| (x.attempt, x.status))
            .collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, Some(200))]
    );
    assert!(
        store.list_deliveries(b, w.id, 10).await.unwrap().is_empty(),
        "another org's"
    );
    // Pruning removes finished deliveries last changed before the cut, never pending ones.
    assert_eq!(
        store
            .prune_deliveries(now - Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_deliveries(now + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(store.list_deliveries(a, w.id, 10).await.unwrap().is_empty());
    assert_eq!(
        store.list_deliveries(a, w2.id, 10).await.unwrap().len(),
        1,
        "the pending one stays"
    );

    // Deleting removes the webhook and its deliveries; another org cannot delete it.
    assert!(!store.delete_webhook(b, w.id).await.unwrap());
    assert!(store.delete_webhook(a, w.id).await.unwrap());
    assert!(!store.delete_webhook(a, w.id).await.unwrap());
    assert!(store.list_deliveries(a, w.id, 10).await.unwrap().is_empty());
    assert_eq!(
        store.list_webhooks(Some(a)).await.unwrap(),
        vec![w2.clone()]
    );
    // A delivery for a deleted webhook is skipped; the rest are created.
    let seq2 = audit_once(&store, a, AuditAction::CmkAlert).await;
    let batch = vec![
        delivery(&w, seq2, AuditAction::CmkAlert),
        delivery(&wb, seq2, AuditAction::CmkAlert),
    ];
    assert!(
        store
            .enqueue_deliveries(seq, seq2, &batch, now)
            .await
            .unwrap()
    );
    assert_eq!(store.list_deliveries(b, wb.id, 10).await.unwrap().len(), 1);
}

/// Eight processes' worth of claimers on twenty due deliveries: each is claimed exactly once.
async fn suite_concurrent_delivery_claims(store: DynStore) {
    let a = store.create_org("a", None).await.unwrap().id;
    let w = store
        .create_webhook(&hook(a, "https://a.example/", vec![]), 10)
        .await
        .unwrap()
        .unwrap();
    let from = store.webhook_cursor().await.unwrap();
    let mut batch = Vec::new();
    let mut to = from;
    for _ in 0..20 {
        to = audit_once(&store, a, AuditAction::DatacenterResume).await;
        batch.push(delivery(&w, to, AuditAction::DatacenterResume));
    }
    let now = Utc::now().trunc_subsecs(3);
    assert!(
        store
            .enqueue_deliveries(from, to, &batch, now)
            .await
            .unwrap()
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_deliveries(now, now + Duration::seconds(30), 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let unique: std::collections::BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), 20, "every delivery claimed");
    assert_eq!(unique.len(), 20, "none claimed twice");
}
