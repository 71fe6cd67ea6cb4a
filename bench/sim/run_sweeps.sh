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
$AUTELLIX sweep --workloads sharegpt --policies $POLICIES --duration 600 --name sharegpt --starvation-ratio inf "${COMMON[@]}"
$AUTELLIX sweep --workloads bfcl --policies $POLICIES --duration 600 --name bfcl --starvation-ratio inf "${COMMON[@]}"
$AUTELLIX sweep --workloads mixed --policies $POLICIES --duration 1200 --name mixed --starvation-ratio inf "${COMMON[@]}"
$AUTELLIX sweep --workloads lats --policies $POLICIES --duration 1200 --name lats --starvation-ratio inf "${COMMON[@]}"
$AUTELLIX sweep --workloads sharegpt --policies plas --engines 4 --balancers autellix,round-robin,least-used \
  --duration 300 --name balancer-sharegpt-4 --starvation-ratio inf "${COMMON[@]}"
$AUTELLIX sweep --workloads sharegpt --policies fcfs,mlfq,plas,srpt --duration 600 --name sharegpt-beta4 "${COMMON[@]}"
# the paper's plain-vLLM baseline: fcfs on an engine without prefix caching
$AUTELLIX sweep --workloads sharegpt --policies fcfs --no-prefix-cache --duration 600 --name sharegpt-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads bfcl --policies fcfs --no-prefix-cache --duration 600 --name bfcl-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads mixed --policies fcfs --no-prefix-cache --duration 1200 --name mixed-vllm "${COMMON[@]}"
$AUTELLIX sweep --workloads lats --policies fcfs --no-prefix-cache --duration 1200 --name lats-vllm "${COMMON[@]}"
${PYTHON:-python} bench/sim/summarize.py "$OUT"
