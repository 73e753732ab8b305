//! `deleteOne` (with a sort, the document it picks), `deleteMany` (every match in one
//! transaction, so never "moreData") and `findOneAndDelete`.
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
    let f = cmd.fields(&["filter", "sort"])?;
    let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
    let sort = f.object("sort")?;
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
    let f = cmd.fields(&["filter"])?;
    let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
    let n = ctx
        .endpoint
        .write(move |s| s.delete_many(&ks, &coll, &filter))
        .await?;
    Ok(ok(json!({"status": {"deletedCount": n}})))
}

pub(super) async fn find_one_and_delete(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "sort", "projection"])?;
    let filter = f.object("filter")?.unwrap_or_else(|| json!({}));
    let (sort, projection) = (f.object("sort")?, f.object("projection")?);
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
