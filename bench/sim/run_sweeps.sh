#!/usr/bin/env bash
# Reproduces bench/results/sim/: the single-engine policy sweeps on the A100 preset, the 4-engine
# balancer comparison, and the core's default anti-starvation setting under overload.
# Every point simulates the programs that arrive in a fixed window (--duration), so an overloaded
# point builds a backlog that grows with the rate (a fixed program count would cap it).
# Usage: bench/sim/run_sweeps.sh [JOBS]   (about 20-40 min on 2 cores with JOBS=2)
#
# The main sweeps disable anti-starvation (--starvation-ratio inf) for every core policy: with the
# core's default beta = 4 the promote/preempt/demote cycle livelocks under overload (see
# sharegpt-beta4.md); mlfq gets the same setting, so no baseline is weakened.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-1}
OUT=bench/results/sim
AUTELLIX=${AUTELLIX:-autellix}
POLICIES=fcfs,mlfq,plas,atlas,srpt
COMMON=(--out "$OUT" --jobs "$JOBS" --wall-limit 120)
# Queue ladder for the multi-queue core policies (mlfq, plas, atlas alike; fcfs has one queue): 14
# queues doubling from 0.1 s to 409.6 s of attained service, scaled to this preset's step times
# (0.1 s = a few full-batch decode steps; 409.6 s = about the median critical path of a lats program
# under load). The core's default 1..64 s ladder lumps most programs into its last queue, which
# then round-robins between programs (see bench/sim/README.md, "Why the targets are / are not met").
LADDER=0.1,0.2,0.4,0.8,1.6,3.2,6.4,12.8,25.6,51.2,102.4,204.8,409.6
$AUTELLIX sweep --workloads sharegpt --policies $POLICIES --duration 600 --name sharegpt --starvation-ratio inf --queue-boundaries $LADDER "${COMMON[@]}"
$AUTELLIX sweep --workloads bfcl --policies $POLICIES --duration 600 --name bfcl --starvation-ratio inf --queue-boundaries $LADDER "${COMMON[@]}"
$AUTELLIX sweep --workloads mixed --policies $POLICIES --duration 1200 --name mixed --starvation-ratio inf --queue-boundaries $LADDER "${COMMON[@]}"
$AUTELLIX sweep --workloads lats --policies $POLICIES --duration 1200 --name lats --starvation-ratio inf --queue-boundaries $LADDER "${COMMON[@]}"
$AUTELLIX sweep --workloads sharegpt --policies plas --engines 4 --balancers autellix,round-robin,least-used \
  --duration 300 --name balancer-sharegpt-4 --starvation-ratio inf --queue-boundaries $LADDER "${COMMON[@]}"
$AUTELLIX sweep --workloads sharegpt --policies fcfs,mlfq,plas,srpt --duration 600 --name sharegpt-beta4 --queue-boundaries $LADDER --out "$OUT" --jobs "$JOBS" --wall-limit 30
# the paper's plain-vLLM baseline (vLLM 0.6 defaults): fcfs on an engine without prefix caching, without
# chunked prefill (prefill-only steps stall decoding) and without multi-step scheduling
VLLM=(--policies fcfs --no-prefix-cache --no-chunked-prefill --multi-step 1)
$AUTELLIX sweep --workloads sharegpt "${VLLM[@]}" --duration 600 --name sharegpt-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads bfcl "${VLLM[@]}" --duration 600 --name bfcl-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads mixed "${VLLM[@]}" --duration 1200 --name mixed-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads lats "${VLLM[@]}" --duration 1200 --name lats-vllm "${COMMON[@]}"
${PYTHON:-python} bench/sim/summarize.py "$OUT"
