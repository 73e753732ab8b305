//! CreateAlias, UpdateAlias, DeleteAlias and ListAliases.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::{AliasRecord, State};

use super::access::{Scope, require_not_pending, stored};
use super::input::Input;
use super::{Ctx, page, paged, ts};

fn validate_alias_name(name: &str) -> Result<(), ApiError> {
    let rest = name.strip_prefix("alias/").unwrap_or("");
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(ApiError::new(
            "NotAuthorizedException",
            "Cannot create, update or delete an alias with the reserved prefix alias/aws/",
        ));
    }
    Ok(())
}

/// The target of CreateAlias/UpdateAlias must be a key (not an alias) in the caller's account.
fn alias_target(ctx: &Ctx<'_>, st: &State, target: &str) -> Result<String, ApiError> {
    if target.starts_with("alias/") || (target.starts_with("arn:") && target.contains(":alias/")) {
        return Err(ApiError::validation(
            "TargetKeyId must be a key ID or key ARN, not an alias",
        ));
    }
    ctx.resolve(st, target, Scope::OwnAccount)
}

pub(super) fn create_alias(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?.to_string();
    let target = input.str_req("TargetKeyId")?;
    validate_alias_name(&name)?;
    let mut st = ctx.inner.write();
    let id = alias_target(ctx, &st, target)?;
    let k = stored(&st, &id)?;
    ctx.authorize(k, "kms:CreateAlias", None, &[])?;
    require_not_pending(k)?;
    let slot = ctx.own_alias_slot(&name);
    if st.aliases.contains_key(&slot) {
        return Err(ApiError::new(
            "AlreadyExistsException",
            format!(
                "An alias with the name {} already exists",
                ctx.alias_arn(ctx.account(), &name)
            ),
        ));
    }
    st.aliases.insert(
        slot,
        AliasRecord {
            account: ctx.account().to_string(),
            region: ctx.region.clone(),
            name,
            target_key_id: id,
            creation_date: ctx.now,
            last_updated: ctx.now,
        },
    );
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

pub(super) fn update_alias(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?;
    let target = input.str_req("TargetKeyId")?;
    validate_alias_name(name)?;
    let mut st = ctx.inner.write();
    let (slot, old) = ctx.own_alias(&st, name)?;
    let id = alias_target(ctx, &st, target)?;
    for kid in [&old, &id] {
        if let Some(k) = st.keys.get(kid) {
            ctx.authorize(k, "kms:UpdateAlias", None, &[])?;
            require_not_pending(k)?;
        }
    }
    if let Some(a) = st.aliases.get_mut(&slot) {
        a.target_key_id = id;
        a.last_updated = ctx.now;
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

pub(super) fn delete_alias(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let name = input.str_req("AliasName")?;
    validate_alias_name(name)?;
    let mut st = ctx.inner.write();
    let (slot, target) = ctx.own_alias(&st, name)?;
    if let Some(k) = st.keys.get(&target) {
        ctx.authorize(k, "kms:DeleteAlias", None, &[])?;
    }
    st.aliases.remove(&slot);
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

pub(super) fn list_aliases(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let filter = match input.str_opt("KeyId")? {
        Some(k) => {
            if k.starts_with("alias/") || k.contains(":alias/") {
                return Err(ApiError::validation("KeyId must be a key ID or key ARN"));
            }
            Some(ctx.resolve(&st, k, Scope::OwnAccount)?)
        }
        None => None,
    };
    let items: Vec<(String, Value)> = st
        .aliases
        .values()
        .filter(|a| a.account == ctx.account() && a.region == ctx.region)
        .filter(|a| filter.as_ref().is_none_or(|f| &a.target_key_id == f))
        .filter(|a| {
            st.keys
                .get(&a.target_key_id)
                .is_some_and(|k| !k.is_deleted(ctx.now))
        })
        .map(|a| {
            (
                a.name.clone(),
                json!({
                    "AliasName": a.name,
                    "AliasArn": ctx.alias_arn(&a.account, &a.name),
                    "TargetKeyId": a.target_key_id,
                    "CreationDate": ts(a.creation_date),
                    "LastUpdatedDate": ts(a.last_updated),
                }),
            )
        })
        .collect();
    let (aliases, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Aliases".into(), json!(aliases));
    Ok(paged(body, next))
}
