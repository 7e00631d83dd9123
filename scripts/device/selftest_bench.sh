#!/usr/bin/env bash
# `sglang-consumer-gpu selftest` (full) and `sglang-consumer-gpu bench` for a Qwen3-30B-A3B-shaped
# model on the device machine, first under the emulated consumer-GPU cap
# (SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376: "this H200 with 101,376 B"), then uncapped.
#
#   bash scripts/device/selftest_bench.sh            # writes under $OUT (default ./selftest_bench_out)
#
# The package is not pip-installed there, so no .pth file runs at interpreter start: each command
# starts Python the way the installed .pth would (`import sglang_consumer_gpu._pth` first: the
# import watcher and, with the cap set, the shared-memory emulation's hooks), then runs the CLI.
# SGLang is imported normally (the carried install must be on the path: PYTHONPATH or SGLANG_SITE).
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
export PYTHONPATH="$REPO${SGLANG_SITE:+:$SGLANG_SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=15
MODEL="$REPO/tests/fixtures/models/Qwen3-30B-A3B"
SELFTEST_ARGS=${SELFTEST_ARGS:---max-per-source 4}
BENCH_ARGS=${BENCH_ARGS:---batch-sizes 1,16,128,1024,4096}
LOG="$OUT/selftest_bench.log"
: >"$LOG"

cli() {  # cli SECONDS ARGS...: the CLI as an installed plugin runs it, under a time limit
  local limit=$1
  shift
  timeout -s INT -k 15 "$limit" python3 -c \
    'import sys, sglang_consumer_gpu._pth; from sglang_consumer_gpu.cli import main; sys.exit(main())' "$@"
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
