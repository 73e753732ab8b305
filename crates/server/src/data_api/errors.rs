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
use keyplane_docstore::DocStoreError;
use serde_json::{Value, json};
use uuid::Uuid;

/// Every code keyplane's Data API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataApiErrorCode {
    DocumentAlreadyExists,
    InvalidDocument,
    DocSizeLimitViolation,
    DocDepthLimitViolation,
    TooManyDocuments,
    UnsupportedFilterOperation,
    InvalidFilterExpression,
    InvalidSortClause,
    UnsupportedProjectionParam,
    UnsupportedUpdateOperation,
    KeyspaceDoesNotExist,
    CollectionNotExist,
    ExistingCollectionDifferentSettings,
    InvalidName,
    UnsupportedCollectionOption,
    KeyspaceCommandNotAllowed,
    InvalidPageState,
    CommandUnknown,
    CommandFieldInvalid,
    InvalidRequest,
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

impl DataApiErrorCode {
    /// Every code, for the table's tests.
    pub const ALL: [DataApiErrorCode; 28] = {
        use DataApiErrorCode::*;
        [
            DocumentAlreadyExists,
            InvalidDocument,
            DocSizeLimitViolation,
            DocDepthLimitViolation,
            TooManyDocuments,
            UnsupportedFilterOperation,
            InvalidFilterExpression,
            InvalidSortClause,
            UnsupportedProjectionParam,
            UnsupportedUpdateOperation,
            KeyspaceDoesNotExist,
            CollectionNotExist,
            ExistingCollectionDifferentSettings,
            InvalidName,
            UnsupportedCollectionOption,
            KeyspaceCommandNotAllowed,
            InvalidPageState,
            CommandUnknown,
            CommandFieldInvalid,
            InvalidRequest,
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

    /// THE table.
    pub const fn info(self) -> CodeInfo {
        use DataApiErrorCode::*;
        use StatusCode as S;
        match self {
            DocumentAlreadyExists => row(
                "DOCUMENT_ALREADY_EXISTS",
                COMMAND,
                "DOCUMENT",
                "Document already exists with the given _id",
            ),
            InvalidDocument => row(
                "INVALID_DOCUMENT",
                COMMAND,
                "DOCUMENT",
                "Document is not valid",
            ),
            DocSizeLimitViolation => row(
                "DOC_SIZE_LIMIT_VIOLATION",
                COMMAND,
                "DOCUMENT",
                "Document size limit exceeded",
            ),
            DocDepthLimitViolation => row(
                "DOC_DEPTH_LIMIT_VIOLATION",
                COMMAND,
                "DOCUMENT",
                "Document nesting limit exceeded",
            ),
            TooManyDocuments => row(
                "TOO_MANY_DOCUMENTS",
                COMMAND,
                "DOCUMENT",
                "Too many documents in one command",
            ),
            UnsupportedFilterOperation => row(
                "UNSUPPORTED_FILTER_OPERATION",
                COMMAND,
                "FILTER",
                "Unsupported filter operator",
            ),
            InvalidFilterExpression => row(
                "INVALID_FILTER_EXPRESSION",
                COMMAND,
                "FILTER",
                "Invalid filter expression",
            ),
            InvalidSortClause => row(
                "INVALID_SORT_CLAUSE",
                COMMAND,
                "SORT",
                "Invalid sort clause",
            ),
            UnsupportedProjectionParam => row(
                "UNSUPPORTED_PROJECTION_PARAM",
                COMMAND,
                "PROJECTION",
                "Unsupported projection",
            ),
            UnsupportedUpdateOperation => row(
                "UNSUPPORTED_UPDATE_OPERATION",
                COMMAND,
                "UPDATE",
                "Unsupported update",
            ),
            KeyspaceDoesNotExist => row(
                "KEYSPACE_DOES_NOT_EXIST",
                COMMAND,
                "SCHEMA",
                "Keyspace does not exist",
            ),
            CollectionNotExist => row(
                "COLLECTION_NOT_EXIST",
                COMMAND,
                "SCHEMA",
                "Collection does not exist",
            ),
            ExistingCollectionDifferentSettings => row(
                "EXISTING_COLLECTION_DIFFERENT_SETTINGS",
                COMMAND,
                "SCHEMA",
                "Collection exists with different settings",
            ),
            InvalidName => row("INVALID_NAME", COMMAND, "SCHEMA", "Invalid name"),
            UnsupportedCollectionOption => row(
                "UNSUPPORTED_COLLECTION_OPTION",
                COMMAND,
                "SCHEMA",
                "Unsupported collection option",
            ),
            KeyspaceCommandNotAllowed => row(
                "KEYSPACE_COMMAND_NOT_ALLOWED",
                COMMAND,
                "SCHEMA",
                "Keyspace command not allowed",
            ),
            InvalidPageState => row("INVALID_PAGE_STATE", COMMAND, "", "Invalid page state"),
            CommandUnknown => row("COMMAND_UNKNOWN", COMMAND, "", "Unknown command"),
            CommandFieldInvalid => row(
                "COMMAND_FIELD_INVALID",
                COMMAND,
                "",
                "Invalid command field",
            ),
            InvalidRequest => row("INVALID_REQUEST", S::BAD_REQUEST, "", "Invalid request"),
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
        use DataApiErrorCode::*;
        Some(match e {
            DocStoreError::InvalidName(_) => InvalidName,
            DocStoreError::KeyspaceNotFound(_) => KeyspaceDoesNotExist,
            DocStoreError::CollectionExists(_) => ExistingCollectionDifferentSettings,
            DocStoreError::CollectionNotFound(_) => CollectionNotExist,
            DocStoreError::DuplicateId(_) => DocumentAlreadyExists,
            // An unknown update operator is reported by the store as an unknown operator
            // too; the message names it either way.
            DocStoreError::UnknownOperator(_) => UnsupportedFilterOperation,
            DocStoreError::InvalidFilter(_) => InvalidFilterExpression,
            DocStoreError::InvalidSort(_) => InvalidSortClause,
            DocStoreError::InvalidProjection(_) => UnsupportedProjectionParam,
            DocStoreError::InvalidUpdate(_) => UnsupportedUpdateOperation,
            DocStoreError::InvalidDocument(_) => InvalidDocument,
            DocStoreError::InvalidPageState => InvalidPageState,
            DocStoreError::DocumentTooLarge { .. } => DocSizeLimitViolation,
            DocStoreError::TooDeep { .. } => DocDepthLimitViolation,
            DocStoreError::TooManyDocuments { .. } => TooManyDocuments,
            _ => return None,
        })
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

/// A Data API error answer.
#[derive(Debug)]
pub struct DataApiError {
    pub code: DataApiErrorCode,
    pub message: String,
}

impl DataApiError {
    pub fn new(code: DataApiErrorCode, message: impl Into<String>) -> DataApiError {
        DataApiError {
            code,
            message: message.into(),
        }
    }

    fn internal(detail: &dyn std::fmt::Display) -> DataApiError {
        tracing::error!(error = %detail, "data API request failed");
        DataApiError::new(DataApiErrorCode::ServerInternalError, INTERNAL_MESSAGE)
    }
}

impl IntoResponse for DataApiError {
    fn into_response(self) -> Response {
        let item = error_item(self.code, &self.message);
        (self.code.info().status, Json(json!({ "errors": [item] }))).into_response()
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
                Some(code) => DataApiError::new(code, d.to_string()),
                None => DataApiError::internal(&d),
            },
            AppError::Invalid { .. } | AppError::InvalidParameter { .. } => {
                DataApiError::new(C::InvalidRequest, e.to_string())
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
        let mut names: Vec<&str> = DataApiErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DataApiErrorCode::ALL.len());
        for c in DataApiErrorCode::ALL {
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
        let item = error_item(DataApiErrorCode::InvalidSortClause, "bad");
        assert_eq!(item["family"], "REQUEST");
        assert_eq!(item["scope"], "SORT");
        assert_eq!(item["title"], "Invalid sort clause");
        assert_eq!(
            DataApiErrorCode::CommandFieldInvalid.info().status,
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
        assert_eq!(e.code, DataApiErrorCode::InvalidPageState);
    }
}
