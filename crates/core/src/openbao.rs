//! OpenBao / Vault Transit keys: the key ID a customer registers
//! (`<address>/v1/[<namespace>/]<mount>/keys/<name>`, which is the key's own API URL), and the
//! Transit endpoints the platform calls on such a key with the capability each needs.
//!
//! The key ID is parsed strictly because the adapter sends the platform's token to the
//! address it names: a key ID is accepted only when it is unambiguous about the server, the
//! namespace, the mount and the key.
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Longest key ID accepted; well above any real address and mount path.
pub const MAX_KEY_ID_LEN: usize = 1024;

/// Mount paths that are the server's own, never a secrets engine the customer mounted.
const RESERVED_MOUNTS: [&str; 4] = ["sys", "auth", "identity", "cubbyhole"];

/// A Transit key: where the server is, the namespace (OpenBao/Vault Enterprise namespaces,
/// optional), the Transit mount (which may contain slashes) and the key's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenbaoKeyRef {
    address: String,
    namespace: Option<String>,
    mount: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenbaoKeyRefError {
    #[error("the key ID is empty; expected <address>/v1/<mount>/keys/<name>")]
    Empty,
    #[error("the key ID is longer than {MAX_KEY_ID_LEN} characters")]
    TooLong,
    #[error(
        "{0:?} is not a Transit key URL; expected <address>/v1/<mount>/keys/<name>, e.g. \
         https://bao.example.com:8200/v1/transit/keys/orders"
    )]
    NotAUrl(String),
    #[error("the address must start with http:// or https://, not {0:?}")]
    Scheme(String),
    #[error(
        "the address {0:?} must be scheme://host[:port], with no user name, path, query or fragment"
    )]
    Address(String),
    #[error("the address's port {0:?} must be a number from 1 to 65535")]
    Port(String),
    #[error("{0:?} is not under the API path /v1/; expected <address>/v1/<mount>/keys/<name>")]
    NoApiPath(String),
    #[error("{0:?} does not name a key; expected <mount>/keys/<name> after /v1/")]
    NotAKeyPath(String),
    #[error("the mount {mount:?} is not a Transit mount path: {reason}")]
    Mount { mount: String, reason: &'static str },
    #[error(
        "the key name {0:?} is not a Transit key name: letters, digits and _ at both ends, \
         with - and . allowed in between"
    )]
    KeyName(String),
    #[error("the namespace {0:?} is not a namespace path: segments of letters, digits, _, - and .")]
    Namespace(String),
    #[error(
        "the key ID's path {path:?} does not start with the namespace {namespace:?}; give the key's URL \
         with the namespace in it: <address>/v1/{namespace}/<mount>/keys/<name>"
    )]
    NotInNamespace { namespace: String, path: String },
}

/// One path segment of a mount or namespace: what Vault and OpenBao accept in mount paths.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Transit's own rule for key names (`\w(([\w-.]+)?\w)?` in its route patterns).
fn is_key_name(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    match bytes {
        [] => false,
        [only] => word(*only),
        [first, middle @ .., last] => {
            word(*first) && word(*last) && middle.iter().all(|&b| word(b) || b == b'-' || b == b'.')
        }
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        // An IPv6 literal.
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits `scheme://authority` off the front of `s`, checks it, and returns the canonical
/// address (scheme and host lower case) and the rest (starting with `/`).
fn split_address(s: &str) -> Result<(String, &str), OpenbaoKeyRefError> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(OpenbaoKeyRefError::NotAUrl(s.to_string()));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(OpenbaoKeyRefError::Scheme(format!("{scheme}://")));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(OpenbaoKeyRefError::Address(format!(
            "{scheme}://{authority}"
        )));
    }
    // The port is after the last ':' outside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if !valid_host(host) {
        return Err(OpenbaoKeyRefError::Address(format!(
            "{scheme}://{authority}"
        )));
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !ok {
            return Err(OpenbaoKeyRefError::Port(port.to_string()));
        }
    }
    let host = host.to_ascii_lowercase();
    let address = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    Ok((address, path))
}

fn check_namespace(ns: &str) -> Result<String, OpenbaoKeyRefError> {
    let trimmed = ns.trim().trim_matches('/');
    if trimmed.is_empty() || !trimmed.split('/').all(is_segment) {
        return Err(OpenbaoKeyRefError::Namespace(ns.to_string()));
    }
    Ok(trimmed.to_string())
}

fn check_mount(mount: &str) -> Result<(), OpenbaoKeyRefError> {
    let err = |reason| OpenbaoKeyRefError::Mount {
        mount: mount.to_string(),
        reason,
    };
    if mount.is_empty() {
        return Err(err("it is empty"));
    }
    if !mount.split('/').all(is_segment) {
        return Err(err(
            "each segment must be letters, digits, _, - or . (and not . or ..), with no empty segment",
        ));
    }
    let first = mount.split('/').next().unwrap_or("");
    if RESERVED_MOUNTS.contains(&first) {
        return Err(err(
            "sys, auth, identity and cubbyhole are the server's own paths",
        ));
    }
    Ok(())
}

impl OpenbaoKeyRef {
    /// Parses a key ID whose key lives in no namespace (the root namespace).
    pub fn parse(key_id: &str) -> Result<OpenbaoKeyRef, OpenbaoKeyRefError> {
        OpenbaoKeyRef::parse_in_namespace(key_id, None)
    }

    /// Parses a key ID whose key lives in `namespace` (when given): the key ID is then the
    /// key's full URL with the namespace at the start of the path, so that the key ID alone
    /// stays unique across namespaces, and the namespace says where the mount begins.
    pub fn parse_in_namespace(
        key_id: &str,
        namespace: Option<&str>,
    ) -> Result<OpenbaoKeyRef, OpenbaoKeyRefError> {
        let s = key_id.trim();
        if s.is_empty() {
            return Err(OpenbaoKeyRefError::Empty);
        }
        if s.len() > MAX_KEY_ID_LEN {
            return Err(OpenbaoKeyRefError::TooLong);
        }
        if s.contains(['?', '#']) || s.chars().any(char::is_whitespace) {
            return Err(OpenbaoKeyRefError::NotAUrl(s.to_string()));
        }
        let (address, path) = split_address(s)?;
        let Some(api_path) = path.strip_prefix("/v1/") else {
            return Err(OpenbaoKeyRefError::NoApiPath(s.to_string()));
        };
        let Some((full_mount, name)) = api_path.rsplit_once("/keys/") else {
            return Err(OpenbaoKeyRefError::NotAKeyPath(api_path.to_string()));
        };
        if !is_key_name(name) {
            return Err(OpenbaoKeyRefError::KeyName(name.to_string()));
        }
        let namespace = namespace
            .filter(|ns| !ns.trim().is_empty())
            .map(check_namespace)
            .transpose()?;
        let mount = match &namespace {
            Some(ns) => full_mount
                .strip_prefix(ns.as_str())
                .and_then(|m| m.strip_prefix('/'))
                .ok_or_else(|| OpenbaoKeyRefError::NotInNamespace {
                    namespace: ns.clone(),
                    path: full_mount.to_string(),
                })?,
            None => full_mount,
        };
        check_mount(mount)?;
        Ok(OpenbaoKeyRef {
            address,
            namespace,
            mount: mount.to_string(),
            name: name.to_string(),
        })
    }

    /// `scheme://host[:port]`, scheme and host in lower case.
    /// The key help texts name before the customer has said which:
    /// `https://bao.example.com:8200/v1/transit/keys/KEY-NAME`.
    pub fn placeholder() -> OpenbaoKeyRef {
        OpenbaoKeyRef {
            address: "https://bao.example.com:8200".to_string(),
            namespace: None,
            mount: "transit".to_string(),
            name: "KEY-NAME".to_string(),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The Transit mount inside the namespace, without slashes at either end.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uses_tls(&self) -> bool {
        self.address.starts_with("https://")
    }

    /// The URL prefix every request for this key is sent under: the address, the API
    /// version and the namespace (OpenBao and Vault accept the namespace as a path prefix).
    pub fn api_base(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/v1/{ns}/", self.address),
            None => format!("{}/v1/", self.address),
        }
    }

    /// The namespace-relative path of `endpoint` for this key, as a policy names it.
    pub fn path(&self, endpoint: TransitEndpoint) -> String {
        endpoint.path(&self.mount, &self.name)
    }
}

impl fmt::Display for OpenbaoKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/keys/{}", self.api_base(), self.mount, self.name)
    }
}

impl FromStr for OpenbaoKeyRef {
    type Err = OpenbaoKeyRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpenbaoKeyRef::parse(s)
    }
}

/// How the platform logs in to the customer's OpenBao: the auth method's mount and the role
/// the customer binds keyplane's policy to. The secrets that go with it (the AppRole's
/// secret ID) are not domain data and live with the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum OpenbaoRole {
    /// An AppRole role: keyplane holds its role ID and a secret ID.
    #[serde(rename = "approle")]
    AppRole { mount: String, role_name: String },
    /// A JWT auth role bound to the organization: keyplane logs in with a short-lived JWT it
    /// signs with the platform's key, whose public key the customer's auth mount trusts.
    /// Nothing secret is handed to keyplane.
    #[serde(rename = "jwt")]
    Jwt { mount: String, role_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenbaoRoleError {
    #[error("the auth mount {0:?} is not a mount path: segments of letters, digits, _, - and .")]
    Mount(String),
    #[error(
        "the role name {0:?} is not a role name: letters, digits and _ at both ends, with - and . \
         allowed in between"
    )]
    RoleName(String),
}

impl OpenbaoRole {
    /// The mount `bao auth enable approle` creates.
    pub const DEFAULT_APPROLE_MOUNT: &'static str = "approle";
    /// The mount `bao auth enable jwt` creates.
    pub const DEFAULT_JWT_MOUNT: &'static str = "jwt";

    /// A JWT auth role at `mount` (`jwt` when None).
    pub fn jwt(mount: Option<&str>, role_name: &str) -> Result<OpenbaoRole, OpenbaoRoleError> {
        let mount = mount
            .map(|m| m.trim().trim_matches('/'))
            .filter(|m| !m.is_empty())
            .unwrap_or(Self::DEFAULT_JWT_MOUNT);
        match OpenbaoRole::approle(Some(mount), role_name)? {
            OpenbaoRole::AppRole { mount, role_name } | OpenbaoRole::Jwt { mount, role_name } => {
                Ok(OpenbaoRole::Jwt { mount, role_name })
            }
        }
    }

    /// The same role path as a JWT auth role.
    pub fn as_jwt(&self) -> OpenbaoRole {
        OpenbaoRole::Jwt {
            mount: self.mount().to_string(),
            role_name: self.role_name().to_string(),
        }
    }

    /// An AppRole role at `mount` (`approle` when None).
    pub fn approle(mount: Option<&str>, role_name: &str) -> Result<OpenbaoRole, OpenbaoRoleError> {
        let mount = mount
            .map(|m| m.trim().trim_matches('/'))
            .filter(|m| !m.is_empty())
            .unwrap_or(Self::DEFAULT_APPROLE_MOUNT);
        if !mount.split('/').all(is_segment) {
            return Err(OpenbaoRoleError::Mount(mount.to_string()));
        }
        if !is_key_name(role_name) {
            return Err(OpenbaoRoleError::RoleName(role_name.to_string()));
        }
        Ok(OpenbaoRole::AppRole {
            mount: mount.to_string(),
            role_name: role_name.to_string(),
        })
    }

    pub fn mount(&self) -> &str {
        match self {
            OpenbaoRole::AppRole { mount, .. } | OpenbaoRole::Jwt { mount, .. } => mount,
        }
    }

    pub fn role_name(&self) -> &str {
        match self {
            OpenbaoRole::AppRole { role_name, .. } | OpenbaoRole::Jwt { role_name, .. } => {
                role_name
            }
        }
    }

    /// The "provider ID" a customer is shown: the role's own path, which is where they bind
    /// keyplane's policy (`bao write auth/<mount>/role/<name> token_policies=…`). OpenBao
    /// policies name no principal, so the role is the identity the policy is given to.
    pub fn provider_id(&self) -> String {
        format!("auth/{}/role/{}", self.mount(), self.role_name())
    }

    /// The role a provider ID names (`auth/<mount>/role/<name>`, the mount possibly nested),
    /// or a bare role name at the default mount.
    pub fn from_provider_id(path: &str) -> Result<OpenbaoRole, OpenbaoRoleError> {
        let path = path.trim().trim_matches('/');
        match path
            .strip_prefix("auth/")
            .and_then(|rest| rest.rsplit_once("/role/"))
        {
            Some((mount, name)) => OpenbaoRole::approle(Some(mount), name),
            None if !path.contains('/') => OpenbaoRole::approle(None, path),
            None => Err(OpenbaoRoleError::RoleName(path.to_string())),
        }
    }

    /// The namespace-relative path keyplane logs in at.
    pub fn login_path(&self) -> String {
        format!("auth/{}/login", self.mount())
    }
}

/// A capability in an OpenBao/Vault policy, as the server spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
    Scan,
    Sudo,
    Deny,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Patch,
        Capability::Delete,
        Capability::List,
        Capability::Scan,
        Capability::Sudo,
        Capability::Deny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Scan => "scan",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = crate::provider::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| crate::provider::UnknownName {
                what: "capability",
                given: s.to_string(),
                expected: Capability::ALL.iter().map(|c| c.as_str()).collect(),
            })
    }
}

/// The Transit endpoints the platform calls on a customer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitEndpoint {
    /// `keys/<name>`: the key's type, versions and configuration.
    ReadKey,
    Encrypt,
    Decrypt,
    /// `datakey/plaintext/<name>`: a new data key, returned in the clear and wrapped.
    DatakeyPlaintext,
    /// `datakey/wrapped/<name>`: a new data key, returned wrapped only.
    DatakeyWrapped,
}

impl TransitEndpoint {
    /// Every endpoint, in the order the policy help lists them.
    ///
    /// Transit's `rewrap` is deliberately absent: it takes no `associated_data`, so it cannot
    /// re-encrypt a ciphertext bound to an encryption context that way (it fails
    /// authentication); keyplane re-encrypts with decrypt then encrypt instead, and asks for
    /// no capability it never uses.
    pub const ALL: [TransitEndpoint; 5] = [
        TransitEndpoint::Encrypt,
        TransitEndpoint::Decrypt,
        TransitEndpoint::DatakeyPlaintext,
        TransitEndpoint::DatakeyWrapped,
        TransitEndpoint::ReadKey,
    ];

    /// The path of this endpoint for key `name` under `mount`, relative to the namespace.
    pub fn path(self, mount: &str, name: &str) -> String {
        let op = match self {
            TransitEndpoint::ReadKey => "keys",
            TransitEndpoint::Encrypt => "encrypt",
            TransitEndpoint::Decrypt => "decrypt",
            TransitEndpoint::DatakeyPlaintext => "datakey/plaintext",
            TransitEndpoint::DatakeyWrapped => "datakey/wrapped",
        };
        format!("{mount}/{op}/{name}")
    }

    /// The capability the request needs: reading the key is a read, every other call a
    /// write to an existing path (update). Never `create`: with it, Transit's encrypt would
    /// silently create a missing key instead of failing.
    pub fn capability(self) -> Capability {
        match self {
            TransitEndpoint::ReadKey => Capability::Read,
            _ => Capability::Update,
        }
    }

    /// What the platform uses the endpoint for, in the customer's terms.
    pub fn purpose(self) -> &'static str {
        match self {
            TransitEndpoint::ReadKey => {
                "read the key's type, versions and rotation to check it and track its health"
            }
            TransitEndpoint::Encrypt => "encrypt small values under the key",
            TransitEndpoint::Decrypt => "unwrap each database's data key when it opens",
            TransitEndpoint::DatakeyPlaintext => "create a data key for a new database",
            TransitEndpoint::DatakeyWrapped => {
                "create a data key for a new region without seeing it in the clear"
            }
        }
    }

    /// The request parameters keyplane sends to the endpoint, so that a policy's
    /// `allowed_parameters` / `denied_parameters` / `required_parameters` can be judged.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            TransitEndpoint::ReadKey => &[],
            TransitEndpoint::Encrypt => &["plaintext", "associated_data", "context"],
            TransitEndpoint::Decrypt => &["ciphertext", "associated_data", "context"],
            TransitEndpoint::DatakeyPlaintext | TransitEndpoint::DatakeyWrapped => {
                &["associated_data", "context"]
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_placeholder_is_a_key_id_that_parses() {
        let p = OpenbaoKeyRef::placeholder();
        assert_eq!(OpenbaoKeyRef::parse(&p.to_string()), Ok(p));
    }

    #[test]
    fn a_role_is_read_back_from_its_provider_id() {
        let role = OpenbaoRole::approle(Some("team/approle"), "keyplane").unwrap();
        assert_eq!(OpenbaoRole::from_provider_id(&role.provider_id()), Ok(role));
        assert_eq!(
            OpenbaoRole::from_provider_id("keyplane"),
            OpenbaoRole::approle(None, "keyplane")
        );
        assert!(OpenbaoRole::from_provider_id("auth/approle/role/").is_err());
        assert!(OpenbaoRole::from_provider_id("sys/policy/x").is_err());
        assert!(OpenbaoRole::from_provider_id("auth/a b/role/x").is_err());
    }

    use super::*;

    #[test]
    fn key_ids_parse_and_round_trip() {
        let s = "https://bao.example.com:8200/v1/transit/keys/orders";
        let k: OpenbaoKeyRef = s.parse().unwrap();
        assert_eq!(k.address(), "https://bao.example.com:8200");
        assert_eq!(k.mount(), "transit");
        assert_eq!(k.name(), "orders");
        assert_eq!(k.namespace(), None);
        assert!(k.uses_tls());
        assert_eq!(k.to_string(), s);
        assert_eq!(k.path(TransitEndpoint::Encrypt), "transit/encrypt/orders");
        assert_eq!(
            k.path(TransitEndpoint::DatakeyWrapped),
            "transit/datakey/wrapped/orders"
        );
        assert_eq!(k.path(TransitEndpoint::ReadKey), "transit/keys/orders");

        let plain = OpenbaoKeyRef::parse("http://127.0.0.1:18200/v1/transit/keys/k1").unwrap();
        assert!(!plain.uses_tls());
        assert_eq!(plain.api_base(), "http://127.0.0.1:18200/v1/");
        let v6 = OpenbaoKeyRef::parse("http://[::1]:8200/v1/transit/keys/k_1.a-b").unwrap();
        assert_eq!(v6.address(), "http://[::1]:8200");
        assert_eq!(v6.name(), "k_1.a-b");
        let no_port = OpenbaoKeyRef::parse("https://vault.internal/v1/t/keys/k").unwrap();
        assert_eq!(no_port.address(), "https://vault.internal");
    }

    #[test]
    fn mounts_may_contain_slashes_and_even_a_keys_segment() {
        let k = OpenbaoKeyRef::parse("https://b:8200/v1/team/a/transit/keys/orders").unwrap();
        assert_eq!(k.mount(), "team/a/transit");
        assert_eq!(
            k.path(TransitEndpoint::Decrypt),
            "team/a/transit/decrypt/orders"
        );
        // The last /keys/ separates mount and name.
        let k = OpenbaoKeyRef::parse("https://b/v1/x/keys/transit/keys/k").unwrap();
        assert_eq!(k.mount(), "x/keys/transit");
        assert_eq!(k.name(), "k");
    }

    #[test]
    fn scheme_and_host_are_canonical_lower_case() {
        let k =
            OpenbaoKeyRef::parse("  HTTPS://Bao.Example.COM:8200/v1/Transit/keys/Orders ").unwrap();
        assert_eq!(
            k.to_string(),
            "https://bao.example.com:8200/v1/Transit/keys/Orders"
        );
    }

    #[test]
    fn namespaces_are_the_start_of_the_path() {
        let id = "https://bao:8200/v1/team-a/eu/transit/keys/orders";
        let k = OpenbaoKeyRef::parse_in_namespace(id, Some("team-a/eu")).unwrap();
        assert_eq!(k.namespace(), Some("team-a/eu"));
        assert_eq!(k.mount(), "transit");
        assert_eq!(k.api_base(), "https://bao:8200/v1/team-a/eu/");
        assert_eq!(k.to_string(), id);
        assert_eq!(
            k.path(TransitEndpoint::DatakeyPlaintext),
            "transit/datakey/plaintext/orders"
        );
        // Without the namespace the same ID is a key in a nested mount of the root namespace.
        let root = OpenbaoKeyRef::parse(id).unwrap();
        assert_eq!(root.mount(), "team-a/eu/transit");
        assert_ne!(root, k);
        // Slashes around the namespace are tolerated; an empty one is no namespace.
        let k2 = OpenbaoKeyRef::parse_in_namespace(id, Some("/team-a/eu/")).unwrap();
        assert_eq!(k2, k);
        assert_eq!(
            OpenbaoKeyRef::parse_in_namespace(id, Some("")).unwrap(),
            root
        );
        assert_eq!(
            OpenbaoKeyRef::parse_in_namespace(id, Some("team-b")).unwrap_err(),
            OpenbaoKeyRefError::NotInNamespace {
                namespace: "team-b".into(),
                path: "team-a/eu/transit".into()
            }
        );
        // The namespace is not the whole path: a mount must remain.
        assert!(matches!(
            OpenbaoKeyRef::parse_in_namespace("https://b/v1/ns/keys/k", Some("ns")),
            Err(OpenbaoKeyRefError::NotInNamespace { .. })
        ));
        assert!(matches!(
            OpenbaoKeyRef::parse_in_namespace(id, Some("team a")),
            Err(OpenbaoKeyRefError::Namespace(_))
        ));
    }

    #[test]
    fn bad_key_ids_say_what_is_wrong() {
        use OpenbaoKeyRefError as E;
        type Expect = fn(&E) -> bool;
        let cases: Vec<(&str, Expect)> = vec![
            ("", |e| *e == E::Empty),
            ("transit/keys/orders", |e| matches!(e, E::NotAUrl(_))),
            ("ftp://b/v1/transit/keys/k", |e| matches!(e, E::Scheme(_))),
            ("https://user:pw@b/v1/transit/keys/k", |e| {
                matches!(e, E::Address(_))
            }),
            ("https:///v1/transit/keys/k", |e| matches!(e, E::Address(_))),
            ("https://b_ad-/v1/transit/keys/k", |e| {
                matches!(e, E::Address(_))
            }),
            ("https://b:0/v1/transit/keys/k", |e| matches!(e, E::Port(_))),
            ("https://b:99999/v1/transit/keys/k", |e| {
                matches!(e, E::Port(_))
            }),
            ("https://b:/v1/transit/keys/k", |e| matches!(e, E::Port(_))),
            ("https://b:8200", |e| matches!(e, E::NoApiPath(_))),
            ("https://b:8200/transit/keys/k", |e| {
                matches!(e, E::NoApiPath(_))
            }),
            ("https://b:8200/vault/v1/transit/keys/k", |e| {
                matches!(e, E::NoApiPath(_))
            }),
            ("https://b/v1/transit/encrypt/k", |e| {
                matches!(e, E::NotAKeyPath(_))
            }),
            ("https://b/v1/transit/keys/", |e| matches!(e, E::KeyName(_))),
            ("https://b/v1/transit/keys/k/", |e| {
                matches!(e, E::KeyName(_))
            }),
            ("https://b/v1/transit/keys/a/b", |e| {
                matches!(e, E::KeyName(_))
            }),
            ("https://b/v1/transit/keys/-k", |e| {
                matches!(e, E::KeyName(_))
            }),
            ("https://b/v1/transit/keys/k.", |e| {
                matches!(e, E::KeyName(_))
            }),
            ("https://b/v1/transit/keys/k%20", |e| {
                matches!(e, E::KeyName(_))
            }),
            ("https://b/v1/transit/keys/k?version=2", |e| {
                matches!(e, E::NotAUrl(_))
            }),
            ("https://b/v1/transit/keys/k#x", |e| {
                matches!(e, E::NotAUrl(_))
            }),
            ("https://b/v1/tran sit/keys/k", |e| {
                matches!(e, E::NotAUrl(_))
            }),
            ("https://b/v1//keys/k", |e| matches!(e, E::Mount { .. })),
            ("https://b/v1/a//b/keys/k", |e| matches!(e, E::Mount { .. })),
            ("https://b/v1/../keys/k", |e| matches!(e, E::Mount { .. })),
            ("https://b/v1/sys/keys/k", |e| matches!(e, E::Mount { .. })),
            ("https://b/v1/auth/approle/keys/k", |e| {
                matches!(e, E::Mount { .. })
            }),
            ("https://b/v1/t%2f/keys/k", |e| matches!(e, E::Mount { .. })),
        ];
        for (id, expected) in cases {
            let e = OpenbaoKeyRef::parse(id).unwrap_err();
            assert!(expected(&e), "{id:?} gave {e:?}");
            assert!(!e.to_string().is_empty());
        }
        let long = format!("https://b/v1/{}/keys/k", "a".repeat(MAX_KEY_ID_LEN));
        assert_eq!(OpenbaoKeyRef::parse(&long).unwrap_err(), E::TooLong);
        let e = OpenbaoKeyRef::parse("transit/keys/orders").unwrap_err();
        assert!(
            e.to_string().contains("<address>/v1/<mount>/keys/<name>"),
            "{e}"
        );
    }

    #[test]
    fn roles_name_their_path_as_the_provider_id() {
        let r = OpenbaoRole::approle(None, "keyplane").unwrap();
        assert_eq!(r.provider_id(), "auth/approle/role/keyplane");
        assert_eq!(r.login_path(), "auth/approle/login");
        let r = OpenbaoRole::approle(Some("/platforms/approle/"), "kp-1.a").unwrap();
        assert_eq!(r.provider_id(), "auth/platforms/approle/role/kp-1.a");
        assert_eq!(
            OpenbaoRole::approle(Some("a//b"), "x").unwrap_err(),
            OpenbaoRoleError::Mount("a//b".into())
        );
        assert_eq!(
            OpenbaoRole::approle(None, "bad name").unwrap_err(),
            OpenbaoRoleError::RoleName("bad name".into())
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"method": "approle", "mount": "platforms/approle", "role_name": "kp-1.a"})
        );
    }

    #[test]
    fn endpoints_need_update_except_reading_the_key() {
        for e in TransitEndpoint::ALL {
            let expected = if e == TransitEndpoint::ReadKey {
                Capability::Read
            } else {
                Capability::Update
            };
            assert_eq!(e.capability(), expected, "{e:?}");
            assert!(!e.purpose().is_empty());
        }
        assert_eq!("update".parse::<Capability>(), Ok(Capability::Update));
        let err = "write".parse::<Capability>().unwrap_err();
        assert!(err.to_string().contains("create, read, update"), "{err}");
    }
}
