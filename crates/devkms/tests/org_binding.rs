//! Org-bound key policies on a real devkms, driven by the unmodified aws-sdk-kms: the
//! statements `keyplane_core::policy::recommended_statements_bound` prints, pasted as a customer
//! would, must stop the shared platform role from using a key with another organization's
//! encryption context, must make every grant carry the organization's constraint, and that
//! constraint must then hold the grantee to the organization. Each case follows AWS's documented
//! evaluation of `kms:EncryptionContext:<key>`, `kms:EncryptionContextKeys`,
//! `kms:GrantConstraintType` and grant constraints.

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};
use common::*;
use keyplane_core::policy::recommended_statements_bound;

const ORG_A: &str = "5b0c7c2e-7d61-4c43-9a55-0a0a0a0a0a0a";
const ORG_B: &str = "5b0c7c2e-7d61-4c43-9a55-0b0b0b0b0b0b";
/// A principal the platform might hand a grant on to; it need not exist to be a grantee.
const THIRD: &str = "arn:aws:iam::222222222222:role/keyplane-third";

/// The owner's IAM delegation plus the org-bound statements for the platform role and `org`.
fn bound_policy(org: &str) -> String {
    bound_policy_with(org, |_| {})
}

fn bound_policy_with(org: &str, edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut statements = vec![serde_json::json!({
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:root")},
        "Action": "kms:*", "Resource": "*"
    })];
    statements.extend(recommended_statements_bound(CREATOR, org));
    edit(&mut statements);
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn org(o: &str) -> Option<std::collections::HashMap<String, String>> {
    Some(ctx(&[("organization", o)]))
}

fn subset(pairs: &[(&str, &str)]) -> GrantConstraints {
    GrantConstraints::builder()
        .set_encryption_context_subset(Some(ctx(pairs)))
        .build()
}

fn equals(pairs: &[(&str, &str)]) -> GrantConstraints {
    GrantConstraints::builder()
        .set_encryption_context_equals(Some(ctx(pairs)))
        .build()
}

/// A CreateGrant as `client` for `grantee` with `ops` and an optional constraint.
async fn grant(
    client: &aws_sdk_kms::Client,
    key: &str,
    grantee: &str,
    ops: &[GrantOperation],
    constraints: Option<GrantConstraints>,
) -> Result<String, String> {
    client
        .create_grant()
        .key_id(key)
        .grantee_principal(grantee)
        .set_operations(Some(ops.to_vec()))
        .set_constraints(constraints)
        .send()
        .await
        .map(|g| g.grant_id().unwrap_or_default().to_string())
        .map_err(|e| code(Err::<(), _>(e)))
}

/// A ciphertext of `plaintext` under `key`, encrypted by the owner with `context`.
async fn owner_ciphertext(s: &DevKmsServer, key: &str, context: &[(&str, &str)]) -> Blob {
    encrypt(&s.client(ADMIN), key, b"organization data")
        .set_encryption_context(Some(ctx(context)))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

async fn decrypt_with(
    client: &aws_sdk_kms::Client,
    blob: &Blob,
    context: &[(&str, &str)],
) -> Result<(), String> {
    client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(ctx(context)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(Err::<(), _>(e)))
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(r: Result<T, String>) {
    assert!(
        matches!(&r, Err(c) if c == "AccessDeniedException"),
        "expected AccessDeniedException, got {r:?}"
    );
}

#[tokio::test]
async fn the_platform_uses_a_bound_key_only_with_its_organizations_context() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let arn = new_key_arn(&admin).await;
    put_policy(&admin, &arn, bound_policy(ORG_A)).await;

    // GenerateDataKey / Encrypt / Decrypt with the organization's own context succeed.
    let dk = data_key(&creator, &arn).set_encryption_context(org(ORG_A));
    let dk = dk.send().await.unwrap();
    let blob = dk.ciphertext_blob().unwrap().clone();
    decrypt_with(&creator, &blob, &[("organization", ORG_A)])
        .await
        .unwrap();
    creator
        .generate_data_key_without_plaintext()
        .key_id(&arn)
        .number_of_bytes(32)
        .set_encryption_context(org(ORG_A))
        .send()
        .await
        .unwrap();
    encrypt(&creator, &arn, b"x")
        .set_encryption_context(org(ORG_A))
        .send()
        .await
        .unwrap();

    // Another organization's context, or none, is refused before any decryption: the policy,
    // not the ciphertext, answers (AccessDenied, not InvalidCiphertext).
    let b_blob = owner_ciphertext(&s, &arn, &[("organization", ORG_B)]).await;
    assert_denied(decrypt_with(&creator, &b_blob, &[("organization", ORG_B)]).await);
    assert_denied(decrypt_with(&creator, &blob, &[]).await);
    let none = owner_ciphertext(&s, &arn, &[]).await;
    assert_denied(decrypt_with(&creator, &none, &[]).await);
    for context in [org(ORG_B), None, Some(ctx(&[("org", ORG_A)]))] {
        assert_code(
            data_key(&creator, &arn)
                .set_encryption_context(context.clone())
                .send()
                .await,
            "AccessDeniedException",
        );
        assert_code(
            encrypt(&creator, &arn, b"x")
                .set_encryption_context(context.clone())
                .send()
                .await,
            "AccessDeniedException",
        );
        assert_code(
            creator
                .generate_data_key_without_plaintext()
                .key_id(&arn)
                .number_of_bytes(32)
                .set_encryption_context(context)
                .send()
                .await,
            "AccessDeniedException",
        );
    }
    // Extra pairs are allowed; the condition only requires the organization's pair.
    data_key(&creator, &arn)
        .set_encryption_context(Some(ctx(&[("organization", ORG_A), ("db", "d1")])))
        .send()
        .await
        .unwrap();
    // AWS compares the key after kms:EncryptionContext: case-insensitively, the value exactly.
    data_key(&creator, &arn)
        .set_encryption_context(Some(ctx(&[("Organization", ORG_A)])))
        .send()
        .await
        .unwrap();
    assert_code(
        data_key(&creator, &arn)
            .set_encryption_context(Some(ctx(&[("organization", &ORG_A.to_uppercase())])))
            .send()
            .await,
        "AccessDeniedException",
    );

    // ReEncrypt is checked on both sides: ReEncryptFrom under the source context, ReEncryptTo
    // under the destination context.
    let re = |src: &str, dst: &str| {
        creator
            .re_encrypt()
            .ciphertext_blob(blob.clone())
            .source_encryption_context("organization", src)
            .destination_key_id(&arn)
            .destination_encryption_context("organization", dst)
            .send()
    };
    re(ORG_A, ORG_A).await.unwrap();
    assert_code(re(ORG_A, ORG_B).await, "AccessDeniedException");
    let (code_b, msg_b) = error_of(
        creator
            .re_encrypt()
            .ciphertext_blob(b_blob.clone())
            .source_encryption_context("organization", ORG_B)
            .destination_key_id(&arn)
            .destination_encryption_context("organization", ORG_A)
            .send()
            .await,
    );
    assert_eq!(code_b, "AccessDeniedException");
    assert!(msg_b.contains("kms:ReEncryptFrom"), "{msg_b}");

    // DescribeKey, ListGrants and RevokeGrant carry no context and stay open to the role.
    creator.describe_key().key_id(&arn).send().await.unwrap();
    creator.list_grants().key_id(&arn).send().await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn a_bound_policy_lets_the_platform_create_only_grants_carrying_the_organization() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let volumes = s.client(VOLUMES);
    let arn = new_key_arn(&admin).await;
    put_policy(&admin, &arn, bound_policy(ORG_A)).await;
    let ops = [GrantOperation::Decrypt, GrantOperation::GenerateDataKey];

    // No constraint, another organization's, or one without the organization's pair: refused.
    for c in [
        None,
        Some(subset(&[("organization", ORG_B)])),
        Some(equals(&[("organization", ORG_B)])),
        Some(subset(&[("db", "d1")])),
    ] {
        assert_denied(grant(&creator, &arn, VOLUMES, &ops, c.clone()).await);
    }
    // The organization's pair, as a subset (what registration will pass) or exactly.
    let subset_grant = grant(
        &creator,
        &arn,
        VOLUMES,
        &ops,
        Some(subset(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();

    // The grantee is held to the organization's context on every use.
    let a_blob = owner_ciphertext(&s, &arn, &[("organization", ORG_A), ("db", "d1")]).await;
    let b_blob = owner_ciphertext(&s, &arn, &[("organization", ORG_B)]).await;
    decrypt_with(&volumes, &a_blob, &[("organization", ORG_A), ("db", "d1")])
        .await
        .unwrap();
    assert_denied(decrypt_with(&volumes, &b_blob, &[("organization", ORG_B)]).await);
    data_key(&volumes, &arn)
        .set_encryption_context(org(ORG_A))
        .send()
        .await
        .unwrap();
    assert_code(
        data_key(&volumes, &arn)
            .set_encryption_context(org(ORG_B))
            .send()
            .await,
        "AccessDeniedException",
    );
    assert_code(
        data_key(&volumes, &arn).send().await,
        "AccessDeniedException",
    );
    // In a grant constraint the key is compared case-insensitively, the value exactly.
    let upper_key = owner_ciphertext(&s, &arn, &[("ORGANIZATION", ORG_A)]).await;
    decrypt_with(&volumes, &upper_key, &[("ORGANIZATION", ORG_A)])
        .await
        .unwrap();
    let upper_value = owner_ciphertext(&s, &arn, &[("organization", &ORG_A.to_uppercase())]).await;
    assert_denied(
        decrypt_with(
            &volumes,
            &upper_value,
            &[("organization", &ORG_A.to_uppercase())],
        )
        .await,
    );

    // EncryptionContextEquals allows exactly the organization's pair and nothing more.
    creator
        .revoke_grant()
        .key_id(&arn)
        .grant_id(&subset_grant)
        .send()
        .await
        .unwrap();
    grant(
        &creator,
        &arn,
        VOLUMES,
        &ops,
        Some(equals(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();
    let exact = owner_ciphertext(&s, &arn, &[("organization", ORG_A)]).await;
    decrypt_with(&volumes, &exact, &[("organization", ORG_A)])
        .await
        .unwrap();
    assert_denied(decrypt_with(&volumes, &a_blob, &[("organization", ORG_A), ("db", "d1")]).await);
    // ListGrants shows the constraint the grant carries.
    let listed = creator.list_grants().key_id(&arn).send().await.unwrap();
    let c = listed.grants()[0].constraints().unwrap();
    assert_eq!(
        c.encryption_context_equals().unwrap().get("organization"),
        Some(&ORG_A.to_string())
    );
    s.stop().await;
}

#[tokio::test]
async fn grants_made_from_a_grant_are_at_least_as_constrained() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let volumes = s.client(VOLUMES);
    let arn = new_key_arn(&admin).await;
    let ops = [GrantOperation::Decrypt, GrantOperation::CreateGrant];
    grant(
        &admin,
        &arn,
        VOLUMES,
        &ops,
        Some(subset(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();
    let child =
        |c: Option<GrantConstraints>| grant(&volumes, &arn, THIRD, &[GrantOperation::Decrypt], c);
    // Dropping or loosening the parent's constraint is refused.
    for c in [
        None,
        Some(subset(&[("db", "d1")])),
        Some(equals(&[("db", "d1")])),
        Some(subset(&[("organization", ORG_B)])),
    ] {
        assert_denied(child(c.clone()).await);
    }
    // Adding pairs to the subset, or turning it into Equals with the pair, is stricter.
    child(Some(subset(&[("organization", ORG_A), ("db", "d1")])))
        .await
        .unwrap();
    child(Some(equals(&[("organization", ORG_A)])))
        .await
        .unwrap();
    child(Some(equals(&[("organization", ORG_A), ("db", "d1")])))
        .await
        .unwrap();
    // An operation the parent lacks is refused whatever the constraint.
    assert_denied(
        grant(
            &volumes,
            &arn,
            THIRD,
            &[GrantOperation::Encrypt],
            Some(subset(&[("organization", ORG_A)])),
        )
        .await,
    );

    // Under an Equals parent only the same Equals is as strict.
    let key2 = new_key_arn(&admin).await;
    grant(
        &admin,
        &key2,
        VOLUMES,
        &ops,
        Some(equals(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();
    let child2 =
        |c: Option<GrantConstraints>| grant(&volumes, &key2, THIRD, &[GrantOperation::Decrypt], c);
    for c in [
        Some(subset(&[("organization", ORG_A)])),
        Some(equals(&[("organization", ORG_A), ("db", "d1")])),
        None,
    ] {
        assert_denied(child2(c.clone()).await);
    }
    child2(Some(equals(&[("Organization", ORG_A)])))
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test]
async fn create_grant_conditions_see_the_grant_constraint() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let arn = new_key_arn(&admin).await;
    let ops = [GrantOperation::Decrypt];
    let with_grant_condition = |condition: serde_json::Value| {
        bound_policy_with(ORG_A, |st| st[3]["Condition"] = condition)
    };

    // kms:GrantConstraintType names the constraint's type.
    put_policy(
        &admin,
        &arn,
        with_grant_condition(serde_json::json!({
            "StringEquals": {"kms:GrantConstraintType": "EncryptionContextEquals"}
        })),
    )
    .await;
    assert_denied(
        grant(
            &creator,
            &arn,
            VOLUMES,
            &ops,
            Some(subset(&[("organization", ORG_A)])),
        )
        .await,
    );
    assert_denied(grant(&creator, &arn, VOLUMES, &ops, None).await);
    grant(
        &creator,
        &arn,
        VOLUMES,
        &ops,
        Some(equals(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();

    // kms:EncryptionContextKeys lists the constraint's keys: ForAllValues forbids others.
    put_policy(
        &admin,
        &arn,
        with_grant_condition(serde_json::json!({
            "StringEquals": {"kms:EncryptionContext:organization": ORG_A},
            "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["organization"]}
        })),
    )
    .await;
    grant(
        &creator,
        &arn,
        VOLUMES,
        &ops,
        Some(subset(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();
    assert_denied(
        grant(
            &creator,
            &arn,
            VOLUMES,
            &ops,
            Some(subset(&[("organization", ORG_A), ("db", "d1")])),
        )
        .await,
    );

    // kms:GrantOperations with ForAllValues limits what the grant may carry.
    put_policy(
        &admin,
        &arn,
        with_grant_condition(serde_json::json!({
            "StringEquals": {"kms:EncryptionContext:organization": ORG_A},
            "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}
        })),
    )
    .await;
    grant(
        &creator,
        &arn,
        VOLUMES,
        &ops,
        Some(subset(&[("organization", ORG_A)])),
    )
    .await
    .unwrap();
    assert_denied(
        grant(
            &creator,
            &arn,
            VOLUMES,
            &[GrantOperation::Decrypt, GrantOperation::CreateGrant],
            Some(subset(&[("organization", ORG_A)])),
        )
        .await,
    );
    s.stop().await;
}

#[tokio::test]
async fn policy_and_constraint_rules_aws_enforces_at_the_door() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let arn = new_key_arn(&admin).await;

    // ForAllValues on a single-valued encryption-context key is refused at PutKeyPolicy.
    let overly = bound_policy_with(ORG_A, |st| {
        st[1]["Condition"] = serde_json::json!({
            "ForAllValues:StringEquals": {"kms:EncryptionContext:organization": ORG_A}
        })
    });
    let (code, message) = error_of(
        admin
            .put_key_policy()
            .key_id(&arn)
            .policy(overly)
            .send()
            .await,
    );
    assert_eq!(code, "MalformedPolicyDocumentException");
    assert!(message.contains("OverlyPermissiveCondition"), "{message}");

    // A grant constraint holds at most 8 pairs, each value at most 384 characters.
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".into())).collect();
    let nine: Vec<(&str, &str)> = nine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let long = "v".repeat(385);
    for c in [
        subset(&nine),
        equals(&nine),
        subset(&[("organization", &long)]),
    ] {
        assert_eq!(
            grant(&admin, &arn, VOLUMES, &[GrantOperation::Decrypt], Some(c)).await,
            Err("ValidationException".to_string())
        );
    }
    grant(
        &admin,
        &arn,
        VOLUMES,
        &[GrantOperation::Decrypt],
        Some(subset(&nine[..8])),
    )
    .await
    .unwrap();

    // kms:ReEncryptOnSameKey and kms:EncryptionAlgorithm are in every crypto request's context.
    let same_key_only = bound_policy_with(ORG_A, |st| {
        st.push(serde_json::json!({
            "Sid": "re-encrypt in place only", "Effect": "Deny", "Principal": {"AWS": CREATOR},
            "Action": "kms:ReEncrypt*", "Resource": "*",
            "Condition": {"Bool": {"kms:ReEncryptOnSameKey": "false"}}
        }));
        st.push(serde_json::json!({
            "Sid": "symmetric only", "Effect": "Deny", "Principal": {"AWS": CREATOR},
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
            "Condition": {"StringNotEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}}
        }));
    });
    put_policy(&admin, &arn, same_key_only.clone()).await;
    let other = new_key_arn(&admin).await;
    put_policy(&admin, &other, same_key_only).await;
    let blob = encrypt(&creator, &arn, b"x")
        .set_encryption_context(org(ORG_A))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let re_to = |dst: &str| {
        creator
            .re_encrypt()
            .ciphertext_blob(blob.clone())
            .source_encryption_context("organization", ORG_A)
            .destination_key_id(dst)
            .destination_encryption_context("organization", ORG_A)
            .send()
    };
    re_to(&arn).await.unwrap();
    assert_code(re_to(&other).await, "AccessDeniedException");
    s.stop().await;
}

/// A GenerateDataKey request for 32 bytes under `key`.
fn data_key(
    client: &aws_sdk_kms::Client,
    key: &str,
) -> aws_sdk_kms::operation::generate_data_key::builders::GenerateDataKeyFluentBuilder {
    client.generate_data_key().key_id(key).number_of_bytes(32)
}
