"""URL and host-name rules applied before any DNS, and the allowlist: pure, no I/O.

A URL must be http or https, carry no credentials and name a host. Names that belong to the
machine itself or to a cloud metadata service are refused by name, whatever DNS would say
(defence in depth: their addresses are refused as well). ``AOB_HTTP_ALLOWLIST`` names
``host:port`` targets that skip the address and name rules, and only those: the scheme and
credential rules still apply, and the connection still goes to the address just resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from workers.http.addresses import IPAddress, host_address, parse_ip
from workers.http.errors import InvalidAllowlist, Refused

SCHEMES = {"http": 80, "https": 443}

# Hosts of cloud metadata services (GCP, AWS, Azure, OpenStack and others' aliases).
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "metadata.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.oraclecloud.com",
    }
)


def normal_name(host: str) -> str:
    """A host name as DNS compares it: lower case, without the root's trailing dot(s)."""
    return host.lower().rstrip(".")


def name_refusal(host: str) -> str | None:
    """Why the host NAME alone is refused, or None."""
    name = normal_name(host)
    if name in METADATA_NAMES:
        return f"{host} is a cloud metadata host name"
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        return f"{host} is a name of this machine (localhost)"
    if not name:
        return "the URL has no host"
    return None


@dataclass(frozen=True)
class Target:
    """Where a URL points: its scheme, host as written (IDNA-encoded) and effective port."""

    scheme: str
    host: str
    port: int

    @property
    def literal(self) -> IPAddress | None:
        return host_address(self.host)


def target_of(url: httpx.URL) -> Target:
    """The URL's target, or Refused if the URL breaks a rule that needs no DNS."""
    scheme = url.scheme.lower()
    if scheme not in SCHEMES:
        raise Refused(f"scheme {scheme!r} is not http or https")
    if url.userinfo:
        raise Refused("URLs with credentials (user:pass@) are not allowed")
    host = url.raw_host.decode("ascii")
    if not host:
        raise Refused("the URL has no host")
    return Target(scheme, host, url.port or SCHEMES[scheme])


def parse_url(text: str) -> httpx.URL:
    """``text`` as a URL for the http node, Refused if a rule without DNS forbids it."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as e:
        raise Refused(f"{text!r} is not a valid URL: {e}") from e
    target_of(url)
    return url


HostKey = IPAddress | str


def host_key(host: str) -> HostKey:
    """How a host is compared with allowlist entries: an address (any spelling) or a name."""
    address = host_address(host)
    return address if address is not None else normal_name(host)


@dataclass(frozen=True)
class Allowlist:
    entries: frozenset[tuple[HostKey, int]] = frozenset()

    def allows(self, target: Target) -> bool:
        return (host_key(target.host), target.port) in self.entries

    def __bool__(self) -> bool:
        return bool(self.entries)


def _entry(raw: str) -> tuple[HostKey, int]:
    def bad(why: str) -> InvalidAllowlist:
        return InvalidAllowlist(
            f"AOB_HTTP_ALLOWLIST entry {raw!r}: {why} (expected host:port, IPv6 as [addr]:port)"
        )

    if raw.startswith("["):
        end = raw.find("]")
        if end < 0 or raw[end + 1 : end + 2] != ":":
            raise bad("an IPv6 address needs brackets and a port")
        host, port_text = raw[1:end], raw[end + 2 :]
        address = parse_ip(host)
        if address is None or address.version != 6:
            raise bad(f"{host!r} is not an IPv6 address")
        key: HostKey = address
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep or not host:
            raise bad("no port" if not sep else "no host")
        if ":" in host:
            raise bad("an IPv6 address needs brackets")
        address = parse_ip(host)
        if address is not None:
            key = address
        else:
            name = normal_name(host)
            allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-._")
            if not name or not set(name) <= allowed:
                raise bad(f"{host!r} is not a host name or IP address")
            key = name
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"{port_text!r} is not a port (1-65535)")
    return key, int(port_text)


def parse_allowlist(text: str) -> Allowlist:
    """``host:port,host:port,…`` (blanks around entries and empty entries ignored);
    InvalidAllowlist on any malformed entry, so that a typo stops the worker at start."""
    return Allowlist(frozenset(_entry(e.strip()) for e in text.split(",") if e.strip()))
