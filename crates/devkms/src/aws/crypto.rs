//! The cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext)
//! and GenerateRandom. Each request is decoded into its typed form first, so every validation
//! error comes before the key is looked up, as AWS orders them.

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::crypto::{self, BlobHeader};
use crate::error::ApiError;
use crate::state::{Key, State};

use super::access::{Scope, authorize_crypto, stored};
use super::input::{EncryptionContext, Input};
use super::{Ctx, b64};

const MAX_PLAINTEXT: usize = 4096;
const MAX_CIPHERTEXT: usize = 6144;

struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: Zeroizing<Vec<u8>>,
    context: EncryptionContext,
    algorithm: Option<&'a str>,
}

impl<'a> EncryptRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        let key_id = input.str_req("KeyId")?;
        let plaintext = input.blob_req("Plaintext")?;
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length {}",
                if plaintext.is_empty() {
                    "greater than or equal to 1"
                } else {
                    "less than or equal to 4096"
                }
            )));
        }
        Ok(EncryptRequest {
            key_id,
            plaintext,
            context: input.context("EncryptionContext")?,
            algorithm: input.str_opt("EncryptionAlgorithm")?,
        })
    }
}

struct DecryptRequest<'a> {
    ciphertext: Zeroizing<Vec<u8>>,
    context: EncryptionContext,
    key_id: Option<&'a str>,
    algorithm: Option<&'a str>,
}

impl<'a> DecryptRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        Ok(DecryptRequest {
            ciphertext: input.blob_req("CiphertextBlob")?,
            context: input.context("EncryptionContext")?,
            key_id: input.str_opt("KeyId")?,
            algorithm: input.str_opt("EncryptionAlgorithm")?,
        })
    }
}

struct ReEncryptRequest<'a> {
    ciphertext: Zeroizing<Vec<u8>>,
    destination_key_id: &'a str,
    source_context: EncryptionContext,
    destination_context: EncryptionContext,
    source_key_id: Option<&'a str>,
    source_algorithm: Option<&'a str>,
    destination_algorithm: Option<&'a str>,
}

impl<'a> ReEncryptRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        Ok(ReEncryptRequest {
            ciphertext: input.blob_req("CiphertextBlob")?,
            destination_key_id: input.str_req("DestinationKeyId")?,
            source_context: input.context("SourceEncryptionContext")?,
            destination_context: input.context("DestinationEncryptionContext")?,
            source_key_id: input.str_opt("SourceKeyId")?,
            source_algorithm: input.str_opt("SourceEncryptionAlgorithm")?,
            destination_algorithm: input.str_opt("DestinationEncryptionAlgorithm")?,
        })
    }
}

/// GenerateDataKey and GenerateDataKeyWithoutPlaintext share their members.
struct DataKeyRequest<'a> {
    key_id: &'a str,
    len: usize,
    context: EncryptionContext,
}

impl<'a> DataKeyRequest<'a> {
    fn parse(input: Input<'a>) -> Result<Self, ApiError> {
        let key_id = input.str_req("KeyId")?;
        let len = match (input.str_opt("KeySpec")?, input.int_opt("NumberOfBytes")?) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::validation(
                    "Please specify either number of bytes or key spec.",
                ));
            }
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (Some(other), None) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
                )));
            }
            (None, Some(n)) if (1..=1024).contains(&n) => n as usize,
            (None, Some(n)) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
                )));
            }
        };
        Ok(DataKeyRequest {
            key_id,
            len,
            context: input.context("EncryptionContext")?,
        })
    }
}

fn check_algorithm(k: &Key, alg: Option<&str>) -> Result<(), ApiError> {
    match alg {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some("RSAES_OAEP_SHA_1") | Some("RSAES_OAEP_SHA_256") | Some("SM2PKE") => {
            Err(ApiError::new(
                "InvalidKeyUsageException",
                format!(
                    "The encryption algorithm is not valid for KMS key {}.",
                    k.rec.arn
                ),
            ))
        }
        Some(other) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'encryptionAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]"
        ))),
    }
}

/// Seals `plaintext` under the key's newest material, binding `enc_ctx` as AAD.
fn seal_under(
    ctx: &Ctx<'_>,
    k: &Key,
    enc_ctx: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let version = k
        .materials
        .len()
        .checked_sub(1)
        .ok_or_else(|| ApiError::internal("key has no material"))?;
    let header = BlobHeader {
        account: k.rec.account.clone(),
        region: ctx.region.clone(),
        key_id: k.rec.key_id.clone(),
        version: version as u32,
    };
    Ok(crypto::seal_blob(
        &k.materials[version],
        &header,
        enc_ctx,
        plaintext,
    ))
}

pub(super) fn encrypt(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let req = EncryptRequest::parse(input)?;
    let st = ctx.inner.read();
    let k = ctx.key(&st, req.key_id, Scope::CrossAccount)?;
    authorize_crypto(
        ctx,
        k,
        "kms:Encrypt",
        "Encrypt",
        &req.context,
        req.algorithm,
        &[],
    )?;
    check_algorithm(k, req.algorithm)?;
    let blob = seal_under(ctx, k, &req.context, &req.plaintext)?;
    Ok(
        json!({ "CiphertextBlob": b64(&blob), "KeyId": k.rec.arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" }),
    )
}

/// A ciphertext's key, found but not yet authorized, with the parts [`open`] needs.
struct Located<'s, 'b> {
    key: &'s Key,
    version: u32,
    header_bytes: &'b [u8],
    sealed: &'b [u8],
}

/// Finds the key a ciphertext names. `requested` is the optional KeyId the caller said it
/// expects.
fn locate<'s, 'b>(
    ctx: &Ctx<'_>,
    st: &'s State,
    blob: &'b [u8],
    requested: Option<&str>,
) -> Result<Located<'s, 'b>, ApiError> {
    if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length between 1 and 6144",
        ));
    }
    let (header, header_bytes, sealed) =
        BlobHeader::parse(blob).ok_or_else(ApiError::invalid_ciphertext)?;
    if header.region != ctx.region {
        return Err(ApiError::invalid_ciphertext());
    }
    let k = match st.keys.get(&header.key_id) {
        Some(k)
            if k.rec.account == header.account
                && k.rec.region == header.region
                && !k.is_deleted(ctx.now) =>
        {
            k
        }
        _ => {
            return Err(ApiError::key_not_found(
                &ctx.key_arn(&header.account, &header.key_id),
            ));
        }
    };
    if let Some(r) = requested {
        let wanted = ctx.resolve(st, r, Scope::CrossAccount)?;
        if wanted != k.rec.key_id {
            return Err(ApiError::new(
                "IncorrectKeyException",
                "The key ID in the request does not identify a KMS key that can perform this operation.",
            ));
        }
    }
    Ok(Located {
        key: k,
        version: header.version,
        header_bytes,
        sealed,
    })
}

/// Opens an authorized ciphertext under `enc_ctx`.
fn open(c: &Located<'_, '_>, enc_ctx: &EncryptionContext) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let material = c
        .key
        .materials
        .get(c.version as usize)
        .ok_or_else(ApiError::invalid_ciphertext)?;
    crypto::open_blob(material, c.header_bytes, c.sealed, enc_ctx)
        .ok_or_else(ApiError::invalid_ciphertext)
}

pub(super) fn decrypt(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let req = DecryptRequest::parse(input)?;
    let st = ctx.inner.read();
    let c = locate(ctx, &st, &req.ciphertext, req.key_id)?;
    authorize_crypto(
        ctx,
        c.key,
        "kms:Decrypt",
        "Decrypt",
        &req.context,
        req.algorithm,
        &[],
    )?;
    let pt = open(&c, &req.context)?;
    check_algorithm(c.key, req.algorithm)?;
    Ok(
        json!({ "KeyId": c.key.rec.arn, "Plaintext": b64(&pt), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT" }),
    )
}

/// Authorized twice, as AWS does: kms:ReEncryptFrom on the source key under the source context,
/// then kms:ReEncryptTo on the destination key under the destination context; both carry
/// `kms:ReEncryptOnSameKey`.
pub(super) fn re_encrypt(ctx: &Ctx<'_>, input: Input<'_>) -> Result<Value, ApiError> {
    let req = ReEncryptRequest::parse(input)?;
    let st = ctx.inner.read();
    let src = locate(ctx, &st, &req.ciphertext, req.source_key_id)?;
    // Resolved now only to tell whether it is the same key; its errors surface in AWS's order,
    // after the source side is authorized.
    let dst = ctx.resolve(&st, req.destination_key_id, Scope::CrossAccount);
    let same_key = dst.as_deref().is_ok_and(|d| d == src.key.rec.key_id);
    let same_key = [("kms:ReEncryptOnSameKey", vec![same_key.to_string()])];
    authorize_crypto(
        ctx,
        src.key,
        "kms:ReEncryptFrom",
        "ReEncryptFrom",
        &req.source_context,
        req.source_algorithm,
        &same_key,
    )?;
    let pt = open(&src, &req.source_context)?;
    check_algorithm(src.key, req.source_algorithm)?;
    let dst = stored(&st, &dst?)?;
    authorize_crypto(
        ctx,
        dst,
        "kms:ReEncryptTo",
        "ReEncrypt",
        &req.destination_context,
        req.destination_algorithm,
        &same_key,
    )?;
    check_algorithm(dst, req.destination_algorithm)?;
    let out = seal_under(ctx, dst, &req.destination_context, &pt)?;
    Ok(json!({
        "CiphertextBlob": b64(&out),
        "SourceKeyId": src.key.rec.arn,
        "KeyId": dst.rec.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(super) fn generate_data_key(
    ctx: &Ctx<'_>,
    input: Input<'_>,
    with_plaintext: bool,
) -> Result<Value, ApiError> {
    let req = DataKeyRequest::parse(input)?;
    let (action, op) = if with_plaintext {
        ("kms:GenerateDataKey", "GenerateDataKey")
    } else {
        (
            "kms:GenerateDataKeyWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
        )
    };
    let st = ctx.inner.read();
    let k = ctx.key(&st, req.key_id, Scope::CrossAccount)?;
    authorize_crypto(ctx, k, action, op, &req.context, None, &[])?;
    let dk = crypto::random_bytes(req.len);
    let blob = seal_under(ctx, k, &req.context, &dk)?;
    let mut out = json!({ "CiphertextBlob": b64(&blob), "KeyId": k.rec.arn });
    if with_plaintext {
        out["Plaintext"] = json!(b64(&dk));
    }
    Ok(out)
}

pub(super) fn generate_random(input: Input<'_>) -> Result<Value, ApiError> {
    if input.str_opt("CustomKeyStoreId")?.is_some() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "Custom key stores are not supported by keyplane's KMS",
        ));
    }
    let n = input
        .int_in("NumberOfBytes", 1..=1024)?
        .ok_or_else(|| ApiError::validation("NumberOfBytes is required."))? as usize;
    Ok(json!({ "Plaintext": b64(&crypto::random_bytes(n)) }))
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn generate_random_keeps_aws_range_message() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"NumberOfBytes": 2048}"#).unwrap();
        assert_eq!(
            generate_random(Input(&m)).unwrap_err().message,
            "1 validation error detected: Value '2048' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
        );
    }
}
