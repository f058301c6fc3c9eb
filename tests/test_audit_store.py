"""Opening an audit log: readers never change it; only the writer, under its lock, cuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, canonical, leaf_hash, verify
from predlog.audit._reader import AuditReader
from predlog.audit._store import HEAD, UnreadableError
from predlog.errors import ConfigError, PredlogError

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
SEGMENT = Path("entries") / "000000000001.seg"


def entry(i: int) -> dict:
    """An entry with its own audit id, so that the writer stores exactly ``canonical(entry)``."""
    return {"audit_id": f"a-{i}", "request_id": f"req-{i}", "decision": "declined"}


def framed(index: int) -> bytes:
    """The bytes the writer appends for entry ``index``: header, then canonical JSON."""
    data = canonical(entry(index))
    return HEAD.pack(len(data), index, leaf_hash(data)) + data


def write_log(path: Path, n: int) -> AuditLog:
    """An open writer holding ``n`` entries, all covered by a checkpoint."""
    log = AuditLog(path, signing_key=KEY, checkpoint_every=0)
    log.append_many([entry(i) for i in range(n)])
    log.checkpoint()
    return log


def tear(path: Path, index: int, keep: int) -> bytes:
    """Append the first ``keep`` bytes of entry ``index``'s record, as a writer dying
    (or still busy) mid-write leaves them; returns the segment's bytes before."""
    segment = path / SEGMENT
    before = segment.read_bytes()
    segment.write_bytes(before + framed(index)[:keep])
    return before


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes, and every directory (as None), under ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


TORN = pytest.mark.parametrize("keep", [10, HEAD.size + 5], ids=["in-header", "in-data"])


class TestReaders:
    @TORN
    def test_reader_leaves_a_torn_log_byte_identical(self, tmp_path, keep):
        """AuditReader skips a torn tail and changes no byte, file or directory."""
        path = tmp_path / "audit"
        write_log(path, 5).close()
        tear(path, 5, keep)
        before = snapshot(tmp_path)
        reader = AuditReader(path)
        assert snapshot(tmp_path) == before
        assert [e["request_id"] for e in reader.entries] == [f"req-{i}" for i in range(5)]

    @TORN
    def test_verify_leaves_a_torn_log_byte_identical(self, tmp_path, keep):
        """verify changes nothing, passes the whole entries and counts the torn bytes."""
        path = tmp_path / "audit"
        write_log(path, 5).close()
        tear(path, 5, keep)
        before = snapshot(tmp_path)
        report = verify(path, public_key=PUBLIC)
        assert snapshot(tmp_path) == before
        assert (report.ok, report.entries, report.torn_tail) == (True, 5, keep), report

    def test_readers_of_a_missing_directory_create_nothing(self, tmp_path):
        """AuditReader and verify pointed at no directory find nothing and make nothing."""
        missing = tmp_path / "nowhere" / "audit"
        assert AuditReader(missing).entries == []
        assert verify(missing, public_key=PUBLIC).entries == 0
        assert snapshot(tmp_path) == {}

    def test_a_write_in_progress_survives_readers(self, tmp_path):
        """Readers during a write leave the half record be; once finished it is an entry."""
        log = write_log(tmp_path, 3)
        record = framed(3)
        half = len(record) // 2
        tear(tmp_path, 3, half)
        assert len(AuditReader(tmp_path).entries) == 3
        assert verify(tmp_path, public_key=PUBLIC).torn_tail == half
        with (tmp_path / SEGMENT).open("ab") as segment:
            segment.write(record[half:])
        assert AuditReader(tmp_path).entries[3]["request_id"] == "req-3"
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entries, report.torn_tail) == (True, 4, 0), report
        log.close()

    def test_torn_entry_under_a_checkpoint_is_truncation(self, tmp_path):
        """A checkpointed entry cut mid-record is not excused as a torn tail: verify
        reports the log truncated at that entry."""
        write_log(tmp_path, 4).close()
        segment = tmp_path / SEGMENT
        segment.write_bytes(segment.read_bytes()[:-7])
        report = verify(tmp_path, public_key=PUBLIC)
        assert not report.ok
        assert (report.entry, report.checkpoint, report.torn_tail) == (3, 0, len(framed(3)) - 7)


class TestWriter:
    def test_second_writer_fails_before_cutting(self, tmp_path):
        """A second AuditLog on a locked log raises ConfigError and leaves the record the
        first writer is in the middle of untouched."""
        first = write_log(tmp_path, 3)
        tear(tmp_path, 3, HEAD.size + 5)
        before = snapshot(tmp_path)
        with pytest.raises(ConfigError, match="audit_dir"):
            AuditLog(tmp_path, signing_key=KEY)
        assert snapshot(tmp_path) == before
        first.close()

    def test_writer_cuts_the_torn_tail_under_its_lock(self, tmp_path):
        """The next writer to hold the lock cuts the torn tail and continues the tree."""
        write_log(tmp_path, 3).close()
        clean = tear(tmp_path, 3, HEAD.size + 5)
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            assert (tmp_path / SEGMENT).read_bytes() == clean
            assert log.append(entry(3)) == 3
            log.checkpoint()
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entries, report.torn_tail) == (True, 4, 0), report


class TestUnreadable:
    def test_damage_before_the_end_is_a_predlog_error(self, tmp_path):
        """A torn record that is not the last segment's tail is damage: readers raise
        UnreadableError, a PredlogError, and verify names the entry."""
        write_log(tmp_path, 4).close()
        data = (tmp_path / SEGMENT).read_bytes()
        second = len(framed(0)) + len(framed(1))
        (tmp_path / SEGMENT).write_bytes(data[: second - 3])
        (tmp_path / "entries" / "000000000002.seg").write_bytes(data[second:])
        with pytest.raises(PredlogError) as caught:
            AuditReader(tmp_path)
        assert isinstance(caught.value, UnreadableError)
        assert caught.value.position == 1
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entry) == (False, 1), report
