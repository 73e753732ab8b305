//! Crypto keys: create (with a first ENABLED version as primary, unless skipped), get, list,
//! patch (rotation schedule, labels), updatePrimaryVersion, and automatic rotation (a new
//! primary version when `nextRotationTime` passes; older versions keep decrypting).

use std::collections::BTreeMap;

use keyplane_core::policy::gcp::IamPolicy;
use serde_json::{Value, json};

use super::error::{Code, GcpError};
use super::state::{CryptoKeyRecord, GcpKey, Purpose, VersionState};
use super::versions::{add_version, algorithm, version_json};
use super::{
    Body, Ctx, Res, duration, iam, page, parse_duration, parse_timestamp, timestamp, valid_id,
};
use crate::Inner;

const DAY: u64 = 86_400;
/// Cloud KMS's default time between destroy and destruction: 30 days.
const DEFAULT_DESTROY_SCHEDULED: u64 = 30 * DAY;

fn purposes() -> Vec<(&'static str, i64, Purpose)> {
    Purpose::ALL
        .iter()
        .map(|p| (p.name(), p.number(), *p))
        .collect()
}

pub(crate) fn key_json(ctx: &Ctx<'_>, k: &GcpKey) -> Value {
    let r = &k.rec;
    let (alg, alg_n) = algorithm(r.purpose);
    let mut out = json!({
        "name": r.name,
        "purpose": ctx.enum_value(r.purpose.name(), r.purpose.number()),
        "createTime": timestamp(r.create_time),
        "versionTemplate": {
            "protectionLevel": ctx.enum_value("SOFTWARE", 1),
            "algorithm": ctx.enum_value(alg, alg_n),
        },
        "destroyScheduledDuration": duration(r.destroy_scheduled_secs),
    });
    if let Some(v) = r.primary.and_then(|id| k.version(id)) {
        out["primary"] = version_json(ctx, k, v);
    }
    if let Some(p) = r.rotation_period_secs {
        out["rotationPeriod"] = duration(p);
    }
    if let Some(t) = r.next_rotation_time {
        out["nextRotationTime"] = timestamp(t);
    }
    if !r.labels.is_empty() {
        out["labels"] = json!(r.labels);
    }
    out
}

fn labels(body: &Body) -> Result<Option<BTreeMap<String, String>>, GcpError> {
    let Some(v) = body.get("labels") else {
        return Ok(None);
    };
    let m = v
        .as_object()
        .ok_or_else(|| GcpError::invalid("labels must be an object of strings"))?;
    m.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| GcpError::invalid(format!("label {k:?} must be a string")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `rotationPeriod` and `nextRotationTime` as given (each None when absent).
fn rotation(body: &Body, purpose: Purpose) -> Result<(Option<u64>, Option<f64>), GcpError> {
    let period = body
        .str("rotationPeriod")?
        .map(|s| parse_duration("rotation_period", s))
        .transpose()?;
    let next = body
        .str("nextRotationTime")?
        .map(|s| parse_timestamp("next_rotation_time", s))
        .transpose()?;
    if (period.is_some() || next.is_some()) && purpose != Purpose::EncryptDecrypt {
        return Err(GcpError::invalid(
            "Automatic rotation is only supported for ENCRYPT_DECRYPT keys.",
        ));
    }
    if let Some(p) = period
        && p < DAY
    {
        return Err(GcpError::invalid(
            "rotation_period must be at least 24 hours.",
        ));
    }
    Ok((period, next))
}

pub(crate) fn create(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&[
        "name",
        "primary",
        "purpose",
        "createTime",
        "nextRotationTime",
        "rotationPeriod",
        "versionTemplate",
        "labels",
        "importOnly",
        "destroyScheduledDuration",
        "cryptoKeyBackend",
        "keyAccessJustificationsPolicy",
    ])?;
    let Res::KeyRing { name: ring, .. } = res else {
        return Err(GcpError::invalid("crypto keys are created in a key ring"));
    };
    let id = ctx
        .query("cryptoKeyId")
        .ok_or_else(|| GcpError::invalid("The request must specify crypto_key_id."))?;
    if !valid_id(id) {
        return Err(GcpError::invalid(format!(
            "Invalid crypto_key_id {id:?}: it must be 1-63 letters, digits, underscores or hyphens."
        )));
    }
    let skip_version = ctx.query_bool("skipInitialVersionCreation")?;
    let purpose = body
        .enumeration(
            "purpose",
            "google.cloud.kms.v1.CryptoKey.CryptoKeyPurpose",
            &purposes(),
        )?
        .ok_or_else(|| GcpError::invalid("The request must specify a CryptoKey purpose."))?;
    if let Some(t) = body.get("versionTemplate") {
        let t = Body::from_value(t)?;
        t.only(&["protectionLevel", "algorithm"])?;
        let level = t.enumeration(
            "protectionLevel",
            "google.cloud.kms.v1.ProtectionLevel",
            &[
                ("PROTECTION_LEVEL_UNSPECIFIED", 0, false),
                ("SOFTWARE", 1, true),
            ],
        );
        if level.is_err() {
            return Err(GcpError::invalid(
                "keyplane's built-in KMS only has the SOFTWARE protection level.",
            ));
        }
        let (alg, alg_n) = algorithm(purpose);
        let ok = t
            .enumeration(
                "algorithm",
                "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm",
                &[
                    ("CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED", 0, ()),
                    (alg, alg_n, ()),
                ],
            )
            .is_ok();
        if !ok {
            return Err(GcpError::invalid(format!(
                "keyplane's built-in KMS supports the algorithm {alg} for {} keys only.",
                purpose.name()
            )));
        }
    }
    if body.get("importOnly").and_then(Value::as_bool) == Some(true) {
        return Err(GcpError::new(
            Code::Unimplemented,
            "import-only keys are not implemented by keyplane's built-in KMS",
        ));
    }
    let (period, next) = rotation(body, purpose)?;
    let destroy_scheduled = body
        .str("destroyScheduledDuration")?
        .map(|s| parse_duration("destroy_scheduled_duration", s))
        .transpose()?
        .unwrap_or(DEFAULT_DESTROY_SCHEDULED);
    if !(DAY..=120 * DAY).contains(&destroy_scheduled) {
        return Err(GcpError::invalid(
            "destroy_scheduled_duration must be between 24 hours and 120 days.",
        ));
    }
    let labels = labels(body)?.unwrap_or_default();
    let name = format!("{ring}/cryptoKeys/{id}");
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeys.create")?;
    if !st.gcp.key_rings.contains_key(ring) {
        return Err(GcpError::not_found("KeyRing", ring));
    }
    if st.gcp.keys.contains_key(&name) {
        return Err(GcpError::new(
            Code::AlreadyExists,
            format!("CryptoKey {name} already exists."),
        ));
    }
    let mut k = GcpKey {
        rec: CryptoKeyRecord {
            name: name.clone(),
            create_time: ctx.now,
            purpose,
            primary: None,
            rotation_period_secs: period,
            next_rotation_time: next,
            destroy_scheduled_secs: destroy_scheduled,
            labels,
            versions: Vec::new(),
            policy: IamPolicy::default(),
            policy_serial: 0,
        },
        materials: BTreeMap::new(),
    };
    if !skip_version {
        let v = add_version(ctx.inner, &mut k, ctx.now);
        if purpose == Purpose::EncryptDecrypt {
            k.rec.primary = Some(v);
        }
    }
    let answer = key_json(ctx, &k);
    st.gcp.keys.insert(name, k);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

pub(crate) fn get(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let Res::Key { name, .. } = res else {
        return Err(GcpError::invalid("not a crypto key"));
    };
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeys.get")?;
    st.gcp
        .keys
        .get(name)
        .map(|k| key_json(ctx, k))
        .ok_or_else(|| GcpError::not_found("CryptoKey", name))
}

pub(crate) fn list(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let Res::KeyRing { name: ring, .. } = res else {
        return Err(GcpError::invalid("crypto keys are listed in a key ring"));
    };
    let prefix = format!("{ring}/cryptoKeys/");
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeys.list")?;
    if !st.gcp.key_rings.contains_key(ring) {
        return Err(GcpError::not_found("KeyRing", ring));
    }
    let all: Vec<Value> = st
        .gcp
        .keys
        .range(prefix.clone()..)
        .take_while(|(n, _)| n.starts_with(&prefix))
        .map(|(_, k)| key_json(ctx, k))
        .collect();
    let (items, next) = page(ctx, &all)?;
    let mut out = json!({ "totalSize": all.len() });
    if !items.is_empty() {
        out["cryptoKeys"] = Value::Array(items);
    }
    if let Some(n) = next {
        out["nextPageToken"] = Value::from(n);
    }
    Ok(out)
}

/// The update mask's fields in JSON (lowerCamel) spelling.
fn mask_fields(mask: &str) -> Vec<String> {
    mask.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut out = String::new();
            let mut upper = false;
            for c in f.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

pub(crate) fn patch(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    let Res::Key { name, .. } = res else {
        return Err(GcpError::invalid("not a crypto key"));
    };
    let fields = mask_fields(ctx.query("updateMask").unwrap_or(""));
    if fields.is_empty() {
        return Err(GcpError::invalid(
            "The request must specify an update_mask.",
        ));
    }
    if let Some(f) = fields
        .iter()
        .find(|f| !["rotationPeriod", "nextRotationTime", "labels"].contains(&f.as_str()))
    {
        return Err(GcpError::invalid(format!(
            "update_mask field {f:?} cannot be updated by keyplane's built-in KMS (rotationPeriod, nextRotationTime \
             and labels can)"
        )));
    }
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeys.update")?;
    let k = st
        .gcp
        .keys
        .get_mut(name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", name))?;
    let (period, next) = rotation(body, k.rec.purpose)?;
    for f in &fields {
        match f.as_str() {
            "rotationPeriod" => k.rec.rotation_period_secs = period,
            "nextRotationTime" => k.rec.next_rotation_time = next,
            _ => k.rec.labels = labels(body)?.unwrap_or_default(),
        }
    }
    let answer = key_json(ctx, k);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

pub(crate) fn update_primary(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["name", "cryptoKeyVersionId"])?;
    let Res::Key { name, .. } = res else {
        return Err(GcpError::invalid("not a crypto key"));
    };
    let id = body
        .str("cryptoKeyVersionId")?
        .ok_or_else(|| GcpError::invalid("The request must specify crypto_key_version_id."))?;
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeys.update")?;
    let k = st
        .gcp
        .keys
        .get_mut(name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", name))?;
    if k.rec.purpose != Purpose::EncryptDecrypt {
        return Err(GcpError::precondition(format!(
            "{name} has purpose {}: only ENCRYPT_DECRYPT keys have a primary version.",
            k.rec.purpose.name()
        )));
    }
    let version_name = format!("{name}/cryptoKeyVersions/{id}");
    let v = id
        .parse::<u64>()
        .ok()
        .and_then(|n| k.version(n))
        .ok_or_else(|| GcpError::not_found("CryptoKeyVersion", &version_name))?;
    if v.state != VersionState::Enabled {
        return Err(GcpError::version_not_enabled(&version_name, v.state.name()));
    }
    k.rec.primary = Some(v.id);
    let answer = key_json(ctx, k);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

/// Rotates `k` if its next rotation time has passed: one new primary version, and the next
/// rotation moved on by whole periods past `now`. True if it rotated.
pub(crate) fn auto_rotate(inner: &Inner, k: &mut GcpKey, now: f64) -> bool {
    let (Some(period), Some(next)) = (k.rec.rotation_period_secs, k.rec.next_rotation_time) else {
        return false;
    };
    if next > now || k.rec.purpose != Purpose::EncryptDecrypt {
        return false;
    }
    let v = add_version(inner, k, next.max(k.rec.create_time));
    k.rec.primary = Some(v);
    let period = period.max(1) as f64;
    let periods = ((now - next) / period).floor() + 1.0;
    k.rec.next_rotation_time = Some(next + periods * period);
    true
}
