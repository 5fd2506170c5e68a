"""Per-tenant secrets, sealed at rest, opened only by the workers at the moment of use.

errors.py  what goes wrong, never with a value in it
crypto.py  the Fernet key (``AOB_SECRETS_KEY`` or a key file under the stack's home) and
           sealing bound to (tenant, name)
store.py   the ``tenant_secrets`` table: set, list (names and dates), delete, open

Templates read a secret as ``{{ secrets.NAME }}`` (``schemas.secret_refs``); the worker
fetches what a node's config names (``workers.secret_values``) and masks every value it
used in whatever the attempt reports (``workers.redaction``).
"""

from secret_store.crypto import SecretCipher, cipher_from_settings, load_cipher
from secret_store.errors import (
    InvalidSecret,
    SecretNotFound,
    SecretsKeyError,
    SecretStoreError,
    SecretUnreadable,
)
from secret_store.store import SecretInfo, SecretStore, check_name, check_value

__all__ = [
    "InvalidSecret",
    "SecretCipher",
    "SecretInfo",
    "SecretNotFound",
    "SecretStore",
    "SecretStoreError",
    "SecretUnreadable",
    "SecretsKeyError",
    "check_name",
    "check_value",
    "cipher_from_settings",
    "load_cipher",
]
