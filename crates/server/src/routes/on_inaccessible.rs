//! What an inaccessible key does, per organization and per key: `…/on-inaccessible`.
use axum::Json;
use axum::extract::State;
use keyplane_app::App;
use keyplane_app::keys::on_inaccessible::{ChoiceScope, InaccessibleChoices};
use keyplane_core::DbType;
use keyplane_core::keys::OnInaccessible;
use keyplane_store::InaccessibleChoice;
use serde::{Deserialize, Serialize};

use super::{RegionPath, ts};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Auth};

/// The choice asked for: `suspend` (at once, the default), or `alert-only` with how many
/// seconds datacenters keep serving after the key first failed before they are suspended.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnInaccessibleBody {
    /// `suspend` or `alert-only`.
    pub action: String,
    /// With `alert-only`: 1 to `maxAlertOnlySeconds`.
    pub alert_only_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnInaccessibleView {
    /// `suspend` or `alert-only`.
    pub action: &'static str,
    pub alert_only_seconds: Option<u32>,
    /// The key the choice is for; absent for the organization's own.
    #[serde(rename = "keyID", skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When it was chosen; absent for the default (suspend, never chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnInaccessibleChoices {
    /// The organization's choice, for every key without its own.
    pub organization: OnInaccessibleView,
    /// Keys with a choice of their own.
    pub keys: Vec<OnInaccessibleView>,
    /// The longest alert-only time this platform allows.
    pub max_alert_only_seconds: u32,
}

fn view_of(c: &InaccessibleChoice) -> OnInaccessibleView {
    OnInaccessibleView {
        action: c.choice.action(),
        alert_only_seconds: Some(c.choice.alert_for_secs()).filter(|s| *s > 0),
        key_id: c.key_id.clone(),
        updated_at: Some(ts(c.updated_at)),
    }
}

fn choices_view(c: InaccessibleChoices) -> OnInaccessibleChoices {
    OnInaccessibleChoices {
        organization: c
            .organization
            .as_ref()
            .map(view_of)
            .unwrap_or(OnInaccessibleView {
                action: OnInaccessible::Suspend.action(),
                alert_only_seconds: None,
                key_id: None,
                updated_at: None,
            }),
        keys: c.keys.iter().map(view_of).collect(),
        max_alert_only_seconds: c.max_alert_secs,
    }
}

fn choice_of(app: &App, body: &OnInaccessibleBody) -> ApiResult<OnInaccessible> {
    Ok(app
        .keys()
        .parse_choice(&body.action, body.alert_only_seconds)?)
}

/// What an inaccessible key does for this organization and each key with its own choice.
#[utoipa::path(get, path = "/v2/kms/on-inaccessible", tag = "customer keys", security(("token" = [])),
    responses(
        (status = 200, body = OnInaccessibleChoices),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn get_choices(
    State(app): State<App>,
    Auth(who): Auth,
) -> ApiResult<Json<OnInaccessibleChoices>> {
    Ok(Json(choices_view(app.keys().on_inaccessible(&who).await?)))
}

/// Sets the organization's choice: what the key monitor does to the datacenters under a key
/// that fails its check (suspend at once, or keep serving with an alert for a bounded time).
#[utoipa::path(put, path = "/v2/kms/on-inaccessible", tag = "customer keys", security(("token" = [])),
    request_body = OnInaccessibleBody,
    responses(
        (status = 200, body = OnInaccessibleChoices),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn set_org_choice(
    State(app): State<App>,
    Auth(who): Auth,
    ApiJson(body): ApiJson<OnInaccessibleBody>,
) -> ApiResult<Json<OnInaccessibleChoices>> {
    let choice = choice_of(&app, &body)?;
    Ok(Json(choices_view(
        app.keys()
            .set_on_inaccessible(&who, ChoiceScope::Organization, Some(choice))
            .await?,
    )))
}

/// Clears the organization's choice: suspend at once, the default.
#[utoipa::path(delete, path = "/v2/kms/on-inaccessible", tag = "customer keys", security(("token" = [])),
    responses(
        (status = 200, body = OnInaccessibleChoices),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn clear_org_choice(
    State(app): State<App>,
    Auth(who): Auth,
) -> ApiResult<Json<OnInaccessibleChoices>> {
    Ok(Json(choices_view(
        app.keys()
            .set_on_inaccessible(&who, ChoiceScope::Organization, None)
            .await?,
    )))
}

macro_rules! key_choice_routes {
    ($db:expr, $prefix:literal, $set:ident, $clear:ident) => {
        /// Sets the choice of the key registered for the provider and region, overriding the
        /// organization's. It belongs to the key: datacenters still under it after the slot's
        /// key is replaced keep following it.
        #[utoipa::path(put, path = concat!($prefix, "/provider/{provider}/region/{region}/on-inaccessible"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = keyplane_core::Provider, Path), ("region" = String, Path)),
            request_body = OnInaccessibleBody,
            responses(
                (status = 200, body = OnInaccessibleChoices),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $set(
            State(app): State<App>,
            Auth(who): Auth,
            ApiPath(path): ApiPath<RegionPath>,
            ApiJson(body): ApiJson<OnInaccessibleBody>,
        ) -> ApiResult<Json<OnInaccessibleChoices>> {
            let choice = choice_of(&app, &body)?;
            let scope = ChoiceScope::Key { db_type: $db, provider: &path.provider, region: &path.region };
            Ok(Json(choices_view(app.keys().set_on_inaccessible(&who, scope, Some(choice)).await?)))
        }

        /// Clears the key's own choice: it follows the organization's again.
        #[utoipa::path(delete, path = concat!($prefix, "/provider/{provider}/region/{region}/on-inaccessible"), tag = "customer keys",
            security(("token" = [])),
            params(("provider" = keyplane_core::Provider, Path), ("region" = String, Path)),
            responses(
                (status = 200, body = OnInaccessibleChoices),
                (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
                (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
            ))]
        pub async fn $clear(
            State(app): State<App>,
            Auth(who): Auth,
            ApiPath(path): ApiPath<RegionPath>,
        ) -> ApiResult<Json<OnInaccessibleChoices>> {
            let scope = ChoiceScope::Key { db_type: $db, provider: &path.provider, region: &path.region };
            Ok(Json(choices_view(app.keys().set_on_inaccessible(&who, scope, None).await?)))
        }
    };
}

key_choice_routes!(
    DbType::Classic,
    "/v2/kms/classic",
    set_classic_key_choice,
    clear_classic_key_choice
);
key_choice_routes!(
    DbType::Serverless,
    "/v2/kms",
    set_serverless_key_choice,
    clear_serverless_key_choice
);
