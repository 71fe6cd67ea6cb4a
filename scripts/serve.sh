#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then serves the OpenAI-compatible, program-aware HTTP API:
#
#   scripts/serve.sh                          # SmolLM2-135M-Instruct on http://127.0.0.1:8000/v1
#   scripts/serve.sh --model tiny --port 9000 # any `autellix serve` options (see --help)
#
# The first run converts the default model once (~15 s); later runs reuse the cached build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${AUTELLIX_VENV:-.venv}"
scripts/setup.sh >&2
exec "$venv/bin/autellix" serve "$@"
