//! The Data API's error model: one typed code per kind of refusal, and ONE table
//! ([`DataApiErrorCode::info`]) that gives each its wire name, HTTP status, scope and title.
//! Renaming a code to the original platform's spelling is a change to that table alone.
//!
//! An answer is `{"errors":[{"message","errorCode","family","scope","title","id"}]}`, the
//! fields astrapy's error descriptors read: `family` and `scope` are the Data API's grouping
//! (clients branch on them), `id` lets a customer quote one error in a support request.
//! Command errors answer 200, as the Data API does; only transport-level problems use other
//! statuses.
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplane_app::AppError;
use keyplane_docstore::{DocStoreCode, DocStoreError};
use serde_json::{Value, json};
use uuid::Uuid;

/// Every code keyplane's Data API answers with: the original Data API's codes (named by the
/// document store's [`DocStoreCode`], so a store refusal and a command-parsing refusal of the
/// same kind carry the same name), and keyplane's own for what the original has no name for
/// (its platform: tokens, suspended keys, unavailable regions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataApiErrorCode {
    /// A code the original defines; its wire name and scope are [`DocStoreCode`]'s.
    Original(DocStoreCode),
    KeyspaceCommandNotAllowed,
    RequestTooLarge,
    DatabaseSuspended,
    DatabaseUnavailable,
    DatabaseNotFound,
    KmsUnavailable,
    UnauthenticatedRequest,
    UnauthorizedRequest,
    ServerInternalError,
}

/// What the table says about a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The `errorCode` clients see.
    pub wire: &'static str,
    pub status: StatusCode,
    pub scope: &'static str,
    pub title: &'static str,
}

const fn row(
    wire: &'static str,
    status: StatusCode,
    scope: &'static str,
    title: &'static str,
) -> CodeInfo {
    CodeInfo {
        wire,
        status,
        scope,
        title,
    }
}

/// Command errors: the request was carried, the command refused.
const COMMAND: StatusCode = StatusCode::OK;

/// keyplane's own codes, for the table's tests.
const OWN: [DataApiErrorCode; 9] = {
    use DataApiErrorCode::*;
    [
        KeyspaceCommandNotAllowed,
        RequestTooLarge,
        DatabaseSuspended,
        DatabaseUnavailable,
        DatabaseNotFound,
        KmsUnavailable,
        UnauthenticatedRequest,
        UnauthorizedRequest,
        ServerInternalError,
    ]
};

impl DataApiErrorCode {
    /// Every code, the original's and keyplane's own, for the table's tests.
    pub fn all() -> Vec<DataApiErrorCode> {
        DocStoreCode::ALL
            .iter()
            .map(|c| DataApiErrorCode::Original(*c))
            .chain(OWN)
            .collect()
    }

    /// THE table.
    pub fn info(self) -> CodeInfo {
        use DataApiErrorCode::*;
        use StatusCode as S;
        match self {
            Original(c) => CodeInfo {
                wire: c.as_str(),
                // As the original: every one of its codes is a command error (200), a body
                // that is not JSON included.
                status: COMMAND,
                scope: c.scope().as_str(),
                title: original_title(c),
            },
            KeyspaceCommandNotAllowed => row(
                "KEYSPACE_COMMAND_NOT_ALLOWED",
                COMMAND,
                "SCHEMA",
                "Keyspace command not allowed",
            ),
            RequestTooLarge => row(
                "REQUEST_TOO_LARGE",
                S::PAYLOAD_TOO_LARGE,
                "",
                "Request too large",
            ),
            DatabaseSuspended => row(
                "DATABASE_SUSPENDED",
                S::SERVICE_UNAVAILABLE,
                "DATABASE",
                "Database suspended",
            ),
            DatabaseUnavailable => row(
                "DATABASE_UNAVAILABLE",
                S::SERVICE_UNAVAILABLE,
                "DATABASE",
                "Database unavailable",
            ),
            DatabaseNotFound => row(
                "DATABASE_NOT_FOUND",
                S::NOT_FOUND,
                "DATABASE",
                "Database not found",
            ),
            KmsUnavailable => row(
                "KMS_UNAVAILABLE",
                S::SERVICE_UNAVAILABLE,
                "DATABASE",
                "Key service unavailable",
            ),
            UnauthenticatedRequest => row(
                "UNAUTHENTICATED_REQUEST",
                S::UNAUTHORIZED,
                "AUTHENTICATION",
                "Unauthenticated request",
            ),
            UnauthorizedRequest => row(
                "UNAUTHORIZED_REQUEST",
                S::FORBIDDEN,
                "AUTHENTICATION",
                "Unauthorized request",
            ),
            ServerInternalError => row(
                "SERVER_INTERNAL_ERROR",
                S::INTERNAL_SERVER_ERROR,
                "",
                "Server error",
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.info().wire
    }

    /// The code of a store error; None for failures that are keyplane's, not the caller's.
    pub fn of_document_error(e: &DocStoreError) -> Option<DataApiErrorCode> {
        e.code().map(DataApiErrorCode::Original)
    }
}

/// A short heading per original code (clients show it above the message).
fn original_title(c: DocStoreCode) -> &'static str {
    use DocStoreCode::*;
    match c {
        CommandAcceptsNoOptions => "Command takes no options",
        CommandFieldUnknown => "Unknown command field",
        CommandFieldValueInvalid => "Invalid command field value",
        CommandUnknown => "Unknown command",
        RequestNotJson => "Request is not valid JSON",
        RequestStructureMismatch => "Request is not one command",
        DocumentAlreadyExists => "Document already exists with the given _id",
        DocumentReplaceDifferentDocid => "Replacement has a different _id",
        ShredBadDocidType => "Invalid _id type",
        ShredBadDocidValue => "Invalid _id value",
        ShredBadDocumentType => "Document is not an object",
        ShredBadEjsonValue => "Invalid typed value",
        ShredBadFieldName => "Invalid field name",
        ShredDocLimitViolation => "Document limit exceeded",
        FilterInvalidExpression => "Invalid filter expression",
        FilterUnsupportedOperator => "Unsupported filter operator",
        FilterUnsupportedDataType => "Unsupported filter data type",
        FilterFieldsLimitViolation => "Too many filter fields",
        SortClauseInvalid => "Invalid sort clause",
        SortClausePathInvalid => "Invalid sort path",
        SortClauseValueInvalid => "Invalid sort value",
        UnsupportedProjectionDefinition => "Unsupported projection",
        UnsupportedProjectionParam => "Unsupported projection parameter",
        UnsupportedUpdateDataType => "Unsupported update data type",
        UnsupportedUpdateOperation => "Unsupported update operator",
        UnsupportedUpdateOperationModifier => "Unsupported update modifier",
        UnsupportedUpdateOperationParam => "Invalid update parameter",
        UnsupportedUpdateOperationPath => "Invalid update path",
        UnsupportedUpdateOperationTarget => "Invalid update target",
        UnsupportedUpdateOperatorForDocId => "Update operator not allowed on _id",
        ExistingCollectionDifferentSettings => "Collection exists with different settings",
        InvalidCreateCollectionOptions => "Invalid collection options",
        LexicalNotEnabledForCollection => "Lexical search not enabled",
        UnknownCollectionOrTable => "Collection does not exist",
        UnknownKeyspace => "Keyspace does not exist",
        UnsupportedSchemaName => "Invalid name",
        VectorSearchNotSupported => "Vector search not supported",
    }
}

/// What a 5xx answer says: the detail is in the server log only.
pub const INTERNAL_MESSAGE: &str = "an internal error occurred; retry later";

/// What the Data API says when the KMS did not answer (the detail is logged).
pub const KMS_UNAVAILABLE_MESSAGE: &str = "the key service did not answer; retry shortly";

/// One error object of an answer.
pub fn error_item(code: DataApiErrorCode, message: &str) -> Value {
    let info = code.info();
    let family = if info.status.is_server_error() {
        "SERVER"
    } else {
        "REQUEST"
    };
    json!({"message": message, "errorCode": info.wire, "family": family, "scope": info.scope,
           "title": info.title, "id": Uuid::new_v4().to_string()})
}

/// The error object of a store refusal: its code, and `documentIds` naming the document it
/// concerns where the original names one. `None` for keyplane's own failures.
pub fn document_error_item(e: &DocStoreError) -> Option<Value> {
    let code = DataApiErrorCode::of_document_error(e)?;
    let mut item = error_item(code, &e.to_string());
    if let Some(id) = e.document_id() {
        item["documentIds"] = json!([id]);
    }
    Some(item)
}

/// A Data API error answer.
#[derive(Debug)]
pub struct DataApiError {
    pub code: DataApiErrorCode,
    pub message: String,
    /// `errors[].documentIds`: the documents a refusal concerns, where the original names them.
    pub document_ids: Vec<Value>,
    /// What `status` says beside the error (`insertOne`'s `insertedIds: []`); boxed, as it
    /// is rare and errors travel in every `Result`.
    pub status: Option<Box<Value>>,
}

impl DataApiError {
    pub fn new(code: DataApiErrorCode, message: impl Into<String>) -> DataApiError {
        DataApiError {
            code,
            message: message.into(),
            document_ids: Vec::new(),
            status: None,
        }
    }

    /// An error of one of the original's codes.
    pub fn original(code: DocStoreCode, message: impl Into<String>) -> DataApiError {
        DataApiError::new(DataApiErrorCode::Original(code), message)
    }

    /// The same error, answered with this `status` beside it.
    pub fn with_status(mut self, status: Value) -> DataApiError {
        self.status = Some(Box::new(status));
        self
    }

    fn internal(detail: &dyn std::fmt::Display) -> DataApiError {
        tracing::error!(error = %detail, "data API request failed");
        DataApiError::new(DataApiErrorCode::ServerInternalError, INTERNAL_MESSAGE)
    }
}

impl IntoResponse for DataApiError {
    fn into_response(self) -> Response {
        let mut item = error_item(self.code, &self.message);
        if !self.document_ids.is_empty() {
            item["documentIds"] = json!(self.document_ids);
        }
        let mut body = json!({ "errors": [item] });
        if let Some(status) = self.status {
            body["status"] = *status;
        }
        (self.code.info().status, Json(body)).into_response()
    }
}

impl From<AppError> for DataApiError {
    fn from(e: AppError) -> Self {
        use DataApiErrorCode as C;
        match e {
            AppError::MalformedToken(_) | AppError::InvalidToken => {
                DataApiError::new(C::UnauthenticatedRequest, e.to_string())
            }
            AppError::Forbidden(_) => DataApiError::new(C::UnauthorizedRequest, e.to_string()),
            AppError::NotFound(_) => DataApiError::new(C::DatabaseNotFound, e.to_string()),
            AppError::Suspended(m) => DataApiError::new(C::DatabaseSuspended, m),
            AppError::DatacenterUnavailable(m) => DataApiError::new(C::DatabaseUnavailable, m),
            AppError::KmsUnavailable(detail) => {
                tracing::warn!(error = %detail, "data API: the KMS did not answer");
                DataApiError::new(C::KmsUnavailable, KMS_UNAVAILABLE_MESSAGE)
            }
            AppError::Document(d) => match DataApiErrorCode::of_document_error(&d) {
                Some(code) => {
                    let mut out = DataApiError::new(code, d.to_string());
                    out.document_ids.extend(d.document_id().cloned());
                    out
                }
                None => DataApiError::internal(&d),
            },
            AppError::Invalid { .. } | AppError::InvalidParameter { .. } => {
                DataApiError::original(DocStoreCode::CommandFieldValueInvalid, e.to_string())
            }
            other => DataApiError::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_code_with_a_unique_name() {
        let all = DataApiErrorCode::all();
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for c in all {
            let i = c.info();
            assert!(
                i.wire
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch == '_')
            );
            assert!(!i.title.is_empty());
        }
    }

    #[test]
    fn items_carry_the_table_and_a_family_by_status() {
        let item = error_item(DataApiErrorCode::DatabaseSuspended, "the key is disabled");
        assert_eq!(item["errorCode"], "DATABASE_SUSPENDED");
        assert_eq!(item["family"], "SERVER");
        assert_eq!(item["scope"], "DATABASE");
        let item = error_item(
            DataApiErrorCode::Original(DocStoreCode::SortClauseInvalid),
            "bad",
        );
        assert_eq!(item["errorCode"], "SORT_CLAUSE_INVALID");
        assert_eq!(item["family"], "REQUEST");
        assert_eq!(item["scope"], "SORT");
        assert_eq!(item["title"], "Invalid sort clause");
        assert_eq!(
            DataApiErrorCode::Original(DocStoreCode::CommandFieldValueInvalid)
                .info()
                .status,
            StatusCode::OK
        );
        assert_eq!(
            DataApiErrorCode::Original(DocStoreCode::RequestNotJson)
                .info()
                .status,
            StatusCode::OK
        );
    }

    #[test]
    fn app_errors_map_to_codes_and_keep_5xx_generic() {
        let e = DataApiError::from(AppError::Suspended("the key k is disabled".into()));
        assert_eq!(
            (e.code, e.message.as_str()),
            (DataApiErrorCode::DatabaseSuspended, "the key k is disabled")
        );
        let e = DataApiError::from(AppError::bug("disk on fire"));
        assert_eq!(e.code, DataApiErrorCode::ServerInternalError);
        assert!(!e.message.contains("disk on fire"));
        let e = DataApiError::from(AppError::KmsUnavailable("timeout at 10.0.0.1".into()));
        assert_eq!(e.message, KMS_UNAVAILABLE_MESSAGE);
        let e = DataApiError::from(AppError::Document(DocStoreError::InvalidPageState));
        assert_eq!(
            e.code,
            DataApiErrorCode::Original(DocStoreCode::CommandFieldValueInvalid)
        );
    }

    /// Every store refusal has a code of the table (the two variants added with the
    /// original's semantics included), and keyplane's own failures are 5xx.
    #[test]
    fn store_refusals_map_through_their_typed_code() {
        use keyplane_docstore::Refusal;
        for (e, want) in [
            (
                DocStoreError::InvalidCollectionOptions(Refusal::new(
                    DocStoreCode::InvalidCreateCollectionOptions,
                    "bad indexing",
                )),
                "INVALID_CREATE_COLLECTION_OPTIONS",
            ),
            (
                DocStoreError::InvalidJson(Refusal::new(DocStoreCode::RequestNotJson, "dup")),
                "REQUEST_NOT_JSON",
            ),
            (
                DocStoreError::CollectionNotFound("c".into()),
                "UNKNOWN_COLLECTION_OR_TABLE",
            ),
        ] {
            let out = DataApiError::from(AppError::Document(e));
            assert_eq!(out.code.as_str(), want);
        }
        let e = DataApiError::from(AppError::Document(DocStoreError::Corrupt("x".into())));
        assert_eq!(e.code, DataApiErrorCode::ServerInternalError);
    }
}
