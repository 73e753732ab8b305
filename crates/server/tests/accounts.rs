//! The provider-account routes: which platform account a customer's key policy must trust.
mod common;

use common::{TestServer, assert_error};
use keyplane_app::{Config, ProviderAccount};
use keyplane_core::{Provider, Role};
use serde_json::json;

const CLASSIC: &str = "/v2/kms/classic/provider/aws/region/us-east-2/accounts";

fn account(id: &str, regions: Option<&[&str]>) -> ProviderAccount {
    let a = ProviderAccount::aws(id, "creator");
    match regions {
        Some(r) => a.serving(r),
        None => a,
    }
}

#[tokio::test]
async fn the_answer_is_the_configured_account_and_never_changes() {
    let s = TestServer::start().await;
    let (st, body) = s.get(CLASSIC, &s.admin).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body,
        json!([{"organization_id": s.org, "provider_id": "222222222222", "provider": "aws"}])
    );
    let (_, again) = s.get(CLASSIC, &s.admin).await;
    assert_eq!(again, body);
    // Serverless uses the same platform account.
    let (st, sl) = s
        .get("/v2/kms/provider/aws/region/us-east-2/accounts", &s.admin)
        .await;
    assert_eq!(st, 200);
    assert_eq!(sl, body);
    // Read-only users may read it (org-cmk-read).
    let ro = s.token(s.org, Role::ReadOnly).await;
    assert_eq!(s.get(CLASSIC, &ro).await.1, body);
}

#[tokio::test]
async fn assignments_spread_over_the_pool_and_stay_put() {
    let mut config = Config::default();
    config.provider_accounts.insert(
        Provider::Aws,
        vec![account("333333333331", None), account("333333333332", None)],
    );
    let s = TestServer::with_config(config).await;
    let (_, first) = s.get(CLASSIC, &s.admin).await;
    assert_eq!(first[0]["provider_id"], "333333333331");

    // A second organization gets the less-used account.
    let other = s.store.create_org("Other", None).await.unwrap();
    let other_admin = s.token(other.id, Role::OrgAdmin).await;
    let (_, second) = s.get(CLASSIC, &other_admin).await;
    assert_eq!(second[0]["provider_id"], "333333333332");
    // The first organization's answer did not move.
    assert_eq!(s.get(CLASSIC, &s.admin).await.1, first);
}

#[tokio::test]
async fn post_assigns_one_more_account_until_none_is_left() {
    let mut config = Config::default();
    config.provider_accounts.insert(
        Provider::Aws,
        vec![
            account("333333333331", None),
            account("333333333332", Some(&["eu-west-1"])),
        ],
    );
    let s = TestServer::with_config(config).await;
    let post = "/v2/kms/classic/provider/aws/accounts";
    let (st, body) = s.post(post, &s.admin, json!(null)).await;
    assert_eq!(st, 201, "{body}");
    let first = body["provider_id"].as_str().unwrap().to_string();
    let (st, body) = s.post(post, &s.admin, json!(null)).await;
    assert_eq!(st, 201, "{body}");
    assert_ne!(body["provider_id"].as_str().unwrap(), first);
    let (st, body) = s.post(post, &s.admin, json!(null)).await;
    let msg = assert_error(st, &body, 409, 4090);
    assert!(msg.contains("already assigned"), "{msg}");
    // Each region lists only the assigned accounts that serve it.
    let (_, us) = s.get(CLASSIC, &s.admin).await;
    assert_eq!(us.as_array().unwrap().len(), 1);
    assert_eq!(us[0]["provider_id"], "333333333331");
    let (_, eu) = s
        .get(
            "/v2/kms/classic/provider/aws/region/eu-west-1/accounts",
            &s.admin,
        )
        .await;
    assert_eq!(eu.as_array().unwrap().len(), 2, "{eu}");
    // Assigning needs org-cmk-write.
    let ro = s.token(s.org, Role::ReadOnly).await;
    let (st, body) = s.post(post, &ro, json!(null)).await;
    assert_error(st, &body, 403, 3000);
}

#[tokio::test]
async fn racing_first_requests_settle_on_one_account() {
    let mut config = Config::default();
    config.provider_accounts.insert(
        Provider::Aws,
        (1..=5)
            .map(|i| account(&format!("33333333333{i}"), None))
            .collect(),
    );
    let s = TestServer::with_config(config).await;
    let mut handles = vec![];
    for _ in 0..16 {
        let req = s.req("GET", CLASSIC, Some(&s.admin));
        handles.push(tokio::spawn(async move { common::send(req).await }));
    }
    let mut answers = std::collections::BTreeSet::new();
    for h in handles {
        let (st, body) = h.await.unwrap();
        assert_eq!(st, 200, "{body}");
        answers.insert(body.to_string());
    }
    assert_eq!(
        answers.len(),
        1,
        "every racing request saw the same account: {answers:?}"
    );
    assert_eq!(
        s.store
            .assigned_accounts(s.org, Provider::Aws)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn unknown_provider_region_and_locked_regions_list_what_is_available() {
    let s = TestServer::start().await;
    let (st, body) = s
        .get(
            "/v2/kms/classic/provider/ibm/region/us-east-2/accounts",
            &s.admin,
        )
        .await;
    let msg = assert_error(st, &body, 400, 1002);
    assert!(msg.contains("aws, gcp, azure"), "{msg}");

    let (st, body) = s
        .get(
            "/v2/kms/classic/provider/aws/region/mars-north-1/accounts",
            &s.admin,
        )
        .await;
    let msg = assert_error(st, &body, 404, 4002);
    assert!(
        msg.contains("us-east-2") && msg.contains("mars-north-1"),
        "{msg}"
    );

    s.store
        .set_unlocked_regions(s.org, Provider::Aws, Some(vec!["eu-west-1".into()]))
        .await
        .unwrap();
    let (st, body) = s.get(CLASSIC, &s.admin).await;
    let msg = assert_error(st, &body, 404, 4002);
    assert!(
        msg.contains("not unlocked") && msg.contains("eu-west-1"),
        "{msg}"
    );
    let (st, _) = s
        .get(
            "/v2/kms/classic/provider/aws/region/eu-west-1/accounts",
            &s.admin,
        )
        .await;
    assert_eq!(st, 200);
    // Other providers are untouched by an AWS restriction.
    let (st, body) = s
        .get("/v2/kms/provider/gcp/region/us-east1/accounts", &s.admin)
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body[0]["provider"], "gcp");
}
