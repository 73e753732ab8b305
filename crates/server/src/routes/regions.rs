//! The region listings clients read before they create a database: the serverless regions
//! (the terraform provider, astra-db-ts' `findAvailableRegions`) and every (tier, cloud,
//! region) combination (astra-client-go's `ListAvailableRegions`), in the original's shapes,
//! built from the region catalog and the regions unlocked for the organization.
use axum::Json;
use axum::extract::State;
use keyplane_app::App;
use keyplane_core::Provider;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::{ApiQuery, Auth};

/// What keyplane reports as a quota: it sets none.
pub const NO_QUOTA: i32 = i32::MAX;

/// A serverless region, as the original's `ServerlessRegion`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerlessRegion {
    /// aws, gcp or azure.
    pub cloud_provider: Provider,
    /// The cloud's own name, e.g. us-east-2.
    pub name: String,
    pub display_name: String,
    /// na, emea, apac or sa.
    pub zone: &'static str,
    /// Always "standard": keyplane prices no region differently.
    pub classification: &'static str,
    /// Whether the organization may deploy there (the region is unlocked for it).
    pub enabled: bool,
    /// Always false: no region is held back for qualified users.
    pub reserved_for_qualified_users: bool,
    /// serverless or vector.
    #[serde(rename = "region_type")]
    pub region_type: &'static str,
}

/// Costs in the original's shape: keyplane bills nothing, so every figure is 0.
#[derive(Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Costs {
    pub cost_per_min_cents: f64,
    pub cost_per_hour_cents: f64,
    pub cost_per_day_cents: f64,
    pub cost_per_month_cents: f64,
    pub cost_per_min_parked_cents: f64,
    pub cost_per_hour_parked_cents: f64,
    pub cost_per_day_parked_cents: f64,
    pub cost_per_month_parked_cents: f64,
}

/// A (tier, cloud, region) the organization may deploy to, as the original's
/// `AvailableRegionCombination`, with what it deploys there now.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailableRegionCombination {
    /// C10, C20, C40, D10, D20, D40 or serverless.
    pub tier: String,
    /// AWS, GCP or AZURE.
    pub cloud_provider: String,
    pub region: String,
    pub cost: Costs,
    /// The organization's live datacenters of this tier in the region.
    pub database_count_used: u32,
    /// 2147483647: keyplane sets no quota.
    pub database_count_limit: i32,
    /// Their databases' capacity units.
    pub capacity_units_used: u32,
    /// 2147483647: keyplane sets no quota.
    pub capacity_units_limit: i32,
    pub default_storage_per_capacity_unit_gb: i32,
}

#[derive(Deserialize, Default)]
pub struct ServerlessQuery {
    #[serde(rename = "region-type")]
    region_type: Option<String>,
    #[serde(rename = "filter-by-org")]
    filter_by_org: Option<String>,
}

/// The serverless regions. `region-type`: empty (serverless regions, the default), `vector`,
/// or `all` (both); any other value is ignored, as the original does. `filter-by-org=enabled`
/// lists only the regions unlocked for the organization; otherwise every region of the
/// catalog is listed, `enabled` saying which are.
#[utoipa::path(get, path = "/v2/regions/serverless", tag = "regions", security(("token" = [])),
    params(
        ("region-type" = Option<String>, Query, description = "empty (serverless), vector, or all; other values are ignored"),
        ("filter-by-org" = Option<String>, Query, description = "enabled: only the organization's unlocked regions; disabled (default): every region"),
    ),
    responses(
        (status = 200, body = Vec<ServerlessRegion>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn serverless_regions(
    State(app): State<App>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<ServerlessQuery>,
) -> ApiResult<Json<Vec<ServerlessRegion>>> {
    let types: &[&'static str] = match q.region_type.as_deref() {
        Some("vector") => &["vector"],
        Some("all") => &["serverless", "vector"],
        _ => &["serverless"],
    };
    let only_unlocked = q.filter_by_org.as_deref() == Some("enabled");
    let regions = app.regions().catalog(&who, only_unlocked)?;
    let mut out = Vec::with_capacity(regions.len() * types.len());
    for region_type in types {
        for r in &regions {
            out.push(ServerlessRegion {
                cloud_provider: r.provider,
                name: r.name.clone(),
                display_name: r.display_name.clone(),
                zone: r.zone.as_str(),
                classification: "standard",
                enabled: r.unlocked,
                reserved_for_qualified_users: false,
                region_type,
            });
        }
    }
    Ok(Json(out))
}

/// Every (tier, cloud, region) combination the organization may deploy to, with its use.
#[utoipa::path(get, path = "/v2/availableRegions", tag = "regions", security(("token" = [])),
    responses(
        (status = 200, body = Vec<AvailableRegionCombination>),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn available_regions(
    State(app): State<App>,
    Auth(who): Auth,
) -> ApiResult<Json<Vec<AvailableRegionCombination>>> {
    let uses = app.regions().usage(&who).await?;
    Ok(Json(
        uses.into_iter()
            .map(|u| AvailableRegionCombination {
                tier: u.tier,
                cloud_provider: u.provider.as_str().to_ascii_uppercase(),
                region: u.region,
                cost: Costs::default(),
                database_count_used: u.databases,
                database_count_limit: NO_QUOTA,
                capacity_units_used: u.capacity_units,
                capacity_units_limit: NO_QUOTA,
                default_storage_per_capacity_unit_gb: 20,
            })
            .collect(),
    ))
}
