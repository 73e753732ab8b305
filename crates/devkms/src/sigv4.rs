//! AWS Signature Version 4 verification for the JSON 1.1 protocol, answering the way AWS
//! does (UnrecognizedClientException for an unknown key, InvalidSignatureException otherwise).

use axum::http::{HeaderMap, Method, Uri};
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// AWS rejects requests whose x-amz-date is further than this from its own clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug)]
pub(crate) struct AuthHeader<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

fn incomplete() -> ApiError {
    ApiError::new(
        "IncompleteSignatureException",
        "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
    )
}

pub(crate) fn parse_authorization(value: &str) -> Result<AuthHeader<'_>, ApiError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
        ApiError::new(
            "IncompleteSignatureException",
            "Unsupported authorization type",
        )
    })?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let (cred, signed, signature) = match (cred, signed, sig) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(incomplete()),
    };
    let mut scope = cred.splitn(5, '/');
    let (access_key_id, date, region, service, terminator) = match (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) {
        (Some(a), Some(d), Some(r), Some(s), Some(t)) => (a, d, r, s, t),
        _ => {
            return Err(ApiError::new(
                "IncompleteSignatureException",
                format!("Credential should be scoped to a valid region, not '{cred}'."),
            ));
        }
    };
    if terminator != "aws4_request" {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
            ),
        ));
    }
    Ok(AuthHeader {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// The request time, from x-amz-date (or Date), checked against the real clock: signatures are
/// made with wall-clock time, so the test clock must not take part here.
pub(crate) fn check_date(
    headers: &HeaderMap,
    scope_date: &str,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let raw = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        })?
        .to_string();
    let t = NaiveDateTime::parse_from_str(&raw, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            ApiError::new(
                "InvalidSignatureException",
                format!("Invalid X-Amz-Date '{raw}'"),
            )
        })?
        .and_utc();
    if !raw.starts_with(scope_date) {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{}'",
                &raw[..8.min(raw.len())]
            ),
        ));
    }
    let fmt = |d: DateTime<Utc>| d.format("%Y%m%dT%H%M%SZ").to_string();
    let skew = (t - now).num_seconds();
    if skew < -MAX_SKEW_SECS {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Signature expired: {raw} is now earlier than {} ({} - 15 min.)",
                fmt(now - chrono::Duration::seconds(MAX_SKEW_SECS)),
                fmt(now)
            ),
        ));
    }
    if skew > MAX_SKEW_SECS {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Signature not yet current: {raw} is still later than {} ({} + 15 min.)",
                fmt(now + chrono::Duration::seconds(MAX_SKEW_SECS)),
                fmt(now)
            ),
        ));
    }
    Ok(raw)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 3986 unreserved characters stay; everything else is %XX (upper case), as SigV4 wants.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    // Non-S3 services encode each (already encoded) segment once more.
    uri_encode(path, false)
}

/// Recomputes the signature with `secret` and compares it in constant time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify(
    auth: &AuthHeader<'_>,
    amz_date: &str,
    secret: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    let mut canonical = String::with_capacity(512);
    canonical.push_str(method.as_str());
    canonical.push('\n');
    canonical.push_str(&canonical_uri(uri.path()));
    canonical.push('\n');
    canonical.push_str(&canonical_query(uri.query()));
    canonical.push('\n');
    for name in &auth.signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical.push_str(&name.to_ascii_lowercase());
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&auth.signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(&hex::encode(Sha256::digest(body)));

    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_secret = zeroize::Zeroizing::new(format!("AWS4{secret}"));
    let k_date = hmac(k_secret.as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    expected.as_bytes().ct_eq(auth.signature.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header() {
        let a = parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-2/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd").unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-2");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/x").is_err());
    }

    #[test]
    fn encodes_query() {
        assert_eq!(canonical_query(Some("b=2&a=1%20x")), "a=1%20x&b=2");
        assert_eq!(canonical_uri("/"), "/");
    }
}
