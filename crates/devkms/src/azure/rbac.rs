//! Azure RBAC as the built-in vault enforces it: the built-in role definitions (data actions for
//! the key operations, management actions for writing role assignments), the check every
//! request passes (an assignment of the caller whose scope contains the resource and whose role
//! grants the action), and the ARM routes that create, list and delete role assignments
//! (`…/providers/Microsoft.Authorization/roleAssignments[/{guid}]`).

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::VaultError;
use super::state::{AzureState, RoleAssignment};
use super::{Caller, Ctx};

/// A built-in role: what it lets its holder do on the management plane (`actions`) and on
/// the data plane (`data_actions`), as wildcard patterns.
pub(crate) struct RoleDefinition {
    pub id: &'static str,
    pub name: &'static str,
    pub actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
}

pub(crate) const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub(crate) const KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";

pub(crate) const ROLES: &[RoleDefinition] = &[
    RoleDefinition {
        id: OWNER,
        name: "Owner",
        actions: &["*"],
        data_actions: &[],
    },
    RoleDefinition {
        id: "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        name: "User Access Administrator",
        actions: &["*/read", "Microsoft.Authorization/*"],
        data_actions: &[],
    },
    RoleDefinition {
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        name: "Reader",
        actions: &["*/read"],
        data_actions: &[],
    },
    RoleDefinition {
        id: KEY_VAULT_ADMINISTRATOR,
        name: "Key Vault Administrator",
        actions: &["Microsoft.Authorization/*/read", "Microsoft.KeyVault/*"],
        data_actions: &["Microsoft.KeyVault/vaults/*"],
    },
    RoleDefinition {
        id: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        name: "Key Vault Crypto Officer",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.KeyVault/*/read",
        ],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
        ],
    },
    RoleDefinition {
        id: "12338af0-0e69-4776-bea7-57ae8d297424",
        name: "Key Vault Crypto User",
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
    },
    RoleDefinition {
        id: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        name: "Key Vault Crypto Service Encryption User",
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
        ],
    },
    RoleDefinition {
        id: "21090545-7ca7-4776-b22c-e363652d74d2",
        name: "Key Vault Reader",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.KeyVault/*/read",
        ],
        data_actions: &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
];

pub(crate) fn role(id_or_name: &str) -> Option<&'static RoleDefinition> {
    let id = id_or_name.rsplit('/').next().unwrap_or(id_or_name);
    ROLES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id) || r.name.eq_ignore_ascii_case(id_or_name))
}

/// Azure's action patterns: `*` matches any run of characters, comparison ignores case.
fn action_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let mut rest = a.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// True when an assignment at `scope` applies to `resource`.
pub(crate) fn scope_contains(scope: &str, resource: &str) -> bool {
    let s = scope.trim_end_matches('/').to_ascii_lowercase();
    let r = resource.trim_end_matches('/').to_ascii_lowercase();
    s.is_empty() || r == s || r.starts_with(&format!("{s}/"))
}

/// Whether `principal` may perform `action` (a data action when `data`) on `resource`.
pub(crate) fn allowed(
    st: &AzureState,
    principal: &str,
    action: &str,
    resource: &str,
    data: bool,
) -> bool {
    st.role_assignments.iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(principal)
            && scope_contains(&a.scope, resource)
            && role(&a.role_definition_id).is_some_and(|r| {
                let patterns = if data { r.data_actions } else { r.actions };
                patterns.iter().any(|p| action_matches(p, action))
            })
    })
}

/// Refuses a data-plane request the caller's roles do not cover, in Key Vault's words.
pub(crate) fn authorize(
    ctx: &Ctx,
    st: &AzureState,
    caller: &Caller,
    action: &str,
    resource: &str,
) -> Result<(), VaultError> {
    if allowed(st, &caller.object_id, action, resource, true) {
        return Ok(());
    }
    let tenant = st.directory.as_ref().map_or("", |d| d.tenant_id.as_str());
    let who = match &caller.app_id {
        Some(app) => format!("appid={app};oid={}", caller.object_id),
        None => format!("oid={}", caller.object_id),
    };
    Err(VaultError::forbidden(
        format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: {who};iss=https://sts.windows.net/{tenant}/\r\nAction: '{action}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {};location={}\r\n",
            resource.to_ascii_lowercase(),
            ctx.vault,
            ctx.location
        ),
        "ForbiddenByRbac",
    ))
}

/// The ARM ID of a vault and of one of its keys.
pub(crate) fn vault_scope(st: &AzureState, vault: &str) -> String {
    let (sub, rg) = st.directory.as_ref().map_or(("", ""), |d| {
        (d.subscription_id.as_str(), d.resource_group.as_str())
    });
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}")
}

pub(crate) fn key_scope(st: &AzureState, vault: &str, key: &str) -> String {
    format!("{}/keys/{key}", vault_scope(st, vault))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentProperties {
    role_definition_id: String,
    principal_id: String,
    #[serde(default)]
    principal_type: Option<String>,
}

#[derive(Deserialize)]
struct AssignmentBody {
    properties: AssignmentProperties,
}

fn arm_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> VaultError {
    VaultError::new(status, code, message)
}

fn assignment_json(st: &AzureState, a: &RoleAssignment) -> Value {
    let sub = st
        .directory
        .as_ref()
        .map_or("", |d| d.subscription_id.as_str());
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope, a.name),
        "name": a.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}", a.role_definition_id),
            "roleDefinitionName": role(&a.role_definition_id).map(|r| r.name),
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": a.scope,
            "condition": null,
            "createdOn": chrono::DateTime::from_timestamp(a.created_on, 0).map(|d| d.to_rfc3339()),
        }
    })
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// `GET|PUT|DELETE {scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`.
pub(crate) fn role_assignments(
    ctx: &Ctx,
    caller: &Caller,
    method: &Method,
    scope: &str,
    name: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    let vault_scope_now = vault_scope(&ctx.inner.read().azure, &ctx.vault);
    if !scope_contains(&vault_scope_now, scope) && !scope_contains(scope, &vault_scope_now) {
        return Err(arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The scope '{scope}' is not this vault or one of its keys, nor a scope above it."
            ),
        ));
    }
    let write_action = if *method == Method::DELETE {
        "Microsoft.Authorization/roleAssignments/delete"
    } else {
        "Microsoft.Authorization/roleAssignments/write"
    };
    let (needed, what) = match *method {
        Method::GET => ("Microsoft.Authorization/roleAssignments/read", "read"),
        _ => (write_action, "write"),
    };
    {
        let st = ctx.inner.read();
        if !allowed(&st.azure, &caller.object_id, needed, scope, false) {
            return Err(arm_error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                format!(
                    "The client with object id '{}' does not have authorization to perform action '{needed}' over scope '{scope}' or the scope is invalid. ({what})",
                    caller.object_id
                ),
            ));
        }
    }
    match (method.clone(), name) {
        (Method::GET, None) => {
            let st = ctx.inner.read();
            // Like `az role assignment list --scope`: assignments at, above and below the scope.
            let value: Vec<Value> = st
                .azure
                .role_assignments
                .iter()
                .filter(|a| scope_contains(&a.scope, scope) || scope_contains(scope, &a.scope))
                .map(|a| assignment_json(&st.azure, a))
                .collect();
            Ok((StatusCode::OK, json!({ "value": value })))
        }
        (Method::GET, Some(n)) => {
            let st = ctx.inner.read();
            st.azure
                .role_assignments
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(n) && a.scope.eq_ignore_ascii_case(scope))
                .map(|a| (StatusCode::OK, assignment_json(&st.azure, a)))
                .ok_or_else(|| {
                    arm_error(
                        StatusCode::NOT_FOUND,
                        "RoleAssignmentNotFound",
                        format!("The role assignment '{n}' is not found."),
                    )
                })
        }
        (Method::PUT, Some(n)) => {
            if !is_guid(n) {
                return Err(arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRoleAssignmentId",
                    format!(
                        "The role assignment ID '{n}' is not valid. The role assignment ID must be a GUID."
                    ),
                ));
            }
            let b: AssignmentBody = serde_json::from_slice(body).map_err(|e| {
                arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    format!("The request content was invalid: {e}"),
                )
            })?;
            let Some(r) = role(&b.properties.role_definition_id) else {
                return Err(arm_error(
                    StatusCode::BAD_REQUEST,
                    "RoleDefinitionDoesNotExist",
                    format!(
                        "The specified role definition with ID '{}' does not exist.",
                        b.properties.role_definition_id
                    ),
                ));
            };
            let mut st = ctx.inner.write();
            let Some(principal) = st
                .azure
                .directory
                .as_ref()
                .and_then(|d| d.principal(&b.properties.principal_id))
                .cloned()
            else {
                return Err(arm_error(
                    StatusCode::BAD_REQUEST,
                    "PrincipalNotFound",
                    format!(
                        "Principal {} does not exist in the directory.",
                        b.properties.principal_id
                    ),
                ));
            };
            let principal_type = b
                .properties
                .principal_type
                .unwrap_or_else(|| principal.kind.as_str().to_string());
            if principal_type != principal.kind.as_str() {
                return Err(arm_error(
                    StatusCode::BAD_REQUEST,
                    "PrincipalTypeMismatch",
                    format!(
                        "Principal {} is a {}, not a {principal_type}.",
                        principal.object_id,
                        principal.kind.as_str()
                    ),
                ));
            }
            if let Some(existing) = st.azure.role_assignments.iter().find(|a| {
                a.scope.eq_ignore_ascii_case(scope)
                    && a.principal_id.eq_ignore_ascii_case(&principal.object_id)
                    && a.role_definition_id.eq_ignore_ascii_case(r.id)
            }) {
                if !existing.name.eq_ignore_ascii_case(n) {
                    return Err(arm_error(
                        StatusCode::CONFLICT,
                        "RoleAssignmentExists",
                        format!(
                            "The role assignment already exists. The ID of the existing role assignment is {}.",
                            existing.name
                        ),
                    ));
                }
                let v = assignment_json(&st.azure, existing);
                return Ok((StatusCode::CREATED, v));
            }
            let a = RoleAssignment {
                name: n.to_ascii_lowercase(),
                scope: scope.to_string(),
                role_definition_id: r.id.to_string(),
                principal_id: principal.object_id.clone(),
                principal_type,
                created_on: ctx.inner.now() as i64,
            };
            let v = assignment_json(&st.azure, &a);
            st.azure.role_assignments.push(a);
            ctx.inner
                .commit(st)
                .map_err(|e| VaultError::internal(e.message))?;
            Ok((StatusCode::CREATED, v))
        }
        (Method::DELETE, Some(n)) => {
            let mut st = ctx.inner.write();
            let Some(i) = st.azure.role_assignments.iter().position(|a| {
                a.name.eq_ignore_ascii_case(n) && a.scope.eq_ignore_ascii_case(scope)
            }) else {
                // ARM answers 204 for an assignment that is already gone.
                return Ok((StatusCode::NO_CONTENT, Value::Null));
            };
            let a = st.azure.role_assignments.remove(i);
            let v = assignment_json(&st.azure, &a);
            ctx.inner
                .commit(st)
                .map_err(|e| VaultError::internal(e.message))?;
            Ok((StatusCode::OK, v))
        }
        _ => Err(arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The requested method is not allowed on role assignments.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_scopes() {
        assert!(action_matches(
            "*",
            "Microsoft.Authorization/roleAssignments/write"
        ));
        assert!(action_matches(
            "Microsoft.KeyVault/vaults/*",
            "microsoft.keyvault/vaults/keys/wrap/action"
        ));
        assert!(action_matches(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/keys/read"
        ));
        assert!(!action_matches(
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action"
        ));
        assert!(!action_matches(
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/read/x"
        ));
        assert!(action_matches(
            "*/read",
            "Microsoft.Authorization/roleAssignments/read"
        ));
        assert!(!action_matches(
            "*/read",
            "Microsoft.Authorization/roleAssignments/write"
        ));
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v";
        assert!(scope_contains("/subscriptions/s", vault));
        assert!(scope_contains(vault, &format!("{vault}/keys/k")));
        assert!(!scope_contains(&format!("{vault}/keys/k"), vault));
        assert!(!scope_contains(
            &format!("{vault}/keys/k"),
            &format!("{vault}/keys/k2")
        ));
        assert!(scope_contains("/", vault));
        assert_eq!(
            role("Key Vault Crypto Service Encryption User").map(|r| r.id),
            Some("e147488a-f6f5-4113-8e2d-b22465e65bf6")
        );
        assert!(role("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635").is_some());
    }
}
