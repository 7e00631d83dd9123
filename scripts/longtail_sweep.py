"""Dry-run SGLang's other Triton kernels that run in normal CUDA serving, for ~99 KB GPUs.

Each entry calls SGLang 0.5.23's own launcher with ``meta`` tensors on a
virtual GPU (``virtual_gpu`` + compile-only Triton, nothing launched) and
records the shared memory of every kernel it launches. Listed kernels:

- batch-invariant ops (``--enable-deterministic-inference``):
  ``matmul_persistent`` (Triton path, bf16/fp16/fp32), ``bmm_batch_invariant``,
  ``log_softmax``, ``mean_dim``, ``rms_norm``;
- block-fp8 linear on GPUs without DeepGEMM: ``w8a8_block_fp8_matmul_triton``
  with its default config and, on sm_89, SGLang's bundled L40S/L40 tuned configs
  (every batch-size entry);
- the deterministic (unified) and dense-prefill attention launchers are in the
  attention oracle (``sglang-consumer-gpu check``), not here.

    python scripts/longtail_sweep.py --out results/longtail_sweep.json

Prints one line per FAIL and writes every result to JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA GeForce RTX 5090")


def _batch_invariant_cases() -> list[tuple[str, Callable[[], Any]]]:
    import sglang.srt.batch_invariant_ops.batch_invariant_ops as bio
    import torch

    m = "meta"
    out: list[tuple[str, Callable[[], Any]]] = []
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        name = str(dt).removeprefix("torch.")
        a = torch.empty(512, 4096, device=m, dtype=dt)
        b = torch.empty(4096, 4096, device=m, dtype=dt).t()  # weight^T, as F.linear hands it
        out.append(
            (
                f"matmul_persistent {name} 512x4096x4096",
                lambda a=a, b=b: bio._matmul_persistent_triton(a, b, a.dtype),
            )
        )
        ab = torch.empty(8, 256, 512, device=m, dtype=dt)
        bb = torch.empty(8, 512, 256, device=m, dtype=dt)
        out.append(
            (f"bmm_batch_invariant {name} 8x256x512x256", lambda a=ab, b=bb: bio.bmm_batch_invariant(a, b))
        )
    x = torch.empty(64, 151_936, device=m, dtype=torch.float32)
    out.append(("log_softmax fp32 64x151936", lambda: bio.log_softmax(x, -1)))
    y = torch.empty(64, 4096, device=m, dtype=torch.bfloat16)
    out.append(("mean_dim bf16 64x4096", lambda: bio.mean_dim(y, 1)))
    w = torch.empty(4096, device=m, dtype=torch.bfloat16)
    out.append(("rms_norm bf16 64x4096", lambda: bio.rms_norm(y, w, 1e-6)))
    return out


def _block_fp8_cases(spec: Any) -> list[tuple[str, Callable[[], Any]]]:
    import sglang.kernels.ops.gemm.fp8_kernel as fk
    import torch

    m = "meta"
    out: list[tuple[str, Callable[[], Any]]] = []
    shapes = [(7168, 2048), (4096, 7168), (18432, 7168)]  # DeepSeek-style N, K
    for n, k in shapes:
        for mm in (1, 64, 512, 4096):
            a = torch.empty(mm, k, device=m, dtype=torch.float8_e4m3fn)
            b = torch.empty(n, k, device=m, dtype=torch.float8_e4m3fn)
            a_s = torch.empty(mm, k // 128, device=m, dtype=torch.float32)
            b_s = torch.empty(n // 128, k // 128, device=m, dtype=torch.float32)
            out.append(
                (
                    f"w8a8_block_fp8_matmul N={n} K={k} M={mm} (config lookup as SGLang)",
                    lambda a=a, b=b, a_s=a_s, b_s=b_s: fk.w8a8_block_fp8_matmul_triton(
                        a, b, a_s, b_s, [128, 128], torch.bfloat16
                    ),
                )
            )
    return out


def sweep(out_path: Path) -> dict[str, Any]:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.oracle.launch import capture_launches
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    rows: list[dict[str, Any]] = []
    t0 = time.time()
    preload = ("sglang.srt.batch_invariant_ops.batch_invariant_ops", "sglang.kernels.ops.gemm.fp8_kernel")
    for gpu in GPUS:
        spec = find_gpu(gpu)
        from sglang_consumer_gpu.oracle import virtual

        with virtual_gpu(spec, preload=(*virtual.PRELOAD, *preload)):
            items = _batch_invariant_cases() + _block_fp8_cases(spec)
            for label, call in items:
                row: dict[str, Any] = {"gpu": spec.name, "arch": spec.arch_name, "case": label}
                try:
                    with capture_launches(spec) as launches:
                        call()
                    row["launches"] = [
                        {
                            "kernel": lc.kernel,
                            "shared": lc.resources.shared,
                            "limit": lc.resources.limit,
                            "fits": lc.resources.fits,
                            "config": {
                                k: v for k, v in lc.constexprs.items() if "BLOCK" in k or k.startswith("num_")
                            },
                        }
                        for lc in launches
                        if lc.resources
                    ]
                    row["fits"] = all(x["fits"] for x in row["launches"])
                except Exception as exc:  # a launcher that cannot be dry-run is reported, not hidden
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    row["fits"] = None
                rows.append(row)
                if row["fits"] is False:
                    worst = max(row["launches"], key=lambda x: x["shared"])
                    print(
                        f"FAIL {spec.arch_name} {spec.name}: {label}: {worst['kernel']} {worst['config']} "
                        f"needs {worst['shared']} > {worst['limit']}",
                        flush=True,
                    )
                elif row["fits"] is None:
                    print(f"ERROR {spec.arch_name}: {label}: {row['error']}", flush=True)
    result = {
        "seconds": round(time.time() - t0, 1),
        "failed": sum(r["fits"] is False for r in rows),
        "errors": sum(r["fits"] is None for r in rows),
        "total": len(rows),
        "rows": rows,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/longtail_sweep.json"))
    args = ap.parse_args()
    sweep(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
