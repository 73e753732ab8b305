//! Which (provider, region) pairs an organization may use: in the operator's catalog and
//! unlocked for the organization. Shared by every service that takes a region; and the
//! region listings (`Regions`): the catalog as the organization sees it, and what it
//! deploys where.
use std::collections::HashMap;

use keyplane_core::databases::CLASSIC_TIERS;
use keyplane_core::regions::{RegionZone, is_plausible_region_name, region_info};
use keyplane_core::{Permission, Provider};
use keyplane_store::{Database, DatabaseFilter, Organization};
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
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

/// A region of the catalog, as the region listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionListing {
    pub provider: Provider,
    pub name: String,
    pub display_name: String,
    pub zone: RegionZone,
    /// Whether the organization may deploy there (unlocked for it).
    pub unlocked: bool,
}

/// What the organization deploys in one (tier, provider, region): its live datacenters there
/// and their databases' capacity units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionUse {
    pub tier: String,
    pub provider: Provider,
    pub region: String,
    pub databases: u32,
    pub capacity_units: u32,
}

/// The tiers a database can be created with, in the order the listing gives them.
fn tiers() -> impl Iterator<Item = &'static str> {
    CLASSIC_TIERS.into_iter().chain(["serverless"])
}

pub struct Regions<'a>(pub(crate) &'a App);

impl Regions<'_> {
    /// Every region of the catalog, provider by provider in catalog order, each saying
    /// whether the organization may use it; with `only_unlocked`, only those it may.
    pub fn catalog(&self, who: &Requester, only_unlocked: bool) -> AppResult<Vec<RegionListing>> {
        who.require(Permission::OrgDbCreate)?;
        let config = &self.0.config;
        let mut out = Vec::new();
        for provider in Provider::ALL {
            let open = unlocked(config, &who.org, provider);
            for name in config.regions(provider) {
                let is_open = open.contains(&name.as_str());
                if only_unlocked && !is_open {
                    continue;
                }
                let info = region_info(provider, name);
                out.push(RegionListing {
                    provider,
                    name: name.clone(),
                    display_name: info.display_name.into_owned(),
                    zone: info.zone,
                    unlocked: is_open,
                });
            }
        }
        Ok(out)
    }

    /// Every (tier, provider, region) the organization may deploy to, with what it deploys
    /// there now.
    pub async fn usage(&self, who: &Requester) -> AppResult<Vec<RegionUse>> {
        who.require(Permission::OrgDbCreate)?;
        let mut used: HashMap<(String, Provider, String), (u32, u32)> = HashMap::new();
        let mut filter = DatabaseFilter {
            limit: 100,
            ..DatabaseFilter::default()
        };
        loop {
            let page = self.0.store.list_databases(who.org_id(), &filter).await?;
            let Some(last) = page.last() else { break };
            filter.starting_after = Some(last.id);
            // One read of the page's datacenters, not one per database.
            let ids: Vec<Uuid> = page.iter().map(|d| d.id).collect();
            let dbs: HashMap<Uuid, &Database> = page.iter().map(|d| (d.id, d)).collect();
            for dc in self.0.store.list_datacenters_of(&ids).await? {
                let Some(db) = dbs.get(&dc.database_id) else {
                    continue;
                };
                if dc.terminated_at.is_some() {
                    continue;
                }
                let n = used
                    .entry((db.tier.clone(), dc.provider, dc.region.clone()))
                    .or_default();
                n.0 += 1;
                n.1 += u32::try_from(db.capacity_units).unwrap_or(0);
            }
        }
        let config = &self.0.config;
        let mut out = Vec::new();
        for provider in Provider::ALL {
            for region in unlocked(config, &who.org, provider) {
                for tier in tiers() {
                    let (databases, capacity_units) = used
                        .get(&(tier.to_string(), provider, region.to_string()))
                        .copied()
                        .unwrap_or_default();
                    out.push(RegionUse {
                        tier: tier.to_string(),
                        provider,
                        region: region.to_string(),
                        databases,
                        capacity_units,
                    });
                }
            }
        }
        Ok(out)
    }
}
