//! Document ids a collection generates (its `defaultId` option), and the checks on typed id
//! literals (`{"$uuid": …}`, `{"$objectId": …}`) shared by documents and filters.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// The `_id` a collection gives a document inserted without one, as `createCollection`'s
/// `defaultId.type` chose: unset is the original's legacy plain-string UUIDv4; the others are
/// returned typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultIdType {
    /// No `defaultId` (or type `""`): a UUIDv4 as a plain string.
    #[default]
    Legacy,
    /// `"uuid"`: `{"$uuid": <v4>}`.
    Uuid,
    /// `"uuidv6"`: `{"$uuid": <v6>}`, ordered by creation time.
    UuidV6,
    /// `"uuidv7"`: `{"$uuid": <v7>}`, ordered by creation time.
    UuidV7,
    /// `"objectId"`: `{"$objectId": <24 hex digits>}`.
    ObjectId,
}

impl DefaultIdType {
    /// The type named by `defaultId.type`; `None` for a name the original does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "" => DefaultIdType::Legacy,
            "uuid" => DefaultIdType::Uuid,
            "uuidv6" => DefaultIdType::UuidV6,
            "uuidv7" => DefaultIdType::UuidV7,
            "objectId" => DefaultIdType::ObjectId,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DefaultIdType::Legacy => "",
            DefaultIdType::Uuid => "uuid",
            DefaultIdType::UuidV6 => "uuidv6",
            DefaultIdType::UuidV7 => "uuidv7",
            DefaultIdType::ObjectId => "objectId",
        }
    }

    /// A new id of this type, as the JSON value stored in `_id`.
    pub fn generate(self) -> Value {
        match self {
            DefaultIdType::Legacy => Value::String(uuid::Uuid::new_v4().to_string()),
            DefaultIdType::Uuid => typed("$uuid", uuid::Uuid::new_v4().to_string()),
            DefaultIdType::UuidV6 => typed("$uuid", uuid::Uuid::now_v6(node_id()).to_string()),
            DefaultIdType::UuidV7 => typed("$uuid", uuid::Uuid::now_v7().to_string()),
            DefaultIdType::ObjectId => typed("$objectId", new_object_id()),
        }
    }
}

fn typed(key: &str, v: String) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert(key.into(), Value::String(v));
    Value::Object(m)
}

/// Random per process, as UUIDv6 allows in place of a MAC address.
fn node_id() -> &'static [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    NODE.get_or_init(|| {
        let r = uuid::Uuid::new_v4();
        let b = r.as_bytes();
        // The multicast bit marks a random node id (RFC 9562).
        [b[0] | 0x01, b[1], b[2], b[3], b[4], b[5]]
    })
}

/// A MongoDB-style ObjectId: 4 bytes of seconds since the epoch, 5 random bytes fixed per
/// process, and a 3-byte counter starting at a random value.
fn new_object_id() -> String {
    static PROCESS: OnceLock<[u8; 5]> = OnceLock::new();
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let r = uuid::Uuid::new_v4();
        let b = r.as_bytes();
        [b[0], b[1], b[2], b[3], b[4]]
    });
    let counter = COUNTER.get_or_init(|| {
        let r = uuid::Uuid::new_v4();
        let b = r.as_bytes();
        AtomicU32::new(u32::from_be_bytes([0, b[6], b[7], b[8]]))
    });
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let c = counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&c.to_be_bytes()[1..]);
    hex::encode(bytes)
}

/// A UUID in its 36-character form (`8-4-4-4-12` hex digits), as the original accepts them;
/// returns the canonical lower-case text.
pub fn parse_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return None;
        }
    }
    Some(s.to_ascii_lowercase())
}

/// An ObjectId as 24 hex digits; returns it in lower case.
pub fn parse_object_id(s: &str) -> Option<String> {
    (s.len() == 24 && s.bytes().all(|c| c.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}
