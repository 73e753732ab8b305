//! Azure RBAC role assignments through the ARM REST API
//! (`{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`, api-version
//! 2022-04-01): what the customer runs to let the platform use a key, used by
//! `keyplane kms azure assign-role|remove-role|list-roles` against the built-in vault and by
//! tests. The platform itself never calls ARM.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use keyplane_kms::{ErrorKind, KmsError, Result};
use serde_json::{Value, json};

use crate::VaultClients;
use crate::errors::{kind_for, parse_body};

const API_VERSION: &str = "2022-04-01";
/// The audience of ARM tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// Azure public cloud's ARM endpoint.
pub const ARM_ENDPOINT: &str = "https://management.azure.com";

/// Role assignments at one ARM endpoint, as one identity.
pub struct RoleAssignments {
    http: reqwest::Client,
    endpoint: String,
    credential: Arc<dyn TokenCredential>,
}

impl std::fmt::Debug for RoleAssignments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleAssignments")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl RoleAssignments {
    /// `endpoint`: [`ARM_ENDPOINT`], or the built-in vault's URL (it serves the ARM routes too).
    pub fn new(
        clients: &VaultClients,
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> RoleAssignments {
        RoleAssignments {
            http: clients.http().clone(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            credential,
        }
    }

    async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let token = self
            .credential
            .get_token(&[ARM_SCOPE], None)
            .await
            .map_err(|e| {
                KmsError::new(
                    ErrorKind::Credentials,
                    operation,
                    format!("could not get a token: {e}"),
                )
            })?;
        let url = format!("{}{path}?api-version={API_VERSION}", self.endpoint);
        let mut req = self
            .http
            .request(method, &url)
            .header("authorization", format!("Bearer {}", token.token.secret()));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let rsp = req.send().await.map_err(|e| {
            KmsError::new(
                ErrorKind::Unreachable,
                operation,
                format!("could not reach {}: {e}", self.endpoint),
            )
        })?;
        let status = rsp.status().as_u16();
        let bytes = rsp.bytes().await.map_err(|e| {
            KmsError::new(
                ErrorKind::Unreachable,
                operation,
                format!("reading the answer: {e}"),
            )
        })?;
        if (200..300).contains(&status) {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        let b = parse_body(&bytes);
        let kind = match (status, b.code.as_str()) {
            (403, "AuthorizationFailed") => ErrorKind::AccessDenied {
                action: "Microsoft.Authorization/roleAssignments/write".into(),
            },
            (409, _) => ErrorKind::Invalid,
            _ => kind_for(operation, status, &b),
        };
        Err(KmsError::new(
            kind,
            operation,
            format!("HTTP {status} {}: {}", b.code, b.message),
        ))
    }

    /// `GET {scope}/providers/Microsoft.Authorization/roleAssignments`: ARM's `{"value": […]}`,
    /// which the policy checker accepts as pasted.
    pub async fn list(&self, scope: &str) -> Result<Value> {
        self.send(
            "ListRoleAssignments",
            reqwest::Method::GET,
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                scope.trim_end_matches('/')
            ),
            None,
        )
        .await
    }

    /// Assigns `role_definition_id` (a GUID) to `principal_id` at `scope`; returns the
    /// assignment.
    pub async fn create(
        &self,
        scope: &str,
        role_definition_id: &str,
        principal_id: &str,
        principal_type: &str,
    ) -> Result<Value> {
        let subscription = scope
            .split('/')
            .skip_while(|s| !s.eq_ignore_ascii_case("subscriptions"))
            .nth(1)
            .unwrap_or("");
        let name = uuid::Uuid::new_v4();
        self.send(
            "CreateRoleAssignment",
            reqwest::Method::PUT,
            &format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}", scope.trim_end_matches('/')),
            Some(json!({
                "properties": {
                    "roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_id}"),
                    "principalId": principal_id,
                    "principalType": principal_type,
                }
            })),
        )
        .await
    }

    /// Deletes the assignment named `name` (a GUID) at `scope`.
    pub async fn delete(&self, scope: &str, name: &str) -> Result<()> {
        self.send(
            "DeleteRoleAssignment",
            reqwest::Method::DELETE,
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                scope.trim_end_matches('/')
            ),
            None,
        )
        .await
        .map(|_| ())
    }
}
