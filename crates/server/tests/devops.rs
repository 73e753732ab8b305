//! The DevOps API routes real clients call (region listings, keyspaces), its lenient request
//! bodies, `lastUsageTime`, the `include=<status>` filter and the OpenAPI document's truth,
//! over a real server, its built-in KMS and its worker.
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{TestServer, assert_error, register_key, send, wait_status};
use keyplane_app::Config;
use keyplane_core::{Provider, Role};
use serde_json::{Value, json};

async fn server() -> TestServer {
    TestServer::with_config(Config {
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    })
    .await
}

/// A platform-keyed serverless database in `region`, ACTIVE; its ID.
async fn serverless_db(s: &TestServer, name: &str, region: &str) -> String {
    let (st, body) = s
        .post(
            "/v2/databases",
            &s.admin,
            json!({"name": name, "cloudProvider": "AWS", "tier": "serverless", "region": region,
                   "dbType": "vector"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_status(s, &id, "ACTIVE").await;
    id
}

async fn add_region(s: &TestServer, db: &str, region: &str) {
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "serverless", "cloudProvider": "AWS", "region": region}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    wait_status(s, db, "ACTIVE").await;
}

async fn keyspace(s: &TestServer, method: &str, db: &str, name: &str, token: &str) -> (u16, Value) {
    send(s.req(
        method,
        &format!("/v2/databases/{db}/keyspaces/{name}"),
        Some(token),
    ))
    .await
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// The keyspaces each live region's own store holds (the Data API's findKeyspaces there).
async fn keyspaces_in_every_region(s: &TestServer, db: &str) -> Vec<BTreeSet<String>> {
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    let mut out = Vec::new();
    for dc in view["info"]["datacenters"].as_array().unwrap() {
        if dc["status"] == "TERMINATED" {
            continue;
        }
        let region = dc["region"].as_str().unwrap();
        let (st, body) = send(
            s.req("POST", &format!("/db/{db}-{region}/api/json/v1"), None)
                .header("Token", &s.admin)
                .json(&json!({"findKeyspaces": {}})),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        out.push(strings(&body["status"]["keyspaces"]).into_iter().collect());
    }
    out
}

async fn listed_keyspaces(s: &TestServer, db: &str) -> Vec<String> {
    let (st, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(st, 200, "{view}");
    let all = strings(&view["info"]["keyspaces"]);
    assert_eq!(view["info"]["keyspace"], all[0], "the first one: {view}");
    assert_eq!(
        strings(&view["info"]["additionalKeyspaces"]),
        all[1..].to_vec()
    );
    // The listing reads every database's keyspaces and regions at once: it answers the same.
    let (st, list) = s.get("/v2/databases?include=all", &s.admin).await;
    assert_eq!(st, 200, "{list}");
    let listed = list
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["id"] == db))
        .unwrap_or_else(|| panic!("{db} listed: {list}"));
    assert_eq!(listed["info"], view["info"], "listed as read alone");
    all
}

#[tokio::test]
async fn serverless_regions_list_the_catalog_in_the_originals_shape() {
    let s = server().await;
    let (st, body) = s.get("/v2/regions/serverless", &s.admin).await;
    assert_eq!(st, 200, "{body}");
    let regions = body.as_array().unwrap();
    let config = Config::default();
    let catalog: usize = Provider::ALL.iter().map(|p| config.regions(*p).len()).sum();
    assert_eq!(regions.len(), catalog, "every catalog region, once");
    let ohio = regions
        .iter()
        .find(|r| r["name"] == "us-east-2")
        .expect("us-east-2 is listed");
    // The original's ServerlessRegion: these members, these types.
    assert_eq!(
        ohio,
        &json!({"cloudProvider": "aws", "name": "us-east-2", "displayName": "US East (Ohio)",
                "zone": "na", "classification": "standard", "enabled": true,
                "reservedForQualifiedUsers": false, "region_type": "serverless"})
    );
    for r in regions {
        assert!(
            ["na", "emea", "apac", "sa"].contains(&r["zone"].as_str().unwrap()),
            "{r}"
        );
        assert!(["aws", "gcp", "azure"].contains(&r["cloudProvider"].as_str().unwrap()));
    }
    // region-type: vector, all (both), and anything else ignored as the original does.
    let (_, vector) = s
        .get("/v2/regions/serverless?region-type=vector", &s.admin)
        .await;
    assert_eq!(vector.as_array().unwrap().len(), catalog);
    assert!(
        vector
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["region_type"] == "vector")
    );
    let (_, all) = s
        .get("/v2/regions/serverless?region-type=all", &s.admin)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2 * catalog);
    let (st, other) = s
        .get("/v2/regions/serverless?region-type=nonsense", &s.admin)
        .await;
    assert_eq!(st, 200);
    assert_eq!(other, body);

    // The organization's unlocked regions: enabled says which; filter-by-org=enabled keeps
    // only them.
    s.store
        .set_unlocked_regions(s.org, Provider::Aws, Some(vec!["eu-west-1".into()]))
        .await
        .unwrap();
    let (_, locked) = s.get("/v2/regions/serverless", &s.admin).await;
    let enabled = |v: &Value, name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["enabled"].as_bool().unwrap())
    };
    assert_eq!(enabled(&locked, "us-east-2"), Some(false));
    assert_eq!(enabled(&locked, "eu-west-1"), Some(true));
    assert_eq!(
        enabled(&locked, "us-east1"),
        Some(true),
        "GCP is not locked"
    );
    let (_, mine) = s
        .get(
            "/v2/regions/serverless?filter-by-org=enabled&region-type=vector",
            &s.admin,
        )
        .await;
    let mine = mine.as_array().unwrap();
    assert!(mine.iter().all(|r| r["enabled"] == true));
    assert_eq!(enabled(&json!(mine), "us-east-2"), None);
    assert_eq!(
        mine.len(),
        catalog - config.regions(Provider::Aws).len() + 1
    );

    // Creating databases needs the listing; a reader may not list it.
    let reader = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = s.get("/v2/regions/serverless", &reader).await;
    assert_error(st, &body, 403, 3000);
    let (st, body) = send(s.req("GET", "/v2/regions/serverless", None)).await;
    assert_error(st, &body, 401, 2000);
}

#[tokio::test]
async fn available_regions_count_what_the_organization_deploys_where() {
    let s = server().await;
    // Two classic databases in us-east-2 (3 and 2 capacity units), one of them also in
    // eu-west-1; a serverless one in us-east-2.
    let mut ids = Vec::new();
    for (name, units) in [("a", 3), ("b", 2)] {
        let (st, body) = s
            .post(
                "/v2/databases",
                &s.admin,
                json!({"name": name, "keyspace": "ks", "cloudProvider": "AWS", "tier": "C10",
                       "capacityUnits": units, "region": "us-east-2"}),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    wait_status(&s, &ids[0], "ACTIVE").await;
    let (st, body) = s
        .post(
            &format!("/v2/databases/{}/datacenters", ids[0]),
            &s.admin,
            json!([{"tier": "C10", "cloudProvider": "AWS", "region": "eu-west-1"}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    serverless_db(&s, "c", "us-east-2").await;

    let (st, body) = s.get("/v2/availableRegions", &s.admin).await;
    assert_eq!(st, 200, "{body}");
    let combos = body.as_array().unwrap();
    let find = |tier: &str, cloud: &str, region: &str| {
        combos
            .iter()
            .find(|c| c["tier"] == tier && c["cloudProvider"] == cloud && c["region"] == region)
            .unwrap_or_else(|| panic!("no {tier} {cloud} {region} in {body}"))
    };
    let c10 = find("C10", "AWS", "us-east-2");
    assert_eq!(c10["databaseCountUsed"], 2, "{c10}");
    assert_eq!(c10["capacityUnitsUsed"], 5, "{c10}");
    assert_eq!(find("C10", "AWS", "eu-west-1")["databaseCountUsed"], 1);
    assert_eq!(find("C10", "AWS", "eu-west-1")["capacityUnitsUsed"], 3);
    assert_eq!(
        find("serverless", "AWS", "us-east-2")["databaseCountUsed"],
        1
    );
    assert_eq!(find("D40", "GCP", "us-east1")["databaseCountUsed"], 0);
    // The original's AvailableRegionCombination: every required member, with its type.
    for c in combos {
        for k in [
            "databaseCountUsed",
            "databaseCountLimit",
            "capacityUnitsUsed",
            "capacityUnitsLimit",
            "defaultStoragePerCapacityUnitGb",
        ] {
            assert!(c[k].is_u64(), "{k} of {c}");
        }
        assert!(c["cost"]["costPerHourCents"].is_f64(), "{c}");
        assert!(["AWS", "GCP", "AZURE"].contains(&c["cloudProvider"].as_str().unwrap()));
    }
    let config = Config::default();
    let regions: usize = Provider::ALL.iter().map(|p| config.regions(*p).len()).sum();
    assert_eq!(
        combos.len(),
        regions * 7,
        "six classic tiers and serverless"
    );

    // Locked regions are not available.
    s.store
        .set_unlocked_regions(s.org, Provider::Aws, Some(vec!["us-east-2".into()]))
        .await
        .unwrap();
    let (_, body) = s.get("/v2/availableRegions", &s.admin).await;
    let aws: BTreeSet<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cloudProvider"] == "AWS")
        .map(|c| c["region"].as_str().unwrap())
        .collect();
    assert_eq!(aws, BTreeSet::from(["us-east-2"]));
    let reader = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = s.get("/v2/availableRegions", &reader).await;
    assert_error(st, &body, 403, 3000);
}

#[tokio::test]
async fn keyspaces_are_added_and_removed_in_every_region() {
    let s = server().await;
    let db = serverless_db(&s, "ks", "us-east-2").await;
    add_region(&s, &db, "eu-west-1").await;
    assert_eq!(listed_keyspaces(&s, &db).await, ["default_keyspace"]);

    let (st, body) = keyspace(&s, "POST", &db, "sales", &s.admin).await;
    assert_eq!((st, &body), (201, &Value::Null));
    assert_eq!(
        listed_keyspaces(&s, &db).await,
        ["default_keyspace", "sales"]
    );
    let want: BTreeSet<String> = ["default_keyspace", "sales"].map(String::from).into();
    assert_eq!(
        keyspaces_in_every_region(&s, &db).await,
        vec![want.clone(), want]
    );
    // Usable at once in both regions: a collection made through one is in the other.
    let (st, body) = send(
        s.req(
            "POST",
            &format!("/db/{db}-eu-west-1/api/json/v1/sales"),
            None,
        )
        .header("Token", &s.admin)
        .json(&json!({"createCollection": {"name": "orders"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (_, body) = send(
        s.req(
            "POST",
            &format!("/db/{db}-us-east-2/api/json/v1/sales"),
            None,
        )
        .header("Token", &s.admin)
        .json(&json!({"findCollections": {}})),
    )
    .await;
    assert_eq!(strings(&body["status"]["collections"]), ["orders"]);

    // Adding it again succeeds and changes nothing, as the original; so does the initial one.
    let (st, _) = keyspace(&s, "POST", &db, "sales", &s.admin).await;
    assert_eq!(st, 201);
    let (st, _) = keyspace(&s, "POST", &db, "default_keyspace", &s.admin).await;
    assert_eq!(st, 201);
    assert_eq!(
        listed_keyspaces(&s, &db).await,
        ["default_keyspace", "sales"]
    );
    // The Data API's createKeyspace takes the same path: listed too.
    let (st, body) = send(
        s.req("POST", &format!("/db/{db}-us-east-2/api/json/v1"), None)
            .header("Token", &s.admin)
            .json(&json!({"createKeyspace": {"name": "archive"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        listed_keyspaces(&s, &db).await,
        ["default_keyspace", "sales", "archive"]
    );
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    let actions = strings(&view["availableActions"]);
    assert!(actions.contains(&"addKeyspace".to_string()), "{actions:?}");
    assert!(actions.contains(&"removeKeyspace".to_string()));

    // Removing drops it, with its collections, in both regions.
    let (st, body) = keyspace(&s, "DELETE", &db, "sales", &s.admin).await;
    assert_eq!((st, &body), (204, &Value::Null));
    assert_eq!(
        listed_keyspaces(&s, &db).await,
        ["default_keyspace", "archive"]
    );
    let want: BTreeSet<String> = ["default_keyspace", "archive"].map(String::from).into();
    assert_eq!(
        keyspaces_in_every_region(&s, &db).await,
        vec![want.clone(), want]
    );
    let (st, body) = send(
        s.req("POST", &format!("/db/{db}-us-east-2/api/json/v1"), None)
            .header("Token", &s.admin)
            .json(&json!({"dropKeyspace": {"name": "archive"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(listed_keyspaces(&s, &db).await, ["default_keyspace"]);

    // Refusals, in the API's error shape, changing nothing.
    let (st, body) = keyspace(&s, "DELETE", &db, "sales", &s.admin).await;
    assert!(assert_error(st, &body, 404, 4000).contains("keyspace sales not found"));
    let (st, body) = keyspace(&s, "DELETE", &db, "default_keyspace", &s.admin).await;
    assert!(assert_error(st, &body, 400, 1002).contains("initial keyspace"));
    for bad in ["system", "DSE", "bad-name", "1abc", &"k".repeat(49)] {
        let (st, body) = keyspace(&s, "POST", &db, bad, &s.admin).await;
        assert_error(st, &body, 400, 1002);
    }
    let (st, body) = keyspace(&s, "POST", &db, "system", &s.admin).await;
    assert!(assert_error(st, &body, 400, 1002).contains("reserved"));
    let (st, body) = keyspace(&s, "POST", "not-a-uuid", "x", &s.admin).await;
    assert_error(st, &body, 400, 1002);
    let unknown = uuid::Uuid::new_v4();
    let (st, body) = keyspace(&s, "POST", &unknown.to_string(), "x", &s.admin).await;
    assert_error(st, &body, 404, 4000);
    let reader = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = keyspace(&s, "POST", &db, "x", &reader).await;
    assert!(assert_error(st, &body, 403, 3000).contains("db-keyspace-create"));
    let (st, body) = keyspace(&s, "DELETE", &db, "x", &reader).await;
    assert!(assert_error(st, &body, 403, 3000).contains("db-keyspace-drop"));
    let (st, _) = keyspace(&s, "POST", &db, "x", "").await;
    assert_eq!(st, 401);
    // Another organization's database is not found.
    let other = s.store.create_org("Other", None).await.unwrap();
    let outsider = s.token(other.id, Role::OrgAdmin).await;
    let (st, body) = keyspace(&s, "POST", &db, "x", &outsider).await;
    assert_error(st, &body, 404, 4000);
    assert_eq!(listed_keyspaces(&s, &db).await, ["default_keyspace"]);
    let audit = s
        .app
        .store
        .list_audit(s.org, None, 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.as_str().starts_with("db.keyspace."))
        .count();
    assert!(
        audit >= 8,
        "keyspace changes and refusals are audited ({audit})"
    );

    // Not while the database is in another state (a region being added: MAINTENANCE).
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"tier": "serverless", "cloudProvider": "AWS", "region": "us-west-2"}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = keyspace(&s, "POST", &db, "late", &s.admin).await;
    if st != 201 {
        // The region may already be added on a fast machine; when it is not, 409.
        assert!(assert_error(st, &body, 409, 4090).contains("only when it is ACTIVE"));
    }
    wait_status(&s, &db, "ACTIVE").await;
    // A terminated database takes none.
    let (st, _) = s
        .post(
            &format!("/v2/databases/{db}/terminate"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 202);
    let (st, body) = keyspace(&s, "POST", &db, "late2", &s.admin).await;
    assert!(assert_error(st, &body, 409, 4090).contains("TERMINAT"));
}

#[tokio::test]
async fn classic_databases_take_keyspaces_too() {
    let s = server().await;
    register_key(&s, "us-east-2").await;
    let (st, body) = s
        .post(
            "/v2/databases",
            &s.admin,
            json!({"name": "classic", "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                   "capacityUnits": 1, "region": "us-east-2"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let db = body["id"].as_str().unwrap().to_string();
    wait_status(&s, &db, "ACTIVE").await;
    let (st, _) = keyspace(&s, "POST", &db, "reports", &s.admin).await;
    assert_eq!(st, 201);
    assert_eq!(listed_keyspaces(&s, &db).await, ["shop", "reports"]);
    let (st, _) = keyspace(&s, "DELETE", &db, "reports", &s.admin).await;
    assert_eq!(st, 204);
    assert_eq!(listed_keyspaces(&s, &db).await, ["shop"]);
}

/// What the test above does one at a time, from eight tasks at once: creates and drops of
/// the same and of different names race; afterwards the listing and every region's store
/// hold exactly the same keyspaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyspace_changes_from_eight_tasks_leave_every_copy_agreeing() {
    let s = std::sync::Arc::new(server().await);
    let db = serverless_db(&s, "race", "us-east-2").await;
    add_region(&s, &db, "eu-west-1").await;
    for round in 0..3 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (s, db) = (s.clone(), db.clone());
                tokio::spawn(async move {
                    // Every task creates its own keyspace and the shared one; odd ones drop
                    // the shared one again and even ones their own.
                    let own = format!("t{i}_r{round}");
                    for (method, name) in [
                        ("POST", own.as_str()),
                        ("POST", "shared"),
                        (if i % 2 == 0 { "DELETE" } else { "POST" }, own.as_str()),
                        (if i % 2 == 1 { "DELETE" } else { "POST" }, "shared"),
                    ] {
                        let (st, body) = keyspace(&s, method, &db, name, &s.admin).await;
                        assert!(
                            [201, 204, 404].contains(&st),
                            "{method} {name}: {st} {body}"
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let listed: BTreeSet<String> = listed_keyspaces(&s, &db).await.into_iter().collect();
        let regions = keyspaces_in_every_region(&s, &db).await;
        assert_eq!(regions.len(), 2);
        for r in &regions {
            assert_eq!(
                r, &listed,
                "round {round}: a region's store and the listing differ"
            );
        }
        for i in (1..8).step_by(2) {
            assert!(listed.contains(&format!("t{i}_r{round}")), "{listed:?}");
        }
        for i in (0..8).step_by(2) {
            assert!(!listed.contains(&format!("t{i}_r{round}")), "{listed:?}");
        }
    }
}

#[tokio::test]
async fn request_bodies_are_as_lenient_as_the_originals_spec() {
    let s = server().await;
    // No keyspace: the original's default name. Fields the spec defines and keyplane does not
    // use are accepted and ignored.
    let (st, body) = s
        .post(
            "/v2/databases",
            &s.admin,
            json!({"name": "lenient", "cloudProvider": "aws", "tier": "serverless", "capacityUnits": 1,
                   "region": "us-east-2", "dbType": "vector",
                   "pcuGroupUUID": "9c531886-ddde-401d-bc0f-a708394975c2", "user": "admin", "password": "hunter2"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["info"]["keyspace"], "default_keyspace");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    let db = body["id"].as_str().unwrap().to_string();
    // A misspelled field is still refused, naming it.
    let (st, body) = s
        .post(
            "/v2/databases",
            &s.admin,
            json!({"name": "typo", "cloudProvider": "AWS", "tier": "serverless", "region": "us-east-2",
                   "keyspce": "x"}),
        )
        .await;
    assert!(assert_error(st, &body, 400, 1000).contains("keyspce"));
    // A datacenter as the terraform provider sends it (Go's `status` with no omitempty) and
    // with the spec's other members.
    wait_status(&s, &db, "ACTIVE").await;
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"cloudProvider": "aws", "region": "eu-west-1", "status": "", "tier": "serverless",
                    "capacityUnits": 1, "regionZone": "emea", "streamingTenant": {}}]),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = s
        .post(
            &format!("/v2/databases/{db}/datacenters"),
            &s.admin,
            json!([{"cloudProvider": "aws", "region": "us-west-2", "tier": "serverless", "staus": ""}]),
        )
        .await;
    assert!(assert_error(st, &body, 400, 1000).contains("staus"));

    // orgId optional when registering a key: the token's organization.
    let kms = s.kms.customer("us-east-2");
    let key = kms
        .create_key()
        .policy(common::full_policy(s.org).to_string())
        .send()
        .await
        .unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let (st, body) = s
        .post(
            "/v2/kms",
            &s.admin,
            json!({"aws": {"keyID": arn, "region": "us-east-2"}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["orgId"], s.org.to_string());
    // Another organization named is still refused.
    let other = s.store.create_org("Other", None).await.unwrap();
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgId": other.id, "aws": {"keyID": arn, "region": "us-east-2"}}),
        )
        .await;
    assert_error(st, &body, 403, 3001);
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgID": s.org, "aws": {"keyID": arn, "region": "us-east-2"}}),
        )
        .await;
    assert!(assert_error(st, &body, 400, 1000).contains("orgID"));
}

#[tokio::test]
async fn last_usage_time_follows_data_access_at_most_once_a_minute() {
    let s = server().await;
    let db = serverless_db(&s, "used", "us-east-2").await;
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(
        view["lastUsageTime"], view["creationTime"],
        "never used: its creation time"
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(view["creationTime"].as_str().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let find = || {
        send(
            s.req("POST", &format!("/db/{db}-us-east-2/api/json/v1"), None)
                .header("Token", &s.admin)
                .json(&json!({"findKeyspaces": {}})),
        )
    };
    let before_use = chrono::Utc::now();
    assert_eq!(find().await.0, 200);
    // Recorded off the request path: it shows shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let used = loop {
        let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
        let t =
            chrono::DateTime::parse_from_rfc3339(view["lastUsageTime"].as_str().unwrap()).unwrap();
        if t > created {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "lastUsageTime never moved: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        used >= before_use - chrono::Duration::milliseconds(1),
        "{used} {before_use}"
    );
    // More uses within the minute write nothing more.
    for _ in 0..5 {
        assert_eq!(find().await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(view["lastUsageTime"].as_str().unwrap()).unwrap(),
        used
    );
    // A refused access (no such region) is no use of the database's data.
    let other = serverless_db(&s, "unused", "us-east-2").await;
    let (st, _) = send(
        s.req("POST", &format!("/db/{other}-eu-west-1/api/json/v1"), None)
            .header("Token", &s.admin)
            .json(&json!({"findKeyspaces": {}})),
    )
    .await;
    assert_eq!(st, 404);
    let reader = s.token(s.org, Role::Custom(Default::default())).await;
    let (st, _) = send(
        s.req("POST", &format!("/db/{other}-us-east-2/api/json/v1"), None)
            .header("Token", &reader)
            .json(&json!({"findKeyspaces": {}})),
    )
    .await;
    assert_eq!(st, 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, view) = s.get(&format!("/v2/databases/{other}"), &s.admin).await;
    assert_eq!(view["lastUsageTime"], view["creationTime"], "{view}");
}

#[tokio::test]
async fn databases_are_listed_by_status_as_the_original_filters_them() {
    let s = server().await;
    let active = serverless_db(&s, "live", "us-east-2").await;
    let doomed = serverless_db(&s, "doomed", "us-east-2").await;
    let (st, _) = s
        .post(
            &format!("/v2/databases/{doomed}/terminate"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 202);
    wait_status(&s, &doomed, "TERMINATED").await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, body) = s.get("/v2/databases?include=active", &s.admin).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(ids(&body), [active]);
    let (_, body) = s.get("/v2/databases?include=terminated", &s.admin).await;
    assert_eq!(ids(&body), [doomed.as_str()]);
    let (_, body) = s.get("/v2/databases?include=TERMINATED", &s.admin).await;
    assert_eq!(ids(&body), [doomed.as_str()]);
    let (_, body) = s.get("/v2/databases?include=all", &s.admin).await;
    assert_eq!(ids(&body).len(), 2);
    let (_, body) = s.get("/v2/databases?include=pending", &s.admin).await;
    assert!(ids(&body).is_empty());
    let (st, body) = s.get("/v2/databases?include=suspending", &s.admin).await;
    assert_eq!((st, ids(&body).len()), (200, 0));
    let (st, body) = s.get("/v2/databases?include=running", &s.admin).await;
    assert!(assert_error(st, &body, 400, 1002).contains("active"));
}

/// The document keyplane serves about itself tells the truth where it used not to.
#[tokio::test]
async fn the_openapi_document_tells_the_truth() {
    let s = server().await;
    let (st, doc) = send(s.req("GET", "/openapi.json", None)).await;
    assert_eq!(st, 200);
    let schemas = &doc["components"]["schemas"];
    // Statuses as every answer spells them.
    let statuses = strings(&schemas["DatabaseStatus"]["enum"]);
    assert_eq!(statuses[0], "ACTIVE");
    assert!(
        statuses
            .iter()
            .all(|s| s.chars().all(|c| c.is_ascii_uppercase())),
        "{statuses:?}"
    );
    assert_eq!(
        strings(&schemas["Provider"]["enum"]),
        ["aws", "gcp", "azure", "openbao"]
    );
    for key in ["keyspaces", "additionalKeyspaces"] {
        assert!(
            schemas["DatabaseInfo"]["properties"][key].is_object(),
            "{key}"
        );
    }
    assert!(schemas["DatabaseView"]["properties"]["lastUsageTime"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v2/regions/serverless", "get"),
        ("/v2/availableRegions", "get"),
        ("/v2/databases/{id}/keyspaces/{keyspaceName}", "post"),
        ("/v2/databases/{id}/keyspaces/{keyspaceName}", "delete"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let path_params = params.iter().filter(|p| p["in"] == "path").count();
            let portal = path.starts_with("/portal") || path == "/";
            if !portal && (path_params > 0 || op["requestBody"].is_object()) {
                assert!(
                    responses.contains_key("400"),
                    "{method} {path}: malformed JSON and bad path parameters answer 400"
                );
            }
            if path.starts_with("/v2") {
                assert!(responses.contains_key("401"), "{method} {path}");
            }
            // {provider} is the enum everywhere it appears.
            for p in params
                .iter()
                .filter(|p| p["name"] == "provider" && p["in"] == "path")
            {
                assert_eq!(
                    p["schema"]["$ref"], "#/components/schemas/Provider",
                    "{method} {path}"
                );
            }
        }
    }
    // What the document says of a path parameter is what the route does: a bad one is 400.
    let (st, body) = s
        .get("/v2/kms/provider/oracle/region/us-east-2", &s.admin)
        .await;
    assert_error(st, &body, 400, 1002);
    let (st, body) = send(
        s.req("POST", "/v2/databases", Some(&s.admin))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert!(assert_error(st, &body, 400, 1000).contains("malformed JSON"));
}
