from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predlog.audit import (
    AuditLog,
    Checkpoint,
    S3Archive,
    canonical,
    verify,
    verify_consistency,
    verify_inclusion,
)
from predlog.audit import _merkle as m
from predlog.audit._checkpoint import previous_of
from predlog.audit._log import load_private_key, load_public_key
from predlog.audit._store import HEAD, LocalStore, ReadOnlyStore
from predlog.errors import ConfigError
from tests.helpers import child_env, predlog_cli

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
PUBLIC_HEX = PUBLIC.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def entry(i: int) -> dict:
    return {
        "request_id": f"req-{i}",
        "prediction_id": f"p-{i}",
        "model_name": "credit",
        "model_version": "v3",
        "raw_score": round(0.5 + i / 1000, 6),
        "decision": "declined" if i % 2 else "approved",
        "features": {"income": 1000 * i, "dti": 0.25},
        "adverse_action_reasons": ["Debt-to-income ratio too high"] if i % 2 else [],
    }


class TestCanonicalJSON:
    def test_keys_sorted_no_whitespace(self):
        """RFC 8785: sorted keys, no insignificant whitespace, nested too."""
        assert (
            canonical({"b": 1, "a": {"d": [1, 2], "c": None}})
            == b'{"a":{"c":null,"d":[1,2]},"b":1}'
        )

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (1.0, "1"),
            (0.5, "0.5"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (1e16, "10000000000000000"),
            (-2.5e-8, "-2.5e-8"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (-0.0, "0"),
        ],
    )
    def test_numbers_as_ecmascript_prints_them(self, value, text):
        """Numbers follow ECMAScript's Number-to-string, as RFC 8785 requires."""
        assert canonical(value) == text.encode()

    def test_string_escapes(self):
        """Control characters are escaped as JSON.stringify does; other text is kept."""
        assert canonical('a\n"b"\u0001é') == b'"a\\n\\"b\\"\\u0001\xc3\xa9"'

    def test_nan_refused(self):
        """NaN has no JSON form and must not reach the audit log."""
        with pytest.raises(ValueError, match="NaN"):
            canonical({"x": float("nan")})


class TestAuditLog:
    def test_append_checkpoint_verify(self, tmp_path):
        """Entries appended and checkpointed verify; proofs check against the signed root."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=4)
        for i in range(10):
            assert log.append(entry(i)) == i
        first = log.checkpoints()[0]
        last = log.checkpoint()
        assert (first.size, last.size) == (4, 10)
        assert first.verify(PUBLIC) and last.verify(PUBLIC)
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok and report.entries == 10 and report.checkpoints == 3
        (index,) = log.find("req-7")
        proof = log.inclusion_proof(index, last.size)
        assert verify_inclusion(index, last.size, log.leaf_hash(index), proof, last.root)
        assert verify_consistency(4, 10, first.root, last.root, log.consistency_proof(4, 10))

    def test_reopen_continues_the_same_tree(self, tmp_path):
        """A restarted writer appends to the same tree; old checkpoints stay consistent."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        log.append_many([entry(i) for i in range(5)])
        old = log.checkpoint()
        log.close()
        again = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        assert again.append(entry(5)) == 5
        new = again.checkpoint()
        assert verify_consistency(5, 6, old.root, new.root, again.consistency_proof(5, 6))
        assert verify(tmp_path, public_key=PUBLIC).ok

    @pytest.mark.parametrize(
        "error",
        [OSError(28, "No space left on device"), RuntimeError("archive: EndpointConnectionError")],
        ids=["full-disk", "archive-error"],
    )
    def test_failed_checkpoint_does_not_fail_durable_entries(self, tmp_path, monkeypatch, error):
        """A checkpoint that cannot be written after the entries are durable (a full
        disk, an archive that raises its own errors) does not fail the append: the
        caller would write those entries again."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=2)
        real = LocalStore.append_checkpoint

        def full(self: LocalStore, line: bytes) -> None:
            raise error

        monkeypatch.setattr(LocalStore, "append_checkpoint", full)
        assert log.append_many([entry(0), entry(1)]) == [0, 1]
        assert log.checkpoint_failures == 1
        assert log.checkpoints() == []
        monkeypatch.setattr(LocalStore, "append_checkpoint", real)
        assert log.append(entry(2)) == 2  # the overdue checkpoint comes with it
        assert [c.size for c in log.checkpoints()] == [3]
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok and report.entries == 3

    def test_wrong_key_fails(self, tmp_path):
        """Checkpoints signed by another key do not verify."""
        log = AuditLog(tmp_path, signing_key=KEY)
        log.append(entry(1))
        log.checkpoint()
        other = ed25519.Ed25519PrivateKey.generate().public_key()
        report = verify(tmp_path, public_key=other)
        assert not report.ok and report.checkpoint == 0


def ec_pem(private: bool) -> bytes:
    """A well-formed PEM key of the wrong kind (ECDSA P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    if private:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class TestConfiguration:
    @pytest.mark.parametrize(
        "make",
        [
            lambda tmp: b"too short",
            lambda tmp: tmp / "no-such-key.pem",
            lambda tmp: 42,
            lambda tmp: ec_pem(private=True),
        ],
        ids=["garbage-bytes", "missing-file", "not-a-key", "ecdsa-pem"],
    )
    def test_unusable_signing_key_is_a_config_error(self, tmp_path, make):
        """A signing key that is not Ed25519 is a ConfigError (still a ValueError) naming
        signing_key, and AuditLog refuses it before making anything."""
        with pytest.raises(ConfigError, match=r"^signing_key: ") as caught:
            load_private_key(make(tmp_path))
        assert isinstance(caught.value, ValueError)
        with pytest.raises(ConfigError, match=r"^signing_key: "):
            AuditLog(tmp_path / "audit", signing_key=make(tmp_path))
        assert not (tmp_path / "audit").exists()

    def test_key_text_is_not_repeated_in_the_error(self, tmp_path):
        """A private key passed as text where a path belongs is not echoed back."""
        text = ec_pem(private=True).decode()
        with pytest.raises(ConfigError) as caught:
            load_private_key(text)
        assert "PRIVATE KEY" not in str(caught.value)

    @pytest.mark.parametrize(
        "make",
        [lambda tmp: "ab" * 31, lambda tmp: tmp / "missing.pem", lambda tmp: b"x"],
        ids=["short-hex", "missing-file", "garbage-bytes"],
    )
    def test_unusable_public_key_is_a_config_error(self, tmp_path, make):
        """verify with a public key it cannot load raises ConfigError naming public_key."""
        with pytest.raises(ConfigError, match=r"^public_key: "):
            load_public_key(make(tmp_path))
        with pytest.raises(ConfigError, match=r"^public_key: "):
            verify(tmp_path, public_key=make(tmp_path))

    def test_public_key_of_another_kind_is_a_config_error(self, tmp_path):
        """A PEM public key that is not Ed25519 is refused by name."""
        (tmp_path / "ec.pem").write_bytes(ec_pem(private=False))
        with pytest.raises(ConfigError, match=r"^public_key: must be an Ed25519 key"):
            load_public_key(tmp_path / "ec.pem")

    @pytest.mark.parametrize("every", [-1, 2.5, True])
    def test_checkpoint_every_is_checked(self, tmp_path, every):
        """checkpoint_every must be 0 or a positive integer."""
        with pytest.raises(ConfigError, match=r"^checkpoint_every: "):
            AuditLog(tmp_path, signing_key=KEY, checkpoint_every=every)

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"bucket": "b", "retention_days": 0}, "retention_days"),
            ({"bucket": "b", "retention_days": 1.5}, "retention_days"),
            ({"bucket": ""}, "bucket"),
        ],
    )
    def test_s3_archive_options_are_checked(self, kwargs, setting):
        """S3Archive refuses an empty bucket or a retention that is not a positive
        number of days with a ConfigError naming the argument."""
        with pytest.raises(ConfigError, match=f"^{setting}: ") as caught:
            S3Archive(client=object(), **kwargs)
        assert isinstance(caught.value, ValueError)

    def test_s3_url_without_a_bucket_is_a_config_error(self):
        """An s3:// address naming no bucket is refused by name, before any request."""
        with pytest.raises(ConfigError, match=r"^bucket: "):
            S3Archive.from_url("s3://", client=object())


def record_spans(path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each record in the single segment."""
    data = (path / "entries" / "000000000001.seg").read_bytes()
    spans, offset = [], 0
    while offset < len(data):
        (length, _, _) = HEAD.unpack_from(data, offset)
        end = offset + HEAD.size + length
        spans.append((offset, end))
        offset = end
    return spans


def checkpointed_log(path, n: int, every: int) -> None:
    """A verified log of ``n`` entries whose tail is covered, as on a clean shutdown."""
    log = AuditLog(path, signing_key=KEY, checkpoint_every=every)
    log.append_many([entry(i) for i in range(n)])
    log.checkpoint()
    log.close()
    assert verify(path, public_key=PUBLIC).ok


def damage_entries(kind: str, data: bytes, spans, pick) -> tuple[bytes, int]:
    """The segment's bytes with one kind of damage done, and the entry verify must name."""
    n = len(spans)
    if kind == "flip":
        p = pick.draw(st.integers(0, n - 1))
        start, end = spans[p]
        at = pick.draw(st.integers(start, end - 1))
        flipped = bytearray(data)
        flipped[at] ^= pick.draw(st.integers(1, 255))
        return bytes(flipped), p
    if kind == "delete":
        p = pick.draw(st.integers(0, n - 1))
        start, end = spans[p]
        return data[:start] + data[end:], p
    if kind == "reorder":
        p = pick.draw(st.integers(0, n - 2))
        q = pick.draw(st.integers(p + 1, n - 1))
        chunks = [data[s:e] for s, e in spans]
        chunks[p], chunks[q] = chunks[q], chunks[p]
        return b"".join(chunks), p
    keep = pick.draw(st.integers(0, n - 1))
    return data[: spans[keep][0]], keep


def forge_entries(kind: str, data: bytes, spans, pick) -> tuple[bytes, int]:
    """Tampering by someone who knows the format: every record is framed again with its
    index in order and its leaf hash recomputed, so only the signed roots can tell.
    Returns the bytes and the first position that differs from the original."""
    entries = [data[s + HEAD.size : e] for s, e in spans]
    if kind == "edit":
        p = pick.draw(st.integers(0, len(entries) - 1))
        body = json.loads(entries[p])
        body["score"] = 0.01 if body.get("score") != 0.01 else 0.02
        entries[p] = canonical(body)
    else:  # "duplicate": entry p twice, every later entry renumbered one up
        p = pick.draw(st.integers(0, len(entries) - 2)) + 1
        entries.insert(p, entries[p - 1])
    framed = (HEAD.pack(len(d), i, m.leaf_hash(d)) + d for i, d in enumerate(entries))
    return b"".join(framed), p


class TestTamperDetection:
    @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        n=st.integers(min_value=2, max_value=25),
        every=st.integers(min_value=1, max_value=8),
        kind=st.sampled_from(["edit", "duplicate"]),
        pick=st.data(),
    )
    def test_forged_entries_are_found_at_the_first_checkpoint_covering_them(
        self, tmp_path_factory, n, every, kind, pick
    ):
        """An entry edited with its hash recomputed, or entries duplicated and
        renumbered, frame and hash as well as the originals: verify fails at the first
        signed checkpoint whose root covers the change."""
        path = tmp_path_factory.mktemp("audit")
        checkpointed_log(path, n, every)
        sizes = [json.loads(line)["size"] for line in (path / "checkpoints.jsonl").open()]
        segment = path / "entries" / "000000000001.seg"
        forged, changed = forge_entries(kind, segment.read_bytes(), record_spans(path), pick)
        segment.write_bytes(forged)
        report = verify(path, public_key=PUBLIC)
        assert not report.ok
        first = next(k for k, size in enumerate(sizes) if size > changed)
        assert report.checkpoint == first, report

    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        n=st.integers(min_value=2, max_value=25),
        every=st.integers(min_value=1, max_value=8),
        kind=st.sampled_from(["flip", "delete", "reorder", "truncate"]),
        pick=st.data(),
    )
    def test_every_entry_tampering_is_found_and_located(
        self, tmp_path_factory, n, every, kind, pick
    ):
        """Flipped byte, deleted, reordered or truncated entries are all detected, and
        the report names the entry concerned."""
        path = tmp_path_factory.mktemp("audit")
        checkpointed_log(path, n, every)
        segment = path / "entries" / "000000000001.seg"
        damaged, expected = damage_entries(kind, segment.read_bytes(), record_spans(path), pick)
        segment.write_bytes(damaged)
        report = verify(path, public_key=PUBLIC)
        assert not report.ok
        assert report.entry == expected, report

    @settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(n=st.integers(min_value=2, max_value=25), every=st.integers(min_value=1, max_value=8))
    def test_replaced_checkpoint_is_found_and_located(self, tmp_path_factory, n, every):
        """A checkpoint replaced by one signed with another key is detected, and the
        report names that checkpoint."""
        path = tmp_path_factory.mktemp("audit")
        checkpointed_log(path, n, every)
        lines = (path / "checkpoints.jsonl").read_bytes().splitlines()
        last = json.loads(lines[-1])
        forger = ed25519.Ed25519PrivateKey.generate()
        forged = AuditLog(tmp_path_factory.mktemp("forger"), signing_key=forger)
        forged.append_many([entry(i) for i in range(n)])
        fake = forged.checkpoint().to_json()
        forged.close()
        fake["key_id"] = last["key_id"]  # a forgery claims the real key
        lines[-1] = json.dumps(fake).encode()
        (path / "checkpoints.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        report = verify(path, public_key=PUBLIC)
        assert not report.ok
        assert report.checkpoint == len(lines) - 1, report


def stored_leaves(path) -> list[bytes]:
    return [r.leaf_hash for r in ReadOnlyStore(path).records()]


def signed_checkpoint(path, size: int, root: bytes) -> None:
    """Append a checkpoint for (size, root), correctly chained and signed with KEY."""
    lines = (path / "checkpoints.jsonl").read_bytes().splitlines()
    unsigned = Checkpoint(
        size, root, "2026-01-01T00:00:00Z", "k", b"", len(lines), previous_of(lines)
    )
    signed = replace(unsigned, signature=KEY.sign(unsigned.message()))
    with (path / "checkpoints.jsonl").open("ab") as out:
        out.write(json.dumps(signed.to_json()).encode() + b"\n")


class TestIncrementalTree:
    def test_checkpoint_roots_are_the_full_recomputation(self, tmp_path):
        """Across uneven batches and a reopen, every checkpoint's root is ``root`` of
        the stored leaves up to its size, and a proof verifies against it."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=3)
        done = 0
        for batch in (1, 2, 5, 1, 8, 13):
            log.append_many([entry(done + i) for i in range(batch)])
            done += batch
            if done == 17:
                log.close()
                log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=3)
        log.checkpoint()
        leaves = stored_leaves(tmp_path)
        assert log.size == len(leaves) == 30
        for checkpoint in log.checkpoints():
            assert checkpoint.root == m.root(leaves[: checkpoint.size]), checkpoint.size
        last = log.checkpoints()[-1]
        assert log.inclusion_proof(29) == m.inclusion_proof(29, leaves)
        assert verify_inclusion(29, 30, log.leaf_hash(-1), log.inclusion_proof(29), last.root)
        log.close()

    def test_neither_writer_nor_verify_recomputes_the_whole_tree(self, tmp_path, monkeypatch):
        """Appending, checkpointing and verifying never call the full recomputation or
        build a consistency proof."""

        def refuse(*args: object) -> None:
            raise AssertionError("the whole tree was recomputed")

        monkeypatch.setattr(m, "root", refuse)
        monkeypatch.setattr(m, "consistency_proof", refuse)
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=4) as log:
            log.append_many([entry(i) for i in range(11)])
            log.checkpoint()
        assert verify(tmp_path, public_key=PUBLIC).ok

    def test_validly_signed_root_of_another_history_is_found(self, tmp_path):
        """A checkpoint signed with the right key and chained in place, but over entries
        that differ from these, fails verify at that checkpoint."""
        checkpointed_log(tmp_path, 10, 0)
        other = [m.leaf_hash(canonical({**entry(i), "audit_id": str(i)})) for i in range(12)]
        signed_checkpoint(tmp_path, 12, m.root(other))
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            log.append_many([entry(i) for i in range(10, 12)])
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok
        assert (report.checkpoint, report.problem) == (
            1,
            "checkpoint 1: root does not match entries 0..11",
        )

    def test_fork_after_a_good_checkpoint_is_found(self, tmp_path):
        """A later checkpoint over a history that rewrote an entry the earlier one
        covers (not a consistent extension) fails, though the earlier one holds."""
        checkpointed_log(tmp_path, 6, 0)
        leaves = stored_leaves(tmp_path)
        forked = [*leaves[:2], m.leaf_hash(b"rewritten"), *leaves[3:]]
        signed_checkpoint(tmp_path, 6, m.root(forked))
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok
        assert report.checkpoint == 1
        assert m.root(leaves) != m.root(forked)

    @pytest.mark.parametrize("size", [0, 1, 7, 8, 9])
    def test_checkpoint_of_every_small_size_verifies(self, tmp_path, size):
        """Checkpoints at sizes 0, 1 and around a power of two verify and match ``root``."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            log.append_many([entry(i) for i in range(size)])
            assert log.checkpoint().root == m.root(stored_leaves(tmp_path))
            log.append_many([entry(i) for i in range(size, size + 3)])
            log.checkpoint()
        assert verify(tmp_path, public_key=PUBLIC).ok


WRITER = """
import sys
from cryptography.hazmat.primitives.asymmetric import ed25519
from predlog.audit import AuditLog
key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
log = AuditLog(sys.argv[1], signing_key=key, checkpoint_every=50)
i = 0
while True:
    index = log.append({"request_id": "k-%d" % i, "raw_score": 0.5, "decision": "declined"})
    print(index, flush=True)
    i += 1
"""


class TestCrashRecovery:
    def test_sigkill_during_heavy_appends(self, tmp_path):
        """After SIGKILL the store has every acknowledged entry and verifies."""
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        acknowledged = -1
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 400:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        assert log.size >= acknowledged + 1
        for i in range(acknowledged + 1):
            assert log.find(f"k-{i}") == [i]
        log.checkpoint()
        assert verify(tmp_path, public_key=PUBLIC).ok


class TestCommandLine:
    def test_missing_log_is_a_one_line_error(self, tmp_path):
        """verify, show and prove on a directory that is not there say so in one line."""
        missing = str(tmp_path / "nowhere")
        for args in (("verify", missing), ("show", "r1", "--audit-dir", missing)):
            proc = predlog_cli("audit", *args, "--public-key", PUBLIC_HEX)
            assert proc.returncode == 1
            assert proc.stderr.strip().splitlines() == [
                f"predlog audit: no audit log at {missing} (not a directory)"
            ]

    def test_verify_prove_show(self, tmp_path):
        """The CLI verifies (0 intact, 1 tampered), shows and proves an entry by request id."""
        log = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0)
        log.append_many([entry(i) for i in range(6)])
        log.checkpoint()

        def run(*args: str):
            return predlog_cli("audit", *args, "--public-key", PUBLIC_HEX, "-o", "json")

        ok = run("verify", str(tmp_path))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["ok"] is True
        proved = run("prove", "req-3", "--audit-dir", str(tmp_path))
        assert proved.returncode == 0, proved.stderr
        (item,) = json.loads(proved.stdout)["entries"]
        assert item["entry"]["adverse_action_reasons"] == ["Debt-to-income ratio too high"]
        assert item["proof_verifies"] is True
        assert item["checkpoint"]["size"] == 6
        shown = run("show", "req-2", "--audit-dir", str(tmp_path))
        assert json.loads(shown.stdout)["entries"][0]["entry"]["decision"] == "approved"
        segment = tmp_path / "entries" / "000000000001.seg"
        data = bytearray(segment.read_bytes())
        data[-3] ^= 0xFF
        segment.write_bytes(bytes(data))
        bad = run("verify", str(tmp_path))
        assert bad.returncode == 1
        assert json.loads(bad.stdout)["entry"] == 5
