"""RFC 8785 canonical JSON: the RFC's own examples, and what append refuses."""

from __future__ import annotations

import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, CanonicalError, canonical, leaf_hash, verify
from predlog.audit._store import LocalStore
from predlog.errors import PredlogError

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

#: RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


class TestRfc8785Examples:
    @pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
    def test_appendix_b_numbers(self, bits, text):
        """Every number of RFC 8785 appendix B serialises as the RFC prints it."""
        assert canonical(double(bits)) == text.encode()

    @pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000"])
    def test_appendix_b_nan_and_infinity_are_refused(self, bits):
        """The appendix's NaN and Infinity have no JSON form: refused, by path."""
        with pytest.raises(CanonicalError, match=r"^\$: "):
            canonical(double(bits))

    def test_section_3_2_2_example(self):
        """The RFC's input example (section 3.2.2) gives exactly its output (3.2.4)."""
        parsed = json.loads(
            '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            ' "literals": [null, true, false]}'
        )
        expected = (
            '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        )
        assert canonical(parsed) == expected.encode()

    def test_section_3_2_3_sorting(self):
        """Keys sort by UTF-16 code units, as in the RFC's example (section 3.2.3)."""
        value = {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        }
        keys = list(json.loads(canonical(value)))
        assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
        assert canonical(value).startswith(b'{"\\r":"Carriage Return","1":"One",')

    def test_same_bytes_as_the_rfc8785_package(self):
        """Whatever we hand it, the bytes are the rfc8785 package's own."""
        import rfc8785

        value = {"b": [1, 2.5, None, True], "a": {"é": "x\u2028", "A": -0.0}, "c": 2**53 - 1}
        assert canonical(value) == rfc8785.dumps(value)


class TestRefusedAtAppend:
    @pytest.mark.parametrize(
        ("entry", "path"),
        [
            ({"features": {"card_number": 2**53}}, r"\$\.features\.card_number"),
            ({"features": {"debt": -(2**53)}}, r"\$\.features\.debt"),
            ({"reasons": [1, 2, 10**30]}, r"\$\.reasons\[2\]"),
            ({"features": {1: "x"}}, r"\$\.features\[1\]"),
            ({"features": {("a",): "x"}}, r"\$\.features\[\('a',\)\]"),
            ({"score": float("inf")}, r"\$\.score"),
            ({"blob": b"raw"}, r"\$\.blob"),
        ],
        ids=["2**53", "-2**53", "10**30-in-list", "int-key", "tuple-key", "inf", "bytes"],
    )
    def test_refused_with_the_key_path_and_nothing_written(self, tmp_path, entry, path):
        """append refuses what JCS cannot hold, naming the key path; nothing is stored."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        log.append({"request_id": "ok"})
        with pytest.raises(CanonicalError, match=f"^{path}: ") as caught:
            log.append({"request_id": "bad", **entry})
        assert isinstance(caught.value, PredlogError)
        assert isinstance(caught.value, ValueError)
        assert log.size == 1
        log.checkpoint()
        log.close()
        assert verify(tmp_path, public_key=KEY.public_key()).entries == 1

    def test_the_largest_safe_integers_are_kept(self, tmp_path):
        """±(2**53 - 1) are exact doubles: appended as they are."""
        log = AuditLog(tmp_path, signing_key=KEY)
        index = log.append({"n": [2**53 - 1, -(2**53 - 1)]})
        assert log.entry(index)["n"] == [2**53 - 1, -(2**53 - 1)]

    def test_entries_written_before_the_checks_still_verify(self, tmp_path):
        """An entry the old encoder wrote (a big integer, a key made a string) is
        rehashed from its stored bytes, not re-encoded: the log still verifies."""
        old = [b'{"card":12345678901234567890,"request_id":"r0"}', b'{"1":"x","request_id":"r1"}']
        store = LocalStore(tmp_path)
        store.append([(i, leaf_hash(data), data) for i, data in enumerate(old)])
        store.close()
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        log.append({"request_id": "r2"})
        log.checkpoint()
        log.close()
        report = verify(tmp_path, public_key=KEY.public_key())
        assert report.ok, report
        assert report.entries == 3
