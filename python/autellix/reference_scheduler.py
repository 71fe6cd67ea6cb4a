"""A pure-Python scheduler with exactly the semantics of `autellix_core.Scheduler`.

It exists for two reasons: the differential tests run random operation sequences through both
and demand identical decisions, and the latency bench measures what the Rust core buys. It uses
the same algorithms (heaps with lazy deletion, a FIFO of idle programs) and the same floating-point
expressions in the same order, so results agree bit for bit. It is not meant for production.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from autellix_core import (
    CallStateError,
    ConfigError,
    DuplicateCallError,
    InvalidArgumentError,
    UnknownCallError,
    UnknownParentError,
    UnknownProgramError,
)

from autellix.contract import CORE_POLICIES

POLICIES = CORE_POLICIES
DEFAULT_QUEUE_BOUNDARIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
DEFAULT_STARVATION_RATIO = 4.0
DEFAULT_STALE_AFTER = 900.0
WAITING, RUNNING = "waiting", "running"


def default_quanta(boundaries: Sequence[float]) -> list[float]:
    """Each queue's quantum is the width of its range; the last repeats the one before."""
    quanta, lower = [], 0.0
    for upper in boundaries:
        quanta.append(upper - lower)
        lower = upper
    quanta.append(quanta[-1] if quanta else math.inf)
    return quanta


@dataclass
class Decision:
    admit: list[int] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)


@dataclass
class _Program:
    attained_service: float = 0.0
    critical_path: float = 0.0
    waiting_time: float = 0.0
    starvation_wait: float = 0.0  # W_p: waiting since one of its calls was last promoted
    live_calls: set[int] = field(default_factory=set)
    last_arrival: float = 0.0
    last_completion: float = 0.0
    idle_since: float = 0.0
    arrival_order: int = 0
    finished_paths: dict[int, float] = field(default_factory=dict)
    finished_calls: int = 0
    hint: tuple[int, int] | None = None  # (calls to come, arrivals when the client said so)

    def arrivals(self) -> int:
        return self.finished_calls + len(self.live_calls)

    def calls_to_come(self) -> int | None:
        if self.hint is None:
            return None
        calls, arrivals = self.hint
        return max(0, calls - max(0, self.arrivals() - arrivals))


@dataclass
class _Call:
    program: int
    queue: int
    priority: float
    order: int
    program_order: int = 0
    promoted: bool = False
    state: str = WAITING
    service: float = 0.0
    waiting_time: float = 0.0
    ticket: int = 0
    waiting_since: float = 0.0
    quantum_used: float = 0.0
    starvation_wait: float = 0.0
    starvation_service: float = 0.0
    # While running: the batch service when the three amounts above were last brought up to
    # date, and the batch service at which its quantum ends (the core's `Call::quantum_end`).
    credited_at: float = 0.0
    quantum_end: float = math.inf

    def rank(self) -> tuple[int, int, int]:
        """Queue, then place in it: smaller is more urgent."""
        return (self.queue, self.program_order, self.order)

    def catch_up(self, batch_service: float) -> None:
        owed = batch_service - self.credited_at
        self.service += owed
        self.starvation_service += owed
        self.quantum_used += owed
        self.credited_at = batch_service


class ReferenceScheduler:
    def __init__(
        self,
        policy: str = "plas",
        queue_boundaries: Sequence[float] | None = None,
        quanta: Sequence[float] | None = None,
        starvation_ratio: float | None = None,
        stale_after: float | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"unknown policy {policy!r}")
        if policy == "fcfs" and (queue_boundaries is not None or quanta is not None):
            raise ConfigError("fcfs uses a single queue")
        if policy == "fcfs":
            boundaries, quanta = [], [math.inf]
        else:
            boundaries = list(DEFAULT_QUEUE_BOUNDARIES if queue_boundaries is None else queue_boundaries)
            quanta = default_quanta(boundaries) if quanta is None else list(quanta)
        if any(not math.isfinite(b) or b <= 0 for b in boundaries) or any(
            a >= b for a, b in zip(boundaries, boundaries[1:])
        ):
            raise ConfigError("queue_boundaries must be positive and strictly increasing")
        if len(quanta) != len(boundaries) + 1 or any(not q > 0 for q in quanta):
            raise ConfigError("quanta needs one positive value per queue")
        beta = DEFAULT_STARVATION_RATIO if starvation_ratio is None else starvation_ratio
        stale = DEFAULT_STALE_AFTER if stale_after is None else stale_after
        if not beta > 0 or not stale > 0:
            raise ConfigError("starvation_ratio and stale_after must be positive")
        self.policy, self.queue_boundaries, self.quanta = policy, boundaries, quanta
        self.starvation_ratio, self.stale_after = beta, stale
        self._calls: dict[int, _Call] = {}
        self._programs: dict[int, _Program] = {}
        self._went_idle: deque[tuple[float, int]] = deque()
        # (queue, program order, order, ticket, call); promoted calls wait in their own lane
        self._waiting: list[tuple[int, int, int, int, int]] = []
        self._head_of_line: list[tuple[int, int, int, int, int]] = []
        self._deadlines: list[tuple[float, int, int]] = []  # (at, ticket, call)
        self._waiting_per_queue = [0] * len(quanta)
        self._running: dict[int, None] = {}  # insertion-ordered set
        # What whole-batch credits gave every running call, summed; a call takes its share when it
        # leaves the batch or is credited alone (the core's `Scheduler::batch_service`).
        self._batch_service = 0.0
        self._next_order = self._next_ticket = self._program_arrivals = 0
        # Clients' counts of calls left (set_calls_left): whether any was given, and every finished
        # call's service and number, for the mean call of a program with none of its own finished.
        self._hinted = False
        self._finished_service, self._finished_count = 0.0, 0
        self._last_now = -math.inf
        self._stats = dict.fromkeys(
            ("added", "admitted", "preemptions", "promotions", "demotions", "requeues", "finished", "dropped_programs"),
            0,
        )
        self._decision = Decision()

    # ----- queries

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: int) -> bool:
        return call_id in self._calls

    @property
    def num_queues(self) -> int:
        return len(self.quanta)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._calls) - len(self._running)

    @property
    def num_programs(self) -> int:
        return len(self._programs)

    def running(self) -> list[int]:
        return list(self._running)

    def queue_lengths(self) -> list[int]:
        return list(self._waiting_per_queue)

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def queue_of(self, call_id: int) -> int:
        return self._call(call_id).queue

    def call_info(self, call_id: int) -> dict:
        c = self._call(call_id)
        return {
            "program_id": c.program,
            "state": c.state,
            "queue": c.queue,
            "priority": c.priority,
            "service": self._service_of(c),
            "waiting_time": c.waiting_time,
        }

    def program_info(self, program_id: int) -> dict:
        p = self._programs.get(program_id)
        if p is None:
            raise UnknownProgramError(f"unknown program {program_id}")
        return {
            "attained_service": p.attained_service,
            "critical_path": p.critical_path,
            "waiting_time": p.waiting_time,
            "active_calls": len(p.live_calls),
            "calls_to_come": p.calls_to_come(),
            "calls": sorted(p.live_calls),
            "last_arrival": p.last_arrival,
            "last_completion": p.last_completion,
        }

    # ----- operations (validate everything, then apply)

    def start_program(self, program_id: int, now: float) -> None:
        self._check_now(now)
        self._last_now = now
        self._ensure_program(program_id, now)

    def set_calls_left(self, program_id: int, calls_left: int, now: float) -> None:
        if not 0 <= calls_left < 1 << 32:
            raise OverflowError("out of range integral type conversion attempted")
        self._check_now(now)
        if calls_left == 0:
            raise InvalidArgumentError(
                f"calls_left of program {program_id} must be at least 1: the calls it will still make, counting its next one"
            )
        self._last_now = now
        program = self._ensure_program(program_id, now)
        program.hint = (calls_left, program.arrivals())
        self._hinted = True

    def add_call(self, call_id: int, program_id: int, now: float, parents: Sequence[int] = ()) -> None:
        self.add_calls([call_id], [program_id], now, [parents])

    def add_calls(self, call_ids, program_ids, now, parents=None) -> None:
        arrivals = self._zip_arrivals(call_ids, program_ids, parents)
        self._check_now(now)
        self._check_new(arrivals)
        self._last_now = now
        for arrival in arrivals:
            self._insert(*arrival, now)

    def record_service(self, call_ids: Sequence[int], seconds: float, now: float) -> None:
        self._check_now(now)
        self._check_seconds(seconds)
        self._check_listed(call_ids, RUNNING)
        self._last_now = now
        self._credit(call_ids, seconds)

    def record_service_each(self, call_ids: Sequence[int], amounts: Sequence[float], now: float) -> None:
        self._check_now(now)
        if len(call_ids) != len(amounts):
            raise InvalidArgumentError(
                f"call ids and amounts must be parallel lists: got {len(call_ids)} call ids, {len(amounts)} amounts"
            )
        for seconds in amounts:
            self._check_seconds(seconds)
        self._check_listed(call_ids, RUNNING)
        self._last_now = now
        for call_id, seconds in zip(call_ids, amounts, strict=True):
            self._credit_alone(call_id, seconds)

    def requeue(self, call_ids: Sequence[int], now: float) -> None:
        self._check_now(now)
        self._check_listed(call_ids, RUNNING)
        self._last_now = now
        for call_id in call_ids:
            self._leave_batch(call_id)
            self._enqueue(call_id, now)
            self._stats["requeues"] += 1

    def finish_call(self, call_id: int, now: float) -> None:
        self.finish_calls([call_id], now)

    def finish_calls(self, call_ids: Sequence[int], now: float) -> None:
        self._check_now(now)
        self._check_listed(call_ids, None)
        self._last_now = now
        for call_id in call_ids:
            self._finish(call_id, now)

    def end_program(self, program_id: int) -> list[int]:
        program = self._programs.pop(program_id, None)
        if program is None:
            raise UnknownProgramError(f"unknown program {program_id}")
        for call_id in program.live_calls:
            if self._calls[call_id].state == RUNNING:
                self._leave_batch(call_id)
            else:
                self._waiting_per_queue[self._calls[call_id].queue] -= 1
            del self._calls[call_id]
        return sorted(program.live_calls)

    def schedule(self, now: float, capacity: int, protected: Sequence[int] = ()) -> Decision:
        self._check_now(now)
        self._check_protected(protected)
        self._last_now = now
        return self._decide(now, capacity, protected)

    def step(
        self,
        now,
        capacity,
        ran=(),
        ran_seconds=0.0,
        finished=(),
        new_calls=(),
        new_programs=(),
        new_parents=None,
        ran_all=False,
        protected=(),
    ) -> Decision:
        arrivals = self._zip_arrivals(new_calls, new_programs, new_parents)
        self._check_now(now)
        self._check_seconds(ran_seconds)
        if ran_all and ran:
            raise InvalidArgumentError("pass either ran or ran_all, not both")
        self._check_listed(ran, RUNNING)
        self._check_listed(finished, None)
        self._check_new(arrivals)
        self._check_protected(protected, finished, [arrival[0] for arrival in arrivals])
        self._last_now = now
        self._credit(list(self._running) if ran_all else ran, ran_seconds)
        for call_id in finished:
            self._finish(call_id, now)
        for arrival in arrivals:
            self._insert(*arrival, now)
        return self._decide(now, capacity, protected)

    # ----- validation

    def _call(self, call_id: int) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCallError(f"unknown call {call_id}")
        return call

    def _check_now(self, now: float) -> None:
        if not math.isfinite(now) or now < self._last_now:
            raise InvalidArgumentError(f"bad time {now}")

    @staticmethod
    def _check_seconds(seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise InvalidArgumentError(f"bad seconds {seconds}")

    def _check_listed(self, call_ids: Sequence[int], state: str | None) -> None:
        seen = set()
        for call_id in call_ids:
            call = self._call(call_id)
            if state is not None and call.state != state:
                raise CallStateError(f"call {call_id} is not {state}")
            if call_id in seen:
                raise DuplicateCallError(f"call {call_id} listed twice")
            seen.add(call_id)

    def _check_protected(
        self, protected: Sequence[int], finishing: Sequence[int] = (), arriving: Sequence[int] = ()
    ) -> None:
        """Protected calls must be running as the decision starts, after the step's own changes:
        finishing calls are gone by then and arriving ones wait."""
        seen = set()
        for call_id in protected:
            if call_id in arriving:
                raise CallStateError(f"call {call_id} is not running")
            if call_id in finishing:
                raise UnknownCallError(f"unknown call {call_id}")
            if self._call(call_id).state != RUNNING:
                raise CallStateError(f"call {call_id} is not running")
            if call_id in seen:
                raise DuplicateCallError(f"call {call_id} listed twice")
            seen.add(call_id)

    @staticmethod
    def _zip_arrivals(call_ids, program_ids, parents):
        parents = list(parents or [])
        if len(call_ids) != len(program_ids) or (parents and len(parents) != len(call_ids)):
            raise InvalidArgumentError("call ids, program ids and parents must be parallel lists")
        return [(c, p, tuple(parents[i]) if parents else ()) for i, (c, p) in enumerate(zip(call_ids, program_ids))]

    def _check_new(self, arrivals) -> None:
        seen = set()
        for call_id, program_id, parents in arrivals:
            if call_id in self._calls or call_id in seen:
                raise DuplicateCallError(f"call {call_id} is already live")
            seen.add(call_id)
            if self.policy == "atlas":
                for parent in parents:
                    if self._parent_path(program_id, parent) is None:
                        raise UnknownParentError(f"parent {parent} of call {call_id} is unknown")

    # ----- state changes

    def _ensure_program(self, program_id: int, now: float) -> _Program:
        program = self._programs.get(program_id)
        if program is None:
            self._program_arrivals += 1
            program = self._programs[program_id] = _Program(
                last_arrival=now, idle_since=now, arrival_order=self._program_arrivals
            )
            self._went_idle.append((now, program_id))
        return program

    def _parent_path(self, program_id: int, parent: int) -> float | None:
        call = self._calls.get(parent)
        if call is not None and call.program == program_id:
            return call.priority + self._service_of(call)
        program = self._programs.get(program_id)
        return None if program is None else program.finished_paths.get(parent)

    def _arrival_priority(self, program_id: int, parents: tuple[int, ...]) -> float:
        program = self._programs.get(program_id)
        if self.policy == "plas":
            return program.attained_service if program else 0.0
        if self.policy == "atlas":
            if not parents:
                return program.critical_path if program else 0.0
            return max([0.0] + [self._parent_path(program_id, p) for p in parents])
        return 0.0

    def _insert(self, call_id: int, program_id: int, parents: tuple[int, ...], now: float) -> None:
        priority = self._arrival_priority(program_id, parents)
        program = self._ensure_program(program_id, now)
        program.live_calls.add(call_id)
        program.last_arrival = now
        self._next_order += 1
        rank = priority
        if self._hinted and self.policy in ("plas", "atlas"):
            rank = self._work_left(program, priority)
        queue = bisect.bisect_right(self.queue_boundaries, rank)
        program_order = program.arrival_order if self.policy in ("plas", "atlas") else 0
        self._calls[call_id] = _Call(program_id, queue, priority, self._next_order, program_order)
        self._enqueue(call_id, now)
        self._stats["added"] += 1

    def _work_left(self, program: _Program, otherwise: float) -> float:
        """A hinted program's arriving call and those to come, times its mean call."""
        to_come = program.calls_to_come()
        if to_come is None:
            return otherwise
        if program.finished_calls:
            mean_call = program.attained_service / program.finished_calls
        elif self._finished_count:
            mean_call = self._finished_service / self._finished_count
        else:
            return otherwise
        return (to_come + 1) * mean_call

    def _enqueue(self, call_id: int, now: float) -> None:
        self._next_ticket += 1
        call = self._calls[call_id]
        call.state, call.ticket, call.waiting_since = WAITING, self._next_ticket, now
        lane = self._head_of_line if call.promoted else self._waiting
        heapq.heappush(lane, (*call.rank(), call.ticket, call_id))
        self._waiting_per_queue[call.queue] += 1
        beta = self.starvation_ratio
        if call.queue == 0 or math.isinf(beta):
            return
        program = self._programs.get(call.program)
        if program is not None and self.policy in ("plas", "atlas"):
            # A hinted program waits against its told size (attained + work left), as it is ranked.
            told_left = self._work_left(program, 0.0) if self._hinted else 0.0
            program_wait, program_service = program.starvation_wait, program.attained_service + told_left
        else:
            program_wait, program_service = 0.0, 0.0
        fair_wait = max(self.num_waiting / max(self.num_running, 1), 1.0)  # waiting per running call, at least 1
        at = now + beta * fair_wait * (program_service + call.starvation_service) - (program_wait + call.starvation_wait)
        heapq.heappush(self._deadlines, (at, call.ticket, call_id))

    def _end_waiting(self, call_id: int, now: float) -> None:
        call = self._calls[call_id]
        waited = now - call.waiting_since
        call.waiting_time += waited
        call.starvation_wait += waited
        self._waiting_per_queue[call.queue] -= 1
        program = self._programs.get(call.program)
        if program is not None:
            program.waiting_time += waited
            program.starvation_wait += waited

    def _service_of(self, call: _Call) -> float:
        """A call's service, with its share of the batch's if it runs."""
        if call.state != RUNNING:
            return call.service
        return call.service + (self._batch_service - call.credited_at)

    def _credit(self, call_ids: Sequence[int], seconds: float) -> None:
        """The whole batch in batch order is one whole-batch credit; else each call alone."""
        if list(call_ids) == list(self._running):
            self._batch_service += seconds
            for call_id in self._running:  # the last queue's quantum never ends (inf)
                call = self._calls[call_id]
                if self._batch_service >= call.quantum_end:
                    call.catch_up(self._batch_service)
                    self._demote(call)
                    self._start_quantum(call)
        else:
            for call_id in call_ids:
                self._credit_alone(call_id, seconds)

    def _credit_alone(self, call_id: int, seconds: float) -> None:
        call = self._calls[call_id]
        call.catch_up(self._batch_service)
        call.service += seconds
        call.starvation_service += seconds
        call.quantum_used += seconds
        if call.queue < len(self.quanta) - 1 and call.quantum_used >= self.quanta[call.queue]:
            self._demote(call)
        self._start_quantum(call)

    def _demote(self, call: _Call) -> None:
        call.queue += 1
        call.quantum_used = 0.0
        self._next_order += 1
        call.order = self._next_order
        self._stats["demotions"] += 1

    def _start_quantum(self, call: _Call) -> None:
        """Where a running call's quantum ends on the batch service (never, in the last queue)."""
        call.quantum_end = math.inf
        if call.queue < len(self.quanta) - 1:
            call.quantum_end = call.credited_at + (self.quanta[call.queue] - call.quantum_used)

    def _join_batch(self, call_id: int) -> None:
        call = self._calls[call_id]
        call.state, call.credited_at = RUNNING, self._batch_service
        self._running[call_id] = None
        self._start_quantum(call)

    def _leave_batch(self, call_id: int) -> None:
        self._calls[call_id].catch_up(self._batch_service)
        del self._running[call_id]
        if not self._running:
            self._batch_service = 0.0

    def _finish(self, call_id: int, now: float) -> None:
        call = self._calls[call_id]
        if call.state == RUNNING:
            self._leave_batch(call_id)
        else:
            self._end_waiting(call_id, now)
        del self._calls[call_id]
        path = call.priority + call.service
        program = self._programs.get(call.program)
        self._finished_service += call.service
        self._finished_count += 1
        if program is not None:
            program.attained_service += call.service
            program.finished_calls += 1
            program.critical_path = max(program.critical_path, path)
            program.last_completion = now
            if self.policy == "atlas":
                program.finished_paths[call_id] = path
            program.live_calls.discard(call_id)
            if not program.live_calls:
                program.idle_since = now
                self._went_idle.append((now, call.program))
        self._stats["finished"] += 1

    def _is_current(self, call_id: int, ticket: int) -> bool:
        call = self._calls.get(call_id)
        return call is not None and call.state == WAITING and call.ticket == ticket

    def _peek_lane(self, lane: list[tuple[int, int, int, int, int]]) -> tuple[int, int, int, int, int] | None:
        while lane:
            top = lane[0]
            if self._is_current(top[4], top[3]):
                return top
            heapq.heappop(lane)
        return None

    def _peek_waiting(self, head_of_line: bool = True) -> tuple[int, int, int, int, int] | None:
        if head_of_line:
            promoted = self._peek_lane(self._head_of_line)
            if promoted is not None:
                return promoted
        return self._peek_lane(self._waiting)

    def _least_urgent_running(self, protected: Container[int] = ()) -> int | None:
        candidates = [c for c in self._running if c not in protected]
        if not candidates:
            return None
        return max(candidates, key=lambda c: self._calls[c].rank())

    def _admit(self, call_id: int, now: float) -> None:
        self._end_waiting(call_id, now)
        self._calls[call_id].promoted = False
        self._join_batch(call_id)
        self._decision.admit.append(call_id)
        self._stats["admitted"] += 1

    def _preempt(self, call_id: int, now: float) -> None:
        self._leave_batch(call_id)
        self._enqueue(call_id, now)
        self._decision.preempt.append(call_id)
        self._stats["preemptions"] += 1

    def _promote_starved(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, ticket, call_id = heapq.heappop(self._deadlines)
            if not self._is_current(call_id, ticket) or self._calls[call_id].queue == 0:
                continue
            self._end_waiting(call_id, now)
            self._next_order += 1
            call = self._calls[call_id]
            call.queue, call.order, call.promoted = 0, self._next_order, True
            call.quantum_used = call.starvation_wait = call.starvation_service = 0.0
            if call.program in self._programs:  # the program's W_p restarts with the call's
                self._programs[call.program].starvation_wait = 0.0
            self._enqueue(call_id, now)
            self._decision.promoted.append(call_id)
            self._stats["promotions"] += 1

    def _drop_stale(self, now: float) -> None:
        while self._went_idle and self._went_idle[0][0] + self.stale_after <= now:
            since, program_id = self._went_idle.popleft()
            program = self._programs.get(program_id)
            if program is not None and not program.live_calls and program.idle_since == since:
                del self._programs[program_id]
                self._stats["dropped_programs"] += 1

    def _decide(self, now: float, capacity: int, protected: Sequence[int] = ()) -> Decision:
        self._decision = Decision()
        self._promote_starved(now)
        self._drop_stale(now)
        while len(self._running) > capacity:
            self._preempt(self._least_urgent_running(), now)
        while len(self._running) < capacity:
            best = self._peek_waiting()
            if best is None:
                break
            self._admit(best[4], now)
        # Promoted calls wait for a free slot: they never preempt (see the Rust core). Protected
        # calls are never swapped out; capacity above still stops them.
        guarded = set(protected)
        while True:
            best, victim = self._peek_waiting(head_of_line=False), self._least_urgent_running(guarded)
            if best is None or victim is None or best[0] >= self._calls[victim].queue:
                break
            self._preempt(victim, now)
            self._admit(best[4], now)
        return self._decision
