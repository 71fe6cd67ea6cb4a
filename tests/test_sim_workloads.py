"""Workload generators: seeded, Poisson arrivals, per-program means near the paper's."""

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

from autellix.sim.workloads import PROFILES, generate, sample_calls

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_same_seed_same_trace_and_different_seed_differs():
    assert generate("bfcl", 2.0, 50, seed=3) == generate("bfcl", 2.0, 50, seed=3)
    assert generate("bfcl", 2.0, 50, seed=3) != generate("bfcl", 2.0, 50, seed=4)


@pytest.mark.parametrize(
    ("workload", "n", "calls", "prompt", "output"),
    [("sharegpt", 1500, 6.66, 256, 277), ("bfcl", 1500, 10.75, 735, 34), ("lats", 150, 159.7, 467, 73)],
)
def test_means_are_near_the_paper(workload, n, calls, prompt, output):
    progs = generate(workload, 1.0, n, seed=1)
    all_calls = [c for p in progs for c in p.calls]
    assert statistics.mean(len(p.calls) for p in progs) == pytest.approx(calls, rel=0.15)
    assert statistics.mean(c.prompt_tokens for c in all_calls) == pytest.approx(prompt, rel=0.1)
    assert statistics.mean(c.output_tokens for c in all_calls) == pytest.approx(output, rel=0.1)


def test_poisson_arrivals_at_the_rate():
    progs = generate("sharegpt", 4.0, 2000, seed=2)
    gaps = [b.arrival - a.arrival for a, b in zip(progs, progs[1:])]
    assert min(gaps) >= 0
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.08)
    assert statistics.stdev(gaps) == pytest.approx(0.25, rel=0.1)  # exponential: sd = mean


def test_lats_fans_out_and_joins_and_mixed_has_all_three():
    (p,) = generate("lats", 1.0, 1, seed=5)
    roots = [c for c in p.calls if not c.parents]
    assert len(roots) == 5
    joins = [c for c in p.calls if len(c.parents) == 5]
    assert joins and all(len(c.parents) in (1, 5) for c in p.calls if c.parents)
    kinds = {q.workload for q in generate("mixed", 1.0, 60, seed=1)}
    assert kinds == {"sharegpt", "bfcl", "lats"}


@pytest.mark.parametrize(("args", "msg"), [(("chat", 1.0, 1), "unknown workload"), (("bfcl", 0.0, 1), "rate"),
                                           (("bfcl", 1.0, -1), "programs")])
def test_bad_arguments(args, msg):
    with pytest.raises(ValueError, match=msg):
        generate(*args)


def _is_chain(calls):
    return all(c.parents == ((f"c{i - 1}",) if i else ()) for i, c in enumerate(calls))


def test_sampling_keeps_a_share_of_every_programs_calls_and_their_heavy_tail():
    progs = generate("mixed", 2.0, 300, seed=5)
    kept = [sample_calls(p, 0.25, seed=5) for p in progs]
    assert all(1 <= len(k) <= len(p.calls) for p, k in zip(progs, kept))
    assert sum(map(len, kept)) / sum(len(p.calls) for p in progs) == pytest.approx(0.25, rel=0.1)
    # Cutting at 8 calls would make the longest program as long as most; a share keeps it long.
    assert max(map(len, kept)) > 3 * 8
    for p, k in zip(progs, kept):
        assert {c.call_id for c in k} == {f"c{i}" for i in range(len(k))}
        if p.workload != "lats":
            assert _is_chain(k) and k[0].delay == 0.0 and k[0].prefix_tokens == 0


def test_lats_keeps_whole_iterations_each_joined_by_its_evaluation():
    width = PROFILES["lats"].width
    for p in generate("lats", 1.0, 20, seed=2):
        kept = sample_calls(p, 0.25, seed=2)
        assert len(kept) % (width + 1) == 0
        for start in range(0, len(kept), width + 1):
            *expansions, evaluation = kept[start : start + width + 1]
            assert evaluation.parents == tuple(c.call_id for c in expansions)
            expected = (kept[start - 1].call_id,) if start else ()
            assert all(c.parents == expected for c in expansions)


def test_the_sample_depends_on_the_seed_and_the_program_not_on_the_rate():
    slow, fast = generate("bfcl", 1.0, 30, seed=4), generate("bfcl", 8.0, 30, seed=4)
    assert [sample_calls(p, 0.3, 4) for p in slow] == [sample_calls(p, 0.3, 4) for p in fast]
    assert [sample_calls(p, 0.3, 4) for p in slow] != [sample_calls(p, 0.3, 5) for p in slow]
    assert all(sample_calls(p, 1.0) == p.calls for p in slow if len(p.calls) == 1)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, float("nan")])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        sample_calls(generate("bfcl", 1.0, 1)[0], fraction)


def test_the_load_generator_sends_the_same_sample_the_engine_bench_runs():
    spec = importlib.util.spec_from_file_location("load_generator_example", EXAMPLES / "load_generator.py")
    load_generator = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(load_generator)
    args = argparse.Namespace(
        token_scale=1.0, max_prompt=10**6, max_output=10**6, max_calls=None, call_fraction=0.25, delay_scale=1.0, seed=7
    )
    progs = generate("mixed", 3.0, 40, seed=7)
    for program, planned in zip(progs, load_generator.plan(progs, args)):
        sampled = sample_calls(program, 0.25, seed=7)
        assert [c.call_id for c in planned.calls] == [c.call_id for c in sampled]
        assert [c.parents for c in planned.calls] == [c.parents for c in sampled]
        assert [c.output_tokens for c in planned.calls] == [c.output_tokens for c in sampled]
