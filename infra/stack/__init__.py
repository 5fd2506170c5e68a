"""The local stack: real Kafka (KRaft), PostgreSQL and MinIO as local processes, and AOB's
services, started, checked and stopped from Python (``aob up`` / ``status`` / ``down``)."""

from infra.stack.errors import MissingPrerequisite, StackError
from infra.stack.process import ServiceSpec
from infra.stack.stack import ComponentStatus, Stack, settings_env

__all__ = [
    "ComponentStatus",
    "MissingPrerequisite",
    "ServiceSpec",
    "Stack",
    "StackError",
    "settings_env",
]
