//! Owner-only files and folders whatever the umask: `serve --dev` and `admin` started under
//! umask 022 (which would leave new files readable by everyone) create the data dir, the
//! store, the datacenters folder and each datacenter file for their owner alone. The umask is
//! set by the shell that starts the binary, as an operator's would be.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use common::{Customer, Proc, free_port, wait_healthy};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn serve_and_admin_create_owner_only_files_under_umask_022() {
    let customer = Customer::new();
    // The umask really is 022 in such a shell: what it creates is readable by others.
    let ctl = customer
        .shell()
        .args(["-c", "umask 022 && mkdir control && touch control/file"])
        .status()
        .unwrap();
    assert!(ctl.success());
    assert_eq!(mode(&customer.cwd().join("control")), 0o755);
    assert_eq!(mode(&customer.cwd().join("control/file")), 0o644);

    let (api, kms) = (free_port(), free_port());
    let log = std::fs::File::create(customer.cwd().join("serve.log")).unwrap();
    let mut child = customer
        .shell()
        .args(["-c", "umask 022 && exec keyplane serve --dev"])
        .env("KEYPLANE_LISTEN", format!("127.0.0.1:{api}"))
        .env("KEYPLANE_KMS_LISTEN", format!("127.0.0.1:{kms}"))
        .env("KEYPLANE_AZURE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_healthy(&format!("http://127.0.0.1:{api}"), &mut child);
    let _server = Proc(child);

    // A database, so that a datacenter file and its folder exist.
    let key = customer.run(&["kms", "create-key", "--output", "arn"]);
    let key = key.ok().stdout.trim().to_string();
    customer
        .run(&["kms", "put-key-policy", "--key-id", &key, "--merge"])
        .ok();
    customer
        .run(&["key", "register", "--region", "us-east-2", "--key-id", &key])
        .ok();
    customer
        .run(&[
            "db",
            "create",
            "--name",
            "modes",
            "--keyspace",
            "shop",
            "--region",
            "us-east-2",
        ])
        .ok();

    let data = customer.cwd().join("keyplane-data");
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(mode(&data.join("keyplane.db")), 0o600, "the store");
    for companion in ["keyplane.db-wal", "keyplane.db-shm"] {
        let p = data.join(companion);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{companion}");
        }
    }
    assert_eq!(mode(&data.join("dev-credentials.json")), 0o600);
    let dcs = data.join("datacenters");
    assert_eq!(mode(&dcs), 0o700, "the datacenters folder");
    let files: Vec<_> = std::fs::read_dir(&dcs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "db")),
        "a datacenter file: {files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // The operator's commands create a missing data dir (and its parents) owner-only too.
    let admin = customer
        .shell()
        .args([
            "-c",
            "umask 022 && exec keyplane admin list-orgs --data-dir fresh/nested",
        ])
        .output()
        .unwrap();
    assert!(admin.status.success(), "{admin:?}");
    assert_eq!(mode(&customer.cwd().join("fresh")), 0o700);
    assert_eq!(mode(&customer.cwd().join("fresh/nested")), 0o700);
    assert_eq!(
        mode(&customer.cwd().join("fresh/nested/keyplane.db")),
        0o600
    );
}
