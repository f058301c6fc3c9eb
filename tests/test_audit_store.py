"""Opening an audit log: readers never change it; only the writer, under its lock, cuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, AuditReader, canonical, leaf_hash, verify, verify_inclusion
from predlog.audit._store import (
    HEAD,
    MAX_RECORD_BYTES,
    LocalStore,
    ReadOnlyStore,
    UnreadableError,
)
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
        """AuditReader finds nothing and verify fails, saying so; neither makes anything."""
        missing = tmp_path / "nowhere" / "audit"
        assert AuditReader(missing).entries == []
        report = verify(missing, public_key=PUBLIC)
        assert (report.ok, report.entries) == (False, 0), report
        assert "does not exist" in str(report.problem)
        assert snapshot(tmp_path) == {}

    def test_verify_of_a_file_is_not_a_log(self, tmp_path):
        """A path to a file is no audit log: verify fails and says it is not a directory."""
        (tmp_path / "audit").write_text("")
        report = verify(tmp_path / "audit", public_key=PUBLIC)
        assert not report.ok
        assert "not a directory" in str(report.problem)

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
        second = AuditLog(tmp_path, signing_key=KEY)
        with pytest.raises(ConfigError, match="audit_dir"):
            second.open()
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

    def test_record_longer_than_a_torn_one_may_claim_is_refused(self, tmp_path):
        """The writer never writes a record its own torn-tail rule would call damage
        after a crash: one over MAX_RECORD_BYTES is refused before a byte is written."""
        log = write_log(tmp_path, 2)
        before = snapshot(tmp_path)
        with pytest.raises(ValueError, match="entry 2"):
            log.append({"audit_id": "big", "blob": "x" * MAX_RECORD_BYTES})
        assert snapshot(tmp_path) == before
        assert log.size == 2
        log.close()


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


def interleave_writer(monkeypatch, log: AuditLog) -> None:
    """Make the next reader of entries see them as they were, then let ``log`` append
    entries and a checkpoint covering them before the reader goes on: what a live
    writer can do between a reader's reads."""
    read_entries = ReadOnlyStore.records
    pending = [True]

    def records(store: ReadOnlyStore):
        loaded = list(read_entries(store))
        if pending and not isinstance(store, LocalStore):
            pending.clear()
            log.append_many([entry(i) for i in range(log.size, log.size + 3)])
            log.checkpoint()
        yield from loaded

    monkeypatch.setattr(ReadOnlyStore, "records", records)


class TestLiveLog:
    def test_verify_while_the_writer_appends_and_checkpoints(self, tmp_path, monkeypatch):
        """A checkpoint written while verify reads entries is not taken for truncation."""
        log = write_log(tmp_path, 5)
        interleave_writer(monkeypatch, log)
        report = verify(tmp_path, public_key=PUBLIC)
        assert report.ok, report
        assert (report.entries, log.size) == (5, 8)
        log.close()

    def test_prove_while_the_writer_appends_and_checkpoints(self, tmp_path, monkeypatch):
        """The reader never picks a checkpoint over entries it has not loaded, so the
        inclusion proof it gives verifies."""
        log = write_log(tmp_path, 5)
        interleave_writer(monkeypatch, log)
        reader = AuditReader(tmp_path)
        checkpoint = reader.latest_covering(2)
        assert checkpoint is not None
        assert checkpoint.size <= len(reader.leaves)
        proof = reader.proof(2, checkpoint.size)
        assert verify_inclusion(2, checkpoint.size, reader.leaves[2], proof, checkpoint.root)
        log.close()


def unacknowledged_log(path: Path) -> bytes:
    """Entries 0..4 under a checkpoint and 5..7 appended after it (acknowledged, not
    yet checkpointed), writer closed; returns the segment's bytes."""
    log = write_log(path, 5)
    log.append_many([entry(i) for i in range(5, 8)])
    log.close()
    return (path / SEGMENT).read_bytes()


def flip_length(data: bytes, index: int, bit: int) -> bytes:
    """The segment with one bit of entry ``index``'s length field flipped."""
    at = sum(len(framed(i)) for i in range(index))
    flipped = bytearray(data)
    flipped[at + bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


FLIPS = pytest.mark.parametrize(
    ("index", "bit"),
    [(6, 8), (6, 24), (6, 30), (6, 5), (7, 8), (7, 30), (7, 0)],
    ids=[
        "not-last-past-the-end-by-256",
        "not-last-past-the-end-by-16MiB",
        "not-last-over-any-record",
        "not-last-shorter-by-32",
        "last-past-the-end-by-256",
        "last-over-any-record",
        "last-shorter-by-1",
    ],
)


class TestTornTailRule:
    @FLIPS
    def test_flipped_length_of_an_uncheckpointed_entry_is_damage(self, tmp_path, index, bit):
        """A length bit flipped in an acknowledged, not yet checkpointed entry is no torn
        tail, whether or not the entry is the last: readers raise, verify fails naming
        the entry, and the writer refuses to open, leaving every byte as it was."""
        data = unacknowledged_log(tmp_path)
        assert len(canonical(entry(index))) == 0b111101  # the "shorter" flips clear a 1
        (tmp_path / SEGMENT).write_bytes(flip_length(data, index, bit))
        with pytest.raises(UnreadableError):
            AuditReader(tmp_path)
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entry, report.torn_tail) == (False, index, 0), report
        before = snapshot(tmp_path)
        with pytest.raises(UnreadableError, match=r"000000000001\.seg at byte \d+"):
            AuditLog(tmp_path, signing_key=KEY).open()
        assert snapshot(tmp_path) == before

    @pytest.mark.parametrize("keep", [3, 10, HEAD.size, HEAD.size + 5])
    @pytest.mark.parametrize("new_segment", [False, True], ids=["same-segment", "new-segment"])
    def test_half_written_last_record_is_torn(self, tmp_path, keep, new_segment):
        """A last record cut short, its header (as far as written) carrying the next
        index, is tolerated by readers and cut by the writer, also when it starts a
        new segment; every acknowledged entry survives."""
        clean = unacknowledged_log(tmp_path)
        torn = tmp_path / "entries" / "000000000002.seg" if new_segment else tmp_path / SEGMENT
        torn.write_bytes(b"" if new_segment else clean)
        with torn.open("ab") as segment:
            segment.write(framed(8)[:keep])
        assert len(AuditReader(tmp_path).entries) == 8
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entries, report.torn_tail) == (True, 8, keep), report
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            assert (tmp_path / SEGMENT).read_bytes() == clean
            assert torn.read_bytes() == (b"" if new_segment else clean)
            assert [log.find(f"req-{i}") for i in range(8)] == [[i] for i in range(8)]
            assert log.append(entry(8)) == 8
            log.checkpoint()
        assert verify(tmp_path, public_key=PUBLIC).ok

    @pytest.mark.parametrize(
        "partial",
        [
            framed(9)[:10],
            framed(9)[: HEAD.size + 5],
            HEAD.pack(1 << 30, 8, leaf_hash(canonical(entry(8)))) + canonical(entry(8))[:5],
        ],
        ids=["other-index-in-header", "other-index-in-data", "longer-than-any-record"],
    )
    def test_implausible_partial_record_is_damage(self, tmp_path, partial):
        """A partial record at the end that names another entry than the next one, or
        claims more bytes than a record may have, is not a write in progress: verify
        fails at that entry and the writer refuses to open."""
        unacknowledged_log(tmp_path)
        with (tmp_path / SEGMENT).open("ab") as segment:
            segment.write(partial)
        report = verify(tmp_path, public_key=PUBLIC)
        assert (report.ok, report.entry, report.entries) == (False, 8, 8), report
        before = snapshot(tmp_path)
        with pytest.raises(UnreadableError, match="entry 8"):
            AuditLog(tmp_path, signing_key=KEY).open()
        assert snapshot(tmp_path) == before
