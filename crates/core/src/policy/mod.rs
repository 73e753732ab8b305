//! Key-policy analysis. AWS KMS: parsing and validating a key policy the way PutKeyPolicy does,
//! evaluating a request against it the way KMS does, and checking whether a customer's policy
//! lets the platform's role do everything it needs before the customer registers the key, and
//! merging the platform's grants into a customer's policy (every key service's format).
//!
//! The built-in dev KMS and the registration endpoint both rely on this module, so the two can
//! never disagree about whether a policy works. OpenBao/Vault Transit policies (HCL) have
//! their own help and checker in [`openbao`], Google Cloud KMS IAM policies in [`gcp`], and
//! Azure Key Vault role assignments and access policies in [`azure`].

pub mod azure;
mod checker;
mod condition;
mod document;
mod evaluate;
pub mod gcp;
mod matching;
mod merge;
pub mod openbao;
mod ordered_json;

pub use checker::{
    CheckReport, DESCRIBE_STATEMENT_SID, Finding, FindingReason, GRANT_MANAGEMENT_STATEMENT_SID,
    GRANT_STATEMENT_SID, ORGANIZATION_CONTEXT_KEY, Requirement, USE_STATEMENT_SID, check_policy,
    organization_condition, platform_requirements, provider_session_caller, recommended_statements,
    recommended_statements_bound,
};
pub use condition::{BaseOperator, Condition, Operator, SetQualifier};
pub use document::{
    KeyPolicy, MAX_POLICY_BYTES, NameList, PrincipalEntry, PrincipalSet, Statement,
};
pub use evaluate::{
    Caller, Decision, Evaluation, Request, StatementTrace, evaluate, lockout_check,
};
pub use merge::{
    AwsKeyPolicyMerge, AzureRoleAssignmentsMerge, GcpIamPolicyMerge, MergeChange, MergeOutcome,
    MergedPolicy, OpenbaoPolicyMerge, PolicyFormat, PolicyMerge, policy_merge,
};

use serde::Serialize;

/// Whether a statement grants or refuses. Kept separate from [`Decision`] because a statement's
/// effect is a two-valued author choice while a decision also has the implicit-deny outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message AWS returns when PutKeyPolicy/CreateKey would lock the caller out of the key.
pub const LOCKOUT_MESSAGE: &str =
    "The new key policy will not allow you to update the key policy in the future.";

/// Everything that can go wrong with a key policy. The dev KMS maps `Malformed` and `Lockout`
/// to AWS's MalformedPolicyDocumentException, so the display text is what a customer reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document is not a policy PutKeyPolicy would accept; the text names the statement and
    /// field so the customer can find the mistake without guessing.
    #[error("{0}")]
    Malformed(String),
    /// The policy is well formed but would leave `caller` unable to call kms:PutKeyPolicy again.
    /// Displays exactly AWS's sentence so it can go on the wire unchanged.
    #[error("{}", LOCKOUT_MESSAGE)]
    Lockout { caller: String },
}
