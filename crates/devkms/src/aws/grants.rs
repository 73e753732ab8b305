//! CreateGrant, ListGrants, ListRetirableGrants, RevokeGrant and RetireGrant.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::crypto;
use crate::error::ApiError;
use crate::state::{GrantConstraints, GrantRecord, Key};

use super::access::{
    GRANT_OPERATIONS, Scope, at_least_as_strict, context_condition_keys, mutate_key,
    principal_matches, require_not_pending, stored,
};
use super::input::{Input, wrong_type};
use super::{Ctx, page, paged, ts};

fn valid_principal(p: &str) -> bool {
    (p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::"))
        && p.split(':').nth(4).is_some_and(crate::state::valid_account)
        && p.split(':').nth(5).is_some_and(|r| !r.is_empty())
        || p.ends_with(".amazonaws.com")
}

/// AWS's limits on an encryption-context grant constraint.
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE_CHARS: usize = 384;

fn parse_constraints(input: Input<'_>) -> Result<Option<GrantConstraints>, ApiError> {
    let Some(c) = input.get("Constraints") else {
        return Ok(None);
    };
    let obj = c
        .as_object()
        .ok_or_else(|| wrong_type("Constraints", "a structure"))?;
    let sub = Input(obj);
    let gc = GrantConstraints {
        encryption_context_equals: sub.map_opt("EncryptionContextEquals")?,
        encryption_context_subset: sub.map_opt("EncryptionContextSubset")?,
    };
    for (member, pairs) in [
        ("encryptionContextEquals", &gc.encryption_context_equals),
        ("encryptionContextSubset", &gc.encryption_context_subset),
    ] {
        let Some(pairs) = pairs else { continue };
        if pairs.len() > MAX_CONSTRAINT_PAIRS {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'constraints.{member}' failed to satisfy constraint: Member must have at most {MAX_CONSTRAINT_PAIRS} encryption context pairs"
            )));
        }
        if pairs
            .values()
            .any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE_CHARS)
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'constraints.{member}' failed to satisfy constraint: Each encryption context value must have length less than or equal to {MAX_CONSTRAINT_VALUE_CHARS}"
            )));
        }
    }
    if gc.encryption_context_equals.is_none() && gc.encryption_context_subset.is_none() {
        return Ok(None);
    }
    Ok(Some(gc))
}

/// The condition keys a CreateGrant request carries: the grant's operations, grantee and
/// retiring principal, `kms:GrantIsForAWSResource` (false: no integrated AWS service calls the
/// built-in KMS), and from its constraint `kms:GrantConstraintType` and the
/// `kms:EncryptionContext:<key>` / `kms:EncryptionContextKeys` keys, which for CreateGrant AWS
/// evaluates against the constraint's pairs. That is what lets a key policy require that the
/// grants it allows carry an organization's context.
fn create_grant_condition_keys(req: &CreateGrantRequest<'_>) -> Vec<(String, Vec<String>)> {
    let mut keys = vec![
        ("kms:GrantOperations".to_string(), req.operations.clone()),
        (
            "kms:GranteePrincipal".to_string(),
            vec![req.grantee.clone()],
        ),
        (
            "kms:GrantIsForAWSResource".to_string(),
            vec!["false".to_string()],
        ),
    ];
    if let Some(r) = &req.retiring {
        keys.push(("kms:RetiringPrincipal".to_string(), vec![r.clone()]));
    }
    let Some(c) = &req.constraints else {
        return keys;
    };
    let mut types = vec![];
    let mut pairs = vec![];
    if let Some(e) = &c.encryption_context_equals {
        types.push("EncryptionContextEquals".to_string());
        pairs.extend(e.iter());
    }
    if let Some(s) = &c.encryption_context_subset {
        types.push("EncryptionContextSubset".to_string());
        pairs.extend(s.iter());
    }
    keys.push(("kms:GrantConstraintType".to_string(), types));
    keys.extend(context_condition_keys(pairs.into_iter()));
    keys
}

/// CreateGrant's members, validated as AWS validates them before the key is looked up.
struct CreateGrantRequest<'a> {
    key_id: &'a str,
    grantee: String,
    operations: Vec<String>,
    retiring: Option<String>,
    name: Option<String>,
    constraints: Option<GrantConstraints>,
}

impl<'a> CreateGrantRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        let key_id = input.str_req("KeyId")?;
        let grantee = input.str_req("GranteePrincipal")?.to_string();
        let operations = input
            .str_list_opt("Operations")?
            .ok_or_else(|| ApiError::missing("operations"))?;
        let retiring = input.str_opt("RetiringPrincipal")?.map(String::from);
        let name = input.str_opt("Name")?.map(String::from);
        let constraints = parse_constraints(input)?;
        if operations.is_empty() {
            return Err(ApiError::validation(
                "Operations must contain at least one grant operation",
            ));
        }
        for op in &operations {
            if !GRANT_OPERATIONS.contains(&op.as_str()) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '[{op}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    GRANT_OPERATIONS.join(", ")
                )));
            }
        }
        for p in std::iter::once(&grantee).chain(retiring.iter()) {
            if !valid_principal(p) {
                return Err(ApiError::validation(format!("Invalid principal: {p}")));
            }
        }
        if let Some(n) = &name
            && (n.is_empty()
                || n.len() > 256
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b)))
        {
            return Err(ApiError::validation(format!("Invalid grant name: {n}")));
        }
        Ok(CreateGrantRequest {
            key_id,
            grantee,
            operations,
            retiring,
            name,
            constraints,
        })
    }
}

fn grant_json(k: &Key, g: &GrantRecord) -> Value {
    let mut v = json!({
        "KeyId": k.rec.arn,
        "GrantId": g.grant_id,
        "CreationDate": ts(g.creation_date),
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": format!("arn:aws:iam::{}:root", g.issuing_account),
        "Operations": g.operations,
    });
    if let Some(n) = &g.name {
        v["Name"] = json!(n);
    }
    if let Some(r) = &g.retiring_principal {
        v["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = &g.constraints {
        let mut cj = Map::new();
        if let Some(e) = &c.encryption_context_equals {
            cj.insert("EncryptionContextEquals".into(), json!(e));
        }
        if let Some(s) = &c.encryption_context_subset {
            cj.insert("EncryptionContextSubset".into(), json!(s));
        }
        v["Constraints"] = Value::Object(cj);
    }
    v
}

pub(super) fn create_grant(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let req = CreateGrantRequest::parse(input)?;
    let condition_keys = create_grant_condition_keys(&req);
    let condition_keys: Vec<(&str, Vec<String>)> = condition_keys
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let CreateGrantRequest {
        key_id: key_ref,
        grantee,
        operations,
        retiring,
        name,
        constraints,
    } = req;
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, Scope::CrossAccount)?;
    {
        let k = stored(&st, &id)?;
        // No encryption context: CreateGrant is not a cryptographic operation, so a parent
        // grant's constraints do not decide whether it applies; they bound the child below.
        if let Some(parent) = ctx.authorize(k, "kms:CreateGrant", None, &condition_keys)? {
            // A grant can only hand on what it has, under at least its own constraints.
            if !operations.iter().all(|o| parent.operations.contains(o))
                || !at_least_as_strict(constraints.as_ref(), parent.constraints.as_ref())
            {
                return Err(ApiError::access_denied(
                    &ctx.caller.arn,
                    "kms:CreateGrant",
                    &k.rec.arn,
                    false,
                ));
            }
        }
        require_not_pending(k)?;
        if let Some(n) = &name
            && let Some(g) = k.rec.grants.iter().find(|g| {
                g.name.as_deref() == Some(n.as_str())
                    && g.grantee_principal == grantee
                    && g.operations == operations
                    && g.retiring_principal == retiring
                    && g.constraints == constraints
            })
        {
            return Ok(json!({ "GrantId": g.grant_id, "GrantToken": g.grant_token }));
        }
    }
    let grant_id = hex::encode(&*crypto::random_bytes(32));
    let grant_token = format!(
        "KPGT{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*crypto::random_bytes(48))
    );
    let g = GrantRecord {
        grant_id: grant_id.clone(),
        grant_token: grant_token.clone(),
        name,
        grantee_principal: grantee,
        retiring_principal: retiring,
        operations,
        constraints,
        issuing_account: ctx.account().to_string(),
        creation_date: ctx.now,
    };
    if let Some(k) = st.keys.get_mut(&id) {
        k.rec.grants.push(g);
    }
    ctx.inner.commit(st)?;
    Ok(json!({ "GrantId": grant_id, "GrantToken": grant_token }))
}

pub(super) fn list_grants(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let grant_id = input.str_opt("GrantId")?;
    let grantee = input.str_opt("GranteePrincipal")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::CrossAccount)?;
    ctx.authorize(k, "kms:ListGrants", None, &[])?;
    let items: Vec<(String, Value)> = k
        .rec
        .grants
        .iter()
        .filter(|g| grant_id.is_none_or(|id| g.grant_id == id))
        .filter(|g| grantee.is_none_or(|p| g.grantee_principal == p))
        .map(|g| (g.grant_id.clone(), grant_json(k, g)))
        .collect();
    let (grants, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Grants".into(), json!(grants));
    Ok(paged(body, next))
}

pub(super) fn list_retirable_grants(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let principal = input.str_req("RetiringPrincipal")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let items: Vec<(String, Value)> = st
        .keys
        .values()
        .filter(|k| k.rec.region == ctx.region && !k.is_deleted(ctx.now))
        .flat_map(|k| {
            k.rec
                .grants
                .iter()
                .filter(|g| g.retiring_principal.as_deref() == Some(principal))
                .map(move |g| (g.grant_id.clone(), grant_json(k, g)))
        })
        .collect();
    let (grants, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Grants".into(), json!(grants));
    Ok(paged(body, next))
}

fn remove_grant(k: &mut Key, grant_id: &str) -> Result<(), ApiError> {
    let before = k.rec.grants.len();
    k.rec.grants.retain(|g| g.grant_id != grant_id);
    if k.rec.grants.len() == before {
        return Err(ApiError::new(
            "InvalidGrantIdException",
            format!("Grant ID {grant_id} not found"),
        ));
    }
    Ok(())
}

pub(super) fn revoke_grant(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let grant_id = input.str_req("GrantId")?.to_string();
    mutate_key(
        ctx,
        key_ref,
        Scope::CrossAccount,
        "kms:RevokeGrant",
        |_, k| {
            remove_grant(k, &grant_id)?;
            Ok(Value::Null)
        },
    )
}

pub(super) fn retire_grant(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let token = input.str_opt("GrantToken")?;
    let key_ref = input.str_opt("KeyId")?;
    let grant_id = input.str_opt("GrantId")?;
    let mut st = ctx.inner.write();
    let (key_id, grant_id) = match (token, key_ref, grant_id) {
        (Some(t), _, _) => st
            .keys
            .values()
            .filter(|k| !k.is_deleted(ctx.now))
            .find_map(|k| {
                k.rec
                    .grants
                    .iter()
                    .find(|g| g.grant_token == t)
                    .map(|g| (k.rec.key_id.clone(), g.grant_id.clone()))
            })
            .ok_or_else(|| ApiError::new("InvalidGrantTokenException", "Invalid grant token"))?,
        (None, Some(kr), Some(gid)) => {
            (ctx.resolve(&st, kr, Scope::CrossAccount)?, gid.to_string())
        }
        _ => {
            return Err(ApiError::validation(
                "Either GrantToken or both KeyId and GrantId must be specified",
            ));
        }
    };
    let k = stored(&st, &key_id)?;
    let g = k
        .rec
        .grants
        .iter()
        .find(|g| g.grant_id == grant_id)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidGrantIdException",
                format!("Grant ID {grant_id} not found"),
            )
        })?;
    let may = g
        .retiring_principal
        .as_deref()
        .is_some_and(|p| principal_matches(p, &ctx.caller))
        || principal_matches(&g.grantee_principal, &ctx.caller)
        || ctx.caller.account == g.issuing_account
            && ctx.authorize(k, "kms:RetireGrant", None, &[]).is_ok();
    if !may {
        return Err(ApiError::access_denied(
            &ctx.caller.arn,
            "kms:RetireGrant",
            &k.rec.arn,
            false,
        ));
    }
    if let Some(k) = st.keys.get_mut(&key_id) {
        remove_grant(k, &grant_id)?;
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}
