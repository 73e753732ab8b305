//! The encryption promises: a datacenter file opens only with its data key, has no plaintext
//! SQLite header, and leaks neither document text nor key bytes; acknowledged writes survive
//! kill -9.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use keyplane_docstore::{DataKey, DocStore, DocStoreError, is_plain_sqlite};
use serde_json::json;

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip_and_reopen_with_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    {
        let s = DocStore::create(&path, &key(1)).unwrap();
        assert!(s.is_encrypted());
        s.create_keyspace("app").unwrap();
        s.create_collection("app", "users", None).unwrap();
        s.insert_one("app", "users", json!({"_id": "u1", "name": "Ada"}))
            .unwrap();
    }
    let s = DocStore::open(&path, &key(1)).unwrap();
    assert_eq!(
        s.get("app", "users", &json!("u1")).unwrap(),
        Some(json!({"_id": "u1", "name": "Ada"}))
    );
    assert_eq!(s.list_keyspaces().unwrap(), vec!["app".to_string()]);
}

#[test]
fn wrong_key_missing_file_and_existing_file_are_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    drop(DocStore::create(&path, &key(1)).unwrap());
    assert!(matches!(
        DocStore::open(&path, &key(2)),
        Err(DocStoreError::WrongKey)
    ));
    assert!(matches!(
        DocStore::open(dir.path().join("nope.db"), &key(1)),
        Err(DocStoreError::NotFound(_))
    ));
    assert!(matches!(
        DocStore::create(&path, &key(1)),
        Err(DocStoreError::AlreadyExists(_))
    ));
    // A plain open of the encrypted file fails too, and the right key still works afterwards.
    assert!(DocStore::open_plain(&path).is_err());
    DocStore::open(&path, &key(1)).unwrap();
}

#[test]
fn data_key_is_32_bytes_and_never_printed() {
    assert!(matches!(
        DataKey::from_slice(&[0u8; 31]),
        Err(DocStoreError::InvalidKey(_))
    ));
    let k = DataKey::from_slice(&[0xAB; 32]).unwrap();
    let dbg = format!("{k:?}");
    assert!(!dbg.contains("ab") && !dbg.contains("171"), "{dbg}");
    assert_eq!(dbg, "DataKey(<redacted>)");
}

#[test]
fn file_has_no_header_no_document_text_no_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    let k = key(9);
    let raw_key = k.expose_secret().to_vec();
    let secret = "TOPSECRET-needle-4f1c2e";
    {
        let s = DocStore::create(&path, &k).unwrap();
        s.create_keyspace("app").unwrap();
        s.create_collection("app", "notes", None).unwrap();
        for i in 0..200 {
            s.insert_one(
                "app",
                "notes",
                json!({"text": format!("{secret} number {i}"), "n": i}),
            )
            .unwrap();
        }
        // Bytes sit both in the WAL and, after a checkpoint, in the main file: check both.
        assert!(!is_plain_sqlite(&path));
        let bytes = all_bytes(dir.path());
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "document text in the WAL or db"
        );
        assert!(!contains(&bytes, b"notes"), "collection name in plaintext");
    }
    let bytes = all_bytes(dir.path());
    assert!(!is_plain_sqlite(&path));
    assert!(!contains(&bytes, b"SQLite format 3"));
    assert!(!contains(&bytes, secret.as_bytes()));
    assert!(!contains(&bytes, &raw_key));
    let hex_lower = hex::encode(&raw_key);
    assert!(!contains(&bytes, hex_lower.as_bytes()));
    assert!(!contains(&bytes, hex_lower.to_uppercase().as_bytes()));

    // The same workload over the plain baseline does show the text: the check has teeth.
    let plain = dir.path().join("plain.db");
    let s = DocStore::create_plain(&plain).unwrap();
    s.create_keyspace("app").unwrap();
    s.create_collection("app", "notes", None).unwrap();
    s.insert_one("app", "notes", json!({"text": secret}))
        .unwrap();
    drop(s);
    assert!(is_plain_sqlite(&plain));
    assert!(contains(&std::fs::read(&plain).unwrap(), secret.as_bytes()));
}

const CHILD_ENV: &str = "DOCSTORE_DURABILITY_CHILD";

/// Not a test on its own: the child side of `acknowledged_writes_survive_sigkill`. It writes
/// forever, printing `ACK n` after each insert returns, until the parent kills it.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = DocStore::open(&path, &key(3)).unwrap();
    let mut out = std::io::stdout();
    for i in 0u64.. {
        if i % 2 == 0 {
            s.insert_one(KS, C, json!({"_id": i, "payload": "x".repeat(500)}))
                .unwrap();
        } else {
            let batch = (0..10)
                .map(|k| json!({"_id": format!("b{i}-{k}"), "batch": i}))
                .collect();
            let r = s.insert_many(KS, C, batch, true).unwrap();
            assert!(r.iter().all(Result::is_ok));
        }
        use std::io::Write;
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dc.db");
    {
        let s = DocStore::create(&path, &key(3)).unwrap();
        s.create_keyspace(KS).unwrap();
        s.create_collection(KS, C, None).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "durability_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u64 = n.trim().parse().unwrap();
            acked = Some(n);
            if n >= 150 {
                break;
            }
        }
    }
    // Child::kill is SIGKILL on Unix: no destructors, no checkpoint, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = acked.expect("child acknowledged nothing");
    let s = DocStore::open(&path, &key(3)).unwrap();
    for i in 0..=acked {
        if i % 2 == 0 {
            assert!(
                s.get(KS, C, &json!(i)).unwrap().is_some(),
                "acknowledged write {i} of {acked} lost"
            );
        } else {
            assert_eq!(
                s.count(KS, C, &json!({"batch": i}), 100).unwrap().0,
                10,
                "batch {i}"
            );
        }
    }
    // Whatever was in flight at the kill is all-or-nothing: no torn batch.
    for i in (acked + 1..acked + 50).filter(|i| i % 2 == 1) {
        let n = s.count(KS, C, &json!({"batch": i}), 100).unwrap().0;
        assert!(n == 0 || n == 10, "batch {i} torn: {n} of 10");
    }
}
