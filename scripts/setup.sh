#!/usr/bin/env bash
# Create ./.venv (if missing) and install the plugin with SGLang 0.5.23 and the
# test/bench extras. Idempotent; a fresh machine needs only python3 (>=3.10) and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"
.venv/bin/python -c "import sglang_consumer_gpu, sglang, triton, torch; print('setup ok: sglang', sglang.__version__, 'triton', triton.__version__, 'torch', torch.__version__)"
