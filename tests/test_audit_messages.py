"""What ``predlog audit verify`` says: each message names the cause, counts what the log
holds, and says what became of a kept checkpoint."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog
from tests.helpers import predlog_cli
from tests.test_audit import entry, record_spans
from tests.test_audit_trust import hex_of

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def edited_log(path, entries: int = 40, edited: int = 20) -> None:
    """A log of ``entries`` under one checkpoint, with one byte of entry ``edited`` changed."""
    with AuditLog(path, signing_key=KEY, checkpoint_every=0) as log:
        log.append_many([entry(i) for i in range(entries)])
        log.checkpoint()
    segment = path / "entries" / "000000000001.seg"
    data = bytearray(segment.read_bytes())
    data[record_spans(path)[edited][1] - 5] ^= 0x01
    segment.write_bytes(bytes(data))


def verify_cli(path, *args: str, **env: str):
    return predlog_cli("audit", "verify", str(path), *args, **env)


class TestPublicKeyMessages:
    def test_a_short_hex_key_is_named_as_neither_hex_nor_a_file(self, tmp_path):
        """`--public-key deadbeef` is neither 64 hex characters nor a readable key file,
        and the one line says both, naming the option."""
        edited_log(tmp_path)
        proc = verify_cli(tmp_path, "--public-key", "deadbeef")
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("predlog audit: --public-key: ")
        assert "64 hex characters" in line and "key file" in line
        assert "cannot read the key file" not in line

    def test_the_variable_is_named_when_the_key_came_from_it(self, tmp_path):
        """The same key from PREDLOG_AUDIT_PUBLIC_KEY names that variable instead."""
        edited_log(tmp_path)
        proc = verify_cli(tmp_path, PREDLOG_AUDIT_PUBLIC_KEY="deadbeef")
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("predlog audit: PREDLOG_AUDIT_PUBLIC_KEY: ")
        assert "64 hex characters" in line

    def test_hex_in_capitals_is_a_key(self, tmp_path):
        """64 hex digits in capitals are the same key, not a file name."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            log.append(entry(0))
            log.checkpoint()
        proc = verify_cli(tmp_path, "--public-key", hex_of(KEY).upper())
        assert proc.returncode == 0, proc.stderr


class TestCounts:
    def test_counts_are_the_logs_and_the_problem_is_named_once(self, tmp_path):
        """An edited entry 20 of 40 under one checkpoint: the counts say 40 entries and
        1 checkpoint, how many entries were checked before the problem, and entry 20 is
        named once."""
        edited_log(tmp_path)
        text = verify_cli(tmp_path, "--public-key", hex_of(KEY))
        assert text.returncode == 1, text.stderr
        lines = text.stdout.splitlines()
        assert "NOT INTACT" in lines[0]
        assert "40 entries" in lines[1] and "1 checkpoint" in lines[1]
        assert "0 checkpoints" not in text.stdout and "20 entries" in lines[1]
        assert text.stdout.count("entry 20") == 1, text.stdout
        said = json.loads(verify_cli(tmp_path, "--public-key", hex_of(KEY), "-o", "json").stdout)
        assert (said["entries"], said["checkpoints"]) == (40, 1)
        assert (said["entries_checked"], said["entry"]) == (20, 20)

    def test_an_intact_log_checks_every_entry(self, tmp_path):
        """An intact log: every entry checked, counted once."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            log.append_many([entry(i) for i in range(5)])
            log.checkpoint()
            log.checkpoint()
        said = json.loads(verify_cli(tmp_path, "--public-key", hex_of(KEY), "-o", "json").stdout)
        assert (said["ok"], said["entries"], said["entries_checked"]) == (True, 5, 5)
        assert said["checkpoints"] == 2

    def test_an_unreadable_checkpoint_line_does_not_shrink_the_count(self, tmp_path):
        """A broken second checkpoint line of three: three checkpoints counted, the
        second named."""
        with AuditLog(tmp_path, signing_key=KEY, checkpoint_every=0) as log:
            for i in range(3):
                log.append(entry(i))
                log.checkpoint()
        checkpoints = tmp_path / "checkpoints.jsonl"
        lines = checkpoints.read_text().splitlines(keepends=True)
        checkpoints.write_text(lines[0] + "not json\n" + lines[2])
        said = json.loads(verify_cli(tmp_path, "--public-key", hex_of(KEY), "-o", "json").stdout)
        assert (said["ok"], said["checkpoints"], said["checkpoint"]) == (False, 3, 1)
        assert said["entries"] == 3


class TestKeptCheckpoint:
    def kept(self, tmp_path):
        """A log of three entries and its verify output, kept in a file."""
        with AuditLog(tmp_path / "log", signing_key=KEY, checkpoint_every=0) as log:
            log.append_many([entry(i) for i in range(3)])
            log.checkpoint()
        first = verify_cli(tmp_path / "log", "--public-key", hex_of(KEY))
        kept = tmp_path / "kept.txt"
        kept.write_text(first.stdout)
        return kept

    def test_says_the_kept_checkpoint_was_found(self, tmp_path):
        """A kept checkpoint still in the log is confirmed, in the text and the JSON."""
        kept = self.kept(tmp_path)
        args = ("--public-key", hex_of(KEY), "--kept-checkpoint", str(kept))
        text = verify_cli(tmp_path / "log", *args)
        assert text.returncode == 0, text.stderr
        (line,) = [line for line in text.stdout.splitlines() if "kept checkpoint" in line]
        assert "is in the log" in line
        said = json.loads(verify_cli(tmp_path / "log", *args, "-o", "json").stdout)
        assert said["kept_found"] is True and "is in the log" in said["kept"]

    def test_says_the_kept_checkpoint_is_gone(self, tmp_path):
        """A kept checkpoint deleted from the log: not found, said so, exit 1."""
        kept = self.kept(tmp_path)
        (tmp_path / "log" / "checkpoints.jsonl").write_text("")
        args = ("--public-key", hex_of(KEY), "--kept-checkpoint", str(kept), "-o", "json")
        proc = verify_cli(tmp_path / "log", *args)
        assert proc.returncode == 1
        said = json.loads(proc.stdout)
        assert said["kept_found"] is False and "not in the log" in said["kept"]

    def test_says_whether_it_was_found_in_a_log_damaged_elsewhere(self, tmp_path):
        """A log that fails for another reason still says the kept checkpoint is there."""
        kept = self.kept(tmp_path)
        segment = tmp_path / "log" / "entries" / "000000000001.seg"
        data = bytearray(segment.read_bytes())
        data[-3] ^= 0xFF
        segment.write_bytes(bytes(data))
        args = ("--public-key", hex_of(KEY), "--kept-checkpoint", str(kept), "-o", "json")
        said = json.loads(verify_cli(tmp_path / "log", *args).stdout)
        assert said["ok"] is False and said["entry"] == 2
        assert said["kept_found"] is True
