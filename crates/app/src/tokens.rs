//! Application tokens of an organization: create (the secret is returned once and only its
//! hash is kept), list, revoke. A token can only hand out permissions its own role has.
use chrono::{SubsecRound, Utc};
use keyplane_core::{Permission, QuotaExceeded, Quotas, Role, Token};
use keyplane_store::{CreateOutcome, Store, TokenRecord};
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::error::{AppError, AppResult, Resource};

/// Creates a token for `org_id` and stores only the hash of its secret: the operator's
/// `keyplane admin create-token` and the dev bootstrap, which no quota limits.
pub async fn issue_token(
    store: &dyn Store,
    org_id: Uuid,
    role: &Role,
    description: &str,
) -> keyplane_store::Result<(Token, TokenRecord)> {
    match mint(store, org_id, role, description, &Quotas::UNLIMITED).await? {
        Ok(t) => Ok(t),
        Err(e) => Err(keyplane_store::StoreError::Corrupt(format!(
            "an unlimited token quota refused a token: {e}"
        ))),
    }
}

/// A new token stored unless the organization's token quota is reached.
async fn mint(
    store: &dyn Store,
    org_id: Uuid,
    role: &Role,
    description: &str,
    quotas: &Quotas,
) -> keyplane_store::Result<Result<(Token, TokenRecord), QuotaExceeded>> {
    let token = Token::generate();
    let record = TokenRecord {
        client_id: token.client_id().to_string(),
        org_id,
        role: role.clone(),
        secret_hash: token.secret_hash().to_vec(),
        description: description.to_string(),
        created_at: Utc::now().trunc_subsecs(3),
        revoked_at: None,
    };
    Ok(match store.insert_token(&record, quotas).await? {
        CreateOutcome::Created => Ok((token, record)),
        CreateOutcome::OverQuota(e) => Err(e),
    })
}

/// What a new token is asked for: one built-in role by name, or a custom role's permissions.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub description: String,
}

impl NewToken {
    fn role(&self) -> AppResult<Role> {
        match (self.roles.as_slice(), self.permissions.is_empty()) {
            ([one], true) => {
                Role::parse(one).map_err(|e| AppError::invalid("roles", format!("roles: {e}")))
            }
            ([], false) => Role::custom(self.permissions.iter().map(String::as_str))
                .map_err(|e| AppError::invalid("permissions", format!("permissions: {e}"))),
            _ => Err(AppError::invalid(
                "roles",
                "give exactly one of: \"roles\" with one role name, or \"permissions\" with a list of permissions",
            )),
        }
    }
}

/// Longest description a token may carry.
pub const MAX_DESCRIPTION: usize = 256;

pub struct Tokens<'a>(pub(crate) &'a App);

impl Tokens<'_> {
    /// Creates a token in the requester's organization; the token is in the answer only.
    pub async fn create(&self, who: &Requester, req: &NewToken) -> AppResult<(Token, TokenRecord)> {
        who.require(Permission::OrgTokenWrite)?;
        let role = req.role()?;
        if req.description.len() > MAX_DESCRIPTION {
            return Err(AppError::invalid(
                "description",
                "description: at most 256 characters",
            ));
        }
        if let Some(p) = role
            .permissions()
            .into_iter()
            .find(|p| !who.role.allows(*p))
        {
            return Err(AppError::Forbidden(p));
        }
        let store = self.0.store.as_ref();
        mint(
            store,
            who.org_id(),
            &role,
            &req.description,
            &self.0.config.quotas,
        )
        .await?
        .map_err(AppError::QuotaExceeded)
    }

    /// The organization's tokens, newest first, revoked ones included, without secrets.
    pub async fn list(&self, who: &Requester) -> AppResult<Vec<TokenRecord>> {
        who.require(Permission::OrgTokenRead)?;
        Ok(self.0.store.list_tokens(who.org_id()).await?)
    }

    /// Revokes a token of the organization; it is refused from the next request on.
    pub async fn revoke(&self, who: &Requester, client_id: &str) -> AppResult<()> {
        who.require(Permission::OrgTokenWrite)?;
        if self.0.store.revoke_token(who.org_id(), client_id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(Resource::Token(client_id.to_string())))
        }
    }
}
