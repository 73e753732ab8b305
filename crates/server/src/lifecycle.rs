//! Background work whose progress is stored, so that a restart (or a crash) resumes it:
//! provisioning a datacenter (data key, encrypted file), and terminating one.
//!
//! Every step is idempotent: a job re-run after a crash finds what the previous run did
//! (the wrapped key is stored once, an existing file is opened rather than created).
use std::time::Duration;

use chrono::Utc;
use keyplane_core::{DatabaseStatus, KeyStatus};
use keyplane_kms::ErrorKind;
use keyplane_store::{Datacenter, Job, JobKind, KeyKind, KeyStatusUpdate};
use uuid::Uuid;

use crate::app::AppState;
use crate::dataplane::{DataError, datacenter_context};

/// Attempts before a provisioning that keeps failing transiently is given up.
const MAX_ATTEMPTS: i32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] keyplane_store::StoreError),
    #[error(transparent)]
    Kms(#[from] keyplane_kms::KmsError),
    #[error("{0}")]
    Gone(String),
}

impl JobError {
    fn transient(&self) -> bool {
        match self {
            JobError::Kms(e) | JobError::Data(DataError::Kms(e)) => e.kind.is_transient(),
            JobError::Store(_) | JobError::Data(DataError::Store(_)) => true,
            _ => false,
        }
    }
}

/// Runs jobs until `shutdown` resolves. Jobs a crashed process left running are resumed.
pub async fn run_worker(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    match state.store.requeue_running_jobs().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "resuming jobs interrupted by a restart"),
        Err(e) => tracing::error!(error = %e, "could not requeue interrupted jobs"),
    }
    tokio::pin!(shutdown);
    loop {
        let job = match state.store.claim_job(Utc::now()).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "claiming a job failed");
                None
            }
        };
        match job {
            Some(job) => run_job(&state, job).await,
            None => {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(state.config.worker_poll) => {}
                }
            }
        }
    }
}

async fn run_job(state: &AppState, job: Job) {
    let result = match job.kind {
        JobKind::ProvisionDatacenter => provision(state, &job).await,
        JobKind::TerminateDatacenter => terminate_datacenter(state, &job).await,
        JobKind::TerminateDatabase => terminate_database(state, job.database_id).await,
    };
    let outcome = match result {
        Ok(()) => state.store.finish_job(job.id).await,
        Err(e) if e.transient() && job.attempts < MAX_ATTEMPTS => {
            let delay = Duration::from_millis(250 * 2u64.pow(job.attempts.clamp(0, 6) as u32));
            tracing::warn!(job = job.id, error = %e, ?delay, "job failed transiently; retrying");
            let when = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            state.store.retry_job(job.id, when, &e.to_string()).await
        }
        Err(e) => {
            tracing::warn!(job = job.id, error = %e, "job failed");
            if let Some(dc) = &job.datacenter_id
                && let Err(se) = fail_datacenter(state, job.database_id, dc, &e).await
            {
                tracing::error!(error = %se, "recording a failed datacenter");
            }
            state.store.fail_job(job.id, &e.to_string()).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(job = job.id, error = %e, "recording a job's outcome failed");
    }
}

fn kms_reason(e: &JobError, dc: &Datacenter) -> String {
    match e {
        JobError::Kms(k) | JobError::Data(DataError::Kms(k)) => {
            key_problem(&k.kind, &dc.key_id, &k.message)
        }
        other => other.to_string(),
    }
}

/// A sentence naming the key and what is wrong with it, for statuses and 503 answers.
pub fn key_problem(kind: &ErrorKind, key: &str, detail: &str) -> String {
    match kind {
        ErrorKind::Disabled => format!("the key {key} is disabled; enable it to restore access"),
        ErrorKind::PendingDeletion => {
            format!(
                "the key {key} is scheduled for deletion; cancel the deletion and enable it to restore access"
            )
        }
        ErrorKind::NotFound => {
            format!("the key {key} no longer exists or is no longer visible to the platform")
        }
        ErrorKind::AccessDenied { action } => format!(
            "the key policy of {key} no longer lets the platform perform {}; restore the platform's statement",
            if action.is_empty() {
                "its operations"
            } else {
                action
            }
        ),
        ErrorKind::InvalidState => {
            format!("the key {key} is in a state that refuses use: {detail}")
        }
        ErrorKind::InvalidCiphertext => {
            format!("the key {key} can no longer unwrap this datacenter's data key")
        }
        ErrorKind::WrongKeyType | ErrorKind::WrongRegion => {
            format!("the key {key} cannot be used: {detail}")
        }
        ErrorKind::Retryable | ErrorKind::Unreachable => {
            format!("the KMS holding {key} has not answered: {detail}")
        }
        ErrorKind::Credentials | ErrorKind::Invalid | ErrorKind::Unsupported | ErrorKind::Other => {
            format!("the key {key} could not be used: {detail}")
        }
    }
}

async fn fail_datacenter(
    state: &AppState,
    db_id: Uuid,
    dc_id: &str,
    e: &JobError,
) -> Result<(), JobError> {
    let Some(dc) = state.store.get_datacenter(dc_id).await? else {
        return Ok(());
    };
    let reason = format!("provisioning {} failed: {}", dc.region, kms_reason(e, &dc));
    state
        .store
        .set_datacenter_status(dc_id, DatabaseStatus::Error, &reason)
        .await?;
    refresh_database_status(state, db_id).await?;
    Ok(())
}

async fn provision(state: &AppState, job: &Job) -> Result<(), JobError> {
    let dc_id = job
        .datacenter_id
        .as_deref()
        .ok_or_else(|| JobError::Gone("provision job without a datacenter".into()))?;
    let Some(mut dc) = state.store.get_datacenter(dc_id).await? else {
        return Ok(());
    };
    if dc.terminated_at.is_some() || dc.status == DatabaseStatus::Active {
        return Ok(());
    }
    if dc.status != DatabaseStatus::Initializing {
        state
            .store
            .set_datacenter_status(&dc.id, DatabaseStatus::Initializing, "")
            .await?;
    }
    if let Some(db) = state.store.get_database(dc.org_id, dc.database_id).await?
        && db.status == DatabaseStatus::Pending
    {
        state
            .store
            .set_database_status(db.id, DatabaseStatus::Initializing, "")
            .await?;
    }
    if dc.wrapped_data_key.is_none() {
        let kms = state.kms.connect(&state.data.identity(&dc))?;
        let wrapped = kms
            .generate_data_key_without_plaintext(&dc.key_id, &datacenter_context(&dc))
            .await?;
        state.store.set_wrapped_data_key(&dc.id, &wrapped).await?;
        // Re-read: if a previous run stored one first, that one is the key of record.
        dc = state
            .store
            .get_datacenter(&dc.id)
            .await?
            .ok_or_else(|| JobError::Gone(format!("datacenter {} vanished", dc.id)))?;
    }
    let keyspace = state
        .store
        .get_database(dc.org_id, dc.database_id)
        .await?
        .map(|d| d.keyspace)
        .unwrap_or_default();
    state.data.create_file(&dc, &keyspace).await?;
    // A region added to a database with data gets a copy of it; writes wait meanwhile so
    // none is acknowledged without reaching this region.
    let lock = state.data.write_lock(&dc.database_id).await;
    let _exclusive = lock.write().await;
    let siblings = state.store.list_datacenters(dc.database_id).await?;
    if let Some(source) = siblings
        .iter()
        .find(|d| d.id != dc.id && d.terminated_at.is_none() && d.status == DatabaseStatus::Active)
    {
        let from = state.data.docstore(&source.id).await?;
        let to = state.data.docstore_for_provisioning(&dc).await?;
        let copied = tokio::task::spawn_blocking(move || crate::dataplane::copy_all(&from, &to))
            .await
            .map_err(|e| JobError::Gone(e.to_string()))?
            .map_err(DataError::from)?;
        tracing::info!(datacenter = %dc.id, documents = copied, "copied the database into the new region");
    }
    state
        .store
        .set_datacenter_status(&dc.id, DatabaseStatus::Active, "")
        .await?;
    if dc.key_kind == KeyKind::Customer {
        mark_key_in_use(state, &dc).await?;
    }
    refresh_database_status(state, dc.database_id).await?;
    Ok(())
}

async fn mark_key_in_use(state: &AppState, dc: &Datacenter) -> Result<(), JobError> {
    let Some(db) = state.store.get_database(dc.org_id, dc.database_id).await? else {
        return Ok(());
    };
    let Some(key) = state
        .store
        .get_customer_key(dc.org_id, db.db_type, dc.provider, &dc.region)
        .await?
    else {
        return Ok(());
    };
    if key.status == KeyStatus::Available {
        state
            .store
            .update_customer_key_status(
                dc.org_id,
                db.db_type,
                dc.provider,
                &dc.region,
                &KeyStatusUpdate {
                    status: KeyStatus::InUse,
                    status_reason: None,
                    checked_at: Utc::now(),
                    check_ok: true,
                    check_message: format!("encrypts datacenter {}", dc.id),
                },
            )
            .await?;
    }
    Ok(())
}

/// The database's status follows its live datacenters.
pub async fn refresh_database_status(state: &AppState, db_id: Uuid) -> Result<(), JobError> {
    let dcs = state.store.list_datacenters(db_id).await?;
    let Some(first) = dcs.first() else {
        return Ok(());
    };
    let Some(db) = state.store.get_database(first.org_id, db_id).await? else {
        return Ok(());
    };
    if matches!(
        db.status,
        DatabaseStatus::Terminating | DatabaseStatus::Terminated
    ) {
        return Ok(());
    }
    let live: Vec<&Datacenter> = dcs.iter().filter(|d| d.terminated_at.is_none()).collect();
    let (status, message) =
        if let Some(s) = live.iter().find(|d| d.status == DatabaseStatus::Suspended) {
            (
                DatabaseStatus::Suspended,
                format!("region {}: {}", s.region, s.message),
            )
        } else if live.iter().all(|d| d.status == DatabaseStatus::Error) {
            let m = live.first().map(|d| d.message.clone()).unwrap_or_default();
            (DatabaseStatus::Error, m)
        } else if live.iter().any(|d| {
            matches!(
                d.status,
                DatabaseStatus::Pending | DatabaseStatus::Initializing
            )
        }) {
            if db.status == DatabaseStatus::Maintenance
                || live.iter().any(|d| d.status == DatabaseStatus::Active)
            {
                (DatabaseStatus::Maintenance, "adding a region".to_string())
            } else {
                (DatabaseStatus::Initializing, String::new())
            }
        } else {
            let failed: Vec<String> = live
                .iter()
                .filter(|d| d.status == DatabaseStatus::Error)
                .map(|d| d.message.clone())
                .collect();
            (DatabaseStatus::Active, failed.join("; "))
        };
    if status != db.status || message != db.message {
        state
            .store
            .set_database_status(db_id, status, &message)
            .await?;
    }
    Ok(())
}

async fn terminate_one(state: &AppState, dc_id: &str) -> Result<(), JobError> {
    state.data.delete_files(dc_id).await?;
    state.data.resume(dc_id);
    state.store.mark_datacenter_terminated(dc_id).await?;
    Ok(())
}

async fn terminate_datacenter(state: &AppState, job: &Job) -> Result<(), JobError> {
    let dc_id = job
        .datacenter_id
        .as_deref()
        .ok_or_else(|| JobError::Gone("terminate job without a datacenter".into()))?;
    terminate_one(state, dc_id).await?;
    refresh_database_status(state, job.database_id).await
}

async fn terminate_database(state: &AppState, db_id: Uuid) -> Result<(), JobError> {
    for dc in state.store.list_datacenters(db_id).await? {
        if dc.terminated_at.is_none() {
            terminate_one(state, &dc.id).await?;
        }
    }
    state.store.mark_database_terminated(db_id).await?;
    Ok(())
}
