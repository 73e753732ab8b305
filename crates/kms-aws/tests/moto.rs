//! Wire compatibility with moto, a public AWS emulator written independently of keyplane: the
//! happy path of every operation. moto runs everything in account 123456789012, ignores the
//! signature's credentials and enforces neither policies nor key states, so only the shapes of
//! requests and answers are proven here; the error kinds are tested against the built-in KMS.
//!
//! moto's server must be installed (`scripts/setup-test-deps` puts it in `<workspace>/.venv`):
//! this test fails, never skips, without it.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use keyplane_kms::{ErrorKind, KeyState, KmsConnector};
use tokio::process::{Child, Command};

const MOTO_ACCOUNT: &str = "123456789012";

/// A moto server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn find_moto_server() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("moto_server")).collect())
        .unwrap_or_default();
    candidates.push(workspace.join(".venv/bin/moto_server"));
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "moto_server is not installed (looked in $PATH and {}): run scripts/setup-test-deps",
            workspace.join(".venv/bin").display()
        )
    })
}

impl Moto {
    async fn start() -> Moto {
        let bin = find_moto_server();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status} before listening on port {port}");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "moto_server did not listen on port {port} within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn every_operation_speaks_the_wire_protocol_of_moto() {
    let moto = Moto::start().await;
    let customer = sdk_client(&moto.endpoint, "AKIDMOTOCUSTOMER", "moto-ignores-secrets");
    let role = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/creator");
    let key = customer_key(&customer, MOTO_ACCOUNT, &role, None).await;
    let other = customer_key(&customer, MOTO_ACCOUNT, &role, None).await;
    let (connector, kms) = platform_at(&moto.endpoint, MOTO_ACCOUNT, bogus_credentials(), fast_retries());

    let d = kms.describe_key(&key).await.unwrap();
    assert_eq!(d.arn, key);
    assert_eq!(d.account, MOTO_ACCOUNT);
    assert_eq!(d.region, REGION);
    assert_eq!(d.state, KeyState::Enabled);
    assert_eq!(d.key_spec, "SYMMETRIC_DEFAULT");
    assert_eq!(d.key_usage, "ENCRYPT_DECRYPT");
    assert!(!d.multi_region);

    // moto 5 fails DisableKey and EnableKey named by ARN with a 500 (a KeyError in its
    // backend); AWS accepts both forms, and EnableKey is own-account only anyway, so the
    // bare key ID is an equivalent request.
    let key_id = key.rsplit('/').next().unwrap();
    customer.disable_key().key_id(key_id).send().await.unwrap();
    assert_eq!(kms.describe_key(&key).await.unwrap().state, KeyState::Disabled);
    kms.enable_key(key_id).await.unwrap();
    assert_eq!(kms.describe_key(&key).await.unwrap().state, KeyState::Enabled);

    let c = ctx(&[("db", "d1"), ("org", "o1")]);
    let ct = kms.encrypt(&key, b"hello", &c).await.unwrap();
    assert_eq!(kms.decrypt(&key, &ct, &c).await.unwrap().as_slice(), b"hello");
    let ct_no_ctx = kms.encrypt(&key, b"bare", &ctx(&[])).await.unwrap();
    assert_eq!(kms.decrypt(&key, &ct_no_ctx, &ctx(&[])).await.unwrap().as_slice(), b"bare");

    let dk = kms.generate_data_key(&key, &c).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert_eq!(kms.decrypt(&key, &dk.ciphertext, &c).await.unwrap().as_slice(), dk.plaintext.as_slice());
    let wrapped = kms.generate_data_key_without_plaintext(&key, &c).await.unwrap();
    assert_eq!(kms.decrypt(&key, &wrapped, &c).await.unwrap().len(), 32);

    let moved = kms.re_encrypt(&ct, &key, &other, &c).await.unwrap();
    assert_eq!(kms.decrypt(&other, &moved, &c).await.unwrap().as_slice(), b"hello");

    let grantee = connector.volume_grantee(&identity(MOTO_ACCOUNT));
    let grant_id = kms.create_grant(&key, &grantee, &["Decrypt", "kms:Encrypt"], "keyplane-volumes").await.unwrap();
    let grants = kms.list_grants(&key).await.unwrap();
    let g = grants.iter().find(|g| g.grant_id == grant_id).unwrap_or_else(|| panic!("{grants:?}"));
    assert_eq!(g.grantee, grantee);
    assert_eq!(g.name.as_deref(), Some("keyplane-volumes"));
    let mut ops = g.operations.clone();
    ops.sort();
    assert_eq!(ops, ["Decrypt", "Encrypt"]);
    kms.revoke_grant(&key, &grant_id).await.unwrap();
    assert!(kms.list_grants(&key).await.unwrap().iter().all(|g| g.grant_id != grant_id));

    // moto's error answers decode to the same kinds as AWS's.
    let unknown = format!("arn:aws:kms:{REGION}:{MOTO_ACCOUNT}:key/00000000-0000-4000-8000-000000000000");
    let e = kms.describe_key(&unknown).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    moto.stop().await;
}
