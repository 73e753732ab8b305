//! Key management: create (a new key, or a new version of an existing one), get, list,
//! update attributes (enabled, nbf, exp, key_ops, tags), and soft delete with recover and
//! purge. The JSON is Key Vault's key bundle: `{"key": JWK, "attributes": …, "tags": …}`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::Deserialize;
use serde_json::{Value, json};

use super::crypto::{Kty, Material};
use super::error::VaultError;
use super::rbac::{authorize, vault_scope};
use super::state::{
    DeletedEntry, KeyEntry, KeyOp, KeyVersion, RECOVERABLE_DAYS, VersionRecord, material_purpose,
};
use super::{Caller, Ctx, Page};

pub(crate) const READ: &str = "Microsoft.KeyVault/vaults/keys/read";
const CREATE: &str = "Microsoft.KeyVault/vaults/keys/create/action";
const UPDATE: &str = "Microsoft.KeyVault/vaults/keys/update/action";
const DELETE: &str = "Microsoft.KeyVault/vaults/keys/delete";
const DELETED_READ: &str = "Microsoft.KeyVault/vaults/deletedKeys/read";
const PURGE: &str = "Microsoft.KeyVault/vaults/deletedKeys/delete";
const RECOVER: &str = "Microsoft.KeyVault/vaults/deletedKeys/recover/action";

pub(crate) fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(crate) fn check_name(name: &str) -> Result<(), VaultError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(VaultError::bad_parameter(format!(
            "The request URI contains an invalid name: {name}. Key names are 1-127 letters, digits and dashes."
        )))
    }
}

/// The writable attributes of a version; read-only ones the SDKs echo back are ignored.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

#[derive(Deserialize)]
struct CreateBody {
    kty: Option<String>,
    key_size: Option<u32>,
    public_exponent: Option<u32>,
    key_ops: Option<Vec<String>>,
    attributes: Option<AttributesIn>,
    tags: Option<BTreeMap<String, String>>,
    crv: Option<String>,
}

#[derive(Deserialize)]
struct UpdateBody {
    attributes: Option<AttributesIn>,
    key_ops: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
}

pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, VaultError> {
    if body.is_empty() {
        return Err(VaultError::bad_parameter("The request body is missing."));
    }
    serde_json::from_slice(body)
        .map_err(|e| VaultError::bad_parameter(format!("The request body is not valid: {e}")))
}

pub(crate) fn parse_ops(ops: &[String]) -> Result<Vec<KeyOp>, VaultError> {
    let mut out = Vec::new();
    for o in ops {
        let op = KeyOp::parse(o)
            .ok_or_else(|| VaultError::bad_parameter(format!("Invalid key operation: {o}")))?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

fn default_ops(kty: Kty) -> Vec<KeyOp> {
    if kty.is_rsa() {
        vec![
            KeyOp::Encrypt,
            KeyOp::Decrypt,
            KeyOp::Sign,
            KeyOp::Verify,
            KeyOp::WrapKey,
            KeyOp::UnwrapKey,
        ]
    } else {
        vec![
            KeyOp::Encrypt,
            KeyOp::Decrypt,
            KeyOp::WrapKey,
            KeyOp::UnwrapKey,
        ]
    }
}

pub(crate) fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn attributes_json(r: &VersionRecord) -> Value {
    let mut a = json!({
        "enabled": r.enabled,
        "created": r.created,
        "updated": r.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
        "exportable": false,
    });
    if let Some(n) = r.nbf {
        a["nbf"] = json!(n);
    }
    if let Some(e) = r.exp {
        a["exp"] = json!(e);
    }
    a
}

pub(crate) fn kid(ctx: &Ctx, name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{}/keys/{name}/{v}", ctx.base_url),
        None => format!("{}/keys/{name}", ctx.base_url),
    }
}

/// The key bundle of one version.
pub(crate) fn bundle(ctx: &Ctx, name: &str, v: &KeyVersion) -> Value {
    let mut key = json!({
        "kid": kid(ctx, name, Some(&v.rec.version)),
        "kty": v.rec.kty.as_str(),
        "key_ops": v.rec.key_ops.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
    });
    if let Material::Rsa(r) = &v.material {
        key["n"] = json!(B64URL.encode(&r.n));
        key["e"] = json!(B64URL.encode(&r.e));
    }
    let mut b = json!({ "key": key, "attributes": attributes_json(&v.rec) });
    if !v.rec.tags.is_empty() {
        b["tags"] = json!(v.rec.tags);
    }
    b
}

fn deleted_bundle(ctx: &Ctx, d: &DeletedEntry) -> Value {
    let mut b = d
        .key
        .latest()
        .map(|v| bundle(ctx, &d.key.name, v))
        .unwrap_or_else(|| json!({}));
    b["recoveryId"] = json!(format!("{}/deletedkeys/{}", ctx.base_url, d.key.name));
    b["deletedDate"] = json!(d.deleted_date);
    b["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
    b
}

/// Builds (outside any lock) and seals a new version.
pub(crate) fn make_version(
    ctx: &Ctx,
    name: &str,
    kty: Kty,
    key_size: u32,
    key_ops: Vec<KeyOp>,
    attributes: &AttributesIn,
    tags: BTreeMap<String, String>,
) -> Result<KeyVersion, VaultError> {
    let material = Material::generate(kty, key_size)?;
    let version = new_version_id();
    let bytes = material
        .to_bytes()
        .ok_or_else(|| VaultError::internal("could not encode key material"))?;
    let sealed = ctx
        .inner
        .store
        .seal_b64(&material_purpose(&ctx.vault, name, &version), &bytes);
    let now = ctx.inner.now() as i64;
    Ok(KeyVersion {
        rec: VersionRecord {
            version,
            kty,
            key_size,
            key_ops,
            enabled: attributes.enabled.unwrap_or(true),
            nbf: attributes.nbf,
            exp: attributes.exp,
            created: now,
            updated: now,
            tags,
            sealed,
        },
        material,
    })
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), VaultError> {
    if tags.len() > 15 || tags.iter().any(|(k, v)| k.len() > 512 || v.len() > 512) {
        return Err(VaultError::bad_parameter(
            "At most 15 tags of at most 512 characters each.",
        ));
    }
    Ok(())
}

fn commit(
    ctx: &Ctx,
    st: std::sync::RwLockWriteGuard<'_, crate::state::State>,
) -> Result<(), VaultError> {
    ctx.inner
        .commit(st)
        .map_err(|e| VaultError::internal(e.message))
}

/// `POST /keys/{name}/create`.
pub(crate) fn create(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let b: CreateBody = parse_body(body)?;
    {
        let st = ctx.inner.read();
        ctx.authorize_key(&st, caller, CREATE, name)?;
        if ctx
            .vault_of(&st)?
            .deleted
            .contains_key(&name.to_ascii_lowercase())
        {
            return Err(deleted_conflict(name));
        }
    }
    let kty_s = b
        .kty
        .ok_or_else(|| VaultError::bad_parameter("The parameter kty is required."))?;
    if b.crv.is_some() || kty_s.starts_with("EC") {
        return Err(VaultError::bad_parameter(
            "EC keys are not supported by keyplane's built-in vault (it creates RSA, RSA-HSM and oct-HSM keys)",
        ));
    }
    let kty = Kty::parse(&kty_s)
        .ok_or_else(|| VaultError::bad_parameter(format!("Invalid key type: {kty_s}")))?;
    if b.public_exponent.is_some_and(|e| e != 65537) {
        return Err(VaultError::bad_parameter(
            "The built-in vault supports the public exponent 65537 only.",
        ));
    }
    let key_size = b.key_size.unwrap_or(if kty.is_rsa() { 2048 } else { 256 });
    let key_ops = match &b.key_ops {
        Some(ops) => parse_ops(ops)?,
        None => default_ops(kty),
    };
    let tags = b.tags.unwrap_or_default();
    check_tags(&tags)?;
    let version = make_version(
        ctx,
        name,
        kty,
        key_size,
        key_ops,
        &b.attributes.unwrap_or_default(),
        tags,
    )?;
    let mut st = ctx.inner.write();
    let vault = ctx.vault_of_mut(&mut st)?;
    let lower = name.to_ascii_lowercase();
    if vault.deleted.contains_key(&lower) {
        return Err(deleted_conflict(name));
    }
    let entry = vault.keys.entry(lower).or_insert_with(|| KeyEntry {
        name: name.to_string(),
        versions: Vec::new(),
        rotation_policy: None,
    });
    entry.versions.push(version);
    let out = entry
        .latest()
        .map(|v| bundle(ctx, &entry.name, v))
        .unwrap_or(Value::Null);
    commit(ctx, st)?;
    tracing::debug!(vault = %ctx.vault, key = name, kty = kty.as_str(), key_size, "devkms azure: key version created");
    Ok((StatusCode::OK, out))
}

fn deleted_conflict(name: &str) -> VaultError {
    VaultError::conflict(
        format!(
            "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
        ),
        "ObjectIsDeletedButRecoverable",
    )
}

/// `GET /keys/{name}[/{version}]`. A disabled key can still be read: `get` is how its owner and
/// the platform see that it is disabled.
pub(crate) fn get(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    version: Option<&str>,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let st = ctx.inner.read();
    ctx.authorize_key(&st, caller, READ, name)?;
    let vault = ctx.vault_of(&st)?;
    let entry = vault
        .keys
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| VaultError::key_not_found(name))?;
    let v = match version {
        None => entry.latest(),
        Some(v) => entry.version(v),
    }
    .ok_or_else(|| VaultError::key_not_found(&format!("{name}/{}", version.unwrap_or(""))))?;
    Ok((StatusCode::OK, bundle(ctx, &entry.name, v)))
}

/// `GET /keys`: the latest version of every key, versionless IDs.
pub(crate) fn list(
    ctx: &Ctx,
    caller: &Caller,
    page: &Page,
) -> Result<(StatusCode, Value), VaultError> {
    let st = ctx.inner.read();
    authorize(
        ctx,
        &st.azure,
        caller,
        READ,
        &vault_scope(&st.azure, &ctx.vault),
    )?;
    let vault = ctx.vault_of(&st)?;
    let items: Vec<Value> = vault
        .keys
        .values()
        .filter_map(|k| {
            let v = k.latest()?;
            let mut item =
                json!({ "kid": kid(ctx, &k.name, None), "attributes": attributes_json(&v.rec) });
            if !v.rec.tags.is_empty() {
                item["tags"] = json!(v.rec.tags);
            }
            Some(item)
        })
        .collect();
    Ok((StatusCode::OK, page.apply(ctx, "/keys", items)))
}

/// `PATCH /keys/{name}[/{version}]`: the given version, or the current one.
pub(crate) fn update(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    version: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let b: UpdateBody = parse_body(body)?;
    let ops = b.key_ops.as_deref().map(parse_ops).transpose()?;
    if let Some(t) = &b.tags {
        check_tags(t)?;
    }
    let mut st = ctx.inner.write();
    ctx.authorize_key(&st, caller, UPDATE, name)?;
    let now = ctx.inner.now() as i64;
    let vault = ctx.vault_of_mut(&mut st)?;
    let entry = vault
        .keys
        .get_mut(&name.to_ascii_lowercase())
        .ok_or_else(|| VaultError::key_not_found(name))?;
    let entry_name = entry.name.clone();
    let v = entry
        .version_mut(version)
        .ok_or_else(|| VaultError::key_not_found(&format!("{name}/{}", version.unwrap_or(""))))?;
    if let Some(a) = &b.attributes {
        if let Some(e) = a.enabled {
            v.rec.enabled = e;
        }
        if a.nbf.is_some() {
            v.rec.nbf = a.nbf;
        }
        if a.exp.is_some() {
            v.rec.exp = a.exp;
        }
    }
    if let Some(ops) = ops {
        v.rec.key_ops = ops;
    }
    if let Some(t) = b.tags {
        v.rec.tags = t;
    }
    v.rec.updated = now;
    let out = bundle(ctx, &entry_name, v);
    let summary = (v.rec.version.clone(), v.rec.enabled, v.rec.nbf, v.rec.exp);
    commit(ctx, st)?;
    tracing::debug!(vault = %ctx.vault, key = name, version = %summary.0, enabled = summary.1, nbf = ?summary.2, exp = ?summary.3, "devkms azure: key updated");
    Ok((StatusCode::OK, out))
}

/// `DELETE /keys/{name}`: every version moves to the deleted keys, recoverable for 90 days.
pub(crate) fn delete(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let mut st = ctx.inner.write();
    ctx.authorize_key(&st, caller, DELETE, name)?;
    let now = ctx.inner.now() as i64;
    let vault = ctx.vault_of_mut(&mut st)?;
    let lower = name.to_ascii_lowercase();
    let key = vault
        .keys
        .remove(&lower)
        .ok_or_else(|| VaultError::key_not_found(name))?;
    let d = DeletedEntry {
        key,
        deleted_date: now,
        scheduled_purge_date: now + RECOVERABLE_DAYS * 86_400,
    };
    let out = deleted_bundle(ctx, &d);
    vault.deleted.insert(lower, d);
    commit(ctx, st)?;
    Ok((StatusCode::OK, out))
}

/// `GET /deletedkeys`.
pub(crate) fn list_deleted(
    ctx: &Ctx,
    caller: &Caller,
    page: &Page,
) -> Result<(StatusCode, Value), VaultError> {
    let st = ctx.inner.read();
    authorize(
        ctx,
        &st.azure,
        caller,
        DELETED_READ,
        &vault_scope(&st.azure, &ctx.vault),
    )?;
    let vault = ctx.vault_of(&st)?;
    let items: Vec<Value> = vault
        .deleted
        .values()
        .map(|d| {
            let b = deleted_bundle(ctx, d);
            json!({
                "kid": kid(ctx, &d.key.name, None),
                "attributes": b["attributes"],
                "recoveryId": b["recoveryId"],
                "deletedDate": d.deleted_date,
                "scheduledPurgeDate": d.scheduled_purge_date,
            })
        })
        .collect();
    Ok((StatusCode::OK, page.apply(ctx, "/deletedkeys", items)))
}

/// `GET /deletedkeys/{name}`.
pub(crate) fn get_deleted(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let st = ctx.inner.read();
    ctx.authorize_key(&st, caller, DELETED_READ, name)?;
    let d = ctx
        .vault_of(&st)?
        .deleted
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| VaultError::deleted_key_not_found(name))?;
    Ok((StatusCode::OK, deleted_bundle(ctx, d)))
}

/// `DELETE /deletedkeys/{name}`: gone for good.
pub(crate) fn purge(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let mut st = ctx.inner.write();
    ctx.authorize_key(&st, caller, PURGE, name)?;
    ctx.vault_of_mut(&mut st)?
        .deleted
        .remove(&name.to_ascii_lowercase())
        .ok_or_else(|| VaultError::deleted_key_not_found(name))?;
    commit(ctx, st)?;
    Ok((StatusCode::NO_CONTENT, Value::Null))
}

/// `POST /deletedkeys/{name}/recover`.
pub(crate) fn recover(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let mut st = ctx.inner.write();
    ctx.authorize_key(&st, caller, RECOVER, name)?;
    let vault = ctx.vault_of_mut(&mut st)?;
    let lower = name.to_ascii_lowercase();
    let d = vault
        .deleted
        .remove(&lower)
        .ok_or_else(|| VaultError::deleted_key_not_found(name))?;
    let out = d
        .key
        .latest()
        .map(|v| bundle(ctx, &d.key.name, v))
        .unwrap_or(Value::Null);
    vault.keys.insert(lower, d.key);
    commit(ctx, st)?;
    Ok((StatusCode::OK, out))
}
