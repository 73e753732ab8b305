//! An OpenBao / Vault Transit key through the `keyplane` binary, over real servers: `serve
//! --dev` with an OpenBao site named in its configuration file (and its sealing key created in
//! the data directory, owner-only), a real `bao server -dev` as the customer's key service. The
//! customer asks for the policy, runs the `bao` commands it prints, registers the key with the
//! secret ID read from standard input, deploys a database and writes to it; keyplane restarted
//! with the same data directory serves the data again through the sealed login, and a restart
//! with another sealing key is refused.
mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Customer, Proc, data_api_call, serve_dev_with};
use keyplane_testkit::BaoServer;
use serde_json::{Value, json};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn wait_db(customer: &Customer, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let db = customer
            .run(&["db", "get", "ledger", "--output", "json"])
            .ok()
            .json();
        if db["status"] == want {
            return db;
        }
        assert!(Instant::now() < deadline, "never {want}: {db}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn serve(customer: &Customer) -> (Proc, Value) {
    serve_dev_with(
        customer,
        &["--config", "keyplane.toml", "--key-check-interval", "1"],
    )
}

#[test]
fn an_openbao_key_is_registered_from_the_cli_and_its_login_survives_a_restart() {
    let rt = rt();
    let bao = rt.block_on(async {
        let bao = BaoServer::start().await;
        bao.bao(&["secrets", "enable", "transit"]).await;
        bao.bao(&["auth", "enable", "approle"]).await;
        bao.bao(&["write", "-f", "transit/keys/ledger", "type=aes256-gcm96"])
            .await;
        bao
    });
    let key = format!("{}/v1/transit/keys/ledger", bao.address);
    let customer = Customer::new();
    std::fs::write(
        customer.cwd().join("keyplane.toml"),
        "[regions]\nopenbao = [\"local\"]\n",
    )
    .unwrap();
    let (server, creds) = serve(&customer);
    let sealing = customer.cwd().join("keyplane-data/sealing.key");
    assert_eq!(
        std::fs::metadata(&sealing).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let help = customer
        .run(&[
            "key",
            "policy",
            "--provider",
            "openbao",
            "--region",
            "local",
            "--key-id",
            &key,
        ])
        .ok()
        .json();
    assert_eq!(help["providerId"], "auth/approle/role/keyplane", "{help}");
    let outputs = rt.block_on(bao.run_help_commands(&help["openbao"]["commands"]));
    let (role_id, secret_id) = (
        outputs[outputs.len() - 2].clone(),
        outputs[outputs.len() - 1].clone(),
    );

    // Registered with the secret ID on standard input; the answer never carries it.
    let mut child = customer
        .command()
        .args([
            "key",
            "register",
            "--provider",
            "openbao",
            "--region",
            "local",
            "--key-id",
            &key,
            "--role-id",
            &role_id,
            "--secret-id-file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret_id}\n").as_bytes())
        .unwrap();
    let out = common::Run::of(child.wait_with_output().unwrap());
    let registered = out.ok().json();
    assert_eq!(registered["openbao"]["keyID"], key.as_str(), "{registered}");
    assert!(!out.stdout.contains(&secret_id) && !out.stdout.contains(&role_id));
    // A JWT role for the serverless slot: the help's commands run, and the key is registered
    // with nothing secret.
    rt.block_on(bao.bao(&["auth", "enable", "jwt"]));
    let jwt_help = customer
        .run(&[
            "key",
            "policy",
            "--provider",
            "openbao",
            "--type",
            "serverless",
            "--region",
            "local",
            "--key-id",
            &key,
            "--auth",
            "jwt",
        ])
        .ok()
        .json();
    assert_eq!(
        jwt_help["providerId"], "auth/jwt/role/keyplane",
        "{jwt_help}"
    );
    rt.block_on(bao.run_help_commands(&jwt_help["openbao"]["commands"]));
    let jwt = customer
        .run(&[
            "key",
            "register",
            "--provider",
            "openbao",
            "--type",
            "serverless",
            "--region",
            "local",
            "--key-id",
            &key,
            "--auth",
            "jwt",
        ])
        .ok()
        .json();
    assert_eq!(jwt["openbao"]["keyID"], key.as_str(), "{jwt}");

    // The login flags are refused for a cloud key.
    let refused = customer.run(&[
        "key",
        "register",
        "--region",
        "us-east-2",
        "--key-id",
        "arn:x",
        "--role-id",
        "r",
    ]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("--provider openbao"), "{refused:?}");

    customer
        .run(&[
            "db",
            "create",
            "--name",
            "ledger",
            "--keyspace",
            "shop",
            "--provider",
            "openbao",
            "--region",
            "local",
        ])
        .ok();
    let db = wait_db(&customer, "ACTIVE");
    let id = db["id"].as_str().unwrap().to_string();
    let token = creds["token"].as_str().unwrap().to_string();
    let collection = |api: &str| format!("{api}/db/{id}-local/api/json/v1/shop/entries");
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let (st, r) = data_api_call(
        &format!("{api}/db/{id}-local/api/json/v1/shop"),
        &token,
        &json!({"createCollection": {"name": "entries"}}).to_string(),
    );
    assert_eq!(st, 200, "{r}");
    let (st, r) = data_api_call(
        &collection(&api),
        &token,
        &json!({"insertMany": {"documents": [{"_id": "a"}, {"_id": "b"}]}}).to_string(),
    );
    assert_eq!(st, 200, "{r}");

    // Restarted on the same data directory: the sealed login opens, the data is served.
    drop(server);
    let (server, creds) = serve(&customer);
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let (st, r) = data_api_call(
        &collection(&api),
        &token,
        &json!({"countDocuments": {}}).to_string(),
    );
    assert_eq!((st, &r["status"]["count"]), (200, &json!(2)), "{r}");
    drop(server);

    // Another sealing key: serve refuses to start, saying why.
    std::fs::write(&sealing, format!("{}\n", "ab".repeat(32))).unwrap();
    let out = customer
        .command()
        .args(["serve", "--dev", "--config", "keyplane.toml"])
        .env(
            "KEYPLANE_LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env(
            "KEYPLANE_KMS_LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env("KEYPLANE_AZURE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("same --sealing-key-file"), "{stderr}");

    // Nothing in the data directory holds the secret ID or the role ID in plaintext.
    for entry in std::fs::read_dir(customer.cwd().join("keyplane-data")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            assert!(!bytes.contains(&secret_id), "{}", p.display());
            assert!(!bytes.contains(&role_id), "{}", p.display());
        }
    }
    let log = std::fs::read_to_string(customer.cwd().join("serve.log")).unwrap();
    assert!(!log.contains(&secret_id) && !log.contains(&role_id));
}
