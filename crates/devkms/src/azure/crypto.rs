//! The cryptographic operations (`wrapkey`, `unwrapkey`, `encrypt`, `decrypt`) and the key
//! material under them: RSA keys (2048, 3072, 4096 bits) with RSA-OAEP-256, RSA-OAEP and
//! RSA1_5, and oct-HSM AES-256 keys with A256KW (RFC 3394), all by aws-lc-rs. The private parts
//! never leave this module except sealed.
//!
//! Key states as Key Vault applies them: a disabled version refuses every operation; outside
//! its `nbf`/`exp` window a version refuses to wrap and encrypt but still unwraps and decrypts
//! ("date-time controlled operations"), so data protected while the key was valid stays
//! readable; an operation missing from `key_ops` is refused.

use std::fmt;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE as B64URL_PAD, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use aws_lc_rs::rsa::{
    self, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm,
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::KeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::VaultError;
use super::keys::{check_name, kid};

use super::state::KeyOp;
use super::{Caller, Ctx};

/// A cryptographic operation of the data plane, by its path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CryptoOp {
    WrapKey,
    UnwrapKey,
    Encrypt,
    Decrypt,
    Sign,
    Verify,
}

impl CryptoOp {
    pub fn parse(segment: &str) -> Option<CryptoOp> {
        match segment.to_ascii_lowercase().as_str() {
            "wrapkey" => Some(CryptoOp::WrapKey),
            "unwrapkey" => Some(CryptoOp::UnwrapKey),
            "encrypt" => Some(CryptoOp::Encrypt),
            "decrypt" => Some(CryptoOp::Decrypt),
            "sign" => Some(CryptoOp::Sign),
            "verify" => Some(CryptoOp::Verify),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            CryptoOp::WrapKey => "wrapKey",
            CryptoOp::UnwrapKey => "unwrapKey",
            CryptoOp::Encrypt => "encrypt",
            CryptoOp::Decrypt => "decrypt",
            CryptoOp::Sign => "sign",
            CryptoOp::Verify => "verify",
        }
    }
    fn data_action(self) -> &'static str {
        match self {
            CryptoOp::WrapKey => "Microsoft.KeyVault/vaults/keys/wrap/action",
            CryptoOp::UnwrapKey => "Microsoft.KeyVault/vaults/keys/unwrap/action",
            CryptoOp::Encrypt => "Microsoft.KeyVault/vaults/keys/encrypt/action",
            CryptoOp::Decrypt => "Microsoft.KeyVault/vaults/keys/decrypt/action",
            CryptoOp::Sign => "Microsoft.KeyVault/vaults/keys/sign/action",
            CryptoOp::Verify => "Microsoft.KeyVault/vaults/keys/verify/action",
        }
    }
    fn key_op(self) -> KeyOp {
        match self {
            CryptoOp::WrapKey => KeyOp::WrapKey,
            CryptoOp::UnwrapKey => KeyOp::UnwrapKey,
            CryptoOp::Encrypt => KeyOp::Encrypt,
            CryptoOp::Decrypt => KeyOp::Decrypt,
            CryptoOp::Sign => KeyOp::Sign,
            CryptoOp::Verify => KeyOp::Verify,
        }
    }
    /// Operations that protect new data: refused outside the version's nbf/exp window.
    fn protects_new_data(self) -> bool {
        matches!(self, CryptoOp::WrapKey | CryptoOp::Encrypt | CryptoOp::Sign)
    }
}

#[derive(serde::Deserialize)]
struct OperationBody {
    alg: Option<String>,
    value: Option<String>,
}

fn decode_value(v: &str) -> Result<Vec<u8>, VaultError> {
    B64URL
        .decode(v.trim_end_matches('='))
        .or_else(|_| B64URL_PAD.decode(v))
        .map_err(|_| VaultError::bad_parameter("The value is not valid base64url."))
}

/// `POST /keys/{name}/{version}/{operation}` (an empty version is the current one).
pub(crate) fn operate(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    version: Option<&str>,
    op: CryptoOp,
    body: &[u8],
) -> Result<(StatusCode, Value), VaultError> {
    check_name(name)?;
    let b: OperationBody = super::keys::parse_body(body)?;
    let st = ctx.inner.read();
    ctx.authorize_key(&st, caller, op.data_action(), name)?;
    if matches!(op, CryptoOp::Sign | CryptoOp::Verify) {
        return Err(VaultError::bad_parameter(
            "sign and verify are not implemented by keyplane's built-in vault",
        ));
    }
    let alg = Alg::parse(
        b.alg
            .as_deref()
            .ok_or_else(|| VaultError::bad_parameter("The parameter alg is required."))?,
    )?;
    let value = decode_value(
        b.value
            .as_deref()
            .ok_or_else(|| VaultError::bad_parameter("The parameter value is required."))?,
    )?;
    let entry = ctx.key_of(&st, name)?;
    let v = match version {
        None => entry.latest(),
        Some(ver) => entry.version(ver),
    }
    .ok_or_else(|| VaultError::key_not_found(&format!("{name}/{}", version.unwrap_or(""))))?;
    if !v.rec.enabled {
        return Err(VaultError::forbidden(
            format!("Operation {} is not allowed on a disabled key.", op.name()),
            "KeyDisabled",
        ));
    }
    if !v.rec.key_ops.contains(&op.key_op()) {
        return Err(VaultError::forbidden(
            format!("Operation {} is not permitted on this key.", op.name()),
            "KeyOperationForbidden",
        ));
    }
    let now = ctx.inner.now() as i64;
    if op.protects_new_data() {
        if v.rec.exp.is_some_and(|e| e <= now) {
            return Err(VaultError::forbidden(
                format!("Operation {} is not allowed on an expired key.", op.name()),
                "KeyExpired",
            ));
        }
        if v.rec.nbf.is_some_and(|n| n > now) {
            return Err(VaultError::forbidden(
                format!(
                    "Operation {} is not allowed on a key that is not yet valid.",
                    op.name()
                ),
                "KeyNotYetValid",
            ));
        }
    }
    let out = match op {
        CryptoOp::WrapKey | CryptoOp::Encrypt => {
            B64URL.encode(v.material.wrap(v.rec.kty, alg, &value)?)
        }
        _ => B64URL.encode(&*v.material.unwrap(v.rec.kty, alg, &value)?),
    };
    Ok((
        StatusCode::OK,
        json!({ "kid": kid(ctx, &entry.name, Some(&v.rec.version)), "value": out }),
    ))
}

/// Key types the built-in vault creates. EC keys (signing only) are refused at creation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kty {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "RSA-HSM")]
    RsaHsm,
    #[serde(rename = "oct-HSM")]
    OctHsm,
}

impl Kty {
    pub fn parse(s: &str) -> Option<Kty> {
        match s {
            "RSA" => Some(Kty::Rsa),
            "RSA-HSM" => Some(Kty::RsaHsm),
            "oct-HSM" => Some(Kty::OctHsm),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kty::Rsa => "RSA",
            Kty::RsaHsm => "RSA-HSM",
            Kty::OctHsm => "oct-HSM",
        }
    }
    pub fn is_rsa(self) -> bool {
        matches!(self, Kty::Rsa | Kty::RsaHsm)
    }
}

/// The wrap/encrypt algorithms of Key Vault's JWA list this vault implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    RsaOaep256,
    RsaOaep,
    Rsa15,
    A256Kw,
}

impl Alg {
    pub fn parse(s: &str) -> Result<Alg, VaultError> {
        match s {
            "RSA-OAEP-256" => Ok(Alg::RsaOaep256),
            "RSA-OAEP" => Ok(Alg::RsaOaep),
            "RSA1_5" => Ok(Alg::Rsa15),
            "A256KW" => Ok(Alg::A256Kw),
            "A128KW"
            | "A192KW"
            | "A128GCM"
            | "A192GCM"
            | "A256GCM"
            | "A128CBC"
            | "A192CBC"
            | "A256CBC"
            | "A128CBCPAD"
            | "A192CBCPAD"
            | "A256CBCPAD"
            | "CKM_AES_KEY_WRAP"
            | "CKM_AES_KEY_WRAP_PAD"
            | "RSA-OAEP-384"
            | "RSA-OAEP-512" => Err(VaultError::bad_parameter(format!(
                "Algorithm {s} is not supported by keyplane's built-in vault (it implements RSA-OAEP-256, RSA-OAEP, RSA1_5 and A256KW)"
            ))),
            _ => Err(VaultError::bad_parameter(format!("Invalid algorithm: {s}"))),
        }
    }
    fn oaep(self) -> Option<&'static OaepAlgorithm> {
        match self {
            Alg::RsaOaep256 => Some(&OAEP_SHA256_MGF1SHA256),
            Alg::RsaOaep => Some(&OAEP_SHA1_MGF1SHA1),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Alg::RsaOaep256 => "RSA-OAEP-256",
            Alg::RsaOaep => "RSA-OAEP",
            Alg::Rsa15 => "RSA1_5",
            Alg::A256Kw => "A256KW",
        }
    }
}

pub(crate) struct RsaMaterial {
    private: PrivateDecryptingKey,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// One key version's secret: never printed, wiped or freed with clearing on drop.
pub(crate) enum Material {
    Rsa(RsaMaterial),
    Oct(Zeroizing<[u8; 32]>),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Material::Rsa(r) => write!(f, "Material::Rsa({} bits, <redacted>)", r.n.len() * 8),
            Material::Oct(_) => f.write_str("Material::Oct(<redacted>)"),
        }
    }
}

fn invalid_ciphertext() -> VaultError {
    VaultError::bad_parameter("The ciphertext could not be decrypted with this key and algorithm.")
}

impl Material {
    /// Fresh material. RSA 4096 generation takes a noticeable fraction of a second, so callers
    /// run it outside the state lock.
    pub fn generate(kty: Kty, size: u32) -> Result<Material, VaultError> {
        match kty {
            Kty::Rsa | Kty::RsaHsm => {
                let ks = match size {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    _ => {
                        return Err(VaultError::bad_parameter(format!(
                            "The key size {size} is not supported for {}: use 2048, 3072 or 4096",
                            kty.as_str()
                        )));
                    }
                };
                let private = PrivateDecryptingKey::generate(ks)
                    .map_err(|_| VaultError::internal("RSA key generation failed"))?;
                let der = private
                    .as_der()
                    .map_err(|_| VaultError::internal("RSA key encoding failed"))?;
                Material::rsa_from_pkcs8(der.as_ref())
                    .ok_or_else(|| VaultError::internal("RSA key encoding failed"))
            }
            Kty::OctHsm => {
                if size != 256 {
                    return Err(VaultError::bad_parameter(format!(
                        "The key size {size} is not supported for oct-HSM by keyplane's built-in vault: use 256"
                    )));
                }
                let mut k = Zeroizing::new([0u8; 32]);
                rand::RngCore::fill_bytes(&mut rand::rng(), k.as_mut_slice());
                Ok(Material::Oct(k))
            }
        }
    }

    fn rsa_from_pkcs8(der: &[u8]) -> Option<Material> {
        let private = PrivateDecryptingKey::from_pkcs8(der).ok()?;
        let pair = rsa::KeyPair::from_pkcs8(der).ok()?;
        let public = pair.public_key();
        Some(Material::Rsa(RsaMaterial {
            private,
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        }))
    }

    /// The bytes to seal at rest: PKCS#8 for RSA, the raw key for AES.
    pub fn to_bytes(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Material::Rsa(r) => r
                .private
                .as_der()
                .ok()
                .map(|d| Zeroizing::new(d.as_ref().to_vec())),
            Material::Oct(k) => Some(Zeroizing::new(k.to_vec())),
        }
    }

    pub fn from_bytes(kty: Kty, bytes: &[u8]) -> Option<Material> {
        match kty {
            Kty::Rsa | Kty::RsaHsm => Material::rsa_from_pkcs8(bytes),
            Kty::OctHsm => {
                let arr: [u8; 32] = bytes.try_into().ok()?;
                Some(Material::Oct(Zeroizing::new(arr)))
            }
        }
    }

    fn check_alg(&self, kty: Kty, alg: Alg) -> Result<(), VaultError> {
        let ok = match self {
            Material::Rsa(_) => alg != Alg::A256Kw,
            Material::Oct(_) => alg == Alg::A256Kw,
        };
        if ok {
            Ok(())
        } else {
            Err(VaultError::bad_parameter(format!(
                "Algorithm {} is not valid for a key of type {}",
                alg.as_str(),
                kty.as_str()
            )))
        }
    }

    /// wrapKey / encrypt: a public-key operation for RSA, AES key wrap for oct-HSM.
    pub fn wrap(&self, kty: Kty, alg: Alg, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.check_alg(kty, alg)?;
        let too_long = || {
            VaultError::bad_parameter(format!(
                "The value is too long for algorithm {} with this key",
                alg.as_str()
            ))
        };
        match self {
            Material::Rsa(r) => {
                let public = r.private.public_key();
                let mut out = vec![0u8; r.n.len()];
                let len = if let Some(oaep) = alg.oaep() {
                    let key = OaepPublicEncryptingKey::new(public)
                        .map_err(|_| VaultError::internal("bad RSA key"))?;
                    if plaintext.len() > key.max_plaintext_size(oaep) {
                        return Err(too_long());
                    }
                    key.encrypt(oaep, plaintext, &mut out, None)
                        .map_err(|_| too_long())?
                        .len()
                } else {
                    let key = Pkcs1PublicEncryptingKey::new(public)
                        .map_err(|_| VaultError::internal("bad RSA key"))?;
                    if plaintext.len() > key.max_plaintext_size() {
                        return Err(too_long());
                    }
                    key.encrypt(plaintext, &mut out)
                        .map_err(|_| too_long())?
                        .len()
                };
                out.truncate(len);
                Ok(out)
            }
            Material::Oct(k) => {
                if plaintext.len() < 16 || !plaintext.len().is_multiple_of(8) {
                    return Err(VaultError::bad_parameter(
                        "A256KW wraps keys of 16 bytes or more, in multiples of 8 bytes",
                    ));
                }
                let kek = AesKek::new(&AES_256, k.as_slice())
                    .map_err(|_| VaultError::internal("bad AES key"))?;
                let mut out = vec![0u8; plaintext.len() + 8];
                let len = kek
                    .wrap(plaintext, &mut out)
                    .map_err(|_| VaultError::internal("AES key wrap failed"))?
                    .len();
                out.truncate(len);
                Ok(out)
            }
        }
    }

    /// unwrapKey / decrypt. Every failure reads the same, so a caller learns nothing about
    /// why a ciphertext was refused.
    pub fn unwrap(
        &self,
        kty: Kty,
        alg: Alg,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.check_alg(kty, alg)?;
        match self {
            Material::Rsa(r) => {
                if ciphertext.len() != r.n.len() {
                    return Err(invalid_ciphertext());
                }
                let mut out = Zeroizing::new(vec![0u8; r.n.len()]);
                let len = if let Some(oaep) = alg.oaep() {
                    let key = OaepPrivateDecryptingKey::new(r.private.clone())
                        .map_err(|_| VaultError::internal("bad RSA key"))?;
                    key.decrypt(oaep, ciphertext, &mut out, None)
                        .map_err(|_| invalid_ciphertext())?
                        .len()
                } else {
                    let key = Pkcs1PrivateDecryptingKey::new(r.private.clone())
                        .map_err(|_| VaultError::internal("bad RSA key"))?;
                    key.decrypt(ciphertext, &mut out)
                        .map_err(|_| invalid_ciphertext())?
                        .len()
                };
                out.truncate(len);
                Ok(out)
            }
            Material::Oct(k) => {
                if ciphertext.len() < 24 || !ciphertext.len().is_multiple_of(8) {
                    return Err(invalid_ciphertext());
                }
                let kek = AesKek::new(&AES_256, k.as_slice())
                    .map_err(|_| VaultError::internal("bad AES key"))?;
                let mut out = Zeroizing::new(vec![0u8; ciphertext.len()]);
                let len = kek
                    .unwrap(ciphertext, &mut out)
                    .map_err(|_| invalid_ciphertext())?
                    .len();
                out.truncate(len);
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_wrap_unwrap_round_trips_for_every_algorithm_and_survives_sealing() {
        let m = Material::generate(Kty::Rsa, 2048).unwrap();
        let bytes = m.to_bytes().unwrap();
        let m2 = Material::from_bytes(Kty::Rsa, &bytes).unwrap();
        let Material::Rsa(r) = &m2 else { panic!() };
        assert_eq!(r.n.len(), 256);
        assert_eq!(r.e, vec![1, 0, 1]);
        for alg in [Alg::RsaOaep256, Alg::RsaOaep, Alg::Rsa15] {
            let ct = m.wrap(Kty::Rsa, alg, &[7u8; 32]).unwrap();
            assert_eq!(&m2.unwrap(Kty::Rsa, alg, &ct).unwrap()[..], &[7u8; 32]);
        }
        let ct = m.wrap(Kty::Rsa, Alg::RsaOaep256, &[7u8; 32]).unwrap();
        assert!(m.unwrap(Kty::Rsa, Alg::RsaOaep, &ct).is_err());
        assert!(m.wrap(Kty::Rsa, Alg::A256Kw, &[7u8; 32]).is_err());
        assert!(m.wrap(Kty::Rsa, Alg::RsaOaep256, &[0u8; 300]).is_err());
        assert!(format!("{m:?}").contains("redacted"));
    }

    #[test]
    fn aes_key_wrap_round_trips_and_detects_tampering() {
        let m = Material::generate(Kty::OctHsm, 256).unwrap();
        let ct = m.wrap(Kty::OctHsm, Alg::A256Kw, &[9u8; 32]).unwrap();
        assert_eq!(ct.len(), 40);
        assert_eq!(
            &m.unwrap(Kty::OctHsm, Alg::A256Kw, &ct).unwrap()[..],
            &[9u8; 32]
        );
        let mut t = ct.clone();
        t[5] ^= 1;
        assert!(m.unwrap(Kty::OctHsm, Alg::A256Kw, &t).is_err());
        assert!(m.wrap(Kty::OctHsm, Alg::RsaOaep256, &[9u8; 32]).is_err());
        assert!(Material::generate(Kty::OctHsm, 128).is_err());
        assert!(Material::generate(Kty::Rsa, 1024).is_err());
    }
}
