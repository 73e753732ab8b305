//! The Data API benchmark's unencrypted baseline, compiled only with the `bench-plain`
//! feature (the product binary does not enable it): a datacenter served from a plain SQLite
//! file through exactly the code every other datacenter goes through, minus the key.
use keyplane_docstore::DocStore;

use super::{DataPlane, task_error};
use crate::error::AppResult;

impl DataPlane {
    pub(super) fn is_plain_for_benchmark(&self, dc_id: &str) -> bool {
        self.plain_for_benchmark
            .read()
            .map(|p| p.contains(dc_id))
            .unwrap_or(false)
    }

    /// FOR THE BENCHMARK HARNESS ONLY (`crates/server/benches/datapath.rs`): it stores data
    /// UNENCRYPTED.
    ///
    /// Replaces an ACTIVE datacenter's encrypted file with an empty plain SQLite store (the
    /// same schema, with `keyspace` created) and serves the datacenter from it: the baseline
    /// the Data API's HTTP benchmark measures the cost of encryption against, through the
    /// same routes in the same run. Lasts until the process exits.
    pub async fn bench_only_use_plain_file(&self, dc_id: &str, keyspace: &str) -> AppResult<()> {
        self.delete_files(dc_id).await?;
        if let Ok(mut p) = self.plain_for_benchmark.write() {
            p.insert(dc_id.to_string());
        }
        let path = self.file(dc_id);
        let keyspace = keyspace.to_string();
        tokio::task::spawn_blocking(move || -> AppResult<()> {
            let store = DocStore::create_plain(&path)?;
            store.create_keyspace(&keyspace)?;
            Ok(())
        })
        .await
        .map_err(task_error)??;
        Ok(())
    }
}
