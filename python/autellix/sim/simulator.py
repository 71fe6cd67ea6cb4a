"""The discrete-event simulator: programs (DAGs of calls) arrive, their calls are released once their
parents are done and their delay has passed, are routed to an engine by the core's load balancer, and
each engine is driven by its own scheduler (the Rust core for ``fcfs``/``mlfq``/``plas``/``atlas``,
the Python oracle for ``srpt``).

Events: a call release, the end of an engine's chunk, an idle engine's wake-up. Calls released at the
same instant as a scheduling point of their engine (children with no delay) join that very point.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autellix import work_units
from autellix.contract import CORE_POLICIES
from autellix.sim.engine import WORK_CLOCKS, Engine, SimCall, SimProgram
from autellix.sim.gittins import GittinsRank
from autellix.sim.presets import EngineConfig, get_preset
from autellix.sim.srpt import SrptKnowledge, SrptScheduler, call_work
from autellix.sim.trace import Program

__all__ = ["CORE_POLICIES", "POLICIES", "BALANCERS", "SimResult", "Simulator", "simulate", "load_core"]

POLICIES = (*CORE_POLICIES, "srpt")
BALANCERS = ("autellix", "least-used", "round-robin")

RELEASE, CHUNK, WAKE = 0, 1, 2

# A scheduler option the simulator takes for itself: the programs' clients tell the core how many
# calls each has left (`Scheduler.set_calls_left`) with every call, from a budget of up to
# 1 + this many times the calls it makes (0: the exact count), drawn per program.
CLIENT_CALLS_LEFT = "client_calls_left"
BUDGET_SEED = 0


def load_core() -> Any:
    try:
        import autellix_core
    except ImportError as e:  # pragma: no cover - depends on the build
        raise RuntimeError(
            "the Rust core `autellix_core` is not built: run `maturin develop` in the repository root"
        ) from e
    return autellix_core


@dataclass
class SimResult:
    policy: str
    engines: int
    balancer: str | None
    programs: list[SimProgram]
    engine_stats: list[dict[str, float]]
    scheduler_stats: list[dict[str, Any]]
    wall_seconds: float
    events: int
    config: EngineConfig
    extra: dict[str, Any] = field(default_factory=dict)


class Simulator:
    def __init__(
        self,
        programs: Sequence[Program],
        policy: str = "plas",
        engines: int = 1,
        balancer: str = "autellix",
        config: EngineConfig | None = None,
        scheduler_options: dict[str, Any] | None = None,
        short_call_tokens: int = 2048,
        scheduler_factory: Callable[[int], Any] | None = None,
        clock: str = "work",
    ):
        if policy not in POLICIES and scheduler_factory is None:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        if engines < 1:
            raise ValueError(f"engines must be >= 1, got {engines}")
        if balancer not in BALANCERS:
            raise ValueError(f"unknown balancer {balancer!r}; choose from {', '.join(BALANCERS)}")
        self.cfg = config or get_preset("a100-llama8b")
        self.policy = policy
        self.balancer_name = balancer if engines > 1 else None
        self.programs: list[SimProgram] = []
        self.calls: list[SimCall] = []
        opts = dict(scheduler_options or {})
        self.calls_left_slack = self._client_hints(opts.pop(CLIENT_CALLS_LEFT, None), policy)
        self.knowledge = SrptKnowledge.from_options(opts) if policy == "srpt" else SrptKnowledge()
        self._build(programs)
        if clock in WORK_CLOCKS and policy in CORE_POLICIES and policy != "fcfs" and "queue_boundaries" not in opts:
            # What the vLLM plug-in runs with: the ladder in engine work units.
            opts["queue_boundaries"] = list(work_units.QUEUE_BOUNDARIES)
            opts.setdefault("quanta", list(work_units.QUANTA))
        core = None
        if scheduler_factory is None and policy in CORE_POLICIES:
            core = load_core()
        self.engines: list[Engine] = []
        for i in range(engines):
            if scheduler_factory is not None:
                sched = scheduler_factory(i)
            elif policy == "srpt":
                sched = SrptScheduler(self._remaining, refresh_on_arrival=self.knowledge.knows == "issued")
            else:
                assert core is not None
                sched = core.Scheduler(policy=policy, **opts)
            self.engines.append(Engine(i, self.cfg, sched, pass_parents=(policy == "atlas"), clock=clock))
        self.balancer = None
        if engines > 1:
            if core is None:
                core = load_core()
            self.balancer = core.LoadBalancer(engines, short_call_tokens=short_call_tokens, policy=balancer)
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.completed = 0
        self.n_events = 0

    @staticmethod
    def _client_hints(slack: Any, policy: str) -> float | None:
        if slack is None:
            return None
        if policy not in CORE_POLICIES:
            raise ValueError(f"{CLIENT_CALLS_LEFT} is told to the core; policy {policy!r} is not one of its")
        if not (isinstance(slack, (int, float)) and math.isfinite(slack) and slack >= 0):
            raise ValueError(f"{CLIENT_CALLS_LEFT} must be a finite number >= 0, got {slack!r}")
        return float(slack)

    def _remaining(self, program_index: int) -> float:
        program = self.programs[program_index]
        # A learned rank changes as programs end: taken afresh each time a call is queued.
        return self._gittins_rank(program) if self.knowledge.learns and program.left else program.known_left

    def _build(self, programs: Sequence[Program]) -> None:
        cid = 0
        limit = self.cfg.kv_tokens
        estimate = self.knowledge.estimator()
        budgets = random.Random(BUDGET_SEED)
        knows_future = self.knowledge.knows == "program"
        for idx, p in enumerate(programs):
            sp = SimProgram(idx, p.program_id, p.arrival, p.system_tokens, p.workload)
            by_name: dict[str, SimCall] = {}
            for c in p.calls:
                if c.prompt_tokens + c.output_tokens + 1 > limit:
                    raise ValueError(
                        f"program {p.program_id!r} call {c.call_id!r}: {c.prompt_tokens + c.output_tokens} tokens "
                        f"do not fit in the engine's KV cache of {limit} tokens"
                    )
                sc = SimCall(cid, sp, c.call_id, c.prompt_tokens, c.output_tokens, c.prefix_tokens, c.delay)
                cid += 1
                sc.work = call_work(c.prompt_tokens, c.output_tokens)
                sc.estimate = estimate(sc.work)
                if knows_future:
                    sp.known_left += sc.estimate
                for name in c.parents:
                    parent = by_name[name]
                    sc.parents.append(parent)
                    parent.children.append(sc)
                sc.pending = len(sc.parents)
                by_name[c.call_id] = sc
                sp.calls.append(sc)
                self.calls.append(sc)
            sp.left = len(sp.calls)
            sp.output_tokens = sum(c.output for c in sp.calls)
            if self.calls_left_slack is not None:
                sp.budget = math.ceil(len(sp.calls) * (1.0 + self.calls_left_slack * budgets.random()))
            self.programs.append(sp)
        self.ended_work: list[float] = []  # srpt learning the distribution: the ended programs' work
        self.learned: GittinsRank | None = None
        if self.knowledge.ranks_by_gittins:
            self.gittins_by_kind = self.knowledge.knows == "distribution by kind"
            self.gittins = {} if self.knowledge.learns else self._gittins_ranks()
            for sp in self.programs:
                sp.known_left = self._gittins_rank(sp)

    def _gittins_kind(self, program: SimProgram) -> str | None:
        return program.workload if self.gittins_by_kind else None

    def _gittins_ranks(self) -> dict[str | None, GittinsRank]:
        """The distribution of programs' total work, of each workload apart or of all together, as
        a predictor learned from finished programs would know it (here from the whole trace: the
        best such a predictor can do)."""
        totals: dict[str | None, list[float]] = defaultdict(list)
        for sp in self.programs:
            totals[self._gittins_kind(sp)].append(sum(c.estimate for c in sp.calls))
        return {kind: GittinsRank(works) for kind, works in totals.items()}

    def _gittins_rank(self, program: SimProgram) -> float:
        if self.knowledge.learns:
            rank = program.attained if self.learned is None else self.learned(program.attained)
        else:
            rank = self.gittins[self._gittins_kind(program)](program.attained)
        return self.knowledge.on_ladder(rank)

    def _program_ended(self, program: SimProgram) -> None:
        """Learning the distribution: the table is rebuilt once an eighth more programs ended."""
        self.ended_work.append(program.attained)
        ended, learned_from = len(self.ended_work), len(self.learned.totals) if self.learned else 0
        if ended >= SrptKnowledge.LEARNS_FROM and ended - learned_from >= max(1, learned_from // 8):
            self.learned = GittinsRank(self.ended_work)

    def _push(self, t: float, kind: int, obj: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, obj))

    def _release(self, call: SimCall, now: float, current: Engine | None = None) -> None:
        call.release = now
        program = call.program
        if self.calls_left_slack is not None:  # the client's budget less the calls made so far
            call.calls_left = max(1, program.budget - program.released)
        program.released += 1
        if self.knowledge.knows == "issued":
            program.known_left += call.estimate
        if self.balancer is not None:
            e = self.engines[self.balancer.route(call.program.index, call.prompt)]
        else:
            e = self.engines[0]
        e.add(call)
        if e is not current and e.busy_until is None and not e.wake_pending:
            e.wake_pending = True
            self._push(now, WAKE, e)

    def _finished(self, engine: Engine, done: list[SimCall], now: float) -> None:
        for call in done:
            if self.balancer is not None:
                self.balancer.release(engine.index)
            prog = call.program
            if self.knowledge.ranks_by_gittins:
                prog.attained += call.estimate
                prog.known_left = self._gittins_rank(prog)
            else:
                prog.known_left -= call.estimate
            for child in call.children:
                child.pending -= 1
                if child.pending == 0:
                    if child.delay > 0:
                        self._push(now + child.delay, RELEASE, child)
                    else:
                        self._release(child, now, engine)
            prog.left -= 1
            if prog.left == 0:
                prog.finish = now
                prog.known_left = 0.0
                if self.knowledge.learns:
                    self._program_ended(prog)
                self.completed += 1
                if self.balancer is not None:
                    self.balancer.forget(prog.index)
                for ei in prog.engines:
                    self.engines[ei].to_end.append(prog.index)

    def run(self, progress: Callable[[int, int, float], None] | None = None,
            wall_limit: float | None = None) -> SimResult:
        """Runs to completion; with ``wall_limit`` (seconds of real time) it stops early and the result
        says ``stopped_early`` (programs not finished have ``finish`` = -1)."""
        t0 = time.perf_counter()
        stopped = False
        for p in self.programs:
            for c in p.calls:
                if not c.parents:
                    self._push(p.arrival + c.delay, RELEASE, c)
        events = self.events
        pop = heapq.heappop
        total = len(self.programs)
        n = 0
        while events:
            now, _, kind, obj = pop(events)
            n += 1
            if kind == CHUNK:
                done = obj.complete_chunk(now)
                if done:
                    self._finished(obj, done, now)
                end = obj.schedule(now)
                if end is not None:
                    self._push(end, CHUNK, obj)
            elif kind == RELEASE:
                self._release(obj, now)
            else:
                obj.wake_pending = False
                if obj.busy_until is None:
                    end = obj.schedule(now)
                    if end is not None:
                        self._push(end, CHUNK, obj)
            if n % 4096 == 0:
                if progress is not None:
                    progress(self.completed, total, now)
                if wall_limit is not None and time.perf_counter() - t0 > wall_limit:
                    stopped = True
                    break
        self.n_events = n
        if not stopped:
            for e in self.engines:
                e.flush_ends()
        if progress is not None:
            progress(self.completed, total, now if n else 0.0)
        wall = time.perf_counter() - t0
        sched_stats = []
        for e in self.engines:
            s = e.sched
            if hasattr(s, "stats"):
                sched_stats.append(dict(s.stats()))
            else:
                sched_stats.append({"preemptions": getattr(s, "preemptions", 0)})
        return SimResult(
            policy=self.policy,
            engines=len(self.engines),
            balancer=self.balancer_name,
            programs=self.programs,
            engine_stats=[e.stats.as_dict() for e in self.engines],
            scheduler_stats=sched_stats,
            wall_seconds=wall,
            events=n,
            config=self.cfg,
            extra={"stopped_early": stopped, "sim_time": now if n else 0.0},
        )


def simulate(programs: Sequence[Program], policy: str = "plas", engines: int = 1, balancer: str = "autellix",
             config: EngineConfig | None = None, scheduler_options: dict[str, Any] | None = None,
             progress: Callable[[int, int, float], None] | None = None, short_call_tokens: int = 2048,
             wall_limit: float | None = None, clock: str = "work") -> SimResult:
    """Runs ``programs`` to completion and returns the per-program outcome and engine statistics.

    Core policies get ``stale_after=inf`` unless given: the simulator ends programs itself, and a
    program that waits longer than the core's staleness limit under overload must not vanish.
    ``clock`` is the scheduler's: engine work units (as in vLLM, with the ladder of
    :mod:`autellix.work_units` unless options give one), each call in a step credited its own work
    (``"work"``) or the step's (``"step-work"``); or ``"seconds"`` of simulated time."""
    opts = dict(scheduler_options or {})
    if policy in CORE_POLICIES:
        opts.setdefault("stale_after", float("inf"))
    sim = Simulator(programs, policy, engines, balancer, config, opts, short_call_tokens, clock=clock)
    return sim.run(progress, wall_limit)
