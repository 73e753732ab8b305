//! The default region catalog: the regions a customer may pick for keys and databases,
//! unless the operator's configuration replaces them.
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
}
