"""The address check: every address a request could reach is judged before it is used.

``Guard.addresses`` returns the addresses the transport may connect to for a target, or
raises ``Refused``. A name is refused if ANY of its DNS answers is bad: the client may pick
any of them, and an attacker controlling DNS chooses the order.
"""

from __future__ import annotations

import socket

from workers.http.addresses import IPAddress, host_address, refusal
from workers.http.errors import Refused, RequestFailed
from workers.http.resolver import Resolver
from workers.http.targets import Allowlist, Target, name_refusal


class Guard:
    def __init__(self, resolver: Resolver, allowlist: Allowlist | None = None) -> None:
        self._resolver = resolver
        self._allowlist = allowlist or Allowlist()

    async def addresses(self, target: Target) -> list[IPAddress]:
        allowed = self._allowlist.allows(target)
        literal = host_address(target.host)
        if literal is not None:
            why = None if allowed else refusal(literal)
            if why is not None:
                same = target.host.strip("[]") == str(literal)
                spelled = "" if same else f" (from {target.host})"
                raise Refused(_sentence(f"{literal}{spelled}", why))
            return [literal]
        if not allowed:
            why = name_refusal(target.host)
            if why is not None:
                raise Refused(why)
        answers = await self._resolve(target)
        if not allowed:
            for address in answers:
                why = refusal(address)
                if why is not None:
                    among = f", one of {len(answers)} answers" if len(answers) > 1 else ""
                    raise Refused(_sentence(f"{address} (from {target.host}{among})", why))
        return answers

    async def _resolve(self, target: Target) -> list[IPAddress]:
        try:
            answers = await self._resolver.resolve(target.host, target.port)
        except OSError as e:
            # Only a temporary failure is worth another attempt; "no such name" is final.
            temporary = isinstance(e, socket.gaierror) and e.errno == socket.EAI_AGAIN
            raise RequestFailed(f"could not resolve {target.host}: {e}", retryable=temporary) from e
        if not answers:
            raise RequestFailed(f"{target.host} has no address", retryable=False)
        return answers


def _sentence(subject: str, why: str) -> str:
    tail = ", not a public one" if why.startswith(("is a ", "is an ", "is the ")) else ""
    return f"{subject} {why}{tail}"
