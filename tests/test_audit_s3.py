"""Acceptance: the audit archive on S3 Object Lock, against moto's S3 server."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, S3Archive, verify
from tests.helpers import child_env

pytestmark = pytest.mark.integration

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"audit-{time.time_ns()}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return client, bucket


def entries(n):
    return [{"request_id": f"req-{i}", "decision": "declined", "raw_score": 0.9} for i in range(n)]


class TestObjectLockArchive:
    def test_objects_are_written_with_compliance_retention(self, tmp_path, s3):
        """Sealed segments and checkpoints carry COMPLIANCE retention of about 7 years."""
        client, bucket = s3
        log = AuditLog(
            tmp_path,
            signing_key=KEY,
            checkpoint_every=0,
            archive=S3Archive(bucket, "fraud/", client=client),
        )
        log.append_many(entries(5))
        log.checkpoint()
        log.append_many(entries(3))
        log.checkpoint()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert sorted(keys) == [
            "fraud/checkpoints/000000000005-000000000000.json",
            "fraud/checkpoints/000000000008-000000000001.json",
            "fraud/entries/000000000000-000000000004.seg",
            "fraud/entries/000000000005-000000000007.seg",
        ]
        for key in keys:
            head = client.head_object(Bucket=bucket, Key=key)
            assert head["ObjectLockMode"] == "COMPLIANCE"
            years = (
                head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc)
            ).days / 365
            assert 6.9 < years <= 7.0
        assert verify(f"s3://{bucket}/fraud/", public_key=KEY.public_key(), s3_client=client).ok

    def test_checkpoints_over_the_same_size_are_two_objects(self, tmp_path, s3):
        """Two checkpoints with no entry between them are both archived (each name carries
        its sequence), so the archive's chain has no gap."""
        client, bucket = s3
        with AuditLog(
            tmp_path, signing_key=KEY, checkpoint_every=0, archive=S3Archive(bucket, client=client)
        ) as log:
            log.append_many(entries(2))
            log.checkpoint()
            log.checkpoint()
        report = verify(f"s3://{bucket}/", public_key=KEY.public_key(), s3_client=client)
        assert report.ok, report
        assert report.checkpoints == 2

    def test_deleting_or_overwriting_a_locked_version_fails(self, tmp_path, s3):
        """A locked version cannot be deleted; an overwrite leaves it intact and is detected."""
        client, bucket = s3
        log = AuditLog(
            tmp_path,
            signing_key=KEY,
            checkpoint_every=0,
            archive=S3Archive(bucket, "", client=client),
        )
        log.append_many(entries(4))
        log.checkpoint()
        key = "entries/000000000000-000000000003.seg"
        original = client.get_object(Bucket=bucket, Key=key)
        version, body = original["VersionId"], original["Body"].read()
        with pytest.raises(ClientError) as denied:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version)
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        tampered = bytearray(body)
        tampered[-2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(tampered))
        kept = client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
        assert kept == body, "the locked version must survive an overwrite"
        report = verify(f"s3://{bucket}/", public_key=KEY.public_key(), s3_client=client)
        assert not report.ok
        assert report.entry == 3

    def test_cli_verifies_an_s3_archive(self, tmp_path, s3, s3_endpoint):
        """`predlog audit verify s3://bucket/prefix` checks the archive (exit 0 when intact)."""
        client, bucket = s3
        log = AuditLog(
            tmp_path,
            signing_key=KEY,
            checkpoint_every=0,
            archive=S3Archive(bucket, "p/", client=client),
        )
        log.append_many(entries(3))
        log.checkpoint()
        public_hex = (tmp_path / "public_key.hex").read_text().strip()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "predlog",
                "audit",
                "verify",
                f"s3://{bucket}/p/",
                "--public-key",
                public_hex,
                "-o",
                "json",
            ],
            env=child_env(AWS_ENDPOINT_URL=s3_endpoint, **CREDENTIALS),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["entries"] == 3
