//! Schema commands. Database level: `findKeyspaces` (every database), `createKeyspace` and
//! `dropKeyspace` (serverless (vector) databases only, as on Astra, where a classic
//! database's keyspaces are fixed by its deployment; the database's own keyspace cannot be
//! dropped, so its endpoint always has somewhere to point). Keyspace level:
//! `createCollection`, `findCollections`, `deleteCollection`.
use axum::response::Response;
use keyplane_core::DbType;
use keyplane_docstore::DocStoreCode;
use keyplane_store::Database;
use serde_json::{Value, json};

use super::command::{Command, CommandName, Level, command_error, unknown_command};
use super::errors::{DataApiError, DataApiErrorCode};
use super::{Ctx, DataResult, ok, status_ok};

/// `None` when the command is not a database command.
pub(super) async fn database_level(ctx: &Ctx, cmd: &Command) -> DataResult<Option<Response>> {
    let ep = &ctx.endpoint;
    match cmd.known {
        Some(CommandName::FindKeyspaces) => {
            cmd.fields(&["options"])?;
            cmd.no_options()?;
            let list = ep.read(|s| s.list_keyspaces()).await?;
            Ok(Some(ok(json!({"status": {"keyspaces": list}}))))
        }
        Some(CommandName::CreateKeyspace) => {
            let f = cmd.fields(&["name", "options"])?;
            // Replication is the platform's business here; accepted so clients need not special-case.
            cmd.options(&["replication"])?;
            let name = f.required_string("name")?;
            keyspaces_allowed(ep.database(), "createKeyspace")?;
            // The all-regions write that also records it for the DevOps API's listing.
            ep.create_keyspace(&name).await?;
            Ok(Some(status_ok()))
        }
        Some(CommandName::DropKeyspace) => {
            let f = cmd.fields(&["name", "options"])?;
            cmd.no_options()?;
            let name = f.required_string("name")?;
            keyspaces_allowed(ep.database(), "dropKeyspace")?;
            if name == ep.database().keyspace {
                return Err(DataApiError::new(
                    DataApiErrorCode::KeyspaceCommandNotAllowed,
                    format!("'{name}' is the database's default keyspace and cannot be dropped"),
                ));
            }
            ep.drop_keyspace(&name).await?;
            Ok(Some(status_ok()))
        }
        _ => Ok(None),
    }
}

fn keyspaces_allowed(db: &Database, what: &str) -> DataResult<()> {
    if db.db_type == DbType::Serverless {
        Ok(())
    } else {
        Err(DataApiError::new(
            DataApiErrorCode::KeyspaceCommandNotAllowed,
            format!(
                "{what} is available on serverless (vector) databases; the keyspaces of classic database '{}' \
                 are fixed at deployment",
                db.name
            ),
        ))
    }
}

/// Collection options keyplane's store honours: `indexing` and `defaultId` (`uuid`, `uuidv6`,
/// `uuidv7`, `objectId`), whose contents the store checks as the original does. Vector,
/// lexical and reranking collections need search machinery the encrypted store does not
/// have: refusing them is clearer than creating a collection whose searches would all fail.
fn check_collection_options(options: &Value) -> DataResult<()> {
    let Value::Object(m) = options else {
        return Ok(());
    };
    for (k, v) in m {
        match k.as_str() {
            "indexing" | "defaultId" => {}
            "vector" | "lexical" | "rerank" => {
                // Clients may send them explicitly disabled.
                if v.get("enabled") == Some(&Value::Bool(false)) {
                    continue;
                }
                return Err(command_error(
                    DocStoreCode::InvalidCreateCollectionOptions,
                    format!(
                        "collection option '{k}' is not supported on keyplane's encrypted store"
                    ),
                ));
            }
            other => {
                return Err(command_error(
                    DocStoreCode::InvalidCreateCollectionOptions,
                    format!(
                        "unknown collection option '{}'; known: indexing, defaultId",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) async fn keyspace_level(ctx: &Ctx, cmd: &Command, ks: String) -> DataResult<Response> {
    let ep = &ctx.endpoint;
    match cmd.known {
        Some(CommandName::CreateCollection) => {
            let f = cmd.fields(&["name", "options"])?;
            let name = f.required_string("name")?;
            let options = f.object("options")?;
            if let Some(o) = &options {
                check_collection_options(o)?;
            }
            ep.write(move |s| s.create_collection(&ks, &name, options.as_ref()))
                .await?;
            Ok(status_ok())
        }
        Some(CommandName::DeleteCollection) => {
            let f = cmd.fields(&["name", "options"])?;
            cmd.no_options()?;
            let name = f.required_string("name")?;
            ep.write(move |s| s.delete_collection(&ks, &name)).await?;
            Ok(status_ok())
        }
        Some(CommandName::FindCollections) => {
            cmd.fields(&["options"])?;
            let explain = cmd.options(&["explain"])?.bool("explain")?.unwrap_or(false);
            let colls = ep.read(move |s| s.list_collections(&ks)).await?;
            let list: Vec<Value> = if explain {
                colls
                    .into_iter()
                    .map(|(n, o)| json!({"name": n, "options": o}))
                    .collect()
            } else {
                colls.into_iter().map(|(n, _)| json!(n)).collect()
            };
            Ok(ok(json!({"status": {"collections": list}})))
        }
        _ => Err(unknown_command(cmd, Level::Keyspace)),
    }
}
