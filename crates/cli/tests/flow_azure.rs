//! The seed's flow with an Azure Key Vault key for a serverless database, over real servers:
//! `serve --dev` with its built-in Azure Key Vault over HTTPS (dev CA), the platform signing in
//! as its Entra ID application with a client secret through Microsoft's SDK, and the README's
//! own Azure commands (the third block of its flow section) run verbatim. Then what the
//! customer does to their key, and what the data does in answer: disabled → SUSPENDED and
//! back, role removed → SUSPENDED and back, rotated → the data wrapped by the old version
//! still opens. A classic database refuses an Azure key.
mod common;

use std::time::{Duration, Instant};

use common::readme::{command_of, readme_block, run_verbatim};
use common::{Customer, data_api_call, serve_dev_with};
use serde_json::{Value, json};

/// The platform application and its service principal in the built-in vault's tenant.
const PLATFORM_APP: &str = "7f3c2a10-0000-4000-8000-000000000222";
const PLATFORM_OBJECT: &str = "7f3c2a10-0000-4000-8000-0000000002a0";

fn db_status(customer: &Customer) -> Value {
    customer
        .run(&["db", "get", "orders", "--output", "json"])
        .ok()
        .json()
}

/// Polls the database until its status is `want` (the monitor runs every second here).
fn wait_db(customer: &Customer, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let db = db_status(customer);
        if db["status"] == want {
            return db;
        }
        assert!(Instant::now() < deadline, "never {want}: {db}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn key_status(customer: &Customer) -> Value {
    customer
        .run(&[
            "key",
            "status",
            "--provider",
            "azure",
            "--type",
            "serverless",
            "--region",
            "eastus",
        ])
        .ok()
        .json()
}

#[test]
fn the_readmes_azure_flow_runs_and_the_data_follows_the_key() {
    let lines = readme_block(2);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("keyplane key register --provider azure --type serverless")),
        "{lines:?}"
    );
    let customer = Customer::new();
    let (_server, creds) = serve_dev_with(
        &customer,
        &["--key-check-interval", "1", "--data-key-ttl", "1"],
    );
    let azure = &creds["azure"];
    let vault = azure["vaultUrl"]
        .as_str()
        .expect("the vault URL")
        .to_string();
    assert!(vault.starts_with("https://localhost:"), "{creds}");
    assert_eq!(azure["platform"]["clientId"], PLATFORM_APP, "{creds}");
    let ca = customer.cwd().join(azure["caFile"].as_str().unwrap());
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    let (steps, vars) = run_verbatim(&customer, &lines);
    let key = vars
        .get("KEY")
        .expect("the flow names its key $KEY")
        .clone();
    assert_eq!(key, format!("{vault}/keys/orders"));
    let step = |prefix: &str| {
        steps
            .iter()
            .find(|s| command_of(&s.line).starts_with(prefix))
            .unwrap_or_else(|| panic!("no step {prefix}"))
    };
    for s in &steps {
        let refused = s.line.contains("--type classic");
        assert_eq!(s.code, if refused { 1 } else { 0 }, "{}", s.describe());
    }

    let help = step("keyplane key policy --provider azure").json();
    assert_eq!(help["providerId"], PLATFORM_APP, "{help}");
    assert_eq!(
        help["roleAssignment"]["roleName"],
        "Key Vault Crypto Service Encryption User"
    );
    assert_eq!(
        help["roleAssignment"]["assigneeObjectId"], PLATFORM_OBJECT,
        "{help}"
    );
    assert!(
        help["commands"][0]
            .as_str()
            .unwrap()
            .starts_with("keyplane kms azure assign-role --key "),
        "{help}"
    );
    let registered = step("keyplane key register --provider azure --type serverless").json();
    assert_eq!(registered["azure"]["keyID"], key.as_str(), "{registered}");
    let first_version = registered["primaryVersion"].as_str().unwrap().to_string();
    assert!(
        first_version.starts_with(&format!("{key}/")),
        "{registered}"
    );
    let status = step("keyplane key status").json();
    assert_eq!(status["status"], "IN_USE", "{status}");
    assert_eq!(status["primaryVersion"], first_version.as_str(), "{status}");
    let classic = step("keyplane key register --provider azure --type classic");
    assert!(
        classic.stderr.contains("serverless") && classic.stderr.contains("422"),
        "{}",
        classic.describe()
    );

    // The database is encrypted under the customer's Key Vault key.
    let db = wait_db(&customer, "ACTIVE");
    assert_eq!(
        db["info"]["datacenters"][0]["encryption"]["keyID"],
        key.as_str(),
        "{db}"
    );
    let id = db["id"].as_str().unwrap();
    let token = creds["token"].as_str().unwrap();
    let api = creds["apiUrl"].as_str().unwrap();
    let keyspace = format!("{api}/db/{id}-eastus/api/json/v1/shop");
    let collection = format!("{keyspace}/orders");
    let call = |url: &str, body: Value| data_api_call(url, token, &body.to_string());
    let (st, r) = call(&keyspace, json!({"createCollection": {"name": "orders"}}));
    assert_eq!((st, &r["status"]["ok"]), (200, &json!(1)), "{r}");
    let mut written = Vec::new();
    let write = |written: &mut Vec<Value>, n: u32| {
        let doc = json!({"_id": format!("o{n}"), "n": n});
        let (st, r) = call(&collection, json!({"insertOne": {"document": doc}}));
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["status"]["insertedIds"][0], format!("o{n}"), "{r}");
        written.push(doc);
    };
    write(&mut written, 1);
    write(&mut written, 2);
    let read_all = || {
        let (st, r) = call(&collection, json!({"find": {"sort": {"n": 1}}}));
        assert_eq!(st, 200, "{r}");
        r["data"]["documents"].clone()
    };

    // Disabled in Key Vault: suspended within the interval, with the reason; enabled: back.
    customer
        .run(&["kms", "azure", "disable", "--key", "orders"])
        .ok();
    wait_db(&customer, "SUSPENDED");
    let (_, refused) = call(&collection, json!({"findOne": {"filter": {"_id": "o1"}}}));
    assert_eq!(
        refused["errors"][0]["errorCode"], "DATABASE_SUSPENDED",
        "{refused}"
    );
    let s = key_status(&customer);
    assert_eq!(s["status"], "INACCESSIBLE", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("disabled"), "{s}");
    customer
        .run(&["kms", "azure", "enable", "--key", "orders"])
        .ok();
    wait_db(&customer, "ACTIVE");
    assert_eq!(read_all(), json!(written));

    // The role removed: suspended, naming the role to restore; assigned again: back.
    customer
        .run(&["kms", "azure", "remove-role", "--key", "orders"])
        .ok();
    wait_db(&customer, "SUSPENDED");
    let s = key_status(&customer);
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("Key Vault Crypto Service Encryption User"),
        "{s}"
    );
    customer
        .run(&["kms", "azure", "assign-role", "--key", "orders"])
        .ok();
    wait_db(&customer, "ACTIVE");
    write(&mut written, 3);

    // Rotated: the status follows the new current version, and once the data key is dropped
    // from memory (its TTL is one second here) the datacenter opens again with the old
    // version's wrapped key.
    let rotated = customer
        .run(&["kms", "azure", "rotate", "--key", "orders"])
        .ok()
        .json();
    let new_version = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_version, first_version);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = key_status(&customer);
        if s["primaryVersion"] == new_version.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status never showed {new_version}: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_all(), json!(written));
    write(&mut written, 4);
    assert_eq!(read_all(), json!(written));

    // No secret of the flow in the server's log, in an answer, or in any file of the data
    // dir but the two credential files written for the customer's commands (0600).
    let secrets = [
        (
            "the platform's client secret",
            azure["platform"]["clientSecret"].as_str().unwrap(),
        ),
        (
            "the platform's token",
            azure["platform"]["token"].as_str().unwrap(),
        ),
        (
            "the customer's token",
            azure["customer"]["token"].as_str().unwrap(),
        ),
    ];
    let log = std::fs::read_to_string(customer.cwd().join("serve.log")).unwrap();
    let answers: String = steps
        .iter()
        .map(|s| format!("{}{}", s.stdout, s.stderr))
        .collect();
    let mut files = vec![customer.cwd().join("keyplane-data")];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "dev-credentials.json" || name == "azure-credentials.json" {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for (what, secret) in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{what} is in {}",
                p.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned >= 2, "the store and the vault's state were scanned");
    for (what, secret) in secrets {
        assert!(!log.contains(secret), "{what} is in the server's log");
        assert!(!answers.contains(secret), "{what} is in a command's output");
    }
}
