"""``predlog audit keygen|verify|show|prove``: the options; what they do is in
``_audit_run``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from predlog.tools.cli._options import output_of, output_option, setting_option

F = TypeVar("F", bound=Callable[..., Any])


def _trust_options(function: F) -> F:
    """The key to verify against, and a checkpoint kept from an earlier verify."""
    for decorate in reversed(
        (
            setting_option(
                "--public-key",
                setting="audit_public_key",
                metavar="HEX|PEM_FILE",
                help="The Ed25519 public key you trust, obtained apart from the log; without "
                "one the command refuses.",
            ),
            click.option(
                "--trust-key-in-log",
                is_flag=True,
                help="Verify against public_key.hex in the log directory instead; this proves "
                "nothing against whoever could write that directory.",
            ),
            click.option(
                "--kept-checkpoint",
                type=click.Path(exists=True, dir_okay=False),
                metavar="FILE",
                help="A checkpoint line kept from an earlier verify (its last_checkpoint, or "
                "that whole output): the log must still hold it, or its newest part was cut.",
            ),
            output_option,
        )
    ):
        function = decorate(function)
    return function


def _run(action: str, location: str, request_id: str | None, o: dict[str, Any]) -> int:
    from predlog.tools.cli._audit_run import AuditRequest, run  # noqa: PLC0415  # audit extra

    if o["public_key"] and o["trust_key_in_log"]:
        raise click.UsageError("give --public-key or --trust-key-in-log, not both")
    return run(
        AuditRequest(
            action=action,
            location=location,
            request_id=request_id,
            public_key=o["public_key"],
            trust_key_in_log=o["trust_key_in_log"],
            kept_checkpoint=o["kept_checkpoint"],
            output=output_of(o["output"], o["as_json"]),
        )
    )


@click.group("audit")
def group() -> None:
    """Make a signing key; verify the audit log; show or prove an entry."""


@group.command("keygen")
@click.argument("path", metavar="[PATH]", default="audit-signing-key.pem", required=False)
@output_option
def keygen(path: str, output: str, as_json: bool) -> int:
    """Write a new Ed25519 signing key to PATH (mode 0600, never over an existing file;
    missing directories are made) and print its public key, which verify checks against.

    The service reads the key file through PREDLOG_AUDIT_SIGNING_KEY=PATH.
    """
    from predlog.tools.cli._audit_run import keygen as run_keygen  # noqa: PLC0415  # audit extra

    return run_keygen(path, output_of(output, as_json))


@group.command("verify")
@click.argument("path", metavar="AUDIT_DIR")
@_trust_options
def verify(path: str, **o: Any) -> int:
    """Recompute the tree and check every checkpoint of AUDIT_DIR (a directory or s3://)."""
    return _run("verify", path, None, o)


_AUDIT_DIR = click.option(
    "--audit-dir", required=True, metavar="DIR", help="The audit log directory."
)


@group.command("show")
@click.argument("request_id")
@_AUDIT_DIR
@_trust_options
def show(request_id: str, audit_dir: str, **o: Any) -> int:
    """Print the audit entries of a request id, after verifying the whole log."""
    return _run("show", audit_dir, request_id, o)


@group.command("prove")
@click.argument("request_id")
@_AUDIT_DIR
@_trust_options
def prove(request_id: str, audit_dir: str, **o: Any) -> int:
    """Print a request id's entries with their inclusion proofs."""
    return _run("prove", audit_dir, request_id, o)
