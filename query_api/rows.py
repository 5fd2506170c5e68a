"""From a read model's row to a GraphQL type: the columns that keep their name are copied."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_row(cls: type[T], row: Any, **given: Any) -> T:
    """``cls`` built from ``row`` (a record or a mapping): every field is the row's column of
    the same name, except those ``given`` (a column renamed or converted on the way).

    Strawberry types are dataclasses; a resolver field (``init=False``) is not built from a
    row.
    """
    copied = {
        f.name: row[f.name]
        for f in fields(cls)  # type: ignore[arg-type]  # a strawberry type is a dataclass
        if f.init and f.name not in given
    }
    return cls(**copied, **given)
