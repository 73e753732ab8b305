//! Databases encrypted with the customer's key, over real servers: keyplane, its built-in
//! KMS as the customer's KMS, the worker and the key health monitor.
mod common;

use std::time::{Duration, Instant};

use common::{
    PLATFORM_ROLE, TestServer, assert_error, create_db, full_policy, register_key, send,
    wait_status,
};
use keyplane_app::Config;
use serde_json::{Value, json};

fn customer_only_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]})
}

/// A server whose monitor runs often, so tests see suspension within a second or two.
async fn server(grace: Duration) -> TestServer {
    let config = Config {
        key_check_interval: Duration::from_millis(300),
        kms_grace_period: grace,
        data_key_ttl: Duration::from_secs(300),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    };
    TestServer::with_config(config).await
}

/// A Data API command against a datacenter's endpoint.
async fn data(s: &TestServer, db: &str, region: &str, path: &str, cmd: Value) -> (u16, Value) {
    let url = format!("/db/{db}-{region}/api/json/v1/shop{path}");
    send(
        s.req("POST", &url, None)
            .header("Token", &s.admin)
            .json(&cmd),
    )
    .await
}

fn file_of(s: &TestServer, dc: &str) -> std::path::PathBuf {
    s.data_dir.join("datacenters").join(format!("{dc}.db"))
}

#[tokio::test]
async fn the_seed_promise_end_to_end() {
    let s = server(Duration::from_secs(3600)).await;
    let arn = register_key(&s, "us-east-2").await;
    let db = create_db(&s, "orders", "us-east-2").await;
    let view = wait_status(&s, &db, "ACTIVE").await;
    let dc = &view["info"]["datacenters"][0];
    assert_eq!(dc["encryption"]["keyType"], "customer");
    assert_eq!(dc["encryption"]["keyID"], arn.as_str());
    assert_eq!(view["customerKeyed"], true);
    let (_, status) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            &s.admin,
        )
        .await;
    assert_eq!(status["status"], "IN_USE");

    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "",
        json!({"createCollection": {"name": "orders"}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"_id": format!("o{i}"), "item": "secret-widget-text", "n": i}))
        .collect();
    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "/orders",
        json!({"insertMany": {"documents": docs}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"]["insertedIds"].as_array().unwrap().len(), 20);
    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "/orders",
        json!({"findOne": {"filter": {"_id": "o7"}}}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["data"]["document"]["n"], 7);

    // At rest: no SQLite header, no document text, no data-key bytes.
    let dc_id = dc["id"].as_str().unwrap();
    let bytes = std::fs::read(file_of(&s, dc_id)).unwrap();
    assert!(
        !bytes.starts_with(b"SQLite format 3"),
        "the file is encrypted"
    );
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains("secret-widget-text"));
    let stored = s.store.get_datacenter(dc_id).await.unwrap().unwrap();
    let wrapped = stored.wrapped_data_key.clone().unwrap();
    let platform = s.kms.client_as(PLATFORM_ROLE, "us-east-2");
    let plain = platform
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
        .set_encryption_context(Some(
            keyplane_app::dataplane::datacenter_context(&stored)
                .into_iter()
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    let key = plain.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(key.len(), 32);
    assert!(
        !bytes.windows(32).any(|w| w == key.as_slice()),
        "raw data key in the file"
    );
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !hay.to_lowercase().contains(&hex),
        "hex data key in the file"
    );

    // Disable the key: within the interval the database is SUSPENDED and data access is 503.
    let kms = s.kms.customer("us-east-2");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    let view = wait_status(&s, &db, "SUSPENDED").await;
    assert!(view["message"].as_str().unwrap().contains(&arn), "{view}");
    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "/orders",
        json!({"findOne": {"filter": {"_id": "o1"}}}),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains(&arn) && msg.contains("disabled"), "{msg}");
    let (st, _) = data(
        &s,
        &db,
        "us-east-2",
        "/orders",
        json!({"insertOne": {"document": {"x": 1}}}),
    )
    .await;
    assert_eq!(st, 503);
    let (_, status) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/status",
            &s.admin,
        )
        .await;
    assert_eq!(status["status"], "INACCESSIBLE");
    assert!(status["reason"].as_str().unwrap().contains("disabled"));

    // Enable it: ACTIVE again by itself, every acknowledged document there.
    kms.enable_key().key_id(&arn).send().await.unwrap();
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "/orders",
        json!({"countDocuments": {}}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"]["count"], 20);
}

#[tokio::test]
async fn a_policy_that_drops_the_platform_role_suspends_until_restored() {
    let s = server(Duration::from_secs(3600)).await;
    let arn = register_key(&s, "us-east-2").await;
    let db = create_db(&s, "billing", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    data(
        &s,
        &db,
        "us-east-2",
        "",
        json!({"createCollection": {"name": "inv"}}),
    )
    .await;
    let (st, _) = data(
        &s,
        &db,
        "us-east-2",
        "/inv",
        json!({"insertOne": {"document": {"_id": "a", "v": 1}}}),
    )
    .await;
    assert_eq!(st, 200);

    let kms = s.kms.customer("us-east-2");
    kms.put_key_policy()
        .key_id(&arn)
        .policy(customer_only_policy().to_string())
        .send()
        .await
        .unwrap();
    let view = wait_status(&s, &db, "SUSPENDED").await;
    assert!(
        view["message"].as_str().unwrap().contains("key policy"),
        "{view}"
    );
    let (st, _) = data(
        &s,
        &db,
        "us-east-2",
        "/inv",
        json!({"findOne": {"filter": {"_id": "a"}}}),
    )
    .await;
    assert_eq!(st, 503);

    kms.put_key_policy()
        .key_id(&arn)
        .policy(full_policy(s.org).to_string())
        .send()
        .await
        .unwrap();
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = data(
        &s,
        &db,
        "us-east-2",
        "/inv",
        json!({"findOne": {"filter": {"_id": "a"}}}),
    )
    .await;
    assert_eq!((st, &body["data"]["document"]["v"]), (200, &json!(1)));
}

#[tokio::test]
async fn bindings_are_fixed_at_deployment() {
    let s = server(Duration::from_secs(3600)).await;
    // No key in us-east-2: platform-managed.
    let early = create_db(&s, "early", "us-east-2").await;
    let view = wait_status(&s, &early, "ACTIVE").await;
    assert_eq!(
        view["info"]["datacenters"][0]["encryption"]["keyType"],
        "platform-managed"
    );
    assert_eq!(view["customerKeyed"], false);
    // A key registered afterwards changes nothing for it...
    let arn = register_key(&s, "us-east-2").await;
    let view = wait_status(&s, &early, "ACTIVE").await;
    assert_eq!(
        view["info"]["datacenters"][0]["encryption"]["keyType"],
        "platform-managed"
    );
    // ...but a database deployed now uses it.
    let later = create_db(&s, "later", "us-east-2").await;
    let view = wait_status(&s, &later, "ACTIVE").await;
    assert_eq!(
        view["info"]["datacenters"][0]["encryption"]["keyID"],
        arn.as_str()
    );

    // Adding a region without a key to a customer-keyed database is refused, naming it.
    let add = json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]);
    let (st, body) = s
        .post(
            &format!("/v2/databases/{later}/datacenters"),
            &s.admin,
            add.clone(),
        )
        .await;
    let msg = assert_error(st, &body, 422, 4220);
    assert!(
        msg.contains("eu-west-1") && msg.contains("POST /v2/kms/classic"),
        "{msg}"
    );
    // With a key there it succeeds, and that region is encrypted under its own key.
    let eu = register_key(&s, "eu-west-1").await;
    let (st, body) = s
        .post(&format!("/v2/databases/{later}/datacenters"), &s.admin, add)
        .await;
    assert_eq!(st, 201, "{body}");
    let view = wait_status(&s, &later, "ACTIVE").await;
    let dcs = view["info"]["datacenters"].as_array().unwrap();
    assert_eq!(dcs.len(), 2, "{view}");
    assert_eq!(dcs[1]["region"], "eu-west-1");
    assert_eq!(dcs[1]["encryption"]["keyID"], eu.as_str());
    assert_eq!(dcs[1]["status"], "ACTIVE");
    // A platform-managed database may add a region without a customer key.
    let (st, body) = s
        .post(
            &format!("/v2/databases/{early}/datacenters"),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": "us-west-2"}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

#[tokio::test]
async fn multi_region_writes_reach_every_region() {
    let s = server(Duration::from_secs(3600)).await;
    register_key(&s, "us-east-2").await;
    register_key(&s, "eu-west-1").await;
    let db = create_db(&s, "global", "us-east-2").await;
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
        json!({"insertOne": {"document": {"_id": "before", "v": 1}}}),
    )
    .await;
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    // No region can be added or removed during MAINTENANCE.
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": "us-west-2"}]),
        )
        .await;
    if st != 201 {
        assert_error(st, &body, 409, 4090);
    }
    wait_status(&s, &db, "ACTIVE").await;
    let (st, _) = data(
        &s,
        &db,
        "us-east-2",
        "/c",
        json!({"insertOne": {"document": {"_id": "after", "v": 2}}}),
    )
    .await;
    assert_eq!(st, 200);
    for id in ["before", "after"] {
        let (st, body) = data(
            &s,
            &db,
            "eu-west-1",
            "/c",
            json!({"findOne": {"filter": {"_id": id}}}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        assert!(
            body["data"]["document"].is_object(),
            "{id} in eu-west-1: {body}"
        );
    }
}

#[tokio::test]
async fn a_kms_outage_shorter_than_the_grace_period_suspends_nothing() {
    let mut s = server(Duration::from_secs(3600)).await;
    register_key(&s, "us-east-2").await;
    let db = create_db(&s, "steady", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    s.kms.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.app.monitor().check_all().await.unwrap();
    let view = wait_status(&s, &db, "ACTIVE").await;
    assert_eq!(view["info"]["datacenters"][0]["status"], "ACTIVE");
    let dc = s
        .store
        .get_datacenter(&format!("{db}-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(dc.kms_failing_since.is_some(), "the outage is being timed");
}

#[tokio::test]
async fn a_kms_outage_longer_than_the_grace_period_suspends() {
    let mut s = server(Duration::from_secs(1)).await;
    register_key(&s, "us-east-2").await;
    let db = create_db(&s, "fragile", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    s.kms.stop();
    let view = wait_status(&s, &db, "SUSPENDED").await;
    assert!(
        view["message"].as_str().unwrap().contains("not answered"),
        "{view}"
    );
}

#[tokio::test]
async fn deleting_the_key_shreds_the_data_and_terminating_forgets_everything() {
    let s = server(Duration::from_secs(3600)).await;
    let arn = register_key(&s, "us-east-2").await;
    let db = create_db(&s, "doomed", "us-east-2").await;
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
        json!({"insertOne": {"document": {"_id": "x", "secret": "shred-me"}}}),
    )
    .await;
    let dc_id = format!("{db}-1");
    let wrapped = s
        .store
        .get_datacenter(&dc_id)
        .await
        .unwrap()
        .unwrap()
        .wrapped_data_key
        .unwrap();

    let kms = s.kms.customer("us-east-2");
    kms.schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let view = wait_status(&s, &db, "SUSPENDED").await;
    assert!(
        view["message"]
            .as_str()
            .unwrap()
            .contains("scheduled for deletion")
    );
    // The deletion date passes: the key is gone for good.
    let admin = reqwest::Client::new();
    let res = admin
        .post(format!("{}/_admin/clock/advance", s.kms.endpoint))
        .header("x-keyplane-admin-token", s.kms.kms.admin_token())
        .json(&json!({"seconds": 8 * 86400}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let platform = s.kms.client_as(PLATFORM_ROLE, "us-east-2");
    let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    let err = platform
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
        .set_encryption_context(Some(
            keyplane_app::dataplane::datacenter_context(&dc)
                .into_iter()
                .collect(),
        ))
        .send()
        .await;
    assert!(
        err.is_err(),
        "the wrapped data key can no longer be unwrapped"
    );
    let (st, _) = data(
        &s,
        &db,
        "us-east-2",
        "/c",
        json!({"findOne": {"filter": {"_id": "x"}}}),
    )
    .await;
    assert_eq!(st, 503);

    // Terminating deletes the files and forgets the wrapped key.
    let (st, _) = send(s.req(
        "POST",
        &format!("/v2/databases/{db}/terminate"),
        Some(&s.admin),
    ))
    .await;
    assert_eq!(st, 202);
    wait_status(&s, &db, "TERMINATED").await;
    assert!(!file_of(&s, &dc_id).exists());
    let dc = s.store.get_datacenter(&dc_id).await.unwrap().unwrap();
    assert!(dc.wrapped_data_key.is_none());
    // Nothing under the data dir holds the document's text.
    for entry in walk(&s.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("shred-me"),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn database_api_validation_and_listing() {
    let s = server(Duration::from_secs(3600)).await;
    let bad = [
        (
            json!({"name": "1x", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}),
            "name",
        ),
        (
            json!({"name": "ok", "keyspace": "k-s", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}),
            "keyspace",
        ),
        (
            json!({"name": "ok", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C99", "region": "us-east-2"}),
            "tier",
        ),
        (
            json!({"name": "ok", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10", "capacityUnits": 13, "region": "us-east-2"}),
            "capacityUnits",
        ),
        (
            json!({"name": "ok", "keyspace": "ks", "cloudProvider": "IBM", "tier": "C10", "region": "us-east-2"}),
            "cloudProvider",
        ),
    ];
    for (body, field) in bad {
        let (st, resp) = s.post("/v2/databases", &s.admin, body).await;
        let msg = assert_error(st, &resp, 400, 1000);
        assert!(msg.contains(field), "{field}: {msg}");
    }
    let (st, resp) = s
        .post("/v2/databases", &s.admin, json!({"name": "ok", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10", "region": "mars-1"}))
        .await;
    assert_error(st, &resp, 404, 4002);
    let a = create_db(&s, "a", "us-east-2").await;
    let b = create_db(&s, "b", "us-east-2").await;
    // Two creations can share a millisecond, and ties are ordered by ID: page through what
    // the full listing says the order is.
    let (_, all) = s.get("/v2/databases", &s.admin).await;
    let order: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort_by_key(|id| order.iter().position(|o| o == id));
    assert_eq!(order, expected, "both listed");
    let (st, page) = s.get("/v2/databases?limit=1", &s.admin).await;
    assert_eq!(st, 200);
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], order[0]);
    let (_, page2) = s
        .get(
            &format!("/v2/databases?limit=1&starting_after={}", order[0]),
            &s.admin,
        )
        .await;
    assert_eq!(page2.as_array().unwrap().len(), 1);
    assert_eq!(page2[0]["id"], order[1]);
    let (_, page3) = s
        .get(
            &format!("/v2/databases?limit=1&starting_after={}", order[1]),
            &s.admin,
        )
        .await;
    assert_eq!(page3.as_array().unwrap().len(), 0);
    let ro = s.token(s.org, keyplane_core::Role::ReadOnly).await;
    let (st, resp) = s
        .post("/v2/databases", &ro, json!({"name": "ok", "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10", "region": "us-east-2"}))
        .await;
    assert_error(st, &resp, 403, 3000);
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_admin = s.token(other.id, keyplane_core::Role::OrgAdmin).await;
    let (st, resp) = s.get(&format!("/v2/databases/{a}"), &other_admin).await;
    assert_error(st, &resp, 404, 4000);
}

/// The monitor asks DescribeKey once per key per round: its answer must still reach every
/// datacenter under that key, both ways.
#[tokio::test]
async fn every_database_under_one_key_follows_it() {
    let s = server(Duration::from_secs(3600)).await;
    let arn = register_key(&s, "us-east-2").await;
    let one = create_db(&s, "one", "us-east-2").await;
    let two = create_db(&s, "two", "us-east-2").await;
    wait_status(&s, &one, "ACTIVE").await;
    wait_status(&s, &two, "ACTIVE").await;
    let kms = s.kms.customer("us-east-2");
    kms.disable_key().key_id(&arn).send().await.unwrap();
    for db in [&one, &two] {
        let view = wait_status(&s, db, "SUSPENDED").await;
        assert!(
            view["message"].as_str().unwrap().contains("disabled"),
            "{view}"
        );
    }
    kms.enable_key().key_id(&arn).send().await.unwrap();
    wait_status(&s, &one, "ACTIVE").await;
    wait_status(&s, &two, "ACTIVE").await;
}

/// `POST …/check` checks a key now, as the monitor would: with the monitor an hour away, a
/// disabled key suspends its organization's databases on that request, and another
/// organization's database under a key of the same region is not touched.
#[tokio::test]
async fn a_key_check_acts_at_once_on_that_keys_databases_only() {
    // The monitor would take an hour: only the check can explain what follows.
    let slow = Config {
        key_check_interval: Duration::from_secs(3600),
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let s = TestServer::with_config(slow).await;
    let check = "/v2/kms/classic/provider/aws/region/us-east-2/check";
    // A key no database uses yet: checked as the platform.
    let arn = register_key(&s, "us-east-2").await;
    let (st, body) = s.post(check, &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "AVAILABLE", "{body}");

    let db = create_db(&s, "checked", "us-east-2").await;
    wait_status(&s, &db, "ACTIVE").await;
    // Another organization with its own key in the same region and a database on it.
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_token = s.token(other.id, keyplane_core::Role::OrgAdmin).await;
    let kms = s.kms.customer("us-east-2");
    let other_arn = kms
        .create_key()
        .policy(full_policy(other.id).to_string())
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &other_token,
            json!({"orgId": other.id, "aws": {"keyID": other_arn, "region": "us-east-2"}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let res = s
        .req("POST", "/v2/databases", Some(&other_token))
        .json(&json!({"name": "theirs", "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10", "capacityUnits": 1, "region": "us-east-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let theirs = res.headers()["location"].to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = s
            .get(&format!("/v2/databases/{theirs}"), &other_token)
            .await;
        if body["status"] == "ACTIVE" {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    kms.disable_key().key_id(&arn).send().await.unwrap();
    let (st, body) = s.post(check, &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "INACCESSIBLE", "{body}");
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(
        view["status"], "SUSPENDED",
        "suspended by the check itself: {view}"
    );
    assert!(view["message"].as_str().unwrap().contains(&arn), "{view}");
    let (_, view) = s
        .get(&format!("/v2/databases/{theirs}"), &other_token)
        .await;
    assert_eq!(
        view["status"], "ACTIVE",
        "another organization's database is not touched: {view}"
    );

    kms.enable_key().key_id(&arn).send().await.unwrap();
    let (st, body) = s.post(check, &s.admin, json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "IN_USE", "{body}");
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(view["status"], "ACTIVE", "{view}");
}

async fn add_region(s: &TestServer, db: &str, region: &str) -> (u16, Value) {
    s.post(
        &format!("/v2/databases/{db}/datacenters"),
        &s.admin,
        json!([{"tier": "C10", "cloudProvider": "AWS", "region": region}]),
    )
    .await
}

async fn terminate_dc(s: &TestServer, db: &str, dc: &str) -> (u16, Value) {
    send(s.req(
        "POST",
        &format!("/v2/databases/{db}/datacenters/{dc}/terminate"),
        Some(&s.admin),
    ))
    .await
}

/// The database's datacenters as (id, region, status).
async fn datacenters(s: &TestServer, db: &str) -> Vec<(String, String, String)> {
    let (st, body) = s
        .get(&format!("/v2/databases/{db}/datacenters"), &s.admin)
        .await;
    assert_eq!(st, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["region"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// An ACTIVE customer-keyed database in `regions`, each added through the API.
async fn multi_region_db(s: &TestServer, name: &str, regions: &[&str]) -> String {
    let db = create_db(s, name, regions[0]).await;
    wait_status(s, &db, "ACTIVE").await;
    for r in &regions[1..] {
        let (st, body) = add_region(s, &db, r).await;
        assert_eq!(st, 201, "{body}");
        wait_status(s, &db, "ACTIVE").await;
    }
    db
}

#[tokio::test]
async fn concurrent_datacenter_terminations_leave_a_region() {
    let s = server(Duration::from_secs(3600)).await;
    for r in ["us-east-2", "eu-west-1", "us-west-2"] {
        register_key(&s, r).await;
    }
    let db = multi_region_db(&s, "tri", &["us-east-2", "eu-west-1", "us-west-2"]).await;
    let ids: Vec<String> = datacenters(&s, &db)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids.len(), 3);
    // Rounds of 8 concurrent requests over the three regions, until none can pass.
    for _round in 0..4 {
        let requests: Vec<_> = (0..8).map(|n| terminate_dc(&s, &db, &ids[n % 3])).collect();
        for (st, body) in futures_join_all(requests).await {
            match st {
                202 => {}
                _ => {
                    let msg = assert_error(st, &body, 409, 4090);
                    assert!(
                        msg.contains("MAINTENANCE") || msg.contains("last region"),
                        "{msg}"
                    );
                }
            }
        }
        wait_status(&s, &db, "ACTIVE").await;
    }
    let left: Vec<_> = datacenters(&s, &db)
        .await
        .into_iter()
        .filter(|(_, _, status)| status != "TERMINATED")
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, "ACTIVE");
    // The survivor still serves, and a last termination is refused.
    let (st, body) = data(&s, &db, &left[0].1, "", json!({"findCollections": {}})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = terminate_dc(&s, &db, &left[0].0).await;
    assert!(assert_error(st, &body, 409, 4090).contains("last region"));
}

#[tokio::test]
async fn adding_and_removing_a_region_at_once_never_both_pass() {
    let s = server(Duration::from_secs(3600)).await;
    for r in ["us-east-2", "eu-west-1", "us-west-2"] {
        register_key(&s, r).await;
    }
    for n in 0..3 {
        let db = multi_region_db(&s, &format!("pair{n}"), &["us-east-2", "eu-west-1"]).await;
        let dcs = datacenters(&s, &db).await;
        let (added, removed) = tokio::join!(
            add_region(&s, &db, "us-west-2"),
            terminate_dc(&s, &db, &dcs[n % 2].0)
        );
        let passes = usize::from(added.0 == 201) + usize::from(removed.0 == 202);
        assert_eq!(passes, 1, "add {added:?}, terminate {removed:?}");
        for (st, body) in [&added, &removed] {
            if *st >= 400 {
                assert!(assert_error(*st, body, 409, 4090).contains("MAINTENANCE"));
            }
        }
        // While that change runs the database is in MAINTENANCE and refuses both.
        let (st, body) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        assert_eq!(st, 200);
        if body["status"] == "MAINTENANCE" {
            let other = dcs[(n + 1) % 2].0.clone();
            let (a, t) = tokio::join!(
                add_region(&s, &db, "us-west-2"),
                terminate_dc(&s, &db, &other)
            );
            let after = s.get(&format!("/v2/databases/{db}"), &s.admin).await.1;
            if after["status"] == "MAINTENANCE" {
                assert_error(a.0, &a.1, 409, 4090);
                assert_error(t.0, &t.1, 409, 4090);
            }
        }
        wait_status(&s, &db, "ACTIVE").await;
    }
}

async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Poll them together: every request is in flight before the first answer is read.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.extend(r);
    }
    out
}
