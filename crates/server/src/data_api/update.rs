//! Updates and replacements: `updateOne` (a sort picks the document), `updateMany`,
//! `findOneAndUpdate` and `findOneAndReplace`. An upsert inserts an `_id` chosen here once
//! (from the filter, the update's `$setOnInsert`, or a new one of the collection's
//! `defaultId` type), and `$currentDate` writes the request's time, so every region inserts
//! and writes the same. `updateMany` works in pages as the original's: each command updates
//! one page of matches in `_id` order and answers `moreData` and a `nextPageState` that the
//! client sends back to continue; a page is the same documents in every region.
use axum::response::Response;
use keyplane_docstore::{
    DefaultIdType, DocStoreCode, FindOneAndOptions, ReturnDocument, UpdateManyOptions,
    UpdateOptions,
};
use serde_json::{Value, json};

use super::command::{Command, Fields, command_error};
use super::insert::id_type;
use super::{Ctx, DataResult, ok};

/// The `_id` an upsert would take from the filter (equality on `_id`, also inside `$and`),
/// mirroring how the store seeds an upserted document.
fn filter_id(filter: &Value) -> Option<Value> {
    let m = filter.as_object()?;
    for (k, v) in m {
        if k == "$and" {
            if let Some(found) = v.as_array().and_then(|a| a.iter().find_map(filter_id)) {
                return Some(found);
            }
        } else if k == "_id" {
            match v {
                Value::Object(ops) if ops.keys().any(|o| o.starts_with('$')) => {
                    let literal = ops.len() == 1
                        && ops
                            .keys()
                            .any(|o| matches!(o.as_str(), "$date" | "$uuid" | "$objectId"));
                    if literal {
                        return Some(v.clone());
                    }
                    if let Some(e) = ops.get("$eq") {
                        return Some(e.clone());
                    }
                }
                other => return Some(other.clone()),
            }
        }
    }
    None
}

/// For an upserting update whose filter names no `_id`: adds `$setOnInsert: {_id: <uuid>}`
/// (unless the caller set one), so every region inserts the same id. Returns the update and
/// the id an insert would get.
fn upsert_update(update: Value, filter: &Value, t: DefaultIdType) -> (Value, Option<Value>) {
    let from_filter = filter_id(filter);
    let Value::Object(mut m) = update else {
        return (update, from_filter);
    };
    if m.is_empty() {
        return (Value::Object(m), from_filter);
    }
    let user_id = m.get("$setOnInsert").and_then(|s| s.get("_id")).cloned();
    if let Some(id) = user_id {
        return (Value::Object(m), Some(id));
    }
    if from_filter.is_some() {
        return (Value::Object(m), from_filter);
    }
    let id = t.generate();
    match m.get_mut("$setOnInsert") {
        Some(Value::Object(s)) => {
            s.insert("_id".into(), id.clone());
        }
        // A non-object $setOnInsert: the store names the mistake.
        Some(_) => return (Value::Object(m), None),
        None => {
            m.insert("$setOnInsert".into(), json!({"_id": id.clone()}));
        }
    }
    (Value::Object(m), Some(id))
}

fn return_document(opts: &Fields<'_>) -> DataResult<ReturnDocument> {
    match opts.get("returnDocument") {
        None => Ok(ReturnDocument::Before),
        Some(Value::String(s)) if s == "before" => Ok(ReturnDocument::Before),
        Some(Value::String(s)) if s == "after" => Ok(ReturnDocument::After),
        Some(v) => Err(command_error(
            DocStoreCode::CommandFieldValueInvalid,
            format!(
                "{}: 'returnDocument' must be \"before\" or \"after\", not {v}",
                opts.at
            ),
        )),
    }
}

pub(super) async fn update(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
    many: bool,
) -> DataResult<Response> {
    let f = if many {
        cmd.fields(&["filter", "update", "options"])?
    } else {
        cmd.fields(&["filter", "update", "sort", "options"])?
    };
    let opts = if many {
        cmd.options(&["upsert", "pageState"])?
    } else {
        cmd.options(&["upsert"])?
    };
    let page_state = if many {
        opts.string("pageState")?.filter(|s| !s.is_empty())
    } else {
        None
    };
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let update = f.required_object("update")?;
    let sort = f.clause("sort");
    let upsert = opts.bool("upsert")?.unwrap_or(false);
    let update = if upsert {
        let t = id_type(ctx, &ks, &coll, true).await?;
        upsert_update(update, &filter, t).0
    } else {
        update
    };
    let now_ms = ctx.now_ms;
    if many {
        let o = UpdateManyOptions {
            upsert,
            page_state,
            now_ms: Some(now_ms),
            page_size: None,
        };
        let r = ctx
            .endpoint
            .write(move |s| s.update_many_page(&ks, &coll, &filter, &update, &o))
            .await?;
        let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
        if let Some(id) = r.upserted_id {
            status["upsertedId"] = id;
        }
        if r.more_data {
            status["moreData"] = json!(true);
            status["nextPageState"] = json!(r.next_page_state);
        }
        return Ok(ok(json!({"status": status})));
    }
    let r = ctx
        .endpoint
        .write(move |s| {
            let opts = UpdateOptions {
                upsert,
                sort: sort.clone(),
                now_ms: Some(now_ms),
            };
            s.update_one(&ks, &coll, &filter, &update, &opts)
        })
        .await?;
    let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
    if let Some(id) = r.upserted_id {
        status["upsertedId"] = id;
    }
    Ok(ok(json!({"status": status})))
}

pub(super) async fn find_one_and(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
    replace: bool,
) -> DataResult<Response> {
    let body_field = if replace { "replacement" } else { "update" };
    let f = cmd.fields(&["filter", body_field, "sort", "projection", "options"])?;
    let opts = cmd.options(&["upsert", "returnDocument"])?;
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let change = f.required_object(body_field)?;
    let upsert = opts.bool("upsert")?.unwrap_or(false);
    let t = id_type(ctx, &ks, &coll, upsert).await?;
    let fo = FindOneAndOptions {
        sort: f.clause("sort"),
        projection: f.clause("projection"),
        upsert,
        return_document: return_document(&opts)?,
        now_ms: Some(ctx.now_ms),
        // An upsert whose filter and document name no `_id` inserts one chosen here, so
        // every region inserts the same.
        upsert_id: upsert.then(|| t.generate()),
    };
    let (doc, r) = if replace {
        ctx.endpoint
            .write(move |s| s.find_one_and_replace_with_result(&ks, &coll, &filter, change, &fo))
            .await?
    } else {
        let update = if upsert {
            upsert_update(change, &filter, t).0
        } else {
            change
        };
        ctx.endpoint
            .write(move |s| s.find_one_and_update_with_result(&ks, &coll, &filter, &update, &fo))
            .await?
    };
    // modifiedCount counts a document the command actually changed, not one it matched.
    let mut status = json!({"matchedCount": r.matched, "modifiedCount": r.modified});
    if let Some(id) = r.upserted_id {
        status["upsertedId"] = id;
    }
    Ok(ok(json!({"data": {"document": doc}, "status": status})))
}
