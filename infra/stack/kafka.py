"""Apache Kafka, single node, KRaft mode (broker and controller in one JVM).

Jars are resolved from Maven Central by a generated pom into ``<cache_dir>/kafka-<ver>/libs``
(once per machine); data lives in ``<home>/kafka/data``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import uuid
from pathlib import Path

from infra.settings import Settings
from infra.stack.errors import StackError
from infra.stack.process import ServiceSpec, tcp_open
from infra.stack.progress import Progress
from infra.stack.tools import require

SLF4J_BINDING = "org.slf4j:slf4j-reload4j:1.7.36"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>aob.local</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>{sg}</groupId><artifactId>{sa}</artifactId><version>{sv}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def kafka_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def libs_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def ensure_installed(settings: Settings, progress: Progress) -> None:
    java_hint = "a Java 17+ runtime (Debian: apt-get install default-jre-headless)"
    require("java", ["default-jre-headless"], progress, java_hint)
    libs = libs_dir(settings)
    marker = libs.parent / ".complete"
    if marker.exists() and any(libs.glob("kafka_2.13-*.jar")):
        return
    mvn = require("mvn", ["maven"], progress, "Apache Maven (Debian: apt-get install maven)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    sg, sa, sv = SLF4J_BINDING.split(":")
    pom = libs.parent / "pom.xml"
    pom.write_text(POM.format(version=settings.kafka_version, sg=sg, sa=sa, sv=sv))
    with progress.step(f"downloading Kafka {settings.kafka_version} jars (first run)…"):
        done = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise StackError(f"resolving Kafka jars with Maven failed:\n{tail}")
    marker.write_text("ok\n")


def new_cluster_id() -> str:
    """A KRaft cluster id: url-safe base64 of a uuid4. Like Kafka's own ``Uuid.randomUuid``,
    never one starting with '-': the storage tool's argument parser reads that as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _cluster_id(settings: Settings) -> str:
    path = kafka_dir(settings) / "cluster.id"
    if path.exists():
        cid = path.read_text().strip()
        if cid and not cid.startswith("-"):  # an unusable id from an older release: replace
            return cid
    cid = new_cluster_id()
    path.write_text(cid + "\n")
    return cid


def configure(settings: Settings) -> Path:
    """Write server.properties (every start, so port changes apply) and format once."""
    kdir = kafka_dir(settings)
    data = kdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    h = settings.host
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{h}:{settings.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{h}:{settings.kafka_port},CONTROLLER://{h}:{settings.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{h}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "4",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "-1",
    }
    server = kdir / "server.properties"
    server.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (kdir / "log4j.properties").write_text(LOG4J)
    if not (data / "meta.properties").exists():
        classpath = f"{libs_dir(settings)}/*"
        done = subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(settings),
                "-c",
                str(server),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {done.stderr.strip()[-400:]}")
    return server


async def healthy(settings: Settings) -> bool:
    """A metadata request answers (TCP first so a dead port is a quick no)."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    if not await tcp_open(host, int(port)):
        return False
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        info = await asyncio.wait_for(admin.describe_cluster(), 5)
        return bool(info.get("brokers"))
    except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def spec(settings: Settings) -> ServiceSpec:
    kdir = kafka_dir(settings)
    server = kdir / "server.properties"
    return ServiceSpec(
        name="kafka",
        argv=[
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{kdir / 'log4j.properties'}",
            "-cp",
            f"{libs_dir(settings)}/*",
            "kafka.Kafka",
            str(server),
        ],
        health=lambda: healthy(settings),
        url=settings.kafka_bootstrap,
        match=str(server),
        start_timeout=90,
        stop_timeout=30,
    )
