"""API keys: created per tenant, stored only as hashes, checked by every API."""

from auth.api_keys import Principal, authenticate, create_key, ensure_schema, issue_key

__all__ = ["Principal", "authenticate", "create_key", "ensure_schema", "issue_key"]
