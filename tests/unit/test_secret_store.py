"""The secrets store without PostgreSQL: sealing, the key file, the rules on names and
values, and which references a template may make. The database is a fake that keeps rows
as the table would, so what PostgreSQL would hold can be looked at."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from schemas import InvalidWorkflow, WorkflowDefinition, compile_workflow
from schemas.secret_refs import SecretReferenceError, secret_references
from secret_store import (
    InvalidSecret,
    SecretCipher,
    SecretNotFound,
    SecretsKeyError,
    SecretStore,
    SecretUnreadable,
    load_cipher,
)
from secret_store.crypto import KEY_FILE_NAME
from tests.secret_support import Table

VALUE = "tok-3f9a-very-secret"


def cipher() -> SecretCipher:
    return SecretCipher([Fernet.generate_key()])


async def test_a_value_comes_back_and_the_table_never_holds_it() -> None:
    table = Table()
    store = SecretStore(table, cipher())
    await store.put("acme", "API_TOKEN", VALUE)
    assert await store.values("acme", ["API_TOKEN"]) == {"API_TOKEN": VALUE}
    dump = table.everything()
    assert VALUE.encode() not in dump
    assert b"3f9a" not in dump


async def test_list_shows_names_and_dates_only_and_delete_removes() -> None:
    table = Table()
    store = SecretStore(table, cipher())
    await store.put("acme", "B", VALUE)
    await store.put("acme", "A", "other")
    await store.put("globex", "C", "theirs")
    infos = await store.list("acme")
    assert [i.name for i in infos] == ["A", "B"]
    assert VALUE not in repr(infos) and VALUE not in str([i.as_json() for i in infos])
    await store.delete("acme", "B")
    assert [i.name for i in await store.list("acme")] == ["A"]
    with pytest.raises(SecretNotFound, match="'B'"):
        await store.delete("acme", "B")


async def test_a_missing_secret_is_named_and_another_tenants_is_not_visible() -> None:
    store = SecretStore(Table(), cipher())
    await store.put("globex", "TOKEN", VALUE)
    with pytest.raises(SecretNotFound) as caught:
        await store.values("acme", ["TOKEN", "OTHER"])
    assert caught.value.names == ["OTHER", "TOKEN"]
    assert VALUE not in str(caught.value)


async def test_a_sealed_value_moved_to_another_row_does_not_open() -> None:
    table = Table()
    store = SecretStore(table, cipher())
    await store.put("globex", "TOKEN", VALUE)
    table.rows[("acme", "TOKEN")] = dict(table.rows[("globex", "TOKEN")])
    with pytest.raises(SecretUnreadable, match="another tenant or name") as caught:
        await store.values("acme", ["TOKEN"])
    assert VALUE not in str(caught.value)


async def test_another_key_does_not_open_and_a_rotated_key_does() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed = SecretCipher([old]).seal("acme", "T", VALUE)
    with pytest.raises(SecretUnreadable, match="does not decrypt"):
        SecretCipher([new]).open("acme", "T", sealed)
    rotated = load_cipher(f"{new.decode()}, {old.decode()}", Path("/nonexistent"))
    assert rotated.open("acme", "T", sealed) == VALUE


@pytest.mark.parametrize("name", ["", "1abc", "with-dash", "a" * 65, "dot.ted", "sp ace", "é"])
async def test_bad_names_are_refused(name: str) -> None:
    store = SecretStore(Table(), cipher())
    with pytest.raises(InvalidSecret, match="secret name"):
        await store.put("acme", name, VALUE)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "must not be empty"),
        ("x" * (64 * 1024 + 1), "the limit is 65536"),
        ("é" * (32 * 1024 + 1), "the limit is 65536"),
        ("a\x00b", "NUL"),
    ],
)
async def test_bad_values_are_refused_without_being_quoted(value: str, words: str) -> None:
    store = SecretStore(Table(), cipher())
    with pytest.raises(InvalidSecret, match=words) as caught:
        await store.put("acme", "T", value)
    assert value[:20] not in str(caught.value) or not value


async def test_the_largest_value_and_a_63_character_name_are_taken() -> None:
    store = SecretStore(Table(), cipher())
    name = "_" + "a" * 63
    await store.put("acme", name, "x" * (64 * 1024))
    assert len((await store.values("acme", [name]))[name]) == 64 * 1024


def test_the_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sealed = load_cipher(None, home).seal("acme", "T", VALUE)
    path = home / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    assert load_cipher("", home).open("acme", "T", sealed) == VALUE
    assert path.read_bytes() == key
    assert [p.name for p in home.iterdir()] == [KEY_FILE_NAME]  # no staging file left


def test_the_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    sealed = load_cipher(key.decode(), tmp_path).seal("acme", "T", VALUE)
    assert not (tmp_path / KEY_FILE_NAME).exists()
    assert SecretCipher([key]).open("acme", "T", sealed) == VALUE


def test_a_malformed_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretsKeyError, match="not a Fernet key"):
        load_cipher("not-a-key", tmp_path)
    (tmp_path / KEY_FILE_NAME).write_text("\n")
    os.chmod(tmp_path / KEY_FILE_NAME, 0o600)
    with pytest.raises(SecretsKeyError, match="empty"):
        load_cipher(None, tmp_path)


def test_references_are_read_from_the_template_not_the_prose() -> None:
    config = {
        "url": "https://api.example/{{ input.path }}",
        "headers": {"X-Api-Key": "{{ secrets.API_KEY }}", "X-Other": "{{secrets['Other_2']}}"},
        "prompt": ["keep secrets safe: {{ input.note }}", "{% if secrets.FLAG %}y{% endif %}"],
    }
    assert secret_references(config) == {"API_KEY", "Other_2", "FLAG"}
    assert secret_references({"a": "no template, secrets.X"}) == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "{{ secrets[input.which] }}",
        "{{ secrets }}",
        "{{ secrets | tojson }}",
        "{{ secrets['bad-name'] }}",
        "{% for k in secrets %}{{ k }}{% endfor %}",
    ],
)
def test_a_computed_or_whole_reference_is_refused(text: str) -> None:
    with pytest.raises(SecretReferenceError):
        secret_references({"x": text})


def test_publishing_takes_secret_names_and_refuses_computed_ones() -> None:
    ok = WorkflowDefinition.model_validate(
        {"nodes": [{"id": "a", "type": "transform", "config": {"output": "{{ secrets.T }}"}}]}
    )
    compile_workflow(ok)
    bad = WorkflowDefinition.model_validate(
        {
            "nodes": [
                {"id": "a", "type": "transform", "config": {"output": "{{ secrets[input.k] }}"}}
            ]
        }
    )
    with pytest.raises(InvalidWorkflow, match=r"node 'a'.*named in the template"):
        compile_workflow(bad)
