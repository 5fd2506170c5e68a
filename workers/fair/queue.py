"""The order in which one worker process starts the tasks it has taken: pure, no I/O.

Tasks wait here between the moment the consumer takes them from Kafka and the moment they
start, so that a tenant at its limit does not hold up the tenants behind it in the same
partition. The rules:

- **Slots.** At most ``slots`` entries run at once in the process (the process's pool), and
  at most ``cap`` of one tenant's entries of one node type (its *lane*; the tenant's
  ``execution.concurrency``). An entry that cannot start waits in its lane.
- **Round robin.** Each start goes to the next tenant in turn that has an entry able to
  start, and within a tenant to its next lane in turn: a tenant with 500 waiting entries
  gets no more turns than one with a single entry.
- **Order.** Within a lane, entries start in the order they were offered (topic order).
- **Gates.** An entry may depend on gates shared with other processes: its concurrency key,
  its rate limit. The runner finds out whether a gate lets it through (a lease, a token in
  PostgreSQL); while it does, the gate is *being probed* and no other entry of that gate
  starts. A gate that refused one is *closed* until a time (a rate limit says when it has a
  token again; a key is tried again after a while, or at once when this process frees one of
  its slots). Entries of a closed or probed gate are *parked* on it, in offer order, and stop
  holding up their lane: the next entry of the lane that needs no closed gate starts. When
  the gate opens, its earliest parked entry is the first of them to start again.

The runner reports what became of a started entry: ``learned`` (its key was rendered: one
more gate), ``admitted`` (every gate let it through: it runs), ``hold`` (a gate refused:
back to waiting, its slot freed), ``finished``. ``drop`` takes waiting entries out (their
partition went to another process: they will run there).

Time is passed in (``now``, in seconds of any monotonic clock), so tests drive it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Literal, TypeVar

from workers.fair import reasons

T = TypeVar("T")

GateKind = Literal["key", "rate"]
# (kind, tenant, name): a concurrency key's rendered value, or a rate limit's name.
Gate = tuple[GateKind, str, str]
LaneKey = tuple[str, str]  # (tenant, node type)

WAITING_FOR: dict[GateKind, str] = {"key": "concurrency_key", "rate": "rate_limit"}


def key_gate(tenant: str, key: str) -> Gate:
    return ("key", tenant, key)


def rate_gate(tenant: str, name: str) -> Gate:
    return ("rate", tenant, name)


@dataclass(eq=False)
class Entry(Generic[T]):
    """One task in this process, from the moment it is offered until it finishes."""

    seq: int
    tenant: str
    node_type: str
    payload: T
    size: int = 0
    gates: list[Gate] = field(default_factory=list)  # known so far
    running: bool = False
    gone: bool = False  # finished, or dropped
    parked_on: Gate | None = None
    announced: set[str] = field(default_factory=set)  # waits already told (workers.fair)

    @property
    def lane(self) -> LaneKey:
        return (self.tenant, self.node_type)

    def __lt__(self, other: Entry[T]) -> bool:
        return self.seq < other.seq


class Probe(Enum):
    """What a gate says to an entry that learned it: go and try it, it is closed (the entry
    parks), or another entry is trying it right now (the entry parks until that ends)."""

    OPEN = "open"
    CLOSED = "closed"
    BUSY = "busy"


@dataclass(frozen=True)
class Wait:
    """Why a waiting entry waits: ``waiting_for`` as ``run.node_queued`` names it, or
    ``worker_slots`` (the process is full: not a limit of the tenant's, so not announced)."""

    waiting_for: str
    reason: str


@dataclass
class _GateState:
    until: float = float("-inf")
    prober: object | None = None  # the started entry finding out whether it passes
    reason: str | None = None  # why it refused (keys; a rate limit's is computed)
    lanes: set[LaneKey] = field(default_factory=set)  # lanes with entries parked on it

    def open_at(self, now: float) -> bool:
        return self.prober is None and self.until <= now


@dataclass(eq=False)
class _Lane(Generic[T]):
    tenant: str
    node_type: str
    cap: int | None
    running: int = 0
    fifo: deque[Entry[T]] = field(default_factory=deque)
    parked: dict[Gate, list[Entry[T]]] = field(default_factory=dict)
    ready: set[Gate] = field(default_factory=set)  # parked gates that may have opened
    waiting: int = 0

    def full(self) -> bool:
        return self.cap is not None and self.running >= self.cap


class FairQueue(Generic[T]):
    def __init__(
        self, slots: int, *, max_waiting: int = 10_000, max_waiting_bytes: int = 256 << 20
    ) -> None:
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        self.slots = slots
        self.max_waiting = max_waiting
        self.max_waiting_bytes = max_waiting_bytes
        self.running = 0
        self.waiting = 0
        self.waiting_bytes = 0
        self._seq = itertools.count()
        self._lanes: dict[LaneKey, _Lane[T]] = {}
        self._turns: deque[str] = deque()  # tenants with waiting entries, in turn
        self._tenant_lanes: dict[str, deque[_Lane[T]]] = {}
        self._gates: dict[Gate, _GateState] = {}
        self._timers: list[tuple[float, int, Gate]] = []
        self._newly_parked: list[Entry[T]] = []

    # --- offering and taking -----------------------------------------------------------

    def offer(
        self,
        tenant: str,
        node_type: str,
        payload: T,
        *,
        cap: int | None,
        gates: tuple[Gate, ...] = (),
        size: int = 0,
    ) -> Entry[T]:
        """Add a task, last in its lane; ``cap`` is the tenant's current bound for the
        type (None: none of its own), ``gates`` those known before it starts."""
        entry = Entry(next(self._seq), tenant, node_type, payload, size, list(gates))
        lane = self._lane(tenant, node_type)
        lane.cap = cap
        lane.fifo.append(entry)
        self._waiting_in(lane, entry, +1)
        return entry

    def set_cap(self, tenant: str, node_type: str, cap: int | None) -> None:
        lane = self._lanes.get((tenant, node_type))
        if lane is not None:
            lane.cap = cap

    def take(self, now: float) -> Entry[T] | None:
        """The next entry to start, round robin over tenants (module doc), or None. It now
        holds a slot, and every gate it knows is being probed by it."""
        self._fire_timers(now)
        if self.running >= self.slots:
            return None
        for _ in range(len(self._turns)):
            tenant = self._turns[0]
            self._turns.rotate(-1)  # whatever happens, the next take starts after it
            lanes = self._tenant_lanes[tenant]
            for _ in range(len(lanes)):
                lane = lanes[0]
                lanes.rotate(-1)
                entry = self._next_of(lane, now)
                if entry is not None:
                    self._start(lane, entry)
                    return entry
        return None

    # --- what the runner reports -------------------------------------------------------

    def learned(self, entry: Entry[T], gate: Gate, now: float) -> Probe:
        """``entry`` (started) found one more gate. OPEN: it probes it now. Otherwise the
        entry is back to waiting, parked on it, and its slot is free."""
        if gate not in entry.gates:
            entry.gates.append(gate)
        state = self._gate(gate)
        if state.prober is entry:
            return Probe.OPEN
        if state.open_at(now):
            state.prober = entry
            return Probe.OPEN
        verdict = Probe.BUSY if state.until <= now else Probe.CLOSED
        self._back(entry, gate)
        return verdict

    def admitted(self, entry: Entry[T]) -> None:
        """Every gate let ``entry`` through: it runs, and its gates serve the next."""
        self._end_probes(entry)

    def hold(self, entry: Entry[T], gate: Gate, until: float, reason: str | None = None) -> None:
        """``gate`` refused ``entry``: it is closed until ``until``, and the entry waits
        on it again, first among its entries that came later."""
        if gate not in entry.gates:
            entry.gates.append(gate)
        state = self._gate(gate)
        state.until = max(state.until, until)
        state.reason = reason
        heapq.heappush(self._timers, (state.until, next(self._seq), gate))
        self._back(entry, gate)
        for key in state.lanes:  # the entries parked while it was probed now have a reason
            self._newly_parked.extend(self._lanes[key].parked.get(gate, ()))

    def open(self, gate: Gate, now: float) -> None:
        """Something this process held on ``gate`` was given back: try it again now."""
        state = self._gates.get(gate)
        if state is not None:
            state.until = min(state.until, now)
            self._wake(gate)

    def finished(self, entry: Entry[T]) -> None:
        """``entry`` ended (or was given up while it ran): its slot is free."""
        if not entry.running:
            return
        entry.gone = True
        self._end_probes(entry)
        self._release(entry)

    def drop(self, which: Callable[[T], bool]) -> list[Entry[T]]:
        """Take out every waiting entry whose payload ``which`` picks; running ones stay."""
        dropped: list[Entry[T]] = []
        for lane in list(self._lanes.values()):
            kept = deque(e for e in lane.fifo if not which(e.payload))
            dropped.extend(e for e in lane.fifo if which(e.payload))
            lane.fifo = kept
            for gate, entries in list(lane.parked.items()):
                gone = [e for e in entries if which(e.payload)]
                if gone:
                    dropped.extend(gone)
                    lane.parked[gate] = [e for e in entries if not which(e.payload)]
                    self._unpark_if_empty(lane, gate)
        for entry in dropped:
            entry.parked_on, entry.gone = None, True
            self._waiting_in(self._lanes[entry.lane], entry, -1)
        return dropped

    # --- what the dispatcher asks ------------------------------------------------------

    def over_bound(self) -> bool:
        """Whether the waiting set is past its bound: the consumer pauses fetching."""
        return self.waiting > self.max_waiting or self.waiting_bytes > self.max_waiting_bytes

    def next_wake(self) -> float | None:
        """The earliest moment a closed gate opens (None: no gate is closed)."""
        while self._timers and not self._gate_has_waiters(self._timers[0][2]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def why(self, entry: Entry[T], now: float) -> Wait | None:
        """Why ``entry`` waits (None if it does not, or waits for nothing to tell)."""
        if entry.running or entry.gone:
            return None
        if entry.parked_on is not None:
            return self._gate_wait(entry.parked_on, now)
        lane = self._lanes.get(entry.lane)
        if lane is not None and lane.full():
            reason = reasons.tenant_slots(entry.tenant, entry.node_type, lane.running, lane.cap)
            return Wait("tenant_slots", reason)
        for gate in entry.gates:
            wait = self._gate_wait(gate, now)
            if wait is not None:
                return wait
        return Wait("worker_slots", reasons.worker_slots(self.running, self.slots))

    def newly_parked(self) -> list[Entry[T]]:
        """Entries parked on a gate since the last call: their wait has a new reason."""
        out, self._newly_parked = self._newly_parked, []
        return [e for e in out if e.parked_on is not None]

    def census(self) -> dict[tuple[str, str], int]:
        """Waiting entries by (node type, what they wait for), for the metrics."""
        out: dict[tuple[str, str], int] = {}
        for lane in self._lanes.values():
            if lane.fifo:
                why = "tenant_slots" if lane.full() else "worker_slots"
                out[(lane.node_type, why)] = out.get((lane.node_type, why), 0) + len(lane.fifo)
            for gate, entries in lane.parked.items():
                why = WAITING_FOR[gate[0]]
                out[(lane.node_type, why)] = out.get((lane.node_type, why), 0) + len(entries)
        return out

    def running_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lane in self._lanes.values():
            out[lane.node_type] = out.get(lane.node_type, 0) + lane.running
        return out

    def waiting_tenants(self) -> list[tuple[str, str]]:
        """The lanes that have entries waiting (their caps are worth refreshing)."""
        return [key for key, lane in self._lanes.items() if lane.waiting]

    def entries(self) -> Iterator[Entry[T]]:
        """Every waiting entry (tests, and dropping by a rule)."""
        for lane in self._lanes.values():
            yield from lane.fifo
            for entries in lane.parked.values():
                yield from entries

    # --- inside ------------------------------------------------------------------------

    def _lane(self, tenant: str, node_type: str) -> _Lane[T]:
        key = (tenant, node_type)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(tenant, node_type, None)
        return lane

    def _gate(self, gate: Gate) -> _GateState:
        state = self._gates.get(gate)
        if state is None:
            state = self._gates[gate] = _GateState()
        return state

    def _gate_wait(self, gate: Gate, now: float) -> Wait | None:
        state = self._gates.get(gate)
        if state is None or state.until <= now:
            return None  # open, or only being probed: no limit to tell of yet
        kind, _, name = gate
        if kind == "rate":
            return Wait("rate_limit", reasons.rate_limit(name, state.until - now))
        return Wait("concurrency_key", state.reason or reasons.key_busy(name))

    def _gate_has_waiters(self, gate: Gate) -> bool:
        state = self._gates.get(gate)
        return state is not None and bool(state.lanes)

    def _waiting_in(self, lane: _Lane[T], entry: Entry[T], sign: int) -> None:
        lane.waiting += sign
        self.waiting += sign
        self.waiting_bytes += sign * entry.size
        lanes = self._tenant_lanes.setdefault(lane.tenant, deque())
        if sign > 0 and lane.waiting == 1:
            lanes.append(lane)
            if len(lanes) == 1:
                self._turns.append(lane.tenant)
        elif sign < 0 and lane.waiting == 0:
            lanes.remove(lane)
            if not lanes:
                self._turns.remove(lane.tenant)
                del self._tenant_lanes[lane.tenant]
            if not lane.running:
                del self._lanes[(lane.tenant, lane.node_type)]

    def _closed_gate(self, entry: Entry[T], now: float) -> Gate | None:
        for gate in entry.gates:
            state = self._gates.get(gate)
            if state is not None and not state.open_at(now):
                return gate
        return None

    def _next_of(self, lane: _Lane[T], now: float) -> Entry[T] | None:
        """Take ``lane``'s next entry able to start (parking those that cannot on the way)."""
        if lane.full():
            return None
        while True:
            while lane.fifo:
                gate = self._closed_gate(lane.fifo[0], now)
                if gate is None:
                    break
                self._park(lane, lane.fifo.popleft(), gate)
            best: Entry[T] | None = lane.fifo[0] if lane.fifo else None
            for gate in list(lane.ready):
                entries = lane.parked.get(gate)
                if not entries or not self._gate(gate).open_at(now):
                    lane.ready.discard(gate)
                elif best is None or entries[0].seq < best.seq:
                    best = entries[0]
            if best is None:
                return None
            if best.parked_on is None:
                lane.fifo.popleft()
                return best
            gate = best.parked_on
            lane.parked[gate].pop(0)
            best.parked_on = None
            self._unpark_if_empty(lane, gate)
            other = self._closed_gate(best, now)
            if other is None:
                return best
            self._park(lane, best, other)  # another of its gates is closed: wait there

    def _start(self, lane: _Lane[T], entry: Entry[T]) -> None:
        entry.running = True
        lane.running += 1
        self.running += 1
        self._waiting_in(lane, entry, -1)
        for gate in entry.gates:
            self._gate(gate).prober = entry

    def _release(self, entry: Entry[T]) -> None:
        entry.running = False
        lane = self._lanes[entry.lane]
        lane.running -= 1
        self.running -= 1
        if not lane.running and not lane.waiting:
            del self._lanes[entry.lane]

    def _back(self, entry: Entry[T], gate: Gate) -> None:
        """A started entry goes back to waiting, parked on ``gate`` (parked before its
        probes end, so that the gate, closed, is not forgotten as idle)."""
        self._release(entry)
        lane = self._lane(entry.tenant, entry.node_type)
        self._waiting_in(lane, entry, +1)
        self._park(lane, entry, gate)
        self._end_probes(entry)

    def _park(self, lane: _Lane[T], entry: Entry[T], gate: Gate) -> None:
        entries = lane.parked.setdefault(gate, [])
        bisect.insort(entries, entry)
        entry.parked_on = gate
        state = self._gate(gate)
        state.lanes.add((lane.tenant, lane.node_type))
        self._newly_parked.append(entry)

    def _unpark_if_empty(self, lane: _Lane[T], gate: Gate) -> None:
        if lane.parked.get(gate):
            return
        lane.parked.pop(gate, None)
        lane.ready.discard(gate)
        state = self._gates.get(gate)
        if state is not None:
            state.lanes.discard((lane.tenant, lane.node_type))
            self._forget_if_idle(gate)

    def _end_probes(self, entry: Entry[T]) -> None:
        for gate in entry.gates:
            state = self._gates.get(gate)
            if state is not None and state.prober is entry:
                state.prober = None
                self._wake(gate)
                self._forget_if_idle(gate)

    def _forget_if_idle(self, gate: Gate) -> None:
        state = self._gates.get(gate)
        if state is not None and state.prober is None and not state.lanes:
            del self._gates[gate]

    def _wake(self, gate: Gate) -> None:
        state = self._gates.get(gate)
        if state is None:
            return
        for key in state.lanes:
            lane = self._lanes.get(key)
            if lane is not None:
                lane.ready.add(gate)

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, gate = heapq.heappop(self._timers)
            self._wake(gate)
