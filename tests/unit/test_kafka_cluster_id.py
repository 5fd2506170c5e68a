"""KRaft cluster ids the storage tool accepts (one in 64 random ids starts with '-')."""

from __future__ import annotations

import base64

from infra.stack.kafka import new_cluster_id


def test_cluster_ids_never_start_with_a_dash_and_decode_to_16_bytes() -> None:
    for _ in range(5_000):
        cid = new_cluster_id()
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
