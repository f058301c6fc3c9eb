"""The writer's Ed25519 key: made by ``predlog audit keygen``, given to the service by the
``audit_signing_key`` setting (``PREDLOG_AUDIT_SIGNING_KEY``).

The setting takes a key file's path (what keygen writes), the key as PEM text (a secret
store that hands out values, not files), or its 32 bytes as 64 hex characters. Nothing
here repeats the value in a message: a string meant as a path may be the key itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from predlog._settings import HEX_KEY, env_var, read
from predlog.audit._log import load_private_key, public_hex
from predlog.errors import ConfigError


def signing_key(environ: dict[str, str] | None = None) -> Any:
    """The Ed25519 private key ``PREDLOG_AUDIT_SIGNING_KEY`` gives, or None when it is
    unset (the service then keeps no audit log).

    Anything else than a readable Ed25519 key in one of the three forms is a
    :class:`~predlog.errors.ConfigError` naming the variable, at start-up: a service
    that was meant to audit must not start without its log.
    """
    value = read("audit_signing_key", environ)
    if value is None:
        return None
    if HEX_KEY.match(value):
        return load_private_key(bytes.fromhex(value))  # any 32 bytes are a key
    pem = value.lstrip().startswith("-----BEGIN")
    try:
        # A path otherwise: the setting's check found a readable file there.
        return load_private_key(value.encode() if pem else value)
    except ConfigError as exc:
        said = str(exc).removeprefix(f"{exc.setting}: ")
        if not said.startswith("cannot read"):
            what = "the PEM text is not" if pem else "the key file does not hold"
            said = f"{what} an Ed25519 private key (`predlog audit keygen PATH` writes one)"
        raise ConfigError(env_var("audit_signing_key"), said) from None


def write_signing_key(path: str | os.PathLike[str]) -> str:
    """Write a new Ed25519 private key to ``path`` as PKCS #8 PEM, readable by its owner
    only (mode 0600); return its public key as 64 hex characters.

    An existing file is never overwritten (:class:`FileExistsError`): replacing the key
    a log is signed with is a decision, not an accident. Missing parent directories
    are made. The file is created with its mode, so the key is never readable by
    others, not even for a moment.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask
        with os.fdopen(fd, "wb", closefd=False) as file:
            file.write(pem)
        os.fsync(fd)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return public_hex(key.public_key())
