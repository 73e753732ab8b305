//! Key-ID parsers, one per provider. [`PARSERS`] is the list the generic `key_ids` target runs
//! on every input: a provider's parser (GCP key resource names, Azure Key Vault key URLs,
//! OpenBao transit key names) joins it with one line when it lands in `keyplane-core`.

use keyplane_core::AwsKeyArn;

/// `(provider, check)`: `check` parses the text and asserts the parser's invariants.
pub const PARSERS: &[(&str, fn(&str))] = &[("aws", aws_key_arn)];

/// An AWS key ARN: what parses has a 12-digit account, a UUID or `mrk-` key ID and a KMS
/// service, prints back as a canonical ARN, and that ARN parses to the same value.
pub fn aws_key_arn(text: &str) {
    let Ok(arn) = text.parse::<AwsKeyArn>() else {
        return;
    };
    assert_eq!(arn.account.len(), 12, "{arn:?}");
    assert!(arn.account.bytes().all(|b| b.is_ascii_digit()), "{arn:?}");
    assert!(
        arn.key_id.len() == 36 || (arn.key_id.starts_with("mrk-") && arn.key_id.len() == 36),
        "{arn:?}"
    );
    let printed = arn.to_string();
    assert!(printed.starts_with("arn:"), "{printed}");
    assert!(printed.contains(":kms:"), "{printed}");
    let again: AwsKeyArn = printed
        .parse()
        .unwrap_or_else(|e| panic!("{printed:?} printed from {text:?} does not parse: {e}"));
    assert_eq!(again, arn, "round trip of {text:?}");
    assert_eq!(again.to_string(), printed);
}

/// Runs every provider's parser on `text`.
pub fn all(text: &str) {
    for (_, check) in PARSERS {
        check(text);
    }
}
