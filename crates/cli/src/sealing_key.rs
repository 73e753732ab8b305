//! The platform's sealing key (see `keyplane_core::sealing`): read from the operator's file,
//! or created owner-only in the data directory on first start; then checked against the
//! store, so that a process holding another key than the one the store's logins were sealed
//! with refuses to start instead of failing on every OpenBao key.
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use keyplane_core::SealingKey;
use keyplane_store::{FILE_MODE, Store};

/// The file name in the data directory when the operator names none.
pub const DEFAULT_FILE: &str = "sealing.key";
/// The store setting that proves which key the store's sealed values were made with.
const CHECK_SETTING: &str = "sealing_key_check";
const CHECK_AAD: &[u8] = b"keyplane sealing key check";
const CHECK_PLAINTEXT: &[u8] = b"keyplane";

/// The key at `path` (hex, one line), created there when `create` and the file is absent.
pub fn load(path: &Path, create: bool) -> anyhow::Result<SealingKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the sealing key file is readable by others than its owner; chmod 600 it"
                );
            }
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("the sealing key file {} is not hex", path.display()))?;
            SealingKey::from_bytes(&bytes)
                .with_context(|| format!("the sealing key file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = SealingKey::generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(path)
                .with_context(|| format!("creating the sealing key file {}", path.display()))?;
            f.write_all(format!("{}\n", hex::encode(key.bytes())).as_bytes())?;
            f.sync_all()?;
            tracing::info!(file = %path.display(), "created the sealing key");
            Ok(key)
        }
        Err(e) => {
            Err(e).with_context(|| format!("reading the sealing key file {}", path.display()))
        }
    }
}

/// The key file to use: the operator's, else the data directory's.
pub fn path(given: Option<&Path>, data_dir: &Path) -> (PathBuf, bool) {
    match given {
        Some(p) => (p.to_path_buf(), false),
        None => (data_dir.join(DEFAULT_FILE), true),
    }
}

/// Records which key the store's values are sealed with (the first process to start), or
/// refuses `key` if it is another one.
pub async fn check_against_store(key: &SealingKey, store: &dyn Store) -> anyhow::Result<()> {
    let proof = hex::encode(key.seal(CHECK_PLAINTEXT, CHECK_AAD)?);
    let stored = store.put_setting_if_absent(CHECK_SETTING, &proof).await?;
    let opens = hex::decode(&stored)
        .ok()
        .and_then(|b| key.open(&b, CHECK_AAD).ok())
        .is_some_and(|p| p.as_slice() == CHECK_PLAINTEXT);
    if !opens {
        anyhow::bail!(
            "this process's sealing key is not the one the store's sealed credentials were made with: start every \
             keyplane process of this store with the same --sealing-key-file"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_store_refuses_another_processes_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keyplane.db");
        let store = keyplane_store::open(db.to_str().unwrap()).await.unwrap();
        let first = SealingKey::generate();
        check_against_store(&first, store.as_ref()).await.unwrap();
        // The same key again (a restart, another replica with the same file): accepted.
        let same = SealingKey::from_bytes(first.bytes()).unwrap();
        check_against_store(&same, store.as_ref()).await.unwrap();
        let e = check_against_store(&SealingKey::generate(), store.as_ref())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("same --sealing-key-file"), "{e}");
    }

    #[test]
    fn a_created_key_is_owner_only_and_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DEFAULT_FILE);
        assert!(load(&p, false).is_err(), "not created unless asked");
        let k = load(&p, true).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load(&p, true).unwrap();
        assert_eq!(again.bytes(), k.bytes());
        std::fs::write(&p, "zz\n").unwrap();
        assert!(load(&p, true).is_err());
    }
}
