//! Revoking, unrevoking and deregistering customer keys over real servers: keyplane on a
//! port (and a second process on its store file), its built-in KMS as the customer's, the
//! worker, the monitor and the Data API.
mod common;

use std::time::{Duration, Instant};

use common::{
    TestServer, assert_error, create_db, register_key, replace, send, unregistered_key, wait_status,
};
use keyplane_app::Config;
use keyplane_core::Role;
use serde_json::{Value, json};

const KEY: &str = "/v2/kms/classic/provider/aws/region/us-east-2";

/// Monitor rounds every 200 ms, so a test sees at once whether a round would undo a revoke.
fn config() -> Config {
    Config {
        key_check_interval: Duration::from_millis(200),
        kms_grace_period: Duration::from_secs(3600),
        suspension_sync_interval: Duration::from_millis(100),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn data(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    db: &str,
    path: &str,
    cmd: Value,
) -> (u16, Value) {
    let url = format!("{base}/db/{db}-us-east-2/api/json/v1/shop{path}");
    send(client.post(url).header("Token", token).json(&cmd)).await
}

/// A database with `n` documents in collection `inv`.
async fn filled_db(s: &TestServer, name: &str, n: usize) -> String {
    let db = create_db(s, name, "us-east-2").await;
    wait_status(s, &db, "ACTIVE").await;
    let c = &s.client;
    let (st, body) = data(
        c,
        &s.url,
        &s.admin,
        &db,
        "",
        json!({"createCollection": {"name": "inv"}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"_id": format!("d{i}"), "v": i}))
        .collect();
    let (st, body) = data(
        c,
        &s.url,
        &s.admin,
        &db,
        "/inv",
        json!({"insertMany": {"documents": docs}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    db
}

async fn count(client: &reqwest::Client, base: &str, token: &str, db: &str) -> (u16, Value) {
    data(
        client,
        base,
        token,
        db,
        "/inv",
        json!({"countDocuments": {}}),
    )
    .await
}

/// Polls a read until it is refused with 503; the refusal's body.
async fn until_refused(client: &reqwest::Client, base: &str, token: &str, db: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body) = count(client, base, token, db).await;
        if st == 503 {
            return body;
        }
        assert_eq!(st, 200, "{body}");
        assert!(Instant::now() < deadline, "reads were never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The organization's audit log as (action, outcome, reason), newest first.
async fn audit_entries(s: &TestServer) -> Vec<(String, String, String)> {
    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=200", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    audit_actions(&page)
}

/// How many of `entries` record `action` with `outcome`.
fn count_of(entries: &[(String, String, String)], action: &str, outcome: &str) -> usize {
    entries
        .iter()
        .filter(|(a, o, _)| a == action && o == outcome)
        .count()
}

fn audit_actions(page: &Value) -> Vec<(String, String, String)> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_cuts_every_process_off_and_unrevoke_brings_everything_back() {
    let s = TestServer::with_config(config()).await;
    let arn = register_key(&s, "us-east-2").await;
    let dbs = [
        filled_db(&s, "orders", 25).await,
        filled_db(&s, "billing", 7).await,
    ];
    // A second process on the same store, whose own monitor would never act in this test:
    // only the suspension sync can tell it.
    let other = s
        .replica(Config {
            key_check_interval: Duration::from_secs(3600),
            suspension_sync_interval: Duration::from_millis(100),
            ..Default::default()
        })
        .await;
    let c = reqwest::Client::new();
    for db in &dbs {
        // Both processes serve, the second with the data key it unwrapped itself.
        assert_eq!(count(&c, &s.url, &s.admin, db).await.0, 200);
        assert_eq!(count(&c, &other.url, &s.admin, db).await.0, 200);
    }

    // A read-only token may not revoke.
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = s.post(&format!("{KEY}/revoke"), &ro, json!({})).await;
    assert_error(st, &body, 403, 3000);
    // Nor is there a key to revoke in another region.
    let (st, body) = s
        .post(
            "/v2/kms/classic/provider/aws/region/eu-west-1/revoke",
            &s.admin,
            json!({}),
        )
        .await;
    assert_error(st, &body, 404, 4000);

    let (st, view) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["status"], "REVOKED", "{view}");
    // The status names every datacenter the revoke suspended.
    let mut under: Vec<(String, String)> = view["datacenters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["databaseId"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    under.sort();
    let mut want: Vec<(String, String)> = dbs
        .iter()
        .map(|d| (d.clone(), "SUSPENDED".to_string()))
        .collect();
    want.sort();
    assert_eq!(under, want, "{view}");
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .starts_with("revoked by the customer"),
        "{view}"
    );
    // This process refuses at once, with the reason.
    for db in &dbs {
        let (st, body) = count(&c, &s.url, &s.admin, db).await;
        assert_eq!(st, 503, "{body}");
        assert!(
            body.to_string().contains("revoked by the customer"),
            "{body}"
        );
        let (_, dbv) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        assert_eq!(dbv["status"], "SUSPENDED", "{dbv}");
    }
    // The other process follows, its open files and data keys dropped.
    for db in &dbs {
        let body = until_refused(&c, &other.url, &s.admin, db).await;
        assert!(
            body.to_string().contains("revoked by the customer"),
            "{body}"
        );
    }
    // Their files close right after the registry refuses them (a read in flight may hold one
    // a moment longer).
    let deadline = Instant::now() + Duration::from_secs(10);
    while other.app.data.held_data_keys() + s.app.data.held_data_keys() > 0 {
        assert!(
            Instant::now() < deadline,
            "data keys still held after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The key still works in the KMS, and monitor rounds run: nothing resumes.
    let (st, checked) = s.post(&format!("{KEY}/check"), &s.admin, json!({})).await;
    assert_eq!(
        (st, &checked["status"]),
        (200, &json!("REVOKED")),
        "{checked}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    for db in &dbs {
        let (_, dbv) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        assert_eq!(
            dbv["status"], "SUSPENDED",
            "a monitor round resumed it: {dbv}"
        );
        assert_eq!(count(&c, &s.url, &s.admin, db).await.0, 503);
    }
    // No database is deployed under it.
    let (st, body) = s
        .post(
            "/v2/databases",
            &s.admin,
            json!({"name": "new", "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                   "capacityUnits": 1, "region": "us-east-2"}),
        )
        .await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(msg.contains("revoked") && msg.contains("unrevoke"), "{msg}");
    // Revoking again answers the same.
    let (st, again) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!((st, &again["status"]), (200, &json!("REVOKED")));

    // Unrevoke runs the live check first: with the key disabled in the KMS it is refused and
    // the key stays revoked.
    let kms = s.kms.customer("us-east-2");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let (st, body) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(msg.to_lowercase().contains("disabled"), "{msg}");
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["status"], "REVOKED");
    kms.enable_key().key_id(&arn).send().await.unwrap();

    let (st, view) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["status"], "IN_USE", "{view}");
    for (db, n) in dbs.iter().zip([25, 7]) {
        let (_, dbv) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        assert_eq!(dbv["status"], "ACTIVE", "{dbv}");
        let (st, body) = count(&c, &s.url, &s.admin, db).await;
        assert_eq!((st, &body["status"]["count"]), (200, &json!(n)), "{body}");
        // The other process serves again too, every document there.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, body) = count(&c, &other.url, &s.admin, db).await;
            if st == 200 {
                assert_eq!(body["status"]["count"], json!(n), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the other process never served again: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Unrevoking a key that is not revoked changes nothing.
    let (st, same) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!((st, &same["status"]), (200, &json!("IN_USE")));
    // Deployments work again.
    let db3 = create_db(&s, "after", "us-east-2").await;
    wait_status(&s, &db3, "ACTIVE").await;

    // The audit log has each step, by the customer's token.
    let entries = audit_entries(&s).await;
    let has = |action: &str, outcome: &str| count_of(&entries, action, outcome);
    assert_eq!(has("cmk.revoke", "success"), 2, "{entries:?}");
    assert_eq!(has("cmk.revoke", "denied"), 1, "{entries:?}");
    assert_eq!(has("cmk.unrevoke", "failure"), 1, "{entries:?}");
    assert_eq!(has("cmk.unrevoke", "success"), 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|(a, _, r)| a == "datacenter.suspend" && r.starts_with("revoked by the customer")),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|(a, _, _)| a == "datacenter.resume"),
        "{entries:?}"
    );
    other.stop().await;
}

/// 8 revokes and 8 key checks at once, then 8 unrevokes and 8 checks at once: whatever the
/// interleaving, every datacenter ends suspended after the first burst and active with every
/// document after the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revokes_and_checks_agree() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let mut dbs = vec![];
    for i in 0..3 {
        dbs.push(filled_db(&s, &format!("db{i}"), 10 + i).await);
    }
    for verb in ["revoke", "unrevoke"] {
        let mut tasks = vec![];
        for i in 0..16 {
            let (client, url, token) = (s.client.clone(), s.url.clone(), s.admin.clone());
            let path = if i % 2 == 0 {
                format!("{KEY}/{verb}")
            } else {
                format!("{KEY}/check")
            };
            tasks.push(tokio::spawn(async move {
                send(client.post(format!("{url}{path}")).bearer_auth(token)).await
            }));
        }
        for t in tasks {
            let (st, body) = t.await.unwrap();
            assert_eq!(st, 200, "{verb}: {body}");
        }
        let want = if verb == "revoke" {
            ("REVOKED", "SUSPENDED")
        } else {
            ("IN_USE", "ACTIVE")
        };
        let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
        assert_eq!(status["status"], want.0, "{status}");
        // A monitor round after the burst agrees.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, db) in dbs.iter().enumerate() {
            let (_, dbv) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
            assert_eq!(dbv["status"], want.1, "{verb}: {dbv}");
            let (st, body) = count(&s.client, &s.url, &s.admin, db).await;
            if verb == "revoke" {
                assert_eq!(st, 503, "{body}");
            } else {
                assert_eq!(
                    (st, &body["status"]["count"]),
                    (200, &json!(10 + i)),
                    "{body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_key_is_deregistered_only_once_no_database_uses_it() {
    let s = TestServer::with_config(config()).await;
    let arn = register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "orders", 3).await;
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(
        status["datacenters"][0]["datacenterId"],
        format!("{db}-1"),
        "{status}"
    );
    assert_eq!(status["datacenters"][0]["status"], "ACTIVE", "{status}");
    let (st, body) = send(s.req("DELETE", KEY, Some(&s.admin))).await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(
        msg.contains(&format!("{db}-1")) && msg.contains(&arn),
        "{msg}"
    );
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = send(s.req("DELETE", KEY, Some(&ro))).await;
    assert_error(st, &body, 403, 3000);
    let (st, _) = s.get(KEY, &s.admin).await;
    assert_eq!(st, 200, "still registered");

    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/terminate"),
            &s.admin,
            json!({}),
        )
        .await;
    assert!(st == 202 || st == 200, "{st} {body}");
    wait_status(&s, &db, "TERMINATED").await;
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(
        status["datacenters"],
        json!([]),
        "a terminated datacenter holds no key: {status}"
    );
    let (st, body) = send(s.req("DELETE", KEY, Some(&s.admin))).await;
    assert_eq!(st, 204, "{body}");
    let (st, body) = s.get(KEY, &s.admin).await;
    assert_error(st, &body, 404, 4000);
    let (st, body) = send(s.req("DELETE", KEY, Some(&s.admin))).await;
    assert_error(st, &body, 404, 4000);
    let (_, list) = s.get("/v2/kms/classic", &s.admin).await;
    assert_eq!(list, json!([]));
    // The slot takes another key; databases deployed now use it.
    let other = register_key(&s, "us-east-2").await;
    assert_ne!(other, arn);
    let db2 = create_db(&s, "after", "us-east-2").await;
    let view = wait_status(&s, &db2, "ACTIVE").await;
    assert_eq!(
        view["info"]["datacenters"][0]["encryption"]["keyID"],
        other.as_str(),
        "{view}"
    );

    let (_, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=100", s.org),
            &s.admin,
        )
        .await;
    let entries = audit_actions(&page);
    let n = |o: &str| {
        entries
            .iter()
            .filter(|(a, out, _)| a == "cmk.deregister" && out == o)
            .count()
    };
    assert_eq!(
        (n("success"), n("failure"), n("denied")),
        (1, 2, 1),
        "{entries:?}"
    );
}

/// A database whose key is revoked while it is being deployed never serves: it ends
/// SUSPENDED (no monitor round is needed: this server's monitor never runs), and ACTIVE once
/// the key is unrevoked.
#[tokio::test]
async fn a_database_deployed_while_its_key_is_revoked_never_serves() {
    let s = TestServer::with_config(Config {
        key_check_interval: Duration::from_secs(3600),
        worker_poll: Duration::from_millis(500),
        ..config()
    })
    .await;
    register_key(&s, "us-east-2").await;
    let db = create_db(&s, "late", "us-east-2").await;
    let (st, view) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{view}");
    // Watch it from PENDING until it settles: it is never ACTIVE.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = vec![];
    loop {
        let (_, v) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        let status = v["status"].as_str().unwrap().to_string();
        assert_ne!(status, "ACTIVE", "it served under a revoked key: {seen:?}");
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        let dc = s
            .store
            .get_datacenter(&format!("{db}-1"))
            .await
            .unwrap()
            .unwrap();
        if status == "SUSPENDED" && dc.wrapped_data_key.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settled means the job is done: it stays suspended.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, v) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(v["status"], "SUSPENDED", "{v}");
    let dc = s
        .store
        .get_datacenter(&format!("{db}-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(dc.message.starts_with("revoked by the customer"), "{dc:?}");
    let (st, _) = count(&s.client, &s.url, &s.admin, &db).await;
    assert_eq!(st, 503);
    let (st, view) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!((st, &view["status"]), (200, &json!("IN_USE")), "{view}");
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = data(
        &s.client,
        &s.url,
        &s.admin,
        &db,
        "",
        json!({"createCollection": {"name": "inv"}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
}

/// While a key is revoked keyplane makes no call to it: not the monitor's rounds, not its
/// binding check, not a status read or a check on request.
#[tokio::test]
async fn a_revoked_key_is_never_called() {
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connects.clone();
    let s = TestServer::with_wrapped_kms(config(), move |inner| {
        std::sync::Arc::new(common::CountingConnector {
            inner,
            connects: counter,
        })
    })
    .await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "orders", 2).await;
    let (st, _) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200);
    let calls = || connects.load(std::sync::atomic::Ordering::SeqCst);
    let before = calls();
    // Several monitor rounds (every 200 ms), a status read, a check, reads refused.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["status"], "REVOKED");
    assert!(
        status["factsError"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{status}"
    );
    let (st, _) = s.post(&format!("{KEY}/check"), &s.admin, json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(count(&s.client, &s.url, &s.admin, &db).await.0, 503);
    assert_eq!(calls(), before, "keyplane called a revoked key");
    // Unrevoking is the first call again: the live check.
    let (st, _) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!(st, 200);
    assert!(calls() > before);
}

/// A key in the built-in KMS that the platform may use for the organization, not registered.
async fn rewrap(s: &TestServer, db: &str) -> (u16, Value) {
    s.post(
        &format!("/v2/databases/{db}/datacenters/{db}-1/rewrap"),
        &s.admin,
        json!({}),
    )
    .await
}

async fn key_of(s: &TestServer, db: &str) -> String {
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    view["info"]["datacenters"][0]["encryption"]["keyID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Polls until reads of `db` on this server succeed; the count they give.
async fn until_served(s: &TestServer, db: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body) = count(&s.client, &s.url, &s.admin, db).await;
        if st == 200 {
            return body["status"]["count"].clone();
        }
        assert!(Instant::now() < deadline, "never served again: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replace: the new key is checked for real before the slot takes it; new databases use it,
/// existing ones stay under the old key (listed as previous) and follow the old key's state
/// until rewrapped; after the rewrap only the new key matters to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_key_moves_new_databases_at_once_and_old_ones_when_rewrapped() {
    let s = TestServer::with_config(config()).await;
    let a = register_key(&s, "us-east-2").await;
    let old_db = filled_db(&s, "orders", 25).await;
    let kms = s.kms.customer("us-east-2");

    // A key the live check refuses (disabled) is not taken; the slot is unchanged.
    let broken = unregistered_key(&s).await;
    kms.disable_key().key_id(&broken).send().await.unwrap();
    let (st, body) = replace(&s, &s.admin, &broken, "us-east-2").await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(msg.to_lowercase().contains("disabled"), "{msg}");
    let b = unregistered_key(&s).await;
    // Another region in the body than in the path, a read-only token, an empty slot: refused.
    let (st, body) = replace(&s, &s.admin, &b, "eu-west-1").await;
    assert_error(st, &body, 400, 1000);
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = replace(&s, &ro, &b, "us-east-2").await;
    assert_error(st, &body, 403, 3000);
    let body = json!({"orgId": s.org, "aws": {"keyID": b, "region": "us-west-2"}});
    let (st, resp) = send(
        s.req(
            "PUT",
            "/v2/kms/classic/provider/aws/region/us-west-2",
            Some(&s.admin),
        )
        .json(&body),
    )
    .await;
    assert_error(st, &resp, 404, 4000);
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["key"]["aws"]["keyID"], a.as_str(), "{status}");

    // Replaced: the slot holds B, the old database is still under A and listed as such.
    let (st, view) = replace(&s, &s.admin, &b, "us-east-2").await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["key"]["aws"]["keyID"], b.as_str(), "{view}");
    assert_eq!(view["status"], "AVAILABLE", "{view}");
    assert_eq!(view["datacenters"], json!([]), "{view}");
    assert_eq!(view["lifecycle"]["state"], "REWRAPPING", "{view}");
    assert_eq!(view["lifecycle"]["databases"], json!([old_db]), "{view}");
    assert_eq!(
        view["previousKeys"],
        json!([{"keyID": a, "datacenters": [
            {"databaseId": old_db, "datacenterId": format!("{old_db}-1"), "status": "ACTIVE"}]}]),
        "{view}"
    );
    // The same replacement again changes nothing.
    let (st, again) = replace(&s, &s.admin, &b, "us-east-2").await;
    assert_eq!((st, &again["key"]), (200, &view["key"]), "{again}");
    assert_eq!(key_of(&s, &old_db).await, a);
    let new_db = filled_db(&s, "billing", 7).await;
    assert_eq!(key_of(&s, &new_db).await, b);

    // A disabled in the KMS: the old database is cut off, the new one is not, and the slot's
    // key (B) is not marked INACCESSIBLE by a check of A.
    kms.disable_key().key_id(&a).send().await.unwrap();
    until_refused(&s.client, &s.url, &s.admin, &old_db).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count(&s.client, &s.url, &s.admin, &new_db).await.0, 200);
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["status"], "IN_USE", "{status}");
    kms.enable_key().key_id(&a).send().await.unwrap();
    assert_eq!(until_served(&s, &old_db).await, json!(25));

    // Rewrapped: under B, every document readable; A no longer matters to it.
    let (st, dc) = rewrap(&s, &old_db).await;
    assert_eq!(st, 200, "{dc}");
    assert_eq!(dc["encryption"]["keyID"], b.as_str(), "{dc}");
    assert_eq!(key_of(&s, &old_db).await, b);
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["previousKeys"], json!([]), "{status}");
    assert_eq!(status["lifecycle"]["state"], "ENABLED", "{status}");
    let mut both = vec![old_db.clone(), new_db.clone()];
    both.sort();
    assert_eq!(status["lifecycle"]["databases"], json!(both), "{status}");
    assert_eq!(
        status["datacenters"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    // Closed and reopened, the file opens with the data key as B unwraps it.
    s.app.data.forget(&format!("{old_db}-1")).await;
    assert_eq!(until_served(&s, &old_db).await, json!(25));
    kms.disable_key().key_id(&a).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (st, body) = count(&s.client, &s.url, &s.admin, &old_db).await;
    assert_eq!((st, &body["status"]["count"]), (200, &json!(25)), "{body}");
    let (_, dbv) = s.get(&format!("/v2/databases/{old_db}"), &s.admin).await;
    assert_eq!(dbv["status"], "ACTIVE", "{dbv}");
    // Again: nothing to move.
    let (st, same) = rewrap(&s, &old_db).await;
    assert_eq!(
        (st, &same["encryption"]["keyID"]),
        (200, &json!(b)),
        "{same}"
    );
    // Nor is a datacenter of another database, or of none, rewrapped.
    let (st, body) = s
        .post(
            &format!("/v2/databases/{old_db}/datacenters/{new_db}-1/rewrap"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_error(st, &body, 404, 4000);

    // A revoked key is unrevoked, never replaced.
    let (st, _) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200);
    let c = unregistered_key(&s).await;
    let (st, body) = replace(&s, &s.admin, &c, "us-east-2").await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(msg.contains("unrevoke"), "{msg}");

    let entries = audit_entries(&s).await;
    let n = |action: &str, o: &str| count_of(&entries, action, o);
    assert_eq!(
        (
            n("cmk.replace", "success"),
            n("cmk.replace", "failure"),
            n("cmk.replace", "denied")
        ),
        (2, 4, 1),
        "{entries:?}"
    );
    assert_eq!(
        (
            n("datacenter.rewrap", "success"),
            n("datacenter.rewrap", "failure")
        ),
        (2, 1),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(act, _, r)| act == "cmk.replace" && r == &format!("replaced {a} by {b}")),
        "{entries:?}"
    );
}

/// Eight rewraps at once over four databases (two per datacenter): every one answers 200,
/// each datacenter ends under the new key once, and every document reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rewraps_move_each_datacenter_once() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let mut dbs = vec![];
    for i in 0..4 {
        dbs.push(filled_db(&s, &format!("db{i}"), 5 + i).await);
    }
    let b = unregistered_key(&s).await;
    let (st, view) = replace(&s, &s.admin, &b, "us-east-2").await;
    assert_eq!(st, 200, "{view}");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (url, token, db) = (s.url.clone(), s.admin.clone(), dbs[i % 4].clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                send(
                    c.post(format!("{url}/v2/databases/{db}/datacenters/{db}-1/rewrap"))
                        .bearer_auth(token),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let (st, dc) = t.await.unwrap();
        assert_eq!((st, &dc["encryption"]["keyID"]), (200, &json!(b)), "{dc}");
    }
    for (i, db) in dbs.iter().enumerate() {
        s.app.data.forget(&format!("{db}-1")).await;
        assert_eq!(key_of(&s, db).await, b);
        assert_eq!(until_served(&s, db).await, json!(5 + i));
    }
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(
        (
            status["previousKeys"].clone(),
            status["datacenters"].as_array().unwrap().len()
        ),
        (json!([]), 4),
        "{status}"
    );
    let (_, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=200", s.org),
            &s.admin,
        )
        .await;
    let moved = audit_actions(&page)
        .into_iter()
        .filter(|(a, o, r)| a == "datacenter.rewrap" && o == "success" && r.starts_with("moved"))
        .count();
    assert_eq!(moved, 4, "each datacenter moved once");
}

/// Every file under `dir`, in every folder below it.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every file under `dir` (the data directory: the store, its write-ahead log, the
/// datacenters' files) that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Crypto-shredding: terminating a rewrapped datacenter leaves nothing in the data directory
/// that holds its wrapped data key (the current one, or the one the rewrap replaced), its
/// data key, or a file that data key opens; another process that had it open drops it at its
/// next suspension sync; the audit log records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminating_shreds_every_copy_of_the_data_key() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "ledger", 30).await;
    let keep = filled_db(&s, "kept", 3).await;
    let dc_id = format!("{db}-1");
    let old_wrapped = s
        .store
        .get_datacenter(&dc_id)
        .await
        .unwrap()
        .unwrap()
        .wrapped_data_key
        .unwrap();
    let b = unregistered_key(&s).await;
    let (st, view) = replace(&s, &s.admin, &b, "us-east-2").await;
    assert_eq!(st, 200, "{view}");
    let (st, dc) = rewrap(&s, &db).await;
    assert_eq!(st, 200, "{dc}");
    let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    let wrapped = dc.wrapped_data_key.clone().unwrap();
    assert_ne!(wrapped, old_wrapped);
    let data_key = s.app.data.unwrap(&dc).await.unwrap();
    let file = s.app.data.file(&dc_id);
    // A second process has the datacenter open (its key in memory for the default 5 min TTL).
    let other = s.replica(config()).await;
    let (st, body) = count(&s.client, &other.url, &s.admin, &db).await;
    assert_eq!((st, &body["status"]["count"]), (200, &json!(30)), "{body}");
    assert_eq!(other.app.data.open_files(), 1);
    assert!(file.exists());
    // The scan finds what is there: the live wrapped key is in the store's files now.
    assert!(
        !files_holding(&s.data_dir, &wrapped).is_empty(),
        "the scan does not see the stored wrapped key"
    );
    assert!(
        files_holding(&s.data_dir, data_key.expose_secret()).is_empty(),
        "a plaintext data key is on disk"
    );

    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/terminate"),
            &s.admin,
            json!({}),
        )
        .await;
    assert!(st == 202 || st == 200, "{st} {body}");
    wait_status(&s, &db, "TERMINATED").await;

    assert!(!file.exists(), "the datacenter's file is still there");
    let deadline = Instant::now() + Duration::from_secs(5);
    while other.app.data.open_files() > 0 {
        assert!(
            Instant::now() < deadline,
            "the other process still holds the terminated datacenter's file and key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_eq!(row.wrapped_data_key, None);
    for (what, needle) in [
        ("the wrapped data key", &wrapped[..]),
        ("the wrapped data key the rewrap replaced", &old_wrapped[..]),
        ("the data key", &data_key.expose_secret()[..]),
    ] {
        let left = files_holding(&s.data_dir, needle);
        assert!(left.is_empty(), "{what} is still in {left:?}");
    }
    // No file left under the data directory opens with the data key.
    let mut tried = 0;
    for path in files_under(&s.data_dir) {
        if path.extension().is_some_and(|e| e == "db") {
            tried += 1;
            assert!(
                keyplane_docstore::DocStore::open(&path, &data_key).is_err(),
                "{} opens with the shredded key",
                path.display()
            );
        }
    }
    assert!(
        tried >= 2,
        "the store and the kept database's file were tried"
    );
    // The database kept is untouched.
    assert_eq!(until_served(&s, &keep).await, json!(3));

    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=100", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let shreds: Vec<_> = audit_actions(&page)
        .into_iter()
        .filter(|(a, o, _)| a == "datacenter.shred" && o == "success")
        .collect();
    assert_eq!(shreds.len(), 1, "{shreds:?}");
    assert!(
        shreds[0].2.contains(&format!("under {b}"))
            && shreds[0]
                .2
                .contains("the store's copies of deleted values erased"),
        "{shreds:?}"
    );
}

async fn choose(
    s: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut r = s.req(method, path, Some(token));
    if method == "PUT" {
        r = r.json(&body);
    }
    send(r).await
}

/// The datacenter's message, as the datacenters list shows it.
async fn dc_message(s: &TestServer, db: &str) -> String {
    let (st, dcs) = s
        .get(&format!("/v2/databases/{db}/datacenters"), &s.admin)
        .await;
    assert_eq!(st, 200, "{dcs}");
    dcs[0]["message"].as_str().unwrap().to_string()
}

/// The customer's choice of what an inaccessible key does: alert-only keeps the database
/// serving, with the reason in its message and one alert, for the chosen time after the key
/// first failed, then suspends it; the key comes back and so does the database. A key's own
/// choice overrides the organization's, and clearing it falls back. Bad choices are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_only_serves_for_the_chosen_time_then_suspends() {
    const CHOICES: &str = "/v2/kms/on-inaccessible";
    let s = TestServer::with_config(config()).await;
    let arn = register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "orders", 10).await;
    let kms = s.kms.customer("us-east-2");

    let (st, v) = s.get(CHOICES, &s.admin).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["organization"]["action"], "suspend", "{v}");
    assert_eq!(v["keys"], json!([]), "{v}");
    assert_eq!(v["maxAlertOnlySeconds"], 86400, "{v}");
    let ro = s.token(s.org, Role::ReadOnly).await;
    for (token, body, status) in [
        (&s.admin, json!({"action": "alert-only"}), 400),
        (
            &s.admin,
            json!({"action": "alert-only", "alertOnlySeconds": 86401}),
            400,
        ),
        (
            &s.admin,
            json!({"action": "alert-only", "alertOnlySeconds": 0}),
            400,
        ),
        (
            &s.admin,
            json!({"action": "suspend", "alertOnlySeconds": 5}),
            400,
        ),
        (&s.admin, json!({"action": "ignore"}), 400),
        (&s.admin, json!({"action": "suspend", "extra": 1}), 400),
        (&ro, json!({"action": "suspend"}), 403),
    ] {
        let (st, body) = choose(&s, token, "PUT", CHOICES, body).await;
        assert_eq!(st, status, "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
    }
    let (st, body) = choose(
        &s,
        &s.admin,
        "PUT",
        "/v2/kms/classic/provider/aws/region/us-west-2/on-inaccessible",
        json!({"action": "suspend"}),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    let (_, v) = s.get(CHOICES, &s.admin).await;
    assert_eq!(
        v["organization"]["action"], "suspend",
        "a refused choice changed it: {v}"
    );

    // Alert-only for 4 s: the key disabled, the database keeps serving with the reason.
    let (st, v) = choose(
        &s,
        &s.admin,
        "PUT",
        CHOICES,
        json!({"action": "alert-only", "alertOnlySeconds": 4}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["organization"]["alertOnlySeconds"], 4, "{v}");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = loop {
        let m = dc_message(&s, &db).await;
        if m.starts_with("alert-only:") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no alert on the datacenter: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(message.to_lowercase().contains("disabled"), "{message}");
    let (st, body) = count(&s.client, &s.url, &s.admin, &db).await;
    assert_eq!((st, &body["status"]["count"]), (200, &json!(10)), "{body}");
    let (_, dbv) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(dbv["status"], "ACTIVE", "{dbv}");
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["status"], "INACCESSIBLE", "{status}");
    // Past the 4 s: suspended, as with the default.
    let refused = until_refused(&s.client, &s.url, &s.admin, &db).await;
    assert!(
        refused.to_string().to_lowercase().contains("disabled"),
        "{refused}"
    );
    kms.enable_key().key_id(&arn).send().await.unwrap();
    assert_eq!(until_served(&s, &db).await, json!(10));
    assert_eq!(dc_message(&s, &db).await, "");

    // The key's own choice (suspend) overrides the organization's alert-only.
    let key_choice = format!("{KEY}/on-inaccessible");
    let (st, v) = choose(
        &s,
        &s.admin,
        "PUT",
        &key_choice,
        json!({"action": "suspend"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["keys"][0]["keyID"], arn.as_str(), "{v}");
    assert_eq!(v["keys"][0]["action"], "suspend", "{v}");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let started = Instant::now();
    until_refused(&s.client, &s.url, &s.admin, &db).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the key's suspend did not override the organization's alert-only"
    );
    kms.enable_key().key_id(&arn).send().await.unwrap();
    assert_eq!(until_served(&s, &db).await, json!(10));
    let (st, v) = choose(&s, &s.admin, "DELETE", &key_choice, json!(null)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["keys"], json!([]), "{v}");
    let (st, v) = choose(&s, &s.admin, "DELETE", CHOICES, json!(null)).await;
    assert_eq!(
        (st, &v["organization"]["action"]),
        (200, &json!("suspend")),
        "{v}"
    );

    // The audit log: each choice, one alert per failure, the suspensions and resumes.
    let entries = audit_entries(&s).await;
    let n = |action: &str, outcome: &str| count_of(&entries, action, outcome);
    assert_eq!(n("cmk.on_inaccessible", "success"), 4, "{entries:?}");
    assert_eq!(n("cmk.on_inaccessible", "denied"), 1, "{entries:?}");
    let alerts: Vec<&String> = entries
        .iter()
        .filter(|(a, _, _)| a == "cmk.alert")
        .map(|(_, _, r)| r)
        .collect();
    assert_eq!(alerts.len(), 4, "start and end of each failure: {alerts:?}");
    assert!(
        alerts.iter().any(|r| r.starts_with("alert-only:")),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().any(|r| r.ends_with("; suspended")),
        "{alerts:?}"
    );
    assert_eq!(
        alerts.iter().filter(|r| r.starts_with("resolved")).count(),
        2,
        "{alerts:?}"
    );
    assert_eq!(n("datacenter.suspend", "success"), 2, "{entries:?}");
}

/// The key's `lifecycle` from its status route.
async fn lifecycle(s: &TestServer) -> Value {
    let (st, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(st, 200, "{status}");
    status["lifecycle"].clone()
}

/// The region key's life state over real servers: ENABLED once registered, ENABLING while a
/// database is being deployed under it (this server's worker is idle, a second process
/// provisions), ENABLED with the database once it is ACTIVE, REVOKED with it after a revoke,
/// INACCESSIBLE while the KMS has the key disabled, ENABLED again after; each with the
/// databases it is about and a time that moves with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_region_key_state_follows_deployment_revocation_and_the_kms() {
    let idle = Config {
        worker_poll: Duration::from_secs(3600),
        ..config()
    };
    let s = TestServer::with_config(idle).await;
    let arn = register_key(&s, "us-east-2").await;
    let first = lifecycle(&s).await;
    assert_eq!(first["state"], "ENABLED", "{first}");
    assert_eq!(first["databases"], json!([]), "{first}");

    let db = create_db(&s, "orders", "us-east-2").await;
    let deploying = lifecycle(&s).await;
    assert_eq!(deploying["state"], "ENABLING", "{deploying}");
    assert_eq!(deploying["databases"], json!([db]), "{deploying}");
    assert!(deploying["since"].as_str() >= first["since"].as_str());

    let worker = s.replica(config()).await;
    wait_status(&s, &db, "ACTIVE").await;
    let enabled = lifecycle(&s).await;
    assert_eq!(enabled["state"], "ENABLED", "{enabled}");
    assert_eq!(enabled["databases"], json!([db]), "{enabled}");
    drop(worker);

    let (st, body) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["lifecycle"]["state"], "REVOKED", "{body}");
    assert_eq!(body["lifecycle"]["databases"], json!([db]), "{body}");
    let (st, body) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["lifecycle"]["state"], "ENABLED", "{body}");

    let kms = s.kms.customer("us-east-2");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let off = loop {
        let l = lifecycle(&s).await;
        if l["state"] == "INACCESSIBLE" {
            break l;
        }
        assert!(Instant::now() < deadline, "{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(off["databases"], json!([db]), "{off}");
    kms.enable_key().key_id(&arn).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = lifecycle(&s).await;
        if l["state"] == "ENABLED" {
            assert!(l["since"].as_str() >= off["since"].as_str(), "{l} {off}");
            break;
        }
        assert!(Instant::now() < deadline, "{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An AWS key's own rotation in its status: absent while its policy does not let the platform
/// read it (the status is not in error for that); once the customer grants
/// kms:GetKeyRotationStatus and turns rotation on, automatic with its period and next date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_keys_rotation_shows_in_its_status_where_its_policy_allows() {
    let s = TestServer::with_config(config()).await;
    let arn = register_key(&s, "us-east-2").await;
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert!(status["rotation"].is_null(), "{status}");
    assert!(status["factsError"].is_null(), "{status}");

    let mut policy = common::full_policy(s.org);
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "Let the platform read the key's rotation", "Effect": "Allow",
        "Principal": {"AWS": common::PLATFORM_ROLE}, "Action": "kms:GetKeyRotationStatus",
        "Resource": "*"}));
    let kms = s.kms.customer("us-east-2");
    kms.put_key_policy()
        .key_id(&arn)
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["rotation"]["automatic"], false, "{status}");
    kms.enable_key_rotation()
        .key_id(&arn)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let (_, status) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(status["rotation"]["automatic"], true, "{status}");
    assert_eq!(status["rotation"]["periodDays"], 90, "{status}");
    assert!(status["rotation"]["nextRotationAt"].is_string(), "{status}");
}
