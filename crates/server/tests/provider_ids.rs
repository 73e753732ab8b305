//! The serverless provider-ID rule over real servers (keyplane on a loopback port, its
//! built-in KMS as the customer's AWS KMS and Cloud KMS, the official clients as the customer):
//! each serverless database in a region acts as a provider ID of the organization of its own
//! that the region's key lets in. With three trusted provider IDs the fourth serverless
//! database is refused with the way out; after one more is assigned (`POST …/accounts`) and the
//! key grants it, the database deploys, as that identity.
mod common;

use std::time::{Duration, Instant};

use common::gcp;
use common::{TestServer, assert_error, send, wait_status};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::Provider;
use serde_json::{Value, json};

const AWS_ACCOUNTS: [&str; 4] = [
    "222222222222",
    "222222222223",
    "222222222224",
    "222222222225",
];
const GCP_ACCOUNTS: [&str; 4] = [
    "keyplane-platform@keyplane-dev.iam.gserviceaccount.com",
    "keyplane-platform-2@keyplane-dev.iam.gserviceaccount.com",
    "keyplane-platform-3@keyplane-dev.iam.gserviceaccount.com",
    "keyplane-platform-4@keyplane-dev.iam.gserviceaccount.com",
];

/// A server whose platform has four identities per cloud (the built-in KMS knows them all).
async fn server() -> TestServer {
    let mut config = Config {
        worker_poll: Duration::from_millis(50),
        ..Config::default()
    };
    config.provider_accounts.insert(
        Provider::Aws,
        AWS_ACCOUNTS
            .iter()
            .map(|id| ProviderAccount::aws(*id, "creator"))
            .collect(),
    );
    config.provider_accounts.insert(
        Provider::Gcp,
        GCP_ACCOUNTS
            .iter()
            .map(|sa| ProviderAccount::gcp(*sa, "keyplane-dev"))
            .collect(),
    );
    TestServer::with_config(config).await
}

#[derive(Clone, Copy)]
enum Cloud {
    Aws,
    Gcp,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
        }
    }

    fn region(self) -> &'static str {
        match self {
            Cloud::Aws => "us-east-2",
            Cloud::Gcp => "us-east1",
        }
    }

    fn cloud_provider(self) -> &'static str {
        match self {
            Cloud::Aws => "AWS",
            Cloud::Gcp => "GCP",
        }
    }

    /// The AWS key policy granting `principals`, bound to organization `org`
    /// (`common::bound_statements`, written out, with every principal).
    fn aws_policy(principals: &[String], org: uuid::Uuid) -> Value {
        let mut statements = vec![common::root_statement()];
        for mut st in common::bound_statements("", org) {
            st["Principal"]["AWS"] = json!(principals);
            statements.push(st);
        }
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    /// A new customer key in the region, its use granted to `principals`; its ID.
    async fn new_key(self, s: &TestServer, principals: &[String]) -> String {
        match self {
            Cloud::Aws => s
                .kms
                .customer(self.region())
                .create_key()
                .policy(Self::aws_policy(principals, s.org).to_string())
                .send()
                .await
                .unwrap()
                .key_metadata()
                .unwrap()
                .arn()
                .unwrap()
                .to_string(),
            Cloud::Gcp => {
                let c = gcp::customer(&s.kms).await;
                let key = gcp::new_key(&c, self.region(), "serverless", "vectors").await;
                gcp::grant(&c, &key, principals).await;
                key
            }
        }
    }

    /// Replaces the grant on `key` with one for `principals`.
    async fn grant(self, s: &TestServer, key: &str, principals: &[String]) {
        match self {
            Cloud::Aws => {
                s.kms
                    .customer(self.region())
                    .put_key_policy()
                    .key_id(key)
                    .policy(Self::aws_policy(principals, s.org).to_string())
                    .send()
                    .await
                    .unwrap();
            }
            Cloud::Gcp => {
                let c = gcp::customer(&s.kms).await;
                gcp::grant(&c, key, principals).await;
            }
        }
    }
}

async fn principals(s: &TestServer, cloud: Cloud) -> Vec<String> {
    let (st, accounts) = s
        .get(
            &format!(
                "/v2/kms/provider/{}/region/{}/accounts",
                cloud.name(),
                cloud.region()
            ),
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{accounts}");
    accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a["principal"].as_str() {
            Some(p) => p.to_string(),
            // AWS: the provider ID is the account whose role the policy names.
            None => format!(
                "arn:aws:iam::{}:role/creator",
                a["provider_id"].as_str().unwrap()
            ),
        })
        .collect()
}

async fn assign_one_more(s: &TestServer, cloud: Cloud) -> Value {
    let (st, body) = s
        .post(
            &format!("/v2/kms/classic/provider/{}/accounts", cloud.name()),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    body
}

async fn create_serverless(s: &TestServer, cloud: Cloud, name: &str) -> (u16, Value, String) {
    let body = json!({"name": name, "keyspace": "shop", "cloudProvider": cloud.cloud_provider(),
                      "tier": "serverless", "dbType": "vector", "capacityUnits": 1,
                      "region": cloud.region()});
    let res = s
        .req("POST", "/v2/databases", Some(&s.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let id = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().rsplit('/').next().unwrap().to_string())
        .unwrap_or_default();
    let (_, v) = send_text(res).await;
    (status, v, id)
}

async fn send_text(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    (status, serde_json::from_str(&text).unwrap())
}

/// The provider account the database's first datacenter acts as.
async fn acting_as(s: &TestServer, db: &str) -> String {
    let (_, view) = s.get(&format!("/v2/databases/{db}"), &s.admin).await;
    let dc = view["info"]["datacenters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.store
        .get_datacenter(&dc)
        .await
        .unwrap()
        .unwrap()
        .provider_account
}

async fn the_fourth_serverless_database_needs_a_fourth_provider_id(cloud: Cloud) {
    let s = server().await;
    let (p, region) = (cloud.name(), cloud.region());
    // Three provider IDs: the one given on first use and two more.
    assert_eq!(principals(&s, cloud).await.len(), 1);
    assign_one_more(&s, cloud).await;
    assign_one_more(&s, cloud).await;
    let three = principals(&s, cloud).await;
    assert_eq!(three.len(), 3, "{three:?}");

    let key = cloud.new_key(&s, &three).await;
    let (st, body) = s
        .post("/v2/kms", &s.admin, {
            let mut b = json!({"orgId": s.org});
            b[p] = json!({"keyID": key, "region": region});
            b
        })
        .await;
    assert_eq!(st, 201, "{body}");

    // Three serverless databases, each acting as a provider ID of its own.
    let mut dbs = Vec::new();
    for i in 0..3 {
        let (st, body, db) = create_serverless(&s, cloud, &format!("vectors{i}")).await;
        assert_eq!(st, 201, "{body}");
        dbs.push(db);
    }
    let mut used = Vec::new();
    for db in &dbs {
        used.push(acting_as(&s, db).await);
    }
    let mut distinct = used.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{used:?}");

    // The fourth: refused, saying how to get another provider ID; nothing created.
    let (st, body, _) = create_serverless(&s, cloud, "vectors3").await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(
        msg.contains(&format!("POST /v2/kms/classic/provider/{p}/accounts"))
            && msg.contains("taken")
            && msg.contains(&key)
            && msg.contains("vectors0"),
        "{msg}"
    );
    let (_, list) = s.get("/v2/databases", &s.admin).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");

    // One more assigned but not yet granted: refused, naming what to add to the key's policy.
    assign_one_more(&s, cloud).await;
    let four = principals(&s, cloud).await;
    assert_eq!(four.len(), 4, "{four:?}");
    let fourth = four
        .iter()
        .find(|p| !three.contains(p))
        .unwrap()
        .to_string();
    let (st, body, _) = create_serverless(&s, cloud, "vectors3").await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(msg.contains(&fourth) && msg.contains("add"), "{msg}");

    // Granted: it deploys, acting as the fourth provider ID.
    cloud.grant(&s, &key, &four).await;
    let (st, body, db) = create_serverless(&s, cloud, "vectors3").await;
    assert_eq!(st, 201, "{body}");
    wait_status(&s, &db, "ACTIVE").await;
    let account = acting_as(&s, &db).await;
    assert!(!used.contains(&account), "{account} already used: {used:?}");
    assert!(fourth.contains(&account), "{fourth} is not {account}");

    // A terminated serverless database frees its provider ID for the next one.
    let (st, body) = send(s.req(
        "POST",
        &format!("/v2/databases/{}/terminate", dbs[0]),
        Some(&s.admin),
    ))
    .await;
    assert_eq!(st, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, body, _) = create_serverless(&s, cloud, "vectors4").await;
        if st == 201 {
            break;
        }
        assert_error(st, &body, 409, 4090);
        assert!(
            Instant::now() < deadline,
            "the provider ID was never freed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_fourth_serverless_database_on_an_aws_key_needs_a_fourth_provider_id() {
    the_fourth_serverless_database_needs_a_fourth_provider_id(Cloud::Aws).await;
}

#[tokio::test]
async fn the_fourth_serverless_database_on_a_gcp_key_needs_a_fourth_provider_id() {
    the_fourth_serverless_database_needs_a_fourth_provider_id(Cloud::Gcp).await;
}

/// A classic database takes no provider ID of its own: many deploy on the one identity.
#[tokio::test]
async fn classic_databases_share_the_organizations_provider_id() {
    let s = server().await;
    let cloud = Cloud::Aws;
    let (st, accounts) = s
        .get(
            "/v2/kms/classic/provider/aws/region/us-east-2/accounts",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200, "{accounts}");
    let principal = format!(
        "arn:aws:iam::{}:role/creator",
        accounts[0]["provider_id"].as_str().unwrap()
    );
    let key = cloud.new_key(&s, std::slice::from_ref(&principal)).await;
    let (st, body) = s
        .post(
            "/v2/kms/classic",
            &s.admin,
            json!({"orgId": s.org, "aws": {"keyID": key, "region": "us-east-2"}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    for i in 0..4 {
        let body = json!({"name": format!("c{i}"), "keyspace": "shop", "cloudProvider": "AWS",
                          "tier": "C10", "capacityUnits": 1, "region": "us-east-2"});
        let res = s
            .req("POST", "/v2/databases", Some(&s.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (st, body) = send_text(res).await;
        assert_eq!(st, 201, "{body}");
    }
}

/// Eight serverless deployments at once with three provider IDs granted: exactly three
/// deploy, each acting as a different one; the other five are refused with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_serverless_deployments_share_three_provider_ids() {
    let cloud = Cloud::Gcp;
    let s = std::sync::Arc::new(server().await);
    principals(&s, cloud).await;
    assign_one_more(&s, cloud).await;
    assign_one_more(&s, cloud).await;
    let three = principals(&s, cloud).await;
    let key = cloud.new_key(&s, &three).await;
    let (st, body) = s
        .post(
            "/v2/kms",
            &s.admin,
            json!({"orgId": s.org, "gcp": {"keyID": key, "region": cloud.region()}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            create_serverless(&s, cloud, &format!("race{i}")).await
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (st, body, db) = t.await.unwrap();
        match st {
            201 => created.push(db),
            _ => {
                let msg = assert_error(st, &body, 409, 4090);
                assert!(msg.contains("provider ID"), "{msg}");
            }
        }
    }
    assert_eq!(created.len(), 3, "{created:?}");
    let mut used = Vec::new();
    for db in &created {
        used.push(acting_as(&s, db).await);
    }
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 3, "{used:?}");
    let (_, list) = s.get("/v2/databases", &s.admin).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
}
