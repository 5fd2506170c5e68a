"""API keys: created per tenant with scopes, stored only as hashes, checked by every API,
revoked everywhere within a second."""

from auth.api_keys import (
    REVOCATION_CHANNEL,
    TENANT_PATTERN,
    KeyInfo,
    NewKey,
    Principal,
    authenticate,
    create_key,
    ensure_schema,
    issue_key,
    list_keys,
    revoke_key,
)
from auth.revocations import RevocationListener
from auth.scopes import DEFAULT_SCOPES, SCOPES, UnknownScope, parse_scopes

__all__ = [
    "DEFAULT_SCOPES",
    "REVOCATION_CHANNEL",
    "SCOPES",
    "TENANT_PATTERN",
    "KeyInfo",
    "NewKey",
    "Principal",
    "RevocationListener",
    "UnknownScope",
    "authenticate",
    "create_key",
    "ensure_schema",
    "issue_key",
    "list_keys",
    "parse_scopes",
    "revoke_key",
]
