//! `deleteOne` (with a sort, the document it picks), `deleteMany` (as the original's: one
//! page of matches per command, `moreData` while more remain, and an empty filter empties the
//! collection at once, answered `deletedCount: -1`) and `findOneAndDelete`.
use axum::response::Response;
use serde_json::json;

use super::command::Command;
use super::{Ctx, DataResult, ok};

pub(super) async fn delete_one(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "sort", "options"])?;
    cmd.no_options()?;
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let sort = f.clause("sort");
    let n = ctx
        .endpoint
        .write(move |s| match &sort {
            // With a sort the document to delete is chosen by it.
            Some(sort) => Ok(u64::from(
                s.find_one_and_delete(&ks, &coll, &filter, Some(sort), None)?
                    .is_some(),
            )),
            None => s.delete_one(&ks, &coll, &filter),
        })
        .await?;
    Ok(ok(json!({"status": {"deletedCount": n}})))
}

pub(super) async fn delete_many(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "options"])?;
    cmd.no_options()?;
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    // Each region deletes the same page: the first matches in `_id` order.
    let page = ctx
        .endpoint
        .write(move |s| s.delete_many_page(&ks, &coll, &filter))
        .await?;
    let status = if page.all {
        json!({"deletedCount": -1})
    } else if page.more_data {
        json!({"deletedCount": page.deleted, "moreData": true})
    } else {
        json!({"deletedCount": page.deleted})
    };
    Ok(ok(json!({"status": status})))
}

pub(super) async fn find_one_and_delete(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "sort", "projection"])?;
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let (sort, projection) = (f.clause("sort"), f.clause("projection"));
    let doc = ctx
        .endpoint
        .write(move |s| {
            s.find_one_and_delete(&ks, &coll, &filter, sort.as_ref(), projection.as_ref())
        })
        .await?;
    let n = u64::from(doc.is_some());
    Ok(ok(
        json!({"data": {"document": doc}, "status": {"deletedCount": n}}),
    ))
}
