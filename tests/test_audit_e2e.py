"""Acceptance: a declined request to the fraud service is audited, with reasons and a proof."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import verify
from tests.fraud import serve_fraud
from tests.helpers import child_env

pytestmark = pytest.mark.integration

SIGNING_KEY = "11" * 32
#: The key the verifier pins: derived from the signing key here, never read from the log.
PUBLIC_HEX = (
    ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SIGNING_KEY))
    .public_key()
    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    .hex()
)


def risky(i: int) -> dict:
    return {
        "transaction_id": f"risky-{i}",
        "card_id": f"card-r{i}",
        "amount": 4800.0 + i,
        "merchant_category": "electronics",
        "hour": 3,
        "user_segment": "new_customer",
        "channel": "web",
        "region": "LATAM",
    }


class TestDeclinedDecisionsAreAudited:
    def test_declined_request_has_reasons_and_a_valid_proof(self, tmp_path):
        """Declines get an audit entry with three plain-English reasons, provable by request id."""
        with serve_fraud(tmp_path, PREDLOG_AUDIT_SIGNING_KEY=SIGNING_KEY) as (base, data, stop):
            declined = []
            with httpx.Client(base_url=base, timeout=30) as client:
                for i in range(40):
                    rid = f"audit-{i}"
                    r = client.post(
                        "/predict", json={"transaction": risky(i)}, headers={"X-Request-ID": rid}
                    )
                    assert r.status_code == 200, r.text
                    if r.json()["decision"] == "declined":
                        declined.append(rid)
            stop()
        assert declined, "no transaction was declined; the test needs at least one"
        audit_dir = data / "audit"
        report = verify(audit_dir, public_key=PUBLIC_HEX)
        assert report.ok, report
        assert report.entries == len(declined)

        proved = subprocess.run(
            [
                sys.executable,
                "-m",
                "predlog",
                "audit",
                "prove",
                declined[0],
                "--audit-dir",
                str(audit_dir),
                "--public-key",
                PUBLIC_HEX,
                "-o",
                "json",
            ],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proved.returncode == 0, proved.stderr
        (item,) = json.loads(proved.stdout)["entries"]
        entry = item["entry"]
        assert item["proof_verifies"] is True
        assert entry["request_id"] == declined[0]
        assert entry["decision"] == "declined"
        reasons = entry["adverse_action_reasons"]
        assert len(reasons) == 3
        assert all(isinstance(r, str) and " " in r for r in reasons)
        assert entry["explanation"]["method"] == "linear_log_odds_contributions"
        assert len(entry["explanation"]["top_positive"]) >= 3
        assert entry["features"]["card_id"].startswith("hmac-sha256:")
        assert entry["jurisdiction"] == "EU"
