//! One module per resource of the API. A handler parses the request (path, query, body),
//! calls one service of the application and maps its error to the API's table.
pub mod accounts;
pub mod data;
pub mod databases;
pub mod health;
pub mod keys;
pub mod on_inaccessible;
pub mod orgs;
pub mod regions;
pub mod tokens;
pub mod webhooks;

use chrono::Utc;
use serde::Deserialize;

/// `…/provider/{provider}/region/{region}…` as the request names them (the service parses
/// and checks them).
#[derive(Deserialize)]
pub struct RegionPath {
    pub provider: String,
    pub region: String,
}

/// The API's timestamps: RFC 3339, milliseconds, UTC.
pub(crate) fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
