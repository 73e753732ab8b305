//! Key-material rotation: automatic (on schedule, from the sweep) and on demand, and the
//! operations that report it.

use serde_json::{Map, Value, json};

use crate::Inner;
use crate::crypto::SecretKey;
use crate::error::ApiError;
use crate::state::{Key, KeyState, MaterialRecord};

use super::access::{Scope, mutate_key, require_enabled};
use super::input::Input;
use super::keys::new_material;
use super::{Ctx, page, paged, ts};

fn require_rotatable(k: &Key) -> Result<(), ApiError> {
    if !k.is_symmetric() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            format!(
                "{} key spec {} does not support automatic or on-demand rotation.",
                k.rec.arn, k.rec.key_spec
            ),
        ));
    }
    Ok(())
}

pub(super) fn enable_key_rotation(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let period = input
        .int_in("RotationPeriodInDays", 90..=2560)?
        .unwrap_or(365) as u32;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:EnableKeyRotation",
        |ctx, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            k.rec.rotation.enabled = true;
            k.rec.rotation.period_days = period;
            k.rec.rotation.next_rotation = Some(ctx.now + f64::from(period) * 86_400.0);
            Ok(Value::Null)
        },
    )
}

pub(super) fn disable_key_rotation(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:DisableKeyRotation",
        |_, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            k.rec.rotation.enabled = false;
            k.rec.rotation.next_rotation = None;
            Ok(Value::Null)
        },
    )
}

pub(super) fn get_key_rotation_status(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:GetKeyRotationStatus", None, &[])?;
    require_rotatable(k)?;
    let r = &k.rec.rotation;
    let mut out = json!({ "KeyRotationEnabled": r.enabled, "KeyId": k.rec.arn });
    if r.enabled {
        out["RotationPeriodInDays"] = json!(r.period_days);
        if let Some(n) = r.next_rotation {
            out["NextRotationDate"] = ts(n);
        }
    }
    if let Some(s) = r.on_demand_started {
        out["OnDemandRotationStartDate"] = ts(s);
    }
    Ok(out)
}

/// AWS allows ten on-demand rotations per key.
const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

pub(super) fn rotate_key_on_demand(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:RotateKeyOnDemand",
        |ctx, k| {
            require_enabled(k)?;
            require_rotatable(k)?;
            if k.rec.rotation.on_demand_count >= MAX_ON_DEMAND_ROTATIONS {
                return Err(ApiError::new(
                    "LimitExceededException",
                    format!(
                        "{} has reached the maximum number of on-demand rotations.",
                        k.rec.arn
                    ),
                ));
            }
            let (m, r) = new_material(ctx, &k.rec.arn, k.materials.len(), Some("ON_DEMAND"));
            k.materials.push(m);
            k.rec.materials.push(r);
            k.rec.rotation.on_demand_count += 1;
            k.rec.rotation.on_demand_started = Some(ctx.now);
            Ok(json!({ "KeyId": k.rec.arn }))
        },
    )
}

pub(super) fn list_key_rotations(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListKeyRotations", None, &[])?;
    require_rotatable(k)?;
    let items: Vec<(String, Value)> = k
        .rec
        .materials
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.rotation_type.as_ref().map(|t| {
                (
                    format!("{i:010}"),
                    json!({ "KeyId": k.rec.arn, "RotationDate": ts(m.created), "RotationType": t }),
                )
            })
        })
        .collect();
    let (rotations, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Rotations".into(), json!(rotations));
    Ok(paged(body, next))
}

/// Gives a key a new material version on schedule (used by the background sweep).
pub(crate) fn auto_rotate(inner: &Inner, k: &mut Key, now: f64) {
    let r = &k.rec.rotation;
    let due =
        r.enabled && k.rec.state == KeyState::Enabled && r.next_rotation.is_some_and(|n| n <= now);
    if !due || !k.is_symmetric() {
        return;
    }
    let key = SecretKey::random();
    let sealed = inner
        .store
        .seal_material(&k.rec.arn, k.materials.len(), &key);
    k.materials.push(key);
    k.rec.materials.push(MaterialRecord {
        created: now,
        rotation_type: Some("AUTOMATIC".into()),
        sealed,
    });
    k.rec.rotation.next_rotation = Some(now + f64::from(k.rec.rotation.period_days) * 86_400.0);
}
