#!/usr/bin/env bash
# Device check of two of tune-moe's promises (issue 12), with the real command:
#   1. an interrupted run resumes: a Ctrl-C (SIGINT to the run's whole process group, compile
#      workers included) once the saved state holds at least MIN_TIMINGS timings, then the same
#      command again;
#   2. running it twice gives the same file (modulo timing noise): the resumed run's file against
#      a second, uninterrupted run from a fresh state.
# Qwen3-30B-A3B bf16, SGLang's 18 batch sizes, configs pruned for an RTX 4090 (--fit-for), a fresh
# Triton cache (so the interrupt lands mid-search however warm the machine is).
# Writes into $1: logs, each run's JSON report, each written config file (renamed: SGLang's file
# names hold characters a device run does not bring back), the state the interrupt left and the
# state directory's listing after each run.
#
#   eval "$(python3 scripts/device/install_sglang.py)" || exit 1     # carry .carry/sglang-0.5.17
#   bash scripts/device/tune_repeat.sh $OUT/repeat
set -u
out=${1:?usage: tune_repeat.sh OUT_DIR}
work=/tmp/tune_repeat
min_timings=${MIN_TIMINGS:-100}
rm -rf "$work" && mkdir -p "$out" "$work"
export TRITON_CACHE_DIR=$work/triton
args=(tune-moe --model tests/fixtures/models/Qwen3-30B-A3B --tp 1 --dtype bf16
      --fit-for "NVIDIA GeForce RTX 4090" --budget-s "${BUDGET_S:-88}" --json)

saved_timings() {  # state file: how many timings it holds (0 if none yet)
  python3 -c 'import json,sys
try: print(sum(map(len, json.load(open(sys.argv[1]))["timed"].values())))
except Exception: print(0)' "$1"
}
run() {  # name output-dir [extra args]: one run, its exit status and wall time in $out/runs.txt
  local name=$1 dir=$2 t0
  shift 2
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 python3 -m sglang_consumer_gpu "${args[@]}" --output "$dir" "$@" \
    >"$out/$name.json" 2>"$out/$name.log"
  echo "$name rc=$? wall_s=$(($(date +%s) - t0))" | tee -a "$out/runs.txt"
}
interrupted() {  # name output-dir: run in its own process group, Ctrl-C it once timings are saved
  local name=$1 dir=$2 t0 pid n=0 rc
  t0=$(date +%s)
  # job control: the run gets its own process group, and SIGINT is not ignored (a background job
  # of a script without it starts with SIGINT ignored, and Python then never raises KeyboardInterrupt)
  set -m
  PYTHONUNBUFFERED=1 python3 -m sglang_consumer_gpu "${args[@]}" --output "$dir" \
    >"$out/$name.json" 2>"$out/$name.log" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    n=$(saved_timings "$dir"/.tune-moe/*.state.json)
    if [ "$n" -ge "$min_timings" ]; then
      cp "$dir"/.tune-moe/*.state.json "$out/${name}_state.json"
      kill -INT -- "-$pid"
      break
    fi
    sleep 0.5
  done
  wait "$pid"
  rc=$?
  set +m
  echo "$name rc=$rc wall_s=$(($(date +%s) - t0)) interrupted_at_timings=$n" | tee -a "$out/runs.txt"
}
keep() {  # name dir: the config files written under dir, and the state directory
  local i=0 f
  for f in "$2"/*.json; do [ -e "$f" ] && cp "$f" "$out/$1_config_$((i += 1)).json"; done
  ls -la "$2"/.tune-moe 2>/dev/null >"$out/$1_state_dir.txt"
}

interrupted a_interrupted "$work/a"
keep a_interrupted "$work/a"
run a_resumed "$work/a"
keep a_resumed "$work/a"
run b_fresh "$work/b" --fresh
keep b_fresh "$work/b"
