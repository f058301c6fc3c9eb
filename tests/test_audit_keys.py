"""The signing key: made by ``predlog audit keygen``, read by the service through
``PREDLOG_AUDIT_SIGNING_KEY``, checked against the public key keygen printed."""

from __future__ import annotations

import ast
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from examples.fraud_service.scoring import audit_sink

from predlog.audit import AuditLog, public_hex, signing_key
from predlog.errors import ConfigError
from tests.helpers import ROOT, predlog_cli

VARIABLE = "PREDLOG_AUDIT_SIGNING_KEY"


def keygen(path, *args: str):
    return predlog_cli("audit", "keygen", str(path), *args)


def public_key_printed(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("public key: ")]
    return line.removeprefix("public key: ")


class TestKeygen:
    def test_writes_a_private_key_only_its_owner_reads(self, tmp_path):
        """keygen makes the missing directories, writes a PEM key with mode 0600 and
        prints its public key and the file, the way verify and the service take them."""
        path = tmp_path / "secrets" / "audit.pem"
        proc = keygen(path)
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert public_key_printed(proc.stdout) == public_hex(key.public_key())
        assert f"{VARIABLE}={path}" in proc.stdout

    def test_never_overwrites_a_file(self, tmp_path):
        """An existing file (a key in use, or anything else) is left as it was: exit 1,
        one line saying why."""
        path = tmp_path / "audit.pem"
        assert keygen(path).returncode == 0
        before = path.read_bytes()
        again = keygen(path)
        assert again.returncode == 1
        (line,) = again.stderr.strip().splitlines()
        assert "already exists" in line and str(path) in line
        assert path.read_bytes() == before

    def test_json_output(self, tmp_path):
        """-o json gives the file and the public key to a program."""
        path = tmp_path / "audit.pem"
        said = json.loads(keygen(path, "-o", "json").stdout)
        assert said["private_key_file"] == str(path)
        assert len(said["public_key"]) == 64

    def test_the_log_signed_with_it_verifies_against_the_printed_key(self, tmp_path, monkeypatch):
        """The whole set-up: keygen, the variable naming the file, signing_key() for the
        log, and verify against the key keygen printed."""
        path = tmp_path / "audit.pem"
        public = public_key_printed(keygen(path).stdout)
        monkeypatch.setenv(VARIABLE, str(path))
        with AuditLog(tmp_path / "audit", signing_key=signing_key()) as log:
            log.append({"request_id": "req-1", "decision": "declined"})
            log.checkpoint()
        proc = predlog_cli("audit", "verify", str(tmp_path / "audit"), "--public-key", public)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # The same key kept in a file, as printed (a line of hex), is taken as the file.
        kept = tmp_path / "trusted.hex"
        kept.write_text(public + "\n")
        proc = predlog_cli("audit", "verify", str(tmp_path / "audit"), "--public-key", str(kept))
        assert proc.returncode == 0, proc.stdout + proc.stderr


class TestSigningKey:
    def test_three_forms_give_the_same_key(self, tmp_path):
        """The file's path, its PEM text and the key's 64 hex characters are one key."""
        path = tmp_path / "audit.pem"
        public = public_key_printed(keygen(path).stdout)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        for value in (str(path), path.read_text(), raw.hex()):
            assert public_hex(signing_key({VARIABLE: value}).public_key()) == public

    def test_unset_is_none(self):
        """No variable: no key, and so no audit log."""
        assert signing_key({}) is None

    @pytest.mark.parametrize("kind", ["text", "file", "pem"])
    def test_anything_else_is_refused_naming_the_variable(self, tmp_path, kind):
        """A value in no accepted form, a file that holds no key, or PEM text that is
        not an Ed25519 key: one ConfigError naming the variable, without the value."""
        value = {
            "text": "c2VjcmV0LWtleS1ieXRlcw==",
            "file": str(tmp_path / "notes.txt"),
            "pem": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        }[kind]
        (tmp_path / "notes.txt").write_text("c2VjcmV0LWtleS1ieXRlcw==\n")
        with pytest.raises(ConfigError) as info:
            signing_key({VARIABLE: value})
        message = str(info.value)
        assert message.startswith(f"{VARIABLE}: ") and len(message.splitlines()) == 1
        assert "c2VjcmV0" not in message

    def test_an_audit_log_without_a_key_says_what_to_set(self, tmp_path):
        """signing_key() is None when unset: AuditLog refuses it, saying which variable."""
        with pytest.raises(ConfigError, match=VARIABLE):
            AuditLog(tmp_path, signing_key=None)


class TestTheExample:
    def test_the_fraud_example_takes_its_key_from_the_setting(self, tmp_path, monkeypatch):
        """The example audits with the key PREDLOG_AUDIT_SIGNING_KEY names, keeps no log
        without one, and refuses a malformed one naming the variable."""
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.delenv(VARIABLE, raising=False)
        assert audit_sink() is None
        monkeypatch.setenv(VARIABLE, "not a key")
        with pytest.raises(ConfigError, match=f"^{VARIABLE}: "):
            audit_sink()
        path = tmp_path / "audit.pem"
        public = public_key_printed(keygen(path).stdout)
        monkeypatch.setenv(VARIABLE, str(path))
        sink = audit_sink()
        try:
            assert public.startswith(sink.log.key_id)
        finally:
            sink.close()

    def test_the_examples_import_only_public_names(self):
        """No example module imports a private predlog module (``predlog.x._y``)."""
        private = []
        for source in sorted((ROOT / "examples").rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                private += [
                    f"{source.name}: {name}"
                    for name in names
                    if name.split(".")[0] == "predlog"
                    and any(part.startswith("_") for part in name.split("."))
                ]
        assert private == []
