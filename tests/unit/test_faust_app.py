"""processors.faust_app: the coordinator's consumer fetches again as soon as a full
stream buffer drains, its fetches wait for data as long as configured, and its producer,
once started, is handed over without a turn of the event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from infra.settings import Settings
from processors.app import create_app
from processors.config import CoordinatorConfig
from processors.faust_app import CoordinatorConsumer

PARTITIONS = {TP("aob.runs", p) for p in range(4)}


def _consumer(tmp_path: Path) -> CoordinatorConsumer:
    consumer = create_app(Settings(home=tmp_path), CoordinatorConfig()).app.consumer
    assert isinstance(consumer, CoordinatorConsumer)
    fetched: list[set[TP]] = []

    async def getmany(active_partitions: set[TP], timeout: float) -> dict[TP, Any]:
        fetched.append(set(active_partitions))
        return {}

    slept: list[float] = []

    async def sleep(seconds: float, *args: Any, **kwargs: Any) -> None:
        slept.append(seconds)

    consumer._getmany = getmany  # type: ignore[method-assign]
    consumer.sleep = sleep  # type: ignore[method-assign]
    consumer.fetched = fetched  # type: ignore[attr-defined]
    consumer.slept = slept  # type: ignore[attr-defined]
    consumer._set_active_tps(PARTITIONS)
    return consumer


async def test_a_fetch_goes_out_as_soon_as_a_full_buffer_drains(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    for tp in PARTITIONS:  # every partition's stream buffer is under high pressure
        consumer.on_buffer_full(tp)
    assert not consumer._get_active_partitions()
    waiting = asyncio.ensure_future(consumer._wait_next_records(timeout=1.0))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiting.done()  # nothing to fetch: it waits for a drain
    consumer.on_buffer_drop(TP("aob.runs", 2))
    _, active = await asyncio.wait_for(waiting, 5)
    assert active == {TP("aob.runs", 2)}
    assert consumer.fetched == [{TP("aob.runs", 2)}]  # type: ignore[attr-defined]
    # faust's own consumer sleeps a whole second here, whatever drains meanwhile
    assert consumer.slept == []  # type: ignore[attr-defined]


async def test_a_drain_before_the_wait_is_not_missed(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    for tp in PARTITIONS:
        consumer.on_buffer_full(tp)
    consumer.on_buffer_drop(TP("aob.runs", 0))
    _, active = await asyncio.wait_for(consumer._wait_next_records(timeout=1.0), 5)
    assert active == {TP("aob.runs", 0)}


async def test_with_partitions_to_fetch_it_fetches_at_once(tmp_path: Path) -> None:
    consumer = _consumer(tmp_path)
    _, active = await asyncio.wait_for(consumer._wait_next_records(timeout=1.0), 5)
    assert active == PARTITIONS
    assert consumer.fetched == [PARTITIONS]  # type: ignore[attr-defined]


@pytest.mark.parametrize("wait_ms", [20, 250])
async def test_the_fetch_wait_reaches_aiokafka(tmp_path: Path, wait_ms: int) -> None:
    config = CoordinatorConfig(fetch_max_wait_ms=wait_ms)
    consumer = create_app(Settings(home=tmp_path), config).app.consumer
    assert isinstance(consumer, CoordinatorConsumer)
    kafka = consumer._thread._create_consumer(loop=asyncio.get_running_loop())
    try:
        # faust's own driver asks for 1,500 ms
        assert kafka._fetch_max_wait_ms == wait_ms
    finally:
        await kafka.stop()


def test_a_started_producer_is_handed_over_without_a_turn_of_the_loop(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path), CoordinatorConfig()).app
    producer = app.producer
    producer._started.set()  # as once the app runs
    sending = app.maybe_start_producer()
    # faust's own yields to the loop twice here, and aiokafka's sender sends in between: a
    # batch's changelog records went out a few at a time
    with pytest.raises(StopIteration) as handed:
        sending.send(None)
    assert handed.value.value is producer


async def test_a_producer_not_started_is_started_as_faust_does(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path), CoordinatorConfig()).app
    producer = app.producer
    started: list[bool] = []

    async def maybe_start() -> bool:
        started.append(True)
        return True

    producer.maybe_start = maybe_start  # type: ignore[method-assign]
    assert await app.maybe_start_producer() is producer
    assert started == [True]
