"""The order in which a worker process starts what it has taken (``workers.fair.queue``):
slots per tenant and type, round robin over tenants, topic order within a lane, gates that
park their entries apart, the bound on what waits. Pure: time is passed in."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.fair.queue import Entry, FairQueue, Probe, key_gate, rate_gate


def offer_many(q: FairQueue[str], tenant: str, n: int, node_type: str = "http", cap: int = 16):
    return [q.offer(tenant, node_type, f"{tenant}-{i}", cap=cap) for i in range(n)]


def take_all(q: FairQueue[str], now: float = 0.0) -> list[Entry[str]]:
    out = []
    while (e := q.take(now)) is not None:
        out.append(e)
    return out


def test_a_tenant_runs_at_most_its_cap_of_one_type_and_the_rest_waits_saying_why() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    offer_many(q, "acme", 20, cap=16)
    started = take_all(q)
    assert len(started) == 16 and q.waiting == 4
    waiting = next(iter(q.entries()))
    wait = q.why(waiting, 0.0)
    assert wait is not None and wait.waiting_for == "tenant_slots"
    assert wait.reason == "tenant acme has 16 of 16 http slots in use on this worker"


def test_a_flooding_tenant_does_not_hold_up_the_tenant_behind_it() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    offer_many(q, "flood", 500, cap=16)
    take_all(q)
    late = offer_many(q, "quiet", 3, cap=16)
    assert [e.payload for e in take_all(q)] == [e.payload for e in late]


def test_the_caps_are_per_type() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    offer_many(q, "acme", 5, node_type="http", cap=2)
    offer_many(q, "acme", 5, node_type="noop", cap=3)
    started = Counter(e.node_type for e in take_all(q))
    assert started == {"http": 2, "noop": 3}


def test_the_process_slots_bound_everyone() -> None:
    q: FairQueue[str] = FairQueue(slots=4)
    offer_many(q, "a", 10)
    offer_many(q, "b", 10)
    started = take_all(q)
    assert len(started) == 4 and q.running == 4
    waiting = next(e for e in q.entries() if e.tenant == "b")
    wait = q.why(waiting, 0.0)
    assert wait is not None and wait.waiting_for == "worker_slots"  # not told: the process's
    q.finished(started[0])
    assert q.take(0.0) is not None and q.take(0.0) is None


def test_waiting_tenants_are_served_round_robin_each_in_topic_order() -> None:
    q: FairQueue[str] = FairQueue(slots=1)
    offer_many(q, "a", 4)
    offer_many(q, "b", 2)
    offer_many(q, "c", 1)
    order = []
    while (e := q.take(0.0)) is not None:
        order.append(e.payload)
        q.finished(e)
    assert order == ["a-0", "b-0", "c-0", "a-1", "b-1", "a-2", "a-3"]


def test_a_tenant_with_many_types_gets_no_more_turns_than_one_with_one() -> None:
    q: FairQueue[str] = FairQueue(slots=1)
    for t in ("http", "noop", "agent"):
        offer_many(q, "wide", 3, node_type=t)
    offer_many(q, "narrow", 3)
    tenants = []
    for _ in range(6):
        e = q.take(0.0)
        assert e is not None
        tenants.append(e.tenant)
        q.finished(e)
    assert tenants == ["wide", "narrow"] * 3


def test_a_freed_slot_goes_to_the_next_in_the_lane() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    entries = offer_many(q, "acme", 3, cap=1)
    (first,) = take_all(q)
    assert first is entries[0]
    q.finished(first)
    assert take_all(q) == [entries[1]]


def test_a_raised_cap_frees_waiting_entries() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    offer_many(q, "acme", 5, cap=1)
    assert len(take_all(q)) == 1
    q.set_cap("acme", "http", 3)
    assert len(take_all(q)) == 2


# --- gates ------------------------------------------------------------------------------


def test_a_full_key_parks_its_entries_in_order_while_other_keys_and_tasks_go_on() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    a0, a1, b0, n0 = (q.offer("acme", "http", p, cap=16) for p in ("a0", "a1", "b0", "n0"))
    assert take_all(q) == [a0, a1, b0, n0]
    key_a, key_b = key_gate("acme", "customer-a"), key_gate("acme", "customer-b")
    assert q.learned(a0, key_a, 0.0) is Probe.OPEN
    assert q.learned(a1, key_a, 0.0) is Probe.BUSY  # a0 is finding out: a1 waits behind it
    assert q.learned(b0, key_b, 0.0) is Probe.OPEN  # another key is not held up
    q.hold(a0, key_a, 5.0, "concurrency key 'customer-a': 2 of 2 running")
    q.admitted(b0)
    wait = q.why(a0, 1.0)
    assert wait is not None and wait.waiting_for == "concurrency_key"
    assert wait.reason == "concurrency key 'customer-a': 2 of 2 running"
    assert q.why(a1, 1.0) == wait  # parked while a0 probed: it has the reason now too
    assert {e.payload for e in q.newly_parked()} == {"a0", "a1"}
    assert q.take(1.0) is None  # both wait on the closed key
    q.offer("acme", "http", "n1", cap=16)
    assert [e.payload for e in take_all(q, 1.0)] == ["n1"]  # the lane is not blocked
    q.open(key_a, 2.0)  # this process gave a slot of customer-a back
    first = q.take(2.0)
    assert first is a0 and q.take(2.0) is None  # the earliest first; a1 waits for its probe
    q.admitted(a0)
    assert q.take(2.0) is a1


def test_a_closed_rate_gate_opens_at_its_time() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    gate = rate_gate("acme", "openai")
    e0 = q.offer("acme", "agent", "e0", cap=16, gates=(gate,))
    e1 = q.offer("acme", "agent", "e1", cap=16, gates=(gate,))
    assert q.take(0.0) is e0 and q.take(0.0) is None  # e1 waits while e0 takes its call
    q.hold(e0, gate, 3.2)
    assert q.next_wake() == 3.2
    wait = q.why(e1, 1.0)
    assert wait is not None and wait.reason == "rate limit openai: next call in 2.2 s"
    assert q.take(3.1) is None
    assert q.take(3.2) is e0  # the earliest again
    q.admitted(e0)
    assert q.take(3.2) is e1


def test_an_entry_whose_rate_gate_is_closed_is_set_aside_for_the_next() -> None:
    q: FairQueue[str] = FairQueue(slots=32)
    gate = rate_gate("acme", "openai")
    first = q.offer("acme", "agent", "first", cap=16, gates=(gate,))
    assert q.take(0.0) is first
    q.hold(first, gate, 10.0)
    q.offer("acme", "agent", "limited", cap=16, gates=(gate,))
    free = q.offer("acme", "agent", "free", cap=16)
    assert q.take(1.0) is free


def test_a_started_entry_that_goes_back_frees_its_slot() -> None:
    q: FairQueue[str] = FairQueue(slots=1)
    e0 = q.offer("acme", "http", "e0", cap=1)
    e1 = q.offer("acme", "http", "e1", cap=1)
    assert q.take(0.0) is e0
    q.hold(e0, key_gate("acme", "k"), 5.0)
    assert q.running == 0 and q.take(0.0) is e1


# --- dropping and the bound -------------------------------------------------------------


def test_dropping_takes_out_waiting_entries_only() -> None:
    q: FairQueue[str] = FairQueue(slots=2)
    entries = offer_many(q, "acme", 5)
    running = take_all(q)
    gate = key_gate("acme", "k")
    q.hold(running[1], gate, 9.0)
    dropped = q.drop(lambda payload: True)
    assert {e.payload for e in dropped} == {e.payload for e in entries} - {running[0].payload}
    assert q.waiting == 0 and q.running == 1 and list(q.entries()) == []
    assert q.why(dropped[0], 0.0) is None and q.take(0.0) is None


def test_the_waiting_set_is_bounded_in_number_and_bytes() -> None:
    q: FairQueue[str] = FairQueue(slots=1, max_waiting=3, max_waiting_bytes=1000)
    for i in range(3):
        q.offer("acme", "http", str(i), cap=1, size=10)
    assert not q.over_bound()
    q.offer("acme", "http", "3", cap=1, size=10)
    assert q.over_bound() and q.waiting == 4
    e = q.take(0.0)
    assert e is not None and not q.over_bound()
    q.offer("acme", "http", "big", cap=1, size=2000)
    assert q.over_bound()


# --- properties -------------------------------------------------------------------------

TENANTS = ["a", "b", "c"]
TYPES = ["http", "noop"]
KEYS = [None, "k1", "k2"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("offer"),
                st.sampled_from(TENANTS),
                st.sampled_from(TYPES),
                st.sampled_from(KEYS),
            ),
            st.tuples(st.just("take"), st.integers(0, 3)),
            st.tuples(st.just("finish"), st.integers(0, 50)),
            st.tuples(st.just("tick"), st.integers(1, 3)),
        ),
        max_size=120,
    ),
    st.integers(1, 6),
    st.integers(1, 3),
)
def test_random_workloads_keep_every_bound_and_every_lane_in_order(
    ops: list[tuple], slots: int, cap: int
) -> None:
    """Entries whose key gate is full are held; the runner admits an entry once its key has
    a free slot of ``cap``. Whatever happens: no lane runs more than its cap, the process no
    more than its slots, no key more than its limit, and entries without a key start in
    offer order within their lane."""
    q: FairQueue[dict] = FairQueue(slots=slots)
    now = 0.0
    running: list[Entry[dict]] = []
    holding: Counter[str] = Counter()  # key -> entries admitted holding it
    started_order: dict[tuple[str, str], list[int]] = {}
    limit = 2

    def start(e: Entry[dict]) -> None:
        key = e.payload["key"]
        if key is not None:
            gate = key_gate(e.tenant, key)
            if q.learned(e, gate, now) is not Probe.OPEN:
                return
            if holding[key] >= limit:
                q.hold(e, gate, now + 1.0, "full")
                return
            holding[key] += 1
            e.payload["holds"] = True
        q.admitted(e)
        running.append(e)
        if key is None:
            started_order.setdefault(e.lane, []).append(e.seq)

    for op in ops:
        if op[0] == "offer":
            _, tenant, node_type, key = op
            q.offer(tenant, node_type, {"key": key, "holds": False}, cap=cap)
        elif op[0] == "take":
            for _ in range(op[1] + 1):
                e = q.take(now)
                if e is None:
                    break
                start(e)
        elif op[0] == "finish" and running:
            e = running.pop(op[1] % len(running))
            if e.payload["holds"]:
                holding[e.payload["key"]] -= 1
                q.open(key_gate(e.tenant, e.payload["key"]), now)
            q.finished(e)
        elif op[0] == "tick":
            now += op[1]
        assert q.running == len(running) <= slots
        per_lane = Counter(e.lane for e in running)
        assert all(n <= cap for n in per_lane.values())
        assert all(n <= limit for n in holding.values())
        assert q.waiting == sum(1 for _ in q.entries())
    for seqs in started_order.values():
        assert seqs == sorted(seqs)
