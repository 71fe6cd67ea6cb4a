#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: Rust (cargo fmt check, clippy, cargo test) and
# Python (pytest, which also checks the .pyi stubs against the built module).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${AUTELLIX_VENV:-.venv}"
scripts/setup.sh "$@"

printf '\n== cargo fmt --check, clippy\n'
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

printf '\n== cargo test (the Rust core)\n'
cargo test --release

printf '\n== pytest\n'
"$venv/bin/python" -m pytest
