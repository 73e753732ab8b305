//! What an inaccessible key does, as the customer chooses: suspend its datacenters at once
//! (the default) or keep them serving with an alert for a bounded time first, for the
//! organization and, overriding it, for one key. The choice is stored per key ID, so a
//! datacenter still under a slot's previous key follows that key's choice. The key monitor
//! applies it (`crate::monitor`); the bound is the operator's `alert_only_max`.
use chrono::Utc;
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::keys::OnInaccessible;
use keyplane_core::{DbType, Permission};
use keyplane_store::InaccessibleChoice;

use super::{Keys, slot_target};
use crate::audit::{reason_of, record_for};
use crate::auth::Requester;
use crate::error::{AppError, AppResult};

/// An organization's choices: its own (None: suspend) and each key's override.
#[derive(Debug, Clone)]
pub struct InaccessibleChoices {
    pub organization: Option<InaccessibleChoice>,
    pub keys: Vec<InaccessibleChoice>,
    /// The longest alert-only time the operator allows, in seconds.
    pub max_alert_secs: u32,
}

/// What a choice applies to.
#[derive(Debug, Clone, Copy)]
pub enum ChoiceScope<'a> {
    Organization,
    /// The key registered for (type, provider, region).
    Key {
        db_type: DbType,
        provider: &'a str,
        region: &'a str,
    },
}

/// The most alert-only time an operator can allow (30 days).
pub const ALERT_ONLY_CEILING_SECS: u32 = 30 * 24 * 3600;

impl Keys<'_> {
    /// The longest alert-only time the operator allows, in seconds.
    pub fn max_alert_secs(&self) -> u32 {
        u32::try_from(self.0.config.alert_only_max.as_secs())
            .unwrap_or(u32::MAX)
            .min(ALERT_ONLY_CEILING_SECS)
    }

    /// Parses a requested choice against the operator's bound.
    pub fn parse_choice(&self, action: &str, for_secs: Option<i64>) -> AppResult<OnInaccessible> {
        OnInaccessible::from_parts(action, for_secs, self.max_alert_secs())
            .map_err(|m| AppError::invalid_parameter("action", m))
    }

    pub async fn on_inaccessible(&self, who: &Requester) -> AppResult<InaccessibleChoices> {
        who.require(Permission::OrgCmkRead)?;
        let all = self
            .0
            .store
            .on_inaccessible_choices(Some(who.org_id()))
            .await?;
        let (organization, keys): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|c| c.key_id.is_none());
        Ok(InaccessibleChoices {
            organization: organization.into_iter().next(),
            keys,
            max_alert_secs: self.max_alert_secs(),
        })
    }

    /// Sets (`Some`) or clears (`None`: back to the organization's choice, or to suspend)
    /// the choice for `scope`; audited. A key scope names the key registered in the slot now.
    pub async fn set_on_inaccessible(
        &self,
        who: &Requester,
        scope: ChoiceScope<'_>,
        choice: Option<OnInaccessible>,
    ) -> AppResult<InaccessibleChoices> {
        let action = AuditAction::CmkOnInaccessible;
        let target = match scope {
            ChoiceScope::Organization => format!("organization {}", who.org_id()),
            ChoiceScope::Key {
                db_type,
                provider,
                region,
            } => slot_target(db_type, provider, region),
        };
        self.require(who, Permission::OrgCmkWrite, action, &target)
            .await?;
        let result = self.apply_choice(who, scope, choice).await;
        let (outcome, reason) = match &result {
            Ok(detail) => (AuditOutcome::Success, detail.clone()),
            Err(e) => (AuditOutcome::Failure, reason_of(e)),
        };
        record_for(self.0, who, action, &target, outcome, &reason).await;
        result?;
        self.on_inaccessible(who).await
    }

    async fn apply_choice(
        &self,
        who: &Requester,
        scope: ChoiceScope<'_>,
        choice: Option<OnInaccessible>,
    ) -> AppResult<String> {
        let org = who.org_id();
        let key_id = match scope {
            ChoiceScope::Organization => None,
            ChoiceScope::Key {
                db_type,
                provider,
                region,
            } => {
                let provider = self.slot_provider(who, provider, region)?;
                let key = self.slot_key(org, db_type, provider, region).await?;
                Some(key.key_id)
            }
        };
        self.0
            .store
            .set_on_inaccessible(org, key_id.as_deref(), choice, Utc::now())
            .await?;
        let what = match choice {
            None => "cleared".to_string(),
            Some(OnInaccessible::Suspend) => "suspend".to_string(),
            Some(OnInaccessible::AlertOnly { for_secs }) => format!("alert-only for {for_secs} s"),
        };
        Ok(match key_id {
            Some(k) => format!("key {k}: {what}"),
            None => format!("organization: {what}"),
        })
    }
}
