//! What a customer must grant on an Azure Key Vault key so the platform's Entra ID application
//! can use it, and a checker for what the customer pasted back.
//!
//! The platform needs three key permissions: `get` (read the key's attributes: enabled, expiry,
//! current version), `wrapKey` and `unwrapKey` (its data keys). Under Azure RBAC that is the
//! built-in role "Key Vault Crypto Service Encryption User" (Managed HSM: "Managed HSM Crypto
//! Service Encryption User") assigned to the platform's service principal with the key as its
//! scope; under the older vault access policies it is those three key permissions for the
//! service principal's object ID (access policies apply to every key of the vault: Azure has no
//! narrower grant there).
//!
//! The checker reads what the Azure CLI or the ARM REST API prints (`az role assignment list`,
//! `GET …/roleAssignments`, `az keyvault role assignment list --hsm-name`,
//! `az keyvault show` or its `properties.accessPolicies`) and reports, per permission, whether
//! the platform holds it on this key and, if not, what to change.

use serde::Serialize;
use serde_json::{Value, json};

use crate::azure::{AzureKeyId, AzureVaultKind};

/// A built-in Azure role: its display name and its role definition ID (the same GUID in every
/// tenant and subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AzureBuiltinRole {
    pub name: &'static str,
    pub id: &'static str,
}

/// The role to assign on a vault key: key read, wrap and unwrap, nothing else.
pub const CRYPTO_SERVICE_ENCRYPTION_USER: AzureBuiltinRole = AzureBuiltinRole {
    name: "Key Vault Crypto Service Encryption User",
    id: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
};
/// The same role for a Managed HSM key (Managed HSM's local RBAC).
pub const MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER: AzureBuiltinRole = AzureBuiltinRole {
    name: "Managed HSM Crypto Service Encryption User",
    id: "33413926-3206-4cdd-b39a-83574fe37a17",
};

/// The key permissions the platform uses, in access-policy spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AzureKeyPermission {
    Get,
    WrapKey,
    UnwrapKey,
}

impl AzureKeyPermission {
    pub const ALL: [AzureKeyPermission; 3] = [
        AzureKeyPermission::Get,
        AzureKeyPermission::WrapKey,
        AzureKeyPermission::UnwrapKey,
    ];

    /// The access-policy permission name (`az keyvault set-policy --key-permissions`).
    pub fn as_str(self) -> &'static str {
        match self {
            AzureKeyPermission::Get => "get",
            AzureKeyPermission::WrapKey => "wrapKey",
            AzureKeyPermission::UnwrapKey => "unwrapKey",
        }
    }

    /// The RBAC data action the permission corresponds to, for a vault or a Managed HSM.
    pub fn data_action(self, kind: AzureVaultKind) -> &'static str {
        match (kind, self) {
            (AzureVaultKind::ManagedHsm, AzureKeyPermission::Get) => {
                "Microsoft.KeyVault/managedHsm/keys/read/action"
            }
            (AzureVaultKind::ManagedHsm, AzureKeyPermission::WrapKey) => {
                "Microsoft.KeyVault/managedHsm/keys/wrap/action"
            }
            (AzureVaultKind::ManagedHsm, AzureKeyPermission::UnwrapKey) => {
                "Microsoft.KeyVault/managedHsm/keys/unwrap/action"
            }
            (_, AzureKeyPermission::Get) => "Microsoft.KeyVault/vaults/keys/read",
            (_, AzureKeyPermission::WrapKey) => "Microsoft.KeyVault/vaults/keys/wrap/action",
            (_, AzureKeyPermission::UnwrapKey) => "Microsoft.KeyVault/vaults/keys/unwrap/action",
        }
    }
}

/// Which of the three permissions a known built-in role carries, by role definition ID or
/// name. Roles without data actions (Owner, Contributor) grant nothing on keys under RBAC.
fn builtin_role_permissions(
    role_id: &str,
) -> Option<(&'static str, &'static [AzureKeyPermission])> {
    const ALL: &[AzureKeyPermission] = &AzureKeyPermission::ALL;
    const GET: &[AzureKeyPermission] = &[AzureKeyPermission::Get];
    const NONE: &[AzureKeyPermission] = &[];
    let (id, name) = builtin_role_id_and_name(role_id)?;
    let perms = match id {
        "21090545-7ca7-4776-b22c-e363652d74d2" => GET,
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
        | "b24988ac-6180-42a0-ab88-20f7382dd24c"
        | "acdd72a7-3385-48ef-bd42-f606fba81ae7"
        | "f25e0fa2-a7c8-4377-a976-54943a77a395"
        | "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9" => NONE,
        _ => ALL,
    };
    Some((name, perms))
}

/// The role definition ID (GUID) of a built-in role the checker knows, by display name or ID;
/// case-insensitive.
pub fn builtin_role_id(name_or_id: &str) -> Option<&'static str> {
    builtin_role_id_and_name(name_or_id).map(|(id, _)| id)
}

fn builtin_role_id_and_name(name_or_id: &str) -> Option<(&'static str, &'static str)> {
    BUILTIN_ROLES
        .iter()
        .find(|(id, name)| {
            id.eq_ignore_ascii_case(name_or_id) || name.eq_ignore_ascii_case(name_or_id)
        })
        .copied()
}

/// The built-in roles the help and the checker know: (role definition ID, display name).
const BUILTIN_ROLES: [(&str, &str); 12] = [
    (
        CRYPTO_SERVICE_ENCRYPTION_USER.id,
        CRYPTO_SERVICE_ENCRYPTION_USER.name,
    ),
    (
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Key Vault Crypto User",
    ),
    (
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        "Key Vault Crypto Officer",
    ),
    (
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Key Vault Administrator",
    ),
    ("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader"),
    (
        MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER.id,
        MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER.name,
    ),
    (
        "21dbd100-6940-42c2-9190-5d6cb909625b",
        "Managed HSM Crypto User",
    ),
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
    (
        "f25e0fa2-a7c8-4377-a976-54943a77a395",
        "Key Vault Contributor",
    ),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
    ),
];

/// The platform's identity in Azure as customers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzurePlatformApp {
    /// The application (client) ID of the platform's multi-tenant Entra ID application.
    pub client_id: String,
    /// The object ID of its service principal in the customer's tenant, when known (it differs
    /// per tenant; `az ad sp show --id <client-id> --query id` prints it).
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureRoleAssignmentHelp {
    pub role_name: String,
    pub role_definition_id: String,
    /// The key's scope: its ARM resource ID (vault) or `/keys/<name>` (Managed HSM).
    pub scope: String,
    pub principal_type: String,
    pub assignee_client_id: String,
    pub assignee_object_id: Option<String>,
    /// The ARM role assignment body (`PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{new GUID}`).
    #[schema(value_type = Object)]
    pub json: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccessPolicyHelp {
    pub key_permissions: Vec<String>,
    /// An entry of the vault's `properties.accessPolicies`.
    #[schema(value_type = Object)]
    pub json: Value,
}

/// What to grant on one key, in both of Key Vault's permission models.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureGrantHelp {
    pub key_id: String,
    pub role_assignment: AzureRoleAssignmentHelp,
    /// `None` for a Managed HSM, which has no access policies.
    pub access_policy: Option<AzureAccessPolicyHelp>,
    /// Commands to run, in order (`az` for Azure; `keyplane kms azure` for the built-in vault).
    pub commands: Vec<String>,
    pub notes: Vec<String>,
}

fn vault_scope_expr(vault: &str) -> String {
    format!("$(az keyvault show --name {vault} --query id -o tsv)")
}

/// The grant the platform needs on `key`, as JSON and as commands.
pub fn azure_grant_help(key: &AzureKeyId, app: &AzurePlatformApp) -> AzureGrantHelp {
    let key = key.versionless();
    let hsm = key.kind == AzureVaultKind::ManagedHsm;
    let role = if hsm {
        MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER
    } else {
        CRYPTO_SERVICE_ENCRYPTION_USER
    };
    let vault = key
        .vault_name
        .clone()
        .unwrap_or_else(|| "VAULT".to_string());
    let scope = if hsm {
        format!("/keys/{}", key.name)
    } else {
        format!(
            "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.KeyVault/vaults/{vault}/keys/{}",
            key.name
        )
    };
    let principal = app
        .object_id
        .clone()
        .unwrap_or_else(|| "<service-principal-object-id>".into());
    let role_definition_id = if hsm {
        format!(
            "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{}",
            role.id
        )
    } else {
        format!(
            "/subscriptions/<subscription-id>/providers/Microsoft.Authorization/roleDefinitions/{}",
            role.id
        )
    };
    let assignment_json = json!({
        "properties": {
            "roleDefinitionId": role_definition_id,
            "principalId": principal,
            "principalType": "ServicePrincipal",
            "scope": scope,
        }
    });
    let assignee = match &app.object_id {
        Some(oid) => {
            format!("--assignee-object-id {oid} --assignee-principal-type ServicePrincipal")
        }
        None => format!("--assignee {}", app.client_id),
    };
    let mut commands = Vec::new();
    let mut notes = Vec::new();
    match key.kind {
        AzureVaultKind::Dev => {
            commands.push(format!(
                "keyplane kms azure assign-role --key {key} --role \"{}\" --assignee {principal}",
                role.name
            ));
            notes.push(
                "The built-in vault enforces Azure RBAC only; access policies are not emulated."
                    .into(),
            );
        }
        AzureVaultKind::ManagedHsm => {
            commands.push(format!("az ad sp create --id {}", app.client_id));
            commands.push(format!(
                "az keyvault role assignment create --hsm-name {vault} --role \"{}\" {assignee} --scope /keys/{}",
                role.name, key.name
            ));
            notes.push("Managed HSM uses its local RBAC; it has no access policies.".into());
        }
        AzureVaultKind::Vault => {
            commands.push(format!("az ad sp create --id {}", app.client_id));
            commands.push(format!(
                "az role assignment create --role \"{}\" {assignee} --scope \"{}/keys/{}\"",
                role.name,
                vault_scope_expr(&vault),
                key.name
            ));
            let who = match &app.object_id {
                Some(oid) => format!("--object-id {oid}"),
                None => format!("--spn {}", app.client_id),
            };
            commands.push(format!(
                "# or, if the vault uses access policies instead of Azure RBAC:\naz keyvault set-policy --name {vault} {who} --key-permissions get wrapKey unwrapKey"
            ));
            notes.push(
                "`az ad sp create` creates the platform's service principal in your tenant (admin consent); skip it if it exists."
                    .into(),
            );
            notes.push(
                "Access policies grant on every key of the vault; the role assignment can be scoped to this key alone."
                    .into(),
            );
        }
    }
    notes.push(
        "Register the versionless key ID: rotation adds a version and keyplane follows it; older versions must stay enabled for existing data."
            .into(),
    );
    let access_policy = (!hsm).then(|| {
        let perms: Vec<String> = AzureKeyPermission::ALL
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        AzureAccessPolicyHelp {
            key_permissions: perms.clone(),
            json: json!({
                "tenantId": app.tenant_id.clone().unwrap_or_else(|| "<your-tenant-id>".into()),
                "objectId": principal,
                "permissions": { "keys": perms, "secrets": [], "certificates": [] },
            }),
        }
    });
    AzureGrantHelp {
        key_id: key.to_string(),
        role_assignment: AzureRoleAssignmentHelp {
            role_name: role.name.to_string(),
            role_definition_id: role.id.to_string(),
            scope,
            principal_type: "ServicePrincipal".into(),
            assignee_client_id: app.client_id.clone(),
            assignee_object_id: app.object_id.clone(),
            json: assignment_json,
        },
        access_policy,
        commands,
        notes,
    }
}

/// Which permission model the pasted document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AzurePermissionModel {
    RoleAssignments,
    AccessPolicies,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AzureFindingReason {
    /// Nothing in the document grants it to the platform.
    Missing,
    /// A matching grant exists, but for another principal.
    WrongPrincipal { principal_id: String },
    /// The platform holds a role that grants it, but on a scope that does not contain the key.
    ScopeElsewhere { scope: String },
    /// The platform holds a role on the key's scope, but the role lacks this permission.
    RoleLacks { role: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccessFinding {
    pub permission: AzureKeyPermission,
    pub reason: AzureFindingReason,
    /// One sentence telling the customer what to change.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccessReport {
    pub model: AzurePermissionModel,
    /// The permissions the platform holds on the key, by what the document says.
    pub granted: Vec<AzureKeyPermission>,
    pub findings: Vec<AzureAccessFinding>,
    /// Things the checker could not verify (conditions, custom roles, broad scopes).
    pub notes: Vec<String>,
    pub verdict_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzurePolicyError {
    #[error("the pasted text is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the pasted JSON is neither a role assignment list (`az role assignment list --scope …`) nor access policies (`az keyvault show --query properties.accessPolicies`)"
    )]
    Unrecognized,
}

fn str_field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(*n).and_then(Value::as_str))
}

/// One role assignment as the CLI (`principalId`, `roleDefinitionId`, `scope` at the top) or
/// ARM (`properties.{…}`) prints it.
struct Assignment {
    principal_id: String,
    principal_name: Option<String>,
    role: String,
    scope: String,
    condition: Option<String>,
}

fn assignment_of(v: &Value) -> Option<Assignment> {
    let p = v.get("properties").filter(|p| p.is_object()).unwrap_or(v);
    let principal_id = str_field(p, &["principalId"])?.to_string();
    let role = str_field(p, &["roleDefinitionId", "roleDefinitionName"])
        .or_else(|| str_field(v, &["roleDefinitionName"]))?;
    let role = role.rsplit('/').next().unwrap_or(role).to_string();
    let role = str_field(v, &["roleDefinitionName"])
        .filter(|_| builtin_role_permissions(&role).is_none())
        .map(str::to_string)
        .unwrap_or(role);
    Some(Assignment {
        principal_id,
        principal_name: str_field(v, &["principalName"]).map(str::to_string),
        role,
        scope: str_field(p, &["scope"]).unwrap_or("").to_string(),
        condition: str_field(p, &["condition"]).map(str::to_string),
    })
}

/// How an assignment's scope relates to the key.
#[derive(PartialEq)]
enum ScopeFit {
    Key,
    Vault,
    /// A subscription, resource group, management group or root: contains the vault if the
    /// vault lives under it, which the key URL cannot tell.
    Broad,
    Elsewhere,
}

fn scope_fit(scope: &str, key: &AzureKeyId) -> ScopeFit {
    let s = scope.trim_end_matches('/').to_ascii_lowercase();
    let name = key.name.to_ascii_lowercase();
    if key.kind == AzureVaultKind::ManagedHsm {
        return match s.as_str() {
            "" | "/keys" => ScopeFit::Vault,
            _ if s == format!("/keys/{name}") => ScopeFit::Key,
            _ => ScopeFit::Elsewhere,
        };
    }
    if s.is_empty() {
        return ScopeFit::Broad;
    }
    // A development vault's URL does not name its vault: any vault's scope may be it.
    if key.vault_name.is_none()
        && let Some((_, rest)) = s.split_once("/providers/microsoft.keyvault/vaults/")
    {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            [_vault] => ScopeFit::Vault,
            [_vault, "keys", n] if *n == name => ScopeFit::Key,
            _ => ScopeFit::Elsewhere,
        };
    }
    let vault = key
        .vault_name
        .clone()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let vault_suffix = format!("/providers/microsoft.keyvault/vaults/{vault}");
    if s.ends_with(&format!("{vault_suffix}/keys/{name}")) {
        return ScopeFit::Key;
    }
    if s.ends_with(&vault_suffix) {
        return ScopeFit::Vault;
    }
    if s.contains("/providers/microsoft.keyvault/") {
        return ScopeFit::Elsewhere;
    }
    if s.contains("/providers/") && !s.contains("/providers/microsoft.management/managementgroups/")
    {
        return ScopeFit::Elsewhere;
    }
    ScopeFit::Broad
}

fn is_platform(app: &AzurePlatformApp, principal_id: &str, principal_name: Option<&str>) -> bool {
    app.object_id
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(principal_id))
        || principal_name.is_some_and(|n| n.eq_ignore_ascii_case(&app.client_id))
        || principal_id.eq_ignore_ascii_case(&app.client_id)
}

fn items(doc: &Value) -> Option<Vec<&Value>> {
    if let Some(a) = doc.as_array() {
        return Some(a.iter().collect());
    }
    if let Some(a) = doc.get("value").and_then(Value::as_array) {
        return Some(a.iter().collect());
    }
    None
}

/// Checks a pasted role assignment list or access policy set against what the platform needs
/// on `key`.
pub fn check_azure_access(
    pasted: &str,
    key: &AzureKeyId,
    app: &AzurePlatformApp,
) -> Result<AzureAccessReport, AzurePolicyError> {
    let doc: Value =
        serde_json::from_str(pasted).map_err(|e| AzurePolicyError::NotJson(e.to_string()))?;
    // Access policies: `az keyvault show`, its properties, or the accessPolicies array.
    let props = doc.get("properties").unwrap_or(&doc);
    if let Some(policies) = props.get("accessPolicies").and_then(Value::as_array) {
        let rbac = props
            .get("enableRbacAuthorization")
            .and_then(Value::as_bool)
            == Some(true);
        return Ok(check_access_policies(
            policies.iter().collect(),
            key,
            app,
            rbac,
        ));
    }
    let list = match items(&doc) {
        Some(l) => l,
        None if doc.is_object() => vec![&doc],
        None => return Err(AzurePolicyError::Unrecognized),
    };
    if !list.is_empty() && list.iter().all(|v| v.get("permissions").is_some()) {
        return Ok(check_access_policies(list, key, app, false));
    }
    let assignments: Vec<Assignment> = list.iter().filter_map(|v| assignment_of(v)).collect();
    if assignments.len() != list.len() {
        return Err(AzurePolicyError::Unrecognized);
    }
    Ok(check_role_assignments(&assignments, key, app))
}

fn check_role_assignments(
    assignments: &[Assignment],
    key: &AzureKeyId,
    app: &AzurePlatformApp,
) -> AzureAccessReport {
    let mut granted = Vec::new();
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    for perm in AzureKeyPermission::ALL {
        let mut reason = AzureFindingReason::Missing;
        let mut ok = false;
        for a in assignments {
            let Some((role_name, perms)) = builtin_role_permissions(&a.role) else {
                if is_platform(app, &a.principal_id, a.principal_name.as_deref()) {
                    let n = format!(
                        "role {:?} is not a built-in role keyplane knows; check that it grants {}",
                        a.role,
                        perm.data_action(key.kind)
                    );
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
                continue;
            };
            let mine = is_platform(app, &a.principal_id, a.principal_name.as_deref());
            let fit = scope_fit(&a.scope, key);
            let has = perms.contains(&perm);
            match (mine, has, &fit) {
                (true, true, ScopeFit::Key | ScopeFit::Vault | ScopeFit::Broad) => {
                    ok = true;
                    if fit == ScopeFit::Broad {
                        let n = format!(
                            "{role_name} is assigned at {:?}; it covers the key only if vault {} is under that scope",
                            a.scope,
                            key.vault_name.as_deref().unwrap_or("")
                        );
                        if !notes.contains(&n) {
                            notes.push(n);
                        }
                    }
                    if let Some(c) = &a.condition {
                        let n = format!(
                            "{role_name} carries the condition {c:?}, which the checker does not evaluate"
                        );
                        if !notes.contains(&n) {
                            notes.push(n);
                        }
                    }
                }
                (true, true, ScopeFit::Elsewhere) => {
                    reason = AzureFindingReason::ScopeElsewhere {
                        scope: a.scope.clone(),
                    }
                }
                (true, false, ScopeFit::Key | ScopeFit::Vault | ScopeFit::Broad)
                    if !matches!(reason, AzureFindingReason::ScopeElsewhere { .. }) =>
                {
                    reason = AzureFindingReason::RoleLacks {
                        role: role_name.to_string(),
                    };
                }
                (false, true, ScopeFit::Key | ScopeFit::Vault)
                    if reason == AzureFindingReason::Missing =>
                {
                    reason = AzureFindingReason::WrongPrincipal {
                        principal_id: a.principal_id.clone(),
                    }
                }
                _ => {}
            }
            if ok {
                break;
            }
        }
        if ok {
            granted.push(perm);
            continue;
        }
        let role = if key.kind == AzureVaultKind::ManagedHsm {
            MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER.name
        } else {
            CRYPTO_SERVICE_ENCRYPTION_USER.name
        };
        let who = app.object_id.as_deref().unwrap_or(&app.client_id);
        let message = match &reason {
            AzureFindingReason::Missing => format!(
                "no role assignment gives the platform ({who}) {}; assign \"{role}\" on the key",
                perm.as_str()
            ),
            AzureFindingReason::WrongPrincipal { principal_id } => format!(
                "a role with {} is assigned to {principal_id}, not to the platform's service principal ({who}); assign \"{role}\" to {who}",
                perm.as_str()
            ),
            AzureFindingReason::ScopeElsewhere { scope } => format!(
                "the platform's role is scoped to {scope}, which does not contain key {}; assign \"{role}\" with the key as scope",
                key.name
            ),
            AzureFindingReason::RoleLacks { role: held } => format!(
                "the platform holds \"{held}\", which has no {}; assign \"{role}\" instead",
                perm.as_str()
            ),
        };
        findings.push(AzureAccessFinding {
            permission: perm,
            reason,
            message,
        });
    }
    AzureAccessReport {
        model: AzurePermissionModel::RoleAssignments,
        verdict_ok: findings.is_empty(),
        granted,
        findings,
        notes,
    }
}

fn check_access_policies(
    policies: Vec<&Value>,
    key: &AzureKeyId,
    app: &AzurePlatformApp,
    vault_uses_rbac: bool,
) -> AzureAccessReport {
    let mut notes = Vec::new();
    if vault_uses_rbac {
        notes.push(
            "the vault has enableRbacAuthorization = true: access policies are ignored; paste `az role assignment list --scope <key scope>` instead"
                .to_string(),
        );
    }
    if key.kind == AzureVaultKind::ManagedHsm {
        notes.push("a Managed HSM has no access policies; it uses local RBAC".to_string());
    }
    let mut own: Vec<Vec<String>> = Vec::new();
    let mut others = Vec::new();
    for p in &policies {
        let oid = str_field(p, &["objectId"]).unwrap_or("");
        let keys: Vec<String> = p
            .get("permissions")
            .and_then(|x| x.get("keys"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if is_platform(app, oid, None) {
            if let (Some(t), Some(want)) = (str_field(p, &["tenantId"]), &app.tenant_id)
                && !t.eq_ignore_ascii_case(want)
            {
                notes.push(format!(
                    "the platform's access policy names tenant {t}, not {want}"
                ));
            }
            own.push(keys);
        } else {
            others.push((oid.to_string(), keys));
        }
    }
    let has = |keys: &Vec<String>, perm: AzureKeyPermission| {
        keys.iter()
            .any(|k| k == "all" || *k == perm.as_str().to_ascii_lowercase())
    };
    let mut granted = Vec::new();
    let mut findings = Vec::new();
    let who = app.object_id.as_deref().unwrap_or(&app.client_id);
    for perm in AzureKeyPermission::ALL {
        if !vault_uses_rbac
            && key.kind != AzureVaultKind::ManagedHsm
            && own.iter().any(|k| has(k, perm))
        {
            granted.push(perm);
            continue;
        }
        let (reason, message) = if let Some((oid, _)) = others
            .iter()
            .find(|(_, k)| has(k, perm))
            .filter(|_| own.is_empty())
        {
            (
                AzureFindingReason::WrongPrincipal {
                    principal_id: oid.clone(),
                },
                format!(
                    "the access policy with key permission {} is for {oid}, not for the platform's service principal ({who}); add one for {who}",
                    perm.as_str()
                ),
            )
        } else if own.is_empty() {
            (
                AzureFindingReason::Missing,
                format!(
                    "no access policy for the platform ({who}); add one with key permissions get, wrapKey, unwrapKey"
                ),
            )
        } else {
            (
                AzureFindingReason::Missing,
                format!(
                    "the platform's access policy lacks key permission {}; add it",
                    perm.as_str()
                ),
            )
        };
        findings.push(AzureAccessFinding {
            permission: perm,
            reason,
            message,
        });
    }
    AzureAccessReport {
        model: AzurePermissionModel::AccessPolicies,
        verdict_ok: findings.is_empty(),
        granted,
        findings,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "7f3c2a10-0000-4000-8000-0000000002a0";
    const APP: &str = "7f3c2a10-0000-4000-8000-000000000222";
    const KEY_SCOPE: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso/keys/db-key";

    fn app() -> AzurePlatformApp {
        AzurePlatformApp {
            client_id: APP.into(),
            object_id: Some(OID.into()),
            tenant_id: Some("t1".into()),
        }
    }

    fn key() -> AzureKeyId {
        "https://contoso.vault.azure.net/keys/db-key"
            .parse()
            .unwrap()
    }

    fn cli_assignment(principal: &str, role_id: &str, scope: &str) -> Value {
        json!({
            "principalId": principal,
            "principalType": "ServicePrincipal",
            "roleDefinitionId": format!("/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/{role_id}"),
            "roleDefinitionName": "whatever",
            "scope": scope,
        })
    }

    #[test]
    fn help_names_the_role_its_id_the_key_scope_and_the_three_permissions() {
        let h = azure_grant_help(&key(), &app());
        assert_eq!(
            h.role_assignment.role_name,
            "Key Vault Crypto Service Encryption User"
        );
        assert_eq!(
            h.role_assignment.role_definition_id,
            CRYPTO_SERVICE_ENCRYPTION_USER.id
        );
        assert!(
            h.role_assignment
                .scope
                .ends_with("/vaults/contoso/keys/db-key")
        );
        assert_eq!(h.role_assignment.json["properties"]["principalId"], OID);
        let ap = h.access_policy.unwrap();
        assert_eq!(ap.key_permissions, vec!["get", "wrapKey", "unwrapKey"]);
        assert_eq!(ap.json["objectId"], OID);
        assert!(
            h.commands
                .iter()
                .any(|c| c.starts_with("az role assignment create")
                    && c.contains("--assignee-object-id 7f3c2a10-0000-4000-8000-0000000002a0")
                    && c.contains("/keys/db-key"))
        );
        assert!(h.commands.iter().any(|c| {
            c.contains("az keyvault set-policy --name contoso --object-id")
                && c.contains("--key-permissions get wrapKey unwrapKey")
        }));

        let hsm: AzureKeyId =
            "https://pool.managedhsm.azure.net/keys/aes/78deebed173b48e48f55abf87ed4cf71"
                .parse()
                .unwrap();
        let h = azure_grant_help(
            &hsm,
            &AzurePlatformApp {
                object_id: None,
                ..app()
            },
        );
        assert_eq!(h.key_id, "https://pool.managedhsm.azure.net/keys/aes");
        assert_eq!(h.role_assignment.scope, "/keys/aes");
        assert!(h.access_policy.is_none());
        assert!(
            h.commands
                .iter()
                .any(|c| c.contains("--hsm-name pool") && c.contains(&format!("--assignee {APP}")))
        );
    }

    #[test]
    fn role_assignment_on_the_key_vault_or_broader_grants_everything() {
        for scope in [
            KEY_SCOPE.to_string(),
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso"
                .into(),
            "/subscriptions/s1".into(),
        ] {
            let doc = json!([cli_assignment(
                OID,
                CRYPTO_SERVICE_ENCRYPTION_USER.id,
                &scope
            )])
            .to_string();
            let r = check_azure_access(&doc, &key(), &app()).unwrap();
            assert!(r.verdict_ok, "{scope}: {r:?}");
            assert_eq!(r.granted, AzureKeyPermission::ALL.to_vec());
            assert_eq!(r.model, AzurePermissionModel::RoleAssignments);
            assert_eq!(scope == "/subscriptions/s1", !r.notes.is_empty(), "{r:?}");
        }
        // The ARM REST shape works the same.
        let arm = json!({"value": [{"id": "x", "name": "g", "properties": {
            "roleDefinitionId": format!("/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/{}", CRYPTO_SERVICE_ENCRYPTION_USER.id),
            "principalId": OID, "scope": KEY_SCOPE }}]});
        assert!(
            check_azure_access(&arm.to_string(), &key(), &app())
                .unwrap()
                .verdict_ok
        );
    }

    #[test]
    fn role_assignment_problems_are_named() {
        // Nothing at all.
        let r = check_azure_access("[]", &key(), &app()).unwrap();
        assert_eq!(r.findings.len(), 3);
        assert!(
            r.findings
                .iter()
                .all(|f| f.reason == AzureFindingReason::Missing)
        );
        assert!(
            r.findings[0]
                .message
                .contains("Key Vault Crypto Service Encryption User")
        );
        // Someone else holds the role.
        let doc = json!([cli_assignment(
            "someone",
            CRYPTO_SERVICE_ENCRYPTION_USER.id,
            KEY_SCOPE
        )])
        .to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(matches!(
            r.findings[0].reason,
            AzureFindingReason::WrongPrincipal { .. }
        ));
        // The platform holds it on another key.
        let other = KEY_SCOPE.replace("db-key", "other-key");
        let doc = json!([cli_assignment(
            OID,
            CRYPTO_SERVICE_ENCRYPTION_USER.id,
            &other
        )])
        .to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(matches!(
            r.findings[0].reason,
            AzureFindingReason::ScopeElsewhere { .. }
        ));
        // Reader only reads.
        let doc = json!([cli_assignment(
            OID,
            "21090545-7ca7-4776-b22c-e363652d74d2",
            KEY_SCOPE
        )])
        .to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert_eq!(r.granted, vec![AzureKeyPermission::Get]);
        assert_eq!(r.findings.len(), 2);
        assert!(
            matches!(&r.findings[0].reason, AzureFindingReason::RoleLacks { role } if role == "Key Vault Reader")
        );
        // Owner has no data actions.
        let doc = json!([cli_assignment(
            OID,
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            KEY_SCOPE
        )])
        .to_string();
        assert_eq!(
            check_azure_access(&doc, &key(), &app())
                .unwrap()
                .findings
                .len(),
            3
        );
        // A custom role is noted, not trusted.
        let doc = json!([cli_assignment(
            OID,
            "0000aaaa-0000-4000-8000-000000000000",
            KEY_SCOPE
        )])
        .to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(!r.verdict_ok && r.notes.iter().any(|n| n.contains("not a built-in role")));
    }

    #[test]
    fn principal_name_matches_the_client_id_when_the_object_id_is_unknown() {
        let mut a = cli_assignment(
            "tenant-local-oid",
            CRYPTO_SERVICE_ENCRYPTION_USER.id,
            KEY_SCOPE,
        );
        a["principalName"] = json!(APP);
        let doc = json!([a]).to_string();
        let app = AzurePlatformApp {
            object_id: None,
            ..app()
        };
        assert!(check_azure_access(&doc, &key(), &app).unwrap().verdict_ok);
    }

    #[test]
    fn access_policies_are_checked_per_permission() {
        let policy = |oid: &str, keys: &[&str]| json!({"tenantId": "t1", "objectId": oid, "permissions": {"keys": keys, "secrets": []}});
        let doc = json!([policy(OID, &["Get", "WrapKey", "UnwrapKey"])]).to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(
            r.verdict_ok && r.model == AzurePermissionModel::AccessPolicies,
            "{r:?}"
        );
        let doc = json!({"properties": {"accessPolicies": [policy(OID, &["get", "wrapKey"])]}})
            .to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].permission, AzureKeyPermission::UnwrapKey);
        assert!(
            r.findings[0]
                .message
                .contains("lacks key permission unwrapKey")
        );
        let doc = json!([policy("someone", &["all"])]).to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(matches!(
            r.findings[0].reason,
            AzureFindingReason::WrongPrincipal { .. }
        ));
        // A vault in RBAC mode ignores its access policies.
        let doc = json!({"properties": {"enableRbacAuthorization": true, "accessPolicies": [policy(OID, &["all"])]}}).to_string();
        let r = check_azure_access(&doc, &key(), &app()).unwrap();
        assert!(!r.verdict_ok && r.notes[0].contains("enableRbacAuthorization"));
    }

    #[test]
    fn managed_hsm_local_rbac_scopes() {
        let hsm: AzureKeyId = "https://pool.managedhsm.azure.net/keys/aes"
            .parse()
            .unwrap();
        let role = MANAGED_HSM_CRYPTO_SERVICE_ENCRYPTION_USER;
        for (scope, ok) in [
            ("/keys/aes", true),
            ("/", true),
            ("/keys", true),
            ("/keys/other", false),
        ] {
            let doc = json!([{"principalId": OID, "roleDefinitionId": format!("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{}", role.id), "roleDefinitionName": role.name, "scope": scope}]).to_string();
            assert_eq!(
                check_azure_access(&doc, &hsm, &app()).unwrap().verdict_ok,
                ok,
                "{scope}"
            );
        }
    }

    #[test]
    fn builtin_roles_by_name_or_id() {
        assert_eq!(
            builtin_role_id("key vault crypto service encryption user"),
            Some(CRYPTO_SERVICE_ENCRYPTION_USER.id)
        );
        assert_eq!(
            builtin_role_id("8E3AF657-A8FF-443C-A75C-2FE8C4BCB635"),
            Some("8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
        );
        assert_eq!(builtin_role_id("Storage Blob Data Reader"), None);
    }

    #[test]
    fn garbage_is_refused_clearly() {
        assert!(matches!(
            check_azure_access("nope", &key(), &app()),
            Err(AzurePolicyError::NotJson(_))
        ));
        assert_eq!(
            check_azure_access("[{\"x\":1}]", &key(), &app()),
            Err(AzurePolicyError::Unrecognized)
        );
        assert_eq!(
            check_azure_access("42", &key(), &app()),
            Err(AzurePolicyError::Unrecognized)
        );
    }
}
