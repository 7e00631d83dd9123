#!/usr/bin/env python
"""Correctness of the Triton int8_scaled_mm on a GPU, against a float64 reference.

For every (N, K) of the model layers (:data:`sglang_consumer_gpu.measure.int8.MODEL_LAYERS`)
and M from 1 to 8192, with and without bias, bf16 and fp16 output (the four combinations
rotate over M, so each shape sees all four), tiles from the dispatch table for ``--gpu``
(default: an RTX 4090's table, i.e. tiles proven to fit 101,376 bytes), through the
measurement engine's check (:func:`sglang_consumer_gpu.measure.int8.check_case`: elementwise
bound of half an ulp plus the float32 epilogue, poisoned output with guard rows/columns,
exact int32 accumulation vs the integer product and ``torch._int_mm``), and the all -128
extreme case. Kernels are compiled first, in parallel processes.

    PYTHONPATH=. python scripts/int8_correctness.py --out results/h100/int8/int8_correctness.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

M_LIST = (1, 7, 16, 33, 100, 128, 255, 512, 1000, 2048, 4099, 8192)
COMBOS = (("bfloat16", True), ("float16", False), ("bfloat16", False), ("float16", True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "results" / "h100" / "int8" / "int8_correctness.json")
    p.add_argument(
        "--gpu", default="NVIDIA GeForce RTX 4090", help="GPU whose dispatch table picks the tiles"
    )
    p.add_argument("--m", default=",".join(map(str, M_LIST)))
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--nk", default="", help="N,K pairs 'NxK;NxK' instead of the model layers (dry runs)")
    p.add_argument(
        "--device", default="cuda", help="cpu: a dry run under TRITON_INTERPRET=1 (small --nk only)"
    )
    args = p.parse_args()

    import torch

    from sglang_consumer_gpu.hardware.catalog import find_gpu
    from sglang_consumer_gpu.int8.tiles import select_tile
    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.int8 import (
        MODEL_LAYERS,
        Int8Case,
        Int8Job,
        check_case,
        extreme_case,
        unique_nk,
    )

    spec = find_gpu(args.gpu)
    ms = [int(x) for x in args.m.split(",")]
    t0 = time.time()
    nks = [tuple(int(x) for x in nk.split("x")) for nk in args.nk.split(";")] if args.nk else unique_nk()
    cases = [(n, k, m, *COMBOS[i % len(COMBOS)]) for n, k in nks for i, m in enumerate(ms)]
    compiled: dict[str, str] = {}
    if args.device == "cuda":
        jobs = []
        for n, k, m, dtype, bias in cases:
            tile = tuple(select_tile(spec, m, n, k).to_list())
            jobs += [
                Int8Job(Int8Case(m, n, k, dtype, bias), tile),
                Int8Job(Int8Case(m, n, k), tile, raw_acc=True),
            ]
        compiled = precompile(jobs, args.workers)
        print(f"precompiled {len(compiled)} variants ({time.time() - t0:.0f}s)", flush=True)

    gen = torch.Generator(device=args.device).manual_seed(0)
    results = []
    for n, k, m, dtype, bias in cases:
        try:
            r = check_case(n, k, m, dtype, bias, spec=spec, gen=gen, device=args.device)
        except Exception as exc:
            r = {
                "n": n,
                "k": k,
                "m": m,
                "dtype": dtype,
                "bias": bias,
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
            }
        results.append(r)
        if not r["ok"]:
            print("FAIL", r, flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    extreme = extreme_case(spec, args.device, k=18944 if args.device == "cuda" else 512)
    n_ok = sum(r["ok"] for r in results)
    summary = {
        "cases": len(results),
        "passed": n_ok,
        "failed": len(results) - n_ok,
        "max_ulps": max((r.get("max_ulps", 0.0) for r in results), default=0.0),
        "max_err_vs_bound": max((r.get("max_err_vs_bound", 0.0) for r in results), default=0.0),
        "int32_exact_cases": sum(bool(r.get("int32_exact")) for r in results),
        "int_mm_compared": sum(r.get("int32_equals_int_mm") is not None for r in results),
        "int_mm_equal": sum(bool(r.get("int32_equals_int_mm")) for r in results),
        "extreme_ok": extreme["ok"],
        "layers": [layer.label for layer in MODEL_LAYERS],
    }
    doc = {**environment(), "tiles_from": spec.name, "summary": summary, "extreme": extreme,
           "compile": describe(compiled), "cases": results, "seconds": time.time() - t0}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(summary | {"seconds": round(time.time() - t0, 1)}))
    return 0 if summary["failed"] == 0 and extreme["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
