//! The customer's flow with a Google Cloud KMS key, with nothing but `keyplane` commands,
//! against a real `serve --dev`: the README's own Cloud KMS commands (the second command block
//! of its flow section, read from the README so it cannot drift), run verbatim. It shows the
//! binary's wiring routes GCP identities to the Cloud KMS adapter on the built-in KMS, with
//! the dev credentials of the platform's service accounts.
mod common;

use common::readme::readme_block;
use common::{Customer, serve_dev};
use serde_json::Value;

const KEY: &str = "projects/customer-project/locations/us-east1/keyRings/shop/cryptoKeys/orders";

#[test]
fn the_readmes_cloud_kms_flow_runs_verbatim() {
    let lines = readme_block(1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("keyplane key register --provider gcp")),
        "{lines:?}"
    );
    let customer = Customer::new();
    let (_server, creds) = serve_dev(&customer);

    // The dev credentials name the sample Cloud KMS customer and the platform's service
    // accounts (four in dev mode), each with its token.
    let gcp = &creds["kms"]["gcp"];
    assert_eq!(gcp["customerProject"], "customer-project", "{creds}");
    assert_eq!(gcp["platformProject"], "keyplane-dev", "{creds}");
    let platform = gcp["platform"].as_array().unwrap();
    assert_eq!(platform.len(), 4, "{creds}");
    assert!(
        platform
            .iter()
            .all(|p| p["token"].as_str().is_some_and(|t| !t.is_empty()))
    );

    let mut outputs = Vec::new();
    for line in &lines {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(line.split_whitespace().next(), Some("keyplane"), "{line}");
        let run = customer.run(&args);
        assert_eq!(
            run.code,
            Some(0),
            "`{line}` exit {:?}\nstdout: {}\nstderr: {}",
            run.code,
            run.stdout,
            run.stderr
        );
        outputs.push((line.clone(), run.stdout.clone()));
    }
    let out = |prefix: &str| -> Value {
        let (_, stdout) = outputs
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no step {prefix}"));
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{prefix}: {e}: {stdout}"))
    };
    let help = out("keyplane key policy --provider gcp");
    assert_eq!(help["providerId"], "keyplane-dev", "{help}");
    assert_eq!(
        help["principal"],
        "serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com"
    );
    let registered = out("keyplane key register --provider gcp");
    assert_eq!(registered["gcp"]["keyID"], KEY, "{registered}");
    assert_eq!(
        registered["primaryVersion"],
        format!("{KEY}/cryptoKeyVersions/1")
    );
    let status = out("keyplane key status --provider gcp");
    assert_eq!(status["status"], "IN_USE", "{status}");
    assert_eq!(
        status["primaryVersion"],
        format!("{KEY}/cryptoKeyVersions/1")
    );

    // The database is encrypted under the customer's Cloud KMS key.
    let db = customer.run(&["db", "get", "orders", "--output", "json"]);
    assert_eq!(db.code, Some(0), "{}", db.stderr);
    let db = db.json();
    assert_eq!(db["status"], "ACTIVE", "{db}");
    assert_eq!(
        db["info"]["datacenters"][0]["encryption"]["keyID"], KEY,
        "{db}"
    );
}
