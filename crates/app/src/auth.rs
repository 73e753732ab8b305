//! Who is asking: an application token resolved to its organization and role on every
//! request (no cache, so a revocation is effective at once), and the permission model the
//! services apply to it. How the token travels (a header, a portal session) is the
//! transport's business.
use keyplane_core::audit::{AuditAction, AuditOutcome};
use keyplane_core::{Permission, Role, Token};
use keyplane_store::Organization;
use uuid::Uuid;

use crate::App;
use crate::error::{AppError, AppResult, Resource};

/// An authenticated token: what every service call acts as.
#[derive(Debug, Clone)]
pub struct Requester {
    pub client_id: String,
    pub org: Organization,
    pub role: Role,
}

impl Requester {
    pub fn org_id(&self) -> Uuid {
        self.org.id
    }

    pub fn require(&self, p: Permission) -> AppResult<()> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(AppError::Forbidden(p))
        }
    }

    /// Another organization answers "not found", never "forbidden", so that its existence
    /// is not revealed.
    pub fn own_org(&self, id: Uuid) -> AppResult<()> {
        if id == self.org.id {
            Ok(())
        } else {
            Err(AppError::NotFound(Resource::Organization(id)))
        }
    }

    /// How the audit log names this requester.
    pub fn actor(&self) -> String {
        format!("token:{}", self.client_id)
    }
}

/// How an interactive session (the portal's) was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// With an application token typed in.
    Token,
    /// With `serve --dev`'s sign-in link, which stands for the dev token.
    DevLink,
}

impl App {
    /// Starts an interactive session with a token: authenticated as any request is, and
    /// recorded in the organization's audit log.
    pub async fn sign_in(&self, raw: &str, how: SignIn) -> AppResult<Requester> {
        let who = self.authenticate(raw).await?;
        let action = match how {
            SignIn::Token => AuditAction::PortalSignin,
            SignIn::DevLink => AuditAction::PortalSigninDev,
        };
        crate::audit::record_for(
            self,
            &who,
            action,
            &who.client_id,
            AuditOutcome::Success,
            "",
        )
        .await;
        Ok(who)
    }

    /// Resolves a raw application token.
    pub async fn authenticate(&self, raw: &str) -> AppResult<Requester> {
        let token =
            Token::parse(raw.trim()).map_err(|e| AppError::MalformedToken(e.to_string()))?;
        let (record, org) = self
            .store
            .authenticate(token.client_id())
            .await?
            .ok_or(AppError::InvalidToken)?;
        if record.revoked_at.is_some() || !token.matches_hash(&record.secret_hash) {
            return Err(AppError::InvalidToken);
        }
        Ok(Requester {
            client_id: record.client_id,
            org,
            role: record.role,
        })
    }

    /// Resolves a token by its client ID alone, for a caller that proved it holds the
    /// secret earlier and holds a credential standing for it (a portal session): unknown or
    /// revoked is refused as a token would be, on every call.
    pub(crate) async fn authenticate_client(&self, client_id: &str) -> AppResult<Requester> {
        let (record, org) = self
            .store
            .authenticate(client_id)
            .await?
            .ok_or(AppError::InvalidToken)?;
        if record.revoked_at.is_some() {
            return Err(AppError::InvalidToken);
        }
        Ok(Requester {
            client_id: record.client_id,
            org,
            role: record.role,
        })
    }
}
