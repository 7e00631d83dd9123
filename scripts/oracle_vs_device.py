"""Oracle vs device: the compile-only number must equal what SGLang's own launch compiles.

Run on the device machine (H100, no SGLang installed), see scripts/device/README.md:

    run(command="PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/oracle_vs_device.py --out $OUT/oracle_vs_device.json",
        carry=[".carry/sglang-0.5.23"])

For each case it
1. launches SGLang 0.5.23's real launcher (``invoke_fused_moe_kernel``, the
   attention launchers) on real CUDA tensors and records ``metadata.shared``
   of the kernel Triton compiled for that launch (or the "Required: N" of an
   OutOfResources); MoE GEMM outputs are also checked against a float32 torch
   reference where the quantisation is simple (bf16/fp16, fp8 with unit scales);
2. computes the oracle's number with THE SAME Triton on the same machine:
   :mod:`sglang_consumer_gpu.oracle` dry-runs the same launcher with ``meta``
   tensors on a virtual H100 under ``compile_only`` (``GPUTarget("cuda", 90, 32)``);
3. writes both, and whether they are equal, to JSON.

It also records the oracle's sm_89 number for the same configs (an RTX 4090
needs a different amount than an H100 for the same tile).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("SGLANG_CONSUMER_GPU_ORACLE_CACHE", "0")  # numbers from compiles, not a cache

from scripts.device.sglang_env import ensure_sglang

ensure_sglang()  # an installed SGLang, else the device machine's carry of its kernel files

import torch  # noqa: E402
import triton  # noqa: E402

from sglang_consumer_gpu.families import on_gpu  # noqa: E402
from sglang_consumer_gpu.hardware import find_gpu  # noqa: E402
from sglang_consumer_gpu.measure.moe import align  # noqa: E402
from sglang_consumer_gpu.oracle.kernels import moe as oracle_moe  # noqa: E402

H100 = find_gpu("NVIDIA H100 80GB HBM3")
RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
MOE_NAMES = ("fused_moe_kernel", "fused_moe_kernel_gptq_awq")


@contextlib.contextmanager
def record_real_launches():
    """Record the compiled kernel of every real Triton launch (launches still run)."""
    from triton.runtime.jit import JITFunction

    original = JITFunction.run
    seen: list[tuple[str, int]] = []

    def run(self, *args, grid, warmup, **kwargs):
        kernel = original(self, *args, grid=grid, warmup=warmup, **kwargs)
        if kernel is not None:
            seen.append((self.fn.__name__, int(kernel.metadata.shared)))
        return kernel

    JITFunction.run = run
    try:
        yield seen
    finally:
        JITFunction.run = original


def _required(exc: BaseException) -> int | None:
    m = re.search(r"Required: (\d+)", str(exc))
    return int(m.group(1)) if m else None


# --- fused MoE -------------------------------------------------------------------


def moe_real(case: dict[str, Any]) -> dict[str, Any]:
    """Launch SGLang's invoke_fused_moe_kernel on the H100 for one GEMM."""
    import triton.language as tl
    from sglang.kernels.ops.moe import fused_moe_triton_kernels as fk

    E, N, K, topk, M = (case[k] for k in ("E", "N", "K", "topk", "M"))
    kind, gemm, cfg = case["dtype"] or "bf16", case["gemm"], dict(case["config"])
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    act = torch.float16 if kind == "fp16" else torch.bfloat16
    scores = torch.rand(M, E, device=dev, generator=g)
    topk_w, topk_ids = torch.softmax(scores, -1).topk(topk, dim=-1)
    topk_ids = topk_ids.to(torch.int32)
    topk_w = topk_w.float().contiguous()
    routing = align(topk_ids, cfg["BLOCK_SIZE_M"], E)
    bufs = (routing.sorted_ids, routing.expert_ids, routing.num_post)
    rows_in, n_out, k_in = (M, 2 * N, K) if gemm == "up" else (M * topk, K, N)
    a = (torch.randn(rows_in, k_in, device=dev, generator=g) * 0.5).to(act)
    a_scale = b_scale = None
    block = case.get("block_shape")
    if kind in ("bf16", "fp16"):
        b = (torch.randn(E, n_out, k_in, device=dev, generator=g) * 0.05).to(act)
    elif kind == "fp8_w8a8":  # pre-quantized activations (SGLang's quant-once path), unit scales
        a = a.to(torch.float8_e4m3fn)
        a_scale = torch.ones(rows_in, k_in // block[1], device=dev, dtype=torch.float32)
        b = (torch.randn(E, n_out, k_in, device=dev, generator=g) * 0.05).to(torch.float8_e4m3fn)
        b_scale = torch.ones(E, -(-n_out // block[0]), -(-k_in // block[1]), device=dev, dtype=torch.float32)
    elif kind == "int4_w4a16":
        b = torch.randint(0, 255, (E, n_out, k_in // 2), device=dev, dtype=torch.uint8, generator=g)
        b_scale = torch.full((E, n_out, k_in // block[1]), 0.01, device=dev, dtype=torch.bfloat16)
    else:
        raise ValueError(kind)
    c = (
        torch.zeros(M * topk, n_out, device=dev, dtype=act)
        if gemm == "up"
        else torch.zeros(M, topk, n_out, device=dev, dtype=act)
    )
    out: dict[str, Any] = {"align": routing.path}
    with record_real_launches() as seen:
        try:
            fk.invoke_fused_moe_kernel(
                a, b, None, c, a_scale, b_scale, None, topk_w, topk_ids, *bufs,
                gemm == "down", topk if gemm == "up" else 1, cfg,
                compute_type=tl.float16 if act == torch.float16 else tl.bfloat16,
                use_fp8_w8a8=kind == "fp8_w8a8", use_int8_w8a8=False, use_int8_w8a16=False,
                use_int4_w4a16=kind == "int4_w4a16", per_channel_quant=False, block_shape=block,
            )  # fmt: skip
            torch.cuda.synchronize()
        except Exception as exc:
            out["device_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            out["device_required"] = _required(exc)
    moe = [s for n, s in seen if n in MOE_NAMES]
    out["device_shared"] = moe[-1] if moe else out.get("device_required")
    if moe and kind in ("bf16", "fp16", "fp8_w8a8"):
        af, bf = a.float(), b.float()
        flat = topk_ids.flatten().long()
        if gemm == "up":
            ref = torch.einsum("tk,tnk->tn", af[torch.arange(M * topk, device=dev) // topk], bf[flat])
            got = c.float()
        else:
            ref = torch.einsum("tk,tnk->tn", af, bf[flat]) * topk_w.flatten()[:, None]
            got = c.float().view(M * topk, n_out)
        out["max_rel_err"] = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-6))
    return out


def moe_oracle(case: dict[str, Any], spec: Any) -> int:
    kw = {k: case.get(k) for k in ("E", "N", "K", "topk", "M", "dtype", "block_shape", "config")}
    return oracle_moe.moe_gemm_resources(spec, gemm=case["gemm"], cache=False, **kw).shared


def _cfg(m: int, n: int, k: int, g: int, w: int | None = None, s: int | None = None) -> dict[str, int]:
    c = {"BLOCK_SIZE_M": m, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": k, "GROUP_SIZE_M": g}
    if w:
        c["num_warps"] = w
    if s:
        c["num_stages"] = s
    return c


QWEN = {"E": 128, "N": 768, "K": 2048, "topk": 8}
MOE_CASES: list[dict[str, Any]] = [
    {"name": "bf16 default M>E", **QWEN, "M": 256, "dtype": None, "gemm": "up", "config": _cfg(64, 64, 32, 8)},
    {"name": "fp16 default M<=E", "E": 8, "N": 1024, "K": 2048, "topk": 2, "M": 4, "dtype": "fp16",
     "gemm": "up", "config": _cfg(16, 32, 64, 1)},
    {"name": "bf16 64x128x64 w4 s4", **QWEN, "M": 256, "dtype": None, "gemm": "up",
     "config": _cfg(64, 128, 64, 16, 4, 4)},
    {"name": "bf16 down 128x128x64 w8 s3", **QWEN, "M": 256, "dtype": None, "gemm": "down",
     "config": _cfg(128, 128, 64, 16, 8, 3)},
    {"name": "bf16 seed tile 128x128x128 w8 s4", **QWEN, "M": 256, "dtype": None, "gemm": "up",
     "config": _cfg(128, 128, 128, 16, 8, 4)},
    {"name": "fp8 block 64x128x128 w4 s3", **QWEN, "M": 256, "dtype": "fp8_w8a8", "block_shape": [128, 128],
     "gemm": "up", "config": _cfg(64, 128, 128, 32, 4, 3)},
    {"name": "fp8 block swap-AB 16x64x128 w4 s2", **QWEN, "M": 16, "dtype": "fp8_w8a8",
     "block_shape": [128, 128], "gemm": "up", "config": _cfg(16, 64, 128, 1, 4, 2)},
    {"name": "int4 w4a16 64x64x128 w4 s3", **QWEN, "M": 256, "dtype": "int4_w4a16", "block_shape": [0, 128],
     "gemm": "up", "config": _cfg(64, 64, 128, 8, 4, 3)},
]  # fmt: skip


# --- attention ------------------------------------------------------------------


def attention_pairs(results: list[dict[str, Any]]) -> None:
    try:
        from sglang_consumer_gpu.oracle.kernels import attention as att
    except Exception as exc:
        results.append({"kind": "attention", "skipped": f"attention spec not importable: {exc}"})
        return
    cases = [
        att.AttentionCase("extend", 128, 128),
        att.AttentionCase("extend", 256, 256),
        att.AttentionCase("decode", 128, 128, q_heads=32, kv_heads=8),
        att.AttentionCase("decode", 576, 512, q_heads=16, kv_heads=1),
        att.AttentionCase("prefill", 128, 128, variant="noncausal"),
    ]
    import importlib

    for case in cases:
        row: dict[str, Any] = {"kind": "attention", "name": case.label}
        try:
            module_name, fn_name = att.LAUNCHERS[case.launcher]
            fn = getattr(importlib.import_module(module_name), fn_name)
            build = {"prefill": att._prefill_args, "decode": att._decode_args}.get(
                case.launcher, att._extend_args
            )
            args, kwargs = build(case)

            def real(t: Any, i: int, case: Any = case) -> Any:
                if not isinstance(t, torch.Tensor):
                    return t
                if t.dtype.is_floating_point:
                    return (torch.randn(t.shape, device="cuda") * 0.1).to(t.dtype)
                fill = 1 if (case.launcher == "decode" and i == 8) else 0  # decode's num_kv_splits
                return torch.full(t.shape, fill, device="cuda", dtype=t.dtype)

            cargs = tuple(real(t, i) for i, t in enumerate(args))
            ckw = {k: real(v, -1) for k, v in kwargs.items()}
            with record_real_launches() as seen:
                fn(*cargs, **ckw)
                torch.cuda.synchronize()
            row["device"] = seen
            with on_gpu(H100, patched=False):
                row["oracle_sm90"] = [(x.kernel, x.resources.shared) for x in att.dry_run(H100, case)]
            with on_gpu(RTX_4090, patched=False):
                row["oracle_sm89"] = [(x.kernel, x.resources.shared) for x in att.dry_run(RTX_4090, case)]
            row["equal"] = [tuple(x) for x in seen] == [tuple(x) for x in row["oracle_sm90"]]
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["trace"] = traceback.format_exc()[-1500:]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("oracle_vs_device.json"))
    ap.add_argument("--no-attention", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    results: list[dict[str, Any]] = []
    meta = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "capability": list(torch.cuda.get_device_capability()) if torch.cuda.is_available() else None,
    }
    print(json.dumps(meta), flush=True)
    for case in MOE_CASES:
        row: dict[str, Any] = {"kind": "moe", **case}
        try:
            row.update(moe_real(case))
            row["oracle_sm90"] = moe_oracle(case, H100)
            row["oracle_sm89"] = moe_oracle(case, RTX_4090)
            row["equal"] = row["device_shared"] == row["oracle_sm90"]
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["trace"] = traceback.format_exc()[-1500:]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("trace", "config")}), flush=True)
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    if not args.no_attention:
        attention_pairs(results)
    pairs = [r for r in results if "equal" in r]
    meta["pairs"] = len(pairs)
    meta["equal"] = sum(bool(r["equal"]) for r in pairs)
    meta["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(json.dumps(meta), flush=True)
    return 0 if pairs and meta["equal"] == len(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
