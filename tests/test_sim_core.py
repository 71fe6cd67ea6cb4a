"""The simulator applies exactly what the Rust core decides, and the core's policies behave as
expected on small cases; the srpt oracle beats fcfs."""

import math
import statistics

import autellix_core
import pytest

from autellix.sim.metrics import summarize
from autellix.sim.presets import EngineConfig
from autellix.sim.simulator import Simulator, simulate
from autellix.sim.srpt import SrptKnowledge, SrptScheduler
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import generate

FLAT = EngineConfig(name="flat", step_base=0.01, step_per_token=1e-5, step_per_kv_token=0.0, max_running=6,
                    token_budget=512, kv_tokens=100_000)


class Recorder:
    """Wraps the core: before every step it checks that the engine's running set is the core's, and it
    records every decision the core returns."""

    def __init__(self, core, engine_ref):
        self.core = core
        self.engine_ref = engine_ref
        self.decisions = []
        self.checked = 0

    def step(self, now, capacity, ran=(), ran_seconds=0.0, finished=(), new_calls=(), new_programs=(),
             new_parents=None):
        engine = self.engine_ref[0]
        # the engine has already dropped the calls it reports finished in this step
        assert set(engine.running) | set(finished) == set(self.core.running())
        assert set(ran) <= set(self.core.running())
        assert len(engine.calls) + len(finished) == len(self.core) + len(new_calls)
        self.checked += 1
        d = self.core.step(now, capacity, ran, ran_seconds, finished, new_calls, new_programs, new_parents)
        self.decisions.append((list(d.admit), list(d.preempt)))
        return d

    def record_service_each(self, ids, amounts, now):
        assert set(ids) <= set(self.core.running())
        self.core.record_service_each(ids, amounts, now)

    def requeue(self, ids, now):
        self.core.requeue(ids, now)

    def end_program(self, pid):
        return self.core.end_program(pid)

    def stats(self):
        return self.core.stats()


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas"])
def test_engine_applies_the_core_decisions(policy):
    progs = generate("mixed", 3.0, 8, seed=11)
    ref = [None]
    rec = []

    def factory(i):
        r = Recorder(autellix_core.Scheduler(policy=policy, stale_after=float("inf"), **(
            {"queue_boundaries": [0.05, 0.1, 0.2], "quanta": [0.05, 0.05, 0.1, 0.2]} if policy != "fcfs" else {})), ref)
        rec.append(r)
        return r

    sim = Simulator(progs, policy, config=FLAT, scheduler_factory=factory)
    ref[0] = sim.engines[0]
    sim.engines[0].pass_parents = policy == "atlas"
    sim.engines[0].decision_log = []
    res = sim.run()
    assert all(p.finish > 0 for p in res.programs)
    (r,) = rec
    assert r.checked > 50
    assert sim.engines[0].decision_log == r.decisions  # applied in the core's order, nothing else
    admitted = [cid for adm, _ in r.decisions for cid in adm]
    stats = r.core.stats()
    assert stats["admitted"] == len(admitted) - res.engine_stats[0]["kv_refusals"]
    assert stats["finished"] == len(sim.calls)
    if policy != "fcfs":
        assert stats["preemptions"] == res.engine_stats[0]["core_preemptions"] > 0
    else:
        assert stats["preemptions"] == 0
    assert len(r.core) == 0


def test_admission_order_is_the_core_order():
    # one slot: the calls run one at a time in exactly the order the core admits them
    progs = [Program(f"p{i}", 0.001 * i, [Call("a", 50, 5 + i)]) for i in range(5)]
    ref = [None]
    recs = []

    def factory(i):
        recs.append(Recorder(autellix_core.Scheduler(policy="fcfs", stale_after=float("inf")), ref))
        return recs[0]

    sim = Simulator(progs, "fcfs", config=FLAT.replace(max_running=1), scheduler_factory=factory)
    ref[0] = sim.engines[0]
    sim.run()
    order = [cid for adm, _ in recs[0].decisions for cid in adm]
    by_start = [c.cid for c in sorted(sim.calls, key=lambda c: c.start)]
    assert order == by_start == [0, 1, 2, 3, 4]


def test_plas_lets_a_new_short_program_pass_a_long_one():
    # a program that already had engine time vs a fresh one; one slot
    long_prog = Program("long", 0.0, [Call("a", 50, 100), Call("b", 50, 200, ("a",))])
    short = Program("short", 1.1, [Call("a", 50, 10)])
    cfg = FLAT.replace(max_running=1)
    opts = {"queue_boundaries": [0.5], "quanta": [1e9, 1e9]}
    plas = simulate([long_prog, short], "plas", config=cfg, scheduler_options=opts)
    fcfs = simulate([long_prog, short], "fcfs", config=cfg)
    short_plas = plas.programs[1].finish - 1.1
    short_fcfs = fcfs.programs[1].finish - 1.1
    assert short_plas < short_fcfs / 5


def test_srpt_beats_fcfs_on_a_tiny_case():
    progs = [Program("big", 0.0, [Call("a", 100, 400)]),
             Program("s1", 0.05, [Call("a", 100, 10)]),
             Program("s2", 0.06, [Call("a", 100, 20), Call("b", 100, 10, ("a",))])]
    cfg = FLAT.replace(max_running=1)
    fcfs = summarize(simulate(progs, "fcfs", config=cfg))
    srpt = summarize(simulate(progs, "srpt", config=cfg))
    assert srpt["completed"] == fcfs["completed"] == 3
    assert srpt["mean_latency"] < fcfs["mean_latency"] / 2
    assert srpt["mean_token_latency"] < fcfs["mean_token_latency"] / 5
    assert srpt["preemptions"] >= 1


def test_srpt_not_worse_than_fcfs_on_a_loaded_workload():
    progs = generate("sharegpt", 6.0, 300, seed=2)
    cfg = FLAT.replace(max_running=32)
    fcfs = summarize(simulate(progs, "fcfs", config=cfg))
    srpt = summarize(simulate(progs, "srpt", config=cfg))
    assert srpt["mean_token_latency"] < fcfs["mean_token_latency"]


def test_srpt_that_knows_only_issued_calls_cannot_see_a_long_future():
    # One slot, both programs arrive at once: "chain" is a short call then a long one, "single" one
    # middling call. Knowing the future, srpt runs single first (100 left against 410); knowing only
    # the calls issued, it sees 10 against 100 and runs chain's first call first.
    progs = [Program("chain", 0.0, [Call("a", 50, 10), Call("b", 50, 400, ("a",))]),
             Program("single", 0.0, [Call("a", 50, 100)])]
    cfg = FLAT.replace(max_running=1)
    full = simulate(progs, "srpt", config=cfg)
    issued = simulate(progs, "srpt", config=cfg, scheduler_options={"knows": "issued"})
    assert full.programs[1].calls[0].start < full.programs[0].calls[0].start
    assert issued.programs[0].calls[0].start < issued.programs[1].calls[0].start


def test_srpt_estimates_are_off_by_a_log_normal_factor_of_the_given_spread():
    estimate = SrptKnowledge(error=0.5, error_seed=3).estimator()
    logs = [math.log(estimate(2.0) / 2.0) for _ in range(20_000)]
    assert abs(statistics.fmean(logs)) < 0.02
    assert abs(statistics.stdev(logs) - 0.5) < 0.02
    assert SrptKnowledge().estimator()(7.0) == 7.0


@pytest.mark.parametrize("options, field", [({"queue_boundaries": [1.0]}, "queue_boundaries"), ({"knows": "everything"}, "knows"),
                                            ({"error": -1.0}, "error"), ({"error": float("nan")}, "error"),
                                            ({"ladder": 1, "knows": "distribution"}, "ladder"),
                                            ({"ladder": (2.0, 1.0), "knows": "distribution"}, "ladder"),
                                            ({"ladder": (1.0, float("nan")), "knows": "ended programs"}, "ladder"),
                                            ({"ladder": (1.0,)}, "ladder")])  # fmt: skip
def test_srpt_rejects_options_it_does_not_take_naming_them(options, field):
    with pytest.raises(ValueError, match=field):
        simulate([Program("p", 0.0, [Call("a", 50, 10)])], "srpt", config=FLAT, scheduler_options=options)


def test_srpt_tells_the_engine_where_a_call_that_moved_twice_in_a_decision_ends_up():
    # An estimate that changes between pushes: X is admitted, preempted for Y, then admitted again.
    estimates = iter([1.0, 10.0, 0.0, 1.0])
    sched = SrptScheduler(lambda program: next(estimates) if program == 1 else 2.0)
    sched.add_call(1, 1, 0.0)  # X, queued at 1.0
    sched.add_call(2, 2, 0.0)  # Y, 2.0
    decision = sched.schedule(0.0, capacity=1)
    assert (decision.admit, decision.preempt) == ([1], [])
    assert sched.n_running == 1 and sched.calls[1].running
