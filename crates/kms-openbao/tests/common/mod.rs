//! The customer's side of every OpenBao test: a real `bao server -dev`, a Transit key, and the
//! platform's AppRole made by running the exact commands keyplane's policy help prints.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use keyplane_core::OpenbaoRole;
use keyplane_core::openbao::OpenbaoKeyRef;
use keyplane_core::policy::openbao::{BaoCommand, openbao_policy_help};
pub use keyplane_kms::{EncryptionContext, ErrorKind, KeyProvider, KmsError};
pub use keyplane_kms_openbao::*;
pub use keyplane_testkit::BaoServer;
use zeroize::Zeroizing;

pub const REGION: &str = "us-east-2";
pub const ROLE: &str = "keyplane";

/// Retries short enough that a refused or unreachable call fails within a few seconds.
pub fn quick_retries() -> RetrySettings {
    RetrySettings {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        attempt_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
    }
}

pub fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the customer set up and hands to keyplane.
pub struct Customer {
    pub bao: BaoServer,
    pub key: OpenbaoKeyRef,
    pub role: OpenbaoRole,
    pub role_id: String,
    pub secret_id: String,
    /// The policy help's policy name and text, as applied.
    pub policy_name: String,
    pub policy_hcl: String,
}

impl Customer {
    /// A Transit mount `transit`, key `name` of `key_type` (with `extra` key options), the
    /// AppRole method, and the platform's role bound to keyplane's policy, all as the policy
    /// help says.
    pub async fn new(bao: BaoServer, name: &str, key_type: &str, extra: &[&str]) -> Customer {
        bao.bao(&["secrets", "enable", "transit"]).await;
        bao.bao(&["auth", "enable", "approle"]).await;
        let key_id = format!("{}/v1/transit/keys/{name}", bao.address);
        Customer::with_key(bao, &key_id, None, key_type, extra).await
    }

    /// Creates the key named by `key_id` (its mount and auth method must exist) and binds the
    /// platform's role to keyplane's policy for it.
    pub async fn with_key(
        bao: BaoServer,
        key_id: &str,
        namespace: Option<&str>,
        key_type: &str,
        extra: &[&str],
    ) -> Customer {
        let key = OpenbaoKeyRef::parse_in_namespace(key_id, namespace).unwrap();
        let mut create = vec![];
        let ns_flag = namespace.map(|ns| format!("-namespace={ns}"));
        create.push("write".to_string());
        create.extend(ns_flag.clone());
        create.push(key.path(keyplane_core::openbao::TransitEndpoint::ReadKey));
        create.push(format!("type={key_type}"));
        create.extend(extra.iter().map(|s| s.to_string()));
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        bao.bao(&create).await;
        let role = OpenbaoRole::approle(None, ROLE).unwrap();
        let help = openbao_policy_help(&key, &role);
        let mut outputs = Vec::new();
        for cmd in &help.commands {
            outputs.push(run(&bao, cmd).await);
        }
        Customer {
            role_id: outputs[2].trim().to_string(),
            secret_id: outputs[3].trim().to_string(),
            bao,
            key,
            role,
            policy_name: help.policy_name,
            policy_hcl: help.policy_hcl,
        }
    }

    pub fn key_id(&self) -> String {
        self.key.to_string()
    }

    /// Another key ID on the same mount.
    pub fn other_key_id(&self, name: &str) -> String {
        format!("{}{}/keys/{name}", self.key.api_base(), self.key.mount())
    }

    pub fn access(&self) -> OpenbaoAccess {
        let mut a = OpenbaoAccess::for_key(
            &self.key,
            self.role.clone(),
            Zeroizing::new(self.role_id.clone()),
            Zeroizing::new(self.secret_id.clone()),
        );
        if let Some(ca) = &self.bao.ca_pem {
            a = a.with_ca_bundle(ca.clone());
        }
        a
    }

    /// The platform's provider for this customer's key, fresh (its own session).
    pub fn platform(&self) -> Arc<OpenbaoKeyProvider> {
        Arc::new(
            build_provider(
                &self.access(),
                REGION,
                &OpenbaoSettings {
                    retry: quick_retries(),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }

    /// `bao <args>` as the customer.
    pub async fn bao(&self, args: &[&str]) -> String {
        self.bao.bao(args).await
    }
}

/// Runs one of the policy help's commands exactly as shown (arguments and stdin).
pub async fn run(bao: &BaoServer, cmd: &BaoCommand) -> String {
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    let out = bao.try_bao_with(&args, cmd.stdin.as_deref(), None).await;
    assert!(
        out.ok,
        "the policy help's command `{cmd}` failed: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

pub fn kind(r: Result<impl std::fmt::Debug, KmsError>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind,
    }
}

pub fn denied(action: &str) -> ErrorKind {
    ErrorKind::AccessDenied {
        action: action.to_string(),
    }
}
