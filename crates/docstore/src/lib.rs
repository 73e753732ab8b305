//! keyplane's encrypted document store: one SQLCipher database file per database datacenter,
//! keyed with that datacenter's raw 256-bit data key, holding keyspaces, collections and JSON
//! documents with Data-API-style filters, sorts, projections and updates evaluated inside
//! SQLite.
//!
//! What this crate owns: the on-disk format of a datacenter's data, the rules on names and
//! document limits, the translation of filters into parameterized SQL. What it does not own:
//! KMS calls, how long a plaintext data key stays in memory (the server's DataPlane keeps it
//! for the configured TTL), HTTP, and which datacenter a request goes to.
//!
//! Semantics follow the original Data API (its reference implementation, `stargate/data-api`,
//! is the authority): every refusal carries the original's error code ([`DocStoreCode`]),
//! paths use its `&.`/`&&` escapes, documents are validated and limited as it validates them,
//! and numbers keep their exact text.
//!
//! File format: SQLCipher 4 with a raw 256-bit key (`PRAGMA key = "x'…'"`, no passphrase KDF),
//! HMAC-SHA256 page MACs, WAL journal, `synchronous = FULL`; tables `meta`, `keyspaces`,
//! `collections`, `indexes`, and one `d_<n>` table per collection holding `(rid, id, doc)` with
//! the document as JSON text. SQLCipher's process-wide memory wiping is opt-in
//! ([`enable_memory_security`]) because of its measured cost.
//!
//! [`DocStore`] is synchronous and `Send + Sync` (one connection behind a mutex): async callers
//! run its methods inside `tokio::task::spawn_blocking` with an `Arc<DocStore>`, so a slow fsync
//! never stalls the runtime's worker threads.
#![forbid(unsafe_code)]

mod code;
mod error;
mod filter;
mod ids;
mod json;
mod key;
mod number;
mod path;
mod projection;
mod rekey;
mod replica;
mod store;
mod update;
mod validate;

pub use code::{CodeScope, DocStoreCode};
pub use error::{DocError, DocStoreError, Refusal, Result};
pub use filter::SqlFilter;
pub use ids::DefaultIdType;
pub use json::{MAX_JSON_DEPTH, MAX_NUMBER_LEN, check_json_text, parse_json};
pub use key::DataKey;
pub use path::{MAX_PROPERTY_PATH_LEN, encode_segment};
pub use projection::Projection;
pub use rekey::RekeyedCopy;
pub use replica::Recorded;
pub use store::{
    DEFAULT_PAGE_SIZE, DELETE_MANY_PAGE_SIZE, DeleteManyPage, DocStore, FILE_MODE,
    FindOneAndOptions, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_INSERT_MANY, MAX_PAGE_SIZE, Page, Query,
    ReturnDocument, Selection, UPDATE_MANY_PAGE_SIZE, UpdateManyOptions, UpdateManyPage,
    UpdateOptions, UpdateResult, enable_memory_security, is_plain_sqlite, memory_security_enabled,
};
pub use update::Update;
pub use validate::{
    CollectionRules, Indexing, MAX_ARRAY_LEN, MAX_DOC_PROPERTIES, MAX_OBJECT_PROPERTIES,
    MAX_STRING_BYTES,
};

/// The public parsers, each refusing what the original refuses with its code and never
/// panicking, whatever the input (fuzz targets call them directly).
pub mod parse {
    use serde_json::Value;

    use crate::{Projection, Result, SqlFilter, Update};

    /// A filter, compiled to its SQL condition.
    pub fn filter(v: &Value) -> Result<SqlFilter> {
        crate::filter::compile(v)
    }

    /// A sort clause, compiled to its ORDER BY terms (empty for none).
    pub fn sort(v: Option<&Value>) -> Result<Vec<String>> {
        crate::filter::compile_sort(v)
    }

    /// A projection; `None` when it projects nothing away.
    pub fn projection(v: Option<&Value>) -> Result<Option<Projection>> {
        Projection::parse(v)
    }

    /// An update document.
    pub fn update(v: &Value) -> Result<Update> {
        Update::parse(v)
    }

    /// Request JSON, strictly (duplicate keys, number lengths): [`crate::parse_json`].
    pub fn json(bytes: &[u8]) -> Result<Value> {
        crate::parse_json(bytes)
    }

    /// A document as insert would store it (with a generated `_id` if it has none): its
    /// JSON text, or the refusal.
    pub fn document(v: Value) -> Result<String> {
        crate::validate::prepare(v, &crate::CollectionRules::default()).map(|p| p.text)
    }
}
