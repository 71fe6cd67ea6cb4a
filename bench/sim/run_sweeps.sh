#!/usr/bin/env bash
# Reproduces bench/results/sim/defaults-*: the single-engine policy sweeps with the core on its
# DEFAULTS, as the vLLM plug-in runs it: the scheduler's clock is engine work units (one decode token
# = 1 unit, prefill 1/128 unit per prompt token, each call credited its own), the ladder 8, 16, ..., 65536 units from
# autellix.work_units (quanta = widths, at least 64), anti-starvation at the core's default ratio (beta = 4).
# No hand-set queue ladder or starvation ratio, except in the sweep that is about beta.
# Presets: a100-llama8b (the paper's setting) and cpu-vllm (fitted to the real CPU vLLM engine).
# Every point simulates the programs that arrive in a fixed window (--duration, at least 50), so an
# overloaded point builds a backlog that grows with the rate (a fixed program count would cap it).
#
# Usage: [WORKLOADS="lats mixed"] bench/sim/run_sweeps.sh [JOBS] [PART...]
#   PART: a100 cpu beta balancer vllm (default: all); WORKLOADS limits the a100 and cpu parts
# Times on the 2-core machine with one job, shared with other work: a100 ~20 min, cpu ~20 min.
#
# Windows: a100 600 s on every workload (the older sweeps used 1200 s for lats/mixed); cpu 300 s
# and rates up to 3x capacity (its rates are ~10x lower and each program ~10x more engine steps). Older files here (sharegpt.*, bfcl.*, lats.*,
# mixed.*, sharegpt-beta4.*, balancer-sharegpt-4.*, *-vllm.*) are the earlier seconds-clock sweeps
# with a hand-set 0.1..409.6 s ladder and beta = inf; bench/results/sim/README.md describes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-1}
shift || true
PARTS=${*:-a100 cpu beta balancer vllm}
OUT=bench/results/sim
AUTELLIX=${AUTELLIX:-autellix}
PYTHON=${PYTHON:-python}
POLICIES=fcfs,mlfq,plas,atlas,srpt
COMMON=(--out "$OUT" --jobs "$JOBS" --clock work)
WORKLOADS=${WORKLOADS:-sharegpt bfcl lats mixed}  # of the a100 and cpu parts
want() { [[ " $PARTS " == *" $1 "* ]]; }
want_w() { [[ " $WORKLOADS " == *" $1 "* ]]; }

# The default rates of `autellix sweep` (0.2x .. 6x the estimated capacity) up to MAX x capacity.
rates() {  # PRESET WORKLOAD MAX
  "$PYTHON" - "$@" <<'PY'
import sys
from autellix.sim.presets import get_preset
from autellix.sim.sweep import default_rates, estimate_capacity
cfg, w, top = get_preset(sys.argv[1]), sys.argv[2], float(sys.argv[3])
cap = estimate_capacity(w, cfg, 1)
print(",".join(f"{r:g}" for r in default_rates(w, cfg, 1, 11) if r <= top * cap * 1.0001))
PY
}
if want a100; then
  # sharegpt and bfcl: all 11 default rates; lats and mixed: up to 4x capacity (the 6x point costs the most
  # and is past every crossing of the older sweeps)
  for w in sharegpt bfcl; do
    want_w $w || continue
    $AUTELLIX sweep --preset a100-llama8b --workloads $w --policies $POLICIES --duration 600 --wall-limit 60 \
      --name defaults-a100-$w "${COMMON[@]}"
  done
  for w in lats mixed; do
    want_w $w || continue
    $AUTELLIX sweep --preset a100-llama8b --workloads $w --policies $POLICIES --duration 600 --wall-limit 45 \
      --rates "$(rates a100-llama8b $w 4)" --name defaults-a100-$w "${COMMON[@]}"
  done
fi
if want cpu; then
  for w in sharegpt bfcl lats mixed; do
    want_w $w || continue
    $AUTELLIX sweep --preset cpu-vllm --workloads $w --policies $POLICIES --duration 300 --wall-limit 30 \
      --rates "$(rates cpu-vllm $w 3)" --name defaults-cpu-$w "${COMMON[@]}"
  done
fi
# the one sweep about beta: anti-starvation off (beta = inf) against the defaults above
if want beta; then
  $AUTELLIX sweep --preset a100-llama8b --workloads sharegpt --policies mlfq,plas --duration 600 --wall-limit 60 \
    --starvation-ratio inf --name defaults-a100-sharegpt-beta-inf "${COMMON[@]}"
fi
if want balancer; then
  $AUTELLIX sweep --preset a100-llama8b --workloads sharegpt --policies plas --engines 4 \
    --balancers autellix,round-robin,least-used --duration 300 --wall-limit 120 --name defaults-balancer-sharegpt-4 \
    "${COMMON[@]}"
fi
# the paper's plain-vLLM baseline (vLLM 0.6 defaults): fcfs on an engine without prefix caching, without
# chunked prefill (prefill-only steps stall decoding) and without multi-step scheduling. fcfs has one
# queue, so the clock does not change it: these are the files of the earlier sweeps.
if want vllm; then
  VLLM=(--policies fcfs --no-prefix-cache --no-chunked-prefill --multi-step 1 --wall-limit 120)
  $AUTELLIX sweep --workloads sharegpt "${VLLM[@]}" --duration 600 --name sharegpt-vllm "${COMMON[@]}"
  $AUTELLIX sweep --workloads bfcl "${VLLM[@]}" --duration 600 --name bfcl-vllm "${COMMON[@]}"
  $AUTELLIX sweep --workloads mixed "${VLLM[@]}" --duration 1200 --name mixed-vllm "${COMMON[@]}"
  $AUTELLIX sweep --workloads lats "${VLLM[@]}" --duration 1200 --name lats-vllm "${COMMON[@]}"
fi
# the table of bench/sim/README.md ("Sweeps on defaults"), from whichever defaults-* files exist
"$PYTHON" - "$OUT" > "$OUT/defaults-summary.md" <<'PY'
import json, sys
from pathlib import Path
from autellix.sim.sweep import throughput_table

out = Path(sys.argv[1])
AUTELLIX = {"sharegpt": "plas", "bfcl": "plas", "lats": "atlas", "mixed": "atlas"}  # plas: the plug-in's default
SERIES = ("fcfs", "mlfq", "plas", "atlas", "srpt")
print("Throughput (programs/s) at mean token latency <= 2x/5x/10x the unloaded latency; `>=`: never crossed in the "
      "swept range (a lower bound; a ratio to it is an upper bound `<=`, n/a when both are). Autellix = plas on "
      "sharegpt/bfcl (the plug-in's default policy), atlas on lats/mixed.\n")
print("| preset | workload | target | " + " | ".join(SERIES) + " | Autellix / srpt | Autellix / fcfs | plas / srpt |")
print("|---|---|---|" + "---|" * (len(SERIES) + 3))
for preset in ("a100", "cpu"):
    for w, pol in AUTELLIX.items():
        f = out / f"defaults-{preset}-{w}.json"
        if not f.exists():
            continue
        rows = throughput_table(json.loads(f.read_text())["points"])
        for slo in (2.0, 5.0, 10.0):
            by = {r["series"]: r for r in rows if r["slo"] == slo}
            fmt = lambda r: f"{r['throughput']:.3g}" if r["exact"] else f">={r['throughput']:.3g}"
            def ratio(a, b):  # a lower bound (never crossed) makes the ratio a bound, or unknown
                x, ea, eb = by[a]["throughput"] / by[b]["throughput"], by[a]["exact"], by[b]["exact"]
                return f"{x:.2f}x" if ea and eb else f"<={x:.2f}x" if ea else f">={x:.2f}x" if eb else "n/a"
            t = by[pol]["target"] * 1000
            print(f"| {preset} | {w} | {slo:g}x = {t:.1f} ms/tok | " + " | ".join(fmt(by[s]) for s in SERIES)
                  + f" | {ratio(pol, 'srpt')} | {ratio(pol, 'fcfs')} | {ratio('plas', 'srpt')} |")
PY
echo "$OUT/defaults-summary.md"
