"""``predlog audit keygen|verify|show|prove``: what the command does once its options are
parsed.

Verification is only as good as the key it checks against, so the key must come from
the verifier, not from the log: ``--public-key``, or the ``audit_public_key`` setting
(``PREDLOG_AUDIT_PUBLIC_KEY``). Without one the command refuses (exit 2). The
``public_key.hex`` the writer leaves in the log directory is used only when asked with
``--trust-key-in-log``, and the output then says that this proves nothing: whoever
could rewrite the log could rewrite that file and re-sign everything with their own key.

``show`` and ``prove`` verify the whole log first and report whether it is intact
beside the entries they print.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from predlog._settings import env_var, read
from predlog.audit import AuditReader, VerifyReport, verify, verify_inclusion, write_signing_key
from predlog.errors import ConfigError

#: Said (stdout and stderr) whenever the key came from the log directory itself.
UNTRUSTED_KEY_WARNING = (
    "the public key was read from the log directory (--trust-key-in-log): this proves "
    "nothing against whoever could write that directory, who could have rewritten the "
    "log and re-signed it with a key of their own"
)


@dataclass(frozen=True)
class TrustedKey:
    """The key to verify against and where it came from (for the output)."""

    key: str
    source: str

    @property
    def from_log(self) -> bool:
        return self.source == "log directory"


@dataclass(frozen=True)
class AuditRequest:
    """One ``predlog audit`` action, as the command line gave it."""

    action: str  # verify, show or prove
    location: str  # the audit log directory, or an s3:// archive (verify only)
    request_id: str | None = None  # show and prove
    public_key: str | None = None
    trust_key_in_log: bool = False
    kept_checkpoint: str | None = None
    output: str = "json"  # or text


def keygen(path: str, output: str) -> int:
    """``predlog audit keygen``: a new key file at ``path``; its public key, where it is,
    and how the service and the verifier each take their half."""
    try:
        public = write_signing_key(path)
    except FileExistsError:
        print(
            f"predlog audit keygen: {path} already exists; a key file is never overwritten "
            "(move it away first if you mean to replace the key)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"predlog audit keygen: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    where = str(Path(path).resolve())
    if output == "json":
        print(json.dumps({"private_key_file": where, "public_key": public}))
        return 0
    print(f"wrote a new Ed25519 private key to {where} (mode 0600: keep it secret)")
    print(f"public key: {public}")
    print(f"  the service signs with it:  {env_var('audit_signing_key')}={shlex.quote(where)}")
    print(f"  verify against the public key:  predlog audit verify AUDIT_DIR --public-key {public}")
    return 0


def run(args: AuditRequest) -> int:
    """Run one ``predlog audit`` action; the exit code (0 intact, 1 not, 2 usage)."""
    location = args.location
    remote = location.startswith("s3://")
    if remote and args.action != "verify":
        return _usage(f"{args.action} reads a local audit directory; s3:// is for verify only")
    if not remote and not Path(location).is_dir():
        print(f"predlog audit: no audit log at {location} (not a directory)", file=sys.stderr)
        return 1
    trusted = _trusted_key(args, location, remote)
    if isinstance(trusted, str):
        return _usage(trusted)
    kept = _kept(args.kept_checkpoint)
    try:
        report = verify(location, public_key=trusted.key, kept=kept)
    except ConfigError as exc:
        return _usage(_named(exc, trusted))
    if trusted.from_log:
        print(f"predlog audit: warning: {UNTRUSTED_KEY_WARNING}", file=sys.stderr)
    if args.action == "verify":
        said = {**asdict(report), **_trust(trusted)}
        if args.output == "json":
            print(json.dumps(said))
        else:
            _print_verified(location, said)
        return 0 if report.ok else 1
    return _entries(args, Path(location), report, trusted)


#: How the text form of ``verify`` writes the last checkpoint, last, so that a saved
#: output can be given back as ``--kept-checkpoint``.
KEPT_PREFIX = "last_checkpoint: "


def _named(exc: ConfigError, trusted: TrustedKey) -> str:
    """A refusal of verify's input, named as the user gave it: the option or variable
    the key came from, or ``--kept-checkpoint``."""
    if exc.setting == "kept":
        return f"--kept-checkpoint: {exc}"
    if exc.setting == "public_key":
        source = "--trust-key-in-log" if trusted.from_log else trusted.source
        return f"{source}: {str(exc).removeprefix('public_key: ')}"
    return str(exc)


def _print_verified(location: str, said: dict[str, Any]) -> None:
    """``verify``'s text form: what a person reads, the kept line last."""
    state = "intact" if said["ok"] else "NOT INTACT"
    print(f"audit log {location}: {state}")
    counts = f"  {_count(said['entries'], 'entry')}, {_count(said['checkpoints'], 'checkpoint')}"
    if said["entries_checked"] < said["entries"]:
        counts += f"; {_count(said['entries_checked'], 'entry')} checked before the problem"
    print(counts)
    if said["problem"]:
        entry = said["entry"]
        named = entry is None or f"entry {entry}" in said["problem"]
        print(f"  problem: {said['problem']}{'' if named else f' (entry {entry})'}")
    if said["kept"]:
        print(f"  kept checkpoint: {said['kept']}")
    if said["torn_tail"]:
        print(f"  torn tail: {said['torn_tail']} bytes (never acknowledged; cut on next open)")
    for missing in said["missing_guarantees"]:
        print(f"  not guaranteed: {missing}")
    print(f"  key from: {said['key_source']}")
    if "warning" in said:
        print(f"  warning: {said['warning']}")
    if said["last_checkpoint"]:
        print(f"{KEPT_PREFIX}{said['last_checkpoint']}")


def _count(n: int, thing: str) -> str:
    """``n`` things, in words: "1 entry", "40 entries"."""
    if n == 1:
        return f"1 {thing}"
    return f"{n} {thing[:-1]}ies" if thing.endswith("y") else f"{n} {thing}s"


def _kept(path: str | None) -> str | None:
    """The checkpoint line kept in ``path``: its last line, either the line itself or a
    saved ``predlog audit verify`` output (whose ``last_checkpoint`` it takes)."""
    if path is None:
        return None
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable {path}: {exc}"  # refused by verify, named
    last = lines[-1] if lines else ""
    if last.startswith(KEPT_PREFIX):
        return last.removeprefix(KEPT_PREFIX)
    try:
        said = json.loads(last)
    except ValueError:
        return last
    if isinstance(said, dict) and isinstance(said.get("last_checkpoint"), str):
        return str(said["last_checkpoint"])
    return last


def _usage(message: str) -> int:
    print(f"predlog audit: {message}", file=sys.stderr)
    return 2


def _trusted_key(args: AuditRequest, location: str, remote: bool) -> TrustedKey | str:
    """The key to verify against, or why there is none (one line)."""
    if args.trust_key_in_log:
        if remote:
            return "--trust-key-in-log: an s3:// archive holds no key file; give --public-key"
        key_file = Path(location) / "public_key.hex"
        if not key_file.is_file():
            return f"--trust-key-in-log: there is no {key_file}"
        return TrustedKey(key_file.read_text().strip(), "log directory")
    if args.public_key:
        return TrustedKey(args.public_key, "--public-key")
    pinned = read("audit_public_key")
    if pinned:
        return TrustedKey(pinned, env_var("audit_public_key"))
    return (
        f"no public key to verify against: give --public-key or set "
        f"{env_var('audit_public_key')} (the key file in the log directory is not "
        "trusted; --trust-key-in-log uses it, proving nothing)"
    )


def _trust(trusted: TrustedKey) -> dict[str, str]:
    """What the output says about the key it was verified against."""
    said = {"key_source": trusted.source}
    if trusted.from_log:
        said["warning"] = UNTRUSTED_KEY_WARNING
    return said


def _entries(args: AuditRequest, path: Path, report: VerifyReport, trusted: TrustedKey) -> int:
    """``show``/``prove``: the entries for a request id, after the whole log was verified."""
    reader = AuditReader(path)
    matches = [
        i for i, entry in enumerate(reader.entries) if entry.get("request_id") == args.request_id
    ]
    if not matches:
        print(
            f"predlog audit: no audit entry for request id {args.request_id!r} in {path}",
            file=sys.stderr,
        )
        return 1
    out = [_item(reader, index, prove=args.action == "prove") for index in matches]
    said: dict[str, Any] = {
        "log_intact": report.ok,
        "problem": report.problem,
        "missing_guarantees": list(report.missing_guarantees),
        **_trust(trusted),
        "entries": out,
    }
    if args.output == "json":
        print(json.dumps(said, indent=2))
    else:
        _print_entries(said)
    return 0 if report.ok else 1


def _print_entries(said: dict[str, Any]) -> None:
    """``show``/``prove``'s text form: the log's state, then each entry's fields."""
    state = "intact" if said["log_intact"] else f"NOT INTACT ({said['problem']})"
    print(f"audit log {state}; key from {said['key_source']}")
    if "warning" in said:
        print(f"warning: {said['warning']}")
    for item in said["entries"]:
        print(f"entry {item['index']}:")
        for name, value in item["entry"].items():
            print(f"  {name}: {value if isinstance(value, str) else json.dumps(value)}")
        if "proof_verifies" in item:
            size = item["checkpoint"]["size"]
            verdict = "verifies" if item["proof_verifies"] else "DOES NOT VERIFY"
            print(f"  inclusion proof against the checkpoint of size {size}: {verdict}")
            print(f"  leaf hash {item['leaf_hash']}, {len(item['inclusion_proof'])} hashes")
        elif "note" in item:
            print(f"  {item['note']}")


def _item(reader: AuditReader, index: int, *, prove: bool) -> dict[str, object]:
    """One entry, with its inclusion proof against the latest checkpoint when proving."""
    item: dict[str, object] = {"index": index, "entry": reader.entries[index]}
    if not prove:
        return item
    checkpoint = reader.latest_covering(index)
    if checkpoint is None:
        item["proof"] = None
        item["note"] = "no checkpoint covers this entry yet"
        return item
    proof = reader.proof(index, checkpoint.size)
    item["checkpoint"] = checkpoint.to_json()
    item["leaf_hash"] = reader.leaves[index].hex()
    item["inclusion_proof"] = [p.hex() for p in proof]
    item["proof_verifies"] = verify_inclusion(
        index, checkpoint.size, reader.leaves[index], proof, checkpoint.root
    )
    return item
