#!/usr/bin/env python
"""Correctness of the Triton int8_scaled_mm on a GPU, against a float64 reference.

For every (N, K) of the model layers in ``sglang_consumer_gpu.int8.shapes`` and
M from 1 to 8192, with and without bias, bf16 and fp16 output (the four
combinations rotate over M, so each shape sees all four), tiles from the
dispatch table for ``--gpu`` (default: an RTX 4090's table, i.e. tiles proven
to fit 101,376 bytes):

* output vs float64 reference ``(A @ B) * scale_a * scale_b + bias``: error
  <= half an ulp of the output dtype (the one rounding the kernel makes) plus
  2^-20 of |(A @ B) * scale_a * scale_b| + |bias| (its float32 epilogue);
  reported in ulps;
* poisoned output: the result is written into a NaN-filled buffer with extra
  rows and columns; every element of the result must be written, and none of
  the guard rows/columns;
* exact int32 accumulation: the kernel's raw accumulator equals
  ``torch._int_mm`` bit for bit (M > 16, where ``_int_mm`` accepts it) and the
  exact integer product always (float64 holds these sums exactly), including
  the extreme case of all -128 inputs.

    PYTHONPATH=. python scripts/int8_correctness.py --out results/int8_correctness.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

M_LIST = (1, 7, 16, 33, 100, 128, 255, 512, 1000, 2048, 4099, 8192)
GUARD = 16  # extra poisoned rows and columns around the result
COMBOS = (("bfloat16", True), ("float16", False), ("bfloat16", False), ("float16", True))
# float32 epilogue: acc -> fp32 (rel 2^-24), two products and a sum: < 2^-20 relative.
EPILOGUE_REL = 2.0**-20
MANTISSA_BITS = {"bfloat16": 8, "float16": 11}  # significand bits, implicit one included
MIN_NORMAL_EXP = {"bfloat16": -126, "float16": -14}


def half_ulp(ref: Any, dtype_name: str) -> Any:
    """Half the spacing of ``dtype`` at |ref| (float64 tensor in, float64 out)."""
    import torch

    _, exp = torch.frexp(ref.abs().clamp_min(1e-300))  # |ref| = m * 2^exp, m in [0.5, 1)
    exp = torch.maximum(exp - 1, torch.tensor(MIN_NORMAL_EXP[dtype_name], device=ref.device))
    return torch.ldexp(torch.full_like(ref, 0.5), exp - (MANTISSA_BITS[dtype_name] - 1))


def rounding_ulps(dtype_name: str, device: str) -> float:
    """Allowed rounding error in ulps: half (round to nearest) on a GPU. Triton's
    CPU interpreter converts float32 to bf16 by truncation (its fp_trunc has no
    rounding), so a dry run on the CPU allows one whole bf16 ulp."""
    return 1.0 if device == "cpu" and dtype_name == "bfloat16" else 0.5


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def check_case(
    n: int, k: int, m: int, dtype_name: str, has_bias: bool, spec: Any, gen: Any, device: str = "cuda"
) -> dict[str, Any]:
    import torch

    from sglang_consumer_gpu.int8.ops import int8_mm_int32, int8_scaled_mm
    from sglang_consumer_gpu.int8.tiles import select_tile

    dev = torch.device(device)
    dtype = getattr(torch, dtype_name)
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, device=dev, generator=gen)
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev, generator=gen)
    b = w.t()  # column-major [K, N], as SGLang passes the weight
    # Scales that keep outputs O(1): |acc| ~ 73^2 sqrt(K).
    s = 1.0 / (73.0 * k**0.25)
    sa = (torch.rand((m, 1), device=dev, generator=gen) + 0.5) * s
    sb = (torch.rand((n,), device=dev, generator=gen) + 0.5) * s
    bias = torch.randn((n,), device=dev, generator=gen).to(dtype) if has_bias else None

    acc64 = a.double() @ b.double()  # exact: |sum| < 2^53
    prod = acc64 * sa.double() * sb.double()[None, :]
    ref = prod + bias.double()[None, :] if bias is not None else prod
    magnitude = prod.abs() + (bias.double().abs()[None, :] if bias is not None else 0.0)

    buf = torch.full((m + GUARD, n + GUARD), float("nan"), dtype=dtype, device=dev)
    out = int8_scaled_mm(a, b, sa, sb, dtype, bias, spec=spec, out=buf[:m, :n])
    plain = int8_scaled_mm(a, b, sa, sb, dtype, bias, spec=spec)
    _sync(device)
    unwritten = int(torch.isnan(out).sum())
    guard_touched = int((~torch.isnan(buf[m:, :])).sum() + (~torch.isnan(buf[:m, n:])).sum())
    err = (out.double() - ref).abs()
    bound = (
        half_ulp(ref, dtype_name) * rounding_ulps(dtype_name, device) * 2 * (1 + 1e-6)
        + magnitude * EPILOGUE_REL
    )
    ulps = err / (2 * half_ulp(ref, dtype_name))
    bad = int((err > bound).sum())
    same_as_plain = bool(torch.equal(out, plain))

    acc_buf = torch.full((m + GUARD, n + GUARD), torch.iinfo(torch.int32).min, dtype=torch.int32, device=dev)
    acc = int8_mm_int32(a, b, spec=spec, out=acc_buf[:m, :n])
    _sync(device)
    acc_exact = bool(torch.equal(acc.double(), acc64))
    acc_guard = int(
        (acc_buf[m:, :] != torch.iinfo(torch.int32).min).sum()
        + (acc_buf[:m, n:] != torch.iinfo(torch.int32).min).sum()
    )
    int_mm_equal: bool | None = None
    if m > 16:
        try:
            int_mm_equal = bool(torch.equal(acc, torch._int_mm(a, b)))
        except RuntimeError:
            int_mm_equal = bool(torch.equal(acc, torch._int_mm(a, b.contiguous())))
    ok = bad == 0 and unwritten == 0 and guard_touched == 0 and acc_exact and acc_guard == 0 and same_as_plain
    ok = ok and int_mm_equal is not False
    return {
        "n": n,
        "k": k,
        "m": m,
        "dtype": dtype_name,
        "bias": has_bias,
        "tile": select_tile(spec, m, n, k).label(),
        "max_err": float(err.max()) if err.numel() else 0.0,
        "max_ulps": float(ulps.max()) if ulps.numel() else 0.0,
        "max_err_vs_bound": float((err / bound).max()) if err.numel() else 0.0,
        "over_bound": bad,
        "unwritten": unwritten,
        "guard_writes": guard_touched + acc_guard,
        "int32_exact": acc_exact,
        "int32_equals_int_mm": int_mm_equal,
        "ok": ok,
    }


def extreme_case(spec: Any, device: str = "cuda", k: int = 18944) -> dict[str, Any]:
    """All -128: the largest accumulator magnitude int8 inputs can produce."""
    import torch

    from sglang_consumer_gpu.int8.ops import int8_mm_int32

    n, m = 256, 64
    a = torch.full((m, k), -128, dtype=torch.int8, device=device)
    b = torch.full((n, k), -128, dtype=torch.int8, device=device).t()
    acc = int8_mm_int32(a, b, spec=spec)
    want = 128 * 128 * k
    return {"k": k, "expected": want, "all_equal": bool((acc == want).all()), "ok": bool((acc == want).all())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "results" / "int8_correctness.json")
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
    from sglang_consumer_gpu.int8 import devtools
    from sglang_consumer_gpu.int8.shapes import LAYERS, unique_nk
    from sglang_consumer_gpu.int8.tiles import select_tile

    spec = find_gpu(args.gpu)
    ms = [int(x) for x in args.m.split(",")]
    t0 = time.time()
    cases = []
    nks = [tuple(int(x) for x in nk.split("x")) for nk in args.nk.split(";")] if args.nk else unique_nk()
    for n, k in nks:
        for i, m in enumerate(ms):
            dtype_name, has_bias = COMBOS[i % len(COMBOS)]
            cases.append((n, k, m, dtype_name, has_bias))
    variants = set()
    for n, k, m, dtype_name, has_bias in cases:
        tile = select_tile(spec, m, n, k)
        variants.add(devtools.variant_for(tile, dtype_name, has_bias, k))
        variants.add(devtools.variant_for(tile, "int32", False, k))
    errors = {}
    if args.device == "cuda":
        errors = {v: e for v, e in devtools.precompile(variants, args.workers).items() if e}
        print(
            f"precompiled {len(variants)} variants, {len(errors)} failed ({time.time() - t0:.0f}s)",
            flush=True,
        )

    gen = torch.Generator(device=args.device)
    gen.manual_seed(0)
    results = []
    for case in cases:
        try:
            r = check_case(*case, spec=spec, gen=gen, device=args.device)
        except Exception as exc:
            n, k, m, dtype_name, has_bias = case
            r = {
                "n": n,
                "k": k,
                "m": m,
                "dtype": dtype_name,
                "bias": has_bias,
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
        "layers": [layer.label for layer in LAYERS],
    }
    doc = {
        **devtools.environment(),
        "tiles_from": spec.name,
        "summary": summary,
        "extreme": extreme,
        "compile_errors": devtools.errors_json(errors),
        "cases": results,
        "seconds": time.time() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(summary | {"seconds": round(time.time() - t0, 1)}))
    return 0 if summary["failed"] == 0 and extreme["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
