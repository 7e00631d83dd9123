#!/usr/bin/env bash
# `sglang-consumer-gpu selftest` (full) and `sglang-consumer-gpu bench` for a Qwen3-30B-A3B-shaped
# model on the device machine, first under the emulated consumer-GPU cap
# (SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376: "this H200 with 101,376 B"), then uncapped.
#
#   bash scripts/device/selftest_bench.sh      # run(carry=[".carry/sglang-0.5.17"]); writes under $OUT
#
# SGLang is the carried 0.5.17 install (scripts/device/README_sglang017.md): when the carry is here
# this script installs it first (install_sglang.py: /tmp/site, whose sitecustomize runs the plugin's
# .pth hook in every Python process -- the import watcher and, with the cap set, the emulation).
# The package itself is not pip-installed: `python3 -m sglang_consumer_gpu` from the working tree.
#
# Writes (7 files): selftest_capped.json, selftest_uncapped.json, two bench_*.json and their
# PNGs (when matplotlib is there; else `sglang-consumer-gpu bench --plot FILE.json` draws them
# later), and selftest_bench.log (the tables, exit codes and times).
# Budget knobs (defaults sized for ~150 s on 16 cores):
#   SELFTEST_ARGS  (default "--max-per-source 4": at most 4 entries of SGLang's ~80 H200 files)
#   BENCH_ARGS     (default "--batch-sizes 1,16,128,1024,4096")
#   T_CAPPED_SELFTEST=75 T_CAPPED_BENCH=45 T_UNCAPPED=30  seconds each; on expiry the command
#   gets SIGINT and writes its partial report.
set -u
OUT=${OUT:-./selftest_bench_out}
mkdir -p "$OUT"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=15
if [ -f "$REPO/.carry/sglang-0.5.17/MANIFEST.json" ]; then
  eval "$(python3 "$REPO/scripts/device/install_sglang.py")" || exit 1
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
MODEL="$REPO/tests/fixtures/models/Qwen3-30B-A3B"
SELFTEST_ARGS=${SELFTEST_ARGS:---max-per-source 4}
BENCH_ARGS=${BENCH_ARGS:---batch-sizes 1,16,128,1024,4096}
LOG="$OUT/selftest_bench.log"
: >"$LOG"

cli() {  # cli SECONDS ARGS...: the CLI under a time limit, with the plugin's .pth hook as installed
  local limit=$1
  shift
  if python3 -c 'import sys; sys.exit("sglang_consumer_gpu._pth" not in sys.modules)'; then
    timeout -s INT -k 15 "$limit" python3 -m sglang_consumer_gpu "$@"
  else  # no sitecustomize hook here: start the CLI the way the .pth line would
    timeout -s INT -k 15 "$limit" python3 -c \
      'import sys, sglang_consumer_gpu._pth; from sglang_consumer_gpu.cli import main; sys.exit(main())' "$@"
  fi
}

step() {  # step NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name: sglang-consumer-gpu $*" >>"$LOG"
  cli "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$LOG"
}

python3 - >>"$LOG" 2>&1 <<'EOF'
try:
    import torch, triton
    print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name(),
          torch.cuda.get_device_properties(0).shared_memory_per_block_optin, "B per block")
    import sglang
    print("sglang", sglang.__version__, sglang.__file__)
except Exception as exc:
    print("environment probe:", type(exc).__name__, exc)
import sys
print("plugin .pth hook active at interpreter start:", "sglang_consumer_gpu._pth" in sys.modules)
EOF

export SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376
# shellcheck disable=SC2086  # the *_ARGS are word lists
step "selftest capped" "${T_CAPPED_SELFTEST:-75}" selftest $SELFTEST_ARGS --out "$OUT/selftest_capped.json"
# shellcheck disable=SC2086
step "bench capped" "${T_CAPPED_BENCH:-45}" bench --model "$MODEL" $BENCH_ARGS --out "$OUT"

unset SGLANG_CONSUMER_GPU_EMULATE_SMEM
# shellcheck disable=SC2086
step "selftest uncapped" "${T_UNCAPPED:-30}" selftest $SELFTEST_ARGS --out "$OUT/selftest_uncapped.json"
# shellcheck disable=SC2086
step "bench uncapped" "${T_UNCAPPED:-30}" bench --model "$MODEL" $BENCH_ARGS --out "$OUT"
ls -la "$OUT" >>"$LOG"
