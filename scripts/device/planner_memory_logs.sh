#!/usr/bin/env bash
# Start launch_server once per configuration, keep its startup log until SGLang prints its
# memory summary (max_total_num_tokens=...), then stop it. Logs go to $OUT/<name>.log; compare
# them HERE (not on the device) with scripts/planner_vs_log.py.
#
#   PY=/path/to/python-with-sglang OUT=/tmp/out bash scripts/device/planner_memory_logs.sh [E2E_MODEL_DIR]
#
# Configurations (one H200):
#   e2e       the end-to-end helper's model (Qwen3-MoE at Qwen3-30B-A3B widths, few layers), --attention-backend triton
#   qwen3-30b tests/fixtures/models/Qwen3-30B-A3B (the real config, 48 layers), random weights (--load-format dummy)
set -u
PY=${PY:-python}
OUT=${OUT:?set OUT}
E2E_MODEL=${1:-}
mkdir -p "$OUT"

run() {  # name, then the launch_server flags
  local name=$1; shift
  local log="$OUT/$name.log"
  "$PY" -m sglang.launch_server "$@" --port 30123 --log-level info >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 540); do
    if grep -q "max_total_num_tokens=" "$log" || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 1
  done
  sleep 2
  kill "$pid" 2>/dev/null; sleep 3; kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  grep -E "Load weight (begin|end)|is allocated|Memory pool end|graph end|max_total_num_tokens=" "$log" | head -20
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -n "$E2E_MODEL" ]; then
  run e2e --model-path "$E2E_MODEL" --tp 1 --attention-backend triton --skip-tokenizer-init
fi
run qwen3-30b --model-path tests/fixtures/models/Qwen3-30B-A3B --load-format dummy --tp 1 \
  --attention-backend triton --skip-tokenizer-init
