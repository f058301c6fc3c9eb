from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from predlog.flush import Pseudonymiser, default_key_id
from predlog.testing import capture_records

KEY = "0123456789abcdef-secret"


class TestPseudonymiser:
    def test_pseudonym_is_documented_hmac(self):
        """A pseudonym is hmac-sha256:<key id>:<HMAC-SHA256(key, UTF-8 value)>."""
        p = Pseudonymiser(key=KEY, key_id=None, pii_fields=["email"])
        digest = hmac.new(KEY.encode(), b"a@b.example", hashlib.sha256).hexdigest()
        assert p.pseudonym("a@b.example") == f"hmac-sha256:{default_key_id(KEY)}:{digest}"

    def test_key_id_allows_rotation(self):
        """Two keys give different pseudonyms, each naming its key."""
        old = Pseudonymiser(key=KEY, key_id="2025-q4", pii_fields=["email"])
        new = Pseudonymiser(key=KEY + "-rotated", key_id="2026-q1", pii_fields=["email"])
        a, b = old.pseudonym("x@y.z"), new.pseudonym("x@y.z")
        assert a != b
        assert a.split(":")[1] == "2025-q4"
        assert b.split(":")[1] == "2026-q1"

    def test_nested_keys_match_by_leaf(self):
        """`email` covers a flattened `customer.email` but not `email_domain`."""
        p = Pseudonymiser(key=KEY, key_id=None, pii_fields=["email"])
        out = p.apply(
            {"customer.email": "a@b.c", "email_domain": "b.c", "amount": 3, "email": None}
        )
        assert out["customer.email"].startswith("hmac-sha256:")
        assert out["email_domain"] == "b.c"
        assert out["amount"] == 3
        assert out["email"] is None

    def test_allowlist_keeps_only_named_features(self):
        """In allowlist mode everything not named is left out."""
        p = Pseudonymiser(key=None, key_id=None, pii_fields=[], allowlist=["amount", "hour"])
        assert p.apply({"amount": 1, "hour": 2, "name": "Ann", "tx.amount": 5}) == {
            "amount": 1,
            "hour": 2,
            "tx.amount": 5,
        }

    def test_fields_without_key_are_refused(self):
        """Constructing with PII fields and no key fails."""
        with pytest.raises(ValueError, match="key"):
            Pseudonymiser(key=None, key_id=None, pii_fields=["email"])


class TestInTheRecord:
    def test_allowlist_through_the_logger(self):
        """feature_allowlist drops other features from the stored record."""
        with capture_records(feature_allowlist=["amount"]) as (log, sink):
            log.log(request_id="a", score=0.2, features={"amount": 3, "name": "Ann"})
        assert json.loads(sink.records[0]["features"]) == {"amount": 3}

    def test_pii_in_extra_is_pseudonymised(self):
        """A PII field passed as an extra keyword is hashed too."""
        with capture_records(pii_fields=["email"], pseudonym_key=KEY) as (log, sink):
            log.log(request_id="a", score=0.2, features={}, email="a@b.c")
        assert "a@b.c" not in sink.records[0]["extra"]
        assert json.loads(sink.records[0]["extra"])["email"].startswith("hmac-sha256:")

    def test_short_key_is_refused(self):
        """A pseudonymisation key shorter than 16 characters is a configuration error."""
        from predlog import ConfigError

        with (
            pytest.raises(ConfigError, match=r"^pseudonym_key: "),
            capture_records(pii_fields=["email"], pseudonym_key="short"),
        ):
            pass
