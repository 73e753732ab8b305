//! Data-key rotation over real servers: keyplane on a port with its built-in KMS as the
//! customer's, the Data API used all along. A rotation re-encrypts the datacenter's file
//! under a new data key while readers and writers go on, the old data key no longer opens
//! it, a rotation a crash left pending is settled by the next open, and the schedule rotates
//! what is due on its own.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, create_db, register_key, replace, send, unregistered_key, wait_status};
use keyplane_app::Config;
use keyplane_docstore::{DocStore, DocStoreError};
use serde_json::{Value, json};

const KEY: &str = "/v2/kms/classic/provider/aws/region/us-east-2";

fn config() -> Config {
    Config {
        suspension_sync_interval: Duration::from_millis(100),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn data(s: &TestServer, db: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("{}/db/{db}-us-east-2/api/json/v1/shop{path}", s.url);
    send(s.client.post(url).header("Token", &s.admin).json(&cmd)).await
}

/// A customer-keyed database with `n` documents of 1 KB in collection `inv`.
async fn filled_db(s: &TestServer, name: &str, n: usize) -> String {
    let db = create_db(s, name, "us-east-2").await;
    wait_status(s, &db, "ACTIVE").await;
    let (st, body) = data(s, &db, "", json!({"createCollection": {"name": "inv"}})).await;
    assert_eq!(st, 200, "{body}");
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"_id": format!("d{i}"), "v": i, "pad": "x".repeat(1000)}))
            .collect();
        let (st, body) = data(s, &db, "/inv", json!({"insertMany": {"documents": docs}})).await;
        assert_eq!(st, 200, "{body}");
    }
    db
}

/// The collection's size (`countDocuments` stops at 1,000).
async fn count(s: &TestServer, db: &str) -> u64 {
    let (st, body) = data(s, db, "/inv", json!({"estimatedDocumentCount": {}})).await;
    assert_eq!(st, 200, "{body}");
    body["status"]["count"].as_u64().unwrap()
}

async fn rotate(s: &TestServer, db: &str, dc: &str) -> (u16, Value) {
    s.post(
        &format!("/v2/databases/{db}/datacenters/{dc}/rotate-data-key"),
        &s.admin,
        json!({}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_re_encrypts_the_file_while_readers_and_writers_go_on() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "ledger", 2000).await;
    let dc_id = format!("{db}-1");
    let before = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    let old_key = s.app.data.unwrap(&before).await.unwrap();
    let file = s.app.data.file(&dc_id);

    // Four writers and four readers for the whole rotation; every answer must be a success.
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::new(s);
    let mut tasks = vec![];
    for w in 0..8 {
        let (s, db, stop) = (s.clone(), db.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = vec![];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if w < 4 {
                    let id = format!("w{w}-{i}");
                    let (st, body) = data(
                        &s,
                        &db,
                        "/inv",
                        json!({"insertOne": {"document": {"_id": id}}}),
                    )
                    .await;
                    assert_eq!(st, 200, "{body}");
                    assert!(body.get("errors").is_none(), "{body}");
                    acked.push(id);
                } else {
                    let id = format!("d{}", (i * 37) % 2000);
                    let (st, body) =
                        data(&s, &db, "/inv", json!({"findOne": {"filter": {"_id": id}}})).await;
                    assert_eq!(st, 200, "{body}");
                    assert_eq!(body["data"]["document"]["_id"], json!(id), "{body}");
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, body) = rotate(&s, &db, &dc_id).await;
    assert_eq!(st, 200, "{body}");
    assert!(body["bytes"].as_u64().unwrap() > 2_000_000, "{body}");
    let enc = &body["datacenter"]["encryption"];
    assert!(enc["dataKeyRotatedAt"].is_string(), "{body}");
    assert!(enc["dataKeyRotation"].is_null(), "{body}");
    eprintln!(
        "rotation: {} bytes in {} ms, writes waited {} ms, reads {} ms",
        body["bytes"], body["tookMs"], body["writesPausedMs"], body["readsPausedMs"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = vec![];
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "only {} writes during the test",
        acked.len()
    );
    for id in &acked {
        let (st, body) = data(&s, &db, "/inv", json!({"findOne": {"filter": {"_id": id}}})).await;
        assert_eq!(
            (st, &body["data"]["document"]["_id"]),
            (200, &json!(id)),
            "{body}"
        );
    }
    assert_eq!(count(&s, &db).await, 2000 + acked.len() as u64);

    // A new data key of record; the old one opens the file no more, the new one does.
    let after = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_ne!(after.wrapped_data_key, before.wrapped_data_key);
    assert_eq!(after.pending_wrapped_data_key, None);
    assert!(after.data_key_rotated_at.is_some());
    assert!(matches!(
        DocStore::open(&file, &old_key),
        Err(DocStoreError::WrongKey)
    ));
    let new_key = s.app.data.unwrap(&after).await.unwrap();
    assert_ne!(new_key.expose_secret(), old_key.expose_secret());
    DocStore::open(&file, &new_key).unwrap();
    assert!(
        !s.app
            .data
            .file(&dc_id)
            .with_extension("db.rotating")
            .exists()
    );

    // A fresh process (nothing cached) unwraps the new key and reads everything.
    let other = s.replica(config()).await;
    let url = format!("{}/db/{db}-us-east-2/api/json/v1/shop/inv", other.url);
    let (st, body) = send(
        s.client
            .post(url)
            .header("Token", &s.admin)
            .json(&json!({"estimatedDocumentCount": {}})),
    )
    .await;
    assert_eq!(
        (st, &body["status"]["count"]),
        (200, &json!(2000 + acked.len())),
        "{body}"
    );
    other.stop().await;

    // Audited, with what it cost.
    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=50", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let rotations: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "datacenter.data_key.rotate")
        .collect();
    assert_eq!(rotations.len(), 1, "{page}");
    assert_eq!(rotations[0]["outcome"], "success");
    assert!(
        rotations[0]["reason"]
            .as_str()
            .unwrap()
            .contains("re-encrypted"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_are_refused_where_they_cannot_run_and_once_at_a_time() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "ledger", 3000).await;
    let dc_id = format!("{db}-1");

    // Unknown database, unknown datacenter, another organization's token.
    let (st, body) = rotate(&s, &uuid::Uuid::new_v4().to_string(), &dc_id).await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = rotate(&s, &db, "nope-9").await;
    assert_eq!(st, 404, "{body}");
    let reader = s.token(s.org, keyplane_core::Role::ReadOnly).await;
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters/{dc_id}/rotate-data-key"),
            &reader,
            json!({}),
        )
        .await;
    assert_eq!(st, 403, "{body}");

    // Eight at once: each either rotates or is told one is running; the data stays whole.
    let s = Arc::new(s);
    let mut tasks = vec![];
    for _ in 0..8 {
        let (s, db, dc) = (s.clone(), db.clone(), dc_id.clone());
        tasks.push(tokio::spawn(async move { rotate(&s, &db, &dc).await }));
    }
    let mut rotated = 0;
    for t in tasks {
        let (st, body) = t.await.unwrap();
        match st {
            200 => rotated += 1,
            409 => assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("being rotated already"),
                "{body}"
            ),
            _ => panic!("{st} {body}"),
        }
    }
    assert!(rotated >= 1);
    assert_eq!(count(&s, &db).await, 3000);
    let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_eq!(dc.pending_wrapped_data_key, None);

    // A datacenter that is not serving is not rotated: suspended by a revoke (refused with
    // the suspension's reason, the data key untouched), then terminated (gone).
    let (st, body) = s.post(&format!("{KEY}/revoke"), &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    wait_status(&s, &db, "SUSPENDED").await;
    let (st, body) = rotate(&s, &db, &dc_id).await;
    assert_eq!(st, 503, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("revoked by the customer"),
        "{body}"
    );
    let now = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_eq!(now.wrapped_data_key, dc.wrapped_data_key);
    assert_eq!(now.pending_wrapped_data_key, None);
    let (st, body) = s
        .post(&format!("{KEY}/unrevoke"), &s.admin, json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    wait_status(&s, &db, "ACTIVE").await;
    assert_eq!(count(&s, &db).await, 3000);
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/terminate"),
            &s.admin,
            json!({}),
        )
        .await;
    assert!(st == 202 || st == 200, "{st} {body}");
    wait_status(&s, &db, "TERMINATED").await;
    let (st, body) = rotate(&s, &db, &dc_id).await;
    assert_eq!(st, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_left_pending_is_settled_by_the_next_open() {
    let s = TestServer::with_config(config()).await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "ledger", 50).await;
    let dc_id = format!("{db}-1");
    let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    let record = dc.wrapped_data_key.clone().unwrap();
    let provider = s.app.data.key_provider(&dc).await.unwrap();
    let context = keyplane_app::dataplane::datacenter_context(&dc);
    let file = s.app.data.file(&dc_id);
    let copy = std::path::PathBuf::from(format!("{}.rotating", file.display()));

    // A crash mid-copy: the next key recorded, a partial copy on disk, the file untouched.
    let next = provider
        .generate_data_key_without_plaintext(&dc.key_id, &context)
        .await
        .unwrap();
    assert!(
        s.store
            .begin_data_key_rotation(&dc_id, &record, &next)
            .await
            .unwrap()
    );
    std::fs::write(&copy, b"the first pages of a copy").unwrap();
    let (st, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(st, 200);
    assert!(
        view["info"]["datacenters"][0]["encryption"]["dataKeyRotation"].is_object(),
        "{view}"
    );
    let (st, key) = s.get(&format!("{KEY}/status"), &s.admin).await;
    assert_eq!(st, 200, "{key}");
    assert_eq!(key["lifecycle"]["state"], "ROTATING", "{key}");
    assert_eq!(key["lifecycle"]["databases"], json!([db]), "{key}");
    // Meanwhile its data key is not moved to a replacement key (the pending one is wrapped
    // under the key of record).
    let b = unregistered_key(&s).await;
    let (st, body) = replace(&s, &s.admin, &b, "us-east-2").await;
    assert_eq!(st, 200, "{body}");
    let rewrap = format!("/v2/databases/{db}/datacenters/{dc_id}/rewrap");
    let (st, body) = s.post(&rewrap, &s.admin, json!({})).await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("being rotated"),
        "{body}"
    );
    // The process forgets what it had open (as a restart would), then reads.
    s.app.data.forget(&dc_id).await;
    assert_eq!(count(&s, &db).await, 50);
    let now = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_eq!(now.wrapped_data_key, Some(record.clone()));
    assert_eq!(now.pending_wrapped_data_key, None);
    assert!(!copy.exists(), "the partial copy is removed");

    // A crash after the copy was put in place: the file is under the pending key.
    let next = provider
        .generate_data_key_without_plaintext(&dc.key_id, &context)
        .await
        .unwrap();
    let next_key = keyplane_docstore::DataKey::from_slice(
        &provider.decrypt(&dc.key_id, &next, &context).await.unwrap(),
    )
    .unwrap();
    let current = s.app.data.unwrap(&now).await.unwrap();
    assert!(
        s.store
            .begin_data_key_rotation(&dc_id, &record, &next)
            .await
            .unwrap()
    );
    s.app.data.forget(&dc_id).await;
    let made = DocStore::export_rekeyed(&file, &current, &copy, &next_key).unwrap();
    made.release_source().unwrap();
    std::fs::rename(&copy, &file).unwrap();
    assert_eq!(count(&s, &db).await, 50);
    let now = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert_eq!(now.wrapped_data_key, Some(next));
    assert_eq!(now.pending_wrapped_data_key, None);
    assert!(now.data_key_rotated_at.is_some());
    assert!(matches!(
        DocStore::open(&file, &current),
        Err(DocStoreError::WrongKey)
    ));
    // Settled, it moves to the replacement key.
    let (st, body) = s.post(&rewrap, &s.admin, json!({})).await;
    assert_eq!(
        (st, &body["encryption"]["keyID"]),
        (200, &json!(b)),
        "{body}"
    );
    assert_eq!(count(&s, &db).await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schedule_rotates_what_is_due_on_its_own() {
    let s = TestServer::with_config(Config {
        data_key_rotation: Duration::from_secs(2),
        ..config()
    })
    .await;
    register_key(&s, "us-east-2").await;
    let db = filled_db(&s, "ledger", 20).await;
    let dc_id = format!("{db}-1");
    let first = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![first.wrapped_data_key.clone()];
    // Two rotations by the schedule, each once the interval passed.
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the schedule rotated {} times",
            seen.len() - 1
        );
        let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
        if seen.last() != Some(&dc.wrapped_data_key) && dc.pending_wrapped_data_key.is_none() {
            seen.push(dc.wrapped_data_key.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&s, &db).await, 20);
    let (st, page) = s
        .get(
            &format!("/v2/organizations/{}/audit?limit=50", s.org),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200);
    let by_schedule = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "datacenter.data_key.rotate"
                && e["actor"] == "system:data-key-rotation"
                && e["outcome"] == "success"
        })
        .count();
    assert!(by_schedule >= 2, "{page}");
}
