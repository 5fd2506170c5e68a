"""Errors of the secrets store. None of them ever carries a secret's value.

SecretStoreError
├── InvalidSecret      a name that breaks the pattern, a value empty, too large or not
│                      text (the caller's mistake: a 422, a CLI error)
├── SecretNotFound     no secret of that name for that tenant (``names`` lists them)
├── SecretsKeyError    the encryption key is missing, unreadable or malformed
└── SecretUnreadable   a stored value does not decrypt under the key, or was sealed for
                       another tenant or name (a wrong key, or a row moved in the table)
"""

from __future__ import annotations


class SecretStoreError(Exception):
    """Root of every error raised by ``secret_store``."""


class InvalidSecret(SecretStoreError, ValueError):
    pass


class SecretNotFound(SecretStoreError, LookupError):
    def __init__(self, tenant: str, names: list[str]) -> None:
        self.tenant = tenant
        self.names = names
        listed = ", ".join(repr(n) for n in names)
        super().__init__(f"no secret {listed} is set for tenant {tenant!r}")


class SecretsKeyError(SecretStoreError):
    pass


class SecretUnreadable(SecretStoreError):
    def __init__(self, tenant: str, name: str, why: str) -> None:
        self.tenant = tenant
        self.name = name
        super().__init__(f"secret {name!r} of tenant {tenant!r} cannot be read: {why}")
