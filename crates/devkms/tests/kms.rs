//! End-to-end tests: a real server on a loopback port, driven by the unmodified aws-sdk-kms.

mod common;

use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::operation::generate_data_key::builders::GenerateDataKeyFluentBuilder;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeySpec, GrantConstraints, GrantOperation, KeyMetadata, KeySpec, KeyState, KeyUsageType,
    Tag,
};
use common::*;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .tag_key(key)
        .tag_value(value)
        .build()
        .unwrap()
}

async fn describe(client: &aws_sdk_kms::Client, key: &str) -> KeyMetadata {
    client
        .describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .expect("DescribeKey answered without KeyMetadata")
}

/// A GenerateDataKey request for 32 bytes under `key`, to send as is or to add to.
fn data_key_32(client: &aws_sdk_kms::Client, key: &str) -> GenerateDataKeyFluentBuilder {
    client.generate_data_key().key_id(key).number_of_bytes(32)
}

#[tokio::test]
async fn core_operations_work_like_aws() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);

    let created = admin
        .create_key()
        .description("customer key")
        .tags(tag("team", "db"))
        .send()
        .await
        .unwrap();
    let md = created.key_metadata().unwrap();
    let key_id = md.key_id().to_string();
    let arn = md.arn().unwrap().to_string();
    assert_eq!(
        arn,
        format!("arn:aws:kms:us-east-2:111111111111:key/{key_id}")
    );
    assert_eq!(md.aws_account_id(), Some("111111111111"));
    assert_eq!(md.key_state(), Some(&KeyState::Enabled));
    assert!(md.enabled());
    assert_eq!(md.key_spec(), Some(&KeySpec::SymmetricDefault));
    assert_eq!(md.key_usage(), Some(&KeyUsageType::EncryptDecrypt));
    assert_eq!(md.description(), Some("customer key"));
    assert_eq!(md.key_manager().map(|m| m.as_str()), Some("CUSTOMER"));
    assert_eq!(md.origin().map(|o| o.as_str()), Some("AWS_KMS"));
    assert_eq!(md.multi_region(), Some(false));
    assert!(md.creation_date().is_some());
    assert_eq!(md.encryption_algorithms().len(), 1);

    // DescribeKey by id, ARN, alias name and alias ARN.
    admin
        .create_alias()
        .alias_name("alias/customer")
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();
    for r in [
        key_id.clone(),
        arn.clone(),
        "alias/customer".into(),
        "arn:aws:kms:us-east-2:111111111111:alias/customer".into(),
    ] {
        assert_eq!(describe(&admin, &r).await.key_id(), key_id);
    }
    for (alias, want) in [
        ("alias/customer", "AlreadyExistsException"),
        ("alias/aws/x", "NotAuthorizedException"),
        ("customer", "ValidationException"),
    ] {
        let r = admin
            .create_alias()
            .alias_name(alias)
            .target_key_id(&key_id)
            .send()
            .await;
        assert_eq!(code(r), want, "CreateAlias {alias}");
    }
    let aliases = admin.list_aliases().key_id(&key_id).send().await.unwrap();
    assert_eq!(aliases.aliases().len(), 1);
    assert_eq!(aliases.aliases()[0].target_key_id(), Some(key_id.as_str()));

    // Encrypt / Decrypt with an encryption context, through the alias.
    let enc = encrypt(&admin, "alias/customer", b"secret")
        .set_encryption_context(Some(ctx(&[("db", "1"), ("org", "o")])))
        .send()
        .await
        .unwrap();
    assert_eq!(enc.key_id(), Some(arn.as_str()));
    let dec = admin
        .decrypt()
        .ciphertext_blob(enc.ciphertext_blob().unwrap().clone())
        .set_encryption_context(Some(ctx(&[("org", "o"), ("db", "1")])))
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"secret");
    assert_eq!(dec.key_id(), Some(arn.as_str()));

    // ReEncrypt to a second key.
    let k2 = new_key_arn(&admin).await;
    let re = admin
        .re_encrypt()
        .ciphertext_blob(enc.ciphertext_blob().unwrap().clone())
        .set_source_encryption_context(Some(ctx(&[("db", "1"), ("org", "o")])))
        .destination_key_id(&k2)
        .send()
        .await
        .unwrap();
    assert_eq!(re.key_id(), Some(k2.as_str()));
    assert_eq!(re.source_key_id(), Some(arn.as_str()));
    assert_eq!(
        decrypt(&admin, re.ciphertext_blob().unwrap()).await,
        b"secret"
    );
    assert_code(
        admin
            .decrypt()
            .ciphertext_blob(re.ciphertext_blob().unwrap().clone())
            .key_id(&key_id)
            .send()
            .await,
        "IncorrectKeyException",
    );

    // Data keys: by spec or by length, each decrypting back to its plaintext.
    for (spec, bytes, len) in [
        (Some(DataKeySpec::Aes256), None, 32),
        (Some(DataKeySpec::Aes128), None, 16),
        (None, Some(64), 64),
    ] {
        let dk = admin
            .generate_data_key()
            .key_id(&key_id)
            .set_key_spec(spec.clone())
            .set_number_of_bytes(bytes)
            .send()
            .await
            .unwrap();
        let plaintext = dk.plaintext().unwrap().as_ref();
        assert_eq!(plaintext.len(), len, "{spec:?} {bytes:?}");
        assert_eq!(
            decrypt(&admin, dk.ciphertext_blob().unwrap()).await,
            plaintext
        );
    }
    // Neither a spec nor a length, or too long.
    for bytes in [None, Some(2000)] {
        let r = admin
            .generate_data_key()
            .key_id(&key_id)
            .set_number_of_bytes(bytes)
            .send()
            .await;
        assert_eq!(code(r), "ValidationException", "{bytes:?}");
    }
    let wp = admin
        .generate_data_key_without_plaintext()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert!(wp.ciphertext_blob().is_some());
    let r = admin
        .generate_random()
        .number_of_bytes(48)
        .send()
        .await
        .unwrap();
    assert_eq!(r.plaintext().unwrap().as_ref().len(), 48);

    // Policies.
    let p = admin
        .get_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert!(
        p.policy()
            .unwrap()
            .contains("arn:aws:iam::111111111111:root")
    );
    let names = admin
        .list_key_policies()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(names.policy_names(), ["default".to_string()]);
    let newp = creator_policy();
    admin
        .put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(&newp)
        .send()
        .await
        .unwrap();
    let got = admin.get_key_policy().key_id(&key_id).send().await.unwrap();
    assert_eq!(got.policy(), Some(newp.as_str()));

    // Tags.
    admin
        .tag_resource()
        .key_id(&key_id)
        .tags(tag("env", "dev"))
        .send()
        .await
        .unwrap();
    let tag_keys = async || {
        let listed = admin
            .list_resource_tags()
            .key_id(&key_id)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed.tags().iter().map(|t| t.tag_key().into()).collect();
        keys.sort();
        keys
    };
    assert_eq!(tag_keys().await, ["env", "team"]);
    admin
        .untag_resource()
        .key_id(&key_id)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    assert_eq!(tag_keys().await, ["env"]);
    let r = admin
        .tag_resource()
        .key_id(&key_id)
        .tags(tag("aws:x", "v"))
        .send()
        .await;
    assert_code(r, "TagException");

    // ListKeys paging.
    admin.create_key().send().await.unwrap();
    let page1 = admin.list_keys().limit(2).send().await.unwrap();
    assert_eq!(page1.keys().len(), 2);
    assert!(page1.truncated());
    let page2 = admin
        .list_keys()
        .limit(2)
        .marker(page1.next_marker().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page2.keys().len(), 1);
    assert!(!page2.truncated());

    // Another region sees none of it; delete alias.
    admin
        .delete_alias()
        .alias_name("alias/customer")
        .send()
        .await
        .unwrap();
    assert_code(
        admin.describe_key().key_id("alias/customer").send().await,
        "NotFoundException",
    );
    s.stop().await;
}

#[tokio::test]
async fn key_specs_are_recorded_but_only_symmetric_keys_encrypt() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    for (spec, usage) in [
        (KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt),
        (KeySpec::Rsa4096, KeyUsageType::SignVerify),
        (KeySpec::EccNistP256, KeyUsageType::SignVerify),
        (KeySpec::EccSecgP256K1, KeyUsageType::SignVerify),
        (KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac),
    ] {
        let k = admin
            .create_key()
            .key_spec(spec.clone())
            .key_usage(usage.clone())
            .send()
            .await
            .unwrap();
        let md = k.key_metadata().unwrap();
        assert_eq!(md.key_spec(), Some(&spec));
        assert_eq!(md.key_usage(), Some(&usage));
        let r = encrypt(&admin, md.key_id(), b"x").send().await;
        assert_eq!(code(r), "InvalidKeyUsageException", "{spec:?}");
    }
    // A spec without its usage, a usage the spec cannot have, a usage without its spec.
    for (spec, usage) in [
        (Some(KeySpec::EccNistP256), None),
        (Some(KeySpec::Hmac256), Some(KeyUsageType::EncryptDecrypt)),
        (None, Some(KeyUsageType::SignVerify)),
    ] {
        let r = admin
            .create_key()
            .set_key_spec(spec.clone())
            .set_key_usage(usage.clone())
            .send()
            .await;
        assert_eq!(code(r), "ValidationException", "{spec:?} {usage:?}");
    }
    let mrk = admin.create_key().multi_region(true).send().await.unwrap();
    let id = mrk.key_metadata().unwrap().key_id().to_string();
    assert!(
        id.starts_with("mrk-") && id.len() == 36 && id[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(mrk.key_metadata().unwrap().multi_region(), Some(true));
    s.stop().await;
}

#[tokio::test]
async fn key_states_follow_aws() {
    let s = DevKmsServer::start_with_clock_control().await;
    let admin = s.client(ADMIN);
    let key = new_key_id(&admin).await;
    let ct = ciphertext(&admin, &key, b"x").await;

    admin.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        describe(&admin, &key).await.key_state(),
        Some(&KeyState::Disabled)
    );
    assert_code(
        encrypt(&admin, &key, b"x").send().await,
        "DisabledException",
    );
    assert_code(
        admin.decrypt().ciphertext_blob(ct.clone()).send().await,
        "DisabledException",
    );
    assert_code(data_key_32(&admin, &key).send().await, "DisabledException");
    admin.enable_key().key_id(&key).send().await.unwrap();
    decrypt(&admin, &ct).await;

    for days in [6, 31] {
        let r = admin
            .schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(days)
            .send()
            .await;
        assert_eq!(code(r), "ValidationException", "{days} days");
    }
    let sched = admin
        .schedule_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(sched.pending_window_in_days(), Some(30));
    assert_eq!(sched.key_state(), Some(&KeyState::PendingDeletion));
    let md = describe(&admin, &key).await;
    assert_eq!(md.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(md.pending_deletion_window_in_days(), Some(30));
    let days =
        (md.deletion_date().unwrap().secs() - md.creation_date().unwrap().secs()) as f64 / 86400.0;
    assert!((days - 30.0).abs() < 0.01, "{days}");
    assert_code(
        admin.decrypt().ciphertext_blob(ct.clone()).send().await,
        "KMSInvalidStateException",
    );
    assert_code(
        admin.enable_key().key_id(&key).send().await,
        "KMSInvalidStateException",
    );
    assert_code(
        admin.schedule_key_deletion().key_id(&key).send().await,
        "KMSInvalidStateException",
    );

    admin
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        describe(&admin, &key).await.key_state(),
        Some(&KeyState::Disabled)
    );
    assert_code(
        admin.cancel_key_deletion().key_id(&key).send().await,
        "KMSInvalidStateException",
    );

    // After the deletion date the key is gone.
    admin
        .create_alias()
        .alias_name("alias/doomed")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    admin
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(advance_clock(&s, 6 * 86400).await, 200);
    describe(&admin, &key).await;
    assert_eq!(advance_clock(&s, 2 * 86400).await, 200);
    assert_code(
        admin.describe_key().key_id(&key).send().await,
        "NotFoundException",
    );
    assert_code(
        admin.decrypt().ciphertext_blob(ct).send().await,
        "NotFoundException",
    );
    assert_code(
        admin.describe_key().key_id("alias/doomed").send().await,
        "NotFoundException",
    );
    let keys = admin.list_keys().send().await.unwrap();
    assert!(keys.keys().iter().all(|k| k.key_id() != Some(key.as_str())));
    s.stop().await;
}

#[tokio::test]
async fn clock_control_needs_config_and_token() {
    // Clock control is off unless the config allows it.
    let s = DevKmsServer::start().await;
    assert_eq!(advance_clock(&s, 10).await, 403);
    let r = reqwest::Client::new()
        .post(format!("{}/_admin/clock/advance", s.endpoint))
        .header("x-keyplane-admin-token", "wrong")
        .body("{\"seconds\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_decrypting() {
    let s = DevKmsServer::start_with_clock_control().await;
    let admin = s.client(ADMIN);
    let key = new_key_id(&admin).await;
    let rotation_status = async || {
        admin
            .get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .unwrap()
    };
    assert!(!rotation_status().await.key_rotation_enabled());
    let old = ciphertext(&admin, &key, b"v0").await;
    admin
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let new = ciphertext(&admin, &key, b"v1").await;
    assert_eq!(decrypt(&admin, &old).await, b"v0");
    assert_eq!(decrypt(&admin, &new).await, b"v1");

    assert_code(
        admin
            .enable_key_rotation()
            .key_id(&key)
            .rotation_period_in_days(30)
            .send()
            .await,
        "ValidationException",
    );
    admin
        .enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let st = rotation_status().await;
    assert!(st.key_rotation_enabled());
    assert_eq!(st.rotation_period_in_days(), Some(90));
    assert!(st.next_rotation_date().is_some());
    assert_eq!(advance_clock(&s, 91 * 86400).await, 200);
    let rotations = admin
        .list_key_rotations()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let kinds: Vec<&str> = rotations
        .rotations()
        .iter()
        .filter_map(|r| r.rotation_type().map(|t| t.as_str()))
        .collect();
    assert_eq!(kinds, ["ON_DEMAND", "AUTOMATIC"]);
    assert_eq!(decrypt(&admin, &old).await, b"v0");
    admin
        .disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(!rotation_status().await.key_rotation_enabled());

    let rsa = admin
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    assert_code(
        admin
            .enable_key_rotation()
            .key_id(rsa.key_metadata().unwrap().key_id())
            .send()
            .await,
        "UnsupportedOperationException",
    );
    s.stop().await;
}

#[tokio::test]
async fn cross_account_access_only_through_the_key_policy() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let md = admin.create_key().send().await.unwrap();
    let key = md.key_metadata().unwrap().key_id().to_string();
    let arn = md.key_metadata().unwrap().arn().unwrap().to_string();
    admin
        .create_alias()
        .alias_name("alias/shared")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();

    // Default policy: only account 111111111111.
    let (err_code, msg) = error_of(creator.describe_key().key_id(&arn).send().await);
    assert_eq!(err_code, "AccessDeniedException");
    assert_eq!(
        msg,
        format!(
            "User: {CREATOR_SESSION} is not authorized to perform: kms:DescribeKey on resource: {arn} because no resource-based policy allows the kms:DescribeKey action"
        )
    );
    // A bare key id or alias name is looked up in the caller's own account.
    for own_account_name in [key.as_str(), "alias/shared"] {
        let r = creator.describe_key().key_id(own_account_name).send().await;
        assert_eq!(code(r), "NotFoundException", "{own_account_name}");
    }
    // The provider account cannot list or see the customer's keys.
    assert!(creator.list_keys().send().await.unwrap().keys().is_empty());

    put_policy(&admin, &key, creator_policy()).await;
    assert_eq!(describe(&creator, &arn).await.arn(), Some(arn.as_str()));
    describe(&creator, "arn:aws:kms:us-east-2:111111111111:alias/shared").await;
    assert_code(
        creator.describe_key().key_id(&key).send().await,
        "NotFoundException",
    );
    let dk = creator
        .generate_data_key()
        .key_id(&arn)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypt(&creator, dk.ciphertext_blob().unwrap()).await,
        dk.plaintext().unwrap().as_ref()
    );
    // Administrative operations are not cross-account in AWS, whatever the policy says.
    assert_code(
        creator.get_key_policy().key_id(&arn).send().await,
        "NotFoundException",
    );
    assert_code(
        creator.schedule_key_deletion().key_id(&arn).send().await,
        "NotFoundException",
    );
    // Another region is another KMS: a key ARN of another region is NotFound.
    assert_code(
        admin
            .describe_key()
            .key_id(arn.replace("us-east-2", "eu-west-1"))
            .send()
            .await,
        "NotFoundException",
    );

    // A Deny wins over every Allow.
    let deny_decrypt = creator_policy_with(|p| {
        p["Statement"].as_array_mut().unwrap().push(serde_json::json!({
            "Sid": "deny decrypt", "Effect": "Deny", "Principal": {"AWS": CREATOR}, "Action": "kms:Decrypt", "Resource": "*"
        }))
    });
    put_policy(&admin, &key, deny_decrypt).await;
    let (err_code, msg) = error_of(
        creator
            .decrypt()
            .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
            .send()
            .await,
    );
    assert_eq!(err_code, "AccessDeniedException");
    assert!(
        msg.ends_with("with an explicit deny in a resource-based policy"),
        "{msg}"
    );
    encrypt(&creator, &arn, b"still").send().await.unwrap();
    s.stop().await;
}

/// A call's outcome for [`denied_actions`]: `Ok`, or the AWS error code it failed with.
fn outcome<T, E: ProvideErrorMetadata>(r: Result<T, E>) -> Result<(), String> {
    r.map(|_| ())
        .map_err(|e| e.code().unwrap_or("?").to_string())
}

/// Runs each of the platform role's calls once; returns the actions whose call was refused with
/// AccessDeniedException (any other failure panics).
async fn denied_actions(s: &DevKmsServer, arn: &str, other_arn: &str) -> Vec<&'static str> {
    let creator = s.client(CREATOR);
    let admin = s.client(ADMIN);
    let mut denied = vec![];
    let mut note = |action: &'static str, r: Result<(), String>| match r {
        Ok(()) => {}
        Err(c) if c == "AccessDeniedException" => denied.push(action),
        Err(c) => panic!("{action}: unexpected {c}"),
    };
    // Ciphertexts made by the key owner, for Decrypt and ReEncrypt.
    let ct = ciphertext(&admin, arn, b"p").await;
    let other_ct = ciphertext(&admin, other_arn, b"p").await;

    note(
        "kms:Encrypt",
        outcome(encrypt(&creator, arn, b"p").send().await),
    );
    note(
        "kms:Decrypt",
        outcome(creator.decrypt().ciphertext_blob(ct.clone()).send().await),
    );
    note(
        "kms:GenerateDataKey",
        outcome(
            creator
                .generate_data_key()
                .key_id(arn)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await,
        ),
    );
    note(
        "kms:GenerateDataKeyWithoutPlaintext",
        outcome(
            creator
                .generate_data_key_without_plaintext()
                .key_id(arn)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await,
        ),
    );
    // ReEncryptFrom is checked on the source key, ReEncryptTo on the destination key; the other
    // side is a key whose policy always allows everything.
    note(
        "kms:ReEncryptFrom",
        outcome(
            creator
                .re_encrypt()
                .ciphertext_blob(ct.clone())
                .destination_key_id(other_arn)
                .send()
                .await,
        ),
    );
    note(
        "kms:ReEncryptTo",
        outcome(
            creator
                .re_encrypt()
                .ciphertext_blob(other_ct)
                .destination_key_id(arn)
                .send()
                .await,
        ),
    );
    note(
        "kms:DescribeKey",
        outcome(creator.describe_key().key_id(arn).send().await),
    );
    let grant = creator
        .create_grant()
        .key_id(arn)
        .grantee_principal(VOLUMES)
        .operations(GrantOperation::Decrypt)
        .send()
        .await;
    let grant_id = match grant {
        Ok(g) => Some(g.grant_id().unwrap().to_string()),
        Err(e) => {
            note("kms:CreateGrant", outcome(Err::<(), _>(e)));
            None
        }
    };
    note(
        "kms:ListGrants",
        outcome(creator.list_grants().key_id(arn).send().await),
    );
    // Revoke a grant the owner made, so RevokeGrant is tested even when CreateGrant is refused.
    let owner_grant = admin
        .create_grant()
        .key_id(arn)
        .grantee_principal(VOLUMES)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    note(
        "kms:RevokeGrant",
        outcome(
            creator
                .revoke_grant()
                .key_id(arn)
                .grant_id(owner_grant.grant_id().unwrap())
                .send()
                .await,
        ),
    );
    if let Some(g) = grant_id {
        admin
            .revoke_grant()
            .key_id(arn)
            .grant_id(g)
            .send()
            .await
            .unwrap();
    }
    denied
}

#[tokio::test]
async fn each_action_of_the_seed_policy_is_needed_for_exactly_its_call() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let arn = new_key_arn(&admin).await;
    let other = new_key_arn(&admin).await;
    put_policy(&admin, &other, creator_policy()).await;

    put_policy(&admin, &arn, creator_policy()).await;
    assert_eq!(
        denied_actions(&s, &arn, &other).await,
        Vec::<&str>::new(),
        "full seed policy"
    );

    for action in SEED_USE_ACTIONS.into_iter().chain(SEED_GRANT_ACTIONS) {
        put_policy(
            &admin,
            &arn,
            seed_policy(CUSTOMER_ACCOUNT, CREATOR, Some(action)),
        )
        .await;
        let denied = denied_actions(&s, &arn, &other).await;
        if action == "kms:EnableKey" {
            // EnableKey has no cross-account call to lose (see the test below).
            assert!(denied.is_empty(), "without {action}: {denied:?}");
        } else {
            assert_eq!(denied, vec![action], "policy without {action}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn enable_key_is_policy_checked_and_not_cross_account() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let arn = new_key_arn(&admin).await;
    put_policy(&admin, &arn, creator_policy()).await;
    // AWS: "Cross-account use: No" for EnableKey, even when the key policy allows it.
    assert_code(
        creator.enable_key().key_id(&arn).send().await,
        "NotFoundException",
    );

    // Same-account principal named by the statement: EnableKey works exactly while the policy
    // lists it.
    let op = reqwest::Client::new()
        .post(format!("{}/_admin/identities", s.endpoint))
        .header("x-keyplane-admin-token", s.kms.admin_token())
        .body(r#"{"account":"111111111111","kind":"role","name":"operator"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(op.status(), 201);
    let body: serde_json::Value = op.json().await.unwrap();
    let operator = s.client_with(
        body["accessKeyId"].as_str().unwrap(),
        body["secretAccessKey"].as_str().unwrap(),
    );
    let role = "arn:aws:iam::111111111111:role/operator";
    // The operator's account root is not delegated in this policy: only the statement counts.
    let only_statement = |missing: Option<&str>| {
        let mut p: serde_json::Value =
            serde_json::from_str(&seed_policy(CUSTOMER_ACCOUNT, role, missing)).unwrap();
        p["Statement"][0]["Principal"]["AWS"] = serde_json::json!(ADMIN);
        p.to_string()
    };
    put_policy(&admin, &arn, only_statement(None)).await;
    admin.disable_key().key_id(&arn).send().await.unwrap();
    operator.enable_key().key_id(&arn).send().await.unwrap();
    put_policy(&admin, &arn, only_statement(Some("kms:EnableKey"))).await;
    admin.disable_key().key_id(&arn).send().await.unwrap();
    assert_code(
        operator.enable_key().key_id(&arn).send().await,
        "AccessDeniedException",
    );
    describe(&operator, &arn).await;
    s.stop().await;
}

#[tokio::test]
async fn grants_extend_the_policy_for_their_grantee() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator = s.client(CREATOR);
    let volumes = s.client(VOLUMES);
    let arn = new_key_arn(&admin).await;
    put_policy(&admin, &arn, creator_policy()).await;
    let v1_extra = || Some(ctx(&[("volume", "v1"), ("extra", "ok")]));

    assert_code(
        data_key_32(&volumes, &arn).send().await,
        "AccessDeniedException",
    );
    let g = creator
        .create_grant()
        .key_id(&arn)
        .grantee_principal(VOLUMES)
        .retiring_principal(CREATOR)
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .constraints(
            GrantConstraints::builder()
                .set_encryption_context_subset(Some(ctx(&[("volume", "v1")])))
                .build(),
        )
        .name("volume-v1")
        .send()
        .await
        .unwrap();
    let grant_id = g.grant_id().unwrap().to_string();
    let token = g.grant_token().unwrap().to_string();

    let dk = data_key_32(&volumes, &arn)
        .set_encryption_context(v1_extra())
        .send()
        .await
        .unwrap();
    let decrypt_dk = || {
        volumes
            .decrypt()
            .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
            .set_encryption_context(v1_extra())
            .send()
    };
    decrypt_dk().await.unwrap();
    // Outside the constraint, or an operation the grant does not list.
    assert_code(
        data_key_32(&volumes, &arn)
            .set_encryption_context(Some(ctx(&[("volume", "v2")])))
            .send()
            .await,
        "AccessDeniedException",
    );
    assert_code(
        data_key_32(&volumes, &arn).send().await,
        "AccessDeniedException",
    );
    assert_code(
        encrypt(&volumes, &arn, b"x")
            .set_encryption_context(Some(ctx(&[("volume", "v1")])))
            .send()
            .await,
        "AccessDeniedException",
    );
    let listed = creator.list_grants().key_id(&arn).send().await.unwrap();
    assert_eq!(listed.grants().len(), 1);
    let lg = &listed.grants()[0];
    assert_eq!(lg.grant_id(), Some(grant_id.as_str()));
    assert_eq!(lg.grantee_principal(), Some(VOLUMES));
    assert_eq!(lg.retiring_principal(), Some(CREATOR));
    assert_eq!(lg.name(), Some("volume-v1"));
    assert_eq!(lg.issuing_account(), Some("arn:aws:iam::222222222222:root"));

    // A Deny in the policy beats the grant.
    let deny_volumes = creator_policy_with(|p| {
        p["Statement"].as_array_mut().unwrap().push(serde_json::json!({
            "Effect": "Deny", "Principal": {"AWS": VOLUMES}, "Action": "kms:Decrypt", "Resource": "*"
        }))
    });
    put_policy(&admin, &arn, deny_volumes).await;
    assert_code(decrypt_dk().await, "AccessDeniedException");
    put_policy(&admin, &arn, creator_policy()).await;

    // Retire by token (grantee), then a second grant revoked by the creator.
    volumes
        .retire_grant()
        .grant_token(&token)
        .send()
        .await
        .unwrap();
    assert_code(
        data_key_32(&volumes, &arn)
            .set_encryption_context(Some(ctx(&[("volume", "v1")])))
            .send()
            .await,
        "AccessDeniedException",
    );
    let encrypt_grant = |retiring: Option<&str>| {
        creator
            .create_grant()
            .key_id(&arn)
            .grantee_principal(VOLUMES)
            .set_retiring_principal(retiring.map(str::to_string))
            .operations(GrantOperation::Encrypt)
            .send()
    };
    let g2 = encrypt_grant(None).await.unwrap();
    encrypt(&volumes, &arn, b"x").send().await.unwrap();
    let revoke_g2 = || {
        creator
            .revoke_grant()
            .key_id(&arn)
            .grant_id(g2.grant_id().unwrap())
            .send()
    };
    revoke_g2().await.unwrap();
    assert_code(
        encrypt(&volumes, &arn, b"x").send().await,
        "AccessDeniedException",
    );
    assert_code(revoke_g2().await, "InvalidGrantIdException");
    // The retiring principal can retire by key and id; someone else cannot.
    let g3 = encrypt_grant(Some(CREATOR)).await.unwrap();
    let g4 = encrypt_grant(None).await.unwrap();
    creator
        .retire_grant()
        .key_id(&arn)
        .grant_id(g3.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_code(
        creator
            .retire_grant()
            .grant_token(g4.grant_token().unwrap())
            .send()
            .await,
        "AccessDeniedException",
    );
    assert_code(
        creator.retire_grant().grant_token("bogus").send().await,
        "InvalidGrantTokenException",
    );

    // With AWS's usual condition, a direct CreateGrant (not through an AWS service) is refused.
    let for_aws_resources = creator_policy_with(|p| {
        p["Statement"][2]["Condition"] =
            serde_json::json!({"Bool": {"kms:GrantIsForAWSResource": "true"}});
    });
    put_policy(&admin, &arn, for_aws_resources).await;
    assert_code(
        creator
            .create_grant()
            .key_id(&arn)
            .grantee_principal(VOLUMES)
            .operations(GrantOperation::Decrypt)
            .send()
            .await,
        "AccessDeniedException",
    );
    assert_code(
        admin
            .create_grant()
            .key_id(&arn)
            .grantee_principal(VOLUMES)
            .operations(GrantOperation::Sign)
            .operations(GrantOperation::Decrypt)
            .retiring_principal("nobody")
            .send()
            .await,
        "ValidationException",
    );
    s.stop().await;
}

#[tokio::test]
async fn policy_validation_and_lockout_safety() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let key = new_key_id(&admin).await;
    assert_code(
        admin
            .put_key_policy()
            .key_id(&key)
            .policy("{not json")
            .send()
            .await,
        "MalformedPolicyDocumentException",
    );
    assert_code(
        admin.create_key().policy("{\"Statement\": 3}").send().await,
        "MalformedPolicyDocumentException",
    );
    let lockout = creator_policy().replace(
        "arn:aws:iam::111111111111:root",
        "arn:aws:iam::333333333333:root",
    );
    let (err_code, msg) = error_of(
        admin
            .put_key_policy()
            .key_id(&key)
            .policy(&lockout)
            .send()
            .await,
    );
    assert_eq!(err_code, "MalformedPolicyDocumentException");
    assert_eq!(
        msg,
        "The new key policy will not allow you to update the key policy in the future."
    );
    assert_code(
        admin.create_key().policy(&lockout).send().await,
        "MalformedPolicyDocumentException",
    );
    admin
        .put_key_policy()
        .key_id(&key)
        .policy(&lockout)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    assert_code(
        admin.get_key_policy().key_id(&key).send().await,
        "AccessDeniedException",
    );
    assert_code(
        admin.describe_key().key_id(&key).send().await,
        "AccessDeniedException",
    );
    let k2 = admin
        .create_key()
        .policy(&lockout)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    assert!(k2.key_metadata().is_some());
    s.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_aws_errors() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let key = new_key_id(&admin).await;

    let not_base64 = format!("{{\"KeyId\":\"{key}\",\"Plaintext\":\"***not base64***\"}}");
    for (operation, body, want) in [
        ("DescribeKey", "{not json", "SerializationException"),
        ("MakeCoffee", "{}", "UnknownOperationException"),
        ("Encrypt", not_base64.as_str(), "SerializationException"),
        ("Encrypt", "{\"Plaintext\":\"AAAA\"}", "ValidationException"),
        ("DescribeKey", "{\"KeyId\": 5}", "SerializationException"),
    ] {
        let target = format!("TrentService.{operation}");
        let (st, answer) = raw(&s, ADMIN, &target, body).await;
        assert_eq!(
            (st, answer["__type"].as_str()),
            (400, Some(want)),
            "{target} {body}"
        );
    }

    // Signature problems.
    let c = s.kms.credentials(ADMIN).unwrap();
    let wrong = s.client_with(
        &c.access_key_id,
        "not-the-secret-not-the-secret-not-the-sec",
    );
    assert_code(wrong.list_keys().send().await, "InvalidSignatureException");
    let unknown = s.client_with("AKIAUNKNOWNUNKNOWN00", "whatever");
    assert_code(
        unknown.list_keys().send().await,
        "UnrecognizedClientException",
    );
    let signed_ago = async |minutes| {
        raw_signed(
            &s.endpoint,
            &c.access_key_id,
            &c.secret_access_key,
            "TrentService.ListKeys",
            "{}",
            chrono::Utc::now() - chrono::Duration::minutes(minutes),
        )
        .await
    };
    let (st, body) = signed_ago(20).await;
    assert_eq!(
        (st, body["__type"].as_str()),
        (400, Some("InvalidSignatureException"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired")
    );
    let (st, _) = signed_ago(10).await;
    assert_eq!(st, 200);
    let r = reqwest::Client::new()
        .post(format!("{}/", s.endpoint))
        .header("x-amz-target", "TrentService.ListKeys")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["__type"],
        "MissingAuthenticationTokenException"
    );

    // Sizes.
    assert_code(
        encrypt(&admin, &key, &[1u8; 4097]).send().await,
        "ValidationException",
    );
    encrypt(&admin, &key, &[1u8; 4096]).send().await.unwrap();

    // Unknown keys.
    for missing in [
        "11111111-2222-3333-4444-555555555555",
        "not-a-key",
        "alias/nope",
    ] {
        let r = admin.describe_key().key_id(missing).send().await;
        assert_eq!(code(r), "NotFoundException", "{missing}");
    }
    assert_code(
        encrypt(
            &admin,
            "arn:aws:kms:us-east-2:111111111111:key/11111111-2222-3333-4444-555555555555",
            b"x",
        )
        .send()
        .await,
        "NotFoundException",
    );

    // Ciphertext integrity and encryption context binding.
    let ct = encrypt(&admin, &key, b"x")
        .set_encryption_context(Some(ctx(&[("a", "1")])))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let mut tampered = ct.clone();
    let n = tampered.len();
    tampered[n - 5] ^= 0x40;
    for (what, blob, context) in [
        ("tampered", tampered, Some(ctx(&[("a", "1")]))),
        ("garbage", b"garbage".to_vec(), None),
        ("another context", ct.clone(), Some(ctx(&[("a", "2")]))),
        ("no context", ct.clone(), None),
    ] {
        let r = admin
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(context)
            .send()
            .await;
        assert_eq!(code(r), "InvalidCiphertextException", "{what}");
    }
    admin
        .decrypt()
        .ciphertext_blob(Blob::new(ct))
        .set_encryption_context(Some(ctx(&[("a", "1")])))
        .send()
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let s = DevKmsServer::start().await;
    let admin = s.client(ADMIN);
    let creator_before = s.kms.credentials(CREATOR).unwrap();
    let admin_creds = s.kms.credentials(ADMIN).unwrap();
    let token_before = s.kms.admin_token();
    let arn = admin
        .create_key()
        .description("persist me")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    admin
        .create_alias()
        .alias_name("alias/persist")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    put_policy(&admin, &arn, creator_policy()).await;
    let g = admin
        .create_grant()
        .key_id(&arn)
        .grantee_principal(VOLUMES)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let ct = ciphertext(&admin, &arn, b"kept").await;
    admin
        .rotate_key_on_demand()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let dir = s.dir.clone();
    let tmp = s.stop().await;

    use std::os::unix::fs::PermissionsExt;
    for f in ["root.key", "admin-token", "state.json", "credentials.json"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(std::fs::read(dir.join("root.key")).unwrap().len(), 32);
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        !state.contains(admin_creds.secret_access_key.as_str()),
        "secrets must be sealed in state.json"
    );

    let s2 = DevKmsServer::start_in(&dir, false).await;
    assert_eq!(s2.kms.admin_token(), token_before);
    assert_eq!(
        s2.kms.credentials(CREATOR).unwrap().access_key_id,
        creator_before.access_key_id
    );
    let admin2 = s2.client(ADMIN);
    assert_eq!(
        describe(&admin2, "alias/persist").await.description(),
        Some("persist me")
    );
    assert_eq!(decrypt(&admin2, &ct).await, b"kept");
    decrypt(&s2.client(VOLUMES), &ct).await;
    let grants = admin2.list_grants().key_id(&arn).send().await.unwrap();
    assert_eq!(grants.grants()[0].grant_id(), g.grant_id());
    describe(&s2.client(CREATOR), &arn).await;
    s2.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn admin_route_adds_identities() {
    let s = DevKmsServer::start().await;
    let http = reqwest::Client::new();
    let add_identity = |token: Option<String>, body: &'static str| {
        let r = http
            .post(format!("{}/_admin/identities", s.endpoint))
            .body(body);
        let r = match token {
            Some(t) => r.header("x-keyplane-admin-token", t),
            None => r,
        };
        r.send()
    };
    let r = add_identity(Some(s.kms.admin_token()), r#"{"account":"333333333333"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["principalArn"], "arn:aws:iam::333333333333:user/admin");
    let c = s.client_with(
        b["accessKeyId"].as_str().unwrap(),
        b["secretAccessKey"].as_str().unwrap(),
    );
    let k = c.create_key().send().await.unwrap();
    assert_eq!(
        k.key_metadata().unwrap().aws_account_id(),
        Some("333333333333")
    );
    assert!(
        s.kms
            .credentials("arn:aws:iam::333333333333:user/admin")
            .is_some()
    );
    let bad = add_identity(None, r#"{"account":"333333333333"}"#)
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let bad = add_identity(Some(s.kms.admin_token()), r#"{"account":"12"}"#)
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    s.stop().await;
}

#[tokio::test]
async fn regions_session_tokens_and_extra_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    // A config-supplied identity with fixed keys.
    let kms = keyplane_devkms::DevKms::open(keyplane_devkms::DevKmsConfig {
        data_dir: dir.clone(),
        extra_identities: vec![keyplane_devkms::IdentityConfig {
            account: "444444444444".into(),
            kind: keyplane_devkms::IdentityKind::Role,
            name: "ops".into(),
            access_key_id: Some("AKIAFIXEDOPSKEY00001".into()),
            secret_access_key: Some("fixed-secret-fixed-secret-fixed-secret-0".into()),
        }],
        allow_clock_control: false,
    })
    .unwrap();
    let c = kms
        .credentials("arn:aws:iam::444444444444:role/ops")
        .unwrap();
    assert_eq!(c.access_key_id, "AKIAFIXEDOPSKEY00001");
    assert!(
        !format!("{c:?}").contains("fixed-secret"),
        "Debug must redact the secret"
    );
    drop(kms);
    let s = DevKmsServer::start_in(&dir, false).await;
    let ops = s.client_with(
        "AKIAFIXEDOPSKEY00001",
        "fixed-secret-fixed-secret-fixed-secret-0",
    );
    let k = ops.create_key().send().await.unwrap();
    assert_eq!(
        k.key_metadata().unwrap().aws_account_id(),
        Some("444444444444")
    );

    // Keys live in one region: another region's endpoint scope does not see them.
    let admin = s.client(ADMIN);
    let key = new_key_id(&admin).await;
    let creds = s.kms.credentials(ADMIN).unwrap();
    let west = kms_client(
        &s.endpoint,
        "eu-west-1",
        Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            Some("session-token".into()),
            None,
            "t",
        ),
    );
    assert_code(
        west.describe_key().key_id(&key).send().await,
        "NotFoundException",
    );
    let wk = west.create_key().send().await.unwrap();
    assert!(
        wk.key_metadata()
            .unwrap()
            .arn()
            .unwrap()
            .starts_with("arn:aws:kms:eu-west-1:111111111111:key/")
    );
    let ct = ciphertext(&west, wk.key_metadata().unwrap().key_id(), b"w").await;
    assert_code(
        admin.decrypt().ciphertext_blob(ct).send().await,
        "InvalidCiphertextException",
    );

    // UpdateAlias / UpdateKeyDescription; AWS operations the dev KMS lacks are "unsupported".
    let k2 = new_key_id(&admin).await;
    admin
        .create_alias()
        .alias_name("alias/moving")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    admin
        .update_alias()
        .alias_name("alias/moving")
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    assert_eq!(describe(&admin, "alias/moving").await.key_id(), k2);
    admin
        .update_key_description()
        .key_id(&k2)
        .description("renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(describe(&admin, &k2).await.description(), Some("renamed"));
    assert_code(
        admin.get_public_key().key_id(&k2).send().await,
        "UnsupportedOperationException",
    );
    s.stop().await;
}

/// A change is on disk when its answer arrives: 8 CreateKey requests at once (the state file
/// is written after each handler, on the blocking pool, newest snapshot first), and as each
/// is answered the state file read straight from disk, with the server still running, holds
/// its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_change_is_on_disk_while_the_server_runs() {
    let s = DevKmsServer::start().await;
    let dir = s.dir.clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let admin = s.client(ADMIN);
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut ids = vec![];
                for k in 0..5 {
                    let id = admin
                        .create_key()
                        .description(format!("writer {i} key {k}"))
                        .send()
                        .await
                        .unwrap()
                        .key_metadata()
                        .unwrap()
                        .key_id()
                        .to_string();
                    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
                    assert!(state.contains(&id), "answered key {id} not on disk yet");
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 40);
    let tmp = s.stop().await;
    let s2 = DevKmsServer::start_in(&dir, false).await;
    let admin = s2.client(ADMIN);
    for id in &all {
        describe(&admin, id).await;
    }
    s2.stop().await;
    drop(tmp);
}
