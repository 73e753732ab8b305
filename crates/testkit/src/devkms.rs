//! keyplane's built-in devkms, in-process on a free loopback port.

use std::path::{Path, PathBuf};

use keyplane_devkms::{DevKms, DevKmsConfig};
use tokio::sync::oneshot;

use crate::{REGION, kms_client};

/// A devkms serving on `127.0.0.1:<free port>`. [`stop`](Self::stop) shuts it down and checks
/// that it ended cleanly; dropping it without `stop` only signals the shutdown.
pub struct DevKmsServer {
    pub kms: DevKms,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The data dir: root key, admin token, state and `credentials.json`.
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl DevKmsServer {
    /// A fresh devkms in a temp dir, without clock control (its default).
    pub async fn start() -> DevKmsServer {
        DevKmsServer::start_in_temp_dir(false).await
    }

    /// A fresh devkms in a temp dir whose `/_admin/clock/advance` route is enabled.
    pub async fn start_with_clock_control() -> DevKmsServer {
        DevKmsServer::start_in_temp_dir(true).await
    }

    async fn start_in_temp_dir(allow_clock_control: bool) -> DevKmsServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = DevKmsServer::start_in(&tmp.path().join("kms"), allow_clock_control).await;
        s.tmp = Some(tmp);
        s
    }

    /// A devkms on the data in `dir` (created if missing), e.g. to restart a stopped one.
    pub async fn start_in(dir: &Path, allow_clock_control: bool) -> DevKmsServer {
        let kms = DevKms::open(DevKmsConfig {
            data_dir: dir.to_path_buf(),
            extra_identities: vec![],
            allow_clock_control,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kms.clone().run(listener, async {
            let _ = rx.await;
        }));
        DevKmsServer {
            kms,
            endpoint,
            dir: dir.to_path_buf(),
            tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server, panicking unless it shut down cleanly, and hands back the temp dir
    /// guard (if [`start`](Self::start) made one) so the data survives for a restart.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.tmp.take()
    }

    /// A client in [`REGION`] acting as one of devkms's identities, by its ARN.
    pub fn client(&self, principal: &str) -> aws_sdk_kms::Client {
        let c = self
            .kms
            .credentials(principal)
            .unwrap_or_else(|| panic!("no identity {principal}"));
        self.client_with(&c.access_key_id, &c.secret_access_key)
    }

    /// A client in [`REGION`] signing with any access key, known to the server or not.
    pub fn client_with(&self, akid: &str, secret: &str) -> aws_sdk_kms::Client {
        kms_client(&self.endpoint, REGION, crate::credentials(akid, secret))
    }
}

impl Drop for DevKmsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
