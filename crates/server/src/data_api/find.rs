//! Reads: `findOne`, `find` (paged), `countDocuments` (bounded) and
//! `estimatedDocumentCount`, all served by the endpoint's own region.
use axum::response::Response;
use keyplane_docstore::Query;
use serde_json::json;

use keyplane_docstore::DocStoreCode;

use super::command::{Command, command_error};
use super::{Ctx, DataResult, MAX_COUNT, ok};

pub(super) async fn find_one(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "sort", "projection", "options"])?;
    let opts = cmd.options(&["includeSimilarity", "includeSortVector"])?;
    opts.bool("includeSimilarity")?;
    let sort_vector = opts.bool("includeSortVector")?.unwrap_or(false);
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let (sort, projection) = (f.clause("sort"), f.clause("projection"));
    let doc = ctx
        .endpoint
        .read(move |s| s.find_one(&ks, &coll, &filter, sort.as_ref(), projection.as_ref()))
        .await?;
    let mut out = json!({"data": {"document": doc}});
    if sort_vector {
        out["status"] = json!({"sortVector": null});
    }
    Ok(ok(out))
}

pub(super) async fn find(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "sort", "projection", "options"])?;
    let opts = cmd.options(&[
        "limit",
        "skip",
        "pageState",
        "includeSimilarity",
        "includeSortVector",
    ])?;
    // No vector search here: includeSimilarity changes nothing, and includeSortVector is
    // answered as the original answers it for a sort without a vector, `sortVector: null`.
    opts.bool("includeSimilarity")?;
    let sort_vector = opts.bool("includeSortVector")?.unwrap_or(false);
    let q = Query {
        filter: f.clause("filter").unwrap_or_else(|| json!({})),
        sort: f.clause("sort"),
        projection: f.clause("projection"),
        skip: opts.count("skip")?.unwrap_or(0),
        limit: opts.count("limit")?,
        page_state: opts.string("pageState")?.filter(|s| !s.is_empty()),
        page_size: None,
    };
    let page = ctx.endpoint.read(move |s| s.find(&ks, &coll, &q)).await?;
    // nextPageState is always present (null on the last page): astrapy reads it unconditionally.
    let mut out = json!({"data": {"documents": page.docs, "nextPageState": page.next_page_state}});
    if sort_vector {
        out["status"] = json!({"sortVector": null});
    }
    Ok(ok(out))
}

pub(super) async fn count_documents(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["filter", "options"])?;
    let opts = cmd.options(&["upperBound"])?;
    let filter = f.clause("filter").unwrap_or_else(|| json!({}));
    let bound = match opts.count("upperBound")? {
        None => MAX_COUNT,
        Some(0) => {
            return Err(command_error(
                DocStoreCode::CommandFieldValueInvalid,
                "countDocuments.options: 'upperBound' must be at least 1",
            ));
        }
        Some(b) => b.min(MAX_COUNT),
    };
    let (n, more) = ctx
        .endpoint
        .read(move |s| s.count(&ks, &coll, &filter, bound))
        .await?;
    let mut status = json!({"count": n});
    if more {
        status["moreData"] = json!(true);
    }
    Ok(ok(json!({"status": status})))
}

pub(super) async fn estimated_document_count(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    cmd.fields(&["options"])?;
    cmd.no_options()?;
    let n = ctx
        .endpoint
        .read(move |s| s.estimated_count(&ks, &coll))
        .await?;
    Ok(ok(json!({"status": {"count": n}})))
}
