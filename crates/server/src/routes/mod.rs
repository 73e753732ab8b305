//! One module per resource of the API.
pub mod accounts;
pub mod data;
pub mod databases;
pub mod health;
pub mod keys;
pub mod orgs;
pub mod tokens;
