"""Fixtures for the Google Cloud KMS conformance suite: Google's official Python client
(google-cloud-kms, REST transport, unmodified) pointed at keyplane's built-in KMS.

  GCP_KMS_ENDPOINT          http://127.0.0.1:PORT (the built-in KMS)
  GCP_KMS_CREDENTIALS_FILE  its <data-dir>/credentials.json: every identity's dev token
  GCP_KMS_ADMIN_TOKEN_FILE  its <data-dir>/admin-token, to move its clock (optional)
"""

import json
import os
import uuid

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.cloud import kms
from google.oauth2.credentials import Credentials

ENDPOINT = os.environ["GCP_KMS_ENDPOINT"]
PROJECT = "customer-project"
LOCATION = "us-east1"
CUSTOMER = "user:admin@customer.example"
PLATFORM = "serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com"


def _tokens():
    with open(os.environ["GCP_KMS_CREDENTIALS_FILE"]) as f:
        return {i["member"]: i["token"] for i in json.load(f)["gcp"]["identities"]}


TOKENS = _tokens()


def make_client(member=None, token=None):
    """The official client with a static bearer token (what any OAuth token source yields)."""
    return kms.KeyManagementServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=ENDPOINT),
        credentials=Credentials(token=token or TOKENS[member]),
    )


@pytest.fixture(scope="session")
def customer():
    return make_client(CUSTOMER)


@pytest.fixture(scope="session")
def platform():
    return make_client(PLATFORM)


@pytest.fixture(scope="session")
def key_ring(customer):
    ring_id = "conformance-" + uuid.uuid4().hex[:8]
    return customer.create_key_ring(
        request={
            "parent": f"projects/{PROJECT}/locations/{LOCATION}",
            "key_ring_id": ring_id,
            "key_ring": {},
        }
    ).name


@pytest.fixture
def key(customer, key_ring):
    """A fresh symmetric key (version 1 primary), owned by the customer, no bindings."""
    return customer.create_crypto_key(
        request={
            "parent": key_ring,
            "crypto_key_id": "k-" + uuid.uuid4().hex[:10],
            "crypto_key": {"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    ).name


def set_roles(customer, resource, member, roles):
    """Read-modify-write of the resource's IAM policy, with its etag."""
    policy = customer.get_iam_policy(request={"resource": resource})
    del policy.bindings[:]
    for role in roles:
        policy.bindings.add(role=role, members=[member])
    return customer.set_iam_policy(request={"resource": resource, "policy": policy})


@pytest.fixture
def granted_key(customer, key):
    set_roles(
        customer,
        key,
        PLATFORM,
        ["roles/cloudkms.cryptoKeyEncrypterDecrypter", "roles/cloudkms.viewer"],
    )
    return key


def advance_clock(seconds):
    path = os.environ.get("GCP_KMS_ADMIN_TOKEN_FILE")
    if not path:
        pytest.fail("GCP_KMS_ADMIN_TOKEN_FILE is needed to move the server's clock")
    with open(path) as f:
        token = f.read().strip()
    r = requests.post(
        f"{ENDPOINT}/_admin/clock/advance",
        headers={"x-keyplane-admin-token": token},
        json={"seconds": seconds},
        timeout=10,
    )
    assert r.status_code == 200, r.text
