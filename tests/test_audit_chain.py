"""The checkpoint chain: deleted, reordered, duplicated and replaced checkpoints are
named; logs written before the chain (v1 checkpoints) still verify, with the
guarantees they lack listed."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import CHECKPOINT_FORMAT_V1, AuditLog, Checkpoint, verify
from predlog.audit._store import HEAD
from predlog.errors import ConfigError

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()


def chained_log(path, checkpoints: int = 5) -> list[bytes]:
    """A log with one checkpoint after each entry; its checkpoint lines."""
    with AuditLog(path, signing_key=KEY, checkpoint_every=1) as log:
        for i in range(checkpoints):
            log.append({"request_id": f"r{i}"})
    return (path / "checkpoints.jsonl").read_bytes().splitlines()


def write_lines(path, lines: list[bytes]) -> None:
    (path / "checkpoints.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def v1_line(log: AuditLog, key: ed25519.Ed25519PrivateKey = KEY) -> bytes:
    """A checkpoint of ``log``'s tree head as the writer signed them before the chain."""
    head = log.checkpoint()
    unsigned = Checkpoint(head.size, head.root, head.timestamp, head.key_id, b"")
    signed = replace(unsigned, signature=key.sign(unsigned.message()))
    return json.dumps(signed.to_json()).encode()


class TestFormat:
    def test_v2_signs_sequence_and_previous_line_hash(self, tmp_path):
        """Each checkpoint signs its line number and the SHA-256 of the line before it
        (32 zero bytes for the first), under the v2 format string."""
        lines = chained_log(tmp_path, 3)
        for number, line in enumerate(lines):
            data = json.loads(line)
            assert data["format"] == "predlog-audit-checkpoint/v2"
            assert data["sequence"] == number
            before = hashlib.sha256(lines[number - 1]).hexdigest() if number else "00" * 32
            assert data["previous"] == before
            message = (
                f"predlog-audit-checkpoint/v2\n{number}\n{before}\n{data['size']}\n"
                f"{data['root']}\n{data['timestamp']}\n"
            ).encode()
            PUBLIC.verify(base64.b64decode(data["signature"]), message)

    def test_a_v2_line_passed_off_as_v1_does_not_verify(self, tmp_path):
        """Dropping the chain fields and claiming v1 breaks the signature."""
        lines = chained_log(tmp_path, 3)
        data = json.loads(lines[1])
        data["format"] = CHECKPOINT_FORMAT_V1
        del data["sequence"], data["previous"]
        lines[1] = json.dumps(data).encode()
        write_lines(tmp_path, lines)
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == 1
        assert "signature" in (report.problem or "")


class TestTamperedCheckpoints:
    @pytest.mark.parametrize("k", [0, 2, 3])
    def test_deleted_checkpoint_is_named(self, tmp_path, k):
        """A checkpoint line deleted (not the last) is reported as deleted, at its place."""
        lines = chained_log(tmp_path)
        write_lines(tmp_path, lines[:k] + lines[k + 1 :])
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == k, report
        assert f"checkpoint {k} was deleted" in (report.problem or "")

    def test_two_deleted_checkpoints_are_named(self, tmp_path):
        """Two checkpoints deleted together are named as a range."""
        lines = chained_log(tmp_path)
        write_lines(tmp_path, lines[:1] + lines[3:])
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == 1
        assert "checkpoints 1..2 were deleted" in (report.problem or "")

    @pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 3), (3, 4)])
    def test_reordered_checkpoints_are_named(self, tmp_path, a, b):
        """Two checkpoint lines swapped are reported as reordered, at the first."""
        lines = chained_log(tmp_path)
        lines[a], lines[b] = lines[b], lines[a]
        write_lines(tmp_path, lines)
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == a, report
        assert "reordered" in (report.problem or "")

    @pytest.mark.parametrize(("k", "at"), [(1, 2), (4, 5), (0, 5)])
    def test_duplicated_checkpoint_is_named(self, tmp_path, k, at):
        """A checkpoint line copied elsewhere is reported as a duplicate of the original."""
        lines = chained_log(tmp_path)
        lines.insert(at, lines[k])
        write_lines(tmp_path, lines)
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == at, report
        assert f"duplicates checkpoint {k}" in (report.problem or "")

    @pytest.mark.parametrize("k", [0, 1, 3])
    def test_checkpoint_replaced_by_the_same_key_is_named(self, tmp_path, k):
        """A checkpoint replaced by another the same key signed (same place, other
        content) breaks the chain at the next one, and the replaced one is named."""
        lines = chained_log(tmp_path)
        original = Checkpoint.from_json(json.loads(lines[k]))
        other = replace(original, timestamp="2001-01-01T00:00:00Z", signature=b"")
        other = replace(other, signature=KEY.sign(other.message()))
        lines[k] = json.dumps(other.to_json()).encode()
        write_lines(tmp_path, lines)
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == k, report
        assert f"checkpoint {k} was replaced" in (report.problem or "")

    def test_log_rewritten_and_resigned_with_another_key_fails_against_the_pinned_key(
        self, tmp_path
    ):
        """Entries edited and every checkpoint re-signed with the attacker's key (and
        public_key.hex replaced): verify with the pinned key fails at checkpoint 0."""
        chained_log(tmp_path / "real", 4)
        attacker = ed25519.Ed25519PrivateKey.generate()
        with AuditLog(tmp_path / "forged", signing_key=attacker, checkpoint_every=1) as log:
            for i in range(4):
                log.append({"request_id": f"r{i}", "decision": "approved"})
        forged = verify(tmp_path / "forged", public_key=attacker.public_key())
        assert forged.ok  # internally consistent: only the key can tell
        report = verify(tmp_path / "forged", public_key=PUBLIC)
        assert not report.ok and report.checkpoint == 0
        assert "signature does not verify" in (report.problem or "")


class TestKeptCheckpoint:
    """The newest checkpoints deleted together with the entries after them leave a log
    that is consistent in itself; only a checkpoint kept apart from it can tell."""

    def cut_back(self, path, keep_entries: int) -> None:
        """What a forger does: drop the newest entries and every checkpoint beyond."""
        segment = path / "entries" / "000000000001.seg"
        data, offset = segment.read_bytes(), 0
        for _ in range(keep_entries):
            (length, _, _) = HEAD.unpack_from(data, offset)
            offset += HEAD.size + length
        segment.write_bytes(data[:offset])
        lines = (path / "checkpoints.jsonl").read_bytes().splitlines()
        write_lines(path, [ln for ln in lines if json.loads(ln)["size"] <= keep_entries])

    def test_cut_back_log_verifies_alone_and_fails_against_the_kept_line(self, tmp_path):
        chained_log(tmp_path, 6)
        kept = verify(tmp_path, public_key=PUBLIC).last_checkpoint
        assert kept is not None and json.loads(kept)["size"] == 6
        self.cut_back(tmp_path, 4)
        assert verify(tmp_path, public_key=PUBLIC).ok  # nothing in the files tells
        report = verify(tmp_path, public_key=PUBLIC, kept=kept)
        assert not report.ok and report.checkpoint == 5
        assert "the kept checkpoint 5 (size 6) is not in the log" in (report.problem or "")

    def test_a_log_that_grew_since_still_holds_the_kept_line(self, tmp_path):
        chained_log(tmp_path, 3)
        kept = verify(tmp_path, public_key=PUBLIC).last_checkpoint
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=1) as log:
            log.append({"request_id": "later"})
        report = verify(tmp_path, public_key=PUBLIC, kept=kept)
        assert report.ok and report.entries == 4, report

    def test_kept_line_replaced_by_a_resigned_one_is_found(self, tmp_path):
        """Same key, same size, another root: the kept line is not there any more."""
        lines = chained_log(tmp_path, 3)
        forged = json.loads(lines[-1])
        forged["timestamp"] = "2000-01-01T00:00:00Z"
        unsigned = Checkpoint.from_json(forged)
        resigned = replace(unsigned, signature=KEY.sign(unsigned.message())).to_json()
        write_lines(tmp_path, [*lines[:-1], json.dumps(resigned).encode()])
        assert verify(tmp_path, public_key=PUBLIC).ok
        report = verify(tmp_path, public_key=PUBLIC, kept=lines[-1])
        assert not report.ok and report.checkpoint == 2

    @pytest.mark.parametrize("kept", ["not json", '{"size": 1}'])
    def test_a_kept_line_that_is_no_checkpoint_is_refused(self, tmp_path, kept):
        chained_log(tmp_path, 2)
        with pytest.raises(ConfigError, match=r"^kept: not a checkpoint line"):
            verify(tmp_path, public_key=PUBLIC, kept=kept)

    def test_a_kept_line_signed_by_another_key_is_refused(self, tmp_path):
        other = ed25519.Ed25519PrivateKey.generate()
        with AuditLog(tmp_path / "other", signing_key=other, checkpoint_every=1) as log:
            log.append({"request_id": "x"})
        kept = (tmp_path / "other" / "checkpoints.jsonl").read_text()
        chained_log(tmp_path / "log", 2)
        with pytest.raises(ConfigError, match=r"^kept: not signed by the trusted public key"):
            verify(tmp_path / "log", public_key=PUBLIC, kept=kept)


class TestLogsFromBeforeTheChain:
    def test_v1_log_still_verifies_and_lists_missing_guarantees(self, tmp_path):
        """A log whose checkpoints are all v1 verifies; the report says what it lacks."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            lines = []
            for i in range(3):
                log.append({"request_id": f"r{i}"})
                lines.append(v1_line(log))
        write_lines(tmp_path, lines)
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok, report
        assert report.checkpoints == 3 and report.legacy_checkpoints == 3
        assert len(report.missing_guarantees) == 2
        text = " ".join(report.missing_guarantees)
        assert "checkpoints 0..2 (v1)" in text
        assert "deleted" in text and "replaced" in text

    def test_v1_then_v2_after_an_upgrade_verifies(self, tmp_path):
        """v1 checkpoints then v2 ones: verified, the first v2 chained to the last v1;
        deleting a v1 line then shifts the v2 sequence and is named."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            old = []
            for i in range(2):
                log.append({"request_id": f"r{i}"})
                old.append(v1_line(log))
            write_lines(tmp_path, old)
            log.append({"request_id": "r2"})
            log.checkpoint()
            log.append({"request_id": "r3"})
            log.checkpoint()
        lines = (tmp_path / "checkpoints.jsonl").read_bytes().splitlines()
        assert json.loads(lines[2])["sequence"] == 2
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok, report
        assert report.legacy_checkpoints == 2
        assert "checkpoints 0..1 (v1)" in report.missing_guarantees[0]
        write_lines(tmp_path, lines[1:])
        deleted = verify(tmp_path, public_key=PUBLIC)
        assert not deleted.ok and deleted.checkpoint == 1
        assert "checkpoint 1 was deleted" in (deleted.problem or "")

    def test_v2_only_log_lacks_nothing(self, tmp_path):
        """A log written by this version reports no legacy checkpoints."""
        chained_log(tmp_path, 2)
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok and report.legacy_checkpoints == 0 and report.missing_guarantees == ()

    def test_v1_checkpoint_after_v2_is_named(self, tmp_path):
        """A v1 line after v2 ones is never written: it is reported as inserted."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=1) as log:
            log.append({"request_id": "r0"})
            stale = v1_line(log)
        lines = (tmp_path / "checkpoints.jsonl").read_bytes().splitlines()
        write_lines(tmp_path, [lines[0], stale])
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok and report.checkpoint == 1
        assert "v1 checkpoint after v2" in (report.problem or "")
