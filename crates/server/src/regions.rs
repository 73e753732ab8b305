//! Which (provider, region) pairs an organization may use: in the operator's catalog and
//! unlocked for the organization. Shared by every route that takes a region.
use keyplane_core::Provider;
use keyplane_core::regions::is_plausible_region_name;
use keyplane_store::Organization;

use crate::config::Config;
use crate::error::ApiError;

pub fn parse_provider(s: &str) -> Result<Provider, ApiError> {
    s.parse::<Provider>()
        .map_err(|e| ApiError::BadParameter(e.to_string()))
}

/// The regions of `provider` the organization may use, in catalog order.
pub fn unlocked<'a>(config: &'a Config, org: &Organization, provider: Provider) -> Vec<&'a str> {
    let catalog = config.regions(provider);
    match org.unlocked_regions.get(&provider) {
        None => catalog.iter().map(String::as_str).collect(),
        Some(allowed) => catalog
            .iter()
            .filter(|r| allowed.contains(r))
            .map(String::as_str)
            .collect(),
    }
}

/// Checks that `region` is in the catalog and unlocked for the organization, with a
/// message that lists what is available.
pub fn check_region(
    config: &Config,
    org: &Organization,
    provider: Provider,
    region: &str,
) -> Result<(), ApiError> {
    let catalog = config.regions(provider);
    if !is_plausible_region_name(region) || !catalog.iter().any(|r| r == region) {
        let shown = if is_plausible_region_name(region) {
            region
        } else {
            "(invalid name)"
        };
        return Err(ApiError::RegionUnavailable(format!(
            "unknown {provider} region {shown:?}; available regions: {}",
            catalog.join(", ")
        )));
    }
    let open = unlocked(config, org, provider);
    if !open.contains(&region) {
        return Err(ApiError::RegionUnavailable(format!(
            "{provider} region {region} is not unlocked for your organization; contact support to unlock it. \
             Unlocked regions: {}",
            if open.is_empty() {
                "none".to_string()
            } else {
                open.join(", ")
            }
        )));
    }
    Ok(())
}
