//! Which (provider, region) pairs an organization may use: in the operator's catalog and
//! unlocked for the organization. Shared by every service that takes a region.
use keyplane_core::Provider;
use keyplane_core::regions::is_plausible_region_name;
use keyplane_store::Organization;

use crate::config::Config;
use crate::error::{AppError, AppResult, RegionProblem};

/// A provider named by a request's path or query.
pub fn parse_provider(s: &str) -> AppResult<Provider> {
    s.parse::<Provider>()
        .map_err(|e| AppError::invalid_parameter("provider", e.to_string()))
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

/// Checks that `region` is in the catalog and unlocked for the organization; the refusal
/// lists what is available.
pub fn check_region(
    config: &Config,
    org: &Organization,
    provider: Provider,
    region: &str,
) -> AppResult<()> {
    let catalog = config.regions(provider);
    if !is_plausible_region_name(region) || !catalog.iter().any(|r| r == region) {
        return Err(AppError::RegionUnavailable(RegionProblem::Unknown {
            provider,
            given: is_plausible_region_name(region).then(|| region.to_string()),
            catalog: catalog.to_vec(),
        }));
    }
    let open = unlocked(config, org, provider);
    if !open.contains(&region) {
        return Err(AppError::RegionUnavailable(RegionProblem::Locked {
            provider,
            region: region.to_string(),
            unlocked: open.iter().map(|r| r.to_string()).collect(),
        }));
    }
    Ok(())
}
