//! `insertOne` and `insertMany`. A document without an `_id` gets one chosen here, once, so
//! every region stores the same id.
use axum::response::Response;
use keyplane_docstore::MAX_INSERT_MANY;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::command::{Command, command_error, field_error};
use super::errors::{DataApiErrorCode, error_item};
use super::{Ctx, DataResult, ok};

/// A document with an `_id`: the one it has, or a new UUID (the Data API's default id type).
pub(super) fn with_id(doc: Value) -> Value {
    match doc {
        Value::Object(m) if !m.contains_key("_id") => {
            let mut out = Map::with_capacity(m.len() + 1);
            out.insert("_id".into(), Value::String(Uuid::new_v4().to_string()));
            out.extend(m);
            Value::Object(out)
        }
        other => other,
    }
}

pub(super) async fn insert_one(
    ctx: &Ctx,
    cmd: &Command,
    ks: String,
    coll: String,
) -> DataResult<Response> {
    let f = cmd.fields(&["document"])?;
    let doc = with_id(f.required_object("document")?);
    let id = ctx
        .endpoint
        .write(move |s| s.insert_one(&ks, &coll, doc.clone()))
        .await?;
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
                DataApiErrorCode::CommandFieldInvalid,
                "insertMany: 'documents' is required",
            ));
        }
    };
    if docs.is_empty() {
        return Err(command_error(
            DataApiErrorCode::CommandFieldInvalid,
            "insertMany: 'documents' is empty",
        ));
    }
    if docs.len() > MAX_INSERT_MANY {
        return Err(command_error(
            DataApiErrorCode::TooManyDocuments,
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
    let docs: Vec<Value> = docs.into_iter().map(with_id).collect();
    let ids: Vec<Value> = docs
        .iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Value::Null))
        .collect();
    let results = ctx
        .endpoint
        .write(move |s| s.insert_many(&ks, &coll, docs.clone(), ordered))
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
                let code = DataApiErrorCode::of_document_error(e)
                    .unwrap_or(DataApiErrorCode::ServerInternalError);
                let msg = format!("document {i} (_id {id}): {e}");
                per_doc.push(json!({"_id": id, "status": "ERROR", "errorsIdx": errors.len()}));
                errors.push(error_item(code, &msg));
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
