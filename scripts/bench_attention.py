"""Time SGLang's attention kernels under sm_89-feasible tiles: the plugin's choice vs SGLang's sm_86/sm_89 branch.

Every tile timed fits 101,376 bytes of shared memory by the analytic model (an upper bound
checked against the oracle), so this is the sm_89-feasible space timed on whatever GPU runs it
(the device machine: H100/H200). Per workload all candidate tiles are timed interleaved with
the measurement engine's timer (:mod:`sglang_consumer_gpu.measure`); ratios are SGLang's sm_89
tile time / candidate time (> 1: the candidate is faster), measured in one run, not RTX 4090
timings. Workloads (:data:`sglang_consumer_gpu.measure.attention.WORKLOADS`): extend
prefill-heavy and decode-heavy, GQA 32/8 heads (MLA 576/512: 16/1); context (vision) prefill,
8 images x 1024 tokens, 16 heads, non-causal.

    PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/bench_attention.py --out $OUT/bench_attention.json      # device
    PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/bench_attention.py --plot results/h100/attention/bench_attention.json  # here: JSON -> PNG
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from scripts.device.sglang_env import ensure_sglang

ensure_sglang()  # an installed SGLang, else the device machine's carry of its kernel files

L40S = "NVIDIA L40S"


def candidates(
    spec: Any,
) -> list[tuple[dict[str, Any], Any, list[tuple[int, ...]], tuple[int, ...], tuple[int, ...]]]:
    """(row fields, case, tiles, SGLang's sm_89 tile, the plugin's tile) per benchmark case."""
    from sglang_consumer_gpu.attention import (
        HEAD_DIMS,
        PREFILL_HEAD_DIMS,
        extend_tile,
        prefill_tile,
        tile_fits,
    )
    from sglang_consumer_gpu.attention.choices import (
        EXTEND_PREFERENCE,
        PREFILL_PREFERENCE,
        _width_class,
        extend_warps,
    )
    from sglang_consumer_gpu.attention.model import qk_tile_width
    from sglang_consumer_gpu.measure.attention import (
        WORKLOADS,
        ExtendCase,
        PrefillCase,
        sglang_extend_tile,
        sglang_prefill_tile,
    )

    out = []
    for lq, lv in HEAD_DIMS:
        sglang = sglang_extend_tile(lq, lv, (8, 9))
        t = extend_tile(spec, lq, lv)
        plugin = (t.block_m, t.block_n, t.num_warps)
        dm, dpe = qk_tile_width(lq)
        dv = qk_tile_width(lv)[0]
        tiles = {sglang, plugin} | {
            (bm, bn, extend_warps(lq))
            for bm, bn in EXTEND_PREFERENCE[_width_class(dm + dpe, lq)]
            if tile_fits(spec, bm, bn, dm + dpe, dv)
        }
        out += [({"kernel": "extend", "lq": lq, "lv": lv, "workload": w}, ExtendCase.workload(w, lq, lv),
                 sorted(tiles), sglang, plugin) for w in WORKLOADS]  # fmt: skip
    for d in PREFILL_HEAD_DIMS:
        sglang = sglang_prefill_tile(d, (8, 9))
        plugin = (prefill_tile(spec, d).block_m, sglang[1])
        w = qk_tile_width(d)[0]
        tiles = {sglang, plugin} | {(b, sglang[1]) for b in PREFILL_PREFERENCE if tile_fits(spec, b, b, w, w)}
        fields = {"kernel": "prefill", "lq": d, "lv": d, "workload": "vision-prefill"}
        out.append((fields, PrefillCase.vision(d), sorted(tiles), sglang, plugin))
    return out


def run(out: Path) -> dict[str, Any]:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.attention import ExtendCase, ExtendRun, PrefillRun
    from sglang_consumer_gpu.measure.common import environment, geomean
    from sglang_consumer_gpu.measure.timer import Timer

    spec = find_gpu(L40S)
    timer = Timer()
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for fields, case, tiles, sglang, plugin in candidates(spec):
        r = ExtendRun(case) if isinstance(case, ExtendCase) else PrefillRun(case)
        t = timer.compare({tile: r.run(tile) for tile in tiles}, len(r.slots))
        for tile in tiles:
            shown = (
                list(tile) if len(tile) == 3 else [tile[0], tile[0], tile[1]]
            )  # prefill: BLOCK_M = BLOCK_N
            rows.append({**fields, "tile": shown, "ms": t[tile].us / 1000, "spread": t[tile].spread,
                         "ratio_vs_sglang_sm89": t[sglang].us / t[tile].us,
                         "is_sglang_sm89": tile == sglang, "is_plugin": tile == plugin})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    ratios = [r["ratio_vs_sglang_sm89"] for r in rows if r["is_plugin"]]
    result = {**environment(), "budget_bytes": spec.smem_per_block_optin, "seconds": round(time.time() - t0, 1),
              "plugin_geomean_ratio": geomean(ratios), "plugin_min_ratio": min(ratios), "rows": rows}  # fmt: skip
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return result


def plot(path: Path) -> Path:
    """Bar chart of the plugin's ratio vs SGLang's sm_89 branch per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    rows = [r for r in data["rows"] if r["is_plugin"]]
    labels = [f"{r['kernel']} {r['lq']}/{r['lv']}\n{r['workload']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.55), 4.5))
    ax.bar(range(len(rows)), [r["ratio_vs_sglang_sm89"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(0.9, color="red", lw=0.8, ls="--")
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("speed vs SGLang sm_89 branch (x)")
    ax.set_title(
        f"plugin's sm_89-feasible tile, timed on {data['device']} "
        f"(geomean {data['plugin_geomean_ratio']:.3f}x, min {data['plugin_min_ratio']:.3f}x)"
    )
    fig.tight_layout()
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=120)
    return png


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="run the benchmark (needs a GPU) and write JSON here")
    ap.add_argument("--plot", type=Path, help="draw the PNG for an existing JSON (no GPU needed)")
    args = ap.parse_args()
    if not (args.out or args.plot):
        ap.error("give --out (benchmark) or --plot (chart)")
    if args.out:
        run(args.out)
        try:
            print(plot(args.out))
        except ImportError:
            print("matplotlib missing here: plot later with --plot")
    if args.plot:
        print(plot(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
