//! Crypto key versions: create, get, list, patch (ENABLED ↔ DISABLED), destroy (to
//! DESTROY_SCHEDULED, then DESTROYED once the key's destroy-scheduled duration has passed,
//! when the material is wiped) and restore (DESTROY_SCHEDULED → DISABLED).

use serde_json::{Value, json};

use super::error::GcpError;
use super::state::{GcpKey, Purpose, VersionRecord, VersionState, seal_material};
use super::{Body, Ctx, Res, iam, page, timestamp};
use crate::Inner;
use crate::crypto::SecretKey;

pub(crate) const STATES: [(&str, i64, VersionState); 4] = [
    ("ENABLED", 1, VersionState::Enabled),
    ("DISABLED", 2, VersionState::Disabled),
    ("DESTROYED", 3, VersionState::Destroyed),
    ("DESTROY_SCHEDULED", 4, VersionState::DestroyScheduled),
];

/// The algorithm a version of `purpose` reports (with its `CryptoKeyVersionAlgorithm` number).
pub(crate) fn algorithm(purpose: Purpose) -> (&'static str, i64) {
    match purpose {
        Purpose::EncryptDecrypt => ("GOOGLE_SYMMETRIC_ENCRYPTION", 1),
        Purpose::RawEncryptDecrypt => ("AES_256_GCM", 19),
        Purpose::AsymmetricSign => ("EC_SIGN_P256_SHA256", 12),
        Purpose::AsymmetricDecrypt => ("RSA_DECRYPT_OAEP_2048_SHA256", 8),
        Purpose::Mac => ("HMAC_SHA256", 32),
    }
}

pub(crate) fn version_json(ctx: &Ctx<'_>, k: &GcpKey, v: &VersionRecord) -> Value {
    let (alg, alg_n) = algorithm(k.rec.purpose);
    let mut out = json!({
        "name": k.version_name(v.id),
        "state": ctx.enum_value(v.state.name(), v.state.number()),
        "protectionLevel": ctx.enum_value("SOFTWARE", 1),
        "algorithm": ctx.enum_value(alg, alg_n),
        "createTime": timestamp(v.create_time),
        "generateTime": timestamp(v.create_time),
    });
    if let Some(t) = v.destroy_time {
        out["destroyTime"] = timestamp(t);
    }
    if let Some(t) = v.destroy_event_time {
        out["destroyEventTime"] = timestamp(t);
    }
    out
}

/// Adds an ENABLED version (with fresh material for ENCRYPT_DECRYPT keys) and returns its ID.
/// It does not become primary.
pub(crate) fn add_version(inner: &Inner, k: &mut GcpKey, now: f64) -> u64 {
    let id = k.rec.versions.iter().map(|v| v.id).max().unwrap_or(0) + 1;
    let sealed = (k.rec.purpose == Purpose::EncryptDecrypt).then(|| {
        let material = SecretKey::random();
        let sealed = seal_material(&inner.store, &k.version_name(id), &material);
        k.materials.insert(id, material);
        sealed
    });
    k.rec.versions.push(VersionRecord {
        id,
        state: VersionState::Enabled,
        create_time: now,
        destroy_time: None,
        destroy_event_time: None,
        sealed,
    });
    id
}

/// DESTROY_SCHEDULED versions whose time has come lose their material; true if any did.
pub(crate) fn finish_destruction(k: &mut GcpKey, now: f64) -> bool {
    let mut changed = false;
    for v in &mut k.rec.versions {
        if v.state == VersionState::DestroyScheduled && v.destroy_time.is_some_and(|t| t <= now) {
            v.state = VersionState::Destroyed;
            v.sealed = None;
            v.destroy_event_time = Some(now);
            k.materials.remove(&v.id);
            changed = true;
        }
    }
    changed
}

fn version_id(res: &Res) -> Result<(&str, u64), GcpError> {
    let Res::Version { key, id, .. } = res else {
        return Err(GcpError::invalid("not a crypto key version"));
    };
    let name = format!("{key}/cryptoKeyVersions/{id}");
    let n = id
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| GcpError::not_found("CryptoKeyVersion", &name))?;
    Ok((key, n))
}

pub(crate) fn create(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&[
        "name",
        "state",
        "protectionLevel",
        "algorithm",
        "createTime",
    ])?;
    let Res::Key { name, .. } = res else {
        return Err(GcpError::invalid("versions are created in a crypto key"));
    };
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeyVersions.create")?;
    let k = st
        .gcp
        .keys
        .get_mut(name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", name))?;
    let id = add_version(ctx.inner, k, ctx.now);
    let answer = k
        .version(id)
        .map(|v| version_json(ctx, k, v))
        .unwrap_or(Value::Null);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

pub(crate) fn get(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let (key, id) = version_id(res)?;
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeyVersions.get")?;
    let k = st
        .gcp
        .keys
        .get(key)
        .ok_or_else(|| GcpError::not_found("CryptoKey", key))?;
    k.version(id)
        .map(|v| version_json(ctx, k, v))
        .ok_or_else(|| GcpError::not_found("CryptoKeyVersion", &k.version_name(id)))
}

pub(crate) fn list(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let Res::Key { name, .. } = res else {
        return Err(GcpError::invalid("versions are listed in a crypto key"));
    };
    if ctx.query("filter").is_some_and(|f| !f.is_empty()) {
        return Err(GcpError::invalid(
            "keyplane's built-in KMS does not support list filters",
        ));
    }
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeyVersions.list")?;
    let k = st
        .gcp
        .keys
        .get(name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", name))?;
    let all: Vec<Value> = k
        .rec
        .versions
        .iter()
        .map(|v| version_json(ctx, k, v))
        .collect();
    let (items, next) = page(ctx, &all)?;
    let mut out = json!({ "totalSize": all.len() });
    if !items.is_empty() {
        out["cryptoKeyVersions"] = Value::Array(items);
    }
    if let Some(n) = next {
        out["nextPageToken"] = Value::from(n);
    }
    Ok(out)
}

/// Runs `change` on the version after the permission check, then persists and answers with
/// the version.
fn mutate(
    ctx: &Ctx<'_>,
    res: &Res,
    permission: &str,
    change: impl FnOnce(&mut VersionRecord, &GcpKey) -> Result<(), GcpError>,
) -> Result<Value, GcpError> {
    let (key, id) = version_id(res)?;
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, permission)?;
    let k = st
        .gcp
        .keys
        .get_mut(key)
        .ok_or_else(|| GcpError::not_found("CryptoKey", key))?;
    let name = k.version_name(id);
    let mut v = k
        .version(id)
        .cloned()
        .ok_or_else(|| GcpError::not_found("CryptoKeyVersion", &name))?;
    change(&mut v, k)?;
    let answer = version_json(ctx, k, &v);
    if let Some(slot) = k.version_mut(id) {
        *slot = v;
    }
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

pub(crate) fn patch(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&[
        "name",
        "state",
        "protectionLevel",
        "algorithm",
        "createTime",
        "generateTime",
    ])?;
    let mask = ctx.query("updateMask").unwrap_or("");
    if mask.split(',').any(|f| f.trim() != "state") || mask.is_empty() {
        return Err(GcpError::invalid(format!(
            "update_mask {mask:?} is not supported: only \"state\" can be updated"
        )));
    }
    let wanted = body
        .enumeration(
            "state",
            "google.cloud.kms.v1.CryptoKeyVersion.CryptoKeyVersionState",
            &STATES,
        )?
        .ok_or_else(|| GcpError::invalid("The request must specify a state."))?;
    if !matches!(wanted, VersionState::Enabled | VersionState::Disabled) {
        return Err(GcpError::invalid(format!(
            "A version's state can only be updated to ENABLED or DISABLED, not {}.",
            wanted.name()
        )));
    }
    mutate(ctx, res, "cloudkms.cryptoKeyVersions.update", |v, k| {
        if !matches!(v.state, VersionState::Enabled | VersionState::Disabled) {
            return Err(GcpError::precondition(format!(
                "{} is not in state ENABLED or DISABLED, current state is: {}.",
                k.version_name(v.id),
                v.state.name()
            )));
        }
        v.state = wanted;
        Ok(())
    })
}

pub(crate) fn destroy(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["name"])?;
    let now = ctx.now;
    mutate(ctx, res, "cloudkms.cryptoKeyVersions.destroy", |v, k| {
        if !matches!(v.state, VersionState::Enabled | VersionState::Disabled) {
            return Err(GcpError::precondition(format!(
                "{} cannot be destroyed, current state is: {}.",
                k.version_name(v.id),
                v.state.name()
            )));
        }
        v.state = VersionState::DestroyScheduled;
        v.destroy_time = Some(now + k.rec.destroy_scheduled_secs as f64);
        Ok(())
    })
}

pub(crate) fn restore(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["name"])?;
    mutate(ctx, res, "cloudkms.cryptoKeyVersions.restore", |v, k| {
        if v.state != VersionState::DestroyScheduled {
            return Err(GcpError::precondition(format!(
                "{} is not scheduled for destruction, current state is: {}.",
                k.version_name(v.id),
                v.state.name()
            )));
        }
        v.state = VersionState::Disabled;
        v.destroy_time = None;
        Ok(())
    })
}
