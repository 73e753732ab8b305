//! Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey/DisableKey, deletion scheduling
//! and UpdateKeyDescription, with the key metadata AWS returns.

use std::sync::Arc;

use keyplane_core::policy::KeyPolicy;
use serde_json::{Map, Value, json};

use crate::crypto::SecretKey;
use crate::error::ApiError;
use crate::state::{Key, KeyRecord, KeyState, MaterialRecord, RotationRecord, Tag};

use super::access::{Scope, mutate_key, require_not_pending};
use super::input::Input;
use super::policies::{lockout, parse_policy};
use super::tags::parse_tags;
use super::{Ctx, page, paged, ts};

const SPECS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
];

fn algorithms(
    spec: &str,
    usage: &str,
) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let (mut enc, mut sign, mut mac) = (vec![], vec![], vec![]);
    match (spec, usage) {
        ("SYMMETRIC_DEFAULT", _) => enc = vec!["SYMMETRIC_DEFAULT"],
        (s, "ENCRYPT_DECRYPT") if s.starts_with("RSA_") => {
            enc = vec!["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
        }
        (s, "SIGN_VERIFY") if s.starts_with("RSA_") => {
            sign = vec![
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ]
        }
        ("ECC_NIST_P256", "SIGN_VERIFY") | ("ECC_SECG_P256K1", "SIGN_VERIFY") => {
            sign = vec!["ECDSA_SHA_256"]
        }
        ("ECC_NIST_P384", "SIGN_VERIFY") => sign = vec!["ECDSA_SHA_384"],
        ("ECC_NIST_P521", "SIGN_VERIFY") => sign = vec!["ECDSA_SHA_512"],
        ("HMAC_224", _) => mac = vec!["HMAC_SHA_224"],
        ("HMAC_256", _) => mac = vec!["HMAC_SHA_256"],
        ("HMAC_384", _) => mac = vec!["HMAC_SHA_384"],
        ("HMAC_512", _) => mac = vec!["HMAC_SHA_512"],
        _ => {}
    }
    (enc, sign, mac)
}

fn metadata(k: &Key) -> Value {
    let r = &k.rec;
    let mut m = json!({
        "AWSAccountId": r.account,
        "KeyId": r.key_id,
        "Arn": r.arn,
        "CreationDate": ts(r.creation_date),
        "Enabled": r.state == KeyState::Enabled,
        "Description": r.description,
        "KeyUsage": r.key_usage,
        "KeyState": r.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": r.key_spec,
        "KeySpec": r.key_spec,
        "MultiRegion": r.multi_region,
    });
    let (enc, sign, mac) = algorithms(&r.key_spec, &r.key_usage);
    if !enc.is_empty() {
        m["EncryptionAlgorithms"] = json!(enc);
    }
    if !sign.is_empty() {
        m["SigningAlgorithms"] = json!(sign);
    }
    if !mac.is_empty() {
        m["MacAlgorithms"] = json!(mac);
    }
    if r.state == KeyState::PendingDeletion {
        if let Some(d) = r.deletion_date {
            m["DeletionDate"] = ts(d);
        }
        if let Some(w) = r.pending_window_days {
            m["PendingDeletionWindowInDays"] = json!(w);
        }
    }
    if r.multi_region {
        m["MultiRegionConfiguration"] = json!({
            "MultiRegionKeyType": "PRIMARY",
            "PrimaryKey": { "Arn": r.arn, "Region": r.region },
            "ReplicaKeys": [],
        });
    }
    m
}

pub(super) fn new_material(
    ctx: &Ctx<'_>,
    arn: &str,
    version: usize,
    rotation_type: Option<&str>,
) -> (SecretKey, MaterialRecord) {
    let key = SecretKey::random();
    let sealed = ctx.inner.store.seal_material(arn, version, &key);
    (
        key,
        MaterialRecord {
            created: ctx.now,
            rotation_type: rotation_type.map(String::from),
            sealed,
        },
    )
}

/// CreateKey's members, validated in AWS's order before anything is created.
struct CreateKeyRequest<'a> {
    spec: &'a str,
    usage: &'a str,
    description: String,
    multi_region: bool,
    bypass_lockout_check: bool,
    tags: Vec<Tag>,
    policy: Option<&'a str>,
}

impl<'a> CreateKeyRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        let spec = match (
            input.str_opt("KeySpec")?,
            input.str_opt("CustomerMasterKeySpec")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "You cannot specify KeySpec and CustomerMasterKeySpec in the same request.",
                ));
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => "SYMMETRIC_DEFAULT",
        };
        if !SPECS.contains(&spec) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{spec}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                SPECS.join(", ")
            )));
        }
        let default_usage = if spec.starts_with("HMAC_") {
            "GENERATE_VERIFY_MAC"
        } else {
            "ENCRYPT_DECRYPT"
        };
        let usage = input.str_opt("KeyUsage")?.unwrap_or(default_usage);
        let allowed: &[&str] = match spec {
            "SYMMETRIC_DEFAULT" => &["ENCRYPT_DECRYPT"],
            s if s.starts_with("RSA_") => &["ENCRYPT_DECRYPT", "SIGN_VERIFY"],
            s if s.starts_with("ECC_NIST_") => &["SIGN_VERIFY", "KEY_AGREEMENT"],
            "ECC_SECG_P256K1" => &["SIGN_VERIFY"],
            _ => &["GENERATE_VERIFY_MAC"],
        };
        if ![
            "ENCRYPT_DECRYPT",
            "SIGN_VERIFY",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ]
        .contains(&usage)
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{usage}' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC, KEY_AGREEMENT]"
            )));
        }
        if !allowed.contains(&usage) {
            return Err(ApiError::validation(format!(
                "KeyUsage {usage} is not compatible with KeySpec {spec}"
            )));
        }
        if let Some(origin) = input.str_opt("Origin")?
            && origin != "AWS_KMS"
        {
            return Err(ApiError::new(
                "UnsupportedOperationException",
                format!("Origin {origin} is not supported by keyplane's KMS"),
            ));
        }
        if input.str_opt("CustomKeyStoreId")?.is_some() || input.str_opt("XksKeyId")?.is_some() {
            return Err(ApiError::new(
                "UnsupportedOperationException",
                "Custom key stores are not supported by keyplane's KMS",
            ));
        }
        let description = input.str_opt("Description")?.unwrap_or("").to_string();
        if description.chars().count() > 8192 {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
            ));
        }
        let multi_region = input.bool_opt("MultiRegion")?.unwrap_or(false);
        let bypass = input
            .bool_opt("BypassPolicyLockoutSafetyCheck")?
            .unwrap_or(false);
        let tags = parse_tags(input)?;
        Ok(CreateKeyRequest {
            spec,
            usage,
            description,
            multi_region,
            bypass_lockout_check: bypass,
            tags,
            policy: input.str_opt("Policy")?,
        })
    }
}

pub(super) fn create_key(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let CreateKeyRequest {
        spec,
        usage,
        description,
        multi_region,
        bypass_lockout_check: bypass,
        tags,
        policy,
    } = CreateKeyRequest::parse(input)?;
    let account = ctx.account().to_string();
    let key_id = if multi_region {
        format!("mrk-{}", uuid::Uuid::new_v4().simple())
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    let arn = ctx.key_arn(&account, &key_id);
    let (policy_json, policy) = match policy {
        Some(p) => {
            let parsed = parse_policy(p)?;
            if !bypass {
                lockout(ctx, &parsed, &arn, &account)?;
            }
            (p.to_string(), parsed)
        }
        None => {
            let p = KeyPolicy::default_policy_json(&account);
            let parsed = parse_policy(&p)?;
            (p, parsed)
        }
    };
    let mut materials = vec![];
    let mut records = vec![];
    if spec == "SYMMETRIC_DEFAULT" || spec.starts_with("HMAC_") {
        let (k, r) = new_material(ctx, &arn, 0, None);
        materials.push(k);
        records.push(r);
    }
    let rec = KeyRecord {
        key_id: key_id.clone(),
        account,
        region: ctx.region.clone(),
        arn,
        creation_date: ctx.now,
        description,
        key_spec: spec.to_string(),
        key_usage: usage.to_string(),
        state: KeyState::Enabled,
        deletion_date: None,
        pending_window_days: None,
        multi_region,
        policy: policy_json,
        tags,
        rotation: RotationRecord {
            period_days: 365,
            ..Default::default()
        },
        materials: records,
        grants: vec![],
    };
    let key = Key {
        rec,
        policy: Arc::new(policy),
        materials,
    };
    let meta = metadata(&key);
    let mut st = ctx.inner.write();
    st.keys.insert(key_id, key);
    ctx.inner.commit(st)?;
    Ok(json!({ "KeyMetadata": meta }))
}

pub(super) fn describe_key(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:DescribeKey", None, &[])?;
    Ok(json!({ "KeyMetadata": metadata(k) }))
}

pub(super) fn list_keys(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let items: Vec<(String, Value)> = st
        .keys
        .values()
        .filter(|k| {
            k.rec.account == ctx.account() && k.rec.region == ctx.region && !k.is_deleted(ctx.now)
        })
        .map(|k| {
            (
                k.rec.key_id.clone(),
                json!({ "KeyId": k.rec.key_id, "KeyArn": k.rec.arn }),
            )
        })
        .collect();
    let (keys, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Keys".into(), json!(keys));
    Ok(paged(body, next))
}

pub(super) fn set_enabled(
    ctx: &Ctx<'_>,
    input: Input<'_>,
    enable: bool,
) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let action = if enable {
        "kms:EnableKey"
    } else {
        "kms:DisableKey"
    };
    mutate_key(ctx, key_ref, Scope::OwnAccount, action, |_, k| {
        require_not_pending(k)?;
        k.rec.state = if enable {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        Ok(Value::Null)
    })
}

pub(super) fn schedule_key_deletion(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let days = input.int_in("PendingWindowInDays", 7..=30)?.unwrap_or(30) as u32;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:ScheduleKeyDeletion",
        |ctx, k| {
            require_not_pending(k)?;
            let date = ctx.now + f64::from(days) * 86_400.0;
            k.rec.state = KeyState::PendingDeletion;
            k.rec.deletion_date = Some(date);
            k.rec.pending_window_days = Some(days);
            Ok(json!({
                "KeyId": k.rec.arn,
                "DeletionDate": ts(date),
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": days,
            }))
        },
    )
}

pub(super) fn cancel_key_deletion(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:CancelKeyDeletion",
        |_, k| {
            if k.rec.state != KeyState::PendingDeletion {
                return Err(ApiError::invalid_state(format!(
                    "{} is not pending deletion.",
                    k.rec.arn
                )));
            }
            k.rec.state = KeyState::Disabled;
            k.rec.deletion_date = None;
            k.rec.pending_window_days = None;
            Ok(json!({ "KeyId": k.rec.arn }))
        },
    )
}

pub(super) fn update_key_description(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let description = input.str_req("Description")?.to_string();
    if description.chars().count() > 8192 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:UpdateKeyDescription",
        |_, k| {
            require_not_pending(k)?;
            k.rec.description = description;
            Ok(Value::Null)
        },
    )
}
