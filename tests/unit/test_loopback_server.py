"""The tests' loopback HTTP server: when it stops, a client's kept-alive connection stops
with it, so the next server on the same port sees the client's next request (the running
workers keep connections alive across tests that share one port)."""

from __future__ import annotations

import httpx

from tests.http_support import LoopbackServer


def test_a_kept_alive_connection_does_not_outlive_its_server() -> None:
    with httpx.Client() as client:
        first = LoopbackServer()
        with first.running():
            assert client.get(f"{first.base}/one").status_code == 200
        second = LoopbackServer(port=first.port)
        with second.running():
            assert client.get(f"{second.base}/two").status_code == 200
    assert [s.path for s in first.seen] == ["/one"]
    assert [s.path for s in second.seen] == ["/two"]
