"""Which IP addresses the http node may connect to: pure functions, no I/O.

The rule is "globally routable, or refused". Python's ``ipaddress`` alone is not enough:
it calls multicast and 6to4/NAT64/IPv4-compatible wrappings of loopback "global", and CGNAT
(100.64.0.0/10) neither private nor global. So an IPv6 address that carries an IPv4 address
(mapped, compatible, 6to4, NAT64, Teredo) is judged by the IPv4 address it carries, and a
table of named ranges is checked before ``is_global`` so that a refusal says what the
address is (and does not depend on the Python version's idea of "global").
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

_V4 = IPv4Network
_V6 = IPv6Network

# Checked in order, before ``is_global``: the first match names the refusal.
_NAMED_RANGES: tuple[tuple[IPv4Network | IPv6Network, str], ...] = (
    (_V4("169.254.169.254/32"), "a cloud metadata address"),
    (_V6("fd00:ec2::254/128"), "a cloud metadata address"),
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_V6("::/128"), "the unspecified address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V6("::1/128"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V4("100.64.0.0/10"), "a shared (CGNAT) address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.88.99.0/24"), "a reserved (6to4 relay anycast) address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V6("2001:2::/48"), "a benchmarking address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("100::/64"), "a discard-only address"),
    # The local-use NAT64 prefix (RFC 8215) leads into an operator's own network.
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
)

_NAT64 = _V6("64:ff9b::/96")
_TEREDO = _V6("2001::/32")
_SIX_TO_FOUR = _V6("2002::/16")


def embedded_ipv4(ip: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the form's name; None if it carries none.

    ``::`` and ``::1`` are IPv6 addresses of their own, not IPv4-compatible ones.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    value = int(ip)
    if value >> 32 == 0 and value > 1:
        return IPv4Address(value & 0xFFFFFFFF), "IPv4-compatible"
    if ip in _SIX_TO_FOUR:
        return IPv4Address((value >> 80) & 0xFFFFFFFF), "6to4"
    if ip in _NAT64:
        return IPv4Address(value & 0xFFFFFFFF), "NAT64"
    if ip in _TEREDO:
        # The client's address is stored inverted (RFC 4380) so that NATs leave it alone.
        return IPv4Address(~value & 0xFFFFFFFF), "Teredo"
    return None


def _named(ip: IPAddress) -> str | None:
    for network, label in _NAMED_RANGES:
        if ip.version == network.version and ip in network:
            return label
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why the http node must not connect to ``ip``, as a predicate to follow the address
    (``"is a loopback address"``), or None when it is a public address."""
    label = _named(ip)
    if label is not None:
        return f"is {label}"
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            return "has a zone index (link-scoped)"
        carried = embedded_ipv4(ip)
        if carried is not None:
            inner, form = carried
            why = refusal(inner)
            if why is not None:
                return f"embeds {inner} ({form}), which {why}"
            if form in ("IPv4-mapped", "IPv4-compatible"):
                return None  # the packet goes to the IPv4 address, which is public
            if form == "Teredo":
                # Reached through a relay we cannot vet; Teredo is obsolete anyway.
                return "is a Teredo tunnel address"
    if not ip.is_global:
        return "is not a globally routable address"
    return None


def is_public(ip: IPAddress) -> bool:
    return refusal(ip) is None


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address in standard notation (IPv6 with or without brackets)."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _inet_aton_part(part: str) -> int | None:
    if not part:
        return None
    lowered = part.lower()
    try:
        if lowered.startswith("0x"):
            return int(lowered[2:], 16) if len(lowered) > 2 else 0
        if len(lowered) > 1 and lowered.startswith("0"):
            return int(lowered[1:], 8)
        return int(lowered, 10) if lowered.isdigit() else None
    except ValueError:
        return None


def parse_inet_aton(text: str) -> IPv4Address | None:
    """``text`` read as the C library's ``inet_aton`` reads it, or None.

    ``ipaddress`` rejects ``127.1``, ``0x7f.1``, ``017700000001`` and ``2130706433``, but the
    system resolver turns each of them into 127.0.0.1; such a host must be judged as the
    address it means, never looked up or passed on as a name. One to four parts, each
    decimal, octal (leading 0) or hex (0x); the last part fills the remaining bytes. A
    trailing dot is tolerated: reading more spellings as addresses only refuses more.
    """
    body = text[:-1] if text.endswith(".") else text
    if not body or not all(c.isalnum() or c == "." for c in body) or not body.isascii():
        return None
    parts = body.split(".")
    if len(parts) > 4:
        return None
    values = [_inet_aton_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    head, last = nums[:-1], nums[-1]
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = 0
    for v in head:
        value = value << 8 | v
    value = value << (8 * (4 - len(head))) | last
    return IPv4Address(value)


def host_address(host: str) -> IPAddress | None:
    """The address a URL host denotes without DNS: a literal in any spelling, else None."""
    literal = parse_ip(host)
    return literal if literal is not None else parse_inet_aton(host)
