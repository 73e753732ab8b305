//! What the data plane promises across regions and over time, against a real server (built-in
//! KMS, worker, monitor, HTTP): concurrent writes leave every region of a database with the
//! same documents; a plaintext data key leaves memory at its TTL with nothing touching it, and
//! the number of open files is capped; a key check that fails for one datacenter does not
//! stop the round for the others.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, create_db, register_key, send, wait_status};
use keyplane_app::Config;
use serde_json::{Value, json};

async fn server(config: Config) -> TestServer {
    TestServer::with_config(Config {
        kms_grace_period: Duration::from_secs(3600),
        worker_poll: Duration::from_millis(50),
        ..config
    })
    .await
}

/// A Data API command against a region's endpoint; 200 without errors is required.
async fn data(s: &TestServer, db: &str, region: &str, path: &str, cmd: Value) -> Value {
    let url = format!("/db/{db}-{region}/api/json/v1/shop{path}");
    let (st, body) = send(
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .json(&cmd),
    )
    .await;
    assert_eq!(st, 200, "{cmd} → {body}");
    assert!(body.get("errors").is_none(), "{cmd} → {body}");
    body
}

/// Every document of collection `c` in one region's file, read directly through the data
/// plane (not the Data API), by `_id`.
async fn region_docs(s: &TestServer, dc: &str) -> BTreeMap<String, Value> {
    let store = s.app.data.docstore(dc).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut out = BTreeMap::new();
        let mut q = keyplane_docstore::Query {
            filter: json!({}),
            page_size: Some(1000),
            ..Default::default()
        };
        loop {
            let page = store.find("shop", "c", &q).unwrap();
            for d in page.docs {
                out.insert(d["_id"].to_string(), d);
            }
            match page.next_page_state {
                Some(p) => q.page_state = Some(p),
                None => break,
            }
        }
        out
    })
    .await
    .unwrap()
}

const REGIONS: [&str; 2] = ["us-east-2", "eu-west-1"];
const WRITERS: usize = 8;
const ROUNDS: usize = 12;
const TIED: usize = 60;

/// One writer's commands, sent alternately to both regions' endpoints (so both regions are
/// the primary of some writes): `$set` on one shared document, `$inc` on a counter, and a
/// sorted `findOneAndUpdate` whose sort ties on every candidate. Returns the documents its
/// findOneAndUpdates claimed.
async fn writer(s: Arc<TestServer>, db: String, w: usize) -> Vec<String> {
    let mut claimed = vec![];
    for k in 0..ROUNDS {
        let region = REGIONS[(w + k) % 2];
        let tag = format!("w{w}-{k}");
        data(
            &s,
            &db,
            region,
            "/c",
            json!({"updateOne": {"filter": {"_id": "shared"}, "update": {"$set": {"last": tag, "by": w}}}}),
        )
        .await;
        data(
            &s,
            &db,
            region,
            "/c",
            json!({"updateOne": {"filter": {"_id": "counter"}, "update": {"$inc": {"n": 1}}}}),
        )
        .await;
        let body = data(
            &s,
            &db,
            region,
            "/c",
            json!({"findOneAndUpdate": {"filter": {"claimed": false}, "sort": {"prio": 1},
                    "update": {"$set": {"claimed": true, "by": tag}}, "options": {"returnDocument": "after"}}}),
        )
        .await;
        if let Some(id) = body["data"]["document"]["_id"].as_str() {
            claimed.push(id.to_string());
        }
    }
    claimed
}

/// 8 writers at once over HTTP on a two-region database, then both regions' files compared
/// document by document. Fails on the code before ordered writes (each write applied to the
/// regions one after the other, concurrently with the others): the shared document and the
/// claims end up different in the two regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_leave_every_region_with_the_same_documents() {
    let s = server(Config::default()).await;
    for r in REGIONS {
        register_key(&s, r).await;
    }
    let db = create_db(&s, "twin", REGIONS[0]).await;
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": REGIONS[1]}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    wait_status(&s, &db, "ACTIVE").await;
    data(
        &s,
        &db,
        REGIONS[0],
        "",
        json!({"createCollection": {"name": "c"}}),
    )
    .await;
    let mut docs = vec![
        json!({"_id": "shared", "last": "none"}),
        json!({"_id": "counter", "n": 0}),
    ];
    docs.extend((0..TIED).map(|i| json!({"_id": format!("t{i:03}"), "prio": 1, "claimed": false})));
    data(
        &s,
        &db,
        REGIONS[1],
        "/c",
        json!({"insertMany": {"documents": docs}}),
    )
    .await;

    let s = Arc::new(s);
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(s.clone(), db.clone(), w)))
        .collect();
    let mut claims = vec![];
    for h in handles {
        claims.extend(h.await.unwrap());
    }

    let a = region_docs(&s, &format!("{db}-1")).await;
    let b = region_docs(&s, &format!("{db}-2")).await;
    assert_eq!(a.len(), TIED + 2);
    let differ: Vec<_> = a
        .iter()
        .filter(|(id, doc)| b.get(*id) != Some(*doc))
        .map(|(id, doc)| format!("{id}: {doc} vs {:?}", b.get(id)))
        .collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "the regions differ in {} documents:\n{}",
        differ.len(),
        differ.join("\n")
    );
    // Every acknowledged $inc counted once, every claim a different document, recorded as
    // the claimer saw it.
    assert_eq!(a["\"counter\""]["n"], json!(WRITERS * ROUNDS));
    let mut unique = claims.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), claims.len(), "a document was claimed twice");
    assert_eq!(claims.len(), (WRITERS * ROUNDS).min(TIED));
    let claimed_in_file = a.values().filter(|d| d["claimed"] == json!(true)).count();
    assert_eq!(claimed_in_file, claims.len());
    // Ties are broken the same way for every writer: the claims took the first documents.
    let first: Vec<String> = (0..claims.len()).map(|i| format!("t{i:03}")).collect();
    assert_eq!(unique, first);
}

/// A data key gone at its TTL with nothing touching the database: the data plane's count of
/// held keys drops to zero (and `/metrics` says so), the file is closed, and the next access
/// needs a KMS Decrypt again.
#[tokio::test]
async fn a_data_key_leaves_memory_at_its_ttl_without_any_access() {
    let ttl = Duration::from_millis(1500);
    let s = server(Config {
        data_key_ttl: ttl,
        ..Default::default()
    })
    .await;
    register_key(&s, "us-east-2").await;
    let db = create_db(&s, "idle", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    data(
        &s,
        &db,
        "us-east-2",
        "",
        json!({"createCollection": {"name": "c"}}),
    )
    .await;
    data(
        &s,
        &db,
        "us-east-2",
        "/c",
        json!({"insertOne": {"document": {"_id": 1}}}),
    )
    .await;
    let unwraps = s.app.data.kms_calls();
    let opened = Instant::now();
    assert_eq!(s.app.data.held_data_keys(), 1);
    assert_eq!(s.app.data.open_files(), 1);
    // Within the TTL the key stays and serves without the KMS.
    data(
        &s,
        &db,
        "us-east-2",
        "/c",
        json!({"findOne": {"filter": {"_id": 1}}}),
    )
    .await;
    assert_eq!(s.app.data.kms_calls(), unwraps);
    // Then nothing touches it: gone within the TTL plus the reaper's period.
    let bound = ttl + s.app.data.reaper_period();
    let deadline = opened + bound + Duration::from_millis(500);
    while s.app.data.held_data_keys() > 0 {
        assert!(
            Instant::now() < deadline,
            "a data key is still in memory {:?} after it was unwrapped (TTL {ttl:?})",
            opened.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone_after = opened.elapsed();
    assert!(
        gone_after >= ttl.saturating_sub(Duration::from_millis(200)),
        "dropped early: {gone_after:?}"
    );
    assert_eq!(s.app.data.open_files(), 0);
    let metrics = s
        .req("GET", "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nkeyplane_data_keys_held 0\n"),
        "{metrics}"
    );
    assert_eq!(s.app.data.kms_calls(), unwraps, "no access meanwhile");
    // The next access asks the KMS again.
    data(
        &s,
        &db,
        "us-east-2",
        "/c",
        json!({"findOne": {"filter": {"_id": 1}}}),
    )
    .await;
    assert_eq!(s.app.data.kms_calls(), unwraps + 1);
    assert_eq!(s.app.data.held_data_keys(), 1);
}

/// With at most two files open, reading a third database closes the least recently used one
/// (and drops its key): reading that one again needs a KMS Decrypt, the other does not.
#[tokio::test]
async fn open_files_are_capped_least_recently_used_first() {
    let s = server(Config {
        max_open_datacenters: 2,
        ..Default::default()
    })
    .await;
    register_key(&s, "us-east-2").await;
    let mut dbs = vec![];
    for i in 0..3 {
        let db = create_db(&s, &format!("lru{i}"), "us-east-2").await;
        wait_status(&s, &db, "ACTIVE").await;
        dbs.push(db);
    }
    let find = json!({"findCollections": {}});
    data(&s, &dbs[0], "us-east-2", "", find.clone()).await;
    data(&s, &dbs[1], "us-east-2", "", find.clone()).await;
    data(&s, &dbs[0], "us-east-2", "", find.clone()).await;
    let before = s.app.data.kms_calls();
    data(&s, &dbs[2], "us-east-2", "", find.clone()).await;
    assert_eq!(s.app.data.kms_calls(), before + 1);
    assert_eq!(s.app.data.open_files(), 2);
    assert_eq!(
        s.app.data.held_data_keys(),
        2,
        "the evicted file's key is gone"
    );
    // dbs[1] was the least recently used: evicted. dbs[0] is still open.
    data(&s, &dbs[0], "us-east-2", "", find.clone()).await;
    assert_eq!(s.app.data.kms_calls(), before + 1);
    data(&s, &dbs[1], "us-east-2", "", find.clone()).await;
    assert_eq!(s.app.data.kms_calls(), before + 2);
    assert_eq!(s.app.data.open_files(), 2);
}

/// A check whose result cannot be recorded (the store refuses to update that one datacenter)
/// is counted and logged, and the round still suspends every other datacenter whose key was
/// disabled. Before, the round stopped at the first such error: the failing datacenter is the
/// first the round visits (the smallest id), so nothing else was suspended.
#[tokio::test]
async fn one_failing_check_does_not_abandon_the_round() {
    let s = server(Config {
        key_check_interval: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let regions = ["us-east-2", "eu-west-1", "us-west-2"];
    let mut keys = vec![];
    let mut dcs = vec![];
    for (i, r) in regions.iter().enumerate() {
        keys.push(register_key(&s, r).await);
        let db = create_db(&s, &format!("round{i}"), r).await;
        wait_status(&s, &db, "ACTIVE").await;
        dcs.push(format!("{db}-1"));
    }
    dcs.sort();
    // A real store failure on demand: a trigger in the store's SQLite file aborts any update of
    // the first datacenter (nothing else makes one datacenter's update fail and not others').
    let conn = rusqlite::Connection::open(&s.db_path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER refuse_first BEFORE UPDATE ON datacenters WHEN OLD.id = '{}'
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        dcs[0]
    ))
    .unwrap();
    for (r, key) in regions.iter().zip(&keys) {
        s.kms
            .customer(r)
            .disable_key()
            .key_id(key)
            .send()
            .await
            .unwrap();
    }
    let report = s.app.monitor().round().await.unwrap();
    assert_eq!(report.checked, 3, "{report:?}");
    assert_eq!(report.errors, 1, "{report:?}");
    assert!(
        report
            .first_error
            .as_ref()
            .is_some_and(|e| format!("{e:?}").contains("refused by the test")),
        "{report:?}"
    );
    assert_eq!(report.keys, 3, "one DescribeKey per key");
    for dc in &dcs[1..] {
        let d = s.store.get_datacenter(dc).await.unwrap().unwrap();
        assert_eq!(
            d.status,
            keyplane_core::DatabaseStatus::Suspended,
            "{dc}: {d:?}"
        );
    }
    // The refused one is served by nobody meanwhile (its key is dropped at once) and the next
    // round, with the store answering again, records it.
    conn.execute_batch("DROP TRIGGER refuse_first;").unwrap();
    let report = s.app.monitor().round().await.unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    let d = s.store.get_datacenter(&dcs[0]).await.unwrap().unwrap();
    assert_eq!(d.status, keyplane_core::DatabaseStatus::Suspended);
}
