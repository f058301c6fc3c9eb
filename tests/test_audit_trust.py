"""The trust anchor: verify checks against a key the verifier pins, never the log's own."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from predlog.audit import AuditLog, verify
from predlog.errors import ConfigError
from tests.helpers import predlog_cli

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def hex_of(key: ed25519.Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def write_log(path, key: ed25519.Ed25519PrivateKey = KEY) -> None:
    with AuditLog(path, signing_key=key, checkpoint_every=0) as log:
        log.append_many([{"request_id": f"req-{i}", "decision": "declined"} for i in range(3)])
        log.checkpoint()


def audit_cli(*args: str, **env: str):
    """``predlog audit ARGS -o json``: these tests read the JSON form of the output."""
    return predlog_cli("audit", *args, "-o", "json", **env)


REFUSAL = (
    "predlog audit: no public key to verify against: give --public-key or set "
    "PREDLOG_AUDIT_PUBLIC_KEY (the key file in the log directory is not trusted; "
    "--trust-key-in-log uses it, proving nothing)"
)


class TestWithoutAKey:
    @pytest.mark.parametrize(
        "args",
        [
            ("verify", "{log}"),
            ("show", "req-1", "--audit-dir", "{log}"),
            ("prove", "req-1", "--audit-dir", "{log}"),
        ],
        ids=["verify", "show", "prove"],
    )
    def test_refused_naming_the_option_and_the_variable(self, tmp_path, args):
        """No --public-key and no PREDLOG_AUDIT_PUBLIC_KEY: one line on stderr, exit 2,
        even though public_key.hex sits in the log directory."""
        write_log(tmp_path)
        assert (tmp_path / "public_key.hex").is_file()
        proc = audit_cli(*(a.format(log=tmp_path) for a in args))
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.strip().splitlines() == [REFUSAL]
        assert proc.stdout == ""

    def test_api_needs_a_key(self, tmp_path):
        """verify() has no default key: public_key is required, and None is refused."""
        write_log(tmp_path)
        with pytest.raises(TypeError):
            verify(tmp_path)  # type: ignore[call-arg]
        with pytest.raises(ConfigError, match=r"^public_key: required"):
            verify(tmp_path, public_key=None)


class TestPinnedKey:
    def test_key_from_the_setting(self, tmp_path):
        """PREDLOG_AUDIT_PUBLIC_KEY pins the key when --public-key is not given."""
        write_log(tmp_path)
        proc = audit_cli("verify", str(tmp_path), PREDLOG_AUDIT_PUBLIC_KEY=hex_of(KEY))
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["ok"] is True and out["key_source"] == "PREDLOG_AUDIT_PUBLIC_KEY"
        assert "warning" not in out

    def test_resigned_log_fails_against_the_pinned_key(self, tmp_path):
        """A log rewritten and re-signed with another key, its public_key.hex replaced
        too, fails with the pinned key (exit 1, checkpoint 0 named)."""
        write_log(tmp_path, ed25519.Ed25519PrivateKey.generate())
        proc = audit_cli("verify", str(tmp_path), "--public-key", hex_of(KEY))
        assert proc.returncode == 1, proc.stderr
        out = json.loads(proc.stdout)
        assert out["ok"] is False and out["checkpoint"] == 0
        assert "signature does not verify" in out["problem"]
        shown = audit_cli(
            "show", "req-1", "--audit-dir", str(tmp_path), "--public-key", hex_of(KEY)
        )
        assert shown.returncode == 1
        assert json.loads(shown.stdout)["log_intact"] is False

    def test_kept_checkpoint_finds_a_log_cut_back(self, tmp_path):
        """The output of one verify, kept, makes the next fail (exit 1) once the newest
        checkpoint is gone; a file that holds no checkpoint is a usage error (exit 2)."""
        write_log(tmp_path / "log")
        first = audit_cli("verify", str(tmp_path / "log"), "--public-key", hex_of(KEY))
        kept = tmp_path / "kept.json"
        kept.write_text(first.stdout)
        again = ["verify", str(tmp_path / "log"), "--public-key", hex_of(KEY)]
        assert audit_cli(*again, "--kept-checkpoint", str(kept)).returncode == 0
        checkpoints = tmp_path / "log" / "checkpoints.jsonl"
        checkpoints.write_text("".join(checkpoints.read_text().splitlines(keepends=True)[:-1]))
        cut = audit_cli(*again, "--kept-checkpoint", str(kept))
        assert cut.returncode == 1, cut.stderr
        assert "is not in the log" in json.loads(cut.stdout)["problem"]
        kept.write_text("hello\n")
        refused = audit_cli(*again, "--kept-checkpoint", str(kept))
        assert refused.returncode == 2
        assert "--kept-checkpoint: kept: not a checkpoint line" in refused.stderr

    def test_kept_text_output_finds_a_log_cut_back(self, tmp_path):
        """The text form of verify, kept, works as --kept-checkpoint too: its last line
        is the checkpoint line."""
        write_log(tmp_path / "log")
        again = ["audit", "verify", str(tmp_path / "log"), "--public-key", hex_of(KEY)]
        first = predlog_cli(*again)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[0] == f"audit log {tmp_path / 'log'}: intact"
        kept = tmp_path / "kept.txt"
        kept.write_text(first.stdout)
        assert predlog_cli(*again, "--kept-checkpoint", str(kept)).returncode == 0
        checkpoints = tmp_path / "log" / "checkpoints.jsonl"
        checkpoints.write_text("".join(checkpoints.read_text().splitlines(keepends=True)[:-1]))
        cut = predlog_cli(*again, "--kept-checkpoint", str(kept))
        assert cut.returncode == 1, cut.stderr
        assert "NOT INTACT" in cut.stdout.splitlines()[0]
        assert "is not in the log" in cut.stdout

    def test_option_and_trust_in_log_are_exclusive(self, tmp_path):
        """--public-key and --trust-key-in-log cannot be given together."""
        write_log(tmp_path)
        proc = audit_cli("verify", str(tmp_path), "--public-key", hex_of(KEY), "--trust-key-in-log")
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            "predlog audit verify: give --public-key or --trust-key-in-log, not both "
            "(see predlog audit verify --help)"
        ]


class TestTrustKeyInLog:
    @pytest.mark.parametrize("action", ["verify", "prove"])
    def test_says_it_proves_nothing(self, tmp_path, action):
        """The log's own key is used only when asked, and the output (stdout and stderr)
        says this proves nothing against whoever could write the directory."""
        write_log(tmp_path, ed25519.Ed25519PrivateKey.generate())
        args = (
            ("verify", str(tmp_path))
            if action == "verify"
            else ("prove", "req-1", "--audit-dir", str(tmp_path))
        )
        proc = audit_cli(*args, "--trust-key-in-log")
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["key_source"] == "log directory"
        assert "proves nothing against whoever could write that directory" in out["warning"]
        assert "proves nothing" in proc.stderr

    def test_missing_key_file(self, tmp_path):
        """--trust-key-in-log without a key file in the directory is a one-line refusal."""
        write_log(tmp_path)
        (tmp_path / "public_key.hex").unlink()
        proc = audit_cli("verify", str(tmp_path), "--trust-key-in-log")
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "public_key.hex" in proc.stderr
