"""Google Cloud KMS conformance: the official Python client against keyplane's built-in KMS.

Each case is what Cloud KMS documents; the assertions read the client's typed results and
exceptions, and the raw Google error body ({"error": {"code", "message", "status"}}).
"""

import google.auth.exceptions
import pytest
import requests
from google.api_core import exceptions
from google.cloud import kms

from conftest import ENDPOINT, PLATFORM, make_client, set_roles, advance_clock

ENC_DEC = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
VIEWER = "roles/cloudkms.viewer"
PLATFORM_PERMISSIONS = [
    "cloudkms.cryptoKeyVersions.useToEncrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt",
    "cloudkms.cryptoKeys.get",
]
State = kms.CryptoKeyVersion.CryptoKeyVersionState


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def status_of(exc):
    """The canonical status string of Google's JSON error body."""
    return exc.response.json()["error"]["status"]


def encrypt(client, name, plaintext, aad=b""):
    return client.encrypt(
        request={"name": name, "plaintext": plaintext, "additional_authenticated_data": aad}
    )


def decrypt(client, name, ciphertext, aad=b""):
    return client.decrypt(
        request={"name": name, "ciphertext": ciphertext, "additional_authenticated_data": aad}
    )


def test_encrypt_decrypt_round_trip_with_aad_and_checksums(platform, granted_key):
    data, aad = b"a data key of 32 bytes, or so..", b"org=1;db=2"
    r = platform.encrypt(
        request={
            "name": granted_key,
            "plaintext": data,
            "additional_authenticated_data": aad,
            "plaintext_crc32c": crc32c(data),
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
    )
    assert r.name == granted_key + "/cryptoKeyVersions/1"
    assert r.verified_plaintext_crc32c and r.verified_additional_authenticated_data_crc32c
    assert r.ciphertext_crc32c == crc32c(r.ciphertext)
    assert r.protection_level == kms.ProtectionLevel.SOFTWARE
    d = decrypt(platform, granted_key, r.ciphertext, aad)
    assert d.plaintext == data
    assert d.plaintext_crc32c == crc32c(data)
    assert d.used_primary


def test_a_wrong_checksum_is_refused(platform, granted_key):
    with pytest.raises(exceptions.BadRequest) as e:
        platform.encrypt(
            request={"name": granted_key, "plaintext": b"x", "plaintext_crc32c": crc32c(b"y")}
        )
    assert status_of(e.value) == "INVALID_ARGUMENT"


def test_aad_mismatch_and_foreign_ciphertexts_are_refused(customer, platform, granted_key, key_ring):
    ct = encrypt(platform, granted_key, b"secret", b"right").ciphertext
    for aad in (b"wrong", b""):
        with pytest.raises(exceptions.BadRequest) as e:
            decrypt(platform, granted_key, ct, aad)
        assert status_of(e.value) == "INVALID_ARGUMENT"
    other = customer.create_crypto_key(
        request={
            "parent": key_ring,
            "crypto_key_id": "other-" + granted_key[-6:],
            "crypto_key": {"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    ).name
    with pytest.raises(exceptions.BadRequest):
        decrypt(customer, other, ct, b"right")
    with pytest.raises(exceptions.BadRequest):
        decrypt(platform, granted_key, b"garbage", b"right")


def test_a_disabled_version_refuses_until_enabled(customer, platform, granted_key):
    ct = encrypt(platform, granted_key, b"data").ciphertext
    v1 = granted_key + "/cryptoKeyVersions/1"
    v = customer.update_crypto_key_version(
        request={"crypto_key_version": {"name": v1, "state": State.DISABLED}, "update_mask": {"paths": ["state"]}}
    )
    assert v.state == State.DISABLED
    assert customer.get_crypto_key(request={"name": granted_key}).primary.state == State.DISABLED
    for call in (lambda: encrypt(platform, granted_key, b"x"), lambda: decrypt(platform, granted_key, ct)):
        with pytest.raises(exceptions.BadRequest) as e:
            call()
        assert status_of(e.value) == "FAILED_PRECONDITION"
        assert "DISABLED" in e.value.message
    customer.update_crypto_key_version(
        request={"crypto_key_version": {"name": v1, "state": State.ENABLED}, "update_mask": {"paths": ["state"]}}
    )
    assert decrypt(platform, granted_key, ct).plaintext == b"data"


def test_a_caller_without_the_binding_gets_permission_denied(customer, platform, key):
    with pytest.raises(exceptions.Forbidden) as e:
        encrypt(platform, key, b"x")
    assert status_of(e.value) == "PERMISSION_DENIED"
    assert "cloudkms.cryptoKeyVersions.useToEncrypt" in e.value.message
    assert e.value.reason == "IAM_PERMISSION_DENIED"
    with pytest.raises(exceptions.Forbidden):
        platform.get_crypto_key(request={"name": key})
    # The customer's own call works; after the binding, the platform's does too.
    ct = encrypt(customer, key, b"x").ciphertext
    set_roles(customer, key, PLATFORM, [ENC_DEC])
    assert decrypt(platform, key, ct).plaintext == b"x"
    # A binding removed is enforced on the very next call.
    set_roles(customer, key, PLATFORM, [])
    with pytest.raises(exceptions.Forbidden):
        decrypt(platform, key, ct)
    # Nobody but the customer may change the policy.
    with pytest.raises(exceptions.Forbidden):
        set_roles(platform, key, PLATFORM, [ENC_DEC])


def test_test_iam_permissions_answers_per_binding(customer, platform, key):
    def held():
        r = platform.test_iam_permissions(request={"resource": key, "permissions": PLATFORM_PERMISSIONS})
        return sorted(r.permissions)

    assert held() == []
    set_roles(customer, key, PLATFORM, [ENC_DEC])
    assert held() == sorted(PLATFORM_PERMISSIONS[:2])
    set_roles(customer, key, PLATFORM, [VIEWER])
    assert held() == ["cloudkms.cryptoKeys.get"]
    set_roles(customer, key, PLATFORM, [ENC_DEC, VIEWER])
    assert held() == sorted(PLATFORM_PERMISSIONS)
    # The owner holds everything.
    r = customer.test_iam_permissions(request={"resource": key, "permissions": PLATFORM_PERMISSIONS})
    assert sorted(r.permissions) == sorted(PLATFORM_PERMISSIONS)


def test_rotation_keeps_old_ciphertexts_readable(customer, platform, granted_key):
    ct1 = encrypt(platform, granted_key, b"one").ciphertext
    v2 = customer.create_crypto_key_version(request={"parent": granted_key, "crypto_key_version": {}})
    assert v2.name.endswith("/cryptoKeyVersions/2") and v2.state == State.ENABLED
    # A new version is not primary until made so.
    assert encrypt(platform, granted_key, b"x").name.endswith("/1")
    k = customer.update_crypto_key_primary_version(request={"name": granted_key, "crypto_key_version_id": "2"})
    assert k.primary.name == v2.name
    r2 = encrypt(platform, granted_key, b"two")
    assert r2.name == v2.name
    d1 = decrypt(platform, granted_key, ct1)
    assert d1.plaintext == b"one" and not d1.used_primary
    assert decrypt(platform, granted_key, r2.ciphertext).plaintext == b"two"
    versions = customer.list_crypto_key_versions(request={"parent": granted_key})
    assert [v.name.rsplit("/", 1)[1] for v in versions] == ["1", "2"]


def test_destroyed_versions_refuse(customer, platform, granted_key):
    ct = encrypt(platform, granted_key, b"data").ciphertext
    v1 = granted_key + "/cryptoKeyVersions/1"
    v = customer.destroy_crypto_key_version(request={"name": v1})
    assert v.state == State.DESTROY_SCHEDULED
    assert v.destroy_time is not None
    with pytest.raises(exceptions.BadRequest) as e:
        decrypt(platform, granted_key, ct)
    assert status_of(e.value) == "FAILED_PRECONDITION" and "DESTROY_SCHEDULED" in e.value.message
    # Restored versions come back disabled.
    assert customer.restore_crypto_key_version(request={"name": v1}).state == State.DISABLED
    customer.destroy_crypto_key_version(request={"name": v1})
    advance_clock(31 * 86400)
    assert customer.get_crypto_key_version(request={"name": v1}).state == State.DESTROYED
    with pytest.raises(exceptions.BadRequest) as e:
        decrypt(platform, granted_key, ct)
    assert "DESTROYED" in e.value.message
    with pytest.raises(exceptions.BadRequest) as e:
        customer.restore_crypto_key_version(request={"name": v1})
    assert status_of(e.value) == "FAILED_PRECONDITION"


def test_stale_etags_unknown_tokens_and_missing_resources(customer, key, key_ring):
    p = customer.get_iam_policy(request={"resource": key})
    set_roles(customer, key, PLATFORM, [VIEWER])
    with pytest.raises(exceptions.Conflict) as e:
        customer.set_iam_policy(request={"resource": key, "policy": p})
    assert status_of(e.value) == "ABORTED"
    # An unknown token is answered 401 UNAUTHENTICATED; google-auth then tries to refresh the
    # static token, which it cannot, as against Cloud KMS.
    with pytest.raises(google.auth.exceptions.RefreshError):
        make_client(token="kpgcp-unknown").get_crypto_key(request={"name": key})
    r = requests.get(f"{ENDPOINT}/v1/{key}", headers={"Authorization": "Bearer kpgcp-unknown"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED" and r.json()["error"]["code"] == 401
    assert requests.get(f"{ENDPOINT}/v1/{key}", timeout=10).status_code == 401
    with pytest.raises(exceptions.NotFound):
        customer.get_crypto_key(request={"name": key_ring + "/cryptoKeys/missing"})
    with pytest.raises(exceptions.Conflict) as e:
        customer.create_crypto_key(
            request={
                "parent": key_ring,
                "crypto_key_id": key.rsplit("/", 1)[1],
                "crypto_key": {"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
            }
        )
    assert status_of(e.value) == "ALREADY_EXISTS"
    with pytest.raises(exceptions.Forbidden):
        customer.create_key_ring(
            request={"parent": "projects/someone-elses/locations/us-east1", "key_ring_id": "r", "key_ring": {}}
        )


def test_keys_and_rings_are_listed_and_described(customer, key, key_ring):
    rings = [r.name for r in customer.list_key_rings(request={"parent": key_ring.rsplit("/keyRings/", 1)[0]})]
    assert key_ring in rings
    keys = [k.name for k in customer.list_crypto_keys(request={"parent": key_ring})]
    assert key in keys
    k = customer.get_crypto_key(request={"name": key})
    assert k.purpose == kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT
    assert k.version_template.algorithm == kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert k.primary.state == State.ENABLED
    assert k.destroy_scheduled_duration.total_seconds() == 30 * 86400
