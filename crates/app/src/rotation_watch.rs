//! The customer key's own rotation, watched (Atlas alerts before a rotation is due; keyplane
//! alerts when one is late): every `key_rotation_check_interval` (default 6 h) the rotation
//! facts of each key in use are read as the platform's identity, once per key, and a key
//! whose service reports an automatic rotation past due raises `cmk.rotation.overdue` once:
//! audited, so the organization's webhooks are told. The store keeps the alert until a read
//! finds the key rotated, so it is raised once however many processes watch. Keys whose
//! datacenters are suspended (revoked or inaccessible) are not called.
use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use keyplane_core::DatabaseStatus;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_kms::RotationFacts;

use crate::App;
use crate::error::AppResult;
use crate::keys::service::key_service;
use crate::monitor::MONITOR_ACTOR;

/// How late a rotation may be before it is overdue: services rotate within a day of the date.
pub fn rotation_grace() -> Duration {
    Duration::hours(24)
}

fn parse(t: &Option<String>) -> Option<DateTime<Utc>> {
    let t = t.as_deref()?;
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Why the key's automatic rotation is overdue at `now`, if it is: its next rotation date is
/// more than [`rotation_grace`] past, or (where the service reports no next date) its last
/// rotation is more than a period and the grace ago. A key without automatic rotation is
/// never overdue: nothing was promised.
pub fn rotation_overdue(f: &RotationFacts, now: DateTime<Utc>) -> Option<String> {
    if !f.enabled {
        return None;
    }
    if let Some(next) = parse(&f.next_rotation_at) {
        return (next + rotation_grace() < now).then(|| {
            format!(
                "the key's automatic rotation was due on {} and has not happened",
                next.format("%Y-%m-%d %H:%M UTC")
            )
        });
    }
    let (last, days) = (parse(&f.last_rotated_at)?, f.period_days?);
    let due = last + Duration::days(i64::from(days));
    (due + rotation_grace() < now).then(|| {
        format!(
            "the key was last rotated on {} and rotates every {days} days: the rotation due on {} has not happened",
            last.format("%Y-%m-%d"),
            due.format("%Y-%m-%d")
        )
    })
}

/// One look: every key in use whose datacenters serve, its rotation read and judged. Returns
/// how many alerts it raised. A key whose facts cannot be read is skipped (the health check
/// reports a key the platform cannot use).
pub async fn check_rotations(app: &App) -> AppResult<usize> {
    let mut seen = HashSet::new();
    let mut raised = 0;
    for dc in app.store.live_customer_datacenters().await? {
        if dc.status != DatabaseStatus::Active || !seen.insert((dc.org_id, dc.key_id.clone())) {
            continue;
        }
        let service = key_service(dc.provider)?;
        let read = async {
            let kms = app.data.key_provider(&dc).await?;
            service.facts(kms.as_ref(), &dc.key_id).await
        }
        .await;
        let rotation = match read {
            Ok(facts) => facts.rotation,
            Err(e) => {
                tracing::debug!(key = %dc.key_id, error = %e, "rotation watch: the key's facts could not be read");
                continue;
            }
        };
        let Some(rotation) = rotation else { continue };
        let verdict = rotation_overdue(&rotation, Utc::now());
        let changed = app
            .store
            .set_rotation_overdue(dc.org_id, &dc.key_id, verdict.as_deref())
            .await?;
        if let (true, Some(reason)) = (changed, verdict) {
            tracing::warn!(key = %dc.key_id, org = %dc.org_id, reason, "customer key rotation overdue");
            crate::audit::record(
                app,
                dc.org_id,
                MONITOR_ACTOR.to_string(),
                AuditAction::CmkRotationOverdue,
                &format!("{}/{} {}", dc.provider, dc.region, dc.key_id),
                AuditOutcome::Success,
                &reason,
            )
            .await;
            raised += 1;
        }
    }
    Ok(raised)
}

/// Looks every `key_rotation_check_interval` (first after one interval) until `shutdown`.
pub async fn run_rotation_watch(app: App, shutdown: impl std::future::Future<Output = ()>) {
    if app.config.key_rotation_check_interval.is_zero() {
        return;
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(app.config.key_rotation_check_interval) => {}
        }
        if let Err(e) = check_rotations(&app).await {
            tracing::warn!(error = %e, "watching the keys' rotation failed; retrying at the next look");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        enabled: bool,
        next: Option<&str>,
        last: Option<&str>,
        days: Option<u32>,
    ) -> RotationFacts {
        RotationFacts {
            enabled,
            period_days: days,
            last_rotated_at: last.map(str::to_string),
            next_rotation_at: next.map(str::to_string),
        }
    }

    #[test]
    fn a_rotation_is_overdue_a_day_after_its_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let due = |next| rotation_overdue(&facts(true, Some(next), None, Some(365)), now);
        assert!(due("2026-12-07T00:00:00Z").is_none(), "not yet due");
        assert!(due("2026-12-05T13:00:00Z").is_none(), "within the grace");
        let late = due("2026-12-04T00:00:00Z").expect("overdue");
        assert!(late.contains("2026-12-04"), "{late}");
        // Automatic rotation off: nothing promised.
        assert!(
            rotation_overdue(&facts(false, Some("2020-01-01T00:00:00Z"), None, None), now)
                .is_none()
        );
        // No next date: judged from the last rotation and the period.
        let from_last = |last| rotation_overdue(&facts(true, None, Some(last), Some(90)), now);
        assert!(from_last("2026-10-01T00:00:00Z").is_none());
        assert!(
            from_last("2026-08-01T00:00:00Z")
                .expect("overdue")
                .contains("every 90 days")
        );
        // Nothing to judge by.
        assert!(rotation_overdue(&facts(true, None, None, Some(90)), now).is_none());
        assert!(rotation_overdue(&facts(true, Some("not a date"), None, None), now).is_none());
    }
}
