//! Background work whose progress is stored, so that a restart (or a crash) resumes it:
//! provisioning a datacenter (`provision`: data key, encrypted file, copy of the data), and
//! terminating one or a whole database (`terminate`). The runner claims one job at a time,
//! retries transient failures with a back-off, and records a permanent one on the
//! datacenter.
//!
//! Jobs are leased, so that several processes on one store share the queue: a claim holds the
//! job for [`Config::job_lease`](crate::Config), the runner renews the lease every third of
//! it while the job runs, and a job whose lease passed (its process died or stalled) is taken
//! over by the next claim, on whichever replica. Only the lease's holder records an outcome;
//! a runner that finds its lease gone stops the job where it is.
//!
//! Every step is idempotent, so a job run again after a crash or a takeover (or, for a
//! moment, on two replicas at once) finds what the previous run did and repeats nothing
//! harmful: the wrapped data key is stored once and the one stored is the key of record, an
//! existing file is opened rather than created, statuses are set to what they must be. No
//! step makes a grant (the only grant keyplane creates is the registration check's, revoked
//! in the same request).
mod provision;
mod status;
mod terminate;

use std::time::Duration;

use chrono::Utc;
use keyplane_core::DatabaseStatus;
use keyplane_store::{Datacenter, Job, JobKind, Lease};
use uuid::Uuid;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::keys::key_problem;
pub use status::refresh_database_status;

/// Attempts before a job that keeps failing transiently is given up.
const MAX_ATTEMPTS: i32 = 8;

/// Runs jobs until `shutdown` resolves. On a store no other process runs jobs on, the jobs a
/// crashed run left running are resumed at once; elsewhere they are taken over when their
/// leases pass.
pub async fn run_worker(app: App, shutdown: impl std::future::Future<Output = ()>) {
    if app.config.sole_job_runner {
        match app.store.expire_job_leases(Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "resuming jobs interrupted by a restart"),
            Err(e) => {
                tracing::error!(error = %e, "could not release the leases of interrupted jobs")
            }
        }
    }
    tokio::pin!(shutdown);
    loop {
        let now = Utc::now();
        let job = match app
            .store
            .claim_job(&app.config.replica_id, now, lease_end(&app, now))
            .await
        {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "claiming a job failed");
                None
            }
        };
        match job {
            Some(job) => {
                app.counters.job_claimed();
                if let Some(from) = &job.taken_over_from {
                    app.counters.job_taken_over();
                    tracing::info!(
                        job = job.id,
                        from = %from,
                        attempt = job.attempts,
                        "took over a job whose lease had passed"
                    );
                }
                run_leased(&app, job).await
            }
            None => {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(app.config.worker_poll) => {}
                }
            }
        }
    }
}

fn lease_end(app: &App, from: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    from + chrono::Duration::from_std(app.config.job_lease).unwrap_or(chrono::Duration::MAX)
}

/// How often a running job's lease is renewed: a third of it, so that two renewals can fail
/// (a store hiccup) before another replica may take the job over.
fn renewal_period(app: &App) -> Duration {
    (app.config.job_lease / 3).max(Duration::from_millis(50))
}

/// Runs the job while renewing its lease; stops it where it is if the lease is lost.
async fn run_leased(app: &App, job: Job) {
    let result = tokio::select! {
        result = run_job(app, &job) => result,
        () = keep_lease(app, job.id) => {
            app.counters.job_lease_lost();
            tracing::warn!(
                job = job.id,
                "another replica took this job over (its lease had passed); stopped it here"
            );
            return;
        }
    };
    let owner = app.config.replica_id.as_str();
    let outcome = match result {
        Ok(()) => app.store.finish_job(job.id, owner).await.inspect(|&lease| {
            if lease == Lease::Held {
                app.counters.job_done();
            }
        }),
        Err(e) if e.is_transient() && job.attempts < MAX_ATTEMPTS => {
            let delay = Duration::from_millis(250 * 2u64.pow(job.attempts.clamp(0, 6) as u32));
            tracing::warn!(job = job.id, error = %e, ?delay, "job failed transiently; retrying");
            let when = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            app.store
                .retry_job(job.id, owner, when, &e.to_string())
                .await
        }
        Err(e) => give_up(app, &job, &e).await,
    };
    match outcome {
        Ok(Lease::Held) => {}
        Ok(Lease::Lost) => {
            app.counters.job_lease_lost();
            tracing::warn!(
                job = job.id,
                "another replica took this job over before its outcome was recorded; its run stands"
            );
        }
        Err(e) => tracing::error!(job = job.id, error = %e, "recording a job's outcome failed"),
    }
}

/// Renews the job's lease until it is lost (returns then). A failed renewal is retried at the
/// next period: the lease still runs meanwhile.
async fn keep_lease(app: &App, id: i64) {
    let period = renewal_period(app);
    loop {
        tokio::time::sleep(period).await;
        let until = lease_end(app, Utc::now());
        match app
            .store
            .renew_job_lease(id, &app.config.replica_id, until)
            .await
        {
            Ok(Lease::Held) => app.counters.job_lease_renewed(),
            Ok(Lease::Lost) => return,
            Err(e) => tracing::warn!(job = id, error = %e, "renewing a job's lease failed"),
        }
    }
}

/// A permanent failure: recorded on the datacenter, then on the job. The lease is renewed
/// first, so the datacenter is marked failed only by the replica that holds the job (for a
/// whole lease from here, longer than the two writes take).
async fn give_up(app: &App, job: &Job, e: &AppError) -> keyplane_store::Result<Lease> {
    let owner = app.config.replica_id.as_str();
    let until = lease_end(app, Utc::now());
    if app.store.renew_job_lease(job.id, owner, until).await? == Lease::Lost {
        return Ok(Lease::Lost);
    }
    tracing::warn!(job = job.id, error = %e, "job failed");
    if let Some(dc) = &job.datacenter_id
        && let Err(se) = fail_datacenter(app, job.database_id, dc, e).await
    {
        tracing::error!(error = %se, "recording a failed datacenter");
    }
    let lease = app.store.fail_job(job.id, owner, &e.to_string()).await?;
    if lease == Lease::Held {
        app.counters.job_failed();
    }
    Ok(lease)
}

async fn run_job(app: &App, job: &Job) -> AppResult<()> {
    match job.kind {
        JobKind::ProvisionDatacenter => provision::provision(app, job).await,
        JobKind::TerminateDatacenter => terminate::terminate_datacenter(app, job).await,
        JobKind::TerminateDatabase => terminate::terminate_database(app, job.database_id).await,
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
