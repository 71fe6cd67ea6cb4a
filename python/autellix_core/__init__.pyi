"""The Autellix scheduling core (Rust, via PyO3).

One `Scheduler` per engine ranks every call by how much engine time its program has had (PLAS),
or by its program's critical path (ATLAS), discretises that into K queues (queue 0 most urgent),
serves a queue oldest program first (PLAS, ATLAS: a program's context stays cached between its
calls) or FCFS (fcfs, mlfq), demotes a running call that uses up its queue's quantum, preempts the
least urgent running call for a waiting one in a strictly more urgent queue when the batch is full,
and promotes a waiting call once (W_p + W_c) / (T_p + T_c) >= starvation_ratio: to queue 0, ahead
of every waiting call, but it waits for a free slot rather than preempt (no preemption chains).

Ids are caller-chosen ints, unique while live. Times are in any monotonic unit (seconds, or the
vLLM plug-in's engine work units: autellix.work_units), the same for `now` and service;
`now` never goes backwards. Every operation validates all of its input first: one that raises
changes nothing.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self, TypedDict, final

__version__: str
__all__ = [
    "AdmissionQueue",
    "CallStateError",
    "ConfigError",
    "Decision",
    "DuplicateCallError",
    "EngineAdapter",
    "InvalidArgumentError",
    "LoadBalancer",
    "PreemptionGuard",
    "Scheduler",
    "SchedulerError",
    "UnknownCallError",
    "UnknownParentError",
    "UnknownProgramError",
    "VllmHooks",
    "__version__",
    "recompute_tokens",
]

PolicyName = Literal["fcfs", "mlfq", "plas", "atlas"]
BalancerPolicyName = Literal["autellix", "least-used", "round-robin"]

class ProgramInfo(TypedDict):
    attained_service: float  # engine time of its finished calls (PLAS)
    critical_path: float  # longest priority + service over its finished calls (ATLAS)
    waiting_time: float  # time its calls waited, counted as each waiting spell ends
    active_calls: int
    calls_to_come: int | None  # the calls still to arrive by its client's count (set_calls_left)
    calls: list[int]  # live call ids, sorted
    last_arrival: float
    last_completion: float

class CallInfo(TypedDict):
    program_id: int
    state: Literal["waiting", "running"]
    queue: int
    priority: float  # the PLAS/ATLAS priority it arrived with
    service: float
    waiting_time: float

class SchedulerStats(TypedDict):
    added: int
    admitted: int
    preemptions: int
    promotions: int
    demotions: int
    requeues: int
    finished: int
    dropped_programs: int

@final
class Decision:
    @property
    def admit(self) -> list[int]:
        """Waiting calls to start now, most urgent first; they count as running from now on."""
    @property
    def preempt(self) -> list[int]:
        """Running calls to stop now, least urgent first; they wait again and keep their place."""
    @property
    def promoted(self) -> list[int]:
        """Waiting calls the anti-starvation rule moved to queue 0 in this decision."""

@final
class Scheduler:
    def __new__(
        cls,
        policy: PolicyName = "plas",
        queue_boundaries: Sequence[float] | None = None,
        quanta: Sequence[float] | None = None,
        starvation_ratio: float | None = None,
        stale_after: float | None = None,
    ) -> Self:
        """Raises ConfigError on a bad configuration.

        queue_boundaries: K-1 strictly increasing attained-service thresholds in seconds
            (default 1, 2, 4, ..., 64: eight queues). Not allowed with "fcfs" (one queue).
        quanta: K per-queue quanta in seconds (default: the width of each queue's range).
        starvation_ratio: beta of the anti-starvation rule (default 4; inf disables it).
        stale_after: idle programs are dropped after this many seconds (default 900).
        """
    @property
    def policy(self) -> PolicyName: ...
    @property
    def queue_boundaries(self) -> list[float]: ...
    @property
    def quanta(self) -> list[float]: ...
    @property
    def starvation_ratio(self) -> float: ...
    @property
    def stale_after(self) -> float: ...
    @property
    def num_queues(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def num_running(self) -> int: ...
    @property
    def num_programs(self) -> int: ...
    def start_program(self, program_id: int, now: float) -> None:
        """Adds a program to the table before its first call (a call of a new program does too)."""
    def set_calls_left(self, program_id: int, calls_left: int, now: float) -> None:
        """What the program's client says of the calls it will still make, counting its next one
        (an agent's step budget less the steps it has taken; an upper bound will do). plas and
        atlas then queue each new call of it by the work left with the call: the calls left times
        the mean service of the program's finished calls (of every program's, before one of its own
        finished), rather than by the work it had, so the program with the least left goes first,
        as under SRPT. Its anti-starvation counts that work too (it waits against attained + left,
        not against the little it had). Arrivals count it down (to the arriving call at least); it
        lasts until said again or the program ends. Starts the program if it is new. Raises InvalidArgumentError
        (calls_left < 1), OverflowError."""
    def add_call(self, call_id: int, program_id: int, now: float, parents: Sequence[int] = ()) -> None:
        """A new waiting call. `parents` (ATLAS only; others ignore it) are earlier calls of the
        same program this one depends on: its priority is then the longest parent path.
        Raises DuplicateCallError, UnknownParentError, InvalidArgumentError."""
    def add_calls(
        self,
        call_ids: Sequence[int],
        program_ids: Sequence[int],
        now: float,
        parents: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """`add_call` for parallel lists, all or nothing."""
    def schedule(self, now: float, capacity: int, protected: Sequence[int] = ()) -> Decision:
        """Promotes starved calls, drops stale programs, then fills the engine up to `capacity`
        running calls (promoted calls first) and swaps running calls for waiting, unpromoted ones
        in strictly more urgent queues.

        protected: running calls this decision must not swap out (say, their recompute would cost
            more than the waiting call gains; the caller decides). A swap then takes the least
            urgent unprotected running call, if its queue is still strictly less urgent than the
            waiting call's; otherwise none happens. Admission into free slots, demotion, promotion
            and anti-starvation are unchanged, and capacity still binds: when it shrinks below the
            running calls, the least urgent ones stop, protected or not. Protection lasts this
            decision only. Raises UnknownCallError, CallStateError (not running),
            DuplicateCallError."""
    def step(
        self,
        now: float,
        capacity: int,
        ran: Sequence[int] = (),
        ran_seconds: float = 0.0,
        finished: Sequence[int] = (),
        new_calls: Sequence[int] = (),
        new_programs: Sequence[int] = (),
        new_parents: Sequence[Sequence[int]] | None = None,
        ran_all: bool = False,
        protected: Sequence[int] = (),
    ) -> Decision:
        """One engine step in one crossing: `record_service(ran, ran_seconds)` (with `ran_all=True`:
        every running call, and `ran` stays empty), `finish_calls(finished)`,
        `add_calls(new_calls, new_programs, new_parents)`, then `schedule(now, capacity, protected)`.
        All input is validated before anything changes; a new call may not reuse the id of a call
        finished in the same step. `protected` is judged as the decision starts: a call finished
        in this step is unknown (UnknownCallError), one arriving in it is waiting (CallStateError)."""
    def record_service_each(self, call_ids: Sequence[int], amounts: Sequence[float], now: float) -> None:
        """`record_service` with each call's own amount (`amounts[i]` to `call_ids[i]`)."""
    def record_service(self, call_ids: Sequence[int], seconds: float, now: float) -> None:
        """Each listed running call just got `seconds` of engine time (may demote it).
        Raises UnknownCallError, CallStateError (not running), DuplicateCallError."""
    def requeue(self, call_ids: Sequence[int], now: float) -> None:
        """Running calls the engine stopped on its own (memory pressure) or could not start after
        all: they wait again, keeping their place."""
    def finish_call(self, call_id: int, now: float) -> None:
        """A live call finished or was aborted; its service is credited to its program."""
    def finish_calls(self, call_ids: Sequence[int], now: float) -> None: ...
    def end_program(self, program_id: int) -> list[int]:
        """Removes the program and its live calls; returns their ids (sorted) so the caller can
        abort them in the engine. Raises UnknownProgramError."""
    def program_info(self, program_id: int) -> ProgramInfo:
        """Raises UnknownProgramError."""
    def call_info(self, call_id: int) -> CallInfo:
        """Raises UnknownCallError."""
    def queue_of(self, call_id: int) -> int:
        """The call's queue, 0 = most urgent. Raises UnknownCallError."""
    def queue_lengths(self) -> list[int]:
        """Waiting calls per queue."""
    def running(self) -> list[int]: ...
    def stats(self) -> SchedulerStats: ...
    def __len__(self) -> int:
        """Live calls: waiting or running."""
    def __contains__(self, call_id: int, /) -> bool: ...
    def may_swap(self) -> bool:
        """Whether the next decision could preempt a running call for a more urgent waiting one
        (False: it will not, capacity aside), so a caller can skip choosing calls to protect."""

class AdapterStats(TypedDict):
    rejected_batches: int

@final
class EngineAdapter:
    """The vLLM plug-in's bookkeeping, keyed by vLLM's request ids, over one `Scheduler`: which
    program a request belongs to (a client's id below `session_programs`, else its session's
    program numbered from `session_programs` up, else a program of its own from `solo_programs`
    up), the request ids its children may name as parents (the most recent `parent_memory`,
    live or finished), what the engine ran and freed since the last step, and the decision as
    the requests its calls were added with (a `Request` handed to `add_request`, else the request
    id). Other operations on `scheduler` may leave the two out of step: read it, and end
    programs through the adapter."""

    def __new__(
        cls,
        scheduler: Scheduler,
        session_programs: int,
        solo_programs: int,
        prefill_tokens_per_unit: float,
        session_memory: int = 65536,
        parent_memory: int = 65536,
        extra_args_keys: tuple[str, str, str, str] | None = None,
    ) -> Self:
        """Raises ConfigError unless 0 < session_programs < solo_programs, both memories >= 1 and
        prefill_tokens_per_unit > 0. `extra_args_keys`: the (program, session, parents, calls
        left) keys of `SamplingParams.extra_args` that `add_vllm_request` reads
        (`autellix.contract`)."""
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def num_requests(self) -> int:
        """Live requests: added, not yet freed."""
    @property
    def num_sessions(self) -> int: ...
    @property
    def num_finished_pending(self) -> int:
        """Requests freed since the last `apply`."""
    def num_running(self) -> int:
        """Calls the scheduler counts as running, less those freed since the last `apply`."""
    def counts_match(self, engine_running: int) -> bool:
        """Whether `engine_running` requests running in the engine must be exactly the calls the
        scheduler counts as running: the counts are equal and no request of an ended program is
        live. Valid when the engine runs only calls the scheduler admitted."""
    def add_request(
        self,
        request_id: str,
        program_id: int | None,
        session: str | None,
        parents: Sequence[str] = (),
        request: Any = None,
    ) -> tuple[int, int, bool]:
        """A new request: returns (call id, program id, whether its session was new). The request
        is nameable by its id and by the id its client gave (without the "-" and 8 hex digits vLLM
        appends). `parents` not remembered or of another program are ignored. `request`: what
        decisions name the call by while it lives (vLLM's `Request`), held weakly: a decision
        leaves out a request the engine dropped; the request id if None.
        Raises InvalidArgumentError if the request id is live."""
    def add_vllm_request(self, request: Any) -> tuple[int, str | None, list[str]]:
        """`add_request` for a vLLM `Request`, read in one call: its `request_id`, and its program
        by the plug-in's rules: the client's program id under the program key of
        `sampling_params.extra_args` (an int below `session_programs`), else the program of its
        session (`session_id`, else the session key of `extra_args`), else one of its own; its
        parents under the parents key (a list of request ids, or one); under the calls-left key,
        an int >= 1, the count its client gives of the calls its program will still make, this
        one included, told the scheduler (`Scheduler.set_calls_left`) at the next `apply`, before
        the arrivals (of several arrivals of one program in a step, the first one's). Returns
        (program id, the session if the adapter had not seen it, else None; what was ignored, one
        line each for the log: a program id that is no client's, parents that are no list of ids,
        a count of calls left that is no int >= 1).
        Raises ValueError if the adapter was built without `extra_args_keys`, InvalidArgumentError
        if the request id is live."""
    def free_request(self, request_id: str) -> bool:
        """The engine freed the request (finished or aborted); False if unknown."""
    def free_requests(self, request_ids: Iterable[str]) -> int:
        """`free_request` for each (unknown ones are skipped); returns how many finished calls the
        scheduler will hear of at the next `apply`."""
    def ran_all(self, work: float) -> None:
        """The last step ran every call the scheduler counts as running, for `work`."""
    def ran_requests(self, request_ids: Sequence[str], work: float) -> None:
        """The last step ran these requests (unknown ones are ignored), for `work` each."""
    def ran_tokens(
        self, scheduled: Mapping[str, int], total_tokens: int, whole_batch_possible: bool = False
    ) -> tuple[float, float]:
        """The last step ran these requests for these numbers of tokens (`total_tokens` in all):
        each is credited its own work, 1 + (tokens - 1) / prefill_tokens_per_unit
        (`autellix.work_units.call_units`). `whole_batch_possible`: the engine runs only calls the
        scheduler admitted (sync scheduling, no KV connector), so when the counts match every
        running call ran, and only requests that ran more than one token are read by name.
        Returns the step's work and its calls' mean own work (`autellix.work_units.step_units`,
        `mean_call_units`): how far the engine's and the scheduler's clocks move."""
    def apply(self, now: float) -> list[str]:
        """Tells the scheduler the service, finishes and arrivals since the last step; returns
        what it refused (a rejected batch of arrivals is retried one by one, a call whose parents
        are refused arrives without them). Never raises for the engine's input."""
    def may_swap(self) -> bool:
        """`Scheduler.may_swap`, after `apply`."""
    def step(self, now: float, capacity: int) -> tuple[list[Any], list[Any], list[str]]:
        """`apply`, then `decide` with nothing protected, in one call: (admit, preempt, what
        `apply` refused)."""
    def decide(self, now: float, capacity: int, protected: Sequence[str] = ()) -> tuple[list[Any], list[Any]]:
        """(requests to admit, most urgent first; requests to preempt, least urgent first), each
        as it was added (see `add_request`). `protected`: running request ids not to preempt for
        priority (others are ignored)."""
    def requeue_all_but(self, running_requests: Sequence[str], now: float) -> int:
        """Every call counted as running whose request is live but not in `running_requests`
        waits again, keeping its place; returns how many."""
    def end_program(self, program_id: int) -> bool:
        """Ends the program in the scheduler (False if unknown there); its live requests are never
        reported to it again."""
    def call_id(self, request_id: str) -> int | None:
        """The call id of a remembered request id (vLLM's or the client's)."""
    def request_id(self, call_id: int) -> str | None:
        """The request id of a live call."""
    def request(self, call_id: int) -> Any:
        """What a live call was added with (see `add_request`); None if the call is not live."""
    def stats(self) -> AdapterStats: ...

@final
class LoadBalancer:
    def __new__(cls, num_engines: int, short_call_tokens: int = 2048, policy: BalancerPolicyName = "autellix") -> Self:
        """"autellix": calls of at most `short_call_tokens` prompt tokens go to the least-used
        engine, longer ones to the engine their program is pinned to (pinned on first placement).
        Raises ConfigError."""
    def route(self, program_id: int, prompt_tokens: int) -> int:
        """The engine for this call; it counts as outstanding there until `release`."""
    def release(self, engine: int) -> None:
        """A call routed to `engine` is done. Raises InvalidArgumentError."""
    def forget(self, program_id: int) -> None:
        """Unpins an ended program."""
    def pinned(self, program_id: int) -> int | None: ...
    def loads(self) -> list[int]:
        """Outstanding calls per engine."""
    @property
    def num_engines(self) -> int: ...
    @property
    def short_call_tokens(self) -> int: ...
    @property
    def policy(self) -> BalancerPolicyName: ...

@final
class PreemptionGuard:
    """Preemption that pays for itself: vLLM preempts by recompute, so a running call whose
    recompute takes more engine work than the expected wait for the next free slot is protected.
    The wait is measured: a running mean of the engine work between completions while the batch
    is full. Before the first measurement nothing is protected. The vLLM plug-in's own guard
    (inside `VllmHooks`), here alone for tests and experiments."""

    def __new__(cls, prefill_tokens_per_unit: float, enabled: bool = True) -> Self: ...
    @property
    def slot_wait(self) -> float | None:
        """Mean engine work between completions while the batch was full."""
    @property
    def enabled(self) -> bool: ...
    def may_protect(self, block_size: int, cached: bool) -> bool:
        """Whether any call could be protected now: not when every recompute is a partial block
        (`cached`: the prefix cache keeps full blocks) costing less than the wait."""
    def observe_completions(self, count: int, work_clock: float, batch_full: bool) -> None:
        """`count` calls finished at `work_clock`; intervals count only while the batch was full."""
    def protected(self, running: Iterable[tuple[Any, int]], block_size: int, cached: bool) -> list[Any]:
        """The keys among `running` (key, computed tokens) whose recompute costs more than waiting."""

def recompute_tokens(computed_tokens: int, block_size: int, cached: bool) -> int:
    """Tokens a call preempted now would prefill again: its partial last block if the prefix
    cache keeps the full ones (`cached`), else all of them."""

@final
class AdmissionQueue:
    """vLLM's waiting queue as the plug-in replaces it (`Scheduler.waiting`): vLLM's
    `RequestQueue` interface, duck-typed, over every waiting request, which shows vLLM only the
    step's admissions, in the core's order. It is false once they are used up (which ends vLLM's
    admission loop) while `len` counts every waiting request; prepends go first, newest first.
    `VllmHooks` sets and clears the admissions itself. Requests are read only by `request_id`."""

    def __new__(cls) -> Self: ...
    def set_admissions(self, requests: Sequence[Any]) -> None:
        """The requests vLLM may admit this step, most urgent first; those not waiting here are
        dropped."""
    def clear_admissions(self) -> None: ...
    def __contains__(self, key: object, /) -> bool:
        """Whether a request of this id waits here."""
    def add_request(self, request: Any) -> None: ...
    def pop_request(self) -> Any:
        """The next admission (IndexError if none is left), no longer waiting."""
    def peek_request(self) -> Any:
        """The next admission (IndexError if none is left)."""
    def prepend_request(self, request: Any) -> None: ...
    def prepend_requests(self, requests: Iterable[Any]) -> None:
        """The first ends up frontmost."""
    def remove_request(self, request: Any) -> None: ...
    def remove_requests(self, requests: Iterable[Any]) -> None: ...
    def __bool__(self) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...

@final
class VllmHooks:
    """What the vLLM plug-in does in each engine step, one call per hook, over an `EngineAdapter`
    (`autellix.vllm.scheduler`): `arrive(scheduler, request)` after vLLM's `add_request`,
    `begin(scheduler)` before vLLM's `schedule()`, `end(scheduler, scheduler_output)` after it;
    once `install`ed, `add_request` and `schedule` are vLLM's methods with these around them. They read vLLM's
    `Scheduler` (`max_num_active_reqs`, `num_waiting_for_streaming_input`, `finished_req_ids`,
    `requests`, `running`, `kv_cache_manager.usage`) and `SchedulerOutput`
    (`num_scheduled_tokens`, `total_num_scheduled_tokens`), keep the clocks (engine work units)
    and the preemption guard. `whole_batch_possible`: vLLM runs only what the scheduler admitted
    (sync scheduling, no KV connector); `counts_suffice`: no KV connector starts requests of its
    own; `cache_room`: KV usage below which a preempted call's full blocks stay cached."""

    def __new__(
        cls,
        adapter: EngineAdapter,
        admission: AdmissionQueue,
        block_size: int,
        *,
        preemption_guard: bool = True,
        own_work_credit: bool = True,
        whole_batch_possible: bool = False,
        counts_suffice: bool = True,
        prefix_caching: bool = True,
        cache_room: float,
    ) -> Self: ...
    @property
    def work_clock(self) -> float:
        """The engine's work so far, in units."""
    @property
    def core_clock(self) -> float:
        """The scheduler's time: the work its calls are credited (the step's, or the mean call's
        under own-work crediting)."""
    @property
    def slot_wait(self) -> float | None:
        """The guard's measured wait for a free slot."""
    def install(
        self,
        scheduler: Any,
        vllm_class: type,
        log_arrival: Callable[[str, int, str | None, list[str]], object],
        log_refused: Callable[[list[str]], object],
    ) -> None:
        """Makes `schedule` and `add_request` serve `scheduler` (held weakly), an instance of a
        subclass of `vllm_class` (vLLM's `Scheduler` or `AsyncScheduler`, whose methods are looked
        up at each call). They log through the callbacks when there is something to log and preempt
        with `scheduler._preempt_for_priority(requests)`."""
    def add_request(self, request: Any) -> None:
        """vLLM's `add_request`, then `arrive`. RuntimeError before `install` or once the
        scheduler is gone."""
    def schedule(self, throttle_prefills: bool = False) -> Any:
        """`begin` (and the preemptions), vLLM's `schedule()`, then `end`; returns vLLM's
        `SchedulerOutput`. RuntimeError before `install` or once the scheduler is gone."""
    def arrive(self, scheduler: Any, request: Any) -> tuple[int, str | None, list[str]] | None:
        """After vLLM's `add_request`: a new request becomes a call (`EngineAdapter.add_vllm_request`);
        a streaming update of a live request is none. An id vLLM freed since its last step, given
        again, frees the old call now. Returns None, or what to log: (program id, the session if
        new, what was ignored)."""
    def begin(self, scheduler: Any) -> tuple[list[Any], list[str]] | None:
        """Frees, the step's news, the guard, the decision; the admissions go to the admission
        queue. Returns None, or (requests to preempt; what the scheduler refused, for the log)."""
    def end(self, scheduler: Any, scheduler_output: Any) -> int:
        """Clears the admissions vLLM did not take; hands back every call the scheduler counts as
        running that vLLM does not run; the step vLLM scheduled moves the clocks and is credited
        to its calls. Returns how many went back."""
    def catch_up(self, scheduler: Any) -> list[str]:
        """What an idle engine would tell the scheduler at its next step, told now (snapshots)."""
    def stats(self) -> dict[str, float]:
        """steps, core_seconds (in `begin`), requeued, protected_call_steps."""

class SchedulerError(Exception):
    """Base class of the errors of autellix_core."""

class UnknownCallError(SchedulerError): ...
class DuplicateCallError(SchedulerError): ...
class UnknownProgramError(SchedulerError): ...
class CallStateError(SchedulerError): ...
class UnknownParentError(SchedulerError): ...
class ConfigError(SchedulerError): ...
class InvalidArgumentError(SchedulerError): ...
