#!/usr/bin/env python
"""Triton int8_scaled_mm vs torch._int_mm + a scale epilogue, on the device machine.

The baseline is what a user without sgl-kernel could write:
``(torch._int_mm(a, b) * scale_a * scale_b).to(out_dtype)`` (``_int_mm``
needs M > 16, so smaller batches are zero-padded to 32 rows inside the timed
call, as a user would have to). The Triton side uses the tiles the dispatch
table gives an RTX 4090/5090 (``--gpu``), i.e. tiles proven to fit 101,376
bytes of shared memory, timed here on whatever GPU runs the script.

``torch._int_mm`` alone (no scaling at all, so not a usable layer) is timed
too, as the floor any ``_int_mm``-based path could reach: the ratio against it
says how the Triton GEMM itself compares with cuBLASLt's int8 GEMM.

All are timed in one run as CUDA-graph GPU time with weights rotated
past L2 (see ``sglang_consumer_gpu.int8.devtools``); the result is the ratio
baseline / Triton per shape and its geometric mean. sgl-kernel's CUTLASS
kernel is not compared: the device machine has no sgl_kernel (its 373 MB
wheel cannot travel: 64 MiB limit), and on an H100 it would run its sm_90
kernels, not the sm_89 ones an RTX 4090 gets.

    PYTHONPATH=. python scripts/bench_int8.py --out results/int8_bench.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _triton_call(op: Any, a: Any, weights: list[Any], sa: Any, sb: Any, spec: Any, i: int) -> Any:
    import torch

    return op(a, weights[i].t(), sa, sb, torch.bfloat16, None, spec=spec)


def _baseline_call(a: Any, b: list[Any], sa: Any, sb: Any, a_pad: Any, sa_pad: Any, i: int) -> Any:
    """What a user could write: ``torch._int_mm`` (M > 16 only, so small
    batches are zero-padded) and the scales applied in float32."""
    import torch

    if a_pad is not None:
        m = a.shape[0]
        a_pad[:m].copy_(a)
        sa_pad[:m].copy_(sa)
        return (torch._int_mm(a_pad, b[i]) * sa_pad * sb).to(torch.bfloat16)[:m]
    return (torch._int_mm(a, b[i]) * sa * sb).to(torch.bfloat16)


def _int_mm_only(a: Any, b: list[Any], a_pad: Any, i: int) -> Any:
    """The bare int32 GEMM (cuBLASLt), no scaling: a floor for any _int_mm-based path."""
    import torch

    if a_pad is not None:
        a_pad[: a.shape[0]].copy_(a)
        return torch._int_mm(a_pad, b[i])
    return torch._int_mm(a, b[i])


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
    p.add_argument("--out", type=Path, default=REPO / "results" / "int8_bench.json")
    p.add_argument(
        "--gpu", default="NVIDIA GeForce RTX 4090", help="GPU whose dispatch table picks the tiles"
    )
    p.add_argument("--m", default="", help="comma-separated M values (default: shapes.M_VALUES)")
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
    from sglang_consumer_gpu.int8 import devtools
    from sglang_consumer_gpu.int8.ops import int8_scaled_mm
    from sglang_consumer_gpu.int8.shapes import LAYERS, M_VALUES, unique_nk
    from sglang_consumer_gpu.int8.tiles import select_tile

    spec = find_gpu(args.gpu)
    ms = [int(x) for x in args.m.split(",")] if args.m else list(M_VALUES)
    t0 = time.time()
    shapes = unique_nk()
    variants = {
        devtools.variant_for(select_tile(spec, m, n, k), "bfloat16", False, k) for n, k in shapes for m in ms
    }
    errors = {v: e for v, e in devtools.precompile(variants, args.workers).items() if e}
    print(f"precompiled {len(variants)} variants, {len(errors)} failed ({time.time() - t0:.0f}s)", flush=True)

    dev = torch.device("cuda")
    results: list[dict[str, Any]] = []
    col_major_ok = True
    for n, k in shapes:
        copies = devtools.weight_copies(n, k)
        weights, sb = devtools.random_weights(n, k, copies, dev)
        for m in ms:
            a, sa = devtools.random_activations(m, k, dev)
            pad = 32 - m if m <= 16 else 0  # _int_mm needs M > 16
            a_pad = torch.zeros((m + pad, k), dtype=torch.int8, device=dev)
            sa_pad = torch.zeros((m + pad, 1), device=dev)
            try:
                torch._int_mm(a_pad if pad else a, weights[0].t())
            except RuntimeError:
                col_major_ok = False
            b_for_int_mm = [w.t() if col_major_ok else w.t().contiguous() for w in weights]

            triton_call = functools.partial(_triton_call, int8_scaled_mm, a, weights, sa, sb, spec)
            baseline_call = functools.partial(
                _baseline_call, a, b_for_int_mm, sa, sb, a_pad if pad else None, sa_pad
            )

            # Same answer before timing anything (the baseline rounds its float32 result once too).
            same = torch.allclose(triton_call(0).float(), baseline_call(0).float(), rtol=2e-2, atol=1e-2)
            t_triton = devtools.graph_time_us(triton_call, copies=copies)
            t_base = devtools.graph_time_us(baseline_call, copies=copies)
            t_gemm = devtools.graph_time_us(
                functools.partial(_int_mm_only, a, b_for_int_mm, a_pad if pad else None), copies=copies
            )
            results.append(
                {
                    "n": n,
                    "k": k,
                    "m": m,
                    "tile": select_tile(spec, m, n, k).label(),
                    "triton_us": t_triton,
                    "int_mm_epilogue_us": t_base,
                    "ratio": t_base / t_triton,
                    "int_mm_only_us": t_gemm,
                    "ratio_vs_int_mm_only": t_gemm / t_triton,
                    "padded_for_int_mm": bool(pad),
                    "outputs_agree": bool(same),
                    "triton_tops": 2 * m * n * k / t_triton / 1e6,
                }
            )
            del b_for_int_mm
        del weights
        torch.cuda.empty_cache()
        print(f"N={n} K={k} done ({time.time() - t0:.0f}s)", flush=True)

    ratios = [r["ratio"] for r in results]
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    by_m = {}
    for m in ms:
        rs = [r["ratio"] for r in results if r["m"] == m]
        by_m[str(m)] = math.exp(sum(math.log(x) for x in rs) / len(rs))
    gemm_ratios = [r["ratio_vs_int_mm_only"] for r in results]
    summary = {
        "points": len(results),
        "geomean_ratio": geo,
        "geomean_ratio_vs_int_mm_only": math.exp(sum(math.log(x) for x in gemm_ratios) / len(gemm_ratios)),
        "slower_than_int_mm_only": sum(x < 1.0 for x in gemm_ratios),
        "geomean_ratio_by_m": by_m,
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "slower_points": sum(x < 1.0 for x in ratios),
        "outputs_agree": all(r["outputs_agree"] for r in results),
        "int_mm_took_column_major_b": col_major_ok,
    }
    doc = {
        **devtools.environment(),
        "tiles_from": spec.name,
        "out_dtype": "bfloat16",
        "layers": [layer.label for layer in LAYERS],
        "summary": summary,
        "compile_errors": devtools.errors_json(errors),
        "results": results,
        "seconds": time.time() - t0,
    }
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
