"""Sealing secret values with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``).

The key comes from ``AOB_SECRETS_KEY`` (one Fernet key, or several separated by commas: the
first seals, every one opens, so a key can be rotated without a flag day), or else from a key
file generated once under the stack's home (``<home>/secrets.key``, mode 0600). The file is
created with ``O_EXCL`` through a hard link, so that a command API and a worker starting at
the same moment end up with the same key, never two. PostgreSQL holds only the sealed bytes:
a database dump, a replica or a backup holds no secret without the key.

Fernet has no associated data, so the tenant and the name are sealed inside with the value
and checked when opened: a sealed value copied to another row (another tenant's) does not
open there.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from secret_store.errors import SecretsKeyError, SecretUnreadable

if TYPE_CHECKING:
    from infra.settings import Settings

KEY_FILE_NAME = "secrets.key"
_SEPARATOR = b"\x00"  # no tenant or name holds a NUL (their patterns), so it splits them off


class SecretCipher:
    """Seals and opens values for one (tenant, name)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretsKeyError("no secrets key given")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as e:
            raise SecretsKeyError(
                "a secrets key is not a Fernet key (32 url-safe base64-encoded bytes; make one "
                "with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from e

    def seal(self, tenant: str, name: str, value: str) -> bytes:
        plain = _binding(tenant, name) + value.encode("utf-8")
        return self._fernet.encrypt(plain)

    def open(self, tenant: str, name: str, sealed: bytes) -> str:
        try:
            plain = self._fernet.decrypt(sealed)
        except InvalidToken:
            raise SecretUnreadable(
                tenant, name, "it does not decrypt under the secrets key"
            ) from None
        binding = _binding(tenant, name)
        if not plain.startswith(binding):
            raise SecretUnreadable(tenant, name, "it was sealed for another tenant or name")
        return plain[len(binding) :].decode("utf-8")


def _binding(tenant: str, name: str) -> bytes:
    return tenant.encode() + _SEPARATOR + name.encode() + _SEPARATOR


def load_cipher(env_keys: str | None, home: Path) -> SecretCipher:
    """The cipher of this deployment: ``env_keys`` (``AOB_SECRETS_KEY``) if set, else the
    key file under ``home``, generated the first time."""
    if env_keys and env_keys.strip():
        return SecretCipher([k.strip().encode() for k in env_keys.split(",") if k.strip()])
    return SecretCipher([key_file(home)])


def key_file(home: Path) -> bytes:
    """The key in ``home/secrets.key``, created (mode 0600) if there is none yet."""
    path = home / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise SecretsKeyError(f"the secrets key file {path} cannot be read: {e}") from e
    if not key:
        raise SecretsKeyError(f"the secrets key file {path} is empty")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # A link fails if the name exists: whoever links first wins, the others read theirs.
        os.link(staging, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def cipher_from_settings(settings: Settings) -> SecretCipher:
    """The deployment's cipher (``AOB_SECRETS_KEY``, or the key file under its home)."""
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    return load_cipher(key, settings.home)
