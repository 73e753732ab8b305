//! Server-side portal sessions: a random 256-bit ID in an HttpOnly, SameSite=Strict cookie
//! maps to the application token (held only in this process's memory) and the session's
//! CSRF token. The token is resolved again on every request, so a revocation signs the
//! browser out at once.
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use keyplane_core::Token;
use zeroize_free::Secret;

/// The session cookie.
pub const SESSION_COOKIE: &str = "kp_session";
/// The sign-in form's double-submit CSRF cookie.
pub const CSRF_COOKIE: &str = "kp_csrf";
/// A session ends this long after sign-in, whatever the activity.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// At most this many live sessions; the oldest goes first.
const MAX_SESSIONS: usize = 10_000;

mod zeroize_free {
    /// A string that is never printed by `Debug`.
    #[derive(Clone)]
    pub struct Secret(pub String);
    impl std::fmt::Debug for Secret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("<redacted>")
        }
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub client_id: String,
    token: Secret,
    pub csrf: String,
    created: Instant,
}

impl Session {
    pub fn token(&self) -> &str {
        &self.token.0
    }
}

fn sessions() -> &'static Mutex<HashMap<String, Session>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Session>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// 256 random bits as 64 hex digits (the secret half of a freshly generated token, which
/// comes from the operating system's CSPRNG-seeded generator).
pub fn random_hex() -> String {
    let t = Token::generate();
    let exposed = t.expose();
    exposed.rsplit(':').next().unwrap_or_default().to_string()
}

/// Starts a session; returns its ID.
pub fn create(client_id: String, token: String) -> (String, Session) {
    let id = random_hex();
    let s = Session {
        client_id,
        token: Secret(token),
        csrf: random_hex(),
        created: Instant::now(),
    };
    let mut map = sessions().lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, v| v.created.elapsed() < SESSION_LIFETIME);
    if map.len() >= MAX_SESSIONS
        && let Some(oldest) = map.iter().min_by_key(|(_, v)| v.created).map(|(k, _)| k.clone()) {
            map.remove(&oldest);
        }
    map.insert(id.clone(), s.clone());
    (id, s)
}

/// The live session named by the request's cookie.
pub fn current(headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let mut map = sessions().lock().unwrap_or_else(|e| e.into_inner());
    match map.get(&id) {
        Some(s) if s.created.elapsed() < SESSION_LIFETIME => Some((id, s.clone())),
        Some(_) => {
            map.remove(&id);
            None
        }
        None => None,
    }
}

pub fn destroy(id: &str) {
    sessions().lock().unwrap_or_else(|e| e.into_inner()).remove(id);
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

/// `Set-Cookie` value for a portal cookie; `None` expires it.
pub fn set_cookie(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{name}={v}; HttpOnly; SameSite=Strict; Path=/"),
        None => format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
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
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
    }
}
