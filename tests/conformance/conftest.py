"""Fixtures for the KMS conformance suite.

The suite runs against one KMS endpoint per pytest run:

  KMS_TARGET            a label for the results ("keyplane", "moto", "aws", ...)
  KMS_ENDPOINT          endpoint URL (http://127.0.0.1:PORT)
  KMS_REGION            default us-east-2
  KMS_CREDENTIALS_FILE  keyplane's <data-dir>/credentials.json (all identities), or else
  KMS_ACCESS_KEY_ID / KMS_SECRET_ACCESS_KEY                    the customer (key owner)
  KMS_PROVIDER_ACCESS_KEY_ID / KMS_PROVIDER_SECRET_ACCESS_KEY  the platform role (creator)
  KMS_VOLUMES_ACCESS_KEY_ID / KMS_VOLUMES_SECRET_ACCESS_KEY    the volumes role (grantee)
  KMS_RESULTS           optional JSON-lines file where every case's outcome is appended
"""

import json
import os

import boto3
import botocore.config
import pytest

REGION = os.environ.get("KMS_REGION", "us-east-2")
TARGET = os.environ.get("KMS_TARGET", "unknown")
PROVIDER_ROLE = "arn:aws:iam::222222222222:role/creator"
VOLUMES_ROLE = "arn:aws:iam::222222222222:role/keyplane-volumes"


def _identities():
    path = os.environ.get("KMS_CREDENTIALS_FILE")
    ids = {}
    if path:
        with open(path) as f:
            for i in json.load(f)["identities"]:
                ids[i["principalArn"]] = (i["accessKeyId"], i["secretAccessKey"])
    env = os.environ.get
    customer = ids.get("arn:aws:iam::111111111111:user/admin") or (
        env("KMS_ACCESS_KEY_ID", "testing"),
        env("KMS_SECRET_ACCESS_KEY", "testing"),
    )
    provider = ids.get(PROVIDER_ROLE) or (
        env("KMS_PROVIDER_ACCESS_KEY_ID", "AKIAPROVIDER00000000"),
        env("KMS_PROVIDER_SECRET_ACCESS_KEY", "testing"),
    )
    volumes = ids.get(VOLUMES_ROLE) or (
        env("KMS_VOLUMES_ACCESS_KEY_ID", "AKIAVOLUMES000000000"),
        env("KMS_VOLUMES_SECRET_ACCESS_KEY", "testing"),
    )
    return {"customer": customer, "provider": provider, "volumes": volumes}


IDENTITIES = _identities()


def make_client(who=None, keys=None):
    akid, secret = keys if keys else IDENTITIES[who]
    return boto3.client(
        "kms",
        endpoint_url=os.environ["KMS_ENDPOINT"],
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def customer():
    return make_client("customer")


@pytest.fixture(scope="session")
def provider():
    return make_client("provider")


@pytest.fixture(scope="session")
def volumes():
    return make_client("volumes")


@pytest.fixture
def record():
    """record(case, expected, observed): appends the outcome; the test fails at its end if any
    case differed from AWS's answer (so one difference does not hide the later cases)."""
    mismatches = []

    def _record(case, expected, observed):
        path = os.environ.get("KMS_RESULTS")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"target": TARGET, "case": case, "expected": expected, "observed": observed}) + "\n")
        if observed != expected:
            mismatches.append(f"{case}: AWS answers {expected!r}, {TARGET} answered {observed!r}")

    yield _record
    assert not mismatches, "; ".join(mismatches)
