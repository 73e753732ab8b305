"""KMS behaviours that keyplane's bring-your-own-key flow depends on, each with AWS's
documented answer. Run against keyplane's built-in KMS every case must pass; run against moto
the failures show where an emulator that does not enforce policies, states or grants differs.

Each case is recorded as (case, AWS's documented answer, observed answer); `run.sh` prints
the cases where keyplane and moto differ.
"""

import base64
import json
import os
import subprocess

import botocore.exceptions
import pytest

from conftest import PROVIDER_ROLE, REGION, VOLUMES_ROLE, IDENTITIES, make_client


def outcome(fn, *args, **kwargs):
    """'ok' or the AWS error code of the call."""
    try:
        fn(*args, **kwargs)
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def new_key(client, **kwargs):
    return client.create_key(**kwargs)["KeyMetadata"]


def seed_policy(account, principal=PROVIDER_ROLE, missing=(), extra=()):
    use = [
        "kms:EnableKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom", "kms:DescribeKey",
    ]
    grants = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
             "Principal": {"AWS": principal}, "Action": [a for a in use if a not in missing], "Resource": "*"},
            {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
             "Principal": {"AWS": principal}, "Action": [a for a in grants if a not in missing], "Resource": "*"},
            *extra,
        ],
    })


# ---- keys, metadata, crypto -------------------------------------------------------------

def test_create_and_describe(customer, record):
    md = new_key(customer, Description="conformance")
    d = customer.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    expected = {"KeyState": "Enabled", "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT",
                "Origin": "AWS_KMS", "KeyManager": "CUSTOMER", "Enabled": True}
    for field, want in expected.items():
        record(f"describe-new-key.{field}", want, d.get(field))
    record("describe-by-arn", "ok", outcome(customer.describe_key, KeyId=md["Arn"]))


def test_encrypt_decrypt_with_context(customer, record):
    md = new_key(customer)
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"hello", EncryptionContext={"db": "1"})["CiphertextBlob"]
    pt = customer.decrypt(CiphertextBlob=ct, EncryptionContext={"db": "1"})["Plaintext"]
    record("encrypt-decrypt-roundtrip", "ok", "ok" if pt == b"hello" else "wrong plaintext")
    record("decrypt-wrong-context", "InvalidCiphertextException",
           outcome(customer.decrypt, CiphertextBlob=ct, EncryptionContext={"db": "2"}))
    record("decrypt-missing-context", "InvalidCiphertextException", outcome(customer.decrypt, CiphertextBlob=ct))
    tampered = bytearray(ct)
    tampered[-3] ^= 0x10
    record("decrypt-tampered-ciphertext", "InvalidCiphertextException",
           outcome(customer.decrypt, CiphertextBlob=bytes(tampered), EncryptionContext={"db": "1"}))


def test_input_validation(customer, record):
    md = new_key(customer)
    record("encrypt-4097-bytes", "ValidationException",
           outcome(customer.encrypt, KeyId=md["KeyId"], Plaintext=b"x" * 4097))
    record("generate-data-key-spec-and-bytes", "ValidationException",
           outcome(customer.generate_data_key, KeyId=md["KeyId"], KeySpec="AES_256", NumberOfBytes=32))
    record("generate-data-key-1025-bytes", "ValidationException",
           outcome(customer.generate_data_key, KeyId=md["KeyId"], NumberOfBytes=1025))
    record("schedule-deletion-6-days", "ValidationException",
           outcome(customer.schedule_key_deletion, KeyId=md["KeyId"], PendingWindowInDays=6))
    record("describe-unknown-key", "NotFoundException",
           outcome(customer.describe_key, KeyId="11111111-2222-3333-4444-555555555555"))
    record("describe-unknown-alias", "NotFoundException", outcome(customer.describe_key, KeyId="alias/does-not-exist"))


def test_data_keys_and_random(customer, record):
    md = new_key(customer)
    dk = customer.generate_data_key(KeyId=md["Arn"], KeySpec="AES_256")
    back = customer.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"]
    record("generate-data-key-roundtrip", "ok", "ok" if back == dk["Plaintext"] and len(back) == 32 else "mismatch")
    wp = customer.generate_data_key_without_plaintext(KeyId=md["KeyId"], NumberOfBytes=16)
    record("generate-data-key-without-plaintext", False, "Plaintext" in wp)
    record("generate-random-64", 64, len(customer.generate_random(NumberOfBytes=64)["Plaintext"]))


def test_aliases(customer, record):
    md = new_key(customer)
    name = "alias/conformance-" + md["KeyId"][:8]
    customer.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    record("encrypt-via-alias", "ok", outcome(customer.encrypt, KeyId=name, Plaintext=b"x"))
    record("create-alias-twice", "AlreadyExistsException",
           outcome(customer.create_alias, AliasName=name, TargetKeyId=md["KeyId"]))
    customer.delete_alias(AliasName=name)
    record("describe-deleted-alias", "NotFoundException", outcome(customer.describe_key, KeyId=name))


def test_list_keys_paging(customer, record):
    for _ in range(3):
        new_key(customer)
    page = customer.list_keys(Limit=2)
    record("list-keys-limit-2", [2, True], [len(page["Keys"]), page["Truncated"]])


# ---- key states -------------------------------------------------------------------------

def test_disabled_key(customer, record):
    md = new_key(customer)
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    customer.disable_key(KeyId=md["KeyId"])
    record("disabled-key-state", "Disabled", customer.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"])
    record("encrypt-disabled-key", "DisabledException", outcome(customer.encrypt, KeyId=md["KeyId"], Plaintext=b"x"))
    record("decrypt-disabled-key", "DisabledException", outcome(customer.decrypt, CiphertextBlob=ct))
    record("generate-data-key-disabled-key", "DisabledException",
           outcome(customer.generate_data_key, KeyId=md["KeyId"], KeySpec="AES_256"))
    customer.enable_key(KeyId=md["KeyId"])
    record("decrypt-after-enable", "ok", outcome(customer.decrypt, CiphertextBlob=ct))


def test_pending_deletion(customer, record):
    md = new_key(customer)
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    r = customer.schedule_key_deletion(KeyId=md["KeyId"])
    record("schedule-deletion-default-window", 30, r.get("PendingWindowInDays"))
    record("decrypt-pending-deletion", "KMSInvalidStateException", outcome(customer.decrypt, CiphertextBlob=ct))
    record("enable-pending-deletion", "KMSInvalidStateException", outcome(customer.enable_key, KeyId=md["KeyId"]))
    customer.cancel_key_deletion(KeyId=md["KeyId"])
    record("state-after-cancel-deletion", "Disabled",
           customer.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"])


def test_rotation_keeps_old_ciphertexts(customer, record):
    md = new_key(customer)
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"old")["CiphertextBlob"]
    record("rotate-on-demand", "ok", outcome(customer.rotate_key_on_demand, KeyId=md["KeyId"]))
    record("decrypt-after-rotation", "old", customer.decrypt(CiphertextBlob=ct)["Plaintext"].decode())
    customer.enable_key_rotation(KeyId=md["KeyId"])
    record("rotation-status-enabled", True, customer.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"])


# ---- key policies, cross-account, grants -------------------------------------------------

def test_policy_validation(customer, record):
    md = new_key(customer)
    record("put-malformed-policy", "MalformedPolicyDocumentException",
           outcome(customer.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy="{not json"))
    lockout = seed_policy("333333333333")
    record("put-lockout-policy", "MalformedPolicyDocumentException",
           outcome(customer.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=lockout))
    record("get-key-policy-names", ["default"], customer.list_key_policies(KeyId=md["KeyId"])["PolicyNames"])


def test_cross_account_needs_the_key_policy(customer, provider, record):
    md = new_key(customer)
    account = md["AWSAccountId"]
    record("provider-describe-without-policy", "AccessDeniedException", outcome(provider.describe_key, KeyId=md["Arn"]))
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=seed_policy(account))
    record("provider-describe-with-seed-policy", "ok", outcome(provider.describe_key, KeyId=md["Arn"]))
    record("provider-generate-data-key-with-seed-policy", "ok",
           outcome(provider.generate_data_key, KeyId=md["Arn"], KeySpec="AES_256"))
    record("provider-describe-by-bare-key-id", "NotFoundException", outcome(provider.describe_key, KeyId=md["KeyId"]))


@pytest.mark.parametrize("action,call", [
    ("kms:Encrypt", lambda c, k, ct: c.encrypt(KeyId=k, Plaintext=b"x")),
    ("kms:Decrypt", lambda c, k, ct: c.decrypt(CiphertextBlob=ct)),
    ("kms:GenerateDataKey", lambda c, k, ct: c.generate_data_key(KeyId=k, KeySpec="AES_256")),
    ("kms:GenerateDataKeyWithoutPlaintext", lambda c, k, ct: c.generate_data_key_without_plaintext(KeyId=k, KeySpec="AES_256")),
    ("kms:DescribeKey", lambda c, k, ct: c.describe_key(KeyId=k)),
    ("kms:ListGrants", lambda c, k, ct: c.list_grants(KeyId=k)),
    ("kms:CreateGrant", lambda c, k, ct: c.create_grant(KeyId=k, GranteePrincipal=VOLUMES_ROLE, Operations=["Decrypt"])),
])
def test_policy_missing_one_action(customer, provider, record, action, call):
    md = new_key(customer)
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default",
                            Policy=seed_policy(md["AWSAccountId"], missing=[action]))
    record(f"provider-call-without-{action}", "AccessDeniedException", outcome(call, provider, md["Arn"], ct))


def test_explicit_deny_wins(customer, provider, record):
    md = new_key(customer)
    deny = {"Sid": "deny", "Effect": "Deny", "Principal": {"AWS": PROVIDER_ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=seed_policy(md["AWSAccountId"], extra=[deny]))
    ct = provider.encrypt(KeyId=md["Arn"], Plaintext=b"x")["CiphertextBlob"]
    record("provider-decrypt-explicit-deny", "AccessDeniedException", outcome(provider.decrypt, CiphertextBlob=ct))


def test_grants(customer, provider, volumes, record):
    md = new_key(customer)
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=seed_policy(md["AWSAccountId"]))
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    record("grantee-decrypt-before-grant", "AccessDeniedException", outcome(volumes.decrypt, CiphertextBlob=ct))
    g = provider.create_grant(KeyId=md["Arn"], GranteePrincipal=VOLUMES_ROLE, Operations=["Decrypt"])
    record("grantee-decrypt-with-grant", "ok", outcome(volumes.decrypt, CiphertextBlob=ct))
    record("grantee-encrypt-not-granted", "AccessDeniedException",
           outcome(volumes.encrypt, KeyId=md["Arn"], Plaintext=b"x"))
    listed = provider.list_grants(KeyId=md["Arn"])["Grants"]
    record("list-grants-shows-grant", True, any(x["GrantId"] == g["GrantId"] for x in listed))
    provider.revoke_grant(KeyId=md["Arn"], GrantId=g["GrantId"])
    record("grantee-decrypt-after-revoke", "AccessDeniedException", outcome(volumes.decrypt, CiphertextBlob=ct))


# ---- organization-bound policies (issue 16) ---------------------------------------------

ORG_A = "5b0c7c2e-7d61-4c43-9a55-0a0a0a0a0a0a"
ORG_B = "5b0c7c2e-7d61-4c43-9a55-0b0b0b0b0b0b"
THIRD_ROLE = "arn:aws:iam::222222222222:role/keyplane-third"


def bound_policy(account, org, principal=PROVIDER_ROLE):
    """The statements keyplane recommends for an organization (keyplane_core's
    recommended_statements_bound): every use AWS gives an encryption context is tied to
    kms:EncryptionContext:organization; DescribeKey, EnableKey, ListGrants, RevokeGrant are not."""
    cond = {"StringEquals": {"kms:EncryptionContext:organization": org}}
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
             "Principal": {"AWS": principal},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                        "kms:ReEncryptTo", "kms:ReEncryptFrom"],
             "Resource": "*", "Condition": cond},
            {"Sid": "Allow an external account to describe this KMS key", "Effect": "Allow",
             "Principal": {"AWS": principal}, "Action": ["kms:EnableKey", "kms:DescribeKey"], "Resource": "*"},
            {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
             "Principal": {"AWS": principal}, "Action": ["kms:CreateGrant"], "Resource": "*", "Condition": cond},
            {"Sid": "Allow an external account to list and revoke its grants", "Effect": "Allow",
             "Principal": {"AWS": principal}, "Action": ["kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"},
        ],
    })


def test_bound_policy_crypto(customer, provider, record):
    md = new_key(customer)
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=bound_policy(md["AWSAccountId"], ORG_A))
    a = {"organization": ORG_A}
    b = {"organization": ORG_B}
    ct_a = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"a", EncryptionContext=a)["CiphertextBlob"]
    ct_b = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"b", EncryptionContext=b)["CiphertextBlob"]
    record("bound-policy.decrypt-own-organization", "ok",
           outcome(provider.decrypt, CiphertextBlob=ct_a, EncryptionContext=a))
    record("bound-policy.decrypt-other-organization", "AccessDeniedException",
           outcome(provider.decrypt, CiphertextBlob=ct_b, EncryptionContext=b))
    record("bound-policy.decrypt-without-context", "AccessDeniedException",
           outcome(provider.decrypt, CiphertextBlob=ct_a))
    record("bound-policy.generate-data-key-own-organization", "ok",
           outcome(provider.generate_data_key, KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext=a))
    record("bound-policy.generate-data-key-other-organization", "AccessDeniedException",
           outcome(provider.generate_data_key, KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext=b))
    record("bound-policy.encrypt-other-organization", "AccessDeniedException",
           outcome(provider.encrypt, KeyId=md["Arn"], Plaintext=b"x", EncryptionContext=b))
    record("bound-policy.re-encrypt-to-other-organization", "AccessDeniedException",
           outcome(provider.re_encrypt, CiphertextBlob=ct_a, SourceEncryptionContext=a,
                   DestinationKeyId=md["Arn"], DestinationEncryptionContext=b))
    record("bound-policy.re-encrypt-within-organization", "ok",
           outcome(provider.re_encrypt, CiphertextBlob=ct_a, SourceEncryptionContext=a,
                   DestinationKeyId=md["Arn"], DestinationEncryptionContext=a))
    record("bound-policy.describe-key-unconditioned", "ok", outcome(provider.describe_key, KeyId=md["Arn"]))
    record("bound-policy.list-grants-unconditioned", "ok", outcome(provider.list_grants, KeyId=md["Arn"]))


def test_bound_policy_grants(customer, provider, volumes, record):
    md = new_key(customer)
    customer.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=bound_policy(md["AWSAccountId"], ORG_A))
    a = {"organization": ORG_A}
    b = {"organization": ORG_B}
    grant = lambda **kw: provider.create_grant(KeyId=md["Arn"], GranteePrincipal=VOLUMES_ROLE,
                                               Operations=["Decrypt", "GenerateDataKey"], **kw)
    record("bound-policy.create-grant-without-constraint", "AccessDeniedException", outcome(grant))
    record("bound-policy.create-grant-other-organization", "AccessDeniedException",
           outcome(grant, Constraints={"EncryptionContextSubset": b}))
    record("bound-policy.create-grant-with-organization-constraint", "ok",
           outcome(grant, Constraints={"EncryptionContextSubset": a}))
    ct_a = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"a", EncryptionContext=a)["CiphertextBlob"]
    ct_b = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"b", EncryptionContext=b)["CiphertextBlob"]
    record("bound-policy.grantee-decrypt-own-organization", "ok",
           outcome(volumes.decrypt, CiphertextBlob=ct_a, EncryptionContext=a))
    record("bound-policy.grantee-decrypt-other-organization", "AccessDeniedException",
           outcome(volumes.decrypt, CiphertextBlob=ct_b, EncryptionContext=b))
    record("bound-policy.grantee-generate-data-key-other-organization", "AccessDeniedException",
           outcome(volumes.generate_data_key, KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext=b))


def test_grant_constraints(customer, volumes, record):
    md = new_key(customer)
    a = {"organization": ORG_A}
    customer.create_grant(KeyId=md["Arn"], GranteePrincipal=VOLUMES_ROLE, Operations=["Decrypt", "CreateGrant"],
                          Constraints={"EncryptionContextSubset": a})
    child = lambda **kw: volumes.create_grant(KeyId=md["Arn"], GranteePrincipal=THIRD_ROLE,
                                              Operations=["Decrypt"], **kw)
    record("grant-constraint.child-without-constraint", "AccessDeniedException", outcome(child))
    record("grant-constraint.child-looser-subset", "AccessDeniedException",
           outcome(child, Constraints={"EncryptionContextSubset": {"db": "1"}}))
    record("grant-constraint.child-stricter-subset", "ok",
           outcome(child, Constraints={"EncryptionContextSubset": {**a, "db": "1"}}))
    record("grant-constraint.child-equals-from-subset", "ok",
           outcome(child, Constraints={"EncryptionContextEquals": a}))
    ct = customer.encrypt(KeyId=md["KeyId"], Plaintext=b"a", EncryptionContext={**a, "db": "1"})["CiphertextBlob"]
    record("grant-constraint.subset-allows-extra-pairs", "ok",
           outcome(volumes.decrypt, CiphertextBlob=ct, EncryptionContext={**a, "db": "1"}))


def test_policy_refuses_for_all_values_on_a_context_key(customer, record):
    md = new_key(customer)
    policy = json.loads(bound_policy(md["AWSAccountId"], ORG_A))
    policy["Statement"][1]["Condition"] = {
        "ForAllValues:StringEquals": {"kms:EncryptionContext:organization": ORG_A}}
    record("put-policy-for-all-values-on-encryption-context-key", "MalformedPolicyDocumentException",
           outcome(customer.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=json.dumps(policy)))


# ---- signatures ----------------------------------------------------------------------------

def test_signatures(record):
    akid, _ = IDENTITIES["customer"]
    wrong = make_client(keys=(akid, "wrong-secret-wrong-secret-wrong-secret-00"))
    record("wrong-signature", "InvalidSignatureException", outcome(wrong.list_keys))
    unknown = make_client(keys=("AKIAUNKNOWNUNKNOWN00", "whatever"))
    record("unknown-access-key", "UnrecognizedClientException", outcome(unknown.list_keys))


# ---- the aws CLI, unmodified ---------------------------------------------------------------

def aws_cli(*args):
    akid, secret = IDENTITIES["customer"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(["aws", "kms", *args, "--endpoint-url", os.environ["KMS_ENDPOINT"], "--output", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    if p.returncode == 0:
        return "ok", json.loads(p.stdout or "{}")
    err = p.stderr
    code = err.split("(", 1)[1].split(")", 1)[0] if "An error occurred (" in err else err.strip()
    return code, None


def test_aws_cli(customer, record):
    code, out = aws_cli("create-key", "--description", "from the aws CLI")
    record("aws-cli-create-key", "ok", code)
    key_id = out["KeyMetadata"]["KeyId"]
    code, out = aws_cli("describe-key", "--key-id", key_id)
    record("aws-cli-describe-key", "Enabled", out["KeyMetadata"]["KeyState"] if out else code)
    aws_cli("disable-key", "--key-id", key_id)
    blob = base64.b64encode(b"x").decode()
    code, _ = aws_cli("encrypt", "--key-id", key_id, "--plaintext", blob)
    record("aws-cli-encrypt-disabled-key", "DisabledException", code)
