use thiserror::Error;

/// Every failure of the store, in kinds the Data API layer maps one-to-one onto its own error
/// codes; messages are meant for the client and never contain key material or document text
/// beyond what the client itself sent.
#[derive(Debug, Error)]
pub enum DocStoreError {
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("invalid data key: {0}")]
    InvalidKey(String),
    #[error("keyspace '{0}' does not exist")]
    KeyspaceNotFound(String),
    #[error("collection '{0}' already exists with different options")]
    CollectionExists(String),
    #[error("collection '{0}' does not exist")]
    CollectionNotFound(String),
    #[error("a document with _id {0} already exists")]
    DuplicateId(String),
    #[error("unknown operator '{0}'")]
    UnknownOperator(String),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("invalid sort: {0}")]
    InvalidSort(String),
    #[error("invalid projection: {0}")]
    InvalidProjection(String),
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("invalid document: {0}")]
    InvalidDocument(String),
    #[error("invalid page state")]
    InvalidPageState,
    #[error("document too large: {size} bytes, the limit is {limit} bytes")]
    DocumentTooLarge { size: usize, limit: usize },
    #[error("document nested too deeply: the limit is {limit} levels")]
    TooDeep { limit: usize },
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

/// The per-document error of `insert_many`: the same kinds as every other call.
pub type DocError = DocStoreError;

pub type Result<T, E = DocStoreError> = std::result::Result<T, E>;
