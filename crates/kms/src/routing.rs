//! [`ServiceConnectors`]: one [`KmsConnector`] per key service, chosen by the identity's
//! provider. The binary's wiring fills it with the vendor adapters it has; the application
//! sees a single connector and never asks which vendor is behind an identity.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use keyplane_core::Provider;

use crate::{ErrorKind, KeyLogin, KeyProvider, KmsConnector, KmsError, PlatformIdentity, Result};

/// The connectors of the key services this deployment can reach, by provider.
#[derive(Clone, Default)]
pub struct ServiceConnectors {
    by_provider: BTreeMap<Provider, Arc<dyn KmsConnector>>,
}

impl fmt::Debug for ServiceConnectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConnectors")
            .field("providers", &self.by_provider.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceConnectors {
    pub fn new() -> ServiceConnectors {
        ServiceConnectors::default()
    }

    /// Adds (or replaces) the connector that acts as `provider`'s identities.
    pub fn with(mut self, provider: Provider, connector: Arc<dyn KmsConnector>) -> Self {
        self.by_provider.insert(provider, connector);
        self
    }

    /// The providers a connector is configured for.
    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        self.by_provider.keys().copied()
    }

    fn route(&self, identity: &PlatformIdentity) -> Result<&Arc<dyn KmsConnector>> {
        self.by_provider.get(&identity.provider).ok_or_else(|| {
            // A deployment without that vendor's adapter: the operator's configuration, not
            // anything the customer's key says.
            KmsError::new(
                ErrorKind::Unsupported,
                "Connect",
                format!(
                    "this deployment has no {} key service configured",
                    identity.provider
                ),
            )
        })
    }
}

impl KmsConnector for ServiceConnectors {
    fn connect(&self, identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
        self.route(identity)?.connect(identity)
    }

    fn connect_with_login(
        &self,
        identity: &PlatformIdentity,
        key_id: &str,
        login: &KeyLogin,
    ) -> Result<Arc<dyn KeyProvider>> {
        self.route(identity)?
            .connect_with_login(identity, key_id, login)
    }

    fn volume_grantee(&self, identity: &PlatformIdentity) -> String {
        match self.route(identity) {
            Ok(c) => c.volume_grantee(identity),
            Err(_) => identity.principal.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncryptionContext, KeyDescription};
    use async_trait::async_trait;
    use zeroize::Zeroizing;

    /// A connector that only says who it is: enough to see where a call was routed (no KMS
    /// operation is performed here).
    struct Named(&'static str);

    struct NamedProvider(&'static str);

    #[async_trait]
    impl KeyProvider for NamedProvider {
        async fn describe_key(&self, _key_id: &str) -> Result<KeyDescription> {
            Err(KmsError::new(ErrorKind::Other, "DescribeKey", self.0))
        }
        async fn encrypt(&self, _: &str, _: &[u8], _: &EncryptionContext) -> Result<Vec<u8>> {
            Err(KmsError::new(ErrorKind::Other, "Encrypt", self.0))
        }
        async fn decrypt(
            &self,
            _: &str,
            _: &[u8],
            _: &EncryptionContext,
        ) -> Result<Zeroizing<Vec<u8>>> {
            Err(KmsError::new(ErrorKind::Other, "Decrypt", self.0))
        }
    }

    impl KmsConnector for Named {
        fn connect(&self, _identity: &PlatformIdentity) -> Result<Arc<dyn KeyProvider>> {
            Ok(Arc::new(NamedProvider(self.0)))
        }
        fn volume_grantee(&self, _identity: &PlatformIdentity) -> String {
            format!("grantee of {}", self.0)
        }
    }

    fn identity(provider: Provider) -> PlatformIdentity {
        PlatformIdentity {
            provider,
            region: "r".into(),
            account_id: "a".into(),
            principal: "p".into(),
        }
    }

    #[tokio::test]
    async fn each_identity_goes_to_its_services_connector() {
        let c = ServiceConnectors::new()
            .with(Provider::Aws, Arc::new(Named("aws")))
            .with(Provider::Gcp, Arc::new(Named("gcp")));
        for (p, name) in [(Provider::Aws, "aws"), (Provider::Gcp, "gcp")] {
            let kms = c.connect(&identity(p)).unwrap();
            assert_eq!(kms.describe_key("k").await.unwrap_err().message, name);
            assert_eq!(c.volume_grantee(&identity(p)), format!("grantee of {name}"));
        }
        let e = c.connect(&identity(Provider::Azure)).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.message.contains("azure"), "{}", e.message);
        assert_eq!(c.volume_grantee(&identity(Provider::Azure)), "p");
        assert_eq!(
            c.providers().collect::<Vec<_>>(),
            [Provider::Aws, Provider::Gcp]
        );
    }
}
