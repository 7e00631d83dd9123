"""Calibrate an emulation against fused-MoE files tuned on real Ada cards (issue 22, point 2).

On the device machine, once per mode, each run under its emulation (the sweep times whatever the
process runs), then the report (any machine):

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1; export PYTHONPATH=$PWD:$PYTHONPATH
    E="python3 -m sglang_consumer_gpu emulate --gpu 'NVIDIA GeForce RTX 4090'"
    $E -- python3 scripts/device/calibrate.py --mode arch-faithful --out $OUT --budget-s 270
    $E --limit-only -- python3 scripts/device/calibrate.py --mode limit-only --out $OUT --budget-s 270
    python3 scripts/device/calibrate.py --report $OUT/calibration_*.json --out results/calibration

Writes ``calibration_<mode>.json`` (after every file) and, with ``--report``, ``calibration.json``,
``calibration.md`` (the table) and ``calibration.png``. The method and its caveats:
:mod:`sglang_consumer_gpu.bench.calibration`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sglang_consumer_gpu.bench import calibration
from sglang_consumer_gpu.measure import moe_sweep


def sweep(mode: str, out: Path, budget_s: float, workers: int | None, only: str | None) -> int:
    from sglang_consumer_gpu.hardware import current_spec, find_gpu

    fit_for = find_gpu("NVIDIA GeForce RTX 4090")  # every file is an sm_89 card's: 101,376 B per block
    files = [f for f in calibration.FILES if not only or any(o in f.file for o in only.split(","))]
    doc = calibration.plan(fit_for, files)
    path = out / f"calibration_{mode}.json"
    live = current_spec()
    head = {"mode": mode, "live_spec": live.to_dict() if live else None, "fit_for": fit_for.name,
            "emulation_env": {k: v for k, v in os.environ.items()
                              if k.startswith(("SGLANG_CONSUMER_GPU_EMULATE", "TRITON_OVERRIDE"))}}  # fmt: skip
    print(f"calibration {mode}: {len(doc['cases'])} files x {len(calibration.GRID)} batch sizes on "
          f"{live.name if live else '?'} ({head['emulation_env']})", flush=True)  # fmt: skip

    def save(results: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**head, **results}, indent=1))
        tmp.replace(path)

    t0 = time.time()
    res = moe_sweep.run_sweep(doc, list(range(len(doc["cases"]))), moe_sweep.space_candidates, workers=workers,
                              budget_s=budget_s, warm_budget_s=budget_s * 0.55, small_m_full=True,
                              on_case=save)  # fmt: skip
    res["wall_s"] = time.time() - t0
    save(res)
    for r in calibration.summarize(res):
        print(f"{r['case']:>40} M={r['M']:>5}: pick/best {r['pick_vs_best']:.3f}, rank {r['rank']} of {r['timed']}")
    return 0


def report(files: list[Path], out: Path) -> int:
    by_mode = {}
    for f in files:
        d = json.loads(f.read_text())
        by_mode[d["mode"]] = d
    cmp = calibration.compare(by_mode)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(cmp, indent=1))
    text = calibration.table(cmp)
    (out / "calibration.md").write_text(text + "\n")
    calibration.plot(cmp, out / "calibration.png")
    print(text)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", help="a label for the emulation this process runs under (arch-faithful, limit-only)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=270.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--only", help="comma-separated substrings of file names")
    ap.add_argument("--report", type=Path, nargs="+", help="calibration_<mode>.json files to compare")
    args = ap.parse_args()
    if args.report:
        return report(args.report, args.out)
    if not args.mode:
        ap.error("--mode or --report")
    args.out.mkdir(parents=True, exist_ok=True)
    return sweep(args.mode, args.out, args.budget_s, args.workers, args.only)


if __name__ == "__main__":
    sys.exit(main())
