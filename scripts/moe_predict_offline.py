"""Offline prediction: the current heuristic's ratio to the best, from timings already measured.

For every point of the given result files, the config the heuristic picks NOW is looked up among
the configs that run timed at that point (``space_us``, or the run's own default/heuristic entry);
the predicted ratio is ``best_us / us(config)``, and against SGLang's default ``default_us /
us(config)``. Points whose config was not timed are reported as missing. Per cell, whether the
heuristic's targets hold (issue 12: >= 0.97 of the best, geomean, and >= 0.98 of the default at
every batch size), and the count over all cells. No device needed; timings are whatever machine the
files name (the H100 rounds, the H200 runs under results/h200/).

    PYTHONPATH=$PWD:$PYTHONPATH python scripts/moe_predict_offline.py results/h100/moe/moe_bench_confirm.json results/h100/moe/moe_bench_heldout.json
    PYTHONPATH=$PWD:$PYTHONPATH python scripts/moe_predict_offline.py results/h200/tune/decode_fit/decode_fit.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.common import geomean
from sglang_consumer_gpu.measure.moe import config_key, launch_config
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.shape import MoeShape


def predict(path: Path) -> list[dict]:
    spec = find_gpu("NVIDIA GeForce RTX 4090")
    rows = []
    for c in json.loads(path.read_text())["cases"]:
        shape = MoeShape(c["E"], c["N"], c["K"], c["topk"], c["dtype"])
        pts = []
        for p in c["points"]:
            # the interleaved re-timing where a config has one (the single sweep moves by 5-15 % at M = 1)
            timed = {**p["space_us"], **p.get("finalists_us", {})}
            for name in ("default", "heuristic"):
                timed.setdefault(config_key(launch_config(p[name]["config"])), p[name]["us"])
            new = config_key(heuristic_config(p["M"], shape, spec))
            old = config_key(p["heuristic"]["config"])
            best = p["best"]["us"]
            pts.append(
                {
                    "M": p["M"],
                    "old": old,
                    "new": new,
                    "old_ratio": best / p["heuristic"]["us"],
                    "new_ratio": best / timed[new] if new in timed else None,
                    "new_vs_default": p["default"]["us"] / timed[new] if new in timed else None,
                }
            )
        rows.append({"case": c["name"], "dtype": c["dtype"] or "bf16", "points": pts})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--json", type=Path, help="write the per-point prediction here")
    a = ap.parse_args()
    allrows, meets = [], []
    for path in a.results:
        for r in predict(path):
            r["file"] = path.name
            allrows.append(r)
            old = [p["old_ratio"] for p in r["points"]]
            new = [p["new_ratio"] for p in r["points"]]
            known = [x for x in new if x is not None]
            vs_default = [p["new_vs_default"] for p in r["points"] if p["new_vs_default"] is not None]
            r["meets"] = bool(known) and geomean(known) >= 0.97 and min(vs_default) >= 0.98
            meets.append(r["meets"])
            changed = [f"M={p['M']}: {p['old']} -> {p['new']} ({p['old_ratio']:.3f} -> "
                       + (f"{p['new_ratio']:.3f}" if p["new_ratio"] else "not timed") + ")"
                       for p in r["points"] if p["old"] != p["new"]]  # fmt: skip
            now = (f"{geomean(known):.3f} (min {min(known):.3f}), vs default min {min(vs_default):.3f}"
                   if known else "not timed")  # fmt: skip
            print(
                f"{path.name:28} {r['case']:20} {r['dtype']:8} old {geomean(old):.3f} (min {min(old):.3f}) "
                f"-> new {now}" + (" meets" if r["meets"] else "")
                + (f" [{len(new) - len(known)} untimed]" if len(known) < len(new) else "")
            )
            for line in changed:
                print("    " + line)
    print(f"cells meeting the targets: {sum(meets)} of {len(meets)}")
    if a.json:
        a.json.write_text(json.dumps(allrows, indent=1))


if __name__ == "__main__":
    main()
