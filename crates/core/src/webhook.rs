//! Webhooks' rules: which audited actions are events a customer can subscribe to, how a
//! delivery is signed (and how a receiver verifies it), and which target URLs are accepted.
//!
//! A delivery carries `Keyplane-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC
//! keyed with the webhook's secret over `"<t>.<body>"`. The timestamp is the attempt's, so a
//! receiver that refuses signatures older than a few minutes is not open to replays, and the
//! body is signed as sent, byte for byte.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use rand::RngCore;
use ring::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::audit::AuditAction;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Keyplane-Signature";
/// The header that names the event (its audit sequence number): the same on every retry, so a
/// receiver can drop duplicates.
pub const EVENT_ID_HEADER: &str = "Keyplane-Event-Id";
/// The header that names the event's type (`datacenter.suspend`, …).
pub const EVENT_TYPE_HEADER: &str = "Keyplane-Event";
/// The header that counts attempts, from 1.
pub const ATTEMPT_HEADER: &str = "Keyplane-Delivery-Attempt";

/// The prefix of every webhook secret, so that one found in a log or a repository is
/// recognizable.
pub const SECRET_PREFIX: &str = "whsec_";

/// The longest target URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// The audited actions a webhook is told about: what happens to a customer key and to the
/// datacenters under it. Reads (list, get, status, policy help) are not events.
pub const EVENTS: &[AuditAction] = &[
    AuditAction::CmkRegister,
    AuditAction::CmkReplace,
    AuditAction::CmkDeregister,
    AuditAction::CmkRevoke,
    AuditAction::CmkUnrevoke,
    AuditAction::CmkOnInaccessible,
    AuditAction::CmkAlert,
    AuditAction::CmkRotationOverdue,
    AuditAction::CmkUnbound,
    AuditAction::CmkBound,
    AuditAction::DatacenterSuspend,
    AuditAction::DatacenterResume,
    AuditAction::DatacenterRewrap,
    AuditAction::DatacenterRotateDataKey,
    AuditAction::DatacenterShred,
];

/// Whether `action` is an event webhooks are told about.
pub fn is_event(action: AuditAction) -> bool {
    EVENTS.contains(&action)
}

/// A new webhook's secret: `whsec_` and 32 random bytes, base64url. Shown once, at creation.
pub fn generate_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    Zeroizing::new(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

/// The `Keyplane-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).as_ref())
    )
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not `t=<seconds>,v1=<hex>`")]
    Malformed,
    #[error(
        "the signature's timestamp is {age} s away from now, more than the {tolerance} s allowed"
    )]
    Stale { age: i64, tolerance: i64 },
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks a `Keyplane-Signature` header against `body`, as a receiver does: one of its `v1`
/// values must be the HMAC of the body at its timestamp, and the timestamp within
/// `tolerance_secs` of `now`. Compares in constant time.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", v)) => {
                candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age = (now - t).abs();
    if age > tolerance_secs {
        return Err(SignatureError::Stale {
            age,
            tolerance: tolerance_secs,
        });
    }
    let expected = mac(secret, t, body);
    if candidates
        .iter()
        .any(|c| bool::from(c.as_slice().ct_eq(expected.as_ref())))
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Why a target URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url: is not an absolute URL: {0}")]
    NotUrl(String),
    #[error("url: is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("url: must use https (this platform accepts http only for test targets)")]
    NotHttps,
    #[error(
        "url: must not carry a user name or password; put credentials in the URL's path or verify the signature"
    )]
    Credentials,
    #[error("url: has no host")]
    NoHost,
    #[error(
        "url: {0} is a loopback, private, link-local or otherwise non-public address, which this platform does not deliver to"
    )]
    NotPublic(String),
}

/// Checks a target URL a customer gave: https, no credentials, a host, and (unless the
/// operator allows test targets) no address literal outside the public internet. A name is
/// checked again where it is resolved, at each delivery.
pub fn check_target(url: &str, allow_private: bool) -> Result<url::Url, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let parsed = url::Url::parse(url).map_err(|e| TargetError::NotUrl(e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(TargetError::NotHttps),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let ip = match parsed.host() {
        None => return Err(TargetError::NoHost),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            if !allow_private && (d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost"))
            {
                return Err(TargetError::NotPublic(d.to_string()));
            }
            None
        }
    };
    if let Some(ip) = ip
        && !allow_private
        && !is_public(ip)
    {
        return Err(TargetError::NotPublic(ip.to_string()));
    }
    Ok(parsed)
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local
/// (cloud metadata services live there), shared (CGNAT), unspecified, broadcast, multicast,
/// documentation or unique-local. An IPv4 address mapped into IPv6 is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || ip
            .to_ipv4()
            .is_some_and(|v4| ip.segments()[..6] == [0; 6] && !is_public_v4(v4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        let body = br#"{"type":"datacenter.suspend"}"#;
        let h = signature(&secret, 1_000, body);
        assert!(h.starts_with("t=1000,v1="));
        assert_eq!(verify(&secret, &h, body, 1_010, 300), Ok(()));
        assert_eq!(
            verify(&secret, &h, br#"{"type":"datacenter.resume"}"#, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &h, body, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature, keeping it ages out.
        let moved = h.replace("t=1000", "t=1005");
        assert_eq!(
            verify(&secret, &moved, body, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &h, body, 2_000, 300),
            Err(SignatureError::Stale {
                age: 1_000,
                tolerance: 300
            })
        );
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "t=1000,v1=zz",
            "nonsense",
        ] {
            assert_eq!(
                verify(&secret, bad, body, 1_000, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // A receiver mid-rotation may be sent several; one matching is enough.
        let two = format!(
            "t=1000,v1={},{}",
            "00".repeat(32),
            h.split_once(',').unwrap().1
        );
        assert_eq!(verify(&secret, &two, body, 1_000, 300), Ok(()));
    }

    #[test]
    fn secrets_differ() {
        assert_ne!(*generate_secret(), *generate_secret());
    }

    #[test]
    fn targets_must_be_public_https_without_credentials() {
        assert!(check_target("https://hooks.example.com/keyplane?x=1", false).is_ok());
        assert_eq!(
            check_target("http://hooks.example.com/", false),
            Err(TargetError::NotHttps)
        );
        assert_eq!(
            check_target("ftp://hooks.example.com/", true),
            Err(TargetError::NotHttps)
        );
        assert!(matches!(
            check_target("not a url", false),
            Err(TargetError::NotUrl(_))
        ));
        assert_eq!(
            check_target("https://user:pw@hooks.example.com/", false),
            Err(TargetError::Credentials)
        );
        for private in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:192.168.0.1]/",
            "https://100.64.0.1/",
            "https://localhost:8443/",
        ] {
            assert!(
                matches!(check_target(private, false), Err(TargetError::NotPublic(_))),
                "{private}"
            );
            assert!(
                check_target(private, true).is_ok(),
                "{private} allowed for tests"
            );
        }
        assert!(check_target("http://127.0.0.1:9/hook", true).is_ok());
        assert!(
            check_target(
                &format!("https://a.example/{}", "x".repeat(MAX_URL_LEN)),
                false
            ) == Err(TargetError::TooLong)
        );
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(!is_public("0.0.0.0".parse().unwrap()));
    }

    #[test]
    fn events_are_changes_not_reads() {
        assert!(is_event(AuditAction::DatacenterSuspend));
        assert!(is_event(AuditAction::CmkRevoke));
        assert!(!is_event(AuditAction::CmkList));
        assert!(!is_event(AuditAction::PortalSignin));
    }
}
