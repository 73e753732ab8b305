//! `keyplane key policy --provider gcp --merge-into` end to end against a real `serve --dev`:
//! the key's getIamPolicy output from the built-in Cloud KMS, keyplane's bindings for the
//! organization's service accounts merged in by the CLI from the server's policy helper, put
//! back with `keyplane kms gcp set-iam-policy`, then checked and registered by the server.
mod common;

use common::{Customer, serve_dev};

const KEY: &str = "projects/customer-project/locations/us-east1/keyRings/shop/cryptoKeys/orders";
const OWNER: &str = "user:owner@customer.example";

#[test]
fn a_gcp_keys_iam_policy_merged_by_the_cli_is_put_back_checked_and_registered() {
    let customer = Customer::new();
    let (_server, _creds) = serve_dev(&customer);
    let key = ["--key-ring", "shop", "--key", "orders"];
    let gcp = |args: &[&str]| {
        let mut all = vec!["kms", "gcp"];
        all.extend_from_slice(args);
        customer.run(&all)
    };
    gcp(&["create-key-ring", "--key-ring", "shop"]).ok();
    gcp(&[&["create-key"][..], &key].concat()).ok();
    // The customer's own binding, which the merge keeps.
    gcp(&[
        &["add-iam-binding"][..],
        &key,
        &["--binding-member", OWNER, "--role", "roles/cloudkms.admin"],
    ]
    .concat())
    .ok();
    let current = gcp(&[&["get-iam-policy"][..], &key].concat()).ok().json();
    std::fs::write(customer.cwd().join("iam.json"), current.to_string()).unwrap();

    let policy = |file: &str| {
        customer.run(&[
            "key",
            "policy",
            "--provider",
            "gcp",
            "--region",
            "us-east1",
            "--merge-into",
            file,
        ])
    };
    let merged = policy("iam.json");
    let doc = merged.ok().json();
    let help = customer
        .run(&["key", "policy", "--provider", "gcp", "--region", "us-east1"])
        .ok()
        .json();
    let bindings = doc["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 3, "{doc}");
    assert_eq!(bindings[0]["members"], serde_json::json!([OWNER]));
    assert_eq!(
        &bindings[1..],
        help["bindings"].as_array().unwrap().as_slice()
    );
    assert_eq!(doc["etag"], current["etag"]);
    assert!(
        merged
            .stderr
            .contains("binding of role \"roles/cloudkms.cryptoKeyEncrypterDecrypter\": added"),
        "{}",
        merged.stderr
    );
    std::fs::write(customer.cwd().join("merged.json"), &merged.stdout).unwrap();

    // Idempotent: merging the merged file prints it again and says nothing changed.
    let again = policy("merged.json");
    assert_eq!(again.ok().json(), doc);
    assert_eq!(
        again.stderr.matches("already there, unchanged").count(),
        2,
        "{}",
        again.stderr
    );

    let put = gcp(&[
        &["set-iam-policy"][..],
        &key,
        &["--policy-file", "merged.json"],
    ]
    .concat());
    put.ok();
    let check = customer
        .run(&[
            "key",
            "check-policy",
            "--provider",
            "gcp",
            "--region",
            "us-east1",
            "--key-id",
            KEY,
            "--file",
            "merged.json",
        ])
        .ok()
        .json();
    assert_eq!(check["verdict"], "ok", "{check}");
    let registered = customer
        .run(&[
            "key",
            "register",
            "--provider",
            "gcp",
            "--region",
            "us-east1",
            "--key-id",
            KEY,
        ])
        .ok()
        .json();
    assert_eq!(registered["gcp"]["keyID"], KEY, "{registered}");

    // A file that is not an IAM policy is refused with the reason, and nothing is printed.
    std::fs::write(customer.cwd().join("bad.json"), "[1]").unwrap();
    let bad = policy("bad.json");
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stdout.is_empty());
    assert!(
        bad.stderr.contains("bad.json") && bad.stderr.contains("expected a JSON object"),
        "{}",
        bad.stderr
    );
}
