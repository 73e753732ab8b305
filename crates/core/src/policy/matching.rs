//! String matching shared by the evaluator: IAM-style wildcards and ARN splitting.

/// IAM wildcard match: `*` spans any run of characters (including none), `?` exactly one.
/// Iterative with a single backtrack point so hostile patterns cannot blow up the evaluator.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Case-insensitive wildcard match, for action names (`kms:decrypt` means kms:Decrypt to AWS).
pub(crate) fn wildcard_match_ci(pattern: &str, text: &str) -> bool {
    wildcard_match(&pattern.to_lowercase(), &text.to_lowercase())
}

pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

/// The six colon-separated parts of an ARN; the resource part keeps any further colons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

pub(crate) fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut parts = s.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let arn = Arn {
        partition: parts.next()?,
        service: parts.next()?,
        region: parts.next()?,
        account: parts.next()?,
        resource: parts.next()?,
    };
    if arn.partition.is_empty() || arn.service.is_empty() {
        return None;
    }
    Some(arn)
}

/// ArnEquals/ArnLike semantics: each of the six ARN parts is matched separately, so a `*` in
/// the account part cannot swallow the region or resource.
pub(crate) fn arn_like(pattern: &str, value: &str) -> bool {
    let pat: Vec<&str> = pattern.splitn(6, ':').collect();
    let val: Vec<&str> = value.splitn(6, ':').collect();
    if pat.len() != 6 || val.len() != 6 {
        return pattern == value;
    }
    pat.iter()
        .zip(val.iter())
        .all(|(p, v)| wildcard_match(p, v))
}

pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What kind of IAM principal a caller ARN names, with the pieces the evaluator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallerKind {
    Root,
    User,
    /// A role used directly (rare for callers, but the role ARN itself is a valid principal).
    Role {
        name: String,
    },
    /// `arn:aws:sts::A:assumed-role/NAME/SESSION`.
    RoleSession {
        role_name: String,
        role_arn: String,
    },
    FederatedUser,
    Other,
}

pub(crate) fn caller_kind(arn: &str) -> CallerKind {
    let Some(a) = parse_arn(arn) else {
        return CallerKind::Other;
    };
    match a.service {
        "iam" if a.resource == "root" => CallerKind::Root,
        "iam" if a.resource.starts_with("user/") => CallerKind::User,
        "iam" if a.resource.starts_with("role/") => match a.resource.rsplit('/').next() {
            Some(name) if !name.is_empty() => CallerKind::Role {
                name: name.to_string(),
            },
            _ => CallerKind::Other,
        },
        "sts" => {
            let mut segs = a.resource.splitn(3, '/');
            match (segs.next(), segs.next(), segs.next()) {
                (Some("assumed-role"), Some(name), Some(_session)) if !name.is_empty() => {
                    CallerKind::RoleSession {
                        role_name: name.to_string(),
                        role_arn: format!("arn:{}:iam::{}:role/{}", a.partition, a.account, name),
                    }
                }
                (Some("federated-user"), Some(_), _) => CallerKind::FederatedUser,
                _ => CallerKind::Other,
            }
        }
        _ => CallerKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("kms:*", "kms:Decrypt"));
        assert!(wildcard_match("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(wildcard_match("kms:?ecrypt", "kms:Decrypt"));
        assert!(!wildcard_match("kms:?ecrypt", "kms:Encrypt"));
        assert!(!wildcard_match("kms:Decrypt", "kms:DecryptX"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match_ci("KMS:decrypt", "kms:Decrypt"));
    }

    #[test]
    fn arn_like_is_per_segment() {
        assert!(arn_like(
            "arn:aws:iam::*:role/creator",
            "arn:aws:iam::222222222222:role/creator"
        ));
        assert!(!arn_like(
            "arn:aws:iam::*",
            "arn:aws:iam::222222222222:role/creator"
        ));
    }

    #[test]
    fn caller_kinds() {
        assert_eq!(
            caller_kind("arn:aws:sts::222222222222:assumed-role/creator/s1"),
            CallerKind::RoleSession {
                role_name: "creator".into(),
                role_arn: "arn:aws:iam::222222222222:role/creator".into()
            }
        );
        assert_eq!(caller_kind("arn:aws:iam::1:root"), CallerKind::Root);
        assert_eq!(caller_kind("arn:aws:iam::1:user/a/b"), CallerKind::User);
        assert_eq!(caller_kind("nonsense"), CallerKind::Other);
    }
}
