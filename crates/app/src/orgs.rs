//! Organizations and enterprises as their members see them: the token's own organization,
//! and the enterprise/organization filter of the portal's settings.
use keyplane_core::Permission;
use keyplane_store::{Enterprise, Organization};
use uuid::Uuid;

use crate::App;
use crate::auth::Requester;
use crate::error::AppResult;

pub struct Orgs<'a>(pub(crate) &'a App);

impl Orgs<'_> {
    /// The organization of the requester's token.
    pub fn current(&self, who: &Requester) -> AppResult<Organization> {
        who.require(Permission::OrgRead)?;
        Ok(who.org.clone())
    }

    /// One organization by ID; only the token's own is visible.
    pub fn get(&self, who: &Requester, id: Uuid) -> AppResult<Organization> {
        who.require(Permission::OrgRead)?;
        who.own_org(id)?;
        Ok(who.org.clone())
    }

    /// An organization the caller holds a token for (the portal's session proves it), and
    /// its enterprise: what the settings filter offers.
    pub async fn with_enterprise(
        &self,
        id: Uuid,
    ) -> AppResult<Option<(Organization, Option<Enterprise>)>> {
        let Some(org) = self.0.store.get_org(id).await? else {
            return Ok(None);
        };
        let enterprise = match org.enterprise_id {
            Some(e) => self.0.store.get_enterprise(e).await?,
            None => None,
        };
        Ok(Some((org, enterprise)))
    }

    /// The organizations of an enterprise, by name.
    pub async fn of_enterprise(&self, enterprise: Uuid) -> AppResult<Vec<Organization>> {
        Ok(self.0.store.list_orgs(Some(enterprise)).await?)
    }

    pub async fn by_id(&self, id: Uuid) -> AppResult<Option<Organization>> {
        Ok(self.0.store.get_org(id).await?)
    }
}
