"""Canonical JSON and content hashes: one spelling of a value, so equal values hash equal."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed and stored."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cas_ref(digest: str) -> str:
    """The reference events carry for a blob: ``cas://sha256:<hex>``."""
    return f"cas://sha256:{digest}"


def digest_of_ref(ref: str) -> str:
    """The hex digest inside a ``cas://sha256:<hex>`` reference (ValueError if malformed)."""
    prefix = "cas://sha256:"
    digest = ref[len(prefix) :] if ref.startswith(prefix) else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a CAS reference: {ref!r}")
    return digest


def json_ref(value: Any) -> str:
    """The CAS reference a JSON value gets when stored (``ContentStore.put_json``): known
    without storing it, so an event can name a blob that another part writes."""
    return cas_ref(sha256_hex(canonical_json(value)))
