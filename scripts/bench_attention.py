"""Time SGLang's attention kernels under sm_89-feasible tiles: the plugin's choice vs SGLang's sm_86/sm_89 branch.

Every tile timed here fits 101,376 bytes of shared memory by the analytic
model (an upper bound checked against the oracle), so this is the sm_89-
feasible space timed on whatever GPU runs it (the device machine: H100).
Ratios are measured in one run (SGLang's sm_89 branch tile / candidate time,
so > 1 means the candidate is faster); they are not RTX 4090 timings.

Workloads: extend attention prefill-heavy (4 sequences x 2048 new tokens
after a 512-token prefix) and decode-heavy (64 sequences x 8 new tokens after
a 2048-token prefix, as in speculative verification / mixed chunks), GQA 32/8
heads (MLA 576/512: 16/1); context (vision) prefill, 8 images x 1024 tokens,
16 heads, non-causal.

    python3 scripts/bench_attention.py --out $OUT/bench_attention.json      # device
    python3 scripts/bench_attention.py --plot results/bench_attention.json  # here: JSON -> PNG
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKLOADS = {
    "prefill-heavy": {"batch": 4, "extend": 2048, "prefix": 512},
    "decode-heavy": {"batch": 64, "extend": 8, "prefix": 2048},
}
L40S = "NVIDIA L40S"


def _extend_inputs(lq: int, lv: int, wl: dict[str, int]) -> tuple[Any, ...]:
    import torch

    dev, dt = "cuda", torch.bfloat16
    hq, hk = (16, 1) if lq == 576 else (32, 8)
    b, n, p = wl["batch"], wl["extend"], wl["prefix"]
    q = torch.randn(b * n, hq, lq, device=dev, dtype=dt)
    k = torch.randn(b * n, hk, lq, device=dev, dtype=dt)
    v = torch.randn(b * n, hk, lv, device=dev, dtype=dt)
    o = torch.empty(b * n, hq, lv, device=dev, dtype=dt)
    kb = torch.randn(b * p + 16, hk, lq, device=dev, dtype=dt)
    vb = torch.randn(b * p + 16, hk, lv, device=dev, dtype=dt)
    qo = torch.arange(0, (b + 1) * n, n, device=dev, dtype=torch.int32)
    kvp = torch.arange(0, (b + 1) * p, p, device=dev, dtype=torch.int32)
    kvi = torch.randperm(b * p, device=dev).to(torch.int64)
    return q, k, v, o, kb, vb, qo, kvp, kvi, None, True, None, n, 1.0, 1.0


def _time_extend(ea: Any, inputs: tuple[Any, ...], tile: tuple[int, int, int]) -> float:
    from triton.testing import do_bench

    original = ea._get_block_sizes_for_extend_attention

    def fixed(a: int, b: int) -> Any:
        return original(a, b)[:3] + tuple(tile)

    ea._get_block_sizes_for_extend_attention = fixed
    try:
        return float(do_bench(lambda: ea.extend_attention_fwd(*inputs), warmup=25, rep=100))
    finally:
        ea._get_block_sizes_for_extend_attention = original


def _time_prefill(pa: Any, d: int, block: int, warps: int) -> float:
    import torch
    from triton.testing import do_bench

    from sglang_consumer_gpu.patches.attention_launch import LaunchFilter, swap_kernel

    n_img, n_tok, h = 8, 1024, 16
    q, k, v = (torch.randn(n_img * n_tok, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    o = torch.empty_like(q)
    loc = torch.arange(0, n_img * n_tok, n_tok, device="cuda", dtype=torch.int32)
    lens = torch.full((n_img,), n_tok, device="cuda", dtype=torch.int32)

    def filt(grid: Any, a: Any, kw: dict[str, Any]) -> Any:
        return (grid[0], grid[1], math.ceil(n_tok / block)), dict(
            kw, BLOCK_M=block, BLOCK_N=block, num_warps=warps
        )

    with swap_kernel(pa, "_fwd_kernel", LaunchFilter(pa._fwd_kernel, filt)):
        return float(
            do_bench(lambda: pa.context_attention_fwd(q, k, v, o, loc, lens, n_tok, is_causal=False))
        )


def run(out: Path) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("sglang") is None:
        import sglang_env  # noqa: F401
    import sglang.kernels.ops.attention.extend_attention as ea
    import sglang.kernels.ops.attention.prefill_attention as pa
    import torch
    import triton

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
    from sglang_consumer_gpu.hardware import find_gpu

    spec = find_gpu(L40S)
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for lq, lv in HEAD_DIMS:
        saved = ea.CUDA_CAPABILITY
        ea.CUDA_CAPABILITY = (8, 9)
        try:
            sglang_tile = tuple(ea._get_block_sizes_for_extend_attention(lq, lv)[3:])
        finally:
            ea.CUDA_CAPABILITY = saved
        plugin = extend_tile(spec, lq, lv)
        plugin_tile = (plugin.block_m, plugin.block_n, plugin.num_warps)
        dm, dpe = qk_tile_width(lq)
        dv = qk_tile_width(lv)[0]
        cands = {sglang_tile, plugin_tile}
        for bm, bn in EXTEND_PREFERENCE[_width_class(dm + dpe, lq)]:
            if tile_fits(spec, bm, bn, dm + dpe, dv):
                cands.add((bm, bn, extend_warps(lq)))
        for wl_name, wl in WORKLOADS.items():
            inputs = _extend_inputs(lq, lv, wl)
            base = _time_extend(ea, inputs, sglang_tile)
            for tile in sorted(cands):
                ms = base if tile == sglang_tile else _time_extend(ea, inputs, tile)
                rows.append(
                    {
                        "kernel": "extend",
                        "lq": lq,
                        "lv": lv,
                        "workload": wl_name,
                        "tile": list(tile),
                        "ms": ms,
                        "ratio_vs_sglang_sm89": base / ms,
                        "is_sglang_sm89": tile == sglang_tile,
                        "is_plugin": tile == plugin_tile,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    for d in PREFILL_HEAD_DIMS:
        plugin = prefill_tile(spec, d)
        warps = 4 if d <= 64 else 8
        base = _time_prefill(pa, d, 64, warps)  # SGLang's branch for capability <= 8.x
        for block in PREFILL_PREFERENCE:
            if not tile_fits(spec, block, block, qk_tile_width(d)[0], qk_tile_width(d)[0]):
                continue
            ms = base if block == 64 else _time_prefill(pa, d, block, warps)
            rows.append(
                {
                    "kernel": "prefill",
                    "lq": d,
                    "lv": d,
                    "workload": "vision-prefill",
                    "tile": [block, block, warps],
                    "ms": ms,
                    "ratio_vs_sglang_sm89": base / ms,
                    "is_sglang_sm89": block == 64,
                    "is_plugin": block == plugin.block_m,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    plugin_rows = [r for r in rows if r["is_plugin"]]
    ratios = [r["ratio_vs_sglang_sm89"] for r in plugin_rows]
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "budget_bytes": spec.smem_per_block_optin,
        "seconds": round(time.time() - t0, 1),
        "plugin_geomean_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios)),
        "plugin_min_ratio": min(ratios),
        "rows": rows,
    }
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
    if args.out:
        run(args.out)
        try:
            print(plot(args.out))
        except ImportError:
            print("matplotlib missing here: plot later with --plot")
    if args.plot:
        print(plot(args.plot))
    if not (args.out or args.plot):
        ap.error("give --out (benchmark) or --plot (chart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
