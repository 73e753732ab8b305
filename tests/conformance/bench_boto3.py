"""GenerateDataKey + Decrypt pairs with boto3 against keyplane's built-in KMS and against moto;
prints pairs/s for each and the ratio.

Environment (run.sh with BENCH=1 sets these):
  KEYPLANE_ENDPOINT, KEYPLANE_CREDENTIALS_FILE (<data-dir>/credentials.json)
  MOTO_ENDPOINT
  BENCH_SECONDS (default 10), BENCH_THREADS (default 8), KMS_REGION (default us-east-2)
"""

import json
import os
import threading
import time

import boto3
import botocore.config

REGION = os.environ.get("KMS_REGION", "us-east-2")
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))


def client(endpoint, akid, secret):
    return boto3.session.Session().client(
        "kms", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=THREADS * 2),
    )


def bench(name, endpoint, akid, secret):
    key = client(endpoint, akid, secret).create_key(Description="bench")["KeyMetadata"]["Arn"]
    counts = [0] * THREADS
    errors = [0] * THREADS
    start = time.monotonic()
    deadline = start + SECONDS

    def worker(i):
        c = client(endpoint, akid, secret)
        while time.monotonic() < deadline:
            try:
                dk = c.generate_data_key(KeyId=key, KeySpec="AES_256")
                pt = c.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"]
                if pt == dk["Plaintext"]:
                    counts[i] += 1
                else:
                    errors[i] += 1
            except Exception:  # noqa: BLE001 - a benchmark counts failures, it does not stop
                errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    rate = sum(counts) / elapsed
    print(f"{name:9s}: {sum(counts)} pairs in {elapsed:.1f}s with {THREADS} threads = {rate:.0f} pairs/s, {sum(errors)} errors")
    return rate


def main():
    with open(os.environ["KEYPLANE_CREDENTIALS_FILE"]) as f:
        ids = {i["principalArn"]: i for i in json.load(f)["identities"]}
    cust = ids["arn:aws:iam::111111111111:user/admin"]
    kp = bench("keyplane", os.environ["KEYPLANE_ENDPOINT"], cust["accessKeyId"], cust["secretAccessKey"])
    results = {"keyplane": kp}
    if os.environ.get("MOTO_ENDPOINT"):
        mo = bench("moto", os.environ["MOTO_ENDPOINT"], "testing", "testing")
        results["moto"] = mo
        print(f"keyplane/moto ratio: {kp / mo:.2f}x" if mo else "moto made no pairs")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
