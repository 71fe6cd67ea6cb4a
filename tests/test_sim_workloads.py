"""Workload generators: seeded, Poisson arrivals, per-program means near the paper's."""

import statistics

import pytest

from autellix.sim.workloads import generate


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
