//! The seed key policy: what keyplane's documentation tells a customer to put on their key.

/// The actions of the seed document's use statement.
pub const SEED_USE_ACTIONS: [&str; 8] = [
    "kms:EnableKey",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
];
/// The actions of the seed document's persistent-resources (grant) statement.
pub const SEED_GRANT_ACTIONS: [&str; 3] = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];

/// The key policy the seed document tells customers to write: IAM delegation for their own
/// `account`, the use statement for the platform role `principal` and the persistent-resources
/// statement, with the action `missing` left out.
pub fn seed_policy(account: &str, principal: &str, missing: Option<&str>) -> String {
    let keep = |a: &&str| Some(*a) != missing;
    let use_actions: Vec<&str> = SEED_USE_ACTIONS.into_iter().filter(keep).collect();
    let grant_actions: Vec<&str> = SEED_GRANT_ACTIONS.into_iter().filter(keep).collect();
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-consolepolicy-3",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "Allow an external account to use this KMS key",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": use_actions,
                "Resource": "*"
            },
            {
                "Sid": "Allow attachment of persistent resources",
                "Effect": "Allow",
                "Principal": { "AWS": principal },
                "Action": grant_actions,
                "Resource": "*"
            }
        ]
    })
    .to_string()
}
