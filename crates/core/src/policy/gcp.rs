//! Google Cloud KMS IAM: what a customer grants the platform's service accounts on a key, the
//! `gcloud` commands that grant it, the permissions of the predefined roles that matter here,
//! and a checker that reads a pasted IAM policy (`getIamPolicy` output) and says, per
//! service account, what is missing.
//!
//! What to grant, and why: keyplane encrypts and decrypts data keys
//! (`cloudkms.cryptoKeyVersions.useToEncrypt`, `…useToDecrypt`: the role
//! `roles/cloudkms.cryptoKeyEncrypterDecrypter`) and reads the key to learn its primary
//! version's state and its rotation (`cloudkms.cryptoKeys.get`). No predefined role holds only
//! that read permission, so the recommendation is `roles/cloudkms.viewer` bound on the key
//! itself (which then lets the platform see nothing but this key and its versions); a custom
//! role with just `cloudkms.cryptoKeys.get` is the minimal alternative, and the live check at
//! registration (`testIamPermissions`) accepts either.
//!
//! The built-in KMS enforces bindings with [`role_permissions`], so it and the checker never
//! disagree about what a role allows.
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::gcp::GcpKeyName;

/// The role that lets the platform encrypt and decrypt with the key.
pub const ENCRYPTER_DECRYPTER_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";
/// The predefined role recommended for reading the key (see the module docs).
pub const VIEWER_ROLE: &str = "roles/cloudkms.viewer";

pub const USE_TO_ENCRYPT: &str = "cloudkms.cryptoKeyVersions.useToEncrypt";
pub const USE_TO_DECRYPT: &str = "cloudkms.cryptoKeyVersions.useToDecrypt";
pub const CRYPTO_KEYS_GET: &str = "cloudkms.cryptoKeys.get";

/// What the platform's service account must hold on the key: encrypt, decrypt, read.
pub const PLATFORM_PERMISSIONS: [&str; 3] = [USE_TO_ENCRYPT, USE_TO_DECRYPT, CRYPTO_KEYS_GET];

const LOCATION_READ: [&str; 3] = [
    "cloudkms.locations.get",
    "cloudkms.locations.list",
    "resourcemanager.projects.get",
];
const READ: [&str; 6] = [
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
];
const ADMIN: [&str; 13] = [
    "cloudkms.cryptoKeys.create",
    "cloudkms.cryptoKeys.getIamPolicy",
    "cloudkms.cryptoKeys.setIamPolicy",
    "cloudkms.cryptoKeys.update",
    "cloudkms.cryptoKeyVersions.create",
    "cloudkms.cryptoKeyVersions.destroy",
    "cloudkms.cryptoKeyVersions.restore",
    "cloudkms.cryptoKeyVersions.update",
    "cloudkms.keyRings.create",
    "cloudkms.keyRings.getIamPolicy",
    "cloudkms.keyRings.setIamPolicy",
    "cloudkms.locations.get",
    "cloudkms.locations.list",
];

/// The Cloud KMS permissions a predefined role grants, for the roles keyplane knows (the
/// cryptographic, viewer and admin roles of Cloud KMS, and the basic Owner role, which holds
/// every permission). `None` for any other role: a custom role, or a predefined one whose
/// permissions keyplane does not track, cannot be judged from the policy alone.
pub fn role_permissions(role: &str) -> Option<Vec<&'static str>> {
    let mut p: Vec<&'static str> = match role {
        ENCRYPTER_DECRYPTER_ROLE => vec![USE_TO_ENCRYPT, USE_TO_DECRYPT],
        "roles/cloudkms.cryptoKeyEncrypter" => vec![USE_TO_ENCRYPT],
        "roles/cloudkms.cryptoKeyDecrypter" => vec![USE_TO_DECRYPT],
        VIEWER_ROLE => READ.to_vec(),
        "roles/cloudkms.admin" => READ.iter().chain(ADMIN.iter()).copied().collect(),
        "roles/owner" => READ
            .iter()
            .chain(ADMIN.iter())
            .chain([USE_TO_ENCRYPT, USE_TO_DECRYPT].iter())
            .copied()
            .collect(),
        _ => return None,
    };
    p.extend(LOCATION_READ);
    p.sort_unstable();
    p.dedup();
    Some(p)
}

/// Every permission [`role_permissions`] knows of, sorted: what `testIamPermissions` may ask.
pub fn known_permissions() -> Vec<&'static str> {
    role_permissions("roles/owner").unwrap_or_default()
}

/// The IAM member for a service account: `serviceAccount:EMAIL`. A value that already has a
/// member type (`serviceAccount:`, `user:`, …) is returned as it is.
pub fn service_account_member(account: &str) -> String {
    if account.contains(':') {
        account.to_string()
    } else {
        format!("serviceAccount:{account}")
    }
}

/// The bindings to add to the key's IAM policy, one per role, each naming every service
/// account of the platform for the region.
pub fn recommended_bindings(service_accounts: &[String]) -> Vec<Value> {
    let members: Vec<String> = service_accounts
        .iter()
        .map(|a| service_account_member(a))
        .collect();
    [ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE]
        .iter()
        .map(|role| json!({ "role": role, "members": members }))
        .collect()
}

/// The `gcloud kms keys add-iam-policy-binding` commands that add [`recommended_bindings`]
/// (one per service account and role). Without a key yet, the key's parts are placeholders.
pub fn gcloud_commands(key: Option<&GcpKeyName>, service_accounts: &[String]) -> Vec<String> {
    let (k, ring, location, project) = match key {
        Some(k) => (
            k.crypto_key.as_str(),
            k.key_ring.as_str(),
            k.location.as_str(),
            k.project.as_str(),
        ),
        None => ("KEY", "KEY_RING", "LOCATION", "PROJECT_ID"),
    };
    let mut out = Vec::new();
    for account in service_accounts {
        for role in [ENCRYPTER_DECRYPTER_ROLE, VIEWER_ROLE] {
            out.push(format!(
                "gcloud kms keys add-iam-policy-binding {k} --keyring={ring} --location={location} \
                 --project={project} --member={} --role={role}",
                service_account_member(account)
            ));
        }
    }
    out
}

/// An IAM policy as `getIamPolicy` (or `gcloud … get-iam-policy --format=json`) prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IamPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default)]
    pub bindings: Vec<IamBinding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamBinding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<IamCondition>,
}

/// A binding's condition (a CEL expression). keyplane does not evaluate CEL: a conditional
/// binding is reported as not guaranteed to apply to the platform's calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamCondition {
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamPolicyError {
    #[error("the IAM policy is not valid JSON of getIamPolicy's shape: {0}")]
    Malformed(String),
    #[error("binding #{index} has no role")]
    EmptyRole { index: usize },
}

impl IamPolicy {
    /// Parses `getIamPolicy` output; also takes the `{"policy": …}` wrapper of a
    /// setIamPolicy request body.
    pub fn parse(text: &str) -> Result<IamPolicy, IamPolicyError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| IamPolicyError::Malformed(e.to_string()))?;
        let v = match v {
            Value::Object(mut m) if m.contains_key("policy") && !m.contains_key("bindings") => {
                m.remove("policy").unwrap_or(Value::Null)
            }
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(IamPolicyError::Malformed(format!(
                    "expected a JSON object with \"bindings\", got {}",
                    if other.is_array() {
                        "an array"
                    } else {
                        "a scalar"
                    }
                )));
            }
        };
        let p: IamPolicy =
            serde_json::from_value(v).map_err(|e| IamPolicyError::Malformed(e.to_string()))?;
        if let Some(index) = p.bindings.iter().position(|b| b.role.trim().is_empty()) {
            return Err(IamPolicyError::EmptyRole { index });
        }
        Ok(p)
    }
}

/// Whether the IAM `member` stands for `account` (a service account email or a
/// `serviceAccount:` member): its own member, or `allUsers` / `allAuthenticatedUsers`.
pub fn member_covers(member: &str, account: &str) -> bool {
    let want = service_account_member(account);
    member.eq_ignore_ascii_case(&want) || matches!(member, "allUsers" | "allAuthenticatedUsers")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IamFindingReason {
    /// No binding grants the permission to the member.
    Missing,
    /// Only bindings with a condition grant it; the condition may not hold for the platform.
    OnlyUnderCondition { role: String, expression: String },
    /// The member has a role whose permissions keyplane cannot know (a custom role, or a
    /// predefined one it does not track); the live check at registration will tell.
    UnknownRole { role: String },
    /// A binding names the account with the wrong member type (`user:` for a service account).
    WrongMemberType { role: String, member: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IamFinding {
    pub permission: String,
    pub reason: IamFindingReason,
    /// One sentence telling the customer what to change.
    pub message: String,
}

/// One service account's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IamMemberReport {
    pub member: String,
    /// The required permissions the policy grants it unconditionally.
    pub allowed: Vec<String>,
    pub findings: Vec<IamFinding>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IamCheckReport {
    pub members: Vec<IamMemberReport>,
    pub verdict_ok: bool,
}

/// The role to grant for a missing permission.
fn role_for(permission: &str) -> &'static str {
    if permission == CRYPTO_KEYS_GET {
        VIEWER_ROLE
    } else {
        ENCRYPTER_DECRYPTER_ROLE
    }
}

/// The member `account` appears as with another member type (`user:EMAIL` for the service
/// account `EMAIL`), if any.
fn mistyped_member<'a>(member: &'a str, account: &str) -> Option<&'a str> {
    let email = account.strip_prefix("serviceAccount:").unwrap_or(account);
    let (kind, rest) = member.split_once(':')?;
    (kind != "serviceAccount" && rest.eq_ignore_ascii_case(email)).then_some(member)
}

/// Checks that `policy` (bound on the key, or on its key ring) grants every account in
/// `service_accounts` the [`PLATFORM_PERMISSIONS`] unconditionally.
pub fn check_iam_policy(policy: &IamPolicy, service_accounts: &[String]) -> IamCheckReport {
    let members: Vec<IamMemberReport> = service_accounts
        .iter()
        .map(|account| check_member(policy, account))
        .collect();
    IamCheckReport {
        verdict_ok: members.iter().all(|m| m.findings.is_empty()),
        members,
    }
}

fn check_member(policy: &IamPolicy, account: &str) -> IamMemberReport {
    let member = service_account_member(account);
    let mut allowed = Vec::new();
    let mut findings = Vec::new();
    for permission in PLATFORM_PERMISSIONS {
        let mut conditional = None;
        let mut unknown = None;
        let mut mistyped = None;
        let mut granted = false;
        for b in &policy.bindings {
            let covers = b.members.iter().any(|m| member_covers(m, account));
            if !covers {
                if mistyped.is_none()
                    && role_permissions(&b.role).is_some_and(|p| p.contains(&permission))
                {
                    mistyped = b
                        .members
                        .iter()
                        .find_map(|m| mistyped_member(m, account))
                        .map(|m| (b.role.clone(), m.to_string()));
                }
                continue;
            }
            match role_permissions(&b.role) {
                Some(p) if p.contains(&permission) => match &b.condition {
                    None => granted = true,
                    Some(c) => {
                        conditional.get_or_insert((b.role.clone(), c.expression.clone()));
                    }
                },
                Some(_) => {}
                None => {
                    unknown.get_or_insert(b.role.clone());
                }
            }
        }
        if granted {
            allowed.push(permission.to_string());
            continue;
        }
        let role = role_for(permission);
        let add = format!(
            "add a binding of {role} for {member} on the key (gcloud kms keys add-iam-policy-binding … --member={member} --role={role})"
        );
        let finding = if let Some((r, expression)) = conditional {
            IamFinding {
                permission: permission.to_string(),
                message: format!(
                    "{permission} is granted to {member} by {r} only under the condition `{expression}`, which may not hold \
                     for the platform's calls: remove the condition, or {add}"
                ),
                reason: IamFindingReason::OnlyUnderCondition {
                    role: r,
                    expression,
                },
            }
        } else if let Some((r, m)) = mistyped {
            IamFinding {
                permission: permission.to_string(),
                message: format!(
                    "the binding of {r} names {m}, but the platform is a service account: change the member to {member}"
                ),
                reason: IamFindingReason::WrongMemberType { role: r, member: m },
            }
        } else if let Some(r) = unknown {
            IamFinding {
                permission: permission.to_string(),
                message: format!(
                    "{member} has {r}, whose permissions cannot be read from the policy: make sure it includes \
                     {permission}, or {add}"
                ),
                reason: IamFindingReason::UnknownRole { role: r },
            }
        } else {
            IamFinding {
                permission: permission.to_string(),
                message: format!("{permission} is not granted to {member}: {add}"),
                reason: IamFindingReason::Missing,
            }
        };
        findings.push(finding);
    }
    IamMemberReport {
        member,
        allowed,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: &str = "keyplane-platform@keyplane-dev.iam.gserviceaccount.com";
    const SA2: &str = "keyplane-platform-2@keyplane-dev.iam.gserviceaccount.com";

    fn accounts() -> Vec<String> {
        vec![SA.to_string(), SA2.to_string()]
    }

    fn policy(v: Value) -> IamPolicy {
        IamPolicy::parse(&v.to_string()).unwrap()
    }

    #[test]
    fn the_recommended_bindings_pass_the_checker() {
        let p = policy(
            json!({ "version": 1, "etag": "BwX=", "bindings": recommended_bindings(&accounts()) }),
        );
        let r = check_iam_policy(&p, &accounts());
        assert!(r.verdict_ok, "{r:?}");
        assert_eq!(r.members.len(), 2);
        assert_eq!(r.members[0].member, format!("serviceAccount:{SA}"));
        assert_eq!(r.members[0].allowed.len(), 3);
    }

    #[test]
    fn a_missing_role_is_reported_per_member() {
        // SA has both roles; SA2 only the viewer.
        let p = policy(json!({ "bindings": [
            { "role": ENCRYPTER_DECRYPTER_ROLE, "members": [format!("serviceAccount:{SA}")] },
            { "role": VIEWER_ROLE, "members": [format!("serviceAccount:{SA}"), format!("serviceAccount:{SA2}")] },
        ]}));
        let r = check_iam_policy(&p, &accounts());
        assert!(!r.verdict_ok);
        assert!(r.members[0].findings.is_empty());
        let f = &r.members[1].findings;
        assert_eq!(
            f.iter().map(|f| f.permission.as_str()).collect::<Vec<_>>(),
            [USE_TO_ENCRYPT, USE_TO_DECRYPT]
        );
        assert_eq!(f[0].reason, IamFindingReason::Missing);
        assert!(
            f[0].message.contains(ENCRYPTER_DECRYPTER_ROLE),
            "{}",
            f[0].message
        );
        assert_eq!(r.members[1].allowed, [CRYPTO_KEYS_GET]);
    }

    #[test]
    fn read_access_may_come_from_viewer_admin_or_owner_but_not_from_the_crypto_role() {
        let only_crypto = policy(json!({ "bindings": [
            { "role": ENCRYPTER_DECRYPTER_ROLE, "members": [format!("serviceAccount:{SA}")] }]}));
        let r = check_iam_policy(&only_crypto, &[SA.to_string()]);
        assert_eq!(r.members[0].findings.len(), 1);
        assert_eq!(r.members[0].findings[0].permission, CRYPTO_KEYS_GET);
        assert!(r.members[0].findings[0].message.contains(VIEWER_ROLE));
        for read in ["roles/cloudkms.admin", "roles/owner"] {
            let p = policy(json!({ "bindings": [
                { "role": ENCRYPTER_DECRYPTER_ROLE, "members": [format!("serviceAccount:{SA}")] },
                { "role": read, "members": [format!("serviceAccount:{SA}")] }]}));
            assert!(check_iam_policy(&p, &[SA.to_string()]).verdict_ok, "{read}");
        }
        let split = policy(json!({ "bindings": [
            { "role": "roles/cloudkms.cryptoKeyEncrypter", "members": [format!("serviceAccount:{SA}")] },
            { "role": "roles/cloudkms.cryptoKeyDecrypter", "members": [format!("serviceAccount:{SA}")] },
            { "role": VIEWER_ROLE, "members": [format!("serviceAccount:{SA}")] }]}));
        assert!(check_iam_policy(&split, &[SA.to_string()]).verdict_ok);
    }

    #[test]
    fn conditions_custom_roles_and_wrong_member_types_are_explained() {
        let p = policy(json!({ "version": 3, "bindings": [
            { "role": ENCRYPTER_DECRYPTER_ROLE, "members": [format!("serviceAccount:{SA}")],
              "condition": { "title": "until", "expression": "request.time < timestamp(\"2020-01-01T00:00:00Z\")" } },
            { "role": "projects/customer-project/roles/kmsReader", "members": [format!("serviceAccount:{SA}")] },
        ]}));
        let r = check_iam_policy(&p, &[SA.to_string()]);
        let f = &r.members[0].findings;
        assert!(
            matches!(f[0].reason, IamFindingReason::OnlyUnderCondition { .. }),
            "{f:?}"
        );
        assert!(f[0].message.contains("request.time"));
        assert_eq!(
            f[2].reason,
            IamFindingReason::UnknownRole {
                role: "projects/customer-project/roles/kmsReader".into()
            }
        );

        let user = policy(json!({ "bindings": [
            { "role": ENCRYPTER_DECRYPTER_ROLE, "members": [format!("user:{SA}")] },
            { "role": VIEWER_ROLE, "members": [format!("serviceAccount:{SA}")] }]}));
        let r = check_iam_policy(&user, &[SA.to_string()]);
        assert!(matches!(
            r.members[0].findings[0].reason,
            IamFindingReason::WrongMemberType { .. }
        ));
        assert!(
            r.members[0].findings[0]
                .message
                .contains(&format!("serviceAccount:{SA}"))
        );
    }

    #[test]
    fn public_members_cover_the_platform_and_emails_compare_case_insensitively() {
        let p = policy(json!({ "bindings": [
            { "role": ENCRYPTER_DECRYPTER_ROLE, "members": ["allAuthenticatedUsers"] },
            { "role": VIEWER_ROLE, "members": [format!("serviceAccount:{}", SA.to_uppercase())] }]}));
        assert!(check_iam_policy(&p, &[SA.to_string()]).verdict_ok);
    }

    #[test]
    fn policies_parse_with_or_without_the_set_wrapper_and_bad_ones_are_refused() {
        let inner = json!({ "bindings": [{ "role": VIEWER_ROLE, "members": ["user:a@b.c"] }] });
        assert_eq!(
            IamPolicy::parse(&json!({ "policy": inner }).to_string()).unwrap(),
            policy(inner)
        );
        assert_eq!(IamPolicy::parse("{}").unwrap(), IamPolicy::default());
        assert!(matches!(
            IamPolicy::parse("[1]"),
            Err(IamPolicyError::Malformed(_))
        ));
        assert!(matches!(
            IamPolicy::parse(r#"{"bindings":[{"role":" ","members":[]}]}"#),
            Err(IamPolicyError::EmptyRole { index: 0 })
        ));
    }

    #[test]
    fn gcloud_commands_name_the_key_or_placeholders() {
        let key: GcpKeyName =
            "projects/customer-project/locations/us-east1/keyRings/r/cryptoKeys/k"
                .parse()
                .unwrap();
        let c = gcloud_commands(Some(&key), &[SA.to_string()]);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            format!(
                "gcloud kms keys add-iam-policy-binding k --keyring=r --location=us-east1 --project=customer-project \
                 --member=serviceAccount:{SA} --role={ENCRYPTER_DECRYPTER_ROLE}"
            )
        );
        assert!(
            gcloud_commands(None, &accounts())[3]
                .contains("--keyring=KEY_RING --location=LOCATION")
        );
    }

    #[test]
    fn role_table_knows_the_kms_roles_only() {
        assert_eq!(
            role_permissions(ENCRYPTER_DECRYPTER_ROLE)
                .unwrap()
                .iter()
                .filter(|p| p.starts_with("cloudkms.cryptoKey"))
                .count(),
            2
        );
        assert!(
            !role_permissions("roles/cloudkms.admin")
                .unwrap()
                .contains(&USE_TO_ENCRYPT)
        );
        assert!(role_permissions("roles/editor").is_none());
        assert!(known_permissions().contains(&"cloudkms.cryptoKeys.setIamPolicy"));
    }
}
