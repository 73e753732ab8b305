"""Conformance of keyplane's built-in Azure Key Vault with Microsoft's official Python SDK.

azure-keyvault-keys (KeyClient, CryptographyClient) talks to the vault over TLS with the dev CA
as `connection_verify` and a static-token credential; role assignments go through the ARM REST
API with `requests`, as `az role assignment create` would. The customer is the dev tenant's
administrator; the platform is the dev application's service principal.

Environment: AZ_CREDENTIALS_FILE (the azure-credentials.json `keyplane kms azure serve` writes)
and AZ_ADMIN_TOKEN_FILE (the devkms admin token, to add a principal).
"""

import base64
import datetime
import json
import os
import time
import uuid

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

CSEU = "e147488a-f6f5-4113-8e2d-b22465e65bf6"  # Key Vault Crypto Service Encryption User
ARM_API = "2022-04-01"

with open(os.environ["AZ_CREDENTIALS_FILE"]) as f:
    CREDS = json.load(f)
URL = CREDS["vaultUrl"]
CA = CREDS["caFile"]
SCOPE = CREDS["vaultScope"]
PLATFORM = CREDS["platform"]


class StaticTokenCredential:
    """A credential that always answers with one bearer token (the vault's dev tokens)."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self):
        return "StaticTokenCredential(<redacted>)"


def client_kwargs():
    # The dev host (localhost) cannot match the challenge's vault.azure.net resource.
    return {"verify_challenge_resource": False, "connection_verify": CA}


CUSTOMER = StaticTokenCredential(CREDS["customer"]["token"])
PLATFORM_CRED = StaticTokenCredential(PLATFORM["token"])


def customer_keys():
    return KeyClient(URL, CUSTOMER, **client_kwargs())


def platform_keys():
    return KeyClient(URL, PLATFORM_CRED, **client_kwargs())


def platform_crypto(key_id, credential=PLATFORM_CRED):
    return CryptographyClient(key_id, credential, **client_kwargs())


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def arm(method, path, body=None, token=None):
    r = requests.request(
        method,
        f"{URL}{path}",
        params={"api-version": ARM_API},
        headers={"Authorization": f"Bearer {token or CREDS['customer']['token']}"},
        json=body,
        verify=CA,
        timeout=30,
    )
    return r


def assign(scope, principal=None, role=CSEU):
    r = arm(
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{CREDS['subscriptionId']}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                "principalId": principal or PLATFORM["objectId"],
                "principalType": "ServicePrincipal",
            }
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["name"]


def key_scope(key_name):
    return f"{SCOPE}/keys/{key_name}"


def new_key(prefix, kind="rsa", grant=True):
    kc = customer_keys()
    n = name(prefix)
    if kind == "rsa":
        key = kc.create_rsa_key(n, size=2048)
    else:
        key = kc.create_oct_key(n, size=256, hardware_protected=True)
    if grant:
        assign(key_scope(n))
    return key


def data_key():
    return os.urandom(32)


def test_the_first_request_gets_the_bearer_challenge():
    r = requests.get(f"{URL}/keys", params={"api-version": "2025-07-01"}, verify=CA, timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{URL}/{CREDS["tenantId"]}", resource="https://vault.azure.net"'
    )
    assert r.json()["error"]["code"] == "Unauthorized"
    assert r.headers["x-ms-keyvault-region"] == CREDS["location"]


@pytest.mark.parametrize("kind,alg", [("rsa", KeyWrapAlgorithm.rsa_oaep_256), ("oct", KeyWrapAlgorithm.aes_256)])
def test_wrap_unwrap_round_trip(kind, alg):
    key = new_key("wrap", kind)
    assert key.properties.enabled
    crypto = platform_crypto(key.id)
    dk = data_key()
    wrapped = crypto.wrap_key(alg, dk)
    assert wrapped.key_id == key.id, "the result names the version that wrapped"
    assert wrapped.encrypted_key != dk
    assert crypto.unwrap_key(alg, wrapped.encrypted_key).key == dk
    # The platform can read what it needs to check the key.
    got = platform_keys().get_key(key.name)
    assert got.id == key.id and got.key_type in ("RSA", "oct-HSM")


def test_rsa_public_key_is_the_one_the_vault_unwraps_with():
    """The SDK wraps RSA locally with the JWK's n and e; the vault must unwrap that."""
    key = new_key("jwk")
    assert len(key.key.n) == 256 and key.key.e == b"\x01\x00\x01"
    local = platform_crypto(key.id)
    wrapped = local.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    # Unwrap on the server, through the raw REST call.
    r = platform_keys().send_request(
        HttpRequest(
            "POST",
            f"/keys/{key.name}/{key.properties.version}/unwrapkey",
            json={"alg": "RSA-OAEP-256", "value": base64.urlsafe_b64encode(wrapped.encrypted_key).decode().rstrip("=")},
            params={"api-version": "2025-07-01"},
        )
    )
    assert r.status_code == 200, r.text()
    value = r.json()["value"]
    assert base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) == b"k" * 32


def test_disabled_key_refused():
    key = new_key("disabled")
    crypto = platform_crypto(key.id)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key())
    customer_keys().update_key_properties(key.name, enabled=False)
    assert platform_keys().get_key(key.name).properties.enabled is False
    with pytest.raises(HttpResponseError) as e:
        platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert e.value.status_code == 403
    assert "disabled" in e.value.message
    assert e.value.error.innererror["code"] == "KeyDisabled"
    customer_keys().update_key_properties(key.name, enabled=True)
    assert platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key


def test_expired_key_refused_for_new_data_but_unwraps_old():
    key = new_key("expired")
    wrapped = platform_crypto(key.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    customer_keys().update_key_properties(key.name, expires_on=past)
    # The SDK itself refuses to wrap locally with a key it read as expired (it checks the
    # dates of a KeyVaultKey it is given, not of one it fetched from a bare key ID)...
    expired = platform_keys().get_key(key.name)
    assert expired.properties.expires_on < datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(ValueError):
        CryptographyClient(expired, PLATFORM_CRED, **client_kwargs()).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)
    # ...and the vault refuses it too.
    r = platform_keys().send_request(
        HttpRequest(
            "POST",
            f"/keys/{key.name}/{key.properties.version}/wrapkey",
            json={"alg": "RSA-OAEP-256", "value": base64.urlsafe_b64encode(b"d" * 32).decode().rstrip("=")},
            params={"api-version": "2025-07-01"},
        )
    )
    assert r.status_code == 403, r.text()
    assert r.json()["error"]["innererror"]["code"] == "KeyExpired"
    # Key Vault's date-time rule: unwrap still works for data protected while it was valid.
    assert platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"d" * 32


def test_missing_role_is_403():
    key = new_key("norole", grant=False)
    with pytest.raises(HttpResponseError) as e:
        platform_keys().get_key(key.name)
    assert e.value.status_code == 403
    assert e.value.error.innererror["code"] == "ForbiddenByRbac"
    assert "Microsoft.KeyVault/vaults/keys/read" in e.value.message
    wrapped = CryptographyClient(key, CUSTOMER, **client_kwargs()).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"x" * 32)
    with pytest.raises(HttpResponseError) as e:
        platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert e.value.status_code == 403
    assert "Microsoft.KeyVault/vaults/keys/unwrap/action" in e.value.message
    # Granted, then revoked.
    assignment = assign(key_scope(key.name))
    assert platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"x" * 32
    r = arm("DELETE", f"{key_scope(key.name)}/providers/Microsoft.Authorization/roleAssignments/{assignment}")
    assert r.status_code == 200, r.text
    with pytest.raises(HttpResponseError) as e:
        platform_crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert e.value.status_code == 403


def test_the_platform_cannot_assign_itself_a_role():
    key = new_key("selfgrant", grant=False)
    r = arm(
        "PUT",
        f"{key_scope(key.name)}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        {"properties": {"roleDefinitionId": CSEU, "principalId": PLATFORM["objectId"]}},
        token=PLATFORM["token"],
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "AuthorizationFailed", r.text


def test_another_principal_without_a_role_is_refused():
    with open(os.environ["AZ_ADMIN_TOKEN_FILE"]) as f:
        admin = f.read().strip()
    r = requests.post(
        f"{URL}/_admin/azure/principals",
        headers={"x-keyplane-admin-token": admin},
        json={"displayName": "another-platform"},
        verify=CA,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    other = StaticTokenCredential(r.json()["token"])
    key = new_key("other")
    with pytest.raises(HttpResponseError) as e:
        KeyClient(URL, other, **client_kwargs()).get_key(key.name)
    assert e.value.status_code == 403


def test_rotation_keeps_old_wrapped_keys_readable():
    key = new_key("rotate")
    v1 = key.id
    old = platform_crypto(key.id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"1" * 32)
    assert old.key_id == v1
    rotated = customer_keys().rotate_key(key.name)
    assert rotated.properties.version != key.properties.version
    versionless = key.id.rsplit("/", 1)[0]
    new = platform_crypto(versionless).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"2" * 32)
    assert new.key_id == rotated.id, "new data keys are wrapped by the new version"
    assert platform_crypto(old.key_id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, old.encrypted_key).key == b"1" * 32
    assert platform_crypto(new.key_id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, new.encrypted_key).key == b"2" * 32
    versions = [p.version for p in customer_keys().list_properties_of_key_versions(key.name)]
    assert versions == [key.properties.version, rotated.properties.version]


def test_unknown_key_is_404():
    with pytest.raises(ResourceNotFoundError):
        customer_keys().get_key(name("missing"))
    # The platform with a vault-wide role sees 404 too (a key-scoped role would see 403).
    assign(SCOPE)
    with pytest.raises(ResourceNotFoundError):
        platform_keys().get_key(name("missing"))
    with pytest.raises(ResourceNotFoundError):
        platform_crypto(f"{URL}/keys/{name('missing')}/{uuid.uuid4().hex}").unwrap_key(
            KeyWrapAlgorithm.rsa_oaep_256, b"\x00" * 256
        )


def test_soft_delete_recover_and_purge():
    kc = customer_keys()
    key = kc.create_rsa_key(name("deleted"), size=2048)
    deleted = kc.begin_delete_key(key.name).result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{key.name}")
    assert deleted.scheduled_purge_date > datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(ResourceNotFoundError):
        kc.get_key(key.name)
    with pytest.raises(HttpResponseError) as e:
        kc.create_rsa_key(key.name, size=2048)
    assert e.value.status_code == 409
    assert kc.get_deleted_key(key.name).name == key.name
    recovered = kc.begin_recover_deleted_key(key.name).result()
    assert recovered.id == key.id
    kc.begin_delete_key(key.name).result()
    kc.purge_deleted_key(key.name)
    with pytest.raises(ResourceNotFoundError):
        kc.get_deleted_key(key.name)


def test_listing_pages_through_every_version():
    kc = customer_keys()
    n = name("paged")
    created = [kc.create_oct_key(n, size=256, hardware_protected=True).properties.version for _ in range(27)]
    listed = [p.version for p in kc.list_properties_of_key_versions(n, max_page_size=10)]
    assert listed == created
    assert n in [p.name for p in kc.list_properties_of_keys()]


def test_bad_requests_are_clear_400s():
    kc = customer_keys()
    with pytest.raises(HttpResponseError) as e:
        kc.create_rsa_key("bad_name", size=2048)
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        kc.create_rsa_key(name("small"), size=1024)
    assert e.value.status_code == 400 and "2048" in e.value.message
    with pytest.raises(HttpResponseError) as e:
        kc.create_ec_key(name("ec"))
    assert e.value.status_code == 400 and "EC keys" in e.value.message
