"""Device check of the cutlass-moe-fp8 route (issue 23 part 1): block-FP8 MoE called the way
``--moe-runner-backend cutlass`` calls it, on an sm_120 GPU (or one emulated), against float32 references.

On the device machine, with the carried SGLang 0.5.17 and the working tree on PYTHONPATH, under the
RTX 5090 emulation (the route is taken because the GPU says sm_120):

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1; export PYTHONPATH=$PWD:$PYTHONPATH
    python3 -m sglang_consumer_gpu emulate --gpu "NVIDIA GeForce RTX 5090" -- \\
        python3 scripts/device/cutlass_moe_check.py --out $OUT

or natively on the H100 with the route forced (``--force-route`` names the RTX 5090 as the plugin's
virtual GPU, ``SGLANG_CONSUMER_GPU_VIRTUAL``: the plugin decides as on an sm_120 card while the
kernels compile for the H100's own sm_90):

    python3 scripts/device/cutlass_moe_check.py --force-route --out $OUT

Each case runs :func:`sglang_consumer_gpu.families.cutlass_moe.check_routed`: SGLang's
``cutlass_fused_experts_fp8`` module attribute called with the layer's weights transposed and an
``output`` buffer, as ``Fp8MoEMethod.apply`` calls it, NaN-poisoned output, compared with a
quantization-faithful float32 reference (judged against its bound) and an unquantized one
(reported). ``cutlass_moe_check.json`` is written after every case: the GPU, the plugin's decision,
per case the verdict, errors, bounds and which stand-ins ran (outside a server SGLang's exec config
and TP group are missing; its routing sort and activation quantizer are used when they run and
check out). Exit status 0 when every case passed and was routed, 1 otherwise. About a minute on an
H100 (compiles included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RTX_5090 = "NVIDIA GeForce RTX 5090"
#: (E, N, K, topk, M, activation dtype): Qwen3-30B-A3B-FP8 widths at decode / mixed / prefill batch
#: sizes, DeepSeek-V3 at TP8 (K = 7168), and a layer whose K and N are not multiples of 128.
CASES: tuple[tuple[int, int, int, int, int, str], ...] = (
    (128, 768, 2048, 8, 1, "bfloat16"),
    (128, 768, 2048, 8, 33, "bfloat16"),
    (128, 768, 2048, 8, 256, "float16"),
    (128, 768, 2048, 8, 1024, "bfloat16"),
    (256, 256, 7168, 8, 16, "bfloat16"),
    (256, 256, 7168, 8, 200, "float16"),
    (8, 320, 704, 2, 77, "bfloat16"),
)
QUICK = CASES[:2] + CASES[4:5]


def _gpu() -> dict[str, Any]:
    import torch

    from sglang_consumer_gpu.hardware.current import current_spec

    spec = current_spec()
    return {
        "torch_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
        "plugin_spec": spec.to_dict() if spec is not None else None,
        "triton_override_arch": os.environ.get("TRITON_OVERRIDE_ARCH"),
        "virtual": os.environ.get("SGLANG_CONSUMER_GPU_VIRTUAL"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="where the JSON goes")
    p.add_argument("--force-route", action="store_true", help="decide as on an RTX 5090 (native run)")
    p.add_argument("--quick", action="store_true", help="3 cases")
    args = p.parse_args(argv)
    if args.force_route:
        os.environ["SGLANG_CONSUMER_GPU_VIRTUAL"] = RTX_5090

    import torch

    if not torch.cuda.is_available():
        print("cutlass_moe_check: no CUDA GPU here; run it on the device machine", file=sys.stderr)
        return 2
    from sglang_consumer_gpu.families.cutlass_moe import check_routed

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cutlass_moe_check.json"
    report: dict[str, Any] = {"gpu": _gpu(), "cases": []}
    start = time.perf_counter()
    for E, N, K, topk, M, dtype in QUICK if args.quick else CASES:
        t0 = time.perf_counter()
        try:
            row = check_routed(E, N, K, topk, M, dtype, device="cuda")
        except Exception as exc:  # recorded, and the other cases go on
            text = str(exc).strip().splitlines()
            row = {"case": {"E": E, "N": N, "K": K, "topk": topk, "M": M, "act_dtype": dtype}, "ok": False,
                   "error": f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]}  # fmt: skip
        row["seconds"] = round(time.perf_counter() - t0, 2)
        report["cases"].append(row)
        report["seconds"] = round(time.perf_counter() - start, 2)
        path.write_text(json.dumps(report, indent=1))
        f = row.get("faithful") or {}
        print(
            f"E={E} N={N} K={K} top{topk} M={M} {dtype}: {'PASS' if row['ok'] and row.get('routed') else 'FAIL'}"
            f" routed={row.get('routed')} error={f.get('error')} bound={f.get('bound')}"
            f" unquantized={row.get('unquantized_error')} {row.get('error', '')}",
            flush=True,
        )
    passed = all(r["ok"] and r.get("routed") for r in report["cases"])
    report["passed"] = passed
    path.write_text(json.dumps(report, indent=1))
    print(f"{sum(bool(r['ok'] and r.get('routed')) for r in report['cases'])}/{len(report['cases'])} passed "
          f"in {report['seconds']} s; wrote {path}")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
