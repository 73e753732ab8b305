//! The adapter (Microsoft's official Rust SDK underneath) against keyplane's built-in Key Vault
//! over TLS: the conformance cases (wrap/unwrap, disabled and expired keys refused, a missing
//! role is a 403 naming the action, rotation keeps old wrapped keys readable, an unknown key is
//! not found), the credentials (static token, client secret and certificate through the token endpoint), the
//! permission probes and rotation facts, restarts and concurrency.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::time::OffsetDateTime;
use azure_security_keyvault_keys::models::{
    KeyRotationPolicy, KeyRotationPolicyAction, KeyRotationPolicyAttributes, KeyType,
    LifetimeAction, LifetimeActionTrigger, LifetimeActionType,
};
use common::{CSEU, KEY_VAULT_READER, Vault, ctx};
use keyplane_core::AzureKeyId;
use keyplane_kms::{ErrorKind, KeyProvider, KeyState, KmsConnector};
use keyplane_kms_azure::envelope::WrappedKey;
use keyplane_kms_azure::{AzureConnector, CertificateAssertion};
use zeroize::Zeroizing;

fn version_of(ciphertext: &[u8]) -> String {
    let env = WrappedKey::decode(ciphertext).unwrap();
    env.kid.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn wrap_unwrap_round_trip_on_rsa_and_oct_hsm_keys() {
    let v = Vault::start().await;
    let p = v.platform();
    for (name, kty, size, spec, alg) in [
        ("rsa2048", KeyType::Rsa, 2048, "RSA-2048", "RSA-OAEP-256"),
        (
            "rsa3072",
            KeyType::RsaHsm,
            3072,
            "RSA-HSM-3072",
            "RSA-OAEP-256",
        ),
        ("rsa4096", KeyType::Rsa, 4096, "RSA-4096", "RSA-OAEP-256"),
        ("aes256", KeyType::OctHsm, 256, "oct-HSM", "A256KW"),
    ] {
        let key = v.create_key(name, kty, size).await;
        v.grant(Some(name), CSEU).await;
        let d = p.describe_key(&key).await.unwrap();
        assert_eq!(d.state, KeyState::Enabled, "{name}");
        assert_eq!(d.key_spec, spec);
        assert_eq!(
            d.region, "eastus",
            "the vault's region comes from x-ms-keyvault-region"
        );
        assert_eq!(d.arn, key);
        assert!(
            d.key_usage.contains("wrapKey") && d.key_usage.contains("unwrapKey"),
            "{}",
            d.key_usage
        );
        let version = d.primary_version.clone().unwrap();
        assert_eq!(version.len(), 32);

        let dk = p.generate_data_key(&key, &ctx("org-1")).await.unwrap();
        assert_eq!(dk.plaintext.len(), 32);
        let env = WrappedKey::decode(&dk.ciphertext).unwrap();
        assert_eq!(env.algorithm.as_str(), alg);
        assert_eq!(env.kid, format!("{key}/{version}"));
        let back = p
            .decrypt(&key, &dk.ciphertext, &ctx("org-1"))
            .await
            .unwrap();
        assert_eq!(&back[..], &dk.plaintext[..], "{name}");
        // Every wrap is fresh (OAEP is randomized; KW is deterministic per key, so compare RSA only).
        let again = p.generate_data_key(&key, &ctx("org-1")).await.unwrap();
        assert_ne!(again.plaintext[..], dk.plaintext[..]);
    }
    v.stop().await;
}

#[tokio::test]
async fn the_context_binds_the_wrapped_key_and_tampering_is_refused() {
    let v = Vault::start().await;
    let p = v.platform();
    let a = v.create_key("a", KeyType::Rsa, 2048).await;
    let b = v.create_key("b", KeyType::Rsa, 2048).await;
    v.grant(None, CSEU).await;
    let dk = p.generate_data_key(&a, &ctx("org-1")).await.unwrap();
    let e = p
        .decrypt(&a, &dk.ciphertext, &ctx("org-2"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext);
    assert!(
        e.message.contains("another encryption context"),
        "{}",
        e.message
    );
    let e = p
        .decrypt(&b, &dk.ciphertext, &ctx("org-1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCiphertext);
    assert!(e.message.contains("wrapped by"), "{}", e.message);
    let mut t = dk.ciphertext.clone();
    let n = t.len();
    t[n - 3] ^= 1;
    assert_eq!(
        p.decrypt(&a, &t, &ctx("org-1")).await.unwrap_err().kind,
        ErrorKind::InvalidCiphertext
    );
    assert_eq!(
        p.decrypt(&a, b"garbage", &ctx("org-1"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidCiphertext
    );
    // Plaintexts too short to key the context tag are refused before any call.
    assert_eq!(
        p.encrypt(&a, b"short", &ctx("o")).await.unwrap_err().kind,
        ErrorKind::Invalid
    );
    // Re-encryption to another key keeps the data key.
    let moved = p
        .re_encrypt(&dk.ciphertext, &a, &b, &ctx("org-1"))
        .await
        .unwrap();
    assert_eq!(
        &p.decrypt(&b, &moved, &ctx("org-1")).await.unwrap()[..],
        &dk.plaintext[..]
    );
}

#[tokio::test]
async fn a_disabled_key_is_refused_and_enabling_it_restores_access() {
    let v = Vault::start().await;
    let p = v.platform();
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let dk = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    v.set_attributes("db", None, |a| a.enabled = Some(false))
        .await;
    assert_eq!(
        p.describe_key(&key).await.unwrap().state,
        KeyState::Disabled
    );
    let e = p
        .decrypt(&key, &dk.ciphertext, &ctx("o"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disabled, "{e:?}");
    assert!(e.message.contains("KeyDisabled"), "{}", e.message);
    assert_eq!(
        p.generate_data_key(&key, &ctx("o")).await.unwrap_err().kind,
        ErrorKind::Disabled
    );
    v.set_attributes("db", None, |a| a.enabled = Some(true))
        .await;
    assert_eq!(
        &p.decrypt(&key, &dk.ciphertext, &ctx("o")).await.unwrap()[..],
        &dk.plaintext[..]
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_keys_refuse_new_data_but_unwrap_old() {
    let v = Vault::start().await;
    let p = v.platform();
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let dk = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    let past = OffsetDateTime::now_utc() - azure_core::time::Duration::hours(1);
    v.set_attributes("db", None, |a| a.expires = Some(past))
        .await;
    assert_eq!(
        p.describe_key(&key).await.unwrap().state,
        KeyState::Other("Expired".into())
    );
    let e = p.generate_data_key(&key, &ctx("o")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert!(e.message.contains("expired"), "{}", e.message);
    // Key Vault's date-time rule: data protected while the key was valid stays readable.
    assert_eq!(
        &p.decrypt(&key, &dk.ciphertext, &ctx("o")).await.unwrap()[..],
        &dk.plaintext[..]
    );

    let later = OffsetDateTime::now_utc() + azure_core::time::Duration::days(2);
    let far = OffsetDateTime::now_utc() + azure_core::time::Duration::days(20);
    v.set_attributes("db", None, |a| {
        a.expires = Some(far);
        a.not_before = Some(later);
    })
    .await;
    assert_eq!(
        p.describe_key(&key).await.unwrap().state,
        KeyState::Other("NotYetValid".into())
    );
    let e = p.generate_data_key(&key, &ctx("o")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert!(e.message.contains("not yet valid"), "{}", e.message);
}

#[tokio::test]
async fn a_missing_role_is_access_denied_naming_the_action_and_probes_tell_which() {
    let v = Vault::start().await;
    let p = v.platform();
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    let e = p.describe_key(&key).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: "Microsoft.KeyVault/vaults/keys/read".into()
        }
    );
    assert!(
        e.message.contains("ForbiddenByRbac") && e.message.contains("location=eastus"),
        "{}",
        e.message
    );
    let e = p.generate_data_key(&key, &ctx("o")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::AccessDenied { .. }), "{e:?}");
    let all = ["get", "wrapKey", "unwrapKey"];
    assert!(p.test_permissions(&key, &all).await.unwrap().is_empty());

    // Key Vault Reader only reads.
    let reader = v.grant(Some("db"), KEY_VAULT_READER).await;
    assert_eq!(p.test_permissions(&key, &all).await.unwrap(), vec!["get"]);
    let e = p.generate_data_key(&key, &ctx("o")).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: "Microsoft.KeyVault/vaults/keys/wrap/action".into()
        }
    );

    // The seed's grant: Crypto Service Encryption User on the key.
    v.grant(Some("db"), CSEU).await;
    assert_eq!(p.test_permissions(&key, &all).await.unwrap(), all.to_vec());
    assert_eq!(
        p.test_permissions(&key, &["Microsoft.KeyVault/vaults/keys/unwrap/action"])
            .await
            .unwrap(),
        vec!["Microsoft.KeyVault/vaults/keys/unwrap/action"]
    );
    assert_eq!(
        p.test_permissions(&key, &["sign"]).await.unwrap_err().kind,
        ErrorKind::Invalid
    );
    let dk = p.generate_data_key(&key, &ctx("o")).await.unwrap();

    // Revoking the role takes effect on the next call.
    let scope = v.key_scope("db");
    let listed = v.roles().list(&scope).await.unwrap();
    let cseu = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap()
                .ends_with(CSEU)
        })
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    v.roles().delete(&scope, &cseu).await.unwrap();
    v.roles().delete(&scope, &reader).await.unwrap();
    let e = p
        .decrypt(&key, &dk.ciphertext, &ctx("o"))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: "Microsoft.KeyVault/vaults/keys/unwrap/action".into()
        }
    );
}

#[tokio::test]
async fn the_role_list_passes_the_core_checker() {
    use keyplane_core::policy::azure::{AzurePlatformApp, check_azure_access};
    let v = Vault::start().await;
    v.create_key("db", KeyType::Rsa, 2048).await;
    let key =
        AzureKeyId::parse_allowing(&format!("{}/keys/db", v.url), &[v.authority.as_str()]).unwrap();
    let app = AzurePlatformApp {
        client_id: v.creds.platform.client_id.clone(),
        object_id: Some(v.creds.platform.object_id.clone()),
        tenant_id: Some(v.creds.tenant_id.clone()),
    };
    // The dev key's scope is under the vault's ARM ID; give the checker that key shape.
    let listed = v
        .roles()
        .list(&v.key_scope("db"))
        .await
        .unwrap()
        .to_string();
    let checked_key = AzureKeyId {
        vault_name: Some(v.creds.vault_name.clone()),
        ..key.clone()
    };
    let r = check_azure_access(&listed, &checked_key, &app).unwrap();
    assert!(!r.verdict_ok && r.findings.len() == 3, "{r:?}");
    v.grant(Some("db"), CSEU).await;
    let listed = v
        .roles()
        .list(&v.key_scope("db"))
        .await
        .unwrap()
        .to_string();
    let r = check_azure_access(&listed, &checked_key, &app).unwrap();
    assert!(r.verdict_ok, "{r:?}");
}

#[tokio::test]
async fn rotation_keeps_old_wrapped_keys_readable() {
    let v = Vault::start().await;
    let p = v.platform();
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let v1 = p.describe_key(&key).await.unwrap().primary_version.unwrap();
    let old = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    assert_eq!(version_of(&old.ciphertext), v1);
    v.customer().rotate_key("db", None).await.unwrap();
    let v2 = p.describe_key(&key).await.unwrap().primary_version.unwrap();
    assert_ne!(v1, v2);
    let new = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    assert_eq!(
        version_of(&new.ciphertext),
        v2,
        "new data keys use the new version"
    );
    assert_eq!(
        &p.decrypt(&key, &old.ciphertext, &ctx("o")).await.unwrap()[..],
        &old.plaintext[..]
    );
    assert_eq!(
        &p.decrypt(&key, &new.ciphertext, &ctx("o")).await.unwrap()[..],
        &new.plaintext[..]
    );
    // Disabling only the old version refuses only what it wrapped.
    v.set_attributes("db", Some(&v1), |a| a.enabled = Some(false))
        .await;
    assert_eq!(
        p.decrypt(&key, &old.ciphertext, &ctx("o"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Disabled
    );
    assert!(p.decrypt(&key, &new.ciphertext, &ctx("o")).await.is_ok());
    // A pinned key ID keeps wrapping under its version.
    let pinned = format!("{key}/{v1}");
    v.set_attributes("db", Some(&v1), |a| a.enabled = Some(true))
        .await;
    let dk = p.generate_data_key(&pinned, &ctx("o")).await.unwrap();
    assert_eq!(version_of(&dk.ciphertext), v1);
}

#[tokio::test]
async fn rotation_facts_come_from_the_rotation_policy() {
    let v = Vault::start().await;
    let p = v.platform();
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    // The service-encryption role has no keyrotationpolicies/read.
    let e = p.rotation_facts(&key).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            action: "Microsoft.KeyVault/vaults/keyrotationpolicies/read".into()
        }
    );
    let policy = KeyRotationPolicy {
        lifetime_actions: Some(vec![LifetimeAction {
            trigger: Some(LifetimeActionTrigger {
                time_after_create: Some("P90D".into()),
                ..Default::default()
            }),
            action: Some(LifetimeActionType {
                type_prop: Some(KeyRotationPolicyAction::Rotate),
            }),
        }]),
        attributes: Some(KeyRotationPolicyAttributes {
            expiry_time: Some("P1Y".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    v.customer()
        .update_key_rotation_policy("db", policy.try_into().unwrap(), None)
        .await
        .unwrap();
    // Key Vault Crypto Officer can read policies.
    v.grant(Some("db"), "14b46e9e-c2b7-41b4-b07b-48a6ebf60603")
        .await;
    let f = p.rotation_facts(&key).await.unwrap();
    assert!(f.enabled);
    assert_eq!(f.period_days, Some(90));
    assert!(
        f.last_rotated_at.is_some() && f.next_rotation_at.is_some(),
        "{f:?}"
    );
    // A rotation under that policy sets the new version's expiry.
    v.customer().rotate_key("db", None).await.unwrap();
    let k = v
        .customer()
        .get_key("db", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let exp = k.attributes.unwrap().expires.unwrap();
    let in_a_year = OffsetDateTime::now_utc() + azure_core::time::Duration::days(365);
    assert!((exp - in_a_year).whole_minutes().abs() < 5, "{exp}");
}

#[tokio::test]
async fn an_unknown_key_is_not_found_where_the_role_covers_it() {
    let v = Vault::start().await;
    let p = v.platform();
    v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let missing = format!("{}/keys/nope", v.url);
    // A key-scoped role does not cover another key name: Azure RBAC answers 403, not 404.
    assert!(matches!(
        p.describe_key(&missing).await.unwrap_err().kind,
        ErrorKind::AccessDenied { .. }
    ));
    v.grant(None, CSEU).await;
    let e = p.describe_key(&missing).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(e.message.contains("KeyNotFound"), "{}", e.message);
    let e = p.generate_data_key(&missing, &ctx("o")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    // A soft-deleted key is gone for the platform too.
    let key = format!("{}/keys/db", v.url);
    v.customer().delete_key("db", None).await.unwrap();
    assert_eq!(
        p.describe_key(&key).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Bad key IDs never reach the vault.
    for bad in [
        "https://evil.example.com/keys/x",
        "db",
        &format!("{}/secrets/x", v.url),
    ] {
        assert_eq!(
            p.describe_key(bad).await.unwrap_err().kind,
            ErrorKind::Invalid,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_client_secret_credential_gets_tokens_from_the_vaults_token_endpoint() {
    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let p = v.platform_with(v.client_secret());
    let dk = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    assert_eq!(
        &p.decrypt(&key, &dk.ciphertext, &ctx("o")).await.unwrap()[..],
        &dk.plaintext[..]
    );

    // Its ARM token (another audience) is accepted by ARM, which refuses it the role write.
    let clients = v.clients();
    let arm_as_platform = keyplane_kms_azure::arm::RoleAssignments::new(
        &clients,
        &v.url,
        clients.credential(&v.client_secret()).unwrap(),
    );
    let e = arm_as_platform
        .create(
            &v.key_scope("db"),
            CSEU,
            &v.creds.platform.object_id,
            "ServicePrincipal",
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::AccessDenied { .. }), "{e:?}");
    assert!(e.message.contains("AuthorizationFailed"), "{}", e.message);

    let wrong = keyplane_kms_azure::AzureCredentialConfig::ClientSecret {
        tenant_id: v.creds.tenant_id.clone(),
        client_id: v.creds.platform.client_id.clone(),
        client_secret: zeroize::Zeroizing::new("kpsecret.wrong".into()),
        authority_host: Some(v.url.clone()),
    };
    let e = v.platform_with(wrong).describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
    assert!(e.message.contains("7000215"), "{}", e.message);
    let bogus = keyplane_kms_azure::AzureCredentialConfig::StaticToken {
        token: zeroize::Zeroizing::new("kpdev.not-a-token".into()),
    };
    let e = v.platform_with(bogus).describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
}

/// A new self-signed RSA certificate and its key, as an operator makes one for the app.
fn new_rsa_certificate() -> Zeroizing<String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["platform.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Zeroizing::new(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// Posts a client assertion to the vault's token endpoint as the platform application.
async fn token_with_assertion(v: &Vault, assertion: &str) -> (u16, serde_json::Value) {
    let r = v
        .clients()
        .http()
        .post(format!("{}/{}/oauth2/v2.0/token", v.url, v.creds.tenant_id))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &v.creds.platform.client_id)
                .append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", assertion)
                .append_pair("scope", "https://vault.azure.net/.default")
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn the_certificate_credential_signs_assertions_the_token_endpoint_checks() {
    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;

    // The platform's own certificate, registered by the vault at first start.
    let p = v.platform_with(v.client_certificate());
    let dk = p.generate_data_key(&key, &ctx("o")).await.unwrap();
    assert_eq!(
        &p.decrypt(&key, &dk.ciphertext, &ctx("o")).await.unwrap()[..],
        &dk.plaintext[..]
    );

    // A certificate the application never registered: refused at the token endpoint.
    let pem = new_rsa_certificate();
    let e = v
        .platform_with(v.certificate_credential(pem.clone()))
        .describe_key(&key)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
    assert!(e.message.contains("700027"), "{}", e.message);
    // Uploaded to the application, the same PEM works.
    let thumbprint = v
        .kms
        .azure_add_certificate(&v.creds.platform.object_id, &pem)
        .unwrap();
    assert_eq!(thumbprint.len(), 40);
    v.platform_with(v.certificate_credential(pem.clone()))
        .describe_key(&key)
        .await
        .unwrap();

    // Assertions the endpoint refuses, each with Entra ID's reason.
    let endpoint = format!("{}/{}/oauth2/v2.0/token", v.url, v.creds.tenant_id);
    let client_id = &v.creds.platform.client_id;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let good = CertificateAssertion::from_pem(&pem, client_id, &endpoint).unwrap();
    let (status, body) = token_with_assertion(&v, &good.sign_at(now).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().unwrap().starts_with("kpat."));
    let expired = good.sign_at(now - 3600).unwrap();
    let other_issuer = CertificateAssertion::from_pem(&pem, "someone-else", &endpoint)
        .unwrap()
        .sign_at(now)
        .unwrap();
    let other_audience = CertificateAssertion::from_pem(
        &pem,
        client_id,
        &format!("{}/another-tenant/oauth2/v2.0/token", v.url),
    )
    .unwrap()
    .sign_at(now)
    .unwrap();
    // The signature's first character changed: still base64url, another signature. (Its
    // last one may carry only padding bits.)
    let signed = good.sign_at(now).unwrap();
    let at = signed.rfind('.').unwrap() + 1;
    let flipped = if &signed[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);
    for (assertion, code) in [
        (expired, 700024),
        (other_issuer, 700021),
        (other_audience, 700212),
        (tampered, 700027),
        ("not.a-jwt".to_string(), 50027),
    ] {
        let (status, body) = token_with_assertion(&v, &assertion).await;
        assert!(status == 400 || status == 401, "{status} {body}");
        assert_eq!(body["error_codes"][0], code, "{body}");
    }

    // Only RSA certificates are taken, as Entra ID's.
    let ec = rcgen::generate_simple_self_signed(vec!["ec.example".into()]).unwrap();
    let e = v
        .kms
        .azure_add_certificate(&v.creds.platform.object_id, &ec.cert.pem())
        .unwrap_err();
    assert!(e.to_string().contains("not RSA"), "{e}");
    // A PEM without a usable key is refused before any request.
    let cert_only = pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap();
    let e = AzureConnector::new(
        v.settings(v.certificate_credential(Zeroizing::new(cert_only.to_string()))),
    )
    .unwrap()
    .provider(&v.identity())
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials, "{e:?}");
    assert!(e.message.contains("private key"), "{}", e.message);
}

#[tokio::test]
async fn the_first_request_gets_the_bearer_challenge() {
    let v = Vault::start().await;
    let http = v.clients().http().clone();
    let r = http
        .post(format!("{}/keys/db/create?api-version=2025-07-01", v.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            v.url, v.creds.tenant_id
        )
    );
    assert_eq!(
        r.headers()["x-ms-keyvault-region"].to_str().unwrap(),
        "eastus"
    );
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    // Unknown api-version, with a token.
    let r = http
        .get(format!("{}/keys?api-version=1999-01-01", v.url))
        .header(
            "authorization",
            format!("Bearer {}", v.creds.customer.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn an_untrusted_certificate_or_a_stopped_vault_is_unreachable_within_bounds() {
    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    // No CA bundle: the dev certificate is not trusted.
    let mut s = v.settings(v.static_token());
    s.ca_bundle_pem = None;
    let p = keyplane_kms_azure::AzureConnector::new(s)
        .unwrap()
        .provider(&v.identity())
        .unwrap();
    let e = p.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(
        e.message.to_lowercase().contains("certificate"),
        "{}",
        e.message
    );

    let p = v.platform();
    p.describe_key(&key).await.unwrap();
    v.stop().await;
    let started = Instant::now();
    let e = p.describe_key(&key).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(e.message.contains("after 2 attempts"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn keys_tokens_and_wrapped_keys_survive_a_restart() {
    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let dk = v
        .platform()
        .generate_data_key(&key, &ctx("o"))
        .await
        .unwrap();
    let before = v.creds.clone();
    let port = v.port();
    let dir = v.dir.clone();
    let tmp = v.stop().await;
    let v = Vault::start_in(&dir, port).await;
    assert_eq!(
        v.creds.customer.token, before.customer.token,
        "tokens are reused from azure-credentials.json"
    );
    assert_eq!(
        v.creds.platform.client_secret,
        before.platform.client_secret
    );
    assert_eq!(
        v.platform_certificate_pem().as_str(),
        std::fs::read_to_string(before.platform.certificate_file.as_ref().unwrap()).unwrap(),
        "the platform's certificate is kept across a restart"
    );
    assert!(
        v.platform_with(v.client_certificate())
            .describe_key(&key)
            .await
            .is_ok(),
        "the kept certificate is still registered"
    );
    assert_eq!(
        v.ca_pem,
        std::fs::read_to_string(dir.join("azure-ca.pem")).unwrap()
    );
    let p = v.platform();
    assert_eq!(
        &p.decrypt(&key, &dk.ciphertext, &ctx("o")).await.unwrap()[..],
        &dk.plaintext[..]
    );
    // Secrets are hashed in the state file; the material sealed.
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    for secret in [
        &before.customer.token,
        &before.platform.token,
        &before.platform.client_secret,
    ] {
        assert!(
            !state.contains(secret.as_str()),
            "a secret is in state.json in the clear"
        );
    }
    let pem = v.platform_certificate_pem();
    let key_line = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .and_then(|b| b.lines().find(|l| l.len() > 40))
        .unwrap();
    assert!(
        !state.contains(key_line),
        "the certificate's private key is in state.json"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(before.platform.certificate_file.as_ref().unwrap())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the certificate's PEM is owner-only");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("azure-credentials.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    v.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn eight_tasks_wrap_and_unwrap_concurrently() {
    let v = Vault::start().await;
    let key = v.create_key("db", KeyType::Rsa, 2048).await;
    v.grant(Some("db"), CSEU).await;
    let connector = Arc::new(v.connector());
    let p = connector.connect(&v.identity()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let p = p.clone();
        let key = key.clone();
        tasks.spawn(async move {
            let mut pairs = Vec::new();
            for i in 0..6 {
                let c = ctx(&format!("org-{t}-{i}"));
                let dk = p.generate_data_key(&key, &c).await.unwrap();
                pairs.push((c, dk));
            }
            for (c, dk) in &pairs {
                assert_eq!(
                    &p.decrypt(&key, &dk.ciphertext, c).await.unwrap()[..],
                    &dk.plaintext[..]
                );
            }
            pairs.len()
        });
    }
    let mut n = 0;
    while let Some(r) = tasks.join_next().await {
        n += r.unwrap();
    }
    assert_eq!(n, 48);
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx_answers_never_5xx() {
    let v = Vault::start().await;
    v.create_key("db", KeyType::Rsa, 2048).await;
    let http = v.clients().http().clone();
    let q = "api-version=2025-07-01";
    let big = "x".repeat(300 * 1024);
    let cases: Vec<(&str, String, String)> = vec![
        ("POST", format!("/keys/db/create?{q}"), "not json".into()),
        ("POST", format!("/keys/db/create?{q}"), "".into()),
        ("POST", format!("/keys/db/create?{q}"), r#"{"kty":"EC","crv":"P-256"}"#.into()),
        ("POST", format!("/keys/db/create?{q}"), r#"{"kty":"RSA","key_size":1024}"#.into()),
        ("POST", format!("/keys/db/create?{q}"), r#"{"kty":"RSA","key_ops":["fly"]}"#.into()),
        ("POST", format!("/keys/db/create?{q}"), r#"{"kty":"RSA","public_exponent":3}"#.into()),
        ("POST", format!("/keys/db/create?{q}"), r#"{"key_size":2048}"#.into()),
        ("POST", format!("/keys/bad_name/create?{q}"), r#"{"kty":"RSA"}"#.into()),
        ("POST", format!("/keys/db//wrapkey?{q}"), r#"{"alg":"RSA-OAEP-256","value":"%%%"}"#.into()),
        ("POST", format!("/keys/db//wrapkey?{q}"), r#"{"alg":"ROT13","value":"AAAA"}"#.into()),
        ("POST", format!("/keys/db//wrapkey?{q}"), r#"{"alg":"A256KW","value":"AAAAAAAAAAAAAAAAAAAAAA"}"#.into()),
        ("POST", format!("/keys/db//wrapkey?{q}"), r#"{"value":"AAAA"}"#.into()),
        ("POST", format!("/keys/db//unwrapkey?{q}"), r#"{"alg":"RSA-OAEP-256","value":"AAAA"}"#.into()),
        ("POST", format!("/keys/db//sign?{q}"), r#"{"alg":"RS256","value":"AAAA"}"#.into()),
        ("POST", format!("/keys/db/{}/wrapkey?{q}", "0".repeat(32)), r#"{"alg":"RSA-OAEP-256","value":"AAAA"}"#.into()),
        ("PATCH", format!("/keys/db?{q}"), r#"{"attributes":{"exp":"tomorrow"}}"#.into()),
        ("PUT", format!("/keys/db/rotationpolicy?{q}"), r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"soon"},"action":{"type":"Rotate"}}]}"#.into()),
        ("PUT", format!("/keys/db/rotationpolicy?{q}"), r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Explode"}}]}"#.into()),
        ("PUT", format!("/keys/db?{q}"), "{}".into()),
        ("GET", format!("/keys/db/backup?{q}"), "".into()),
        ("GET", format!("/secrets/x?{q}"), "".into()),
        ("GET", "/keys".into(), "".into()),
        ("DELETE", format!("/deletedkeys/never?{q}"), "".into()),
        ("POST", format!("/keys/db/create?{q}"), big),
        ("PUT", format!("{}/keys/db/providers/Microsoft.Authorization/roleAssignments/not-a-guid?api-version=2022-04-01", v.creds.vault_scope), "{}".into()),
        ("PUT", format!("{}/keys/db/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01", v.creds.vault_scope, uuid::Uuid::new_v4()), r#"{"properties":{"roleDefinitionId":"nope","principalId":"x"}}"#.into()),
        ("PUT", format!("{}/keys/db/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01", v.creds.vault_scope, uuid::Uuid::new_v4()), format!(r#"{{"properties":{{"roleDefinitionId":"{CSEU}","principalId":"00000000-0000-4000-8000-000000000000"}}}}"#)),
        ("GET", "/subscriptions/other/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01".into(), "".into()),
    ];
    for (method, path, body) in cases {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", v.url))
            .header(
                "authorization",
                format!("Bearer {}", v.creds.customer.token),
            )
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {text}"
        );
        if status != 413 {
            let j: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"));
            assert!(
                j["error"]["code"].is_string() && j["error"]["message"].is_string(),
                "{method} {path}: {text}"
            );
        }
    }
    // Nothing above changed the key.
    let k = v
        .customer()
        .get_key("db", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert!(k.attributes.unwrap().expires.is_none());
}
