//! TagResource, UntagResource and ListResourceTags, with AWS's tag rules.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::Tag;

use super::access::{Scope, mutate_key, require_not_pending};
use super::input::{Input, wrong_type};
use super::{Ctx, page, paged};

fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(ApiError::new(
                "TagException",
                format!("Tag key or value of '{}' has an invalid length", t.key),
            ));
        }
        if t.key.starts_with("aws:") {
            return Err(ApiError::new(
                "TagException",
                "Tags beginning with aws: are reserved",
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_tags(input: Input<'_>) -> Result<Vec<Tag>, ApiError> {
    let Some(v) = input.get("Tags") else {
        return Ok(vec![]);
    };
    let arr = v.as_array().ok_or_else(|| wrong_type("Tags", "a list"))?;
    let mut out = Vec::with_capacity(arr.len());
    for t in arr {
        let key = t
            .get("TagKey")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing("tagKey"))?;
        let value = t
            .get("TagValue")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing("tagValue"))?;
        out.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    validate_tags(&out)?;
    Ok(out)
}

pub(super) fn tag_resource(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    if input.get("Tags").is_none() {
        return Err(ApiError::missing("tags"));
    }
    let tags = parse_tags(input)?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:TagResource",
        |_, k| {
            require_not_pending(k)?;
            for t in tags {
                match k.rec.tags.iter_mut().find(|x| x.key == t.key) {
                    Some(existing) => existing.value = t.value,
                    None => k.rec.tags.push(t),
                }
            }
            if k.rec.tags.len() > 50 {
                return Err(ApiError::new(
                    "TagException",
                    "A KMS key can have at most 50 tags",
                ));
            }
            Ok(Value::Null)
        },
    )
}

pub(super) fn untag_resource(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let keys = input
        .str_list_opt("TagKeys")?
        .ok_or_else(|| ApiError::missing("tagKeys"))?;
    mutate_key(
        ctx,
        key_ref,
        Scope::OwnAccount,
        "kms:UntagResource",
        |_, k| {
            require_not_pending(k)?;
            k.rec.tags.retain(|t| !keys.contains(&t.key));
            Ok(Value::Null)
        },
    )
}

pub(super) fn list_resource_tags(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let key_ref = input.str_req("KeyId")?;
    let limit = input.limit()?;
    let marker = input.str_opt("Marker")?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, key_ref, Scope::OwnAccount)?;
    ctx.authorize(k, "kms:ListResourceTags", None, &[])?;
    let items: Vec<(String, Value)> = k
        .rec
        .tags
        .iter()
        .map(|t| {
            (
                t.key.clone(),
                json!({ "TagKey": t.key, "TagValue": t.value }),
            )
        })
        .collect();
    let (tags, next) = page(items, limit, marker);
    let mut body = Map::new();
    body.insert("Tags".into(), json!(tags));
    Ok(paged(body, next))
}
