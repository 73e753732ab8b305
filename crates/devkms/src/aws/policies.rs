//! GetKeyPolicy, PutKeyPolicy and ListKeyPolicies, with AWS's lockout safety check.

use std::sync::Arc;

use keyplane_core::policy::{self, KeyPolicy};
use serde_json::{Value, json};

use crate::error::ApiError;

use super::Ctx;
use super::access::{Scope, stored};
use super::input::Input;

pub(super) fn parse_policy(json: &str) -> Result<KeyPolicy, ApiError> {
    KeyPolicy::parse(json)
        .map_err(|e| ApiError::new("MalformedPolicyDocumentException", e.to_string()))
}

pub(super) fn lockout(
    ctx: &Ctx<'_>,
    policy: &KeyPolicy,
    arn: &str,
    account: &str,
) -> Result<(), ApiError> {
    policy::lockout_check(policy, &ctx.caller, arn, account).map_err(|_| {
        ApiError::new(
            "MalformedPolicyDocumentException",
            "The new key policy will not allow you to update the key policy in the future.",
        )
    })
}

fn check_policy_name(input: Input<'_>, required: bool) -> Result<(), ApiError> {
    let name = input.str_opt("PolicyName")?;
    match name {
        None if required => Err(ApiError::missing("policyName")),
        None | Some("default") => Ok(()),
        Some(other) => Err(ApiError::not_found(format!(
            "No such policy exists: {other}"
        ))),
    }
}

pub(super) fn get_key_policy(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    check_policy_name(input, false)?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:GetKeyPolicy", None, &[])?;
    Ok(json!({ "Policy": k.rec.policy, "PolicyName": "default" }))
}

pub(super) fn put_key_policy(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let policy_json = input.str_req("Policy")?.to_string();
    check_policy_name(input, false)?;
    let bypass = input
        .bool_opt("BypassPolicyLockoutSafetyCheck")?
        .unwrap_or(false);
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, Scope::OwnAccount)?;
    let k = stored(&st, &id)?;
    ctx.authorize(k, "kms:PutKeyPolicy", None, &[])?;
    let parsed = parse_policy(&policy_json)?;
    if !bypass {
        lockout(ctx, &parsed, &k.rec.arn, &k.rec.account)?;
    }
    if let Some(k) = st.keys.get_mut(&id) {
        k.rec.policy = policy_json;
        k.policy = Arc::new(parsed);
    }
    ctx.inner.commit(st)?;
    Ok(Value::Null)
}

pub(super) fn list_key_policies(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    input.limit()?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListKeyPolicies", None, &[])?;
    Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
}
