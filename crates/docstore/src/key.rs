use std::fmt;

use zeroize::Zeroizing;

use crate::error::{DocStoreError, Result};

/// A datacenter's plaintext 256-bit data key.
///
/// It exists only in memory: the bytes are wiped when the value is dropped, `Debug` never
/// prints them, and there is deliberately no `Clone` (share it with `Arc`) so that the number of
/// copies stays the number of owners.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// Takes a copy of the KMS plaintext; the caller should zeroize its own buffer.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            DocStoreError::InvalidKey(format!("expected 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// Only for the few callers that must hand the bytes to a cipher (SQLCipher's key pragma).
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The SQLCipher raw-key literal `x'<64 hex>'`, in a buffer wiped on drop, so that no
    /// un-wiped heap copy of the hex form is left behind by building the pragma.
    pub(crate) fn pragma_statement(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(32 + 64));
        s.push_str("PRAGMA key = \"x'");
        for b in self.0.iter() {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0x0f) as usize] as char);
        }
        s.push_str("'\";");
        s
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}
