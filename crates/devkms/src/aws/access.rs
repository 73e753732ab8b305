//! Finding the key a request names and deciding whether the caller may use it: key references
//! (id, ARN, alias), cross-account scope, key-policy and grant evaluation, and the key-state
//! checks every operation shares.

use std::collections::BTreeMap;

use keyplane_core::policy::{self, Caller, Decision};

use crate::error::ApiError;
use crate::state::{GrantConstraints, GrantRecord, Key, KeyState, State};

use super::Ctx;
use super::input::EncryptionContext;

pub(super) const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

fn valid_key_id(id: &str) -> bool {
    if let Some(hexpart) = id.strip_prefix("mrk-") {
        return hexpart.len() == 32 && hexpart.bytes().all(|b| b.is_ascii_hexdigit());
    }
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

/// Which account's key an ARN or name points at, before looking it up.
enum KeyRef {
    Key { account: String, id: String },
    Alias { account: String, name: String },
}

/// Whether the operation may name a key in another account (AWS's "Cross-account use").
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    CrossAccount,
    OwnAccount,
}

impl Ctx<'_> {
    pub(super) fn account(&self) -> &str {
        &self.caller.account
    }
    pub(super) fn key_arn(&self, account: &str, id: &str) -> String {
        format!("arn:aws:kms:{}:{account}:key/{id}", self.region)
    }
    pub(super) fn alias_arn(&self, account: &str, name: &str) -> String {
        format!("arn:aws:kms:{}:{account}:{name}", self.region)
    }
    fn alias_not_found(&self, account: &str, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "Alias {} is not found.",
            self.alias_arn(account, name)
        ))
    }

    /// Where the caller's own alias `name` in this region is kept in `State::aliases`.
    pub(super) fn own_alias_slot(&self, name: &str) -> (String, String, String) {
        (
            self.account().to_string(),
            self.region.clone(),
            name.to_string(),
        )
    }

    /// The caller's own alias `name` in this region: its slot and its target key's id.
    pub(super) fn own_alias(
        &self,
        st: &State,
        name: &str,
    ) -> Result<((String, String, String), String), ApiError> {
        let slot = self.own_alias_slot(name);
        let target = st
            .aliases
            .get(&slot)
            .map(|a| a.target_key_id.clone())
            .ok_or_else(|| self.alias_not_found(self.account(), name))?;
        Ok((slot, target))
    }

    fn parse_ref(&self, key_ref: &str, scope: Scope) -> Result<KeyRef, ApiError> {
        if key_ref.is_empty() || key_ref.len() > 2048 {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length between 1 and 2048",
            ));
        }
        if key_ref.starts_with("arn:") {
            let parts: Vec<&str> = key_ref.splitn(6, ':').collect();
            let invalid = || ApiError::not_found(format!("Invalid arn {key_ref}"));
            if parts.len() != 6 || parts[1] != "aws" || parts[2] != "kms" {
                return Err(invalid());
            }
            let (region, account, resource) = (parts[3], parts[4], parts[5]);
            if region != self.region {
                return Err(invalid());
            }
            let r = if let Some(id) = resource.strip_prefix("key/") {
                KeyRef::Key {
                    account: account.to_string(),
                    id: id.to_string(),
                }
            } else if resource.starts_with("alias/") {
                KeyRef::Alias {
                    account: account.to_string(),
                    name: resource.to_string(),
                }
            } else {
                return Err(invalid());
            };
            let other = match &r {
                KeyRef::Key { account, .. } | KeyRef::Alias { account, .. } => {
                    account != self.account()
                }
            };
            if other && scope == Scope::OwnAccount {
                return Err(match r {
                    KeyRef::Key { account, id } => {
                        ApiError::key_not_found(&self.key_arn(&account, &id))
                    }
                    KeyRef::Alias { account, name } => self.alias_not_found(&account, &name),
                });
            }
            return Ok(r);
        }
        if key_ref.starts_with("alias/") {
            return Ok(KeyRef::Alias {
                account: self.account().to_string(),
                name: key_ref.to_string(),
            });
        }
        if !valid_key_id(key_ref) {
            return Err(ApiError::not_found(format!("Invalid keyId '{key_ref}'")));
        }
        Ok(KeyRef::Key {
            account: self.account().to_string(),
            id: key_ref.to_string(),
        })
    }

    /// Finds the key a KeyId names (key id, key ARN, alias name or alias ARN) and returns its id.
    pub(super) fn resolve(
        &self,
        st: &State,
        key_ref: &str,
        scope: Scope,
    ) -> Result<String, ApiError> {
        let (account, id) = match self.parse_ref(key_ref, scope)? {
            KeyRef::Key { account, id } => (account, id),
            KeyRef::Alias { account, name } => {
                let slot = (account, self.region.clone(), name);
                let a = st
                    .aliases
                    .get(&slot)
                    .ok_or_else(|| self.alias_not_found(&slot.0, &slot.2))?;
                (slot.0, a.target_key_id.clone())
            }
        };
        match st.keys.get(&id) {
            Some(k)
                if k.rec.account == account
                    && k.rec.region == self.region
                    && !k.is_deleted(self.now) =>
            {
                Ok(id)
            }
            _ => Err(ApiError::key_not_found(&self.key_arn(&account, &id))),
        }
    }

    pub(super) fn key<'s>(
        &self,
        st: &'s State,
        key_ref: &str,
        scope: Scope,
    ) -> Result<&'s Key, ApiError> {
        stored(st, &self.resolve(st, key_ref, scope)?)
    }

    /// Evaluates the key policy (and, for grantable operations, the key's grants) for `action`.
    /// Returns the grant that allowed the call, if it was a grant.
    ///
    /// `enc_ctx` is the encryption context of a cryptographic operation: it becomes the
    /// `kms:EncryptionContext:<key>` and `kms:EncryptionContextKeys` condition keys, and a grant
    /// applies only if its constraints hold for it. Operations without one pass `None`, and
    /// grant constraints do not apply to them (AWS: "not applied to operations that do not
    /// support an encryption context"). `extra` adds condition keys: CreateGrant passes the
    /// context keys of the grant's own constraint there.
    pub(super) fn authorize<'k>(
        &self,
        key: &'k Key,
        action: &str,
        enc_ctx: Option<&EncryptionContext>,
        extra: &[(&str, Vec<String>)],
    ) -> Result<Option<&'k GrantRecord>, ApiError> {
        let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(ec) = enc_ctx {
            context.extend(context_condition_keys(ec.iter()));
        }
        context.insert("kms:KeySpec".into(), vec![key.rec.key_spec.clone()]);
        context.insert("kms:KeyUsage".into(), vec![key.rec.key_usage.clone()]);
        for (k, v) in extra {
            context
                .entry((*k).to_string())
                .or_default()
                .extend(v.iter().cloned());
        }
        let req = policy::Request {
            action,
            caller: &self.caller,
            key_arn: &key.rec.arn,
            key_account: &key.rec.account,
            context: &context,
        };
        match policy::evaluate(&key.policy, &req).decision {
            Decision::Allow => return Ok(None),
            Decision::ExplicitDeny => {
                return Err(ApiError::access_denied(
                    &self.caller.arn,
                    action,
                    &key.rec.arn,
                    true,
                ));
            }
            _ => {}
        }
        let op = action.strip_prefix("kms:").unwrap_or(action);
        if GRANT_OPERATIONS.contains(&op)
            && let Some(g) = key.rec.grants.iter().find(|g| {
                g.operations.iter().any(|o| o == op)
                    && principal_matches(&g.grantee_principal, &self.caller)
                    && constraints_hold(g.constraints.as_ref(), enc_ctx)
            })
        {
            return Ok(Some(g));
        }
        Err(ApiError::access_denied(
            &self.caller.arn,
            action,
            &key.rec.arn,
            false,
        ))
    }
}

/// The key with id `id`, which [`Ctx::resolve`] has just found under the same lock.
pub(super) fn stored<'s>(st: &'s State, id: &str) -> Result<&'s Key, ApiError> {
    st.keys
        .get(id)
        .ok_or_else(|| ApiError::internal("key vanished"))
}

fn stored_mut<'s>(st: &'s mut State, id: &str) -> Result<&'s mut Key, ApiError> {
    st.keys
        .get_mut(id)
        .ok_or_else(|| ApiError::internal("key vanished"))
}

/// Whether a principal named in a grant is the caller: its own ARN, its role (for an assumed
/// role session), or its account.
pub(super) fn principal_matches(p: &str, caller: &Caller) -> bool {
    if p == caller.arn
        || p == caller.account
        || p == format!("arn:aws:iam::{}:root", caller.account)
    {
        return true;
    }
    let prefix = format!("arn:aws:sts::{}:assumed-role/", caller.account);
    if let Some(rest) = caller.arn.strip_prefix(&prefix)
        && let Some((role, _session)) = rest.split_once('/')
    {
        return p == format!("arn:aws:iam::{}:role/{role}", caller.account);
    }
    false
}

/// The condition keys an encryption context (or a grant constraint's pairs) gives a request:
/// `kms:EncryptionContext:<key>` per pair and `kms:EncryptionContextKeys` listing the keys as
/// spelled (the evaluator compares the former's key case-insensitively, the latter exactly).
pub(super) fn context_condition_keys<'c>(
    pairs: impl Iterator<Item = (&'c String, &'c String)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        out.entry(format!("kms:EncryptionContext:{k}"))
            .or_default()
            .push(v.clone());
        let keys = out.entry("kms:EncryptionContextKeys".into()).or_default();
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    out
}

/// Whether `ctx` has the pair `(key, value)`. In a grant constraint AWS compares the key
/// case-insensitively and the value exactly.
fn has_pair(ctx: &EncryptionContext, key: &str, value: &str) -> bool {
    ctx.iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(key) && v == value)
}

/// Every pair of `small` is in `big` (keys compared as a grant constraint compares them).
fn includes(big: &EncryptionContext, small: &EncryptionContext) -> bool {
    small.iter().all(|(k, v)| has_pair(big, k, v))
}

/// Two contexts hold the same pairs (keys compared as a grant constraint compares them).
fn same_pairs(a: &EncryptionContext, b: &EncryptionContext) -> bool {
    includes(a, b) && includes(b, a)
}

/// Grant constraints only restrict operations that take an encryption context.
fn constraints_hold(c: Option<&GrantConstraints>, enc_ctx: Option<&EncryptionContext>) -> bool {
    let (Some(c), Some(ec)) = (c, enc_ctx) else {
        return true;
    };
    if let Some(eq) = &c.encryption_context_equals
        && !same_pairs(ec, eq)
    {
        return false;
    }
    if let Some(sub) = &c.encryption_context_subset
        && !includes(ec, sub)
    {
        return false;
    }
    true
}

/// Whether a grant created under the authority of `parent` (a grant allowing CreateGrant)
/// constrains at least as strictly: every context the child allows, the parent allows. AWS: a
/// child may add pairs to an EncryptionContextSubset or turn it into EncryptionContextEquals,
/// never the reverse, and may not drop a constraint.
pub(super) fn at_least_as_strict(
    child: Option<&GrantConstraints>,
    parent: Option<&GrantConstraints>,
) -> bool {
    let Some(parent) = parent else {
        return true;
    };
    let Some(child) = child else {
        return false;
    };
    if let Some(pe) = &parent.encryption_context_equals {
        return child
            .encryption_context_equals
            .as_ref()
            .is_some_and(|ce| same_pairs(ce, pe));
    }
    if let Some(ps) = &parent.encryption_context_subset {
        let covers = |c: &Option<EncryptionContext>| c.as_ref().is_some_and(|c| includes(c, ps));
        return covers(&child.encryption_context_equals)
            || covers(&child.encryption_context_subset);
    }
    true
}

pub(super) fn require_enabled(k: &Key) -> Result<(), ApiError> {
    match k.rec.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(ApiError::disabled(&k.rec.arn)),
        KeyState::PendingDeletion => Err(ApiError::pending_deletion(&k.rec.arn)),
    }
}

/// The checks every cryptographic use of a key makes, in AWS's order: the policy (or a grant)
/// allows `action` under `enc_ctx`, the key is enabled, and it is a symmetric encryption key.
/// `op` names the operation in the key-usage error; `algorithm` is the request's encryption
/// algorithm, which KMS reports as `kms:EncryptionAlgorithm` (SYMMETRIC_DEFAULT when the
/// request names none); `extra` adds operation-specific condition keys.
pub(super) fn authorize_crypto(
    ctx: &Ctx<'_>,
    k: &Key,
    action: &str,
    op: &str,
    enc_ctx: &EncryptionContext,
    algorithm: Option<&str>,
    extra: &[(&str, Vec<String>)],
) -> Result<(), ApiError> {
    let mut keys = vec![(
        "kms:EncryptionAlgorithm",
        vec![algorithm.unwrap_or("SYMMETRIC_DEFAULT").to_string()],
    )];
    keys.extend(extra.iter().cloned());
    ctx.authorize(k, action, Some(enc_ctx), &keys)?;
    require_enabled(k)?;
    require_symmetric_crypto(k, op)
}

pub(super) fn require_not_pending(k: &Key) -> Result<(), ApiError> {
    if k.rec.state == KeyState::PendingDeletion {
        return Err(ApiError::pending_deletion(&k.rec.arn));
    }
    Ok(())
}

fn require_symmetric_crypto(k: &Key, op: &str) -> Result<(), ApiError> {
    if k.rec.key_usage != "ENCRYPT_DECRYPT" || !k.is_symmetric() {
        return Err(ApiError::new(
            "InvalidKeyUsageException",
            format!(
                "{} key usage is {} which is not valid for {op}.",
                k.rec.arn, k.rec.key_usage
            ),
        ));
    }
    Ok(())
}

/// Runs a mutation on one key (resolved in `scope`, authorized for `action`) and persists it.
pub(super) fn mutate_key<T>(
    ctx: &Ctx<'_>,
    key_ref: &str,
    scope: Scope,
    action: &str,
    f: impl FnOnce(&Ctx<'_>, &mut Key) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut st = ctx.inner.write();
    let id = ctx.resolve(&st, key_ref, scope)?;
    ctx.authorize(stored(&st, &id)?, action, None, &[])?;
    let k = stored_mut(&mut st, &id)?;
    let out = f(ctx, k)?;
    ctx.inner.commit(st)?;
    Ok(out)
}
