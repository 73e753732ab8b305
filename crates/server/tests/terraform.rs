//! The routes and fields the terraform provider for the original platform uses, with the
//! shapes it reads, checked against a real keyplane server.
//!
//! Written down from the provider's source, `datastax/terraform-provider-astra` at commit
//! 3f5ead1779d187e49c07335f494f55b8b1bf4442 (files `internal/provider/resource_database.go`,
//! `resource_keyspace.go`, `data_source_keyspaces.go`, `data_source_available_regions.go`,
//! `resource_customer_key.go`, `data_source_customer_key(s).go`, `data_source_cloud_accounts.go`,
//! `data_source_databases.go`), and from the client it decodes answers with,
//! `datastax/astra-client-go` v2.3.0 (commit b4df851571d7627945ccc7e78c185f2f4c728175,
//! `astra/astra.gen.go`: the request bodies it marshals and the Go structs it unmarshals into).
//! Go cannot run here, so the checks model what `encoding/json` does with an answer: a member
//! of the wrong JSON type fails the whole decode; a missing or null member leaves the zero
//! value, which breaks the provider wherever it reads the member (and panics where it
//! dereferences a pointer: `*dc.Id`, `db.Storage.NodeCount`, `*region.Enabled`, the customer
//! keys' four members).
mod common;

use std::time::{Duration, Instant};

use common::{PLATFORM_ROLE, TestServer, full_policy, send};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::Provider;
use serde_json::Value;

/// A Go field's type, as `encoding/json` decodes into it.
#[derive(Clone, Copy)]
enum Go {
    Str,
    Int,
    Bool,
    StrList,
    Object(&'static [Field]),
    List(&'static [Field]),
}

/// A field of a Go struct the client decodes into: its JSON name, its type, and whether the
/// provider reads it (so it must be present and not null).
type Field = (&'static str, Go, bool);

const READ: bool = true;
const TYPED: bool = false;

/// `astra.Datacenter`.
const DATACENTER: &[Field] = &[
    ("capacityUnits", Go::Int, TYPED),
    ("cloudProvider", Go::Str, TYPED),
    ("cqlshUrl", Go::Str, TYPED),
    ("dataEndpointUrl", Go::Str, TYPED),
    ("grafanaUrl", Go::Str, TYPED),
    ("graphqlUrl", Go::Str, TYPED),
    // `*dc.Id` in flattenDatabase and deleteRegionsFromDatabase.
    ("id", Go::Str, READ),
    ("name", Go::Str, TYPED),
    ("region", Go::Str, READ),
    ("regionClassification", Go::Str, TYPED),
    ("regionZone", Go::Str, TYPED),
    ("secureBundleUrl", Go::Str, TYPED),
    ("status", Go::Str, TYPED),
    ("studioUrl", Go::Str, TYPED),
    ("tier", Go::Str, TYPED),
];

/// `astra.DatabaseInfo`.
const DATABASE_INFO: &[Field] = &[
    ("additionalKeyspaces", Go::StrList, READ),
    ("capacityUnits", Go::Int, TYPED),
    ("cloudProvider", Go::Str, READ),
    ("datacenters", Go::List(DATACENTER), READ),
    ("dbType", Go::Str, TYPED),
    ("keyspace", Go::Str, READ),
    ("name", Go::Str, READ),
    ("region", Go::Str, READ),
    ("tier", Go::Str, TYPED),
];

/// `astra.Storage` (`db.Storage.NodeCount` dereferences the pointer).
const STORAGE: &[Field] = &[
    ("nodeCount", Go::Int, READ),
    ("replicationFactor", Go::Int, READ),
    ("totalStorage", Go::Int, READ),
    ("usedStorage", Go::Int, TYPED),
];

/// `astra.Database`.
const DATABASE: &[Field] = &[
    ("availableActions", Go::StrList, TYPED),
    ("cqlshUrl", Go::Str, TYPED),
    ("creationTime", Go::Str, TYPED),
    ("dataEndpointUrl", Go::Str, READ),
    ("dbType", Go::Str, TYPED),
    ("grafanaUrl", Go::Str, TYPED),
    ("graphqlUrl", Go::Str, TYPED),
    ("id", Go::Str, READ),
    ("info", Go::Object(DATABASE_INFO), READ),
    ("message", Go::Str, TYPED),
    ("orgId", Go::Str, READ),
    ("ownerId", Go::Str, READ),
    ("status", Go::Str, READ),
    ("storage", Go::Object(STORAGE), READ),
    ("studioUrl", Go::Str, TYPED),
    ("terminationTime", Go::Str, TYPED),
];

/// `astra.ServerlessRegion` (`*region.Enabled` with only_enabled).
const SERVERLESS_REGION: &[Field] = &[
    ("classification", Go::Str, TYPED),
    ("cloudProvider", Go::Str, READ),
    ("displayName", Go::Str, READ),
    ("enabled", Go::Bool, READ),
    ("name", Go::Str, READ),
    ("region_type", Go::Str, READ),
    ("reservedForQualifiedUsers", Go::Bool, READ),
    ("zone", Go::Str, READ),
];

/// `astra.ExternalKMSResponse`: listCustomerKeys dereferences all four.
const CUSTOMER_KEY: &[Field] = &[
    ("CloudProvider", Go::Str, READ),
    ("KeyID", Go::Str, READ),
    ("OrganizationID", Go::Str, READ),
    ("Region", Go::Str, READ),
];

/// `astra.CloudProviderAccountDetails`.
const CLOUD_ACCOUNT: &[Field] = &[
    ("organization_id", Go::Str, READ),
    ("provider", Go::Str, READ),
    ("provider_id", Go::Str, READ),
];

/// `astra.Organization`.
const ORGANIZATION: &[Field] = &[("id", Go::Str, READ)];

/// The database statuses the client declares (`astra.StatusEnum`).
const STATUS_ENUM: &[&str] = &[
    "ACTIVE",
    "ERROR",
    "INITIALIZING",
    "MAINTENANCE",
    "PARKED",
    "PARKING",
    "PENDING",
    "PREPARED",
    "PREPARING",
    "RESIZING",
    "SUSPENDED",
    "TERMINATED",
    "TERMINATING",
    "UNKNOWN",
    "UNPARKING",
];

/// Fails with the path of every member the Go client and the provider would trip on.
fn decodes(v: &Value, fields: &[Field], at: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not a JSON object: {v}"));
    for (name, go, read) in fields {
        let path = format!("{at}.{name}");
        match obj.get(*name) {
            None | Some(Value::Null) => {
                assert!(
                    !read,
                    "{path}: the provider reads it, the answer has none: {v}"
                )
            }
            Some(m) => decodes_as(m, *go, &path),
        }
    }
}

fn decodes_as(m: &Value, go: Go, path: &str) {
    match go {
        Go::Str => assert!(m.is_string(), "{path}: Go string, got {m}"),
        Go::Int => assert!(m.is_i64(), "{path}: Go int, got {m}"),
        Go::Bool => assert!(m.is_boolean(), "{path}: Go bool, got {m}"),
        Go::StrList => {
            let a = m
                .as_array()
                .unwrap_or_else(|| panic!("{path}: Go []string, got {m}"));
            assert!(
                a.iter().all(Value::is_string),
                "{path}: Go []string, got {m}"
            );
        }
        Go::Object(fields) => decodes(m, fields, path),
        Go::List(fields) => {
            let a = m
                .as_array()
                .unwrap_or_else(|| panic!("{path}: Go slice, got {m}"));
            for (i, item) in a.iter().enumerate() {
                decodes(item, fields, &format!("{path}[{i}]"));
            }
        }
    }
}

fn decodes_list(v: &Value, fields: &'static [Field], at: &str) {
    decodes_as(v, Go::List(fields), at);
}

/// The provider's `waitForDatabaseAndUpdateResource`: polls GetDatabase until ACTIVE, a
/// status outside the client's enum failing it; returns the database as it decoded it.
async fn wait_active(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, db) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
        assert_eq!(st, 200, "{db}");
        decodes(&db, DATABASE, "Database");
        let status = db["status"].as_str().unwrap();
        assert!(
            STATUS_ENUM.contains(&status),
            "{status} is no astra.StatusEnum"
        );
        assert!(
            !["ERROR", "TERMINATED", "TERMINATING"].contains(&status),
            "database failed to reach active status: {db}"
        );
        if status == "ACTIVE" {
            return db;
        }
        assert!(Instant::now() < deadline, "never ACTIVE: {db}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The provider's `listKeyspaces`: additionalKeyspaces, then keyspace.
fn terraform_keyspaces(db: &Value) -> Vec<String> {
    let mut all: Vec<String> = db["info"]["additionalKeyspaces"]
        .as_array()
        .map(|a| a.iter().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    if let Some(k) = db["info"]["keyspace"].as_str().filter(|k| !k.is_empty()) {
        all.push(k.to_string());
    }
    all
}

/// flattenDatabase's `datacenters` map: "cloud_provider.region" → datacenter ID.
fn datacenter_map(db: &Value) -> Vec<(String, String)> {
    let cloud = db["info"]["cloudProvider"].as_str().unwrap();
    db["info"]["datacenters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dc| {
            (
                format!("{cloud}.{}", dc["region"].as_str().unwrap()),
                dc["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The second platform AWS account: a serverless datacenter under a customer key holds a
/// provider ID of its own (DECISIONS.md), and this test deploys two in us-east-2.
const SECOND_ACCOUNT: &str = "222222222223";

/// The key policy of a key of organization `org` that both platform roles may use (each
/// serverless database acts as one of them).
fn policy_for_both_roles(org: uuid::Uuid) -> Value {
    let roles = serde_json::json!([
        PLATFORM_ROLE,
        format!("arn:aws:iam::{SECOND_ACCOUNT}:role/creator")
    ]);
    let mut policy = full_policy(org);
    for st in policy["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .skip(1)
    {
        st["Principal"]["AWS"] = roles.clone();
    }
    policy
}

#[tokio::test]
async fn the_terraform_providers_routes_and_fields_exist_with_the_shapes_it_reads() {
    let mut config = Config {
        worker_poll: Duration::from_millis(50),
        ..Default::default()
    };
    config
        .provider_accounts
        .get_mut(&Provider::Aws)
        .unwrap()
        .push(ProviderAccount::aws(SECOND_ACCOUNT, "creator"));
    let s = TestServer::with_config(config).await;

    // getOrgId: GetCurrentOrganization.
    let (st, org) = s.get("/v2/currentOrg", &s.admin).await;
    assert_eq!(st, 200);
    decodes(&org, ORGANIZATION, "Organization");
    let org_id = org["id"].as_str().unwrap().to_string();

    // astra_cloud_accounts: GetCloudAccounts is the serverless accounts route.
    let (st, accounts) = s
        .get("/v2/kms/provider/aws/region/us-east-2/accounts", &s.admin)
        .await;
    assert_eq!(st, 200, "{accounts}");
    decodes_list(&accounts, CLOUD_ACCOUNT, "[]CloudProviderAccountDetails");
    assert!(!accounts.as_array().unwrap().is_empty());
    // The second provider ID, for the second serverless database below.
    let (st, assigned) = s
        .post(
            "/v2/kms/classic/provider/aws/accounts",
            &s.admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(st, 201, "{assigned}");

    // astra_customer_key: CreateKey posts ExternalKMS (members Aws, Gcp, OrgId, omitempty) to
    // /v2/kms and wants exactly 201.
    // One per region the database below is deployed in.
    let mut arn = String::new();
    for region in ["eu-west-1", "us-east-2"] {
        let kms = s.kms.customer(region);
        let key = kms
            .create_key()
            .policy(policy_for_both_roles(s.org).to_string())
            .send()
            .await
            .unwrap();
        arn = key.key_metadata().unwrap().arn().unwrap().to_string();
        let body =
            format!(r#"{{"aws":{{"keyID":"{arn}","region":"{region}"}},"orgId":"{org_id}"}}"#);
        let (st, answer) = send(
            s.req("POST", "/v2/kms", Some(&s.admin))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(st, 201, "CreateKeyWithResponse wants 201: {answer}");
    }
    // astra_customer_key(s) data sources: ListKeys, matched on cloud_provider (EqualFold) and
    // region.
    let (st, keys) = s.get("/v2/kms", &s.admin).await;
    assert_eq!(st, 200);
    decodes_list(&keys, CUSTOMER_KEY, "GetAllCustomerKeys");
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert!(keys.as_array().unwrap().iter().any(|k| {
        k["CloudProvider"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("aws")
            && k["Region"] == "us-east-2"
            && k["KeyID"] == arn.as_str()
            && k["OrganizationID"] == org_id.as_str()
    }));

    // ensureValidRegions / astra_available_regions: ListServerlessRegions, with and without
    // region-type=vector; findMatchingRegion compares provider and name with EqualFold.
    for query in ["", "?region-type=vector", "?region-type=all"] {
        let (st, regions) = s
            .get(&format!("/v2/regions/serverless{query}"), &s.admin)
            .await;
        assert_eq!(st, 200, "{regions}");
        decodes_list(&regions, SERVERLESS_REGION, "[]ServerlessRegion");
        for (cloud, region) in [
            ("aws", "us-east-2"),
            ("AWS", "eu-west-1"),
            ("gcp", "us-east1"),
        ] {
            assert!(
                regions.as_array().unwrap().iter().any(|r| {
                    r["cloudProvider"]
                        .as_str()
                        .unwrap()
                        .eq_ignore_ascii_case(cloud)
                        && r["name"].as_str().unwrap().eq_ignore_ascii_case(region)
                }),
                "cloud provider and region combination not available: {cloud}/{region}"
            );
        }
    }

    // astra_database create: CreateDatabase marshals DatabaseInfoCreate in the Go struct's
    // member order, CapacityUnits always, Keyspace and DbType only when set; wants exactly
    // 201 and reads the new ID from the Location header as is.
    for (name, extra) in [
        ("tfdb", r#","keyspace":"tf_ks""#),
        ("tfvector", r#","dbType":"vector""#),
    ] {
        let body = format!(
            r#"{{"capacityUnits":1,"cloudProvider":"aws"{extra},"name":"{name}","region":"us-east-2","tier":"serverless"}}"#
        );
        let res = s
            .req("POST", "/v2/databases", Some(&s.admin))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let location = res.headers()["location"].to_str().unwrap().to_string();
        uuid::Uuid::parse_str(&location).expect("Location is the bare database ID");
        let db = wait_active(&s, &location).await;
        if name == "tfvector" {
            assert_eq!(db["info"]["dbType"], "vector");
            assert_eq!(terraform_keyspaces(&db), ["default_keyspace"]);
        }
    }
    let (st, list) = s.get("/v2/databases", &s.admin).await;
    assert_eq!(st, 200);
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["info"]["name"] == "tfdb")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = wait_active(&s, &id).await;
    assert_eq!(terraform_keyspaces(&db), ["tf_ks"]);
    assert_eq!(
        datacenter_map(&db),
        [("AWS.us-east-2".to_string(), format!("{id}-1"))]
    );

    // addRegionsToDatabase: AddDatacenters with one astra.Datacenter, marshalled with
    // `status` (no omitempty) and without the pointer members; wants exactly 201.
    let body = r#"[{"cloudProvider":"aws","region":"eu-west-1","status":"","tier":"serverless"}]"#;
    let (st, answer) = send(
        s.req(
            "POST",
            &format!("/v2/databases/{id}/datacenters"),
            Some(&s.admin),
        )
        .header("content-type", "application/json")
        .body(body),
    )
    .await;
    assert_eq!(st, 201, "AddDatacentersWithResponse wants 201: {answer}");
    let db = wait_active(&s, &id).await;
    assert_eq!(datacenter_map(&db).len(), 2, "{db}");

    // deleteRegionsFromDatabase: ListDatacenters (no query), region → *dc.Id, then
    // TerminateDatacenter wanting exactly 202.
    let (st, dcs) = s
        .get(&format!("/v2/databases/{id}/datacenters"), &s.admin)
        .await;
    assert_eq!(st, 200);
    decodes_list(&dcs, DATACENTER, "[]Datacenter");
    let eu = dcs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["region"] == "eu-west-1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, answer) = send(s.req(
        "POST",
        &format!("/v2/databases/{id}/datacenters/{eu}/terminate"),
        Some(&s.admin),
    ))
    .await;
    assert_eq!(
        st, 202,
        "TerminateDatacenterWithResponse wants 202: {answer}"
    );
    wait_active(&s, &id).await;

    // astra_keyspace: waits for ACTIVE, AddKeyspace (no body) succeeds below 400 (409 is
    // retried); the read lists additionalKeyspaces + keyspace; DropKeyspace likewise.
    let (st, answer) = send(s.req(
        "POST",
        &format!("/v2/databases/{id}/keyspaces/tf_more"),
        Some(&s.admin),
    ))
    .await;
    assert!(st < 400, "AddKeyspace: {st} {answer}");
    let db = wait_active(&s, &id).await;
    assert_eq!(terraform_keyspaces(&db), ["tf_more", "tf_ks"]);
    let (st, answer) = send(s.req(
        "DELETE",
        &format!("/v2/databases/{id}/keyspaces/tf_more"),
        Some(&s.admin),
    ))
    .await;
    assert!(st < 400, "DropKeyspace: {st} {answer}");
    let db = wait_active(&s, &id).await;
    assert_eq!(terraform_keyspaces(&db), ["tf_ks"]);

    // astra_databases data source: ListDatabases with include (its status argument) and
    // provider.
    for query in [
        "",
        "?include=active&provider=AWS",
        "?include=nonterminated&provider=ALL",
    ] {
        let (st, list) = s.get(&format!("/v2/databases{query}"), &s.admin).await;
        assert_eq!(st, 200, "{query}: {list}");
        decodes_list(&list, DATABASE, "[]Database");
        assert_eq!(list.as_array().unwrap().len(), 2, "{query}");
    }

    // Delete: TerminateDatabase (any status below 400), then GetDatabase until TERMINATED or
    // 404. A database it does not know is a 404 (resourceDatabaseRead drops it from state).
    let (st, answer) = send(s.req(
        "POST",
        &format!("/v2/databases/{id}/terminate"),
        Some(&s.admin),
    ))
    .await;
    assert!(st < 400, "TerminateDatabase: {st} {answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, db) = s.get(&format!("/v2/databases/{id}"), &s.admin).await;
        assert!(st == 200 || st == 404, "{st} {db}");
        if st == 404 || db["status"] == "TERMINATED" {
            break;
        }
        decodes(&db, DATABASE, "Database");
        assert!(Instant::now() < deadline, "never TERMINATED: {db}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _) = s
        .get(&format!("/v2/databases/{}", uuid::Uuid::new_v4()), &s.admin)
        .await;
    assert_eq!(st, 404);
}
