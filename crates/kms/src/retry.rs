//! The one retry loop every adapter's KMS calls go through: per-attempt and per-operation
//! deadlines, exponential backoff with jitter, and retries only for failures that say nothing
//! about the key (throttling, server errors, an unreachable KMS). Shared so that every key
//! service is retried by the same rules.

use std::future::Future;
use std::time::Duration;

use crate::{ErrorKind, KmsError, Result};
use rand::Rng;
use tokio::time::Instant;

/// How long to wait and how often to try. Adapters disable their SDK's own retries so that
/// this is the whole policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts per operation, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Cap on one backoff.
    pub max_backoff: Duration,
    /// Limit on one attempt (connect, send, answer).
    pub attempt_timeout: Duration,
    /// Limit on the whole operation, backoffs and retries included.
    pub operation_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15),
        }
    }
}

impl RetrySettings {
    /// The sleep before retry number `retry` (1-based): exponential, capped, with "equal
    /// jitter" (between half and all of the cap) so that clients that failed together do not
    /// retry together, yet every retry still waits a known minimum.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_backoff);
        let half = cap / 2;
        let spread = (cap - half).as_nanos().min(u64::MAX as u128) as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the attempts or the operation's time
/// run out. The final error carries the number of attempts in its message.
pub async fn with_retries<T, F, Fut>(
    settings: &RetrySettings,
    operation: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let max_attempts = settings.max_attempts.max(1);
    let deadline = Instant::now() + settings.operation_timeout;
    let mut n = 0u32;
    loop {
        n += 1;
        let limit = settings
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let result = match tokio::time::timeout(limit, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(KmsError::new(
                ErrorKind::Unreachable,
                operation,
                format!("no answer from the KMS within {limit:?}"),
            )),
        };
        let err = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.kind.is_transient() {
            return Err(annotate(err, n));
        }
        if n >= max_attempts {
            return Err(annotate(err, n));
        }
        let pause = settings.backoff(n);
        if Instant::now() + pause >= deadline {
            let mut err = annotate(err, n);
            err.message.push_str(&format!(
                "; operation timeout of {:?} reached",
                settings.operation_timeout
            ));
            return Err(err);
        }
        tracing::debug!(operation, attempt = n, kind = ?err.kind, error = %err.message, backoff = ?pause, "KMS call failed, retrying");
        tokio::time::sleep(pause).await;
    }
}

fn annotate(mut err: KmsError, attempts: u32) -> KmsError {
    if attempts > 1 {
        err.message
            .push_str(&format!(" (after {attempts} attempts)"));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(max_attempts: u32) -> RetrySettings {
        RetrySettings {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            attempt_timeout: Duration::from_millis(200),
            operation_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let s = fast(10);
        for _ in 0..100 {
            let b1 = s.backoff(1);
            assert!(
                b1 >= Duration::from_millis(5) && b1 <= Duration::from_millis(10),
                "{b1:?}"
            );
            let b2 = s.backoff(2);
            assert!(
                b2 >= Duration::from_millis(10) && b2 <= Duration::from_millis(20),
                "{b2:?}"
            );
            let b3 = s.backoff(3);
            assert!(
                b3 >= Duration::from_millis(20) && b3 <= Duration::from_millis(40),
                "{b3:?}"
            );
            let b40 = s.backoff(40);
            assert!(
                b40 >= Duration::from_millis(20) && b40 <= Duration::from_millis(40),
                "{b40:?}"
            );
        }
    }

    #[tokio::test]
    async fn retries_only_transient_kinds() {
        for (kind, expected_calls) in [
            (ErrorKind::Retryable, 3),
            (ErrorKind::Unreachable, 3),
            (ErrorKind::NotFound, 1),
            (
                ErrorKind::AccessDenied {
                    action: "kms:Decrypt".into(),
                },
                1,
            ),
            (ErrorKind::Disabled, 1),
            (ErrorKind::Credentials, 1),
            (ErrorKind::InvalidState, 1),
            (ErrorKind::InvalidCiphertext, 1),
        ] {
            let calls = AtomicU32::new(0);
            let r: Result<()> = with_retries(&fast(3), "Decrypt", || {
                calls.fetch_add(1, Ordering::SeqCst);
                let kind = kind.clone();
                async move { Err(KmsError::new(kind, "Decrypt", "boom")) }
            })
            .await;
            let e = r.unwrap_err();
            assert_eq!(e.kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let calls = AtomicU32::new(0);
        let r = with_retries(&fast(3), "Encrypt", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(KmsError::new(ErrorKind::Retryable, "Encrypt", "throttled"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[tokio::test]
    async fn attempt_timeout_is_unreachable_and_operation_timeout_bounds_the_total() {
        let mut s = fast(100);
        s.attempt_timeout = Duration::from_millis(50);
        s.operation_timeout = Duration::from_millis(300);
        let start = std::time::Instant::now();
        let r: Result<()> = with_retries(&s, "DescribeKey", std::future::pending).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }
}
