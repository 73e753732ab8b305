//! Key rings: create, get, list. A key ring lives in one project and location and is never
//! deleted (as in Cloud KMS).

use keyplane_core::policy::gcp::IamPolicy;
use serde_json::{Value, json};

use super::error::{Code, GcpError};
use super::state::KeyRingRecord;
use super::{Body, Ctx, Res, iam, page, timestamp, valid_id, valid_location};

fn ring_json(r: &KeyRingRecord) -> Value {
    json!({ "name": r.name, "createTime": timestamp(r.create_time) })
}

pub(crate) fn create(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&["name", "createTime"])?;
    let Res::Location { project, location } = res else {
        return Err(GcpError::invalid("key rings are created in a location"));
    };
    let id = ctx
        .query("keyRingId")
        .ok_or_else(|| GcpError::invalid("The request must specify key_ring_id."))?;
    if !valid_id(id) {
        return Err(GcpError::invalid(format!(
            "Invalid key_ring_id {id:?}: it must be 1-63 letters, digits, underscores or hyphens."
        )));
    }
    if !valid_location(location) {
        return Err(GcpError::invalid(format!(
            "Invalid location {location:?}: keyplane's built-in KMS knows the catalog's Google Cloud regions and \
             global, us, europe, asia."
        )));
    }
    let name = format!("projects/{project}/locations/{location}/keyRings/{id}");
    let mut st = ctx.inner.write();
    iam::check(ctx, &st.gcp, res, "cloudkms.keyRings.create")?;
    if st.gcp.key_rings.contains_key(&name) {
        return Err(GcpError::new(
            Code::AlreadyExists,
            format!("KeyRing {name} already exists."),
        ));
    }
    let rec = KeyRingRecord {
        name: name.clone(),
        create_time: ctx.now,
        policy: IamPolicy::default(),
        policy_serial: 0,
    };
    let answer = ring_json(&rec);
    st.gcp.key_rings.insert(name, rec);
    ctx.inner
        .commit(st)
        .map_err(|e| GcpError::internal(e.message))?;
    Ok(answer)
}

pub(crate) fn get(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let Res::KeyRing { name, .. } = res else {
        return Err(GcpError::invalid("not a key ring"));
    };
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.keyRings.get")?;
    st.gcp
        .key_rings
        .get(name)
        .map(ring_json)
        .ok_or_else(|| GcpError::not_found("KeyRing", name))
}

pub(crate) fn list(ctx: &Ctx<'_>, res: &Res) -> Result<Value, GcpError> {
    let Res::Location { project, location } = res else {
        return Err(GcpError::invalid("key rings are listed in a location"));
    };
    let prefix = format!("projects/{project}/locations/{location}/keyRings/");
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.keyRings.list")?;
    let all: Vec<Value> = st
        .gcp
        .key_rings
        .range(prefix.clone()..)
        .take_while(|(n, _)| n.starts_with(&prefix))
        .map(|(_, r)| ring_json(r))
        .collect();
    let (items, next) = page(ctx, &all)?;
    let mut out = json!({ "totalSize": all.len() });
    if !items.is_empty() {
        out["keyRings"] = Value::Array(items);
    }
    if let Some(n) = next {
        out["nextPageToken"] = Value::from(n);
    }
    Ok(out)
}
