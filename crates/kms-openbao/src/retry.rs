//! Deadlines and bounded retries around every Transit call: a limit per attempt and per
//! operation, exponential backoff with jitter, and a retry only when the failure says nothing
//! about the key (throttling, a server error, an unreachable or sealed server).

use std::future::Future;
use std::time::Duration;

use keyplane_kms::{ErrorKind, KmsError, Result};
use rand::Rng;
use tokio::time::Instant;

/// How long to wait and how often to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenbaoRetrySettings {
    /// Attempts per operation, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Cap on one pause.
    pub max_backoff: Duration,
    /// Limit on one attempt (connect, send, answer; a re-login inside it included).
    pub attempt_timeout: Duration,
    /// Limit on the whole operation, pauses and retries included.
    pub operation_timeout: Duration,
}

impl Default for OpenbaoRetrySettings {
    fn default() -> Self {
        OpenbaoRetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15),
        }
    }
}

impl OpenbaoRetrySettings {
    /// The pause before retry `retry` (1-based): half the capped exponential step plus a
    /// random part of the other half, so that callers that failed together spread out.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let step = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let floor = step / 2;
        let spread = u64::try_from((step - floor).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        floor + Duration::from_nanos(jitter)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or attempts or time run out. A final
/// error after several attempts says how many there were.
pub(crate) async fn with_retries<T, F, Fut>(
    settings: &OpenbaoRetrySettings,
    operation: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + settings.operation_timeout;
    let max_attempts = settings.max_attempts.max(1);
    let mut n = 0u32;
    loop {
        n += 1;
        let limit = settings
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let err = match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => KmsError::new(
                ErrorKind::Unreachable,
                operation,
                format!("no answer from OpenBao within {limit:?}"),
            ),
        };
        if !err.kind.is_transient() || n >= max_attempts {
            return Err(with_attempts(err, n));
        }
        let pause = settings.backoff(n);
        if Instant::now() + pause >= deadline {
            let mut err = with_attempts(err, n);
            err.message.push_str(&format!(
                "; operation timeout of {:?} reached",
                settings.operation_timeout
            ));
            return Err(err);
        }
        tracing::debug!(operation, attempt = n, kind = ?err.kind, error = %err.message, backoff = ?pause, "OpenBao call failed, retrying");
        tokio::time::sleep(pause).await;
    }
}

fn with_attempts(mut err: KmsError, attempts: u32) -> KmsError {
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

    fn quick(max_attempts: u32) -> OpenbaoRetrySettings {
        OpenbaoRetrySettings {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            attempt_timeout: Duration::from_millis(200),
            operation_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let s = quick(10);
        for _ in 0..200 {
            let b1 = s.backoff(1);
            assert!((5..=10).contains(&b1.as_millis()), "{b1:?}");
            let b2 = s.backoff(2);
            assert!((10..=20).contains(&b2.as_millis()), "{b2:?}");
            let b9 = s.backoff(99);
            assert!((20..=40).contains(&b9.as_millis()), "{b9:?}");
        }
    }

    #[tokio::test]
    async fn only_transient_kinds_are_retried() {
        for (kind, calls_expected) in [
            (ErrorKind::Retryable, 3),
            (ErrorKind::Unreachable, 3),
            (ErrorKind::NotFound, 1),
            (
                ErrorKind::AccessDenied {
                    action: "update transit/decrypt/k".into(),
                },
                1,
            ),
            (ErrorKind::InvalidState, 1),
            (ErrorKind::Credentials, 1),
            (ErrorKind::InvalidCiphertext, 1),
        ] {
            let calls = AtomicU32::new(0);
            let r: Result<()> = with_retries(&quick(3), "Decrypt", || {
                calls.fetch_add(1, Ordering::SeqCst);
                let kind = kind.clone();
                async move { Err(KmsError::new(kind, "Decrypt", "no")) }
            })
            .await;
            assert_eq!(r.unwrap_err().kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), calls_expected, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_transient_failure_then_success_succeeds() {
        let calls = AtomicU32::new(0);
        let r = with_retries(&quick(3), "Encrypt", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(KmsError::new(ErrorKind::Retryable, "Encrypt", "busy"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_hung_attempt_is_unreachable_and_the_operation_is_bounded() {
        let mut s = quick(100);
        s.attempt_timeout = Duration::from_millis(50);
        s.operation_timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let r: Result<()> = with_retries(&s, "DescribeKey", std::future::pending).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Unreachable);
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );
    }
}
