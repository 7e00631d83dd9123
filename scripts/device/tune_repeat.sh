#!/usr/bin/env bash
# Device check of two of tune-moe's promises (issue 12), with the real command:
#   1. an interrupted run resumes: SIGINT after INTERRUPT_S seconds, then the same command again;
#   2. running it twice gives the same file (modulo timing noise): the resumed run's file against
#      a second, uninterrupted run from a fresh state.
# Qwen3-30B-A3B bf16, SGLang's 18 batch sizes, configs pruned for an RTX 4090 (--fit-for).
# Writes into $1: logs, each run's JSON report, each written config file (renamed: SGLang's file
# names hold characters a device run does not bring back) and whether a saved state existed.
#
#   eval "$(python3 scripts/device/install_sglang.py)" || exit 1     # carry .carry/sglang-0.5.17
#   bash scripts/device/tune_repeat.sh $OUT/repeat
set -u
out=${1:?usage: tune_repeat.sh OUT_DIR}
work=/tmp/tune_repeat
interrupt_s=${INTERRUPT_S:-45}
rm -rf "$work" && mkdir -p "$out" "$work"
args=(tune-moe --model tests/fixtures/models/Qwen3-30B-A3B --tp 1 --dtype bf16
      --fit-for "NVIDIA GeForce RTX 4090" --budget-s "${BUDGET_S:-88}" --json)

run() {  # name output-dir [extra args]: one run, its exit status and wall time in $out/runs.txt
  local name=$1 dir=$2 t0
  shift 2
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 "${PREFIX[@]}" python3 -m sglang_consumer_gpu "${args[@]}" --output "$dir" "$@" \
    >"$out/$name.json" 2>"$out/$name.log"
  echo "$name rc=$? wall_s=$(($(date +%s) - t0))" | tee -a "$out/runs.txt"
}
keep() {  # name dir: the config files written under dir, and the saved states
  local i=0 f
  for f in "$2"/*.json; do [ -e "$f" ] && cp "$f" "$out/$1_config_$((i += 1)).json"; done
  ls -la "$2"/.tune-moe 2>/dev/null >"$out/$1_state_dir.txt"
}

PREFIX=(timeout -s INT "$interrupt_s")
run a_interrupted "$work/a"
keep a_interrupted "$work/a"
PREFIX=(env)
run a_resumed "$work/a"
keep a_resumed "$work/a"
run b_fresh "$work/b" --fresh
keep b_fresh "$work/b"
