"""What the Autellix plug-in adds per engine step over vLLM's own scheduler.

No engine, no model, no GPU: vLLM's `Scheduler` and `autellix.vllm.scheduler.AutellixScheduler`
are built directly (as vLLM's own scheduler unit tests do) on the same `VllmConfig` (the `tiny`
model's config, block size 16, prefix caching and chunked prefill on, KV blocks for the batch), and
driven step by step the way `EngineCore.step` drives them: `schedule()`, then a `ModelRunnerOutput`
that samples one token for every scheduled call (none for a prefill chunk that does not finish its
prompt, as the model runner does), then `update_from_output()`. The load is closed: B + Q calls
are live at any time, so at steady state B run (`max_num_seqs` = B) and Q wait, and each step as
many new calls arrive (`add_request`) as finished in it. Calls: synthetic prompts of 200-800 token
ids (the first 128 shared by the calls of a program, so the prefix cache hits), 16-128 output
tokens (`ignore_eos`), spread over (B + Q) / 8 programs (`autellix_program_id`).

Timed per step with `perf_counter_ns`: `schedule()` + `update_from_output()` + the step's
`add_request` calls (not the untimed building of `Request` objects, which the engine does on its
input thread, nor of the model output). Both schedulers see the same call sequence (same seed) and
take turns run by run; a run's figure is its median (and p99) step after a warm-up; the summary is
the median over runs. The plug-in's own `core_seconds` (its time in `schedule()` before vLLM's)
per step is reported from `scheduler.autellix_stats`. Two policies: `plas` (the plug-in's
default) and `fcfs`, whose core decides what vLLM's FCFS queue would (no priority preemptions), so
what it adds is the plug-in's bookkeeping alone.

    python bench/plugin_step.py            # {plas, fcfs} x B in (64, 256) x Q in (100, 10000), 5 runs each
    python bench/plugin_step.py --quick    # smoke run: few steps, 1 run, no files written unless --out
    python bench/plugin_step.py --profile  # also cProfile one Autellix run per configuration
    python bench/plugin_step.py --plugin old_scheduler.py:AutellixScheduler   # another version
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import importlib.util
import io
import itertools
import json
import logging
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
KINDS = ("vllm", "autellix")
# The plug-in measured: "module:Class", or "path/to/file.py:Class" (an earlier version of
# scheduler.py, e.g. from `git show REV:python/autellix/vllm/scheduler.py`).
DEFAULT_PLUGIN = "autellix.vllm.scheduler:AutellixScheduler"
SAMPLED_TOKEN = 100  # the token every decode step "samples"; nothing reads it
FIRST_TOKEN = 3  # the tiny model's special tokens are 0-2
OWN_TIME_GOAL_US = 10.0  # issue 10: what the plug-in may add to a step
# The plug-in's hooks overridden to do nothing: the floor its own time reads against.
HOOK_FLOOR_PLUGIN = f"{Path(__file__).parent / 'plugin_hook_floor.py'}:PassThroughScheduler"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    batch: int  # B: max_num_seqs, the calls running at steady state
    queued: int  # Q: the calls waiting at steady state
    programs: int = 0  # 0: (B + Q) // 8
    prompt_tokens: tuple[int, int] = (200, 800)
    prefix_tokens: int = 128  # shared by the calls of a program
    output_tokens: tuple[int, int] = (16, 128)
    max_batched_tokens: int = 8192
    block_size: int = 16
    policy: str = "plas"
    plugin: str = DEFAULT_PLUGIN

    @property
    def num_programs(self) -> int:
        return self.programs or max(1, (self.batch + self.queued) // 8)

    @property
    def max_model_len(self) -> int:
        return self.prompt_tokens[1] + self.output_tokens[1]

    @property
    def num_blocks(self) -> int:
        """Room for B calls at their longest, and half as much again for the prefix cache: the
        batch, not the KV cache, bounds what runs."""
        per_call = -(-self.max_model_len // self.block_size) + 1
        return self.batch * per_call * 3 // 2 + 64

    def label(self) -> str:
        return f"{self.policy}, B={self.batch}, Q={self.queued}"


@dataclass(frozen=True)
class CallSpec:
    request_id: str
    program: int
    prompt: list[int]
    max_tokens: int


class CallStream:
    """The call sequence of a seed, the same for every scheduler: built lazily, kept for reuse."""

    def __init__(self, config: Config, seed: int, vocab_size: int) -> None:
        self._config = config
        self._rng = random.Random(seed)
        # Shared int objects: the prompts' lists hold references only.
        self._vocab = list(range(FIRST_TOKEN, vocab_size))
        self._prefixes: dict[int, list[int]] = {}
        self._specs: list[CallSpec] = []

    def __getitem__(self, index: int) -> CallSpec:
        while len(self._specs) <= index:
            self._specs.append(self._make(len(self._specs)))
        return self._specs[index]

    def _make(self, index: int) -> CallSpec:
        rng, config = self._rng, self._config
        program = rng.randrange(config.num_programs)
        prefix = self._prefixes.get(program)
        if prefix is None:
            prefix = self._prefixes[program] = rng.choices(
                self._vocab, k=config.prefix_tokens
            )
        length = rng.randint(*config.prompt_tokens)
        prompt = prefix[:length] + rng.choices(
            self._vocab, k=max(0, length - len(prefix))
        )
        # vLLM appends "-" and 8 hex digits to the id it is given; the plug-in strips them.
        request_id = f"call-{index}-{rng.getrandbits(32):08x}"
        return CallSpec(request_id, program, prompt, rng.randint(*config.output_tokens))


@cache
def _model_path() -> str:
    from autellix.models import TINY_MODEL, resolve_model

    return str(resolve_model(TINY_MODEL))  # built locally on first use, no hub


def vllm_config(config: Config) -> Any:
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig

    scheduler_config = SchedulerConfig(
        max_num_seqs=config.batch,
        max_num_batched_tokens=config.max_batched_tokens,
        max_model_len=config.max_model_len,
        enable_chunked_prefill=True,
        is_encoder_decoder=False,
    )
    model_config = ModelConfig(
        model=_model_path(), dtype="float32", seed=0, max_model_len=config.max_model_len
    )
    cache_config = CacheConfig(block_size=config.block_size, enable_prefix_caching=True)
    return VllmConfig(
        scheduler_config=scheduler_config,
        model_config=model_config,
        cache_config=cache_config,
        additional_config={"autellix": {"policy": config.policy}},
    )


def make_scheduler(kind: str, config: Config) -> Any:
    """vLLM's `Scheduler` ("vllm") or the plug-in ("autellix"), on the same configuration."""
    import torch
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import (
        FullAttentionSpec,
        KVCacheConfig,
        KVCacheGroupSpec,
    )
    from vllm.v1.structured_output import StructuredOutputManager

    if kind == "vllm":
        cls: Any = Scheduler
    elif kind == "autellix":
        cls = plugin_class(config.plugin)
    else:
        raise ValueError(
            f"unknown scheduler {kind!r}: expected one of {', '.join(KINDS)}"
        )
    vc = vllm_config(config)
    vc.cache_config.num_gpu_blocks = config.num_blocks
    spec = FullAttentionSpec(
        block_size=config.block_size, num_kv_heads=1, head_size=1, dtype=torch.float32
    )
    kv_cache_config = KVCacheConfig(
        num_blocks=config.num_blocks,
        kv_cache_tensors=[],
        kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)],
    )
    return cls(
        vllm_config=vc,
        kv_cache_config=kv_cache_config,
        structured_output_manager=StructuredOutputManager(vc),
        block_size=config.block_size,
        log_stats=False,
    )


@cache
def plugin_class(plugin: str) -> Any:
    """The scheduler class named by `plugin` ("module:Class" or "file.py:Class")."""
    where, _, name = plugin.rpartition(":")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(
            f"_plugin_step_{Path(where).stem}", where
        )
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


@cache
def _block_hasher(block_size: int) -> Any:
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash

    # CacheConfig's default prefix_caching_hash_algo.
    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    return get_request_block_hasher(block_size, hash_fn)


def make_request(spec: CallSpec, block_size: int) -> Any:
    """The `Request` the engine core would build for the call (block hashes included)."""
    from autellix.contract import PROGRAM_KEY
    from vllm import SamplingParams
    from vllm.v1.request import Request

    params = SamplingParams(
        max_tokens=spec.max_tokens,
        ignore_eos=True,
        extra_args={PROGRAM_KEY: spec.program},
    )
    return Request(
        request_id=spec.request_id,
        prompt_token_ids=spec.prompt,
        sampling_params=params,
        pooling_params=None,
        block_hasher=_block_hasher(block_size),
    )


def model_output(scheduler: Any, output: Any) -> Any:
    """What the model runner returns: one sampled token per scheduled call, none for a prefill
    chunk that leaves part of its prompt for later (the runner discards that sample)."""
    from vllm.v1.outputs import ModelRunnerOutput

    req_ids = list(output.num_scheduled_tokens)
    requests = scheduler.requests
    sampled = [
        [] if requests[rid].is_prefill_chunk else [SAMPLED_TOKEN] for rid in req_ids
    ]
    return ModelRunnerOutput(
        req_ids=req_ids,
        req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
        sampled_token_ids=sampled,
        logprobs=None,
        prompt_logprobs_dict={},
        pooler_output=None,
    )


@dataclass
class RunResult:
    kind: str
    samples_ns: list[int] = field(default_factory=list)  # measured steps only
    scheduled: list[int] = field(default_factory=list)  # calls scheduled, every step
    tokens: list[int] = field(default_factory=list)  # tokens scheduled, measured steps
    running: list[int] = field(default_factory=list)  # after each measured step
    waiting: list[int] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # request ids, in finishing order
    added: int = 0
    measured_finished: int = 0  # calls finished in the measured steps
    steps: int = 0  # all steps, warm-up and drain included
    # autellix_stats over the measured steps
    plugin: dict[str, float] = field(default_factory=dict)
    scheduler: Any = None


def _finished_ids(engine_outputs: dict) -> Iterator[str]:
    for outputs in engine_outputs.values():
        for out in outputs.outputs:
            if out.finish_reason is not None:
                yield out.request_id


def run_once(
    kind: str,
    config: Config,
    stream: CallStream,
    warmup_steps: int,
    steps: int,
    drain: bool = False,
    max_calls: int | None = None,
    max_drain_steps: int = 100_000,
    profiler: cProfile.Profile | None = None,
    on_timed: Callable[[Any], None] | None = None,
    after_timed_step: Callable[[], None] | None = None,
) -> RunResult:
    """B + Q calls, then `warmup_steps` untimed and `steps` timed steps with as many arrivals a
    step as finishes (the stream's calls in order, `max_calls` in all if given); with `drain`,
    then more steps, the arrivals going on up to `max_calls`, until every call finished."""
    scheduler = make_scheduler(kind, config)
    result = RunResult(kind, scheduler=scheduler)
    population = config.batch + config.queued
    if max_calls is not None:
        population = min(population, max_calls)
    next_call = itertools.count()
    for _ in range(population):
        scheduler.add_request(make_request(stream[next(next_call)], config.block_size))
    result.added = built = population
    # Built ahead, untimed: at most B calls finish in a step.
    ready: deque[Any] = deque()
    has_stats = hasattr(scheduler, "autellix_stats")  # read anew each time: a property now
    before: dict[str, float] = {}
    gc.collect()
    perf_counter_ns = time.perf_counter_ns

    def step(arrivals: bool, timed: bool) -> None:
        nonlocal built
        arrivals = arrivals and (max_calls is None or result.added < max_calls)
        while (
            arrivals
            and len(ready) < config.batch
            and (max_calls is None or built < max_calls)
        ):
            ready.append(make_request(stream[next(next_call)], config.block_size))
            built += 1
        if profiler is not None and timed:
            profiler.enable()
        start = perf_counter_ns()
        output = scheduler.schedule()
        scheduled_ns = perf_counter_ns() - start
        runner_output = model_output(scheduler, output)  # the model's part: untimed
        start = perf_counter_ns()
        engine_outputs = scheduler.update_from_output(output, runner_output)
        if arrivals:
            for _ in range(min(population - len(scheduler.requests), len(ready))):
                scheduler.add_request(ready.popleft())
            result.added = built - len(ready)
        elapsed = scheduled_ns + perf_counter_ns() - start
        if profiler is not None and timed:
            profiler.disable()
        result.steps += 1
        result.scheduled.append(len(output.num_scheduled_tokens))
        finished = list(_finished_ids(engine_outputs))
        result.finished.extend(finished)
        if timed:
            result.measured_finished += len(finished)
            result.samples_ns.append(elapsed)
            result.tokens.append(output.total_num_scheduled_tokens)
            running, waiting = scheduler.get_request_counts()
            result.running.append(running)
            result.waiting.append(waiting)

    for _ in range(warmup_steps):
        step(arrivals=True, timed=False)
    if has_stats:
        before = dict(scheduler.autellix_stats)
    if on_timed is not None:
        on_timed(scheduler)
    for _ in range(steps):
        step(arrivals=True, timed=True)
        if after_timed_step is not None:
            after_timed_step()
    if has_stats:
        result.plugin = {k: v - before.get(k, 0.0) for k, v in scheduler.autellix_stats.items()}
    if drain:
        for _ in range(max_drain_steps):
            if not scheduler.has_requests():
                break
            step(arrivals=max_calls is not None, timed=False)
        else:
            raise RuntimeError(
                f"{kind}: calls still live after {max_drain_steps} drain steps"
            )
    return result


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(runs: list[RunResult]) -> dict[str, Any]:
    """Median over runs of each run's median and p99 step, in microseconds."""
    medians = [statistics.median(r.samples_ns) / 1000 for r in runs]
    p99s = [_percentile(r.samples_ns, 0.99) / 1000 for r in runs]
    summary: dict[str, Any] = {
        "median_us": statistics.median(medians),
        "p99_us": statistics.median(p99s),
        "mean_us": statistics.median(
            statistics.fmean(r.samples_ns) / 1000 for r in runs
        ),
        "run_medians_us": medians,
        "runs": len(runs),
        "steps_per_run": len(runs[0].samples_ns),
        "mean_running": statistics.fmean(statistics.fmean(r.running) for r in runs),
        "mean_waiting": statistics.fmean(statistics.fmean(r.waiting) for r in runs),
        "mean_scheduled": statistics.fmean(
            statistics.fmean(r.scheduled[-len(r.samples_ns) :]) for r in runs
        ),
        "mean_tokens": statistics.fmean(statistics.fmean(r.tokens) for r in runs),
        "finished_per_step": statistics.fmean(
            r.measured_finished / len(r.samples_ns) for r in runs
        ),
    }
    plugin_steps = [r.plugin.get("steps", 0.0) for r in runs]
    if runs[0].plugin and all(plugin_steps):
        summary["core_us_per_step"] = statistics.median(
            1e6 * r.plugin.get("core_seconds", 0.0) / r.plugin["steps"] for r in runs
        )
        summary["plugin_per_run"] = {
            k: statistics.median(r.plugin.get(k, 0.0) for r in runs)
            for k in sorted(runs[0].plugin)
        }
    return summary


def _profile_top(profiler: cProfile.Profile, limit: int = 25) -> list[dict[str, Any]]:
    """The functions with the most own time (then cumulative), per measured step count aside."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(filename).parts[-3:])
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "own_s": own,
                "cumulative_s": cumulative,
            }
        )
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:limit]


def overridden_hooks(plugin: type) -> list[str]:
    """The methods of vLLM's `Scheduler` that `plugin` overrides, its constructor aside."""
    from vllm.v1.core.sched.scheduler import Scheduler

    own = plugin.__mro__[: plugin.__mro__.index(Scheduler)]
    return sorted(
        {
            name
            for cls in own
            for name, value in vars(cls).items()
            if callable(value) and name != "__init__" and name in vars(Scheduler)
        }
    )


class HookTimers:
    """The plug-in's own time, without the noise of vLLM's: while installed, every method of vLLM's
    the plug-in overrides (`schedule` and `add_request`; earlier versions also `update_from_output`) is timed, where vLLM
    calls it (the instance's own method if it has one, else the class's), and so is vLLM's version
    it wraps. A hook's own time is the difference; summed over hooks
    (were they to nest, each one's own part is still disjoint from the others') it is what the
    plug-in adds in Python and Rust together.
    The timers' own cost inside each measured interval (one timed inner call) is measured and
    subtracted. What it cannot see: the plug-in's waiting queue replaces vLLM's, inside vLLM's
    `schedule()` (its operations are a few dict steps a call)."""

    def __init__(self, plugin: Any) -> None:
        self._plugin = plugin
        self._patches: list[tuple[Any, str, Any]] = []
        self.outer: dict[str, int] = {}
        self.inner: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.timer_ns = self._timer_cost_ns()
        self.step_ns: list[float] = []
        self._last_total = 0.0

    def install(self, scheduler: Any) -> None:
        from vllm.v1.core.sched.scheduler import Scheduler

        for name in overridden_hooks(self._plugin):
            # The hook vLLM calls: the instance's own (the plug-in sets its Rust hooks there),
            # else the class's.
            owner = scheduler if name in vars(scheduler) else next(c for c in self._plugin.__mro__ if name in vars(c))
            self._patch(owner, name, self.outer, count=True)
            self._patch(Scheduler, name, self.inner, count=False)

    def _patch(self, owner: Any, name: str, totals: dict[str, int], count: bool) -> None:
        """Times `owner.name`, `owner` a class or an instance."""
        original = vars(owner)[name]
        totals[name] = 0
        self.calls.setdefault(name, 0)
        clock, calls = time.perf_counter_ns, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                totals[name] += clock() - start
                if count:
                    calls[name] += 1

        self._patches.append((owner, name, original))
        setattr(owner, name, timed)

    @staticmethod
    def _timer_cost_ns(samples: int = 200_000) -> float:
        """What one timed call costs beyond the call itself, as seen from an enclosing timer."""
        totals = {"f": 0}
        clock = time.perf_counter_ns

        def plain() -> None:
            return None

        def timed() -> None:
            start = clock()
            try:
                return plain()
            finally:
                totals["f"] += clock() - start

        def best(fn: Any) -> float:
            runs = []
            for _ in range(5):
                start = clock()
                for _ in range(samples):
                    fn()
                runs.append((clock() - start) / samples)
            return min(runs)

        return max(best(timed) - best(plain), 0.0)

    def remove(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches = []

    def _own_ns(self, name: str) -> float:
        return self.outer[name] - self.inner[name] - self.calls[name] * self.timer_ns

    def end_step(self) -> None:
        """Closes a step: its own time is one sample (a step's median is robust to the garbage
        collector's pauses, which land in whichever code allocates when they are due)."""
        total = sum(self._own_ns(name) for name in self.outer)
        self.step_ns.append(total - self._last_total)
        self._last_total = total

    def own_us(self, steps: int) -> dict[str, float]:
        """Per step: each hook's own time and the total (means), and the median step; timer cost
        subtracted."""
        own = {name: self._own_ns(name) / steps / 1000 for name in self.outer}
        return {
            **own,
            "total": sum(own.values()),
            "median_step": statistics.median(self.step_ns) / 1000,
        }


def own_time_run(
    config: Config, stream: CallStream, warmup_steps: int, steps: int, runs: int
) -> dict[str, Any]:
    """Extra Autellix runs with `HookTimers` installed over their timed steps; the median run."""
    results = []
    for _ in range(runs):
        timers = HookTimers(plugin_class(config.plugin))
        try:
            run_once(
                "autellix",
                config,
                stream,
                warmup_steps,
                steps,
                on_timed=timers.install,
                after_timed_step=timers.end_step,
            )
        finally:
            timers.remove()
        results.append(
            {"own_us_per_step": timers.own_us(steps), "timer_ns": timers.timer_ns}
        )
    results.sort(key=lambda r: r["own_us_per_step"]["median_step"])
    return {
        **results[len(results) // 2],
        "runs": runs,
        "run_median_steps_us": [r["own_us_per_step"]["median_step"] for r in results],
    }


def measure(
    config: Config,
    repeats: int,
    warmup_steps: int,
    steps: int,
    seed: int,
    profile: bool = False,
) -> dict[str, Any]:
    stream = CallStream(config, seed, vocab_size=_vocab_size())
    runs: dict[str, list[RunResult]] = {kind: [] for kind in KINDS}
    loads = []
    for repeat in range(repeats):
        # Take turns: load that drifts hits both alike.
        order = KINDS if repeat % 2 == 0 else KINDS[::-1]
        for kind in order:
            loads.append(os.getloadavg()[0])
            result = run_once(kind, config, stream, warmup_steps, steps)
            result.scheduler = None  # free it before the next run
            runs[kind].append(result)
            _progress(
                f"  {config.label()} run {repeat + 1}/{repeats} {kind:>8}: median "
                f"{statistics.median(result.samples_ns) / 1000:8.1f} us/step, "
                f"running {statistics.fmean(result.running):6.1f}, waiting {statistics.fmean(result.waiting):8.1f}, "
                f"load {loads[-1]:.2f}"
            )
    vllm, autellix = summarise(runs["vllm"]), summarise(runs["autellix"])
    row: dict[str, Any] = {
        "config": {
            **asdict(config),
            "programs": config.num_programs,
            "num_blocks": config.num_blocks,
        },
        "vllm": vllm,
        "autellix": autellix,
        "added_us": autellix["median_us"] - vllm["median_us"],
        "ratio": autellix["median_us"] / vllm["median_us"],
        "added_p99_us": autellix["p99_us"] - vllm["p99_us"],
        "load_average": {
            "min": min(loads),
            "max": max(loads),
            "median": statistics.median(loads),
        },
    }
    row["own_time"] = own_time_run(
        config, stream, warmup_steps, steps, runs=min(repeats, 3)
    )
    row["hook_floor"] = own_time_run(
        replace(config, plugin=HOOK_FLOOR_PLUGIN), stream, warmup_steps, steps, runs=min(repeats, 3)
    )
    if profile:
        profiler = cProfile.Profile()
        run_once("autellix", config, stream, warmup_steps, steps, profiler=profiler)
        row["profile_top"] = _profile_top(profiler)
        row["profile_steps"] = steps
    return row


@cache
def _vocab_size() -> int:
    return int(
        json.loads((Path(_model_path()) / "config.json").read_text())["vocab_size"]
    )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    import vllm

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "vllm": vllm.__version__,
        "load_average_at_start": os.getloadavg(),
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    """The checkout measured: its revision, and whether the plug-in or the core differ from it."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], check=False, cwd=root, capture_output=True, text=True
        ).stdout.strip()

    try:
        changed = git(
            "status",
            "--porcelain",
            "--",
            "python/autellix/vllm",
            "python/autellix_core",
            "rust",
        )
        return {
            "revision": git("rev-parse", "HEAD"),
            "plugin_or_core_changed": changed.splitlines(),
        }
    except OSError:
        return {}


def _own_cell(own: dict[str, float]) -> str:
    if "median_step" not in own:
        return "n/a"
    return f"**{own['median_step']:.1f}** ({own['total']:.1f})"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| policy | B running | Q waiting | vLLM (us/step) | Autellix (us/step) | added (us) "
            "| ratio | vLLM p99 | Autellix p99 | plug-in own time (us/step): median (mean) "
            "| hook floor (us/step) | plug-in core_seconds (us/step) "
            "| priority preemptions / step | tokens / step (vLLM, Autellix) | load |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        c, v, a = r["config"], r["vllm"], r["autellix"]
        core = a.get("core_us_per_step")
        preemptions = a.get("plugin_per_run", {}).get("priority_preemptions", 0.0)
        load = r["load_average"]
        own = r.get("own_time", {}).get("own_us_per_step", {})
        floor = r.get("hook_floor", {}).get("own_us_per_step", {})
        lines.append(
            f"| {c['policy']} | {c['batch']} | {c['queued']} | {v['median_us']:.1f} | {a['median_us']:.1f} "
            f"| {r['added_us']:+.1f} | {r['ratio']:.2f}x | {v['p99_us']:.1f} | {a['p99_us']:.1f} "
            f"| {_own_cell(own)} | {_own_cell(floor)} | {'n/a' if core is None else f'{core:.1f}'} | {preemptions / a['steps_per_run']:.2f} "
            f"| {v['mean_tokens']:.0f}, {a['mean_tokens']:.0f} | {load['min']:.1f}-{load['max']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _progress(
            "matplotlib is not installed (pip install -e '.[bench]'): skipping the plot"
        )
        return
    policies = sorted({r["config"]["policy"] for r in rows})
    fig, axes = plt.subplots(
        2,
        len(policies),
        figsize=(5.5 * len(policies), 8.4),
        squeeze=False,
        sharey="row",
    )
    width = 0.38
    for column, policy in enumerate(policies):
        group = [r for r in rows if r["config"]["policy"] == policy]
        xs = list(range(len(group)))
        labels = [f"B={r['config']['batch']}\nQ={r['config']['queued']}" for r in group]
        ax = axes[0][column]
        ax.bar(
            [x - width / 2 for x in xs],
            [r["vllm"]["median_us"] for r in group],
            width,
            label="vLLM Scheduler",
        )
        bars = ax.bar(
            [x + width / 2 for x in xs],
            [r["autellix"]["median_us"] for r in group],
            width,
            label="AutellixScheduler",
        )
        for bar, row in zip(bars, group):
            ax.annotate(
                f"{row['added_us']:+.0f} us",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(xs, labels)
        ax.set_yscale("log")
        ax.set_title(f"policy {policy}: whole step")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        # The plug-in's own time, hook by hook (HookTimers), against the 10 us goal.
        ax = axes[1][column]
        bottoms = [0.0] * len(group)
        hooks = [
            h
            for h in group[0].get("own_time", {}).get("own_us_per_step", {})
            if h not in ("total", "median_step")
        ]
        for hook in hooks:
            heights = [max(r["own_time"]["own_us_per_step"][hook], 0.0) for r in group]
            ax.bar(xs, heights, 0.6, bottom=bottoms, label=f"{hook} (mean)")
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        medians = (
            ("own_time", "median step", {"color": "black", "marker": "D"}),
            ("hook_floor", "hook floor: same hooks, no work", {"color": "grey", "marker": "_", "s": 400}),
        )
        for key, label, style in medians:
            if all(key in r for r in group):
                steps = [r[key]["own_us_per_step"]["median_step"] for r in group]
                ax.scatter(xs, steps, zorder=3, label=label, **style)
        ax.axhline(
            OWN_TIME_GOAL_US,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"goal {OWN_TIME_GOAL_US:.0f} us",
        )
        ax.set_xticks(xs, labels)
        ax.set_title(f"policy {policy}: the plug-in's own time")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("median time per engine step (us, log)")
    axes[1][0].set_ylabel("plug-in's own time per step (us)")
    fig.suptitle(
        "schedule() + update_from_output() + add_request per engine step (lower is better)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _quiet_logs() -> None:
    for name in ("vllm", "vllm.autellix"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few steps, 1 run, B=64 only"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[64, 256], help="B: running calls"
    )
    parser.add_argument(
        "--queued", type=int, nargs="+", default=[100, 10_000], help="Q: waiting calls"
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["plas", "fcfs"],
        choices=["fcfs", "mlfq", "plas", "atlas"],
        help="the plug-in's policies (fcfs decides as vLLM does: what is left is bookkeeping)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of each scheduler per configuration (5)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="untimed steps before the timed ones (300)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per run (500)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plugin",
        default=DEFAULT_PLUGIN,
        help="the scheduler measured against vLLM's: module:Class or file.py:Class",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one extra Autellix run per configuration",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results prefix (default {RESULTS / 'plugin_step'})",
    )
    args = parser.parse_args(argv)
    write = args.out is not None or not args.quick
    out = args.out or RESULTS / "plugin_step"
    quick = {"repeats": 1, "warmup_steps": 20, "steps": 50} if args.quick else {}
    for name, default in (("repeats", 5), ("warmup_steps", 300), ("steps", 500)):
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, default))
    if args.quick:
        args.batch = args.batch[:1]
    _quiet_logs()
    info = machine()
    _progress(
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, load {info['load_average_at_start']}"
    )
    configs = [
        Config(batch=b, queued=q, policy=policy, plugin=args.plugin)
        for policy in args.policies
        for b in args.batch
        for q in args.queued
    ]
    rows = []
    for n, config in enumerate(configs, 1):
        _progress(
            f"[{n}/{len(configs)}] {config.label()}, {config.num_programs} programs, {config.num_blocks} KV blocks"
        )
        row = measure(
            config,
            args.repeats,
            args.warmup_steps,
            args.steps,
            args.seed,
            profile=args.profile,
        )
        rows.append(row)
        _progress(
            f"[{n}/{len(configs)}] {config.label()}: vLLM {row['vllm']['median_us']:.1f} us, "
            f"Autellix {row['autellix']['median_us']:.1f} us, added {row['added_us']:+.1f} us ({row['ratio']:.2f}x); "
            f"the plug-in's own time {row['own_time']['own_us_per_step']['median_step']:.1f} us/step (median), "
            f"{row['own_time']['own_us_per_step']['total']:.1f} (mean)"
        )
        for entry in row.get("profile_top", [])[:12]:
            _progress(
                f"    {entry['cumulative_s'] * 1e6 / args.steps:8.1f} us/step cum {entry['own_s'] * 1e6 / args.steps:8.1f} own  "
                f"{entry['calls']:>8} calls  {entry['function']}"
            )
    info["load_average_at_end"] = os.getloadavg()
    header = (
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, vLLM {info['vllm']}; "
        f"load average {info['load_average_at_start'][0]:.2f} at start, {info['load_average_at_end'][0]:.2f} at end. "
        f"Plug-in {args.plugin}; {args.warmup_steps} warm-up + {args.steps} timed steps a run, median of "
        f"{args.repeats} runs of each run's median / p99 step.\n\n"
    )
    markdown = header + table(rows) + "\n"
    print(markdown)
    if write:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "machine": info,
            "policies": args.policies,
            "warmup_steps": args.warmup_steps,
            "steps": args.steps,
            "repeats": args.repeats,
            "seed": args.seed,
            "rows": rows,
        }
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown)
        plot(rows, out.with_suffix(".png"))
        _progress(f"wrote {out.with_suffix('.json')}, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
