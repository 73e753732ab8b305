//! Background work whose progress is stored, so that a restart (or a crash) resumes it:
//! provisioning a datacenter (`provision`: data key, encrypted file, copy of the data), and
//! terminating one or a whole database (`terminate`). The runner claims one job at a time,
//! retries transient failures with a back-off, and records a permanent one on the
//! datacenter.
//!
//! Every step is idempotent: a job re-run after a crash finds what the previous run did
//! (the wrapped key is stored once, an existing file is opened rather than created).
mod provision;
mod status;
mod terminate;

use std::time::Duration;

use chrono::Utc;
use keyplane_core::DatabaseStatus;
use keyplane_store::{Datacenter, Job, JobKind};
use uuid::Uuid;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::keys::key_problem;
pub use status::refresh_database_status;

/// Attempts before a job that keeps failing transiently is given up.
const MAX_ATTEMPTS: i32 = 8;

/// Runs jobs until `shutdown` resolves. Jobs a crashed process left running are resumed.
pub async fn run_worker(app: App, shutdown: impl std::future::Future<Output = ()>) {
    match app.store.requeue_running_jobs().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "resuming jobs interrupted by a restart"),
        Err(e) => tracing::error!(error = %e, "could not requeue interrupted jobs"),
    }
    tokio::pin!(shutdown);
    loop {
        let job = match app.store.claim_job(Utc::now()).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "claiming a job failed");
                None
            }
        };
        match job {
            Some(job) => run_job(&app, job).await,
            None => {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(app.config.worker_poll) => {}
                }
            }
        }
    }
}

async fn run_job(app: &App, job: Job) {
    let result = match job.kind {
        JobKind::ProvisionDatacenter => provision::provision(app, &job).await,
        JobKind::TerminateDatacenter => terminate::terminate_datacenter(app, &job).await,
        JobKind::TerminateDatabase => terminate::terminate_database(app, job.database_id).await,
    };
    let outcome = match result {
        Ok(()) => {
            app.counters.job_done();
            app.store.finish_job(job.id).await
        }
        Err(e) if e.is_transient() && job.attempts < MAX_ATTEMPTS => {
            let delay = Duration::from_millis(250 * 2u64.pow(job.attempts.clamp(0, 6) as u32));
            tracing::warn!(job = job.id, error = %e, ?delay, "job failed transiently; retrying");
            let when = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            app.store.retry_job(job.id, when, &e.to_string()).await
        }
        Err(e) => {
            tracing::warn!(job = job.id, error = %e, "job failed");
            app.counters.job_failed();
            if let Some(dc) = &job.datacenter_id
                && let Err(se) = fail_datacenter(app, job.database_id, dc, &e).await
            {
                tracing::error!(error = %se, "recording a failed datacenter");
            }
            app.store.fail_job(job.id, &e.to_string()).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(job = job.id, error = %e, "recording a job's outcome failed");
    }
}

fn kms_reason(e: &AppError, dc: &Datacenter) -> String {
    match e {
        AppError::Kms(k) => key_problem(&k.kind, &dc.key_id, &k.message),
        other => other.to_string(),
    }
}

async fn fail_datacenter(app: &App, db_id: Uuid, dc_id: &str, e: &AppError) -> AppResult<()> {
    let Some(dc) = app.store.get_datacenter(dc_id).await? else {
        return Ok(());
    };
    let reason = format!("provisioning {} failed: {}", dc.region, kms_reason(e, &dc));
    app.store
        .set_datacenter_status(dc_id, DatabaseStatus::Error, &reason)
        .await?;
    refresh_database_status(app, db_id).await?;
    Ok(())
}
