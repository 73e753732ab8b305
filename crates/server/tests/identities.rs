//! Platform identities per provider, over the API: AWS accounts are shared by organizations
//! (the key policy's organization condition keeps them apart), while GCP service accounts and
//! Azure applications, which no key policy can bind to an organization's context, are each
//! assigned to one organization only, from the operator's pool.
mod common;

use std::collections::BTreeSet;

use common::{TestServer, assert_error, send};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::{Provider, Role};
use serde_json::json;

const GCP: &str = "/v2/kms/provider/gcp/region/us-east1/accounts";
const GCP_CLASSIC: &str = "/v2/kms/classic/provider/gcp/region/us-east1/accounts";
const AZURE: &str = "/v2/kms/provider/azure/region/eastus/accounts";
const AWS: &str = "/v2/kms/classic/provider/aws/region/us-east-2/accounts";

fn identity(id: String) -> ProviderAccount {
    ProviderAccount {
        id,
        role: "creator".into(),
        regions: None,
        provider_id: None,
        object_id: None,
    }
}

fn gcp_pool(n: usize) -> Vec<ProviderAccount> {
    (0..n)
        .map(|i| identity(format!("keyplane-{i}@platform.iam.gserviceaccount.com")))
        .collect()
}

#[tokio::test]
async fn concurrent_first_requests_of_eight_organizations_get_eight_identities() {
    let mut config = Config::default();
    config.provider_accounts.insert(Provider::Gcp, gcp_pool(8));
    config.provider_accounts.insert(
        Provider::Azure,
        vec![identity("7f3c2a10-0000-4000-8000-000000000001".into())],
    );
    let s = TestServer::with_config(config).await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        let org = s.store.create_org(&format!("org-{i}"), None).await.unwrap();
        tokens.push((org.id, s.token(org.id, Role::OrgAdmin).await));
    }
    // Every organization's first requests at once, two each (classic and serverless routes).
    let mut handles = Vec::new();
    for (org, token) in &tokens {
        for path in [GCP, GCP_CLASSIC] {
            let req = s.req("GET", path, Some(token));
            let org = *org;
            handles.push(tokio::spawn(async move { (org, send(req).await) }));
        }
    }
    let mut by_org = std::collections::BTreeMap::<uuid::Uuid, BTreeSet<String>>::new();
    for h in handles {
        let (org, (st, body)) = h.await.unwrap();
        assert_eq!(st, 200, "{body}");
        let list = body.as_array().unwrap();
        assert_eq!(list.len(), 1, "{body}");
        assert_eq!(list[0]["organization_id"], org.to_string());
        assert_eq!(list[0]["provider"], "gcp");
        by_org
            .entry(org)
            .or_default()
            .insert(list[0]["provider_id"].as_str().unwrap().to_string());
    }
    assert_eq!(by_org.len(), 8);
    let mut all = BTreeSet::new();
    for (org, ids) in &by_org {
        assert_eq!(
            ids.len(),
            1,
            "{org}: one identity whatever the route: {ids:?}"
        );
        all.extend(ids.iter().cloned());
    }
    assert_eq!(all.len(), 8, "no identity is shared: {by_org:?}");
    let usage = s.store.account_usage(Provider::Gcp).await.unwrap();
    assert!(usage.values().all(|n| *n == 1), "{usage:?}");
    // The answer stays put.
    let (org0, token0) = &tokens[0];
    let (_, again) = s.get(GCP, token0).await;
    assert!(by_org[org0].contains(again[0]["provider_id"].as_str().unwrap()));

    // A ninth organization finds the pool exhausted: 503, with what the operator must do.
    let ninth = s.store.create_org("late", None).await.unwrap();
    let late = s.token(ninth.id, Role::OrgAdmin).await;
    let (st, body) = s.get(GCP, &late).await;
    let msg = assert_error(st, &body, 503, 5031);
    assert!(msg.contains("no gcp platform identity is free"), "{msg}");
    assert!(msg.contains("[[provider_accounts.gcp]]"), "{msg}");
    let (st, body) = s
        .post("/v2/kms/classic/provider/gcp/accounts", token0, json!(null))
        .await;
    // Asking for one more when none is free is a conflict with the state, as for AWS.
    let msg = assert_error(st, &body, 409, 4090);
    assert!(
        msg.contains("no other platform gcp identity is free"),
        "{msg}"
    );
    assert!(
        s.store
            .assigned_accounts(ninth.id, Provider::Gcp)
            .await
            .unwrap()
            .is_empty()
    );

    // Azure alike, with a pool of one.
    let (st, body) = s.get(AZURE, token0).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = s.get(AZURE, &tokens[1].1).await;
    assert_error(st, &body, 503, 5031);

    // AWS accounts stay shared: every organization trusts the same one.
    let mut aws = BTreeSet::new();
    for (_, token) in tokens.iter().chain([(ninth.id, late.clone())].iter()) {
        let (st, body) = s.get(AWS, token).await;
        assert_eq!(st, 200, "{body}");
        aws.insert(body[0]["provider_id"].as_str().unwrap().to_string());
    }
    assert_eq!(aws, BTreeSet::from(["222222222222".to_string()]));
}

#[tokio::test]
async fn an_identity_shared_before_identities_were_exclusive_serves_neither_organization() {
    let mut config = Config::default();
    config.provider_accounts.insert(Provider::Gcp, gcp_pool(3));
    let s = TestServer::with_config(config).await;
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_token = s.token(other.id, Role::OrgAdmin).await;
    // As the least-used spread once assigned it: the same service account to both.
    let shared = "keyplane-0@platform.iam.gserviceaccount.com";
    for org in [s.org, other.id] {
        assert!(
            s.store
                .try_assign_account(org, Provider::Gcp, shared, 0)
                .await
                .unwrap()
        );
    }
    let (_, mine) = s.get(GCP, &s.admin).await;
    let (_, theirs) = s.get(GCP, &other_token).await;
    let (mine, theirs) = (
        mine[0]["provider_id"].as_str().unwrap().to_string(),
        theirs[0]["provider_id"].as_str().unwrap().to_string(),
    );
    assert_ne!(mine, shared);
    assert_ne!(theirs, shared);
    assert_ne!(mine, theirs);
    // Assigning one more takes no identity another organization holds: none is left.
    let (st, body) = s
        .post(
            "/v2/kms/classic/provider/gcp/accounts",
            &s.admin,
            json!(null),
        )
        .await;
    assert_error(st, &body, 409, 4090);
}
