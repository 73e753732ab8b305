//! Azure Key Vault key identifiers: the key URL a customer registers,
//! `https://<vault>.vault.azure.net/keys/<name>[/<version>]` (or a Managed HSM's
//! `https://<hsm>.managedhsm.azure.net/keys/…`, or the built-in vault's configured dev host),
//! parsed once with errors that say what to paste instead.
//!
//! The versionless form is the one keyplane stores: Key Vault rotation adds a version under the
//! same name, so a versionless ID keeps working after a rotation while a pinned version would
//! keep wrapping new data keys under retired key material.
use std::fmt;
use std::str::FromStr;

/// Host suffixes of Key Vault vaults, per Azure cloud (public, China, US Government, Germany).
const VAULT_SUFFIXES: [&str; 4] = [
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
];
/// Host suffixes of Managed HSM pools, per Azure cloud.
const MANAGED_HSM_SUFFIXES: [&str; 3] = [
    ".managedhsm.azure.net",
    ".managedhsm.azure.cn",
    ".managedhsm.usgovcloudapi.net",
];

/// Which kind of Key Vault endpoint holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureVaultKind {
    /// A Key Vault vault (`*.vault.azure.net`): RSA keys, RBAC or access policies.
    Vault,
    /// A Managed HSM pool (`*.managedhsm.azure.net`): RSA-HSM and oct-HSM (AES) keys, local RBAC.
    ManagedHsm,
    /// keyplane's built-in vault on a configured development host (`localhost:4600`).
    Dev,
}

/// A well-formed Key Vault key ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureKeyId {
    pub kind: AzureVaultKind,
    /// Lower-case host, with the port for a dev host (`myvault.vault.azure.net`, `localhost:4600`).
    pub host: String,
    /// The vault or HSM name (the host's first label); `None` for a dev host, whose URL does
    /// not name its vault.
    pub vault_name: Option<String>,
    /// The key name as given (Key Vault compares names case-insensitively).
    pub name: String,
    /// 32 lower-case hex digits when the ID pins a version.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureKeyIdError {
    #[error(
        "a Key Vault key ID is the key's URL: https://<vault>.vault.azure.net/keys/<key-name> \
         (copy \"Key Identifier\" from the key in the Azure portal, or `az keyvault key show --query key.kid`)"
    )]
    NotAUrl,
    #[error("the key ID must use https://, not {0}://")]
    NotHttps(String),
    #[error("remove {0:?} from the key ID: it is the key's URL without query or fragment")]
    QueryOrFragment(String),
    #[error("the key ID must not carry user information before the host")]
    UserInfo,
    #[error(
        "{0:?} is not a Key Vault host; expected <vault>.vault.azure.net or <hsm>.managedhsm.azure.net"
    )]
    Host(String),
    #[error(
        "the vault name {0:?} must be 3 to 24 letters, digits and dashes, start with a letter, \
         end with a letter or digit, and not contain \"--\""
    )]
    VaultName(String),
    #[error("a Key Vault host takes no port other than 443 (got {0})")]
    Port(String),
    #[error(
        "this is a URL of {0:?}, not of a key; give the key's URL, https://<vault>.vault.azure.net/keys/<key-name>"
    )]
    NotAKey(String),
    #[error("the key ID names no key: it must end in /keys/<key-name>[/<version>]")]
    MissingName,
    #[error("the key name {0:?} must be 1 to 127 letters, digits and dashes")]
    KeyName(String),
    #[error(
        "the key version {0:?} must be 32 hex digits (or leave it out: versionless is preferred)"
    )]
    Version(String),
    #[error("the key ID has extra path after the version: {0:?}")]
    ExtraPath(String),
}

fn valid_vault_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
}

fn valid_key_name(s: &str) -> bool {
    (1..=127).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn valid_version(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

impl AzureKeyId {
    /// Parses a key ID on Azure's own hosts only.
    pub fn parse(s: &str) -> Result<AzureKeyId, AzureKeyIdError> {
        AzureKeyId::parse_allowing(s, &[] as &[&str])
    }

    /// Parses a key ID, also accepting the given development hosts (`host:port`, compared
    /// case-insensitively) as the built-in vault.
    pub fn parse_allowing<S: AsRef<str>>(
        s: &str,
        dev_hosts: &[S],
    ) -> Result<AzureKeyId, AzureKeyIdError> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(AzureKeyIdError::NotAUrl);
        };
        if !scheme.eq_ignore_ascii_case("https") {
            if scheme.bytes().all(|b| b.is_ascii_alphabetic()) && !scheme.is_empty() {
                return Err(AzureKeyIdError::NotHttps(scheme.to_ascii_lowercase()));
            }
            return Err(AzureKeyIdError::NotAUrl);
        }
        if let Some(i) = rest.find(['?', '#']) {
            return Err(AzureKeyIdError::QueryOrFragment(rest[i..].to_string()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(AzureKeyIdError::UserInfo);
        }
        let authority = authority.to_ascii_lowercase();
        let (kind, host, vault_name) = if dev_hosts
            .iter()
            .any(|d| d.as_ref().eq_ignore_ascii_case(&authority))
        {
            (AzureVaultKind::Dev, authority, None)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.clone(), None),
            };
            if let Some(p) = port
                && p != "443"
            {
                return Err(AzureKeyIdError::Port(p.to_string()));
            }
            let (kind, name) =
                if let Some(n) = VAULT_SUFFIXES.iter().find_map(|suf| host.strip_suffix(suf)) {
                    (AzureVaultKind::Vault, n)
                } else if let Some(n) = MANAGED_HSM_SUFFIXES
                    .iter()
                    .find_map(|suf| host.strip_suffix(suf))
                {
                    (AzureVaultKind::ManagedHsm, n)
                } else {
                    return Err(AzureKeyIdError::Host(host));
                };
            if !valid_vault_name(name) {
                return Err(AzureKeyIdError::VaultName(name.to_string()));
            }
            let name = name.to_string();
            (kind, host, Some(name))
        };
        let mut segments: Vec<&str> = path.split('/').collect();
        // One trailing slash is harmless (the portal's "Vault URI" ends in one).
        if segments.last() == Some(&"") {
            segments.pop();
        }
        let mut it = segments.into_iter();
        match it.next() {
            None | Some("") => return Err(AzureKeyIdError::MissingName),
            Some(c) if c.eq_ignore_ascii_case("keys") => {}
            Some(c) => return Err(AzureKeyIdError::NotAKey(c.to_string())),
        }
        let name = match it.next() {
            None | Some("") => return Err(AzureKeyIdError::MissingName),
            Some(n) if valid_key_name(n) => n.to_string(),
            Some(n) => return Err(AzureKeyIdError::KeyName(n.to_string())),
        };
        let version = match it.next() {
            None => None,
            Some(v) if valid_version(v) => Some(v.to_ascii_lowercase()),
            Some(v) => return Err(AzureKeyIdError::Version(v.to_string())),
        };
        let extra: Vec<&str> = it.collect();
        if !extra.is_empty() {
            return Err(AzureKeyIdError::ExtraPath(extra.join("/")));
        }
        Ok(AzureKeyId {
            kind,
            host,
            vault_name,
            name,
            version,
        })
    }

    /// `https://<host>`: what the SDK's client is created with.
    pub fn vault_url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The same key without a pinned version: the form keyplane stores.
    pub fn versionless(&self) -> AzureKeyId {
        AzureKeyId {
            version: None,
            ..self.clone()
        }
    }

    pub fn is_versionless(&self) -> bool {
        self.version.is_none()
    }

    /// True when `other` names the same key (Key Vault compares hosts and names
    /// case-insensitively), whatever versions the two pin.
    pub fn same_key(&self, other: &AzureKeyId) -> bool {
        self.host == other.host && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl FromStr for AzureKeyId {
    type Err = AzureKeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AzureKeyId::parse(s)
    }
}

impl fmt::Display for AzureKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}/keys/{}", self.host, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "78deebed173b48e48f55abf87ed4cf71";

    #[test]
    fn vault_and_hsm_ids_parse_and_round_trip() {
        let id: AzureKeyId = "https://ContosoVault.vault.azure.net/keys/db-key"
            .parse()
            .unwrap();
        assert_eq!(id.kind, AzureVaultKind::Vault);
        assert_eq!(id.host, "contosovault.vault.azure.net");
        assert_eq!(id.vault_name.as_deref(), Some("contosovault"));
        assert_eq!(id.name, "db-key");
        assert!(id.is_versionless());
        assert_eq!(
            id.to_string(),
            "https://contosovault.vault.azure.net/keys/db-key"
        );
        assert_eq!(id.vault_url(), "https://contosovault.vault.azure.net");

        let pinned: AzureKeyId = format!(
            "https://contoso.vault.azure.net:443/keys/k/{}/",
            V.to_uppercase()
        )
        .parse()
        .unwrap();
        assert_eq!(pinned.version.as_deref(), Some(V));
        assert_eq!(
            pinned.versionless().to_string(),
            "https://contoso.vault.azure.net/keys/k"
        );
        assert!(pinned.same_key(&"https://CONTOSO.vault.azure.net/keys/K".parse().unwrap()));

        let hsm: AzureKeyId = "https://pool1.managedhsm.azure.net/keys/aes1"
            .parse()
            .unwrap();
        assert_eq!(hsm.kind, AzureVaultKind::ManagedHsm);
        let cn: AzureKeyId = "https://v1x.vault.azure.cn/keys/k".parse().unwrap();
        assert_eq!(cn.kind, AzureVaultKind::Vault);
    }

    #[test]
    fn dev_hosts_only_when_allowed() {
        let s = format!("https://localhost:4600/keys/k1/{V}");
        assert_eq!(
            AzureKeyId::parse(&s).unwrap_err(),
            AzureKeyIdError::Port("4600".into())
        );
        let id = AzureKeyId::parse_allowing(&s, &["LOCALHOST:4600"]).unwrap();
        assert_eq!(id.kind, AzureVaultKind::Dev);
        assert_eq!(id.vault_name, None);
        assert_eq!(id.vault_url(), "https://localhost:4600");
        assert_eq!(id.to_string(), s);
        assert_eq!(
            AzureKeyId::parse_allowing("https://localhost/keys/k", &["localhost:4600"])
                .unwrap_err(),
            AzureKeyIdError::Host("localhost".into())
        );
    }

    #[test]
    fn bad_ids_say_what_to_give_instead() {
        use AzureKeyIdError as E;
        let cases: &[(&str, E)] = &[
            ("db-key", E::NotAUrl),
            (
                "http://v1x.vault.azure.net/keys/k",
                E::NotHttps("http".into()),
            ),
            (
                "https://v1x.vault.azure.net/keys/k?api-version=7.4",
                E::QueryOrFragment("?api-version=7.4".into()),
            ),
            ("https://u@v1x.vault.azure.net/keys/k", E::UserInfo),
            ("https://example.com/keys/k", E::Host("example.com".into())),
            (
                "https://a.b.vault.azure.net/keys/k",
                E::VaultName("a.b".into()),
            ),
            (
                "https://1abc.vault.azure.net/keys/k",
                E::VaultName("1abc".into()),
            ),
            (
                "https://ab--c.vault.azure.net/keys/k",
                E::VaultName("ab--c".into()),
            ),
            (
                "https://v1x.vault.azure.net:8443/keys/k",
                E::Port("8443".into()),
            ),
            (
                "https://v1x.vault.azure.net/secrets/k",
                E::NotAKey("secrets".into()),
            ),
            ("https://v1x.vault.azure.net/", E::MissingName),
            ("https://v1x.vault.azure.net/keys/", E::MissingName),
            (
                "https://v1x.vault.azure.net/keys/my_key",
                E::KeyName("my_key".into()),
            ),
            (
                "https://v1x.vault.azure.net/keys/k/v2",
                E::Version("v2".into()),
            ),
            (
                "https://v1x.vault.azure.net/keys/k/78deebed173b48e48f55abf87ed4cf71/wrapkey",
                E::ExtraPath("wrapkey".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&AzureKeyId::parse(input).unwrap_err(), want, "{input}");
        }
        // Every message names what a key ID looks like or what to change.
        assert!(E::NotAUrl.to_string().contains("/keys/<key-name>"));
        assert!(E::Version("x".into()).to_string().contains("versionless"));
    }
}
