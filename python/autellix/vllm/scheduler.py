"""Autellix as vLLM V1's scheduler: `--scheduler-cls autellix.vllm.scheduler.AutellixScheduler`.

The Rust side (`autellix_core.EngineAdapter` over `autellix_core.Scheduler`) keeps every map
between vLLM's request ids, the core's call ids and program ids, and each live call's `Request`;
`autellix_core.VllmHooks` does each hook's work in one call: the clocks, the preemption guard,
crediting and hand-backs; its `add_request` and `schedule`, set on each scheduler, wrap vLLM's
with no Python frame of ours. It hears of each arrival as it happens and of departures from vLLM's
own record of the requests it freed since its last step (`Scheduler.finished_req_ids`, read
before it is reset); each engine step it applies what happened since the last one (which calls
ran and for how long, which finished, which arrived) and answers, as `Request` objects, which
waiting calls to admit, in order, and which running calls to preempt. vLLM's
own `schedule()` then does the rest (token budget, KV blocks, prefix cache, chunked prefill):
preempted calls are recomputed from the prefix cache, the way vLLM preempts under KV pressure.
After vLLM's `schedule()`, every call the core counts as running that vLLM does not run goes back
to the core's waiting queues with `requeue`, keeping its place, whatever the reason: no slot, token
budget or KV room to start it, a start vLLM put off (its structured-output grammar still
compiling, a KV transfer or streaming input pending), or a preemption for KV memory of vLLM's own;
and the step vLLM scheduled is credited to its calls (vLLM runs every step it schedules, so its
`update_from_output` is left alone).

The program a call belongs to (names from `autellix.contract`), in this order:
  1. `autellix_program_id` in `SamplingParams.extra_args` (over HTTP: the `vllm_xargs` body
     field), an int in [0, 2**62) chosen by the client or the Autellix front end;
  2. vLLM's own session id (`Request.session_id`: the `X-Session-ID` header, the body field
     `session_id` or `vllm_xargs.session_id`): each distinct session is one program, numbered
     from 2**62 up by this plug-in (the most recent 65,536 sessions are remembered);
  3. neither: the call is a program of its own, numbered from 2**63 up.
`autellix_thread_id` (int) is kept for tracing; `autellix_parents` lists request ids, as given to
vLLM, of earlier calls of the same program this one depends on (ATLAS); `autellix_calls_left` (int
>= 1) is the client's count of the calls its program will still make, this one included
(`Scheduler.set_calls_left`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import autellix_core
import vllm
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.core.sched.utils import remove_all
from vllm.v1.request import Request, RequestStatus

from autellix.contract import (
    CALLS_LEFT_KEY,
    PARENTS_KEY,
    PROGRAM_KEY,
    SESSION_KEY,
    SESSION_PROGRAMS,
    SOLO_PROGRAMS,
    THREAD_KEY,
)
from autellix.vllm.settings import AutellixSettings
from autellix.work_units import PREFILL_TOKENS_PER_UNIT

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

    # Without async scheduling a full count means every running call ran in the step; with it
    # (untested so far) the calls that ran are always named, the choice that assumes nothing.
    _name_calls_that_ran = False
    # The vLLM scheduler whose `add_request` and `schedule` the hooks wrap.
    _vllm_class: type[Scheduler]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connector = getattr(self, "connector", None)
        if connector is not None:
            log.warning("autellix: KV connectors are untested with this scheduler")
        self.autellix_settings = AutellixSettings.from_vllm_config(self.vllm_config)
        self.core = self.autellix_settings.make_core()
        # Request ids, sessions, lineage and what happened since the last step live in Rust,
        # next to the core: one crossing per arrival, and one per hook (`self.hooks`) a step.
        self.adapter = autellix_core.EngineAdapter(
            self.core, SESSION_PROGRAMS, SOLO_PROGRAMS, PREFILL_TOKENS_PER_UNIT, SESSION_MEMORY, PARENT_MEMORY,
            extra_args_keys=(PROGRAM_KEY, SESSION_KEY, PARENTS_KEY, CALLS_LEFT_KEY),
        )
        log.info("autellix: %s scheduling with policy %s", type(self).__name__, self.autellix_settings.policy)
        # Replaces vLLM's FCFS queue, before any request exists: it shows vLLM only the core's
        # admissions of the step, in the core's order (the hooks set them from Rust).
        self.admission = autellix_core.AdmissionQueue()
        self.waiting = self.admission
        # A KV connector starts requests holding KV blocks from a queue of its own, so counts
        # alone no longer tell whether vLLM runs exactly what the core admitted.
        counts_suffice = connector is None
        # The step's work in Rust, one crossing a hook: frees, the preemption guard, the decision,
        # hand-backs, crediting, and the clocks. The clocks are in engine work units
        # (autellix.work_units), the same on any hardware and only advanced by steps this engine
        # ran, so tests and decisions are reproducible. The engine's work paces the guard; the core
        # runs on the work its calls are credited (the step's under step crediting, the mean
        # call's under own-work crediting), so waiting and attained service share one unit for the
        # anti-starvation ratio. Counts tell whether every running call ran in a step only with
        # sync scheduling and no KV connector: then vLLM runs only what the core admitted.
        self.hooks = autellix_core.VllmHooks(
            self.adapter,
            self.admission,
            self.block_size,
            preemption_guard=self.autellix_settings.preemption_guard,
            own_work_credit=self.autellix_settings.own_work_credit,
            whole_batch_possible=not self._name_calls_that_ran and counts_suffice,
            counts_suffice=counts_suffice,
            prefix_caching=bool(self.cache_config.enable_prefix_caching),
            cache_room=CACHE_ROOM,
        )
        # vLLM calls these once an arrival and once a step: the hooks' own methods, set on the
        # instance, so no Python frame of ours runs around vLLM's.
        self.hooks.install(self, self._vllm_class, _log_arrival, _log_refused)
        self.add_request = self.hooks.add_request
        self.schedule = self.hooks.schedule
        self._priority_preemptions = 0

    @property
    def autellix_stats(self) -> dict[str, float]:
        """The plug-in's counters: steps, core_seconds (its time in Rust before vLLM's
        `schedule()`), requeued, protected_call_steps, priority_preemptions, rejected_batches."""
        return {**self.hooks.stats(), **self.adapter.stats(), "priority_preemptions": self._priority_preemptions}

    @property
    def work_clock(self) -> float:
        return self.hooks.work_clock

    @property
    def core_clock(self) -> float:
        return self.hooks.core_clock

    def call_id(self, request_id: str) -> int | None:
        """The core's id for a request (the id given to vLLM or vLLM's internal one)."""
        return self.adapter.call_id(request_id)

    def autellix_snapshot(self, program_ids: list[int]) -> dict[str, Any]:
        """What the front end shows: the core's queues and counters, and the listed programs
        this engine knows (others are absent)."""
        # An idle engine has no next step: tell the core now what it would hear then, or its
        # last calls would show as running forever.
        if refused := self.hooks.catch_up(self):
            _log_refused(refused)
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
            "plugin": self.autellix_stats,
            "programs": programs,
        }

    def autellix_end_program(self, program_id: int) -> bool:
        """Drop an ended program from the core's table; False if this engine never saw it."""
        return self.adapter.end_program(program_id)

    def thread_id(self, request_id: str) -> Any:
        """The `autellix_thread_id` a live request arrived with, if any."""
        call_id = self.adapter.call_id(request_id)
        request = None if call_id is None else self.adapter.request(call_id)
        return None if request is None else _extra_args(request).get(THREAD_KEY)

    # -- arrivals and departures -------------------------------------------------------------
    # `add_request` and `schedule` here run only for a call through the class: `__init__` sets
    # the hooks' own on the instance.

    def add_request(self, request: Request) -> None:
        # vLLM's, then a new call of its program by the rules of the module docstring.
        self.hooks.add_request(request)

    # -- each step ---------------------------------------------------------------------------

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        # The core's decision (admissions to the admission queue, preemptions by
        # `_preempt_for_priority`), vLLM's `schedule()`, then hand-backs and the step's crediting.
        return self.hooks.schedule(throttle_prefills)

    def _preempt_for_priority(self, requests: list[Request]) -> None:
        victims = [r for r in requests if r.status == RequestStatus.RUNNING]
        self.running = remove_all(self.running, set(victims))  # one pass however many go
        now = time.monotonic()  # vLLM's own event time stamps
        for request in victims:
            self._preempt_request(request, now)  # frees KV, prepends to waiting, tells workers
        self._priority_preemptions += len(victims)


def _log_arrival(request_id: str, program_id: int, new_session: str | None, ignored: list[str]) -> None:
    for what in ignored:
        log.warning("autellix: request %s: ignoring %s", request_id, what)
    if new_session is not None:  # once per program: operators (and tests of the served engine) see sessions group
        log.info("autellix: session %r is program %d", new_session, program_id)


def _log_refused(refused: list[str]) -> None:
    for refusal in refused:
        log.error("autellix: the core refused part of a step: %s", refusal)


def _extra_args(request: Request) -> dict[str, Any]:
    return (request.sampling_params.extra_args if request.sampling_params else None) or {}


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

    _vllm_class = Scheduler


class AutellixAsyncScheduler(_AutellixMixin, AsyncScheduler):
    """For GPU engines with async scheduling on (vLLM's default there). Untested on GPU so far."""

    _vllm_class = AsyncScheduler
    _name_calls_that_ran = True
