//! Versions: listing a key's versions, rotation (`POST /keys/{name}/rotate` adds a version
//! with the same type, size and operations; older versions keep unwrapping what they wrapped),
//! and the key's rotation policy (stored and returned as set; the built-in vault does not run
//! it on a timer).

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::VaultError;
use super::keys::{
    AttributesIn, READ, attributes_json, bundle, check_name, kid, make_version, parse_body,
};

use super::state::{LifetimeAction, RotationPolicy};
use super::{Caller, Ctx, Page};

const ROTATE: &str = "Microsoft.KeyVault/vaults/keys/rotate/action";
const POLICY_READ: &str = "Microsoft.KeyVault/vaults/keyrotationpolicies/read";
const POLICY_WRITE: &str = "Microsoft.KeyVault/vaults/keyrotationpolicies/write";

/// `GET /keys/{name}/versions`, oldest first.
pub(crate) fn list(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    page: &Page,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let st = ctx.inner.read();
    ctx.authorize_key(&st, caller, READ, name)?;
    let entry = ctx.key_of(&st, name)?;
    let items: Vec<Value> = entry
        .versions
        .iter()
        .map(|v| {
            let mut item = json!({
                "kid": kid(ctx, &entry.name, Some(&v.rec.version)),
                "attributes": attributes_json(&v.rec),
            });
            if !v.rec.tags.is_empty() {
                item["tags"] = json!(v.rec.tags);
            }
            item
        })
        .collect();
    Ok((
        StatusCode::OK,
        page.apply(ctx, &format!("/keys/{}/versions", entry.name), items),
    ))
}

/// An ISO 8601 duration of whole days, months (30 days) or years (365 days): what rotation
/// policies use (`P90D`, `P1Y`, `P18M`).
pub(crate) fn duration_secs(iso: &str) -> Option<i64> {
    let rest = iso.strip_prefix('P')?;
    let (num, unit) = rest.split_at(rest.len().checked_sub(1)?);
    let n: i64 = num.parse().ok().filter(|n: &i64| *n > 0)?;
    let days = match unit {
        "D" => n,
        "M" => n * 30,
        "Y" => n * 365,
        _ => return None,
    };
    Some(days * 86_400)
}

/// `POST /keys/{name}/rotate`.
pub(crate) fn rotate(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let (kty, size, ops, tags, expiry, entry_name) = {
        let st = ctx.inner.read();
        ctx.authorize_key(&st, caller, ROTATE, name)?;
        let entry = ctx.key_of(&st, name)?;
        let latest = entry
            .latest()
            .ok_or_else(|| VaultError::key_not_found(name))?;
        let expiry = entry
            .rotation_policy
            .as_ref()
            .and_then(|p| p.expiry_time.as_deref())
            .and_then(duration_secs);
        (
            latest.rec.kty,
            latest.rec.key_size,
            latest.rec.key_ops.clone(),
            latest.rec.tags.clone(),
            expiry,
            entry.name.clone(),
        )
    };
    let attrs = AttributesIn {
        enabled: Some(true),
        nbf: None,
        exp: expiry.map(|e| ctx.inner.now() as i64 + e),
    };
    let version = make_version(ctx, &entry_name, kty, size, ops, &attrs, tags)?;
    let mut st = ctx.inner.write();
    let entry = ctx.key_of_mut(&mut st, name)?;
    entry.versions.push(version);
    let out = entry
        .latest()
        .map(|v| bundle(ctx, &entry_name, v))
        .unwrap_or(Value::Null);
    ctx.inner
        .commit(st)
        .map_err(|e| VaultError::internal(e.message))?;
    tracing::debug!(vault = %ctx.vault, key = name, "devkms azure: key rotated");
    Ok((StatusCode::OK, out))
}

fn policy_json(ctx: &Ctx, name: &str, p: Option<&RotationPolicy>) -> Value {
    let id = format!("{}/rotationpolicy", kid(ctx, name, None));
    match p {
        Some(p) => {
            let mut attrs = json!({ "created": p.created, "updated": p.updated });
            if let Some(e) = &p.expiry_time {
                attrs["expiryTime"] = json!(e);
            }
            json!({ "id": id, "lifetimeActions": p.lifetime_actions, "attributes": attrs })
        }
        // Key Vault's default for a key nobody set a policy on: notify 30 days before expiry.
        None => json!({
            "id": id,
            "lifetimeActions": [{ "trigger": { "timeBeforeExpiry": "P30D" }, "action": { "type": "Notify" } }],
            "attributes": {},
        }),
    }
}

/// `GET /keys/{name}/rotationpolicy`.
pub(crate) fn get_policy(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let st = ctx.inner.read();
    ctx.authorize_key(&st, caller, POLICY_READ, name)?;
    let entry = ctx.key_of(&st, name)?;
    Ok((
        StatusCode::OK,
        policy_json(ctx, &entry.name, entry.rotation_policy.as_ref()),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyAttributesIn {
    expiry_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyIn {
    #[serde(default)]
    lifetime_actions: Vec<LifetimeAction>,
    attributes: Option<PolicyAttributesIn>,
}

/// `PUT /keys/{name}/rotationpolicy`.
pub(crate) fn put_policy(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let p: PolicyIn = parse_body(body)?;
    for a in &p.lifetime_actions {
        let kind = a.action.kind.to_ascii_lowercase();
        if kind != "rotate" && kind != "notify" {
            return Err(VaultError::bad_parameter(format!(
                "Invalid lifetime action type: {}",
                a.action.kind
            )));
        }
        let t = &a.trigger;
        let durations: Vec<&String> = t
            .time_after_create
            .iter()
            .chain(t.time_before_expiry.iter())
            .collect();
        if durations.len() != 1 || durations.iter().any(|d| duration_secs(d).is_none()) {
            return Err(VaultError::bad_parameter(
                "Each lifetime action needs exactly one trigger, timeAfterCreate or timeBeforeExpiry, as an ISO 8601 duration (P90D)",
            ));
        }
    }
    let expiry_time = p.attributes.and_then(|a| a.expiry_time);
    if let Some(e) = &expiry_time
        && duration_secs(e).is_none()
    {
        return Err(VaultError::bad_parameter(format!(
            "Invalid expiryTime: {e}"
        )));
    }
    let mut st = ctx.inner.write();
    ctx.authorize_key(&st, caller, POLICY_WRITE, name)?;
    let now = ctx.inner.now() as i64;
    let entry = ctx.key_of_mut(&mut st, name)?;
    let created = entry.rotation_policy.as_ref().map_or(now, |p| p.created);
    entry.rotation_policy = Some(RotationPolicy {
        lifetime_actions: p.lifetime_actions,
        expiry_time,
        created,
        updated: now,
    });
    let out = policy_json(ctx, &entry.name.clone(), entry.rotation_policy.as_ref());
    ctx.inner
        .commit(st)
        .map_err(|e| VaultError::internal(e.message))?;
    Ok((StatusCode::OK, out))
}

#[cfg(test)]
mod tests {
    use super::duration_secs;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("P90D"), Some(90 * 86_400));
        assert_eq!(duration_secs("P1Y"), Some(365 * 86_400));
        assert_eq!(duration_secs("P18M"), Some(540 * 86_400));
        for bad in ["", "P", "90D", "P0D", "P1W", "PT1H", "P-1D"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }
}
