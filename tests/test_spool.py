from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import predlog
from predlog.errors import ConfigError, PredlogError
from predlog.sinks.kafka import decode, encode
from predlog.storage import (
    LOCK_FILE,
    Spool,
    SpoolFullError,
    SpoolLockedError,
    adoptable,
    claim,
)
from predlog.testing import MemorySink
from tests.helpers import child_env

entries = st.lists(
    st.tuples(st.binary(max_size=40), st.binary(max_size=300)), min_size=1, max_size=30
)


class TestSpool:
    @given(chunks=st.lists(entries, min_size=1, max_size=6))
    def test_replays_everything_in_order(self, tmp_path_factory, chunks):
        """Whatever is appended comes back, in order, across segments."""
        spool = Spool(tmp_path_factory.mktemp("s"), max_bytes=1 << 20, segment_bytes=512)
        for chunk in chunks:
            spool.append(chunk)
        got = [e for seg in spool.segments() for e in spool.read(seg)]
        assert got == [e for chunk in chunks for e in chunk]

    def test_seal_keeps_new_appends_out_of_replayed_segments(self, tmp_path):
        """After seal(), appends go to a new segment, so replay can delete whole segments."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        spool.append([(b"k", b"first")])
        spool.seal()
        (old,) = spool.segments()
        spool.append([(b"k", b"second")])
        assert len(spool.segments()) == 2
        spool.remove(old)
        assert [v for seg in spool.segments() for _, v in spool.read(seg)] == [b"second"]

    def test_cap_refuses_and_writes_nothing(self, tmp_path):
        """At the cap the whole append is refused and counted; the size never passes it."""
        spool = Spool(tmp_path, max_bytes=1000)
        spool.append([(b"k", b"x" * 400)])
        with pytest.raises(SpoolFullError):
            spool.append([(b"k", b"y" * 400), (b"k", b"z" * 400)])
        assert spool.refused == 2
        assert spool.size <= 1000
        assert [v for seg in spool.segments() for _, v in spool.read(seg)] == [b"x" * 400]

    def test_chunks_are_one_append_and_made_one_at_a_time(self, tmp_path):
        """A batch in chunks is written chunk by chunk, never all in memory at once, and
        replays as one append would."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        made: list[int] = []
        written: list[int] = []

        def chunks():
            for i in range(4):
                made.append(i)
                # The chunk before this one is on disk already, before this one exists.
                written.append(sum(s.stat().st_size for s in spool.segments()))
                yield [(b"k%d" % i, b"v" * 100), (b"k", b"w")]

        assert spool.append_chunks(chunks()) == 8
        assert made == [0, 1, 2, 3]
        assert written[0] == 0 and written[1] < written[2] < written[3]
        got = [e for seg in spool.segments() for e in spool.read(seg)]
        assert got == [e for i in range(4) for e in [(b"k%d" % i, b"v" * 100), (b"k", b"w")]]
        assert spool.size == sum(s.stat().st_size for s in spool.segments())

    def test_chunks_past_the_cap_leave_nothing_behind(self, tmp_path):
        """When a later chunk would pass the cap, the chunks already written are cut off
        again: all of the append or none of it, and the size is what is on disk."""
        spool = Spool(tmp_path, max_bytes=800)  # 311 bytes an entry: room for two
        spool.append([(b"k", b"x" * 300)])
        before = spool.size
        with pytest.raises(SpoolFullError):
            spool.append_chunks([[(b"k", b"y" * 300)], [(b"k", b"z" * 300)], [(b"k", b"-")]])
        assert spool.refused == 2  # the chunks it had taken when it refused
        assert spool.size == before == sum(s.stat().st_size for s in spool.segments())
        assert [v for seg in spool.segments() for _, v in spool.read(seg)] == [b"x" * 300]

    def test_a_failed_chunk_leaves_nothing_behind(self, tmp_path):
        """A chunk that cannot be made (the encoder failed) ends the append with nothing
        of it on disk."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        spool.append([(b"k", b"kept")])

        def chunks():
            yield [(b"k", b"gone")]
            raise RuntimeError("encoder failed")

        with pytest.raises(RuntimeError):
            spool.append_chunks(chunks())
        assert [v for seg in spool.segments() for _, v in spool.read(seg)] == [b"kept"]
        assert spool.size == sum(s.stat().st_size for s in spool.segments())

    def test_full_spool_is_a_predlog_error(self, tmp_path):
        """SpoolFullError sits under PredlogError: catching predlog's root catches it."""
        assert issubclass(SpoolFullError, PredlogError)
        spool = Spool(tmp_path, max_bytes=10)
        with pytest.raises(PredlogError, match="spool at 0 of 10 bytes"):
            spool.append([(b"k", b"too long for ten bytes")])

    def test_failed_remove_keeps_segment_and_size(self, tmp_path, monkeypatch):
        """A segment that cannot be deleted is still there and still counted, so the
        caller can retry the removal (KafkaSink does, without sending it again)."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        spool.append([(b"k", b"v")])
        (seg,) = spool.segments()
        size = spool.size

        def unlink(self: Path, missing_ok: bool = False) -> None:
            raise OSError(5, "Input/output error", str(self))

        with monkeypatch.context() as m:
            m.setattr(Path, "unlink", unlink)
            with pytest.raises(OSError, match="Input/output error"):
                spool.remove(seg)
        assert spool.segments() == [seg]
        assert spool.size == size
        spool.remove(seg)
        assert spool.size == 0
        assert not spool

    def test_torn_tail_is_detected(self, tmp_path):
        """A partly written last entry (a crash mid-write) ends replay there, counted."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        spool.append([(b"a", b"1"), (b"b", b"2")])
        (seg,) = spool.segments()
        data = seg.read_bytes()
        seg.write_bytes(data[:-1])
        assert list(spool.read(seg)) == [(b"a", b"1")]
        assert spool.corrupt == 1

    def test_flipped_byte_is_detected(self, tmp_path):
        """A corrupted entry fails its checksum and is not replayed."""
        spool = Spool(tmp_path, max_bytes=1 << 20)
        spool.append([(b"a", b"hello")])
        (seg,) = spool.segments()
        data = bytearray(seg.read_bytes())
        data[-1] ^= 0xFF
        seg.write_bytes(bytes(data))
        assert list(spool.read(seg)) == []
        assert spool.corrupt == 1

    def test_reopened_spool_knows_its_size(self, tmp_path):
        """A restarted process finds the spool it left, size included."""
        first = Spool(tmp_path, max_bytes=1 << 20)
        first.append([(b"k", b"v" * 100)])
        second = Spool(tmp_path, max_bytes=1 << 20)
        assert second.size == first.size
        assert [v for seg in second.segments() for _, v in second.read(seg)] == [b"v" * 100]


class TestWireFormat:
    def test_round_trip_is_exact(self):
        """encode then decode gives back the same Arrow batch, odd values included."""
        import pyarrow as pa

        keep = MemorySink()
        with predlog.PredictionLogger(sinks=[keep], install_signal_handlers=False) as log:
            log.log(request_id="r1", features={"a": 1.5, "b": None, "c": "ü"}, score=0.3, x=1)
            log.log(features=b"not json", score=float("nan"), decision="review")
        batch = pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())
        messages = encode(batch)
        assert messages[0][0] == b"r1"
        assert messages[1][0] == str(keep.records[1]["prediction_id"]).encode()
        assert decode([v for _, v, _, _ in messages]).equals(batch)

    @pytest.mark.parametrize("size", [0, 1, 2, 50])
    def test_batch_constant_columns_are_spliced_in_exactly(self, size):
        """Columns with one value for the whole batch are serialised once and spliced
        into every message; each message is still the whole record on its own."""
        import json

        import pyarrow as pa

        keep = MemorySink()
        with predlog.PredictionLogger(
            sinks=[keep], model_name="fraud", model_version="v9", install_signal_handlers=False
        ) as log:
            for i in range(size):
                log.log(
                    request_id=None if i % 2 else f"r{i}",
                    features={"i": i, "same": "x"},
                    score=0.25,
                    decision="approved" if i % 3 else "declined",
                    threshold=0.7,
                    extra_field={"n": i},
                )
        batch = pa.RecordBatch.from_pylist(keep.records, schema=predlog.arrow_schema())
        messages = encode(batch)
        assert len(messages) == size
        for (key, value, _, _), record in zip(messages, keep.records, strict=True):
            one = json.loads(value)
            assert set(one) == set(predlog.arrow_schema().names)
            assert one["model_version"] == "v9" and one["decision_threshold"] == 0.7
            assert one["features"] == json.loads(record["features"])
            assert key == (record["request_id"] or str(record["prediction_id"])).encode()
        if size:
            assert decode([v for _, v, _, _ in messages]).equals(batch)

    def test_unknown_schema_version_is_refused(self):
        """A message from a future schema is not silently misread."""
        with pytest.raises(ValueError, match="schema_version"):
            decode([b'{"schema_version": 99}'])


class TestSpoolLock:
    def test_an_exclusive_spool_keeps_others_out_until_closed(self, tmp_path):
        """While an exclusive spool is open nobody else opens its directory exclusively;
        close() lets the next owner in, records and all."""
        first = Spool(tmp_path / "s", max_bytes=1 << 20, exclusive=True)
        first.append([(b"k", b"v")])
        with pytest.raises(SpoolLockedError):
            Spool(tmp_path / "s", max_bytes=1 << 20, exclusive=True)
        first.close()
        first.close()
        second = Spool(tmp_path / "s", max_bytes=1 << 20, exclusive=True)
        assert [v for seg in second.segments() for _, v in second.read(seg)] == [b"v"]
        second.close()

    def test_the_lock_dies_with_its_process(self, tmp_path):
        """A process holding a spool keeps it locked while it lives; once it exits,
        without closing anything, the directory is free and its records are there."""
        script = f"""
import sys
from predlog.storage import Spool
spool = Spool({str(tmp_path / "s")!r}, max_bytes=1 << 20, exclusive=True)
spool.append([(b"k", b"from the child")])
print("ready", flush=True)
sys.stdin.readline()
"""
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(SpoolLockedError):
                Spool(tmp_path / "s", max_bytes=1 << 20, exclusive=True)
        finally:
            child.communicate("exit\n", timeout=30)
        assert child.returncode == 0
        spool = Spool(tmp_path / "s", max_bytes=1 << 20, exclusive=True)
        assert [v for seg in spool.segments() for _, v in spool.read(seg)] == [b"from the child"]
        spool.close()

    def test_close_removes_only_an_empty_directory(self, tmp_path):
        """remove_if_empty deletes an emptied spool's directory, never one with records."""
        empty = Spool(tmp_path / "empty", max_bytes=1 << 20, exclusive=True)
        empty.append([(b"k", b"v")])
        for segment in empty.segments():
            empty.remove(segment)
        empty.close(remove_if_empty=True)
        assert not (tmp_path / "empty").exists()
        full = Spool(tmp_path / "full", max_bytes=1 << 20, exclusive=True)
        full.append([(b"k", b"v")])
        full.close(remove_if_empty=True)
        assert len(list((tmp_path / "full").glob("*.seg"))) == 1
        assert (tmp_path / "full" / LOCK_FILE).exists(), "still marked as a spool to adopt"

    def test_a_lock_file_removed_under_the_taker_is_taken_again(self, tmp_path, monkeypatch):
        """A lock taken on a lock file its last owner just deleted (with the directory)
        is worth nothing: the spool makes the directory again and locks the new file."""
        import fcntl

        directory = tmp_path / "s"
        flock, calls = fcntl.flock, []

        def flock_after_removal(fd: int, operation: int) -> None:
            if not calls:  # the previous owner removes its empty directory just now
                (directory / LOCK_FILE).unlink()
                directory.rmdir()
            calls.append(fd)
            flock(fd, operation)

        monkeypatch.setattr(fcntl, "flock", flock_after_removal)
        spool = Spool(directory, max_bytes=1 << 20, exclusive=True)
        monkeypatch.undo()
        assert len(calls) == 2
        with pytest.raises(SpoolLockedError):
            Spool(directory, max_bytes=1 << 20, exclusive=True)
        spool.close()

    def test_claim_moves_aside_from_a_held_directory(self, tmp_path):
        """Two owners never share a spool: the second takes <dir>-2 beside it."""
        first = claim(tmp_path / "123", max_bytes=1 << 20)
        second = claim(tmp_path / "123", max_bytes=1 << 20)
        assert (first.directory, second.directory) == (tmp_path / "123", tmp_path / "123-2")
        first.close()
        second.close()

    def test_bad_arguments_raise_config_error(self, tmp_path):
        """A bad argument is a ConfigError naming it (and still a ValueError)."""
        with pytest.raises(ConfigError, match=r"^max_bytes: must be positive") as caught:
            Spool(tmp_path / "s", max_bytes=0)
        assert caught.value.setting == "max_bytes"
        with pytest.raises(ValueError, match=r"^segment_bytes"):
            Spool(tmp_path / "s", max_bytes=1, segment_bytes=0)
        assert not (tmp_path / "s").exists(), "nothing is made for a refused spool"


class TestAdoptable:
    def test_lists_spools_beside_oldest_first(self, tmp_path):
        """Siblings an exclusive spool made, by their oldest segment; not the caller's own
        directory, not a spool without a lock file, not anything else."""
        root = tmp_path / "spool"
        for name, stamp in (("30", 300), ("10", 100), ("20", 200)):
            spool = Spool(root / name, max_bytes=1 << 20, exclusive=True)
            spool.append([(b"k", name.encode())])
            for segment in spool.segments():
                os.utime(segment, (stamp, stamp))
            spool.close()
        Spool(root / "unlocked", max_bytes=1 << 20).append([(b"k", b"v")])
        (root / "other").mkdir()
        (root / "file.seg").write_bytes(b"")
        own = Spool(root / "own", max_bytes=1 << 20, exclusive=True)
        assert [p.name for p in adoptable(root / "own")] == ["10", "20", "30"]
        own.close()

    def test_nothing_beside_a_missing_parent(self, tmp_path):
        """A spool directory whose parent does not exist yet has no siblings."""
        assert adoptable(tmp_path / "nowhere" / "own") == []
