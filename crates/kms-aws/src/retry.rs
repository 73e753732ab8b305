//! The retry loop is `keyplane_kms::retry`, shared by every adapter; re-exported here so that
//! `keyplane_kms_aws::RetrySettings` keeps working.

pub use keyplane_kms::retry::{RetrySettings, with_retries};
