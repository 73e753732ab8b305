//! Key-ID parsers, one per provider. [`PARSERS`] is the list the generic `key_ids` target runs
//! on every input; another provider's parser (Google Cloud key names are not in it yet) joins it
//! with one line.

use keyplane_core::{AwsKeyArn, AzureKeyId, AzureVaultKind, OpenbaoKeyRef};

/// `(provider, check)`: `check` parses the text and asserts the parser's invariants.
pub const PARSERS: &[(&str, fn(&str))] = &[
    ("aws", aws_key_arn),
    ("azure", azure_key_id),
    ("openbao", openbao_key_ref),
];

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

/// An OpenBao/Vault Transit key ID, in the root namespace or (when the input has a second line)
/// in the namespace that line names: what parses prints back as a key URL that parses, in the
/// same namespace, to the same key.
pub fn openbao_key_ref(text: &str) {
    let (key_id, namespace) = match text.split_once('\n') {
        Some((k, ns)) => (k, Some(ns)),
        None => (text, None),
    };
    let Ok(key) = OpenbaoKeyRef::parse_in_namespace(key_id, namespace) else {
        return;
    };
    let printed = key.to_string();
    assert!(printed.starts_with(key.address()), "{printed} {key:?}");
    let again = OpenbaoKeyRef::parse_in_namespace(&printed, key.namespace())
        .unwrap_or_else(|e| panic!("{printed:?} printed from {text:?} does not parse: {e}"));
    assert_eq!(again, key, "round trip of {text:?}");
    assert_eq!(again.to_string(), printed);
}

/// An Azure Key Vault key URL (with `localhost:4600` allowed as the built-in vault's dev host):
/// what parses has a lower-case host, a 32-hex version if any, prints back as a key URL that
/// parses to the same key, and its versionless form names the same key.
pub fn azure_key_id(text: &str) {
    const DEV: &[&str] = &["localhost:4600"];
    let Ok(id) = AzureKeyId::parse_allowing(text, DEV) else {
        return;
    };
    assert_eq!(id.host, id.host.to_ascii_lowercase(), "{id:?}");
    assert_eq!(
        id.vault_name.is_none(),
        id.kind == AzureVaultKind::Dev,
        "{id:?}"
    );
    if let Some(v) = &id.version {
        assert!(
            v.len() == 32
                && v.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id:?}"
        );
    }
    let printed = id.to_string();
    assert!(
        printed.starts_with("https://") && printed.contains("/keys/"),
        "{printed}"
    );
    let again = AzureKeyId::parse_allowing(&printed, DEV)
        .unwrap_or_else(|e| panic!("{printed:?} printed from {text:?} does not parse: {e}"));
    assert_eq!(again, id, "round trip of {text:?}");
    assert_eq!(again.to_string(), printed);
    let versionless = id.versionless();
    assert!(
        versionless.same_key(&id) && versionless.is_versionless(),
        "{id:?}"
    );
}

/// Runs every provider's parser on `text`.
pub fn all(text: &str) {
    for (_, check) in PARSERS {
        check(text);
    }
}
