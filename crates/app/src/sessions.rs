//! The portal's sessions, kept in the store so that any replica serves a signed-in browser
//! and a restart signs no one out.
//!
//! A session is started by signing in with an application token (its secret checked as on
//! any request, the sign-in audited). What the store then keeps is the SHA-256 of the
//! session's random ID (the cookie), its expiry, and per organization signed in to the
//! token's *client ID*, never its secret: on every request the session signs in again by
//! client ID ([`App::authenticate_client`]), so a revoked token ends that login at once (and
//! revoking deletes its logins in the same transaction). The cookie is what stands for the
//! token from then on, for at most [`Config::portal_session_lifetime`](crate::Config): a
//! bearer secret of 256 bits, sent only in an HttpOnly, SameSite=Strict cookie. Someone who
//! reads the store gets hashes that open nothing: no session ID, no CSRF token (derived from
//! the ID, see [`PortalSessionId`]) and no token secret. Storing the secret encrypted would
//! have added a key to manage and protect, for a capability the session already has.
use chrono::Utc;
use keyplane_core::PortalSessionId;
use keyplane_store::{NewPortalSession, PortalSession};
use uuid::Uuid;

use crate::App;
use crate::auth::{Requester, SignIn};
use crate::error::{AppError, AppResult};

pub struct Sessions<'a>(pub(crate) &'a App);

/// A live session as a request sees it.
#[derive(Debug)]
pub struct ActiveSession {
    pub id: PortalSessionId,
    /// What every form of this session must carry.
    pub csrf: String,
    /// The organizations it is signed in to, oldest first.
    pub org_ids: Vec<Uuid>,
    /// The current organization's token, resolved now.
    pub who: Requester,
}

/// What signing in did.
#[derive(Debug)]
pub enum SessionStart {
    /// A new session: the browser gets this ID as its cookie.
    New(PortalSessionId),
    /// The browser's live session gained (or renewed) the token's organization, now current.
    Joined,
}

impl Sessions<'_> {
    /// Signs a token in (audited), into the browser's live session when `live` names one,
    /// else into a new session.
    pub async fn sign_in(
        &self,
        live: Option<&PortalSessionId>,
        raw: &str,
        how: SignIn,
    ) -> AppResult<SessionStart> {
        let app = self.0;
        let who = app.sign_in(raw, how).await?;
        let now = Utc::now();
        if let Some(id) = live
            && app
                .store
                .add_portal_login(&id.storage_hash(), who.org_id(), &who.client_id, now)
                .await?
        {
            return Ok(SessionStart::Joined);
        }
        let id = PortalSessionId::generate();
        let lifetime = chrono::Duration::from_std(app.config.portal_session_lifetime)
            .map_err(AppError::internal)?;
        app.store
            .create_portal_session(&NewPortalSession {
                id_hash: id.storage_hash(),
                org_id: who.org_id(),
                client_id: who.client_id.clone(),
                created_at: now,
                expires_at: now + lifetime,
            })
            .await?;
        Ok(SessionStart::New(id))
    }

    /// The live session a cookie names, its current organization signed in again. A login
    /// whose token stopped working is dropped and the next one becomes current; None when no
    /// login is left, the session expired, or the cookie names none.
    pub async fn resolve(&self, cookie: &str) -> AppResult<Option<ActiveSession>> {
        let Some(id) = PortalSessionId::parse(cookie) else {
            return Ok(None);
        };
        let app = self.0;
        let hash = id.storage_hash();
        loop {
            let Some(session) = app.store.get_portal_session(&hash, Utc::now()).await? else {
                return Ok(None);
            };
            let Some(login) = current_login(&session) else {
                app.store.delete_portal_session(&hash).await?;
                return Ok(None);
            };
            let (org_id, client_id) = (login.org_id, login.client_id.clone());
            match app.authenticate_client(&client_id).await {
                Ok(who) => {
                    return Ok(Some(ActiveSession {
                        csrf: id.csrf_token(),
                        org_ids: session.logins.iter().map(|l| l.org_id).collect(),
                        who,
                        id,
                    }));
                }
                Err(AppError::InvalidToken) => {
                    if !app.store.remove_portal_login(&hash, org_id).await? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes `org_id` current; false when the session has no login to it.
    pub async fn switch(&self, id: &PortalSessionId, org_id: Uuid) -> AppResult<bool> {
        Ok(self
            .0
            .store
            .switch_portal_org(&id.storage_hash(), org_id, Utc::now())
            .await?)
    }

    /// Signs out: the session is gone on every replica.
    pub async fn end(&self, id: &PortalSessionId) -> AppResult<()> {
        Ok(self
            .0
            .store
            .delete_portal_session(&id.storage_hash())
            .await?)
    }
}

/// The current organization's login, or the oldest one when that is gone.
fn current_login(session: &PortalSession) -> Option<&keyplane_store::PortalLogin> {
    session
        .current_org
        .and_then(|org| session.logins.iter().find(|l| l.org_id == org))
        .or_else(|| session.logins.first())
}
