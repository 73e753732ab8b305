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
use uuid::Uuid;
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

/// One organization the browser signed in to, with the token that speaks for it.
#[derive(Clone, Debug)]
pub struct OrgLogin {
    pub org_id: Uuid,
    pub client_id: String,
    token: Secret,
}

/// A browser's session: every organization it signed in to (the enterprise/organization
/// filter switches among them) and which one the pages act on.
#[derive(Clone, Debug)]
pub struct Session {
    logins: Vec<OrgLogin>,
    current: usize,
    pub csrf: String,
    created: Instant,
}

impl Session {
    /// The token of the organization the pages act on.
    pub fn token(&self) -> &str {
        self.logins
            .get(self.current)
            .map(|l| l.token.0.as_str())
            .unwrap_or_default()
    }

    pub fn client_id(&self) -> &str {
        self.logins
            .get(self.current)
            .map(|l| l.client_id.as_str())
            .unwrap_or_default()
    }

    /// The organizations this session holds a token for.
    pub fn org_ids(&self) -> Vec<Uuid> {
        self.logins.iter().map(|l| l.org_id).collect()
    }
}

fn sessions() -> &'static Mutex<HashMap<String, Session>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Session>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Session>> {
    sessions().lock().unwrap_or_else(|e| e.into_inner())
}

/// 256 random bits as 64 hex digits (the secret half of a freshly generated token, which
/// comes from the operating system's CSPRNG-seeded generator).
pub fn random_hex() -> String {
    let t = Token::generate();
    let exposed = t.expose();
    exposed.rsplit(':').next().unwrap_or_default().to_string()
}

/// Starts a session signed in to one organization; returns its ID.
pub fn create(org_id: Uuid, client_id: String, token: String) -> (String, Session) {
    let id = random_hex();
    let s = Session {
        logins: vec![OrgLogin {
            org_id,
            client_id,
            token: Secret(token),
        }],
        current: 0,
        csrf: random_hex(),
        created: Instant::now(),
    };
    let mut map = lock();
    map.retain(|_, v| v.created.elapsed() < SESSION_LIFETIME);
    if map.len() >= MAX_SESSIONS
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| v.created)
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
    map.insert(id.clone(), s.clone());
    (id, s)
}

/// Adds (or replaces) an organization's token in a live session and makes it current.
pub fn add_login(id: &str, org_id: Uuid, client_id: String, token: String) -> bool {
    let mut map = lock();
    let Some(s) = map.get_mut(id) else {
        return false;
    };
    s.logins.retain(|l| l.org_id != org_id);
    s.logins.push(OrgLogin {
        org_id,
        client_id,
        token: Secret(token),
    });
    s.current = s.logins.len() - 1;
    true
}

/// Makes `org_id` current when the session holds a token for it.
pub fn switch(id: &str, org_id: Uuid) -> bool {
    let mut map = lock();
    let Some(s) = map.get_mut(id) else {
        return false;
    };
    match s.logins.iter().position(|l| l.org_id == org_id) {
        Some(i) => {
            s.current = i;
            true
        }
        None => false,
    }
}

/// Drops the current organization's login (its token stopped working). Returns whether the
/// session still holds another organization, which becomes current.
pub fn drop_current(id: &str) -> bool {
    let mut map = lock();
    let Some(s) = map.get_mut(id) else {
        return false;
    };
    if s.current < s.logins.len() {
        s.logins.remove(s.current);
    }
    s.current = 0;
    if s.logins.is_empty() {
        map.remove(id);
        false
    } else {
        true
    }
}

/// The live session named by the request's cookie.
pub fn current(headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let mut map = lock();
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
    lock().remove(id);
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
    fn a_session_switches_among_its_organizations() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (id, s) = create(a, "ca".into(), "ta".into());
        assert_eq!(s.token(), "ta");
        assert!(!switch(&id, b), "no token for b yet");
        assert!(add_login(&id, b, "cb".into(), "tb".into()));
        assert_eq!(current_by_id(&id).token(), "tb");
        assert!(switch(&id, a));
        assert_eq!(current_by_id(&id).token(), "ta");
        assert!(drop_current(&id), "b remains");
        assert_eq!(current_by_id(&id).token(), "tb");
        assert!(!drop_current(&id), "nothing remains: the session ends");
        assert!(lock().get(&id).is_none());
        assert!(format!("{s:?}").contains("<redacted>") && !format!("{s:?}").contains("\"ta\""));
    }

    fn current_by_id(id: &str) -> Session {
        lock().get(id).cloned().unwrap()
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
