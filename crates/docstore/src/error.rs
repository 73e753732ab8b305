//! The store's one error type. A refusal of what the caller sent carries the original Data
//! API's code ([`DocStoreError::code`]); keyplane's own failures (I/O, SQLite, a wrong key)
//! carry none, so the server can tell "your request" from "our fault" without reading text.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

use crate::code::DocStoreCode;

/// What the caller sent that the store refuses: the original's code, a message meant for the
/// client, and the `_id` of the document it concerns where the original reports one
/// (`errors[].documentIds`).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: DocStoreCode,
    pub message: String,
    pub document_id: Option<Value>,
}

impl Refusal {
    pub fn new(code: DocStoreCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            document_id: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every failure of the store. The variants are the kinds of refusal (and keyplane's own
/// failures); the precise Data API code of a refusal is [`DocStoreError::code`]. Messages are
/// meant for the client and never contain key material or document text beyond what the
/// client itself sent.
#[derive(Debug, Error)]
pub enum DocStoreError {
    /// A keyspace or collection name the Data API's naming rule refuses.
    #[error("{0}")]
    InvalidName(Refusal),
    #[error("invalid data key: {0}")]
    InvalidKey(String),
    #[error("unknown keyspace '{0}'")]
    KeyspaceNotFound(String),
    #[error("collection '{0}' already exists with different settings")]
    CollectionExists(String),
    #[error("collection '{0}' does not exist")]
    CollectionNotFound(String),
    /// `createCollection` options the store cannot honour.
    #[error("{0}")]
    InvalidCollectionOptions(Refusal),
    #[error("{0}")]
    DuplicateId(Refusal),
    /// A `$`-operator on a field that no filter knows (`{"a": {"$regex": …}}`).
    #[error("unsupported filter operator '{0}'")]
    UnknownOperator(String),
    #[error("{0}")]
    InvalidFilter(Refusal),
    #[error("{0}")]
    InvalidSort(Refusal),
    #[error("{0}")]
    InvalidProjection(Refusal),
    /// An update (or a replacement) that cannot be applied.
    #[error("{0}")]
    InvalidUpdate(Refusal),
    /// A document that cannot be stored as sent.
    #[error("{0}")]
    InvalidDocument(Refusal),
    /// Request text that is not JSON the Data API accepts (see [`crate::parse_json`]).
    #[error("{0}")]
    InvalidJson(Refusal),
    #[error("invalid page state")]
    InvalidPageState,
    #[error(
        "document size limitation violated: document size ({size} characters) exceeds the maximum allowed ({limit})"
    )]
    DocumentTooLarge {
        size: usize,
        limit: usize,
        document_id: Option<Value>,
    },
    #[error(
        "document size limitation violated: document depth exceeds the maximum allowed ({limit} levels)"
    )]
    TooDeep {
        limit: usize,
        document_id: Option<Value>,
    },
    #[error("too many documents: {count}, the limit is {limit} per call")]
    TooManyDocuments { count: usize, limit: usize },
    #[error("the data key does not decrypt this datacenter's data file")]
    WrongKey,
    #[error("no datacenter data file at {0}")]
    NotFound(String),
    #[error("a datacenter data file already exists at {0}")]
    AlreadyExists(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl DocStoreError {
    /// The original Data API's code for a refusal of the caller's request; `None` for
    /// keyplane's own failures (storage, I/O, keys), which the server answers as its fault.
    pub fn code(&self) -> Option<DocStoreCode> {
        use DocStoreCode as C;
        Some(match self {
            DocStoreError::InvalidName(r)
            | DocStoreError::InvalidCollectionOptions(r)
            | DocStoreError::DuplicateId(r)
            | DocStoreError::InvalidFilter(r)
            | DocStoreError::InvalidSort(r)
            | DocStoreError::InvalidProjection(r)
            | DocStoreError::InvalidUpdate(r)
            | DocStoreError::InvalidDocument(r)
            | DocStoreError::InvalidJson(r) => r.code,
            DocStoreError::KeyspaceNotFound(_) => C::UnknownKeyspace,
            DocStoreError::CollectionExists(_) => C::ExistingCollectionDifferentSettings,
            DocStoreError::CollectionNotFound(_) => C::UnknownCollectionOrTable,
            DocStoreError::UnknownOperator(_) => C::FilterUnsupportedOperator,
            DocStoreError::InvalidPageState | DocStoreError::TooManyDocuments { .. } => {
                C::CommandFieldValueInvalid
            }
            DocStoreError::DocumentTooLarge { .. } | DocStoreError::TooDeep { .. } => {
                C::ShredDocLimitViolation
            }
            DocStoreError::InvalidKey(_)
            | DocStoreError::WrongKey
            | DocStoreError::NotFound(_)
            | DocStoreError::AlreadyExists(_)
            | DocStoreError::Io(_)
            | DocStoreError::Sqlite(_)
            | DocStoreError::Corrupt(_) => return None,
        })
    }

    /// The `_id` of the document a per-document failure concerns, where the original names it
    /// (`errors[].documentIds`): documents refused at insert, duplicates, refused updates.
    pub fn document_id(&self) -> Option<&Value> {
        match self {
            DocStoreError::DuplicateId(r)
            | DocStoreError::InvalidDocument(r)
            | DocStoreError::InvalidUpdate(r) => r.document_id.as_ref(),
            DocStoreError::DocumentTooLarge { document_id, .. }
            | DocStoreError::TooDeep { document_id, .. } => document_id.as_ref(),
            _ => None,
        }
    }

    /// Attaches the `_id` of the document the failure concerns (no-op for other kinds).
    pub(crate) fn for_document(mut self, id: &Value) -> Self {
        match &mut self {
            DocStoreError::DuplicateId(r)
            | DocStoreError::InvalidDocument(r)
            | DocStoreError::InvalidUpdate(r) => r.document_id = Some(id.clone()),
            DocStoreError::DocumentTooLarge { document_id, .. }
            | DocStoreError::TooDeep { document_id, .. } => *document_id = Some(id.clone()),
            _ => {}
        }
        self
    }
}

/// The per-document error of `insert_many`: the same kinds as every other call.
pub type DocError = DocStoreError;

pub type Result<T, E = DocStoreError> = std::result::Result<T, E>;

/// Client text quoted in a message, cut to 100 characters so a message stays readable (and
/// small) whatever was sent.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(100).collect();
        t.push('…');
        t
    }
}

/// A JSON value quoted in a message, cut like [`shorten`].
pub(crate) fn quote_json(v: &serde_json::Value) -> String {
    shorten(&v.to_string())
}

/// Shorthands for building refusals, one per kind.
pub(crate) fn filter_err(code: DocStoreCode, msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidFilter(Refusal::new(code, msg))
}

pub(crate) fn sort_err(code: DocStoreCode, msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidSort(Refusal::new(code, msg))
}

pub(crate) fn projection_err(msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidProjection(Refusal::new(DocStoreCode::UnsupportedProjectionParam, msg))
}

pub(crate) fn update_err(code: DocStoreCode, msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidUpdate(Refusal::new(code, msg))
}

pub(crate) fn doc_err(code: DocStoreCode, msg: impl Into<String>) -> DocStoreError {
    DocStoreError::InvalidDocument(Refusal::new(code, msg))
}
