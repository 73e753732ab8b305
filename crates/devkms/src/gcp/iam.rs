//! IAM: what a member may do on a resource (its projects' owners hold everything; otherwise
//! the bindings of the key ring's and the key's policies, through the role table of
//! `keyplane_core::policy::gcp`), and getIamPolicy / setIamPolicy / testIamPermissions.
//!
//! As in Cloud KMS, a permission is checked before the resource is looked up, and a caller
//! without it learns nothing about whether the resource exists.

use std::collections::BTreeSet;

use keyplane_core::policy::gcp::{
    IamBinding, IamPolicy, known_permissions, member_covers, role_permissions,
};
use serde_json::{Value, json};

use super::error::{Code, GcpError};
use super::state::GcpState;
use super::{Body, Ctx, Res};

/// The key ring and key a resource lies in (None where the resource is above them).
fn scope(res: &Res) -> (Option<&str>, Option<&str>) {
    match res {
        Res::Location { .. } => (None, None),
        Res::KeyRing { name, .. } => (Some(name), None),
        Res::Key { ring, name, .. } => (Some(ring), Some(name)),
        Res::Version { ring, key, .. } => (Some(ring), Some(key)),
    }
}

/// The name Cloud KMS reports in a denial: the resource the permission is checked on.
pub(crate) fn resource_name(res: &Res) -> String {
    match res {
        Res::Location { project, location } => format!("projects/{project}/locations/{location}"),
        Res::KeyRing { name, .. } | Res::Key { name, .. } => name.clone(),
        Res::Version { key, id, .. } => format!("{key}/cryptoKeyVersions/{id}"),
    }
}

/// Every permission `member` holds on `res`.
pub(crate) fn held(st: &GcpState, member: &str, res: &Res) -> BTreeSet<&'static str> {
    if st.owners_of(res.project()).any(|m| m == member) {
        return known_permissions().into_iter().collect();
    }
    let (ring, key) = scope(res);
    let policies = [
        ring.and_then(|r| st.key_rings.get(r)).map(|r| &r.policy),
        key.and_then(|k| st.keys.get(k)).map(|k| &k.rec.policy),
    ];
    let mut out = BTreeSet::new();
    for policy in policies.into_iter().flatten() {
        for b in &policy.bindings {
            // Conditions are refused by setIamPolicy, so every stored binding applies.
            if b.condition.is_none() && b.members.iter().any(|m| member_covers(m, member)) {
                out.extend(role_permissions(&b.role).unwrap_or_default());
            }
        }
    }
    out
}

/// Refuses the call unless the caller holds `permission` on `res`.
pub(crate) fn check(
    ctx: &Ctx<'_>,
    st: &GcpState,
    res: &Res,
    permission: &str,
) -> Result<(), GcpError> {
    if held(st, &ctx.member, res).contains(permission) {
        Ok(())
    } else {
        Err(GcpError::permission_denied(permission, &resource_name(res)))
    }
}

/// `ACAB` for a policy never set (Cloud KMS's etag of an empty policy), else the serial.
fn etag(serial: u64) -> String {
    if serial == 0 {
        "ACAB".to_string()
    } else {
        super::encode_bytes(&serial.to_be_bytes())
    }
}

fn policy_json(policy: &IamPolicy, serial: u64) -> Value {
    let mut v = json!({ "version": 1, "etag": etag(serial) });
    if !policy.bindings.is_empty() {
        v["bindings"] = json!(
            policy
                .bindings
                .iter()
                .map(|b| json!({ "role": b.role, "members": b.members }))
                .collect::<Vec<_>>()
        );
    }
    v
}

/// The permissions guarding a resource's policy, by the kind of resource.
fn policy_permissions(res: &Res) -> Result<(&'static str, &'static str, &'static str), GcpError> {
    match res {
        Res::KeyRing { .. } => Ok((
            "cloudkms.keyRings.getIamPolicy",
            "cloudkms.keyRings.setIamPolicy",
            "KeyRing",
        )),
        Res::Key { .. } => Ok((
            "cloudkms.cryptoKeys.getIamPolicy",
            "cloudkms.cryptoKeys.setIamPolicy",
            "CryptoKey",
        )),
        _ => Err(GcpError::invalid(
            "IAM policies exist on key rings and crypto keys only",
        )),
    }
}

/// The stored policy and its serial, or None if the resource does not exist.
fn stored<'s>(st: &'s GcpState, res: &Res) -> Option<(&'s IamPolicy, u64)> {
    match res {
        Res::KeyRing { name, .. } => st.key_rings.get(name).map(|r| (&r.policy, r.policy_serial)),
        Res::Key { name, .. } => st
            .keys
            .get(name)
            .map(|k| (&k.rec.policy, k.rec.policy_serial)),
        _ => None,
    }
}

pub(crate) fn get_policy(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let (get, _, kind) = policy_permissions(res)?;
    let st = ctx.inner.read();
    check(ctx, &st.gcp, res, get)?;
    let (policy, serial) =
        stored(&st.gcp, res).ok_or_else(|| GcpError::not_found(kind, &resource_name(res)))?;
    Ok(policy_json(policy, serial))
}

fn valid_member_type(m: &str) -> bool {
    matches!(m, "allUsers" | "allAuthenticatedUsers")
        || [
            "user:",
            "serviceAccount:",
            "group:",
            "domain:",
            "principal://",
            "principalSet://",
            "deleted:",
        ]
        .iter()
        .any(|p| m.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

fn validate(policy: &IamPolicy) -> Result<Vec<IamBinding>, GcpError> {
    if let Some(v) = policy.version
        && ![0, 1, 3].contains(&v)
    {
        return Err(GcpError::invalid(format!(
            "Invalid policy version {v}; use 1 or 3."
        )));
    }
    let mut out = Vec::new();
    for b in &policy.bindings {
        if b.condition.is_some() {
            return Err(GcpError::invalid(format!(
                "the binding of {} has a condition: keyplane's built-in KMS does not evaluate IAM conditions, \
                 set the binding without one",
                b.role
            )));
        }
        if role_permissions(&b.role).is_none() {
            return Err(GcpError::invalid(format!(
                "Role {} is not supported for this resource (keyplane's built-in KMS knows the predefined Cloud KMS \
                 roles and roles/owner, not custom roles).",
                b.role
            )));
        }
        if let Some(m) = b.members.iter().find(|m| !valid_member_type(m)) {
            return Err(GcpError::invalid(format!(
                "Invalid member {m:?}: a member is user:, serviceAccount:, group: or domain: followed by a name, \
                 or allUsers / allAuthenticatedUsers."
            )));
        }
        if !b.members.is_empty() {
            out.push(IamBinding {
                role: b.role.clone(),
                members: b.members.clone(),
                condition: None,
            });
        }
    }
    Ok(out)
}

pub(crate) fn set_policy(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["policy", "updateMask"])?;
    let (_, set, kind) = policy_permissions(res)?;
    let raw = body
        .get("policy")
        .ok_or_else(|| GcpError::invalid("The request must contain a policy."))?;
    let policy: IamPolicy = serde_json::from_value(raw.clone())
        .map_err(|e| GcpError::invalid(format!("Invalid JSON payload received. {e}")))?;
    let bindings = validate(&policy)?;
    let mut st = ctx.inner.write();
    check(ctx, &st.gcp, res, set)?;
    let (_, serial) =
        stored(&st.gcp, res).ok_or_else(|| GcpError::not_found(kind, &resource_name(res)))?;
    if let Some(given) = policy.etag.as_deref()
        && given != etag(serial)
    {
        return Err(GcpError::new(
            Code::Aborted,
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential \
             backoff.",
        ));
    }
    let new = IamPolicy {
        version: None,
        etag: None,
        bindings,
    };
    let (stored_policy, stored_serial) = match res {
        Res::KeyRing { name, .. } => st
            .gcp
            .key_rings
            .get_mut(name)
            .map(|r| (&mut r.policy, &mut r.policy_serial)),
        Res::Key { name, .. } => st
            .gcp
            .keys
            .get_mut(name)
            .map(|k| (&mut k.rec.policy, &mut k.rec.policy_serial)),
        _ => None,
    }
    .ok_or_else(|| GcpError::not_found(kind, &resource_name(res)))?;
    *stored_policy = new.clone();
    *stored_serial += 1;
    let answer = policy_json(&new, *stored_serial);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

/// Needs no permission, as in Cloud KMS: answers which of the asked permissions the caller
/// holds. A resource that does not exist answers NOT_FOUND only to a caller who could read
/// it; anyone else gets an empty list.
pub(crate) fn test_permissions(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["permissions"])?;
    let asked: Vec<String> = match body.get("permissions") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| GcpError::invalid("permissions must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(GcpError::invalid("permissions must be a list of strings")),
    };
    if let Some(p) = asked
        .iter()
        .find(|p| p.split('.').count() != 3 || p.contains(char::is_whitespace))
    {
        return Err(GcpError::invalid(format!("Permission {p} is not valid.")));
    }
    let (_, _, kind) = policy_permissions(res)?;
    let st = ctx.inner.read();
    let held = held(&st.gcp, &ctx.member, res);
    if stored(&st.gcp, res).is_none() {
        let read = match res {
            Res::KeyRing { .. } => "cloudkms.keyRings.get",
            _ => "cloudkms.cryptoKeys.get",
        };
        if held.contains(read) {
            return Err(GcpError::not_found(kind, &resource_name(res)));
        }
        return Ok(json!({}));
    }
    let granted: Vec<&String> = asked.iter().filter(|p| held.contains(p.as_str())).collect();
    Ok(if granted.is_empty() {
        json!({})
    } else {
        json!({ "permissions": granted })
    })
}
