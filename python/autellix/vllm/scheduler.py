"""Autellix as vLLM V1's scheduler: `--scheduler-cls autellix.vllm.scheduler.AutellixScheduler`.

Each engine step crosses into the Rust core once (`autellix_core.Scheduler.step`) with what
happened since the last step (which calls ran and for how long, which finished, which arrived)
and gets back which waiting calls to admit, in order, and which running calls to preempt. vLLM's
own `schedule()` then does the rest (token budget, KV blocks, prefix cache, chunked prefill):
preempted calls are recomputed from the prefix cache, the way vLLM preempts under KV pressure.
After vLLM's `schedule()`, every call the core counts as running that vLLM does not run goes back
to the core's waiting queues with `requeue`, keeping its place, whatever the reason: no slot, token
budget or KV room to start it, a start vLLM put off (its structured-output grammar still
compiling, a KV transfer or streaming input pending), or a preemption for KV memory of vLLM's own.

The program a call belongs to (names from `autellix.contract`), in this order:
  1. `autellix_program_id` in `SamplingParams.extra_args` (over HTTP: the `vllm_xargs` body
     field), an int in [0, 2**62) chosen by the client or the Autellix front end;
  2. vLLM's own session id (`Request.session_id`: the `X-Session-ID` header, the body field
     `session_id` or `vllm_xargs.session_id`): each distinct session is one program, numbered
     from 2**62 up by this plug-in (the most recent 65,536 sessions are remembered);
  3. neither: the call is a program of its own, numbered from 2**63 up.
`autellix_thread_id` (int) is kept for tracing; `autellix_parents` lists request ids, as given to
vLLM, of earlier calls of the same program this one depends on (ATLAS).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import OrderedDict, defaultdict
from typing import TYPE_CHECKING, Any

import vllm
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from autellix.contract import (
    PARENTS_KEY,
    PROGRAM_KEY,
    SESSION_KEY,
    SESSION_PROGRAMS,
    SOLO_PROGRAMS,
    THREAD_KEY,
)
from autellix.vllm.admission_queue import AdmissionQueue
from autellix.vllm.preemption_guard import PreemptionGuard
from autellix.vllm.settings import AutellixSettings
from autellix.work_units import step_units

# A child of vLLM's logger: inside vLLM's processes our lines go out through its handler, tagged
# with the process like vLLM's own.
log = logging.getLogger("vllm.autellix")

# The scheduler interface is not public; these are the versions this file was read against.
SUPPORTED_VLLM = ((0, 32, 0), (0, 33, 0))  # [low, high)

# KV cache usage below which a preempted call's full blocks are expected to stay cached.
CACHE_ROOM = 0.9
# Finished calls stay nameable as parents for this many later calls.
PARENT_MEMORY = 1 << 16
# A session idle for this many newer sessions gets a new program id if it comes back.
SESSION_MEMORY = 1 << 16
# vLLM appends "-" and 8 random hex digits to every request id it is given
# (InputProcessor.assign_request_id); clients only know the id they gave.
_RANDOM_SUFFIX = re.compile(r"-[0-9a-f]{8}$")


def external_request_id(request_id: str) -> str:
    return _RANDOM_SUFFIX.sub("", request_id)


def check_vllm_version(version: str = vllm.__version__) -> None:
    parts = tuple(int(p) for p in version.split("+")[0].split(".")[:3] if p.isdigit())
    low, high = SUPPORTED_VLLM
    if not low <= parts < high:
        raise RuntimeError(
            f"autellix's vLLM scheduler plug-in supports vLLM >= {'.'.join(map(str, low))}, "
            f"< {'.'.join(map(str, high))}; this is vLLM {version}"
        )


check_vllm_version()


# The mixin only ever sits in front of vLLM's Scheduler; tell the type checker so.
if TYPE_CHECKING:
    _MixinBase = Scheduler
else:
    _MixinBase = object


class _AutellixMixin(_MixinBase):
    """Everything Autellix adds; mixed into vLLM's `Scheduler` and `AsyncScheduler`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self, "connector", None) is not None:
            log.warning("autellix: KV connectors are untested with this scheduler")
        self.autellix_settings = AutellixSettings.from_vllm_config(self.vllm_config)
        self.core = self.autellix_settings.make_core()
        log.info("autellix: %s scheduling with policy %s", type(self).__name__, self.autellix_settings.policy)
        # Replaces vLLM's FCFS queue, before any request exists.
        self.admission = AdmissionQueue()
        self.waiting = self.admission
        self._next_call = itertools.count(1)
        self._next_solo_program = itertools.count(SOLO_PROGRAMS)
        self._next_session_program = itertools.count(SESSION_PROGRAMS)
        self._program_of_session: OrderedDict[str, int] = OrderedDict()  # least recent first
        self._call_of: dict[str, int] = {}  # vLLM request id -> core call id
        self._request_of: dict[int, str] = {}
        self._thread_of: dict[int, Any] = {}
        # request id -> (call id, program id), also after the call finished: parents are usually
        # finished by the time their children arrive.
        self._lineage: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._core_running: set[int] = set()  # what the core counts as running
        self._forgotten: set[int] = set()  # live requests of programs ended in the core
        # What happened since the last core step, sent with the next one.
        self._new_calls: list[int] = []
        self._new_programs: list[int] = []
        self._new_parents: list[list[int]] = []
        self._finished: list[int] = []
        self._ran: list[int] = []
        self._ran_work = 0.0
        # The core's clock: engine work units (autellix.work_units), the same on any hardware,
        # and only advanced by steps this engine ran, so tests and decisions are reproducible.
        self.work_clock = 0.0
        self.guard = PreemptionGuard(enabled=self.autellix_settings.preemption_guard)
        self._batch_was_full = False
        self.autellix_stats: dict[str, float] = defaultdict(float)

    def call_id(self, request_id: str) -> int | None:
        """The core's id for a request (the id given to vLLM or vLLM's internal one)."""
        lineage = self._lineage.get(request_id)
        return lineage[0] if lineage is not None else None

    def autellix_snapshot(self, program_ids: list[int]) -> dict[str, Any]:
        """What the front end shows: the core's queues and counters, and the listed programs
        this engine knows (others are absent)."""
        self._report_pending(self.work_clock)
        programs = {}
        for program_id in program_ids:
            try:
                programs[program_id] = dict(self.core.program_info(program_id))
            except Exception:  # unknown here: it never ran on this engine, or went stale
                continue
        return {
            "policy": self.autellix_settings.policy,
            "queue_lengths": self.core.queue_lengths(),
            "num_waiting": self.core.num_waiting,
            "num_running": self.core.num_running,
            "num_programs": self.core.num_programs,
            # vLLM's own count of live requests (also while paused), which an abort lowers at
            # once; the core hears of it at the next step.
            "engine_requests": sum(self.get_request_counts()),
            "stats": dict(self.core.stats()),
            "plugin": dict(self.autellix_stats),
            "programs": programs,
        }

    def autellix_end_program(self, program_id: int) -> bool:
        """Drop an ended program from the core's table; False if this engine never saw it."""
        try:
            dropped = set(self.core.end_program(program_id))
        except Exception:
            return False
        # Its calls are gone from the core: never report them to it again (an aborted call's
        # finish may still be waiting for the next step, or its request may end later).
        self._finished = [c for c in self._finished if c not in dropped]
        self._core_running -= dropped
        self._forgotten |= dropped & set(self._request_of)
        return True

    def thread_id(self, request_id: str) -> Any:
        """The `autellix_thread_id` a live request arrived with, if any."""
        call_id = self.call_id(request_id)
        return None if call_id is None else self._thread_of.get(call_id)

    # -- arrivals and departures -------------------------------------------------------------

    def _program_id(self, given: Any, session: Any) -> int:
        """Client program ids pass through (ints below 2**62); else a vLLM session id names the
        program; else the call is a program of its own. The three ranges never meet."""
        if isinstance(given, int) and not isinstance(given, bool) and 0 <= given < SESSION_PROGRAMS:
            return given
        if given is not None:
            log.warning("autellix: ignoring program id %r (expected an int in [0, 2**62))", given)
        if isinstance(session, str) and session:
            return self._session_program(session)
        return next(self._next_solo_program)

    def _session_program(self, session: str) -> int:
        program_id = self._program_of_session.get(session)
        if program_id is not None:
            self._program_of_session.move_to_end(session)
            return program_id
        program_id = next(self._next_session_program)
        self._program_of_session[session] = program_id
        while len(self._program_of_session) > SESSION_MEMORY:
            self._program_of_session.popitem(last=False)
        # Once per program: operators (and tests of the served engine) can see sessions group.
        log.info("autellix: session %r is program %d", session, program_id)
        return program_id

    def add_request(self, request: Request) -> None:
        is_update = request.request_id in self.requests
        super().add_request(request)
        if is_update or request.request_id not in self.requests:
            return  # a streaming update of a live request, not a new call
        call_id = next(self._next_call)
        self._call_of[request.request_id] = call_id
        self._request_of[call_id] = request.request_id
        args = (request.sampling_params.extra_args if request.sampling_params else None) or {}
        session = request.session_id or args.get(SESSION_KEY)  # offline callers: extra_args
        program_id = self._program_id(args.get(PROGRAM_KEY), session)
        if THREAD_KEY in args:
            self._thread_of[call_id] = args[THREAD_KEY]
        # The core accepts only earlier calls of the same program as parents.
        parents = []
        for parent in args.get(PARENTS_KEY) or ():
            lineage = self._lineage.get(str(parent))
            if lineage is not None and lineage[1] == program_id:
                parents.append(lineage[0])
        for name in {request.request_id, external_request_id(request.request_id)}:
            self._lineage[name] = (call_id, program_id)
        while len(self._lineage) > PARENT_MEMORY:
            self._lineage.popitem(last=False)
        self._new_calls.append(call_id)
        self._new_programs.append(program_id)
        self._new_parents.append(parents)

    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        result = super()._free_request(request, delay_free_blocks)
        call_id = self._call_of.pop(request.request_id, None)
        if call_id is not None:
            self._request_of.pop(call_id, None)
            self._thread_of.pop(call_id, None)
            if call_id in self._new_calls:  # finished before the core ever saw it
                i = self._new_calls.index(call_id)
                del self._new_calls[i], self._new_programs[i], self._new_parents[i]
            elif call_id in self._forgotten:
                self._forgotten.discard(call_id)
            else:
                self._finished.append(call_id)
        return result

    # -- each step ---------------------------------------------------------------------------

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        now = self.work_clock
        started = time.perf_counter()
        capacity = max(self.max_num_active_reqs - self.num_waiting_for_streaming_input, 0)
        self.guard.observe_completions(len(self._finished), now, self._batch_was_full)
        decision = self._core_step(now, capacity, self._protected())
        self._core_running.difference_update(self._finished)
        self._core_running.difference_update(decision.preempt)
        self._core_running.update(decision.admit)
        self._ran, self._ran_work = [], 0.0
        self._finished, self._new_calls, self._new_programs, self._new_parents = [], [], [], []

        self._preempt_for_priority(decision.preempt)
        request_ids = (self._request_of.get(c) for c in decision.admit)
        self.admission.set_admissions([self.requests[r] for r in request_ids if r in self.requests])
        self.autellix_stats["core_seconds"] += time.perf_counter() - started

        output = super().schedule(throttle_prefills)

        self.admission.clear_admissions()
        self._requeue_not_running()
        self._batch_was_full = len(self.running) >= capacity
        self.autellix_stats["steps"] += 1
        return output

    def _requeue_not_running(self) -> None:
        """Hand back to the core every call it counts as running that vLLM does not run. Checked
        on the requests themselves, not on what the admission queue saw: vLLM pops a call whose
        start it puts off (grammar still compiling, KV transfer or streaming input pending) and
        prepends it to the queue again, so the call looks taken; left counted as running, the
        core would never admit it again and it would wait forever."""
        back = sorted(c for c in self._core_running if not self._runs_in_vllm(c))
        if back:
            self.core.requeue(back, self.work_clock)
            self._core_running.difference_update(back)
            self.autellix_stats["requeued"] += len(back)

    def _runs_in_vllm(self, call_id: int) -> bool:
        request = self.requests.get(self._request_of.get(call_id, ""))
        # A request gone from vLLM has finished: the core hears so at the next step.
        return request is None or request.status == RequestStatus.RUNNING

    def _report_pending(self, now: float) -> None:
        """Tell the core at once what it would hear at the next step (service, finishes): an
        idle engine has no next step, and would show its last calls as running forever."""
        ran = [c for c in self._ran if c in self._core_running]
        if ran:
            _attempt("record_service", self.core.record_service, ran, self._ran_work, now)
        for call_id in self._finished:
            _attempt("finish_call", self.core.finish_call, call_id, now)
        self._core_running.difference_update(self._finished)
        self._ran, self._ran_work, self._finished = [], 0.0, []

    def _protected(self) -> list[int]:
        """Running calls whose recompute would cost more than waiting for a free slot (see
        preemption_guard). Their full KV blocks survive a preemption only in the prefix cache,
        and only while the cache has room to spare."""
        finished = set(self._finished)
        running = [
            (call_id, request.num_computed_tokens)
            for request in self.running
            if (call_id := self._call_of.get(request.request_id)) in self._core_running and call_id not in finished
        ]
        cached = self.cache_config.enable_prefix_caching and self.kv_cache_manager.usage < CACHE_ROOM
        protected = self.guard.protected(running, self.block_size, cached)
        self.autellix_stats["protected_call_steps"] += len(protected)
        return protected

    def _core_step(self, now: float, capacity: int, protected: list[int]):  # -> autellix_core.Decision
        # With async scheduling a call can have run in a batch and been preempted or requeued
        # since; only calls the core still counts as running can be credited.
        ran = [c for c in self._ran if c in self._core_running]
        try:
            return self.core.step(
                now,
                capacity,
                ran=ran,
                ran_seconds=self._ran_work,
                finished=self._finished,
                new_calls=self._new_calls,
                new_programs=self._new_programs,
                new_parents=self._new_parents if any(self._new_parents) else None,
                protected=protected,
            )
        except Exception:  # the core validates first: nothing changed, so redo it piece by piece
            log.exception("autellix: core step rejected its batch; applying it call by call")
            self.autellix_stats["rejected_batches"] += 1
        return self._core_step_piecewise(now, capacity, ran)

    def _core_step_piecewise(self, now: float, capacity: int, ran: list[int]):
        if ran:
            _attempt("record_service", self.core.record_service, ran, self._ran_work, now)
        for call_id in self._finished:
            _attempt("finish_call", self.core.finish_call, call_id, now)
        for call_id, program_id, parents in zip(
            self._new_calls, self._new_programs, self._new_parents
        ):
            try:
                self.core.add_call(call_id, program_id, now, parents)
            except Exception:
                _attempt("add_call", self.core.add_call, call_id, program_id, now, ())
        return self.core.schedule(now, capacity)

    def _preempt_for_priority(self, call_ids: list[int]) -> None:
        now = time.monotonic()  # vLLM's own event time stamps
        for call_id in call_ids:
            request = self.requests.get(self._request_of.get(call_id, ""))
            if request is None or request.status != RequestStatus.RUNNING:
                continue
            self.running.remove(request)
            self._preempt_request(request, now)  # frees KV, prepends to waiting, tells workers
            self.autellix_stats["priority_preemptions"] += 1

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output: Any):
        scheduled = scheduler_output.num_scheduled_tokens
        if scheduled:
            # Every call in the step is credited the step's work, as it would be its seconds.
            self._ran_work = step_units(scheduler_output.total_num_scheduled_tokens, len(scheduled))
            self.work_clock += self._ran_work
            self._ran = [self._call_of[rid] for rid in scheduled if rid in self._call_of]
        return super().update_from_output(scheduler_output, model_runner_output)


def _attempt(what: str, fn: Any, *args: Any) -> None:
    """One core call whose failure is logged, not raised: the engine must go on stepping."""
    try:
        fn(*args)
    except Exception as error:
        log.error("autellix: %s%r failed: %s", what, args, error)


def _autellix_scheduler(engine_core: Any) -> _AutellixMixin | None:
    scheduler = getattr(engine_core, "scheduler", None)
    return scheduler if isinstance(scheduler, _AutellixMixin) else None


def _snapshot_utility(self: Any, program_ids: list) -> Any:
    scheduler = _autellix_scheduler(self)
    return None if scheduler is None else scheduler.autellix_snapshot(program_ids)


def _end_program_utility(self: Any, program_id: int) -> Any:
    scheduler = _autellix_scheduler(self)
    return None if scheduler is None else scheduler.autellix_end_program(program_id)


def _register_engine_core_utilities() -> None:
    """Let the front end reach the scheduler through vLLM's utility calls:
    `engine_core.call_utility_async(name, *args)` runs `getattr(EngineCore, name)(*args)` in the
    engine-core process. This adds two methods and replaces none of vLLM's. (Explicit
    signatures: vLLM matches the arguments against them.)"""
    from vllm.v1.engine.core import EngineCore

    for name, utility in (
        ("autellix_snapshot", _snapshot_utility),
        ("autellix_end_program", _end_program_utility),
    ):
        if not hasattr(EngineCore, name):
            setattr(EngineCore, name, utility)


_register_engine_core_utilities()


class AutellixScheduler(_AutellixMixin, Scheduler):
    """For engines without async scheduling (every CPU engine; GPU with --no-async-scheduling)."""


class AutellixAsyncScheduler(_AutellixMixin, AsyncScheduler):
    """For GPU engines with async scheduling on (vLLM's default there). Untested on GPU so far."""
