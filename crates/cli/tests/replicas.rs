//! Three API replicas (`keyplane serve --role api`) on one PostgreSQL behave as one service:
//! requests spread over all of them, a replica killed with SIGKILL in the middle of
//! provisioning and another one stalled (SIGSTOP) past its job's lease, and still every
//! database reaches ACTIVE with exactly one wrapped data key per datacenter (the one of
//! record, which unwraps), no grant made, the dead replica's job taken over and the stalled
//! one's outcome refused. A portal session started on one replica is used on the others,
//! survives a replica's restart and ends everywhere at sign-out.
//!
//! Provisioning is made slow enough to catch mid-way by stopping the shared KMS process
//! (SIGSTOP) while the databases are created, as `terminal.rs` does: every replica's worker
//! then holds a job, waiting on the KMS.
//!
//! Needs `KEYPLANE_TEST_PG_URL`: `scripts/with-postgres cargo test -p keyplane --test replicas`.
#![cfg(unix)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fleet::Fleet;

/// Short, so that a dead replica's job is taken over within the test's patience; renewed
/// every third of it.
const LEASE_SECS: u64 = 3;
const DATABASES: usize = 10;

/// Who holds each running job: job id → lease owner.
async fn running_jobs(f: &Fleet) -> BTreeMap<i64, String> {
    f.sql("SELECT id, lease_owner FROM jobs WHERE state = 'running'")
        .await
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
            )
        })
        .collect()
}

async fn wait_for(what: &str, secs: u64, f: &Fleet, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            f.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty())
}

fn csrf_field(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = html.find(marker).expect("a csrf field") + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// Signs in on replica `i` with the fleet's token: the session cookie.
async fn portal_sign_in(f: &Fleet, i: usize) -> String {
    let url = &f.replicas[i].url;
    let res = f
        .http
        .get(format!("{url}/portal/signin"))
        .send()
        .await
        .unwrap();
    let csrf = cookie_value(&res, "kp_csrf").expect("the sign-in form's CSRF cookie");
    let res = f
        .http
        .post(format!("{url}/portal/signin"))
        .header("cookie", format!("kp_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={}", f.token.replace(':', "%3A")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    format!(
        "kp_session={}",
        cookie_value(&res, "kp_session").expect("a session cookie")
    )
}

async fn portal_get(f: &Fleet, i: usize, path: &str, cookie: &str) -> (u16, String) {
    let res = f
        .http
        .get(format!("{}{path}", f.replicas[i].url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_api_replicas_provision_every_database_through_a_kill_9_and_a_stall() {
    let started = Instant::now();
    let lease = LEASE_SECS.to_string();
    let mut f = Fleet::start(3, &["--role", "api", "--job-lease", &lease]).await;
    for i in 0..3 {
        let (st, body, _) = f.api(i, "GET", "/readyz", None).await;
        assert_eq!((st, body["role"].as_str()), (200, Some("api")), "{body}");
    }
    let customer_key = f.register_customer_key(1, "us-east-2").await;

    // Creations spread over the replicas while the KMS is stopped: every worker claims a job
    // and waits in GenerateDataKeyWithoutPlaintext. Even databases on the customer's key
    // (us-east-2), odd ones on the platform's (eu-west-1).
    f.pause_kms();
    let mut dbs = Vec::new();
    for n in 0..DATABASES {
        let region = if n % 2 == 0 { "us-east-2" } else { "eu-west-1" };
        dbs.push(f.create_db(n % 3, &format!("fleet{n}"), region).await);
    }
    let ids: Vec<String> = f.replicas.iter().map(|r| r.id.clone()).collect();
    wait_for("every replica to hold a job", 30, &f, async || {
        let held = running_jobs(&f).await;
        ids.iter().all(|id| held.values().any(|o| o == id))
    })
    .await;
    let held = running_jobs(&f).await;
    let job_of = |id: &str| {
        held.iter()
            .find(|(_, o)| o.as_str() == id)
            .map(|(j, _)| *j)
            .unwrap()
    };
    let (killed_job, stalled_job, live_job) = (job_of(&ids[1]), job_of(&ids[2]), job_of(&ids[0]));
    eprintln!("jobs held at the kill: {held:?}");

    // Replica 1 dies mid-job; replica 2 stalls holding its job; replica 1 is started again
    // at once (a new process, a new replica ID).
    f.kill9(1);
    f.pause(2);
    f.start_replica(1).await;
    let restarted = f.replicas[1].id.clone();
    assert_ne!(restarted, ids[1]);
    // The restart requeued nothing: replica 0 still holds its job (it renews its lease), and
    // neither lease of the dead and the stalled replicas is taken before it passes.
    let after_restart = running_jobs(&f).await;
    assert_eq!(
        after_restart.get(&live_job),
        Some(&ids[0]),
        "{after_restart:?}"
    );
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let later = running_jobs(&f).await;
    assert_eq!(
        later.get(&live_job),
        Some(&ids[0]),
        "a live replica's job is never taken: {later:?}\n{}",
        f.all_logs()
    );

    // The KMS answers again: the dead and the stalled replicas' jobs are taken over once
    // their leases passed.
    f.resume_kms();
    wait_for(
        "the stalled replica's job to be taken over",
        60,
        &f,
        async || {
            let rows = f
                .sql(&format!(
                    "SELECT lease_owner FROM jobs WHERE id = {stalled_job}"
                ))
                .await;
            rows[0].get::<_, Option<String>>(0).as_deref() != Some(ids[2].as_str())
        },
    )
    .await;
    f.resume(2);

    // Every database ACTIVE, polled through every replica in turn.
    let mut n = 0usize;
    for db in &dbs {
        wait_for(&format!("{db} to be ACTIVE"), 90, &f, async || {
            n += 1;
            let (st, body, _) = f
                .api(n % 3, "GET", &format!("/v2/databases/{db}"), None)
                .await;
            assert_eq!(st, 200, "{body}");
            assert_ne!(body["status"], "ERROR", "{body}");
            body["status"] == "ACTIVE"
        })
        .await;
    }

    // The store: one datacenter per database, ACTIVE, with one wrapped data key; every job
    // done once, none failed; the dead replica's job taken over from it.
    let jobs = f
        .sql("SELECT id, state, lease_owner, taken_over_from, attempts FROM jobs ORDER BY id")
        .await;
    assert_eq!(jobs.len(), DATABASES, "one provisioning job per database");
    for j in &jobs {
        assert_eq!(j.get::<_, String>(1), "done", "job {}", j.get::<_, i64>(0));
    }
    let taken_from = |job: i64| {
        jobs.iter()
            .find(|j| j.get::<_, i64>(0) == job)
            .and_then(|j| j.get::<_, Option<String>>(3))
    };
    assert_eq!(taken_from(killed_job).as_deref(), Some(ids[1].as_str()));
    assert_eq!(taken_from(stalled_job).as_deref(), Some(ids[2].as_str()));
    let dcs = f
        .sql(
            "SELECT d.id, d.database_id::text, d.org_id::text, d.status, d.key_id, d.region, \
                    d.wrapped_data_key FROM datacenters d ORDER BY d.id",
        )
        .await;
    assert_eq!(dcs.len(), DATABASES);
    let platform_key = |region: &str| {
        f.platform_keys
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, k)| k.clone())
            .unwrap()
    };
    for dc in &dcs {
        let (id, db, org): (String, String, String) = (dc.get(0), dc.get(1), dc.get(2));
        let (status, key_id, region): (String, String, String) = (dc.get(3), dc.get(4), dc.get(5));
        let wrapped: Option<Vec<u8>> = dc.get(6);
        assert_eq!(status, "ACTIVE", "{id}");
        assert!(dbs.contains(&db), "{db}");
        let want_key = if region == "us-east-2" {
            customer_key.clone()
        } else {
            platform_key(&region)
        };
        assert_eq!(key_id, want_key, "{id}");
        // The one key of record unwraps under the datacenter's context.
        let wrapped = wrapped.unwrap_or_else(|| panic!("{id} has no data key"));
        let plain = f
            .kms_as(&f.platform, &region)
            .decrypt()
            .key_id(&key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .encryption_context("organization", org)
            .encryption_context("database", db)
            .encryption_context("datacenter", id.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{id}: its wrapped key does not unwrap: {e:?}"));
        assert_eq!(plain.plaintext().unwrap().as_ref().len(), 32, "{id}");
    }
    // No grant on the customer's key: the registration check's own was revoked, and
    // provisioning (taken over or not) makes none.
    let grants = f
        .kms_as(&f.customer, "us-east-2")
        .list_grants()
        .key_id(&customer_key)
        .send()
        .await
        .unwrap();
    assert_eq!(grants.grants().len(), 0, "{grants:?}");

    // The counters: replica 0 claimed and took over; the stalled one renewed its lease before
    // the stall and lost it after.
    let mut claimed = 0;
    let mut taken_over = 0;
    for i in 0..3 {
        claimed += f.metric(i, "keyplane_jobs_claimed_total").await;
        taken_over += f.metric(i, "keyplane_jobs_taken_over_total").await;
    }
    assert!(claimed >= (DATABASES - 1) as u64, "claimed {claimed}");
    assert!(taken_over >= 2, "taken over {taken_over}");
    assert!(f.metric(0, "keyplane_job_lease_renewals_total").await >= 1);
    wait_for(
        "the stalled replica to see its lease lost",
        30,
        &f,
        async || f.metric(2, "keyplane_job_leases_lost_total").await >= 1,
    )
    .await;
    eprintln!(
        "fleet: {claimed} claims, {taken_over} takeovers; jobs: {:?}",
        jobs.iter()
            .map(|j| (
                j.get::<_, i64>(0),
                j.get::<_, Option<String>>(2),
                j.get::<_, Option<String>>(3),
                j.get::<_, i32>(4)
            ))
            .collect::<Vec<_>>()
    );

    // The portal: signed in on replica 0, used on 1 and 2, then on 0 after its kill -9 and
    // restart; a form posted on 2 with the session's CSRF token signs out everywhere.
    let cookie = portal_sign_in(&f, 0).await;
    let (st, html) = portal_get(&f, 1, "/portal/databases", &cookie).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("fleet0") && html.contains("fleet9"), "{html}");
    let (st, html) = portal_get(&f, 2, "/portal/keys", &cookie).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains(&customer_key), "{html}");
    f.kill9(0);
    f.start_replica(0).await;
    let (st, html) = portal_get(&f, 0, "/portal/keys", &cookie).await;
    assert_eq!(
        st, 200,
        "the session outlived the replica it started on: {html}"
    );
    let csrf = csrf_field(&html);
    let res = f
        .http
        .post(format!("{}/portal/signout", f.replicas[2].url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    for i in 0..3 {
        let (st, _) = portal_get(&f, i, "/portal/keys", &cookie).await;
        assert_eq!(st, 303, "replica {i} still serves a signed-out session");
    }
    eprintln!("fleet test took {:?}", started.elapsed());
    f.finish().await;
}
