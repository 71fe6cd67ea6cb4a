"""One modelled engine replica: continuous batching, chunked prefill, a bounded KV cache with
preemption, a per-engine prefix cache, and the step-time model of :mod:`autellix.sim.presets`.

The engine never decides priorities: at every scheduling point it makes ONE call to its scheduler's
``step()`` (the Rust core, or the Python ``srpt`` oracle) reporting the service the running calls got
and the calls that finished or arrived, and applies the returned decision (preempt, then admit in the
given order). It only overrides the scheduler where the hardware forces it: a call that does not fit
in the KV cache is handed back with ``requeue`` (it keeps its place), as vLLM does.

Time advances in *chunks*: a step that carries prefill tokens is simulated on its own; runs of
decode-only steps are simulated in closed form, up to ``multi_step`` steps or until the first call
ends (so slots are refilled exactly when a call finishes, as an engine that schedules every step
would). Decoders are kept in a heap keyed by the global step at which they end, so a chunk costs
O(log n) per finishing call rather than O(n) per step.

Accounting (checked by the tests): every output token is generated exactly once, including across
preemption; prompt tokens are either computed or served from the prefix cache, and a call preempted
by recompute computes its context again (``recomputed_tokens``).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from autellix.sim.presets import EngineConfig
from autellix.work_units import call_units, mean_call_units, step_units

__all__ = ["Engine", "EngineStats", "SimCall", "SimProgram", "SchedulerLike"]

WAITING, RUNNING, DONE = 0, 1, 2
# The scheduler's clock: engine work units with each call credited its own work in a step ("work",
# as the plug-in runs by default) or every call the step's ("step-work", the plug-in with
# own_work_credit off); or simulated seconds.
CLOCKS = ("work", "step-work", "seconds")
WORK_CLOCKS = ("work", "step-work")


class SchedulerLike(Protocol):
    def step(self, now: float, capacity: int, ran: Any = ..., ran_seconds: float = ..., finished: Any = ...,
             new_calls: Any = ..., new_programs: Any = ..., new_parents: Any = ...) -> Any: ...

    def record_service_each(self, call_ids: Any, amounts: Any, now: float) -> None: ...

    def requeue(self, call_ids: Any, now: float) -> None: ...

    def set_calls_left(self, program_id: int, calls_left: int, now: float) -> None: ...

    def end_program(self, program_id: int) -> Any: ...


class SimProgram:
    __slots__ = ("index", "program_id", "arrival", "calls", "left", "finish", "output_tokens", "engines",
                 "system", "workload", "known_left", "attained", "budget", "released")

    def __init__(self, index: int, program_id: str, arrival: float, system: int, workload: str | None):
        self.index = index
        self.program_id = program_id
        self.arrival = arrival
        self.calls: list[SimCall] = []
        self.left = 0
        self.finish = -1.0
        self.output_tokens = 0
        self.engines: set[int] = set()
        self.system = system
        self.workload = workload
        self.known_left = 0.0  # srpt oracle: its estimate of the work it may know left (SrptKnowledge)
        self.attained = 0.0  # srpt oracle knowing the distribution: its finished calls' estimated work
        self.budget = 0  # the calls its client says it may make (CLIENT_CALLS_LEFT)
        self.released = 0  # calls released so far


class SimCall:
    __slots__ = ("cid", "program", "prompt", "output", "prefix", "delay", "parents", "children", "pending",
                 "engine", "generated", "prefill_left", "ctx", "end", "version", "state", "release",
                 "start", "finish", "swapped", "work", "estimate", "name", "calls_left")

    def __init__(self, cid: int, program: SimProgram, name: str, prompt: int, output: int, prefix: int,
                 delay: float):
        self.cid = cid
        self.program = program
        self.name = name
        self.prompt = prompt
        self.output = output
        self.prefix = prefix  # leading tokens shareable with the program's cached context
        self.delay = delay
        self.parents: list[SimCall] = []
        self.children: list[SimCall] = []
        self.pending = 0  # parents not finished yet
        self.engine = -1
        self.generated = 0
        self.prefill_left = 0
        self.ctx = 0  # KV tokens the call holds while running
        self.end = 0  # decoders: the engine step count at which the call has all its tokens
        self.version = 0
        self.state = WAITING
        self.release = -1.0
        self.start = -1.0  # first admission
        self.finish = -1.0
        self.swapped = False
        self.work = 0.0
        self.estimate = 0.0  # the srpt oracle's estimate of `work`
        self.calls_left: int | None = None  # what its client tells the core at its release, if anything


@dataclass(slots=True)
class EngineStats:
    """Counters of one engine (tokens, steps, preemptions); see the module docstring for the identities."""

    steps: int = 0
    chunks: int = 0
    busy_time: float = 0.0
    prefill_tokens: int = 0  # prompt (and recomputed) tokens computed
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    recomputed_tokens: int = 0  # tokens computed again after a recompute preemption
    readmitted_ctx: int = 0  # context of calls admitted again after a recompute preemption
    abandoned_prefill: int = 0  # prefill tokens not yet computed when a call was preempted by recompute
    output_tokens: int = 0
    core_preemptions: int = 0
    kv_preemptions: int = 0
    kv_refusals: int = 0
    swapped_tokens: int = 0
    finished_calls: int = 0
    admitted: int = 0
    schedule_calls: int = 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Engine:
    """One replica. ``sched`` is its scheduler; ``on_finish`` is not used: the simulator collects
    finished calls from :meth:`complete_chunk`."""

    def __init__(
        self, index: int, config: EngineConfig, sched: SchedulerLike, pass_parents: bool = False, clock: str = "work"
    ):
        if clock not in CLOCKS:
            raise ValueError(f"clock {clock!r}: expected one of {', '.join(CLOCKS)}")
        self.index = index
        # The scheduler's clock: engine work units (what the vLLM plug-in uses, see
        # autellix.work_units) or simulated seconds.
        self.clock = clock
        self.work_clock = 0.0
        self.ran_work = 0.0
        self.cfg = config
        self.sched = sched
        self.pass_parents = pass_parents
        self.calls: dict[int, SimCall] = {}  # every live call routed here (waiting or running)
        self.running: dict[int, SimCall] = {}  # admission order
        self.prefilling: list[SimCall] = []
        self.dec_heap: list[tuple[int, int, int, SimCall]] = []
        self.n_dec = 0
        self.kv_dec = 0  # context tokens of decoders
        self.kv_used = 0  # KV allocated to running calls
        self.G = 0  # steps executed
        self.cache: OrderedDict[int, int] = OrderedDict()  # program index -> cached context tokens
        self.cache_tokens = 0
        self.system_cached: set[int] = set()
        self.new_ids: list[int] = []
        self.new_progs: list[int] = []
        self.new_parents: list[list[int]] = []
        self.new_hints: dict[int, int] = {}  # program -> calls left, told before the step adds its calls
        self.busy_until: float | None = None  # end of the chunk in flight, None when idle
        self.wake_pending = False
        self.ran: list[int] = []
        self.ran_seconds = 0.0
        self.ran_each: list[float] | None = None  # own-work clock: each call's own work, in `ran` order
        self.finished_ids: list[int] = []
        self.swap_tokens = 0
        self._prefill_done: list[SimCall] = []
        self.stats = EngineStats()
        self.decision_log: list[tuple[list[int], list[int]]] | None = None
        self.to_end: list[int] = []  # programs to drop from the scheduler after its next step

    # ----- arrivals

    def add(self, call: SimCall) -> None:
        call.engine = self.index
        call.state = WAITING
        self.calls[call.cid] = call
        call.program.engines.add(self.index)
        self.new_ids.append(call.cid)
        self.new_progs.append(call.program.index)
        if call.calls_left is not None:  # of several released together, the first counts them all
            self.new_hints.setdefault(call.program.index, call.calls_left)
        if self.pass_parents:
            self.new_parents.append([p.cid for p in call.parents if p.engine == self.index])

    # ----- chunk completion

    def complete_chunk(self, now: float) -> list[SimCall]:
        """Ends the chunk in flight at ``now``: returns the calls that finished in it."""
        self.busy_until = None
        done: list[SimCall] = []
        heap = self.dec_heap
        G = self.G
        while heap and heap[0][0] <= G:
            _, _, version, call = heapq.heappop(heap)
            if call.version != version or call.state != RUNNING:
                continue
            call.generated = call.output
            self.n_dec -= 1
            ctx = call.prompt + call.output
            self.kv_dec -= ctx
            done.append(call)
        for call in self._prefill_done:
            done.append(call)
        self._prefill_done = []
        fin = self.finished_ids
        for call in done:
            self.kv_used -= call.prompt + call.output
            call.state = DONE
            call.finish = now
            call.version += 1
            del self.running[call.cid]
            del self.calls[call.cid]
            fin.append(call.cid)
            if self.cfg.prefix_caching:
                self._cache_put(call.program.index, call.prompt + call.output)
        self.stats.finished_calls += len(done)
        return done

    # ----- prefix cache

    def _cache_put(self, prog: int, tokens: int) -> None:
        cache = self.cache
        old = cache.get(prog, 0)
        if tokens > old:
            cache[prog] = tokens
            self.cache_tokens += tokens - old
        if old:
            cache.move_to_end(prog)
        self._evict(0)

    def _evict(self, need: int) -> None:
        cap = self.cfg.kv_tokens - need - self.kv_used
        cache = self.cache
        while self.cache_tokens > cap and cache:
            _, t = cache.popitem(last=False)
            self.cache_tokens -= t
        if self.cache_tokens < 0:
            self.cache_tokens = 0

    def forget_program(self, prog: int) -> None:
        """Drops a finished program's cached context (its prefix will not be reused)."""
        t = self.cache.pop(prog, 0)
        self.cache_tokens -= t

    # ----- scheduling point

    def schedule(self, now: float) -> float | None:
        """One scheduling point: one ``step()`` crossing, apply the decision, start the next chunk.
        Returns the time the new chunk ends, or None when the engine goes idle."""
        st = self.stats
        st.schedule_calls += 1
        seconds = now
        now = self.core_now(seconds)
        service = self.ran_work if self.clock in WORK_CLOCKS else self.ran_seconds
        if self.ran_each is not None:  # calls got different work: credited before the step
            self.sched.record_service_each(self.ran, self.ran_each, now)
            self.ran, service = [], 0.0
        for program, calls_left in self.new_hints.items():
            self.sched.set_calls_left(program, calls_left, now)
        self.new_hints.clear()
        if self.new_ids:
            d = self.sched.step(now, self.cfg.max_running, self.ran, service, self.finished_ids,
                                self.new_ids, self.new_progs, self.new_parents if self.pass_parents else None)
            self.new_ids = []
            self.new_progs = []
            self.new_parents = []
        else:
            d = self.sched.step(now, self.cfg.max_running, self.ran, service, self.finished_ids)
        self.finished_ids = []
        if self.to_end:
            self.flush_ends()
        preempt = d.preempt
        admit = d.admit
        if self.decision_log is not None:
            self.decision_log.append((list(admit), list(preempt)))
        calls = self.calls
        for cid in preempt:
            self._stop(calls[cid])
        st.core_preemptions += len(preempt)
        if admit:
            refused: list[int] = []
            for i, cid in enumerate(admit):
                call = calls[cid]
                if not self._start(call, seconds):
                    refused = list(admit[i:])
                    for r in refused[1:]:
                        if calls[r].state != WAITING:
                            raise RuntimeError(f"scheduler admitted call {r} that is not waiting")
                    break
            if refused:
                st.kv_refusals += len(refused)
                self.sched.requeue(refused, now)
        return self._run_chunk(seconds)

    def core_now(self, seconds: float) -> float:
        """The scheduler's time at simulated time `seconds`."""
        return self.work_clock if self.clock in WORK_CLOCKS else seconds

    def flush_ends(self) -> None:
        for p in self.to_end:
            self.sched.end_program(p)
        self.to_end = []

    def _start(self, call: SimCall, now: float) -> bool:
        if call.state != WAITING:
            raise RuntimeError(f"scheduler admitted call {call.cid} that is not waiting in the engine")
        ctx = call.prompt + call.generated
        cfg = self.cfg
        if self.kv_used + ctx > cfg.kv_tokens:
            return False
        if self.kv_used + self.cache_tokens + ctx > cfg.kv_tokens:
            self._evict(ctx)
        if call.swapped:
            call.swapped = False
            self.swap_tokens += ctx
            todo = call.prefill_left
        else:
            hit = 0
            if cfg.prefix_caching:
                prog = call.program
                cached = self.cache.get(prog.index)
                if cached:
                    hit = min(call.prefix, cached)
                    self.cache.move_to_end(prog.index)
                if prog.system and hit < prog.system:
                    if prog.system in self.system_cached:
                        hit = prog.system
                    else:
                        self.system_cached.add(prog.system)
                if hit >= ctx:
                    hit = ctx - 1  # the last token is always computed
            todo = ctx - hit
            self.stats.cached_tokens += hit
            if call.generated or call.start >= 0:
                self.stats.recomputed_tokens += todo
                self.stats.readmitted_ctx += ctx
        call.state = RUNNING
        self.kv_used += ctx
        self.running[call.cid] = call
        if call.start < 0:
            call.start = now
        self.stats.admitted += 1
        if todo > 0:
            call.prefill_left = todo
            self.prefilling.append(call)
        else:
            self._begin_decode(call)
        return True

    def _begin_decode(self, call: SimCall) -> None:
        call.prefill_left = 0
        r = call.output - call.generated
        call.end = self.G + r
        self.n_dec += 1
        self.kv_dec += call.prompt + call.generated
        heapq.heappush(self.dec_heap, (call.end, call.cid, call.version, call))

    def _stop(self, call: SimCall) -> None:
        """Takes a running call off the engine (the scheduler already counts it as waiting)."""
        if call.state != RUNNING:
            raise RuntimeError(f"scheduler preempted call {call.cid} that is not running in the engine")
        if call.prefill_left > 0:
            self.prefilling.remove(call)
        else:
            call.generated = call.output - (call.end - self.G)
            self.n_dec -= 1
            self.kv_dec -= call.prompt + call.generated
        call.version += 1
        call.state = WAITING
        del self.running[call.cid]
        ctx = call.prompt + call.generated
        self.kv_used -= ctx
        if self.cfg.preemption == "swap":
            call.swapped = True
            self.swap_tokens += ctx
        else:
            self.stats.abandoned_prefill += call.prefill_left
            call.prefill_left = 0
            # recompute: its context stays in the prefix cache until evicted, so it can be reused
            if self.cfg.prefix_caching:
                call.prefix = max(call.prefix, ctx)
                self._cache_put(call.program.index, ctx)

    def _kv_preempt(self, now: float) -> None:
        """KV cache full: stop the most recently admitted running call, as vLLM does."""
        victim = next(reversed(self.running.values()))
        self._stop(victim)
        self.stats.kv_preemptions += 1
        self.sched.requeue([victim.cid], self.core_now(now))

    # ----- running

    def _run_chunk(self, now: float) -> float | None:
        cfg = self.cfg
        self.ran_each = None
        if not self.running:
            self.ran = []
            self.ran_seconds = 0.0
            self.ran_work = 0.0
            return None
        # room for the KV growth of the next step (decoders and prefills completing)
        while self.running:
            grow = self.n_dec + len(self.prefilling)
            if self.kv_used + grow <= cfg.kv_tokens:
                break
            self._kv_preempt(now)
        if not self.running:
            raise RuntimeError(f"engine {self.index}: a single call does not fit in the KV cache")
        if self.kv_used + self.cache_tokens + self.n_dec + len(self.prefilling) > cfg.kv_tokens:
            self._evict(self.n_dec + len(self.prefilling))
        a = cfg.step_base
        b = cfg.step_per_token
        c = cfg.step_per_kv_token
        n = self.n_dec
        st = self.stats
        if self.prefilling:
            chunked = cfg.chunked_prefill
            if not chunked:
                n = 0  # a prefill-only step: the decoders wait (they neither advance nor get service)
            budget = cfg.token_budget - n
            tokens = n
            attended = self.kv_dec if chunked else 0
            done = []
            served: dict[int, int] = {}  # the prefills that got tokens (in order): how many
            for call in self.prefilling:
                if budget <= 0:
                    break
                if chunked:
                    take = call.prefill_left if call.prefill_left < budget else budget
                else:  # whole prompts only, in order; the first one even if it exceeds the budget
                    take = call.prefill_left
                    if served and take > budget:
                        break
                served[call.cid] = take
                call.prefill_left -= take
                budget -= take
                tokens += take
                attended += call.prompt + call.generated - call.prefill_left
                if call.prefill_left == 0:
                    done.append(call)
            st.prefill_tokens += tokens - n
            # only calls in the batch get service: decoders and the prefills that got tokens
            if not chunked:
                ran = list(served)
            elif len(self.prefilling) == len(served):
                ran = list(self.running)
            else:
                waiting_prefill = {c.cid for c in self.prefilling[len(served):]}
                ran = [cid for cid in self.running if cid not in waiting_prefill]
            dt = a + b * tokens + c * attended
            work = step_units(tokens, n + len(served))
            if self.clock == "work":  # a decoder's token is one unit, a prefill its own chunk
                self.ran_each = [call_units(served[cid]) if cid in served else 1.0 for cid in ran]
                work = mean_call_units(tokens, n + len(served))
            if chunked:
                self.G += 1  # G counts decode steps: decoders' end steps are relative to it
                self.kv_dec += n
            k = 1
            if done:
                keep = []
                for call in self.prefilling:
                    if call.prefill_left > 0:
                        keep.append(call)
                self.prefilling = keep
                fin = []
                for call in done:
                    call.generated += 1  # the step that completes a prefill samples a token
                    self.kv_used += 1
                    st.output_tokens += 1
                    if call.generated >= call.output:
                        fin.append(call)
                    else:
                        self._begin_decode(call)
                self._prefill_done = fin
        else:
            heap = self.dec_heap
            while heap and (heap[0][2] != heap[0][3].version):
                heapq.heappop(heap)
            k = cfg.multi_step
            if heap:
                first = heap[0][0] - self.G
                if first < k:
                    k = first
            room = (cfg.kv_tokens - self.kv_used) // n if n else k
            if room < k:
                k = max(1, room)
            dt = k * (a + b * n + c * self.kv_dec) + c * n * k * (k - 1) / 2.0
            work = float(k)
            ran = list(self.running)
            self.G += k
            self.kv_dec += n * k
        grow = n * k
        self.kv_used += grow
        st.output_tokens += grow
        if self.swap_tokens:
            dt += self.swap_tokens * cfg.swap_per_token
            st.swapped_tokens += self.swap_tokens
            self.swap_tokens = 0
        # decoders' KV grows; keep per-call allocations in step lazily (kv recomputed on stop/finish)
        st.steps += k
        st.chunks += 1
        st.busy_time += dt
        self.ran = ran
        self.ran_seconds = dt
        self.ran_work = work
        self.work_clock += work
        end = now + dt
        self.busy_until = end
        return end
