//! The original Data API's error codes for collections, as typed values: what a refusal of the
//! store is called on the wire. The server maps each to its answer with one table
//! ([`DocStoreCode::as_str`], [`DocStoreCode::scope`]); nothing matches on message text.

use std::fmt;

/// Which part of a request an error concerns, as the original groups its codes (`scope` in an
/// error object; empty for request-level errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeScope {
    /// The command itself (its fields, its JSON); the wire scope is empty.
    Request,
    Document,
    Filter,
    Sort,
    Projection,
    Update,
    Schema,
}

impl CodeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeScope::Request => "",
            CodeScope::Document => "DOCUMENT",
            CodeScope::Filter => "FILTER",
            CodeScope::Sort => "SORT",
            CodeScope::Projection => "PROJECTION",
            CodeScope::Update => "UPDATE",
            CodeScope::Schema => "SCHEMA",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $wire:literal, $scope:ident;)*) => {
        /// One error code of the original Data API. Every refusal of the store carries one
        /// (see [`crate::DocStoreError::code`]); the request-level codes are listed too so the
        /// server's own refusals (command parsing) use the same names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DocStoreCode {
            $($variant,)*
        }

        impl DocStoreCode {
            /// Every code, for tables that must cover them all.
            pub const ALL: &'static [DocStoreCode] = &[$(DocStoreCode::$variant,)*];

            /// The name on the wire (`errorCode`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DocStoreCode::$variant => $wire,)*
                }
            }

            pub fn scope(self) -> CodeScope {
                match self {
                    $(DocStoreCode::$variant => CodeScope::$scope,)*
                }
            }
        }
    };
}

codes! {
    // The command and its JSON.
    CommandAcceptsNoOptions => "COMMAND_ACCEPTS_NO_OPTIONS", Request;
    CommandFieldUnknown => "COMMAND_FIELD_UNKNOWN", Request;
    CommandFieldValueInvalid => "COMMAND_FIELD_VALUE_INVALID", Request;
    CommandUnknown => "COMMAND_UNKNOWN", Request;
    RequestNotJson => "REQUEST_NOT_JSON", Request;
    RequestStructureMismatch => "REQUEST_STRUCTURE_MISMATCH", Request;
    // Documents.
    DocumentAlreadyExists => "DOCUMENT_ALREADY_EXISTS", Document;
    DocumentReplaceDifferentDocid => "DOCUMENT_REPLACE_DIFFERENT_DOCID", Document;
    ShredBadDocidType => "SHRED_BAD_DOCID_TYPE", Document;
    ShredBadDocidValue => "SHRED_BAD_DOCID_VALUE", Document;
    ShredBadDocumentType => "SHRED_BAD_DOCUMENT_TYPE", Document;
    ShredBadEjsonValue => "SHRED_BAD_EJSON_VALUE", Document;
    ShredBadFieldName => "SHRED_BAD_FIELD_NAME", Document;
    ShredDocLimitViolation => "SHRED_DOC_LIMIT_VIOLATION", Document;
    // Filters.
    FilterInvalidExpression => "FILTER_INVALID_EXPRESSION", Filter;
    FilterUnsupportedOperator => "FILTER_UNSUPPORTED_OPERATOR", Filter;
    FilterUnsupportedDataType => "FILTER_UNSUPPORTED_DATA_TYPE", Filter;
    FilterFieldsLimitViolation => "FILTER_FIELDS_LIMIT_VIOLATION", Filter;
    // Sorts.
    SortClauseInvalid => "SORT_CLAUSE_INVALID", Sort;
    SortClausePathInvalid => "SORT_CLAUSE_PATH_INVALID", Sort;
    SortClauseValueInvalid => "SORT_CLAUSE_VALUE_INVALID", Sort;
    // Projections.
    UnsupportedProjectionDefinition => "UNSUPPORTED_PROJECTION_DEFINITION", Projection;
    UnsupportedProjectionParam => "UNSUPPORTED_PROJECTION_PARAM", Projection;
    // Updates.
    UnsupportedUpdateDataType => "UNSUPPORTED_UPDATE_DATA_TYPE", Update;
    UnsupportedUpdateOperation => "UNSUPPORTED_UPDATE_OPERATION", Update;
    UnsupportedUpdateOperationModifier => "UNSUPPORTED_UPDATE_OPERATION_MODIFIER", Update;
    UnsupportedUpdateOperationParam => "UNSUPPORTED_UPDATE_OPERATION_PARAM", Update;
    UnsupportedUpdateOperationPath => "UNSUPPORTED_UPDATE_OPERATION_PATH", Update;
    UnsupportedUpdateOperationTarget => "UNSUPPORTED_UPDATE_OPERATION_TARGET", Update;
    UnsupportedUpdateOperatorForDocId => "UNSUPPORTED_UPDATE_OPERATOR_FOR_DOC_ID", Update;
    // Keyspaces and collections.
    ExistingCollectionDifferentSettings => "EXISTING_COLLECTION_DIFFERENT_SETTINGS", Schema;
    InvalidCreateCollectionOptions => "INVALID_CREATE_COLLECTION_OPTIONS", Schema;
    LexicalNotEnabledForCollection => "LEXICAL_NOT_ENABLED_FOR_COLLECTION", Schema;
    UnknownCollectionOrTable => "UNKNOWN_COLLECTION_OR_TABLE", Schema;
    UnknownKeyspace => "UNKNOWN_KEYSPACE", Schema;
    UnsupportedSchemaName => "UNSUPPORTED_SCHEMA_NAME", Schema;
    VectorSearchNotSupported => "VECTOR_SEARCH_NOT_SUPPORTED", Schema;
}

impl fmt::Display for DocStoreCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
