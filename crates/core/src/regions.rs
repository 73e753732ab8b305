//! The default region catalog: the regions a customer may pick for keys and databases,
//! unless the operator's configuration replaces them; and how the region listings of the
//! DevOps API describe a region (its display name and geographic zone).
use std::borrow::Cow;

use crate::Provider;

/// Common regions of each provider, in the cloud's own spelling.
pub fn default_regions(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Aws => &[
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-north-1",
            "eu-south-1",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-east-1",
            "me-south-1",
            "af-south-1",
        ],
        Provider::Gcp => &[
            "us-east1",
            "us-east4",
            "us-central1",
            "us-west1",
            "us-west2",
            "us-west4",
            "northamerica-northeast1",
            "southamerica-east1",
            "europe-west1",
            "europe-west2",
            "europe-west3",
            "europe-west4",
            "europe-north1",
            "asia-south1",
            "asia-southeast1",
            "asia-northeast1",
            "australia-southeast1",
        ],
        Provider::Azure => &[
            "eastus",
            "eastus2",
            "westus2",
            "westus3",
            "centralus",
            "canadacentral",
            "brazilsouth",
            "northeurope",
            "westeurope",
            "uksouth",
            "francecentral",
            "germanywestcentral",
            "swedencentral",
            "centralindia",
            "southeastasia",
            "japaneast",
            "australiaeast",
        ],
        // The platform's own sites: only the operator knows their names (`serve --dev`
        // names one, `local`).
        Provider::Openbao => &[],
    }
}

/// The geographic zone the original's region listings put a region in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegionZone {
    /// North America.
    Na,
    /// Europe, the Middle East and Africa.
    Emea,
    /// Asia and the Pacific.
    Apac,
    /// South America.
    Sa,
}

impl RegionZone {
    pub const ALL: [RegionZone; 4] = [
        RegionZone::Na,
        RegionZone::Emea,
        RegionZone::Apac,
        RegionZone::Sa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegionZone::Na => "na",
            RegionZone::Emea => "emea",
            RegionZone::Apac => "apac",
            RegionZone::Sa => "sa",
        }
    }
}

/// How a region is shown in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub display_name: Cow<'static, str>,
    pub zone: RegionZone,
}

/// The default catalog's regions: (provider, name, display name, zone).
const KNOWN: &[(Provider, &str, &str, RegionZone)] = {
    use Provider::{Aws, Azure, Gcp};
    use RegionZone::{Apac, Emea, Na, Sa};
    &[
        (Aws, "us-east-1", "US East (N. Virginia)", Na),
        (Aws, "us-east-2", "US East (Ohio)", Na),
        (Aws, "us-west-1", "US West (N. California)", Na),
        (Aws, "us-west-2", "US West (Oregon)", Na),
        (Aws, "ca-central-1", "Canada (Central)", Na),
        (Aws, "sa-east-1", "South America (São Paulo)", Sa),
        (Aws, "eu-west-1", "Europe (Ireland)", Emea),
        (Aws, "eu-west-2", "Europe (London)", Emea),
        (Aws, "eu-west-3", "Europe (Paris)", Emea),
        (Aws, "eu-central-1", "Europe (Frankfurt)", Emea),
        (Aws, "eu-north-1", "Europe (Stockholm)", Emea),
        (Aws, "eu-south-1", "Europe (Milan)", Emea),
        (Aws, "ap-south-1", "Asia Pacific (Mumbai)", Apac),
        (Aws, "ap-southeast-1", "Asia Pacific (Singapore)", Apac),
        (Aws, "ap-southeast-2", "Asia Pacific (Sydney)", Apac),
        (Aws, "ap-northeast-1", "Asia Pacific (Tokyo)", Apac),
        (Aws, "ap-northeast-2", "Asia Pacific (Seoul)", Apac),
        (Aws, "ap-east-1", "Asia Pacific (Hong Kong)", Apac),
        (Aws, "me-south-1", "Middle East (Bahrain)", Emea),
        (Aws, "af-south-1", "Africa (Cape Town)", Emea),
        (Gcp, "us-east1", "South Carolina", Na),
        (Gcp, "us-east4", "Northern Virginia", Na),
        (Gcp, "us-central1", "Iowa", Na),
        (Gcp, "us-west1", "Oregon", Na),
        (Gcp, "us-west2", "Los Angeles", Na),
        (Gcp, "us-west4", "Las Vegas", Na),
        (Gcp, "northamerica-northeast1", "Montréal", Na),
        (Gcp, "southamerica-east1", "São Paulo", Sa),
        (Gcp, "europe-west1", "Belgium", Emea),
        (Gcp, "europe-west2", "London", Emea),
        (Gcp, "europe-west3", "Frankfurt", Emea),
        (Gcp, "europe-west4", "Netherlands", Emea),
        (Gcp, "europe-north1", "Finland", Emea),
        (Gcp, "asia-south1", "Mumbai", Apac),
        (Gcp, "asia-southeast1", "Singapore", Apac),
        (Gcp, "asia-northeast1", "Tokyo", Apac),
        (Gcp, "australia-southeast1", "Sydney", Apac),
        (Azure, "eastus", "East US (Virginia)", Na),
        (Azure, "eastus2", "East US 2 (Virginia)", Na),
        (Azure, "westus2", "West US 2 (Washington)", Na),
        (Azure, "westus3", "West US 3 (Arizona)", Na),
        (Azure, "centralus", "Central US (Iowa)", Na),
        (Azure, "canadacentral", "Canada Central (Toronto)", Na),
        (Azure, "brazilsouth", "Brazil South (São Paulo)", Sa),
        (Azure, "northeurope", "North Europe (Ireland)", Emea),
        (Azure, "westeurope", "West Europe (Netherlands)", Emea),
        (Azure, "uksouth", "UK South (London)", Emea),
        (Azure, "francecentral", "France Central (Paris)", Emea),
        (
            Azure,
            "germanywestcentral",
            "Germany West Central (Frankfurt)",
            Emea,
        ),
        (Azure, "swedencentral", "Sweden Central (Gävle)", Emea),
        (Azure, "centralindia", "Central India (Pune)", Apac),
        (Azure, "southeastasia", "Southeast Asia (Singapore)", Apac),
        (Azure, "japaneast", "Japan East (Tokyo)", Apac),
        (
            Azure,
            "australiaeast",
            "Australia East (New South Wales)",
            Apac,
        ),
    ]
};

/// A region's display name and zone. A region the operator configured beyond the default
/// catalog is shown by its own name, its zone guessed from the name's usual prefixes.
pub fn region_info(provider: Provider, name: &str) -> RegionInfo {
    if let Some((_, _, display, zone)) = KNOWN
        .iter()
        .find(|(p, n, _, _)| *p == provider && *n == name)
    {
        return RegionInfo {
            display_name: Cow::Borrowed(display),
            zone: *zone,
        };
    }
    RegionInfo {
        display_name: Cow::Owned(name.to_string()),
        zone: guess_zone(name),
    }
}

fn guess_zone(name: &str) -> RegionZone {
    const SA: [&str; 4] = ["sa-", "southamerica", "brazil", "chile"];
    const NA: [&str; 10] = [
        "us-",
        "us",
        "ca-",
        "canada",
        "northamerica",
        "mx-",
        "mexico",
        "eastus",
        "westus",
        "centralus",
    ];
    const EMEA: [&str; 19] = [
        "eu-",
        "europe",
        "me-",
        "southafrica",
        "af-",
        "africa",
        "il-",
        "uk",
        "france",
        "germany",
        "sweden",
        "norway",
        "switzerland",
        "italy",
        "poland",
        "spain",
        "qatar",
        "uae",
        "israel",
    ];
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if starts(&SA) {
        RegionZone::Sa
    } else if starts(&EMEA) || name.contains("europe") {
        RegionZone::Emea
    } else if starts(&NA) {
        RegionZone::Na
    } else {
        RegionZone::Apac
    }
}

/// A region name must look like a cloud region before we look it up, so that error
/// messages never echo arbitrary bytes back.
pub fn is_plausible_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_seed_region_and_plausible_names() {
        assert!(default_regions(Provider::Aws).contains(&"us-east-2"));
        for p in Provider::ALL {
            assert!(
                default_regions(p)
                    .iter()
                    .all(|r| is_plausible_region_name(r))
            );
        }
        assert!(!is_plausible_region_name("US East"));
    }

    #[test]
    fn every_default_region_has_a_display_name_and_a_zone() {
        for p in Provider::ALL {
            for r in default_regions(p) {
                let info = region_info(p, r);
                assert_ne!(info.display_name, *r, "{p} {r} has no display name");
            }
        }
        assert_eq!(region_info(Provider::Aws, "us-east-2").zone, RegionZone::Na);
        assert_eq!(
            region_info(Provider::Gcp, "southamerica-east1").zone,
            RegionZone::Sa
        );
        assert_eq!(
            region_info(Provider::Azure, "westeurope").zone,
            RegionZone::Emea
        );
        // Configured beyond the catalog: shown by name, zone from the name.
        let other = region_info(Provider::Aws, "eu-central-2");
        assert_eq!(other.display_name, "eu-central-2");
        assert_eq!(other.zone, RegionZone::Emea);
        assert_eq!(
            region_info(Provider::Aws, "ap-south-2").zone,
            RegionZone::Apac
        );
        assert_eq!(region_info(Provider::Gcp, "us-south1").zone, RegionZone::Na);
        assert_eq!(region_info(Provider::Aws, "sa-west-1").zone, RegionZone::Sa);
    }
}
