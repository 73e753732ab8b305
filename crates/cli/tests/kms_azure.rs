//! `keyplane kms azure …` as a key owner runs it: the built-in vault started by
//! `kms azure serve` on a free port, and every customer-side command against it through the
//! credentials file it writes.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, Proc as Server, free_port};
use std::time::{Duration, Instant};

use keyplane_core::AzureKeyId;
use keyplane_core::policy::azure::{AzurePlatformApp, check_azure_access};
use serde_json::Value;

fn start(data: &Path) -> (Server, Value) {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "kms",
            "azure",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    // The port is bound before the vault writes its files; wait for both.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !data.join("azure-credentials.json").exists()
    {
        assert!(Instant::now() < deadline, "kms azure serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("azure-credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(creds["vaultUrl"], format!("https://localhost:{port}"));
    (server, creds)
}

/// Runs `keyplane kms azure <args> --credentials-file …`; returns (success, stdout JSON or stderr).
fn az(data: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(BIN)
        .args(["kms", "azure"])
        .args(args)
        .arg("--credentials-file")
        .arg(data.join("azure-credentials.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn ok(data: &Path, args: &[&str]) -> Value {
    let (success, v, err) = az(data, args);
    assert!(success, "{args:?} failed: {err}");
    v
}

#[test]
fn the_key_owners_commands_against_the_built_in_vault() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let (_server, creds) = start(&data);

    let k = ok(&data, &["create-key", "--name", "orders", "--size", "3072"]);
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["keySize"], 3072);
    assert_eq!(k["enabled"], true);
    let key_id = k["keyId"].as_str().unwrap().to_string();
    let v1 = k["version"].as_str().unwrap().to_string();
    assert_eq!(
        key_id,
        format!("{}/keys/orders", creds["vaultUrl"].as_str().unwrap())
    );

    // The role, then the list the checker reads.
    let a = ok(&data, &["assign-role", "--key", "orders"]);
    assert_eq!(
        a["properties"]["principalId"],
        creds["platform"]["objectId"]
    );
    let listed = ok(&data, &["list-roles", "--key", &key_id]);
    let authority = key_id
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut key = AzureKeyId::parse_allowing(&key_id, &[authority]).unwrap();
    key.vault_name = Some(creds["vaultName"].as_str().unwrap().to_string());
    let app = AzurePlatformApp {
        client_id: creds["platform"]["clientId"].as_str().unwrap().into(),
        object_id: creds["platform"]["objectId"].as_str().map(String::from),
        tenant_id: None,
    };
    let report = check_azure_access(&listed.to_string(), &key, &app).unwrap();
    assert!(report.verdict_ok, "{report:?}");

    // Rotation, then disable and enable every version.
    let r = ok(&data, &["rotate", "--key", "orders"]);
    let v2 = r["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    let d = ok(&data, &["disable", "--key", "orders"]);
    assert_eq!(d["versions"].as_array().unwrap().len(), 2);
    assert!(
        d["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["enabled"] == false)
    );
    assert_eq!(ok(&data, &["get", "--key", &key_id])["enabled"], false);
    ok(&data, &["enable", "--key", "orders", "--version", &v1]);
    assert_eq!(
        ok(&data, &["get", "--key", &format!("{key_id}/{v1}")])["enabled"],
        true
    );
    assert_eq!(
        ok(&data, &["get", "--key", "orders"])["enabled"],
        false,
        "only v1 was enabled"
    );

    let e = ok(
        &data,
        &[
            "set-expiry",
            "--key",
            "orders",
            "--expires",
            "2031-05-01T00:00:00Z",
        ],
    );
    assert_eq!(e["expires"], "2031-05-01T00:00:00Z");

    let removed = ok(&data, &["remove-role", "--key", "orders"]);
    assert_eq!(removed["removed"].as_array().unwrap().len(), 1);
    let listed = ok(&data, &["list-roles", "--key", "orders"]);
    assert!(
        !check_azure_access(&listed.to_string(), &key, &app)
            .unwrap()
            .verdict_ok
    );

    // Refusals are clear errors with a failing exit status.
    let (success, _, err) = az(&data, &["get", "--key", "missing"]);
    assert!(!success && err.contains("404 KeyNotFound"), "{err}");
    let (success, _, err) = az(&data, &["create-key", "--name", "bad_name"]);
    assert!(!success && err.contains("400 BadParameter"), "{err}");
    let (success, _, err) = az(
        &data,
        &["assign-role", "--key", "orders", "--role", "No Such Role"],
    );
    assert!(!success && err.contains("unknown role"), "{err}");
    let (success, _, err) = az(
        &data,
        &["get", "--key", "https://other.vault.azure.net/keys/orders"],
    );
    assert!(!success && err.contains("--vault-url"), "{err}");
    let (success, _, err) = az(
        &data,
        &["set-expiry", "--key", "orders", "--expires", "soon"],
    );
    assert!(!success && err.contains("RFC 3339"), "{err}");
}
