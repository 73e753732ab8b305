//! `insertOne` and `insertMany`. A document without an `_id` gets one chosen here, once, of
//! the collection's `defaultId` type, so every region stores the same id.
use axum::response::Response;
use keyplane_docstore::{DefaultIdType, DocStoreCode, MAX_INSERT_MANY};
use serde_json::{Map, Value, json};

use super::command::{Command, command_error, field_error};
use super::errors::{DataApiErrorCode, document_error_item, error_item};
use super::{Ctx, DataResult, ok};

/// A document with an `_id`: the one it has, or a new one of the collection's type.
pub(super) fn with_id(doc: Value, id_type: DefaultIdType) -> Value {
    match doc {
        Value::Object(m) if !m.contains_key("_id") => {
            let mut out = Map::with_capacity(m.len() + 1);
            out.insert("_id".into(), id_type.generate());
            out.extend(m);
            Value::Object(out)
        }
        other => other,
    }
}

/// The `defaultId` type of the collection, read (from the endpoint's own region: every
/// region has the same collections) only when some document needs an id.
pub(super) async fn id_type(
    ctx: &Ctx,
    ks: &str,
    coll: &str,
    needed: bool,
) -> DataResult<DefaultIdType> {
    if !needed {
        return Ok(DefaultIdType::Legacy);
    }
    let (ks, coll) = (ks.to_owned(), coll.to_owned());
    Ok(ctx
        .endpoint
        .read(move |s| s.collection_rules(&ks, &coll))
        .await?
        .default_id)
}

fn lacks_id(doc: &Value) -> bool {
    doc.as_object().is_some_and(|m| !m.contains_key("_id"))
}

pub(super) async fn insert_one(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["document", "options"])?;
    cmd.no_options()?;
    let doc = f.required_object("document")?;
    let run = async {
        let t = id_type(ctx, &ks, &coll, lacks_id(&doc)).await?;
        let doc = with_id(doc, t);
        ctx.endpoint
            .write(move |s| s.insert_one(&ks, &coll, doc))
            .await
            .map_err(super::DataApiError::from)
    };
    // As the original: a refused insert still says what it inserted (nothing).
    let id = run
        .await
        .map_err(|e| e.with_status(json!({"insertedIds": []})))?;
    Ok(ok(json!({"status": {"insertedIds": [id]}})))
}

pub(super) async fn insert_many(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let name = cmd.name.as_str();
    let f = cmd.fields(&["documents", "options"])?;
    let opts = cmd.options(&["ordered", "returnDocumentResponses"])?;
    let docs = match f.get("documents") {
        Some(Value::Array(a)) => a.clone(),
        Some(v) => return Err(field_error(name, "documents", "an array of documents", v)),
        None => {
            return Err(command_error(
                DocStoreCode::CommandFieldValueInvalid,
                "insertMany: 'documents' is required",
            ));
        }
    };
    if docs.is_empty() {
        return Err(command_error(
            DocStoreCode::CommandFieldValueInvalid,
            "insertMany: 'documents' is empty",
        ));
    }
    if docs.len() > MAX_INSERT_MANY {
        return Err(command_error(
            DocStoreCode::CommandFieldValueInvalid,
            format!(
                "insertMany takes at most {MAX_INSERT_MANY} documents per command, got {}; send them in \
                 several commands (clients such as astrapy do)",
                docs.len()
            ),
        ));
    }
    // The Data API's default: unordered.
    let ordered = opts.bool("ordered")?.unwrap_or(false);
    let responses = opts.bool("returnDocumentResponses")?.unwrap_or(false);
    let t = id_type(ctx, &ks, &coll, docs.iter().any(lacks_id)).await?;
    let docs: Vec<Value> = docs.into_iter().map(|d| with_id(d, t)).collect();
    let ids: Vec<Value> = docs
        .iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Value::Null))
        .collect();
    let results = ctx
        .endpoint
        .write(move |s| s.insert_many(&ks, &coll, docs, ordered))
        .await?;
    let mut inserted = vec![];
    let mut per_doc = vec![];
    let mut errors = vec![];
    for (i, id) in ids.into_iter().enumerate() {
        match results.get(i) {
            Some(Ok(stored)) => {
                inserted.push(stored.clone());
                per_doc.push(json!({"_id": stored, "status": "OK"}));
            }
            Some(Err(e)) => {
                let mut item = document_error_item(e).unwrap_or_else(|| {
                    tracing::error!(error = %e, "insertMany: a document failed");
                    error_item(
                        DataApiErrorCode::ServerInternalError,
                        super::errors::INTERNAL_MESSAGE,
                    )
                });
                item["message"] = json!(format!(
                    "document {i} (_id {id}): {}",
                    item["message"].as_str().unwrap_or_default()
                ));
                if item.get("documentIds").is_none() && !id.is_null() {
                    item["documentIds"] = json!([id]);
                }
                per_doc.push(json!({"_id": id, "status": "ERROR", "errorsIdx": errors.len()}));
                errors.push(item);
            }
            // Ordered inserts stop at the first failure; the rest were not attempted.
            None => per_doc.push(json!({"_id": id, "status": "SKIPPED"})),
        }
    }
    let mut out = if responses {
        json!({"status": {"documentResponses": per_doc}})
    } else {
        json!({"status": {"insertedIds": inserted}})
    };
    if !errors.is_empty() {
        out["errors"] = json!(errors);
    }
    Ok(ok(out))
}
