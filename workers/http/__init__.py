"""The ``http`` node type, with its SSRF defence.

targets.py    URL rules before DNS (scheme, credentials, host names) and the allowlist
addresses.py  which IP addresses are public (embedded IPv4 unwrapped; inet_aton spellings)
resolver.py   the Resolver port and the system's resolver
guard.py      target -> addresses to connect to, or Refused (any bad DNS answer refuses)
transport.py  connects to the checked address, keeping Host and TLS SNI
handler.py    templated config -> one exchange, redirects followed and re-checked
responses.py  the output and the reasons of failures
client.py     the worker's one client and the handler, built from settings
"""

from workers.http.client import build_client, open_http_handler
from workers.http.errors import HttpNodeError, InvalidAllowlist, Refused
from workers.http.guard import Guard
from workers.http.handler import HttpHandler
from workers.http.resolver import Resolver, SystemResolver
from workers.http.targets import Allowlist, parse_allowlist

__all__ = [
    "Allowlist",
    "Guard",
    "HttpHandler",
    "HttpNodeError",
    "InvalidAllowlist",
    "Refused",
    "Resolver",
    "SystemResolver",
    "build_client",
    "open_http_handler",
    "parse_allowlist",
]
