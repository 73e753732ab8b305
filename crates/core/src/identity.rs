//! How the platform's identities of each cloud keep one organization's trust from reaching
//! another's (the confused-deputy problem of a platform every customer trusts).
use crate::Provider;

/// Whether organizations may share a platform identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityModel {
    /// Shared platform accounts: every use of a customer key is bound to the organization by
    /// the key policy's `kms:EncryptionContext:organization` condition (AWS).
    SharedBoundByContext,
    /// The key service has no condition on the caller's context, so each organization gets
    /// its own identity from the operator's pool, never handed to another (GCP service
    /// accounts, Azure applications).
    ExclusivePerOrganization,
    /// The platform logs in with credentials each customer made in their own key service
    /// and gave keyplane with the key (an OpenBao AppRole): nothing of one organization's
    /// can open another's key, and the role's path customers are shown is only a name.
    CustomerCredentials,
}

impl Provider {
    pub fn identity_model(self) -> IdentityModel {
        match self {
            Provider::Aws => IdentityModel::SharedBoundByContext,
            Provider::Gcp | Provider::Azure => IdentityModel::ExclusivePerOrganization,
            Provider::Openbao => IdentityModel::CustomerCredentials,
        }
    }
}
