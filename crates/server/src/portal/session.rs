//! The portal's cookies and forms: the session cookie (a random 256-bit ID; the session
//! itself is in the store, see `keyplane_app::sessions`, so any replica serves it), the
//! sign-in form's double-submit CSRF cookie, and form parsing.
use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use keyplane_core::Token;

/// The session cookie.
pub const SESSION_COOKIE: &str = "kp_session";
/// The sign-in form's double-submit CSRF cookie.
pub const CSRF_COOKIE: &str = "kp_csrf";

/// 256 random bits as 64 hex digits (the secret half of a freshly generated token, which
/// comes from the operating system's CSPRNG-seeded generator).
pub fn random_hex() -> String {
    let t = Token::generate();
    let exposed = t.expose();
    exposed.rsplit(':').next().unwrap_or_default().to_string()
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` value for a portal cookie; `None` expires it. `secure` when the portal is
/// served over https (its public URL says so), so the cookie never travels in clear.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; HttpOnly; SameSite=Strict; Path=/{secure}"),
        None => format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    parse_form_all(body).into_iter().collect()
}

/// Every field of a form in order, repeated ones (checkboxes) included.
pub fn parse_form_all(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = parse_form(b"token=AstraCS%3Aab%3Acd&csrf=x+y&empty=&bad=%zz%4");
        assert_eq!(f["token"], "AstraCS:ab:cd");
        assert_eq!(f["csrf"], "x y");
        assert_eq!(f["empty"], "");
        assert_eq!(f["bad"], "%zz%4");
    }

    #[test]
    fn random_ids_are_256_bits_of_hex() {
        let a = random_hex();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex());
    }

    #[test]
    fn cookies_are_secure_behind_https() {
        assert!(set_cookie("a", Some("b"), true).ends_with("; Secure"));
        assert!(!set_cookie("a", Some("b"), false).contains("Secure"));
        assert!(set_cookie("a", None, true).contains("Max-Age=0; Secure"));
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
    }
}
