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

mod error;
mod filter;
mod key;
mod path;
mod projection;
mod store;
mod update;

pub use error::{DocError, DocStoreError, Result};
pub use key::DataKey;
pub use store::{
    DEFAULT_PAGE_SIZE, DocStore, FILE_MODE, FindOneAndOptions, MAX_DEPTH, MAX_DOCUMENT_BYTES,
    MAX_INSERT_MANY, MAX_PAGE_SIZE, Page, Query, ReturnDocument, UpdateOptions, UpdateResult,
    enable_memory_security, is_plain_sqlite, memory_security_enabled,
};
