"""The engine model: DAG release order and delays, token accounting, no call lost under preemption."""

import pytest

from autellix.sim.presets import EngineConfig
from autellix.sim.simulator import Simulator, simulate
from autellix.sim.trace import Call, Program
from autellix.sim.workloads import generate

# a fast, simple engine: every step takes 10 ms whatever it holds
FLAT = EngineConfig(name="flat", step_base=0.01, step_per_token=0.0, step_per_kv_token=0.0, max_running=8,
                    token_budget=4096, kv_tokens=100_000)


def _sim(programs, policy="fcfs", cfg=FLAT, **kw):
    sim = Simulator(programs, policy, config=cfg, scheduler_options={"stale_after": float("inf")}
                    if policy != "srpt" else None, **kw)
    return sim, sim.run()


def test_dag_release_order_and_delays():
    diamond = Program("d", 0.5, [
        Call("a", 100, 3, (), 0.25),
        Call("b", 100, 5, ("a",), 1.0),
        Call("c", 100, 2, ("a",), 2.0),
        Call("d", 100, 4, ("b", "c"), 0.5),
    ])
    sim, res = _sim([diamond])
    a, b, c, d = sim.programs[0].calls
    assert a.release == pytest.approx(0.75)  # root: arrival + delay
    assert b.release == pytest.approx(a.finish + 1.0)
    assert c.release == pytest.approx(a.finish + 2.0)
    assert d.release == pytest.approx(max(b.finish, c.finish) + 0.5)
    for call in (a, b, c, d):
        assert call.release <= call.start < call.finish
    # 3 output tokens = prefill step (1st token) + 2 decode steps of 10 ms
    assert a.finish - a.start == pytest.approx(0.03)
    assert sim.programs[0].finish == d.finish
    assert res.programs[0].finish - 0.5 == pytest.approx(d.finish - 0.5)


def test_zero_delay_child_joins_the_same_scheduling_point():
    prog = Program("p", 0.0, [Call("a", 10, 2), Call("b", 10, 2, ("a",))])
    sim, _ = _sim([prog])
    a, b = sim.programs[0].calls
    assert b.release == a.finish == b.start


def _totals(res):
    es = res.engine_stats[0]
    return es


@pytest.mark.parametrize("policy", ["fcfs", "plas", "srpt"])
def test_tokens_in_equal_tokens_out_without_preemption(policy):
    progs = generate("bfcl", 2.0, 40, seed=4)
    sim, res = _sim(progs, policy, FLAT.replace(max_running=64, kv_tokens=400_000))
    es = res.engine_stats[0]
    assert all(p.finish > 0 for p in res.programs)
    assert es["output_tokens"] == sum(p.output_tokens for p in progs)
    assert es["prefill_tokens"] + es["cached_tokens"] == sum(c.prompt_tokens for p in progs for c in p.calls)
    assert es["cached_tokens"] > 0  # the shared system prompt and earlier context hit the prefix cache
    assert es["kv_preemptions"] == 0 and es["core_preemptions"] == 0 or policy != "fcfs"
    eng = sim.engines[0]
    assert not eng.running and not eng.calls and eng.kv_used == 0 and eng.n_dec == 0 and eng.kv_dec == 0


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "srpt"])
def test_no_call_lost_under_kv_pressure(preemption, policy):
    progs = generate("sharegpt", 5.0, 30, seed=7)
    longest = max(c.prompt_tokens + c.output_tokens for p in progs for c in p.calls)
    cfg = FLAT.replace(max_running=16, kv_tokens=longest + 600, preemption=preemption)
    sim, res = _sim(progs, policy, cfg)
    es = res.engine_stats[0]
    assert all(p.finish > 0 for p in res.programs)
    assert all(c.generated == c.output and c.finish > 0 for c in sim.calls)
    assert es["finished_calls"] == len(sim.calls)
    assert es["output_tokens"] == sum(p.output_tokens for p in progs)  # nothing generated twice
    assert es["kv_preemptions"] + es["kv_refusals"] > 0
    prompts = sum(c.prompt_tokens for p in progs for c in p.calls)
    if preemption == "recompute":
        # every admission computes or reuses its whole context, unless preempted before its prefill ended
        assert es["prefill_tokens"] + es["cached_tokens"] + es["abandoned_prefill"] == prompts + es["readmitted_ctx"]
    else:
        assert es["swapped_tokens"] > 0 or es["kv_preemptions"] == 0
        assert es["prefill_tokens"] + es["cached_tokens"] == prompts
    eng = sim.engines[0]
    assert eng.kv_used == 0 and not eng.running and len(eng.sched) == 0


def test_call_larger_than_the_kv_cache_is_rejected():
    with pytest.raises(ValueError, match="do not fit"):
        Simulator([Program("p", 0.0, [Call("big", 900, 200)])], "srpt", config=FLAT.replace(kv_tokens=1000))


def test_step_time_model():
    cfg = EngineConfig(name="t", step_base=0.01, step_per_token=0.001, step_per_kv_token=1e-5, max_running=4,
                       token_budget=64, kv_tokens=10_000, prefix_caching=False, multi_step=100)
    # one call, prompt 10, output 3: a prefill step of 10 tokens attending 10, then 2 decode steps
    sim, res = _sim([Program("p", 0.0, [Call("a", 10, 3)])], "fcfs", cfg)
    (a,) = sim.calls
    prefill = 0.01 + 0.001 * 10 + 1e-5 * 10
    decode = 2 * (0.01 + 0.001) + 1e-5 * (11 + 12)
    assert a.finish == pytest.approx(prefill + decode)
    assert res.engine_stats[0]["steps"] == 3


def test_multi_engine_balancers_complete_everything():
    progs = generate("mixed", 1.0, 12, seed=2)
    for bal in ("autellix", "least-used", "round-robin"):
        res = simulate(progs, "atlas", engines=3, balancer=bal, config=FLAT.replace(max_running=64))
        assert all(p.finish > 0 for p in res.programs)
        assert sum(e["finished_calls"] for e in res.engine_stats) == sum(len(p.calls) for p in progs)
        assert sum(e["output_tokens"] for e in res.engine_stats) == sum(p.output_tokens for p in progs)


@pytest.mark.parametrize("chunked", [True, False])
def test_prefill_steps_with_and_without_chunked_prefill(chunked):
    # step = 10 ms + 1 ms per token; a decodes when b's 20-token prompt arrives
    cfg = EngineConfig(name="t", step_base=0.01, step_per_token=0.001, step_per_kv_token=0.0, max_running=4,
                       token_budget=64, kv_tokens=10_000, prefix_caching=False, multi_step=1,
                       chunked_prefill=chunked)
    sim, res = _sim([Program("p", 0.0, [Call("a", 10, 5)]), Program("q", 0.015, [Call("b", 20, 2)])], "fcfs", cfg)
    a, b = sim.calls
    if chunked:
        # 0.02: a's decode token rides with b's prefill (21 tokens); both decode; then a alone
        assert b.finish == pytest.approx(0.02 + 0.031 + 0.012)
        assert a.finish == pytest.approx(b.finish + 2 * 0.011)
    else:
        # 0.02: a prefill-only step (20 tokens) in which a waits; both decode; then a alone (3 tokens)
        assert b.finish == pytest.approx(0.02 + 0.030 + 0.012)
        assert a.finish == pytest.approx(b.finish + 3 * 0.011)
    assert res.engine_stats[0]["output_tokens"] == 7


@pytest.mark.parametrize("policy", ["fcfs", "plas"])
def test_no_chunked_prefill_keeps_token_accounting(policy):
    progs = generate("bfcl", 3.0, 40, seed=5)
    longest = max(c.prompt_tokens + c.output_tokens for p in progs for c in p.calls)
    cfg = FLAT.replace(max_running=16, token_budget=512, kv_tokens=longest + 3000, chunked_prefill=False)
    sim, res = _sim(progs, policy, cfg)
    es = res.engine_stats[0]
    assert all(c.generated == c.output and c.finish > 0 for c in sim.calls)
    assert es["output_tokens"] == sum(p.output_tokens for p in progs)
    prompts = sum(c.prompt_tokens for p in progs for c in p.calls)
    assert es["kv_preemptions"] + es["kv_refusals"] > 0
    # abandoned: admitted, then preempted before its prefill step came
    assert es["prefill_tokens"] + es["cached_tokens"] + es["abandoned_prefill"] == prompts + es["readmitted_ctx"]
    eng = sim.engines[0]
    assert eng.kv_used == 0 and not eng.running and eng.n_dec == 0 and eng.kv_dec == 0


class _CreditRecorder:
    """A real core (fcfs) that also records the service each call is credited."""

    def __init__(self):
        from autellix.sim.simulator import load_core

        self.core = load_core().Scheduler(policy="fcfs", stale_after=float("inf"))
        self.credited: dict[int, float] = {}

    def step(self, now, capacity, ran=(), ran_seconds=0.0, *rest):
        for cid in ran:
            self.credited[cid] = self.credited.get(cid, 0.0) + ran_seconds
        return self.core.step(now, capacity, ran, ran_seconds, *rest)

    def record_service_each(self, call_ids, amounts, now):
        for cid, amount in zip(call_ids, amounts, strict=True):
            self.credited[cid] = self.credited.get(cid, 0.0) + amount
        self.core.record_service_each(call_ids, amounts, now)

    def __getattr__(self, name):
        return getattr(self.core, name)


@pytest.mark.parametrize("clock", ["work", "step-work"])
def test_a_decoder_beside_a_prefill_is_credited_its_own_token_or_the_steps_work(clock):
    from autellix.work_units import PREFILL_TOKENS_PER_UNIT, call_units

    # a decodes alone until b's 300-token prompt is prefilled in one step beside a's decode token.
    cfg = FLAT.replace(multi_step=1, token_budget=512, prefix_caching=False)
    recorder = _CreditRecorder()
    sim = Simulator([Program("p", 0.0, [Call("a", 10, 6)]), Program("q", 0.025, [Call("b", 300, 2)])], "fcfs",
                    config=cfg, scheduler_factory=lambda _: recorder, clock=clock)
    sim.run()
    a, b = (call.cid for call in sim.calls)
    shared_prefill = 299 / PREFILL_TOKENS_PER_UNIT  # b's prompt beyond the token the step samples
    # a: its own prefill, then one unit per decode token; under step work also b's prefill step.
    assert recorder.credited[a] == pytest.approx(call_units(10) + 5 + (shared_prefill if clock == "step-work" else 0))
    # b: its prefill (the step's work either way: its chunk is all the step's prefill), one decode.
    assert recorder.credited[b] == pytest.approx(call_units(300) + 1)
