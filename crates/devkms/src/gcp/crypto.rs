//! Encrypt and decrypt. A ciphertext is `KPG1 ‖ u16 name length ‖ key name ‖ u64 version ‖
//! AES-256-GCM(nonce ‖ data ‖ tag)` under that version's material, with the header and the
//! caller's additional authenticated data bound as associated data: it names its version (as
//! Cloud KMS ciphertexts do, so decryption needs only the key) and opens under no other key
//! and no other AAD. CRC32C checksums are verified when given and returned, as Cloud KMS does.

use serde_json::{Value, json};

use super::error::GcpError;
use super::state::{GcpKey, Purpose, VersionState};
use super::{Body, Ctx, MAX_DATA, Res, encode_bytes, iam};
use crate::crypto::SecretKey;

const MAGIC: &[u8; 4] = b"KPG1";

/// CRC32C (Castagnoli), the checksum Cloud KMS uses for data integrity.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

fn header(key_name: &str, version: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(4 + 2 + key_name.len() + 8);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(key_name.len() as u16).to_be_bytes());
    h.extend_from_slice(key_name.as_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h
}

fn associated(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + 4 + aad.len());
    a.extend_from_slice(header);
    a.extend_from_slice(&(aad.len() as u32).to_be_bytes());
    a.extend_from_slice(aad);
    a
}

/// The key name and version a ciphertext names, and the length of its header.
fn parse_header(blob: &[u8]) -> Option<(&str, u64, usize)> {
    let rest = blob.strip_prefix(MAGIC)?;
    let len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    let v = rest.get(2 + len..2 + len + 8)?;
    let version = u64::from_be_bytes(v.try_into().ok()?);
    Some((name, version, MAGIC.len() + 2 + len + 8))
}

fn seal(
    material: &SecretKey,
    key_name: &str,
    version: u64,
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut blob = header(key_name, version);
    let sealed = material.seal(&associated(&blob, aad), plaintext);
    blob.extend_from_slice(&sealed);
    blob
}

/// Checks an optional CRC32C the client sent for `data`; true if one was sent (and matched).
fn verify_crc(body: &Body, field: &str, proto_field: &str, data: &[u8]) -> Result<bool, GcpError> {
    match body.int64(field)? {
        None => Ok(false),
        Some(c) if c == i64::from(crc32c(data)) => Ok(true),
        Some(_) => Err(GcpError::invalid(format!(
            "The checksum in field {proto_field} did not match the data in field {}.",
            proto_field.trim_end_matches("_crc32c")
        ))),
    }
}

fn require_encrypt_decrypt(k: &GcpKey) -> Result<(), GcpError> {
    if k.rec.purpose == Purpose::EncryptDecrypt {
        Ok(())
    } else {
        Err(GcpError::invalid(format!(
            "{} has purpose {}; Encrypt and Decrypt need an ENCRYPT_DECRYPT key.",
            k.rec.name,
            k.rec.purpose.name()
        )))
    }
}

fn invalid_ciphertext() -> GcpError {
    GcpError::invalid("Decryption failed: verify that 'name' refers to the correct CryptoKey.")
}

pub(crate) fn encrypt(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&[
        "name",
        "plaintext",
        "additionalAuthenticatedData",
        "plaintextCrc32c",
        "additionalAuthenticatedDataCrc32c",
    ])?;
    let plaintext = body.bytes("plaintext")?.unwrap_or_default();
    if plaintext.is_empty() {
        return Err(GcpError::invalid("The request must specify plaintext."));
    }
    let aad = body
        .bytes("additionalAuthenticatedData")?
        .unwrap_or_default();
    if plaintext.len() > MAX_DATA || aad.len() > MAX_DATA {
        return Err(GcpError::invalid(format!(
            "plaintext and additional_authenticated_data are limited to {MAX_DATA} bytes."
        )));
    }
    let pt_checked = verify_crc(body, "plaintextCrc32c", "plaintext_crc32c", &plaintext)?;
    let aad_checked = verify_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        "additional_authenticated_data_crc32c",
        &aad,
    )?;
    let (key_name, asked_version) = match res {
        Res::Key { name, .. } => (name.as_str(), None),
        Res::Version { key, id, .. } => (key.as_str(), Some(id.as_str())),
        _ => return Err(GcpError::invalid("Encrypt needs a crypto key or a version")),
    };
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeyVersions.useToEncrypt")?;
    let k = st
        .gcp
        .keys
        .get(key_name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", key_name))?;
    require_encrypt_decrypt(k)?;
    let version = match asked_version {
        Some(id) => id
            .parse::<u64>()
            .ok()
            .filter(|n| k.version(*n).is_some())
            .ok_or_else(|| {
                GcpError::not_found(
                    "CryptoKeyVersion",
                    &format!("{key_name}/cryptoKeyVersions/{id}"),
                )
            })?,
        None => k
            .rec
            .primary
            .ok_or_else(|| GcpError::precondition(format!("{key_name} has no primary version.")))?,
    };
    let state = k
        .version(version)
        .map_or(VersionState::Destroyed, |v| v.state);
    if state != VersionState::Enabled {
        return Err(GcpError::version_not_enabled(
            &k.version_name(version),
            state.name(),
        ));
    }
    let material = k.materials.get(&version).ok_or_else(|| {
        GcpError::internal(format!("{} has no material", k.version_name(version)))
    })?;
    let ciphertext = seal(material, key_name, version, &aad, &plaintext);
    Ok(json!({
        "name": k.version_name(version),
        "ciphertext": encode_bytes(&ciphertext),
        "ciphertextCrc32c": crc32c(&ciphertext).to_string(),
        "verifiedPlaintextCrc32c": pt_checked,
        "verifiedAdditionalAuthenticatedDataCrc32c": aad_checked,
        "protectionLevel": ctx.enum_value("SOFTWARE", 1),
    }))
}

pub(crate) fn decrypt(ctx: &Ctx<'_>, res: &Res, body: &Body) -> Result<Value, GcpError> {
    body.only(&[
        "name",
        "ciphertext",
        "additionalAuthenticatedData",
        "ciphertextCrc32c",
        "additionalAuthenticatedDataCrc32c",
    ])?;
    let Res::Key { name: key_name, .. } = res else {
        return Err(GcpError::invalid(
            "Decrypt needs a crypto key (not a version)",
        ));
    };
    let ciphertext = body.bytes("ciphertext")?.unwrap_or_default();
    if ciphertext.is_empty() {
        return Err(GcpError::invalid("The request must specify ciphertext."));
    }
    let aad = body
        .bytes("additionalAuthenticatedData")?
        .unwrap_or_default();
    if ciphertext.len() > MAX_DATA + 2048 || aad.len() > MAX_DATA {
        return Err(GcpError::invalid(
            "ciphertext or additional_authenticated_data is too long.",
        ));
    }
    verify_crc(body, "ciphertextCrc32c", "ciphertext_crc32c", &ciphertext)?;
    verify_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        "additional_authenticated_data_crc32c",
        &aad,
    )?;
    let st = ctx.inner.read();
    iam::check(ctx, &st.gcp, res, "cloudkms.cryptoKeyVersions.useToDecrypt")?;
    let k = st
        .gcp
        .keys
        .get(key_name)
        .ok_or_else(|| GcpError::not_found("CryptoKey", key_name))?;
    require_encrypt_decrypt(k)?;
    let (named_key, version, header_len) =
        parse_header(&ciphertext).ok_or_else(invalid_ciphertext)?;
    if named_key != key_name.as_str() {
        return Err(invalid_ciphertext());
    }
    let v = k.version(version).ok_or_else(invalid_ciphertext)?;
    if v.state != VersionState::Enabled {
        return Err(GcpError::version_not_enabled(
            &k.version_name(version),
            v.state.name(),
        ));
    }
    let material = k.materials.get(&version).ok_or_else(invalid_ciphertext)?;
    let (head, sealed) = ciphertext.split_at(header_len);
    let plaintext = material
        .open(&associated(head, &aad), sealed)
        .ok_or_else(invalid_ciphertext)?;
    Ok(json!({
        "plaintext": encode_bytes(&plaintext),
        "plaintextCrc32c": crc32c(&plaintext).to_string(),
        "usedPrimary": k.rec.primary == Some(version),
        "protectionLevel": ctx.enum_value("SOFTWARE", 1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn ciphertexts_name_their_key_and_version_and_bind_the_aad() {
        let m = SecretKey::random();
        let name = "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k";
        let blob = seal(&m, name, 3, b"aad", b"secret");
        let (n, v, len) = parse_header(&blob).unwrap();
        assert_eq!((n, v), (name, 3));
        let (head, sealed) = blob.split_at(len);
        assert_eq!(
            &m.open(&associated(head, b"aad"), sealed).unwrap()[..],
            b"secret"
        );
        assert!(m.open(&associated(head, b"other"), sealed).is_none());
        let other = header("projects/p/locations/us-east1/keyRings/r/cryptoKeys/x", 3);
        assert!(m.open(&associated(&other, b"aad"), sealed).is_none());
        assert!(parse_header(b"KPG1\x00\x05ab").is_none());
    }
}
