"""What `aob up` prints of where to reach the stack: every address once."""

from __future__ import annotations

from cli.stack_commands import address_rows
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.stack import ComponentStatus


def test_each_address_is_printed_once_with_its_name() -> None:
    settings = Settings()
    urls = Stack(settings).urls()
    comps = [
        ComponentStatus("kafka", True, 1, urls["kafka_bootstrap"], True),
        ComponentStatus("scripted_llm", True, 2, "http://127.0.0.1:18090", True),
        ComponentStatus("query_api", True, 3, urls["query_api_url"], True),
        ComponentStatus("command_api", True, 4, urls["command_api_url"], True),
        ComponentStatus("command_api-2", True, 5, "http://127.0.0.1:18082", True),
        ComponentStatus("workers", True, 6, None, True),
    ]
    rows = address_rows(urls, comps)
    addresses = [url for _, url in rows]
    assert len(addresses) == len(set(addresses)), rows
    named = dict(rows)
    assert named["command api"] == urls["command_api_url"]
    assert named["query api"] == urls["query_api_url"]
    assert named["console"] == urls["console_url"]
    assert named["scripted_llm"] == "http://127.0.0.1:18090"
    assert named["command_api-2"] == "http://127.0.0.1:18082", "a second instance is shown too"
