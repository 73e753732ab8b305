//! A token credential that hands out one fixed bearer token: what the built-in vault's dev
//! tokens need, since they are not issued by a token endpoint.

use std::fmt;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};

/// Returns the same token for every scope. Its `Debug` never shows the token.
pub struct StaticTokenCredential {
    token: Secret,
}

impl StaticTokenCredential {
    pub fn new(token: &str) -> StaticTokenCredential {
        StaticTokenCredential {
            token: Secret::new(token.to_string()),
        }
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticTokenCredential(<redacted>)")
    }
}

#[async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // Far enough ahead that the SDK never tries to refresh it.
        Ok(AccessToken::new(
            self.token.clone(),
            OffsetDateTime::now_utc() + Duration::days(365),
        ))
    }
}
