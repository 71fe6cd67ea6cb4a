"""Engine work units: the clock the scheduler runs on inside vLLM and in the simulator.

A program's attained service measured in seconds depends on the hardware (a step takes 25 ms on
an A100 and 30-300 ms on a CPU), so a queue ladder in seconds fits one engine and not another.
Measured in engine work it is a property of the workload: one unit is one decode token, and P
prompt tokens of prefill are P / PREFILL_TOKENS_PER_UNIT more (128 tokens a unit). Each call in a
step is credited its own work (`call_units`: its decode token plus its own prefill), and waiting
time is the work the mean call got meanwhile (the core's clock moves by `mean_call_units` a step),
so waiting and service are in one unit for the anti-starvation ratio. The ladder below is then the
same on every engine, and needs no tuning.

`own_work_credit` (plug-in setting, on by default; off = step crediting) is what makes service a
property of the call rather than of the batch it ran in. Crediting every call the step's work (as a
wall clock would) lets newcomers' prompts demote a whole batch at once: under a deep queue with a
large batch (bench/plugin_step.py, plas, 10,000 waiting, B = 64 / 256) the demoted calls are
preempted and recompute, and that prefill demotes the next batch (16.5 / 74.5 preemptions a step
against own-work crediting's 0.5 / 2.2), a storm a GPU-sized batch (256 calls, 2,048-8,192 tokens a
step) would meet under overload. In the simulator (A100 preset, bench/results/sim/srpt-gap.*) own
crediting is at parity or ahead of step crediting at 10x the unloaded latency on every workload
(sharegpt 4.70 / 4.61, bfcl 4.86 / 4.85, lats 0.626 / 0.596, mixed 2.32 / 2.28 programs/s). On the
real CPU engine (8 slots) it is at parity since the anti-starvation fix (bench/results/engine/
probe-own-credit-after-fix.*, and the deep runs named in bench/README.md). The simulator's `work`
clock credits the same way; its `step-work` clock is the old step crediting.

The core itself is unit-free: these are the values the plug-in and the simulator give it.
"""

from __future__ import annotations

# Prompt tokens whose prefill counts as one decode step. A prefill token costs ~1/100 of a decode
# step on an A100 and ~1/10 on our CPU engine. Every call in a step is credited the step's units,
# so heavy prefill weights demote the whole batch in a burst of new programs: in the simulator 128
# beat 32 on every workload and preset tried (A100 mixed at 3x capacity 69.5 vs 92.3 ms/token,
# bfcl 221 vs 269; CPU preset within 1-3 %, bench/sim/README.md).
PREFILL_TOKENS_PER_UNIT = 128

# Attained-service boundaries of the queues (15 queues): a program moves down once it has had
# 8 decode steps of engine work, again at 16, 32, ... The paper's calls are 10s to 1000s of
# tokens, its programs up to 10^5, so the ladder spans a one-line tool call to a long agent run.
# The bottom reaches 65536 for programs ranked by the work their clients say is left: most LATS
# programs have more than 8192 units to do, and with the ladder ending there they all shared the
# last queue, oldest first (simulator, A100, lats, exact counts: 0.80x of srpt at 10x the unloaded
# latency with the bottom at 8192, 0.92x at 65536; unhinted programs unchanged on every workload).
# The top starts fine: with a first boundary of 64 a burst of short programs (bfcl) all shared the
# top queue, served oldest program first, and plas lost to vLLM (70.9 against 42.5 ms/token);
# with 8, 16, 32 on top it won (36.1), mixed unchanged (bench/results/engine/probe-*-ladder.*).
QUEUE_BOUNDARIES = (
    8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0
)
# A running call moves down one queue after a quantum: its queue's range width (the pace its
# program's attained service would move it), but at least MIN_QUANTUM; the last queue's quantum is
# the widest range. The floor keeps the fine top from preempting calls before they can finish:
# with quanta of 8 units a call is demoted a few tokens after its prefill, so under a deep queue of
# fresh programs (bench/plugin_step.py, plas, 10,000 waiting, B = 64 / 256) nearly every running call
# was preempted before finishing, 11.7 / 21.4 preemptions and 4,587 / 7,912 tokens a step against
# vLLM's 479 / 1,810, and no call finished at B = 64; with the floor 0.72 / 2.96 and 553 / 2,143.
# On the real engine it was level or ahead (bench/results/engine/probe-*-quanta.*: bfcl burst 44.1
# against 46.3 ms/token, vLLM 45.1; mixed 4.5 / 20.0 against 4.5 / 20.4 at 2.8 / 30 programs/s,
# vLLM 4.4 / 94.0), with half the preemptions.
MIN_QUANTUM = 64.0
QUANTA = (
    64.0, 64.0, 64.0, 64.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 32768.0
)
# Programs with no live call are dropped after this much engine work (the front end ends them
# on its own idle TTL in seconds; this bounds the table when the plug-in runs without it).
STALE_AFTER = 1_000_000.0


def step_units(scheduled_tokens: int, scheduled_calls: int) -> float:
    """The work of one engine step that ran `scheduled_calls` calls on `scheduled_tokens` tokens:
    one decode token per call, the rest prefill. The engine's clock."""
    prefill = max(scheduled_tokens - scheduled_calls, 0)
    return 1.0 + prefill / PREFILL_TOKENS_PER_UNIT


def call_units(scheduled_tokens: int) -> float:
    """One call's own work in a step where it ran `scheduled_tokens` tokens: its service under
    `own_work_credit`. (The plug-in's EngineAdapter applies the same rule in Rust, `ran_tokens`.)"""
    return step_units(scheduled_tokens, 1)


def mean_call_units(scheduled_tokens: int, scheduled_calls: int) -> float:
    """The mean of `call_units` over a step's calls: how far the core's clock moves in the step
    under `own_work_credit`, so a waiting call waits in the unit running calls are served in."""
    return 1.0 + max(scheduled_tokens - scheduled_calls, 0) / (PREFILL_TOKENS_PER_UNIT * scheduled_calls)


def core_defaults() -> dict[str, object]:
    """The core's ladder, quanta and staleness in work units."""
    return {"queue_boundaries": list(QUEUE_BOUNDARIES), "quanta": list(QUANTA), "stale_after": STALE_AFTER}
