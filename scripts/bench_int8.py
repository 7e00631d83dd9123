#!/usr/bin/env python
"""Triton int8_scaled_mm vs torch._int_mm + a scale epilogue, on the device machine.

The baseline is what a user without sgl-kernel could write:
``(torch._int_mm(a, b) * scale_a * scale_b).to(out_dtype)`` (``_int_mm`` needs M > 16, so
smaller batches are zero-padded to 32 rows inside the timed call). The Triton side uses the
tiles the dispatch table gives ``--gpu`` (tiles proven to fit 101,376 bytes), timed on whatever
GPU runs the script. ``torch._int_mm`` alone (no scaling: not a usable layer) is the floor any
``_int_mm`` path could reach; sgl-kernel's CUTLASS kernel is timed too where it imports (on an
H100/H200 it runs its sm_90 kernels, not the sm_89 ones an RTX 4090 gets).

All routes of a point are timed interleaved with the measurement engine's timer (CUDA graphs,
weights rotated past L2; :mod:`sglang_consumer_gpu.measure.int8`); the result is the ratio
baseline / Triton per shape and its geometric mean.

    PYTHONPATH=. python scripts/bench_int8.py --out results/h100/int8/int8_bench.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6))
    by: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for r in doc["results"]:
        by.setdefault((r["n"], r["k"]), []).append((r["m"], r["ratio"]))
    for (n, k), pts in sorted(by.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1, label=f"N={n} K={k}")
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("speed-up: (torch._int_mm + epilogue) time / Triton time")
    g = doc["summary"]["geomean_ratio"]
    ax.set_title(f"Triton int8_scaled_mm ({doc['tiles_from']} tiles) on {doc['device']}: geomean {g:.3f}x")
    ax.legend(fontsize=6, ncol=3)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "results" / "h100" / "int8" / "int8_bench.json")
    p.add_argument(
        "--gpu", default="NVIDIA GeForce RTX 4090", help="GPU whose dispatch table picks the tiles"
    )
    p.add_argument("--m", default="", help="comma-separated M values (default: measure.int8.M_VALUES)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--plot-only", action="store_true", help="re-plot --out's JSON (no GPU needed)")
    args = p.parse_args()
    png = args.out.with_suffix(".png")
    if args.plot_only:
        plot(json.loads(args.out.read_text()), png)
        print(f"wrote {png}")
        return 0

    import torch

    from sglang_consumer_gpu.hardware.catalog import find_gpu
    from sglang_consumer_gpu.int8.tiles import select_tile
    from sglang_consumer_gpu.measure.common import environment, geomean
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.int8 import (
        M_VALUES,
        MODEL_LAYERS,
        Int8Case,
        Int8Job,
        Int8Run,
        sgl_kernel_available,
        unique_nk,
    )
    from sglang_consumer_gpu.measure.timer import Timer

    spec = find_gpu(args.gpu)
    ms = [int(x) for x in args.m.split(",")] if args.m else list(M_VALUES)
    t0 = time.time()
    shapes = unique_nk()
    tile = {(m, n, k): select_tile(spec, m, n, k) for n, k in shapes for m in ms}
    compiled = precompile(
        [Int8Job(Int8Case(m, n, k), tuple(t.to_list())) for (m, n, k), t in tile.items()], args.workers
    )
    print(f"precompiled {len(compiled)} cases ({time.time() - t0:.0f}s)", flush=True)
    sgl_ok, sgl_why = sgl_kernel_available()
    timer = Timer()
    results: list[dict[str, Any]] = []
    for n, k in shapes:
        for m in ms:
            run = Int8Run(Int8Case(m, n, k))
            routes = ("triton", "torch", "int_mm", *(("sgl-kernel",) if sgl_ok else ()))
            fns = {r: run.run(r, spec=spec) for r in routes}
            same = run.agree("triton", spec=spec)  # same answer before timing anything
            t = timer.compare(fns, run.slots)
            row = {"n": n, "k": k, "m": m, "tile": tile[(m, n, k)].label(), "triton_us": t["triton"].us,
                   "int_mm_epilogue_us": t["torch"].us, "ratio": t["torch"].us / t["triton"].us,
                   "int_mm_only_us": t["int_mm"].us, "ratio_vs_int_mm_only": t["int_mm"].us / t["triton"].us,
                   "padded_for_int_mm": m <= 16, "outputs_agree": same, "triton_tops": run.tops(t["triton"].us),
                   "spread": max(x.spread for x in t.values())}  # fmt: skip
            if sgl_ok:
                row.update(
                    sgl_kernel_us=t["sgl-kernel"].us, ratio_vs_sgl_kernel=t["sgl-kernel"].us / t["triton"].us
                )
            results.append(row)
            del run
        torch.cuda.empty_cache()
        print(f"N={n} K={k} done ({time.time() - t0:.0f}s)", flush=True)

    ratios = [r["ratio"] for r in results]
    gemm = [r["ratio_vs_int_mm_only"] for r in results]
    summary = {
        "points": len(results),
        "geomean_ratio": geomean(ratios),
        "geomean_ratio_vs_int_mm_only": geomean(gemm),
        "slower_than_int_mm_only": sum(x < 1.0 for x in gemm),
        "geomean_ratio_by_m": {str(m): geomean([r["ratio"] for r in results if r["m"] == m]) for m in ms},
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "slower_points": sum(x < 1.0 for x in ratios),
        "outputs_agree": all(r["outputs_agree"] for r in results),
        "sgl_kernel": sgl_why,
    }
    if sgl_ok:
        summary["geomean_ratio_vs_sgl_kernel"] = geomean([r["ratio_vs_sgl_kernel"] for r in results])
    doc = {**environment(), "tiles_from": spec.name, "out_dtype": "bfloat16",
           "layers": [layer.label for layer in MODEL_LAYERS], "summary": summary, "compile": describe(compiled),
           "results": results, "seconds": time.time() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    try:
        plot(doc, png)
    except Exception as exc:  # the JSON is the result; the plot can be redone with --plot-only
        print(f"plot failed: {exc}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
