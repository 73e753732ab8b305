//! `keyplane kms gcp …` as a customer runs it, against `keyplane kms serve` on a free port:
//! key ring, key, bindings, version states, rotation, and what the platform's service account
//! may then do (checked with testIamPermissions and encrypt calls over HTTP).
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, Proc as Server, free_port};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PLATFORM: &str = "serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com";

fn start_kms(dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["kms", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kms serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

/// Runs `keyplane kms gcp ARGS --endpoint … --kms-credentials-file …`; returns (ok, JSON or
/// stderr).
fn gcp(endpoint: &str, dir: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(BIN)
        .args(["kms", "gcp"])
        .args(args)
        .args(["--endpoint", endpoint])
        .arg("--kms-credentials-file")
        .arg(dir.join("credentials.json"))
        .arg("--credentials-file")
        .arg(dir.join("none.json"))
        .output()
        .unwrap();
    if out.status.success() {
        (true, serde_json::from_slice(&out.stdout).unwrap())
    } else {
        (
            false,
            Value::String(String::from_utf8_lossy(&out.stderr).into_owned()),
        )
    }
}

fn platform_token(dir: &Path) -> String {
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("credentials.json")).unwrap())
            .unwrap();
    creds["gcp"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["member"] == PLATFORM)
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A raw Cloud KMS REST call as the platform (what the adapter sends).
fn as_platform(endpoint: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{endpoint}/v1/{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn the_customer_side_of_cloud_kms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    let (_server, ep) = start_kms(&dir);
    let key_args = ["--key-ring", "ring", "--key", "db"];

    let (ok, ring) = gcp(&ep, &dir, &["create-key-ring", "--key-ring", "ring"]);
    assert!(ok, "{ring}");
    assert_eq!(
        ring["name"],
        "projects/customer-project/locations/us-east1/keyRings/ring"
    );
    let (ok, key) = gcp(&ep, &dir, &[&["create-key"][..], &key_args].concat());
    assert!(ok, "{key}");
    let name = key["name"].as_str().unwrap().to_string();
    assert_eq!(key["primary"]["state"], "ENABLED");

    let token = platform_token(&dir);
    let perms = json!({ "permissions": ["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeys.get"] });
    let test = format!("{name}:testIamPermissions");
    assert_eq!(as_platform(&ep, &token, &test, perms.clone()).1, json!({}));

    for role in [
        "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        "roles/cloudkms.viewer",
    ] {
        let (ok, p) = gcp(
            &ep,
            &dir,
            &[
                &["add-iam-binding"][..],
                &key_args,
                &["--binding-member", PLATFORM, "--role", role],
            ]
            .concat(),
        );
        assert!(ok, "{p}");
    }
    let (_, policy) = gcp(&ep, &dir, &[&["get-iam-policy"][..], &key_args].concat());
    assert_eq!(policy["bindings"].as_array().unwrap().len(), 2, "{policy}");
    assert_eq!(
        as_platform(&ep, &token, &test, perms.clone()).1["permissions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let encrypt = format!("{name}:encrypt");
    let plaintext = json!({ "plaintext": "aGVsbG8=" });
    assert_eq!(as_platform(&ep, &token, &encrypt, plaintext.clone()).0, 200);

    let (ok, v) = gcp(&ep, &dir, &[&["disable-version"][..], &key_args].concat());
    assert!(ok, "{v}");
    assert_eq!(v["state"], "DISABLED");
    let (status, err) = as_platform(&ep, &token, &encrypt, plaintext.clone());
    assert_eq!(
        (status, err["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION"))
    );
    assert!(
        gcp(
            &ep,
            &dir,
            &[&["enable-version"][..], &key_args, &["--version", "1"]].concat()
        )
        .0
    );
    assert_eq!(as_platform(&ep, &token, &encrypt, plaintext.clone()).0, 200);

    let (ok, rotated) = gcp(&ep, &dir, &[&["rotate"][..], &key_args].concat());
    assert!(ok, "{rotated}");
    assert_eq!(
        rotated["primary"]["name"],
        format!("{name}/cryptoKeyVersions/2")
    );
    let (_, d) = gcp(&ep, &dir, &["describe", "--key", &name]);
    assert_eq!(d["versions"].as_array().unwrap().len(), 2, "{d}");

    let (ok, p) = gcp(
        &ep,
        &dir,
        &[
            &["remove-iam-binding"][..],
            &key_args,
            &[
                "--binding-member",
                PLATFORM,
                "--role",
                "roles/cloudkms.cryptoKeyEncrypterDecrypter",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{p}");
    assert_eq!(as_platform(&ep, &token, &encrypt, plaintext).0, 403);

    let (ok, v) = gcp(
        &ep,
        &dir,
        &[&["destroy-version"][..], &key_args, &["--version", "1"]].concat(),
    );
    assert!(ok, "{v}");
    assert_eq!(v["state"], "DESTROY_SCHEDULED");

    // Refusals come back with Cloud KMS's status and message.
    let (ok, e) = gcp(&ep, &dir, &["create-key-ring", "--key-ring", "ring"]);
    assert!(!ok);
    assert!(e.as_str().unwrap().contains("ALREADY_EXISTS"), "{e}");
    let (ok, e) = gcp(&ep, &dir, &["describe", "--key", "db"]);
    assert!(!ok && e.as_str().unwrap().contains("--key-ring"), "{e}");
}

/// The GCP side of `keyplane key policy --provider gcp --merge-into`: the key's getIamPolicy
/// output, merged with keyplane's bindings by core's merge (what the command prints), goes back
/// with `set-iam-policy`; the platform can then encrypt, and the stale file is refused by its
/// etag.
#[test]
fn a_merged_iam_policy_goes_back_with_set_iam_policy_and_a_stale_one_is_refused() {
    use keyplane_core::policy::gcp::recommended_bindings;
    use keyplane_core::policy::{GcpIamPolicyMerge, PolicyMerge};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    let (_server, ep) = start_kms(&dir);
    let key_args = ["--key-ring", "ring", "--key", "db"];
    assert!(gcp(&ep, &dir, &["create-key-ring", "--key-ring", "ring"]).0);
    let (ok, key) = gcp(&ep, &dir, &[&["create-key"][..], &key_args].concat());
    assert!(ok, "{key}");
    let name = key["name"].as_str().unwrap().to_string();
    // The customer's own binding, which the merge must keep.
    let owner = "user:owner@customer.example";
    assert!(
        gcp(
            &ep,
            &dir,
            &[
                &["add-iam-binding"][..],
                &key_args,
                &["--binding-member", owner, "--role", "roles/cloudkms.admin"],
            ]
            .concat(),
        )
        .0
    );
    let (_, current) = gcp(&ep, &dir, &[&["get-iam-policy"][..], &key_args].concat());
    let email = PLATFORM.trim_start_matches("serviceAccount:").to_string();
    let merged = GcpIamPolicyMerge
        .merge(&current.to_string(), &recommended_bindings(&[email]))
        .unwrap();
    let file = tmp.path().join("merged.json");
    std::fs::write(&file, &merged.document).unwrap();
    let file_arg = file.to_str().unwrap();

    let token = platform_token(&dir);
    let encrypt = format!("{name}:encrypt");
    let plaintext = json!({ "plaintext": "aGVsbG8=" });
    assert_eq!(as_platform(&ep, &token, &encrypt, plaintext.clone()).0, 403);
    let (ok, put) = gcp(
        &ep,
        &dir,
        &[
            &["set-iam-policy"][..],
            &key_args,
            &["--policy-file", file_arg],
        ]
        .concat(),
    );
    assert!(ok, "{put}");
    let (_, now) = gcp(&ep, &dir, &[&["get-iam-policy"][..], &key_args].concat());
    let bindings = now["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 3, "{now}");
    assert_eq!(bindings[0]["members"], json!([owner]));
    assert_ne!(now["etag"], current["etag"]);
    assert_eq!(as_platform(&ep, &token, &encrypt, plaintext).0, 200);

    // The file still carries the etag it was read with: Cloud KMS refuses it now.
    let (ok, err) = gcp(
        &ep,
        &dir,
        &[
            &["set-iam-policy"][..],
            &key_args,
            &["--policy-file", file_arg],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(err.as_str().unwrap().contains("ABORTED"), "{err}");
    // A file that is not a policy is refused before any call, with the reason.
    std::fs::write(&file, r#"{"bindings": [{"role": "", "members": []}]}"#).unwrap();
    let (ok, err) = gcp(
        &ep,
        &dir,
        &[
            &["set-iam-policy"][..],
            &key_args,
            &["--policy-file", file_arg],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        err.as_str().unwrap().contains("binding #0 has no role"),
        "{err}"
    );
    let (_, after) = gcp(&ep, &dir, &[&["get-iam-policy"][..], &key_args].concat());
    assert_eq!(after, now);
}
