"""docker-compose.yml agrees with the code it runs, checked without a Docker engine.

Each AOB service's command is an ``aob`` command or a runnable module of the project; every
``AOB_*`` variable it sets is a setting the code reads; the published ports are the local
stack's defaults (so ``aob`` on the host needs no settings); the credentials are the ones the
code expects; and the init container runs ``aob up`` itself, as a user's machine does.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from cli.main import app
from cli.stack_commands import up
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.postgres import CHECKPOINT_TIMEOUT, MAX_WAL_SIZE, start_options
from infra.stack.stack import INFRA
from tests import docker_build
from tests.docker_build import PROJECT, package_dir, top_level_packages

COMPOSE: dict[str, Any] = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AOB_IMAGE = "aob:local"
AOB_SERVICES = sorted(n for n, s in SERVICES.items() if s.get("image") == AOB_IMAGE)

# Where each server of the stack listens inside its container, and the setting that holds
# the port the local stack uses for it. (Redpanda Console has no counterpart in the local
# stack, so no setting.)
INFRA_PORTS = {
    "redpanda": {19092: "kafka_port"},
    "postgres": {5432: "postgres_port"},
    "minio": {9000: "minio_port", 9001: "minio_console_port"},
}


def default(field: str) -> Any:
    """A setting's default as the code has it, whatever this process's environment says."""
    return Settings.model_fields[field].default


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# --- what the code accepts --------------------------------------------------------------


class UnknownCommand(AssertionError):
    """The container's command is not one the code has."""


def resolve_cli(args: list[str]) -> tuple[Any, dict[str, Any]]:
    """The ``aob`` command that ``args`` names, and its parsed parameters. A misspelt
    command, option or value fails here as it would in the container, without running."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("aob", [], resilient_parsing=True)
    rest = list(args)
    while isinstance(command, typer.core.TyperGroup):
        name = rest.pop(0) if rest else ""
        sub = command.get_command(ctx, name)
        if sub is None:
            raise UnknownCommand(f"no such command: aob {' '.join(args)}")
        command = sub
        leaf = not isinstance(command, typer.core.TyperGroup)
        try:
            ctx = command.make_context(
                name, rest if leaf else [], parent=ctx, resilient_parsing=not leaf
            )
        except typer.TyperException as e:
            raise UnknownCommand(f"aob {' '.join(args)}: {e}") from e
    return command, ctx.params


def check_command(command: list[str]) -> str:
    """What the container runs, checked against the project: an ``aob`` command, or
    ``python -m`` of a module in one of the project's packages with a ``__main__``."""
    if command[:1] == ["aob"]:
        resolve_cli(command[1:])
        return "aob"
    if command[:2] == ["python", "-m"] and len(command) >= 3:
        module = command[2]
        if module.split(".")[0] not in top_level_packages(PROJECT):
            raise UnknownCommand(f"python -m {module}: not a package of this project")
        if importlib.util.find_spec(f"{module}.__main__") is None:
            raise UnknownCommand(f"python -m {module}: no {module}/__main__.py")
        return "module"
    raise UnknownCommand(f"{command}: neither an aob command nor python -m of a project module")


def _project_modules() -> Iterator[tuple[str, ast.Module]]:
    for package in top_level_packages(PROJECT):
        for path in sorted(package_dir(PROJECT, package).rglob("*.py")):
            name = docker_build.module_name(PROJECT, package, path)
            yield name.removesuffix(".__init__"), ast.parse(path.read_text())


def _settings_classes() -> Iterator[type[BaseSettings]]:
    for module_name, tree in _project_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).split(".")[-1] == "BaseSettings" for base in node.bases
            ):
                yield getattr(importlib.import_module(module_name), node.name)


def _env_names(cls: type[BaseSettings]) -> Iterator[str]:
    prefix = cls.model_config.get("env_prefix", "")
    for name, info in cls.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, AliasChoices):
            yield from (c for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            yield alias
        else:
            yield f"{prefix}{name}"


def _read_from_environ(tree: ast.Module) -> Iterator[str]:
    """``AOB_*`` names the code reads straight from the environment (os.environ.get,
    os.getenv, os.environ[...]), outside any settings class."""
    for node in ast.walk(tree):
        arg: ast.AST | None = None
        if isinstance(node, ast.Call) and ast.unparse(node.func) in {
            "os.environ.get",
            "os.getenv",
            "environ.get",
            "getenv",
        }:
            arg = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {
            "os.environ",
            "environ",
        }:
            arg = node.slice
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value


def known_settings() -> set[str]:
    """Every ``AOB_*`` environment variable the code reads."""
    names = {n.upper() for cls in _settings_classes() for n in _env_names(cls)}
    names |= {n for _, tree in _project_modules() for n in _read_from_environ(tree)}
    return {n for n in names if n.startswith("AOB_")}


# --- the checks -----------------------------------------------------------------------------


def test_the_compose_file_has_aob_services() -> None:
    assert {"init", "command-api", "query-api", "coordinator", "workers", "projections"} <= set(
        AOB_SERVICES
    )
    assert {"redpanda", "console", "postgres", "minio"} <= set(SERVICES)


@pytest.mark.parametrize("service", AOB_SERVICES)
def test_each_aob_service_runs_a_command_the_code_has(service: str) -> None:
    command = SERVICES[service].get("command")
    assert isinstance(command, list), f"{service}: give the command as a list"
    check_command(command)


@pytest.mark.parametrize("service", AOB_SERVICES)
def test_every_aob_variable_is_a_real_setting(service: str) -> None:
    settings = known_settings()
    unknown = sorted(k for k in environment(service) if k.startswith("AOB_") and k not in settings)
    assert unknown == [], f"{service} sets AOB_* variables that no code reads"


def test_the_images_own_aob_variables_are_real_settings() -> None:
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert set(re.findall(r"\bAOB_[A-Z0-9_]+", dockerfile)) <= known_settings()


def test_the_settings_reader_finds_every_kind_of_setting() -> None:
    # One of each: a prefixed field, an alias, an alias choice, a direct environ read.
    assert {
        "AOB_KAFKA_PORT",
        "AOB_POSTGRES_DSN",
        "AOB_HTTP_ALLOWLIST",
        "AOB_COORDINATOR_AGENT_SPAWN_LIMIT",
        "AOB_COMMAND_API_MAX_BODY_BYTES",
        "AOB_PROJECTION_SCHEMA",
    } <= known_settings()
    assert "AOB_NO_SUCH_THING" not in known_settings()


def _published(service: str) -> list[tuple[str, int, int]]:
    out = []
    for spec in SERVICES[service].get("ports", []):
        ip, host, container = str(spec).split(":")
        out.append((ip, int(host), int(container)))
    return out


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_ports_are_published_on_loopback_only(service: str) -> None:
    assert all(ip == "127.0.0.1" for ip, _, _ in _published(service))


@pytest.mark.parametrize("service", sorted(INFRA_PORTS))
def test_infrastructure_ports_are_the_local_stacks_defaults(service: str) -> None:
    published = {container: host for _, host, container in _published(service)}
    assert published == {
        container: default(field) for container, field in INFRA_PORTS[service].items()
    }


def test_redpanda_advertises_the_published_kafka_port() -> None:
    flags = " ".join(SERVICES["redpanda"]["command"])
    assert f"external://127.0.0.1:{default('kafka_port')}" in flags
    assert f"external://0.0.0.0:{default('kafka_port')}" in flags


@pytest.mark.parametrize("service", [s for s in AOB_SERVICES if SERVICES[s].get("ports")])
def test_aob_service_ports_are_the_local_stacks_defaults(service: str) -> None:
    module = SERVICES[service]["command"][2]  # python -m <module>
    field = f"{module}_port"
    assert field in Settings.model_fields, f"{service} publishes a port no setting names"
    listens = int(environment(service).get(f"AOB_{field.upper()}", default(field)))
    assert _published(service) == [("127.0.0.1", default(field), listens)]
    health = " ".join(SERVICES[service]["healthcheck"]["test"])
    assert f":{listens}/healthz" in health


def test_aob_services_reach_the_servers_compose_runs() -> None:
    env = environment("init")
    kafka_host, kafka_port = env["AOB_KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert kafka_host == "redpanda"
    assert f"internal://0.0.0.0:{kafka_port}" in " ".join(SERVICES["redpanda"]["command"])
    dsn = urlsplit(env["AOB_POSTGRES_DSN"])
    pg = environment("postgres")
    assert (dsn.hostname, dsn.port) == ("postgres", 5432)
    assert (dsn.username, dsn.password, dsn.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        f"/{pg['POSTGRES_DB']}",
    )
    assert env["AOB_MINIO_ENDPOINT"] == "minio:9000"
    minio = environment("minio")
    # The services sign S3 requests with these settings; compose sets none, so the defaults.
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        default("minio_access_key"),
        default("minio_secret_key"),
    )


def test_every_aob_service_shares_the_deployment_settings() -> None:
    shared = {k: v for k, v in environment("init").items() if k.startswith("AOB_")}
    for service in AOB_SERVICES:
        assert shared.items() <= environment(service).items(), service


def test_init_runs_aob_up_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The topics and the bucket are made by the code `aob up` runs, not by a copy of it."""
    command, params = resolve_cli(SERVICES["init"]["command"][1:])
    assert SERVICES["init"]["command"][0] == "aob"
    assert inspect.unwrap(command.callback) is up
    assert params["infra_only"] is True
    # With compose's environment, `aob up` waits for compose's servers and starts none.
    for name in [k for k in os.environ if k.startswith("AOB_")]:
        monkeypatch.delenv(name)
    for name, value in environment("init").items():
        monkeypatch.setenv(name, value)
    stack = Stack(Settings())
    assert all(stack.external(name) for name in INFRA)


def test_every_aob_service_waits_for_init() -> None:
    for service in AOB_SERVICES:
        if service != "init":
            wait = SERVICES[service]["depends_on"]["init"]["condition"]
            assert wait == "service_completed_successfully", service


def test_a_misspelt_command_is_caught() -> None:
    with pytest.raises(UnknownCommand, match="no such command: aob upp"):
        check_command(["aob", "upp"])
    with pytest.raises(UnknownCommand, match="No such option: --infra-onyl"):
        check_command(["aob", "up", "--infra-onyl"])
    with pytest.raises(UnknownCommand, match="no such command: aob replay projectoins"):
        check_command(["aob", "replay", "projectoins"])
    with pytest.raises(UnknownCommand, match="not a package of this project"):
        check_command(["python", "-m", "command_apii"])
    with pytest.raises(UnknownCommand, match=r"no schemas/__main__\.py"):
        check_command(["python", "-m", "schemas"])
    with pytest.raises(UnknownCommand, match="neither"):
        check_command(["python", "-c", "import cli"])


def test_image_tags_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        if image == AOB_IMAGE:
            continue
        tag = image.rpartition(":")[2]
        assert "/" not in tag and tag not in {"", "latest"}, f"{name}: pin {image} by tag"


def test_the_services_image_is_built_once() -> None:
    builders = [n for n, s in SERVICES.items() if "build" in s]
    assert builders == ["init"]
    assert Path(PROJECT / SERVICES["init"]["build"] / "Dockerfile").is_file()


def test_the_readme_describes_this_compose_file() -> None:
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("\n## With Docker\n", 1)[1].split("\n## ", 1)[0]
    for service in SERVICES:
        for _, host, _ in _published(service):
            assert f":{host}" in section, f"README: {service}'s port {host}"
    major = SERVICES["postgres"]["image"].rpartition(":")[2].split(".")[0]
    assert f"PostgreSQL {major}" in section
    assert " ".join(SERVICES["init"]["command"]) in section
    for volume in COMPOSE["volumes"]:
        if volume.startswith("postgres"):
            assert f"`{volume}`" in section


def test_postgresql_checkpoints_as_the_local_stack_does() -> None:
    # A checkpoint per 1 GB of WAL came about every 40 s under load (infra.stack.postgres).
    command = SERVICES["postgres"]["command"]
    assert command[0] == "postgres"
    options = dict(o.split("=", 1) for o in command[2::2])
    assert command[1::2] == ["-c"] * len(options)
    assert options["max_wal_size"] == MAX_WAL_SIZE
    assert options["checkpoint_timeout"] == CHECKPOINT_TIMEOUT
    assert options["track_commit_timestamp"] == "on"
    for name, value in (("max_wal_size", MAX_WAL_SIZE), ("checkpoint_timeout", CHECKPOINT_TIMEOUT)):
        assert f"-c {name}={value}" in start_options(Settings())
