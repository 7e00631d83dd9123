"""SGLang's other Triton kernels that run in normal CUDA serving, on ~99 KB GPUs: oracle, safety net, device.

Listed kernels (SGLang's own launchers, SGLang 0.5.17 and 0.5.23):

- batch-invariant ops (``--enable-deterministic-inference``):
  ``matmul_persistent`` (Triton path, bf16/fp16/fp32), ``bmm_batch_invariant``,
  ``log_softmax``, ``mean_dim``, ``rms_norm``;
- block-fp8 linear on GPUs without DeepGEMM: ``w8a8_block_fp8_matmul_triton``
  with SGLang's config lookup (on sm_89 its bundled L40S/L40 tuned files);
- the deterministic (unified) and dense-prefill attention launchers are in the
  attention oracle (``sglang-consumer-gpu check``), not here.

Modes:

- ``oracle`` (default, any machine): each launcher runs with ``meta`` tensors on
  a virtual RTX 3090/4090, L40S and RTX 5090 under the compile-only oracle;
  prints one line per kernel that does not fit.
- ``guard`` (any machine): the same launches through Triton's real launch path
  with each GPU's limit emulated (:mod:`sglang_consumer_gpu.emulation.no_gpu`)
  and the safety net installed; every case must launch (``failed`` counts the
  ones that still hit ``OutOfResources``).
- ``device`` (a live GPU): real CUDA tensors, real launches, the safety net
  installed; run it under the end-to-end harness's cap
  (``SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376``) or from
  ``scripts/device/safety_check.py``, which applies the cap itself.

    PYTHONPATH=$PWD:$PYTHONPATH python scripts/longtail_sweep.py --out results/cpu/longtail/longtail_sweep.json
    PYTHONPATH=$PWD:$PYTHONPATH python scripts/longtail_sweep.py --mode guard --out results/cpu/longtail/longtail_guard.json

Writes every result to JSON.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.patches import moe_config
from sglang_consumer_gpu.patches.safety_net import BATCH_INVARIANT

GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA GeForce RTX 5090")
BIO = BATCH_INVARIANT.module
#: Where ``w8a8_block_fp8_matmul_triton`` lives: 0.5.23, then 0.5.17.
FP8_KERNEL_MODULES = ("sglang.kernels.ops.gemm.fp8_kernel", moe_config.QUANT_FP8)

Case = tuple[str, Callable[[], Any]]


class Tensors:
    """Tensors for one mode: ``meta`` (dry runs) or random data on ``cuda``."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.device = torch, device
        self.gen = torch.Generator(device=device).manual_seed(0) if device != "meta" else None

    def randn(self, *shape: int, dtype: Any, scale: float = 1.0) -> Any:
        t = self.torch
        if self.device == "meta":
            return t.empty(*shape, device="meta", dtype=dtype)
        return (t.randn(*shape, device=self.device, generator=self.gen) * scale).to(dtype)

    def scales(self, *shape: int) -> Any:
        t = self.torch
        if self.device == "meta":
            return t.empty(*shape, device="meta", dtype=t.float32)
        return t.rand(*shape, device=self.device, generator=self.gen) * 0.01 + 0.005


def fp8_module() -> Any:
    for name in FP8_KERNEL_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "w8a8_block_fp8_matmul_triton"):
            return mod
    raise ImportError(f"w8a8_block_fp8_matmul_triton is in none of {FP8_KERNEL_MODULES}")


def matmul(bio: Any, a: Any, b: Any) -> Any:
    """SGLang's Triton persistent matmul (0.5.23 added an ``out_dtype`` argument)."""
    fn = bio._matmul_persistent_triton
    if "out_dtype" in inspect.signature(fn).parameters:
        return fn(a, b, out_dtype=a.dtype)
    return fn(a, b)


def batch_invariant_cases(x: Tensors) -> list[Case]:
    bio = importlib.import_module(BIO)
    torch = x.torch
    out: list[Case] = []
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        name = str(dt).removeprefix("torch.")
        a = x.randn(512, 4096, dtype=dt)
        b = x.randn(4096, 4096, dtype=dt, scale=0.02).t()  # weight^T, as F.linear hands it
        out.append((f"matmul_persistent {name} 512x4096x4096", lambda a=a, b=b: matmul(bio, a, b)))
        ab = x.randn(8, 256, 512, dtype=dt)
        bb = x.randn(8, 512, 256, dtype=dt, scale=0.05)
        out.append(
            (f"bmm_batch_invariant {name} 8x256x512x256", lambda a=ab, b=bb: bio.bmm_batch_invariant(a, b))
        )
    logits = x.randn(64, 151_936, dtype=torch.float32)
    out.append(("log_softmax fp32 64x151936", lambda: bio.log_softmax(logits, -1)))
    y = x.randn(64, 4096, dtype=torch.bfloat16)
    out.append(("mean_dim bf16 64x4096", lambda: bio.mean_dim(y, 1)))
    w = x.randn(4096, dtype=torch.bfloat16)
    out.append(("rms_norm bf16 64x4096", lambda: bio.rms_norm(y, w, 1e-6)))
    return out


def block_fp8_cases(x: Tensors) -> list[Case]:
    fk = fp8_module()
    torch = x.torch
    out: list[Case] = []
    for n, k in ((7168, 2048), (4096, 7168), (18432, 7168)):  # DeepSeek-style N, K
        for mm in (1, 64, 512, 4096):
            a = x.randn(mm, k, dtype=torch.float8_e4m3fn, scale=0.5)
            b = x.randn(n, k, dtype=torch.float8_e4m3fn, scale=0.5)
            a_s, b_s = x.scales(mm, k // 128), x.scales(n // 128, k // 128)
            out.append(
                (
                    f"w8a8_block_fp8_matmul N={n} K={k} M={mm} (config lookup as SGLang)",
                    lambda a=a, b=b, a_s=a_s, b_s=b_s: fk.w8a8_block_fp8_matmul_triton(
                        a, b, a_s, b_s, [128, 128], torch.bfloat16
                    ),
                )
            )
    return out


#: The case lists by group (``--group``: a device run can split them over processes).
GROUPS: dict[str, Callable[[Tensors], list[Case]]] = {"bio": batch_invariant_cases, "fp8": block_fp8_cases}


def all_cases(x: Tensors, groups: tuple[str, ...] = tuple(GROUPS)) -> list[Case]:
    return [case for group in groups for case in GROUPS[group](x)]


def _launch_rows(launches: list[Any]) -> list[dict[str, Any]]:
    """Oracle launches as JSON rows."""
    return [
        {
            "kernel": lc.kernel,
            "shared": lc.resources.shared,
            "limit": lc.resources.limit,
            "fits": lc.resources.fits,
            "config": {k: v for k, v in lc.constexprs.items() if "BLOCK" in k or k.startswith("num_")},
        }
        for lc in launches
        if lc.resources
    ]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:400]


def _is_smem_failure(exc: BaseException) -> bool:
    from triton.runtime.errors import OutOfResources

    return isinstance(exc, OutOfResources) and "shared memory" in str(exc)


def _counts() -> dict[int, int]:
    """Specializations per recorded decision (equal decisions are merged into one record)."""
    from sglang_consumer_gpu.safety import state

    return {id(iv): iv.specializations for iv in state.local()}


def _interventions_since(before: dict[int, int]) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.safety import state

    return [
        {k: getattr(iv, k) for k in ("kernel", "outcome", "before", "after", "required", "fitted", "limit")}
        for iv in state.local()
        if before.get(id(iv), 0) < iv.specializations
    ]


def run_case(
    label: str, call: Callable[[], Any], *, sync: Callable[[], None] | None = None
) -> dict[str, Any]:
    """One case through the safety net (``guard``/``device`` modes)."""
    n0 = _counts()
    row: dict[str, Any] = {"case": label}
    try:
        call()
        if sync is not None:
            sync()
        row["outcome"] = "ok"
    except Exception as exc:  # reported, not hidden
        row["outcome"] = "smem_failure" if _is_smem_failure(exc) else "error"
        row["error"] = _error(exc)
    row["interventions"] = _interventions_since(n0)
    if row["outcome"] == "ok":
        row["outcome"] = "fitted" if row["interventions"] else "native"
    return row


def _summary(rows: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    count = lambda outcome: sum(r.get("outcome") == outcome for r in rows)  # noqa: E731
    return {
        "seconds": round(time.time() - t0, 1),
        "total": len(rows),
        "native": count("native"),
        "fitted": count("fitted"),
        "failed": count("smem_failure"),
        "errors": count("error"),
    }


def sweep_oracle() -> dict[str, Any]:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.oracle import virtual
    from sglang_consumer_gpu.oracle.capture import capture_launches
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for gpu in GPUS:
        spec = find_gpu(gpu)
        with virtual_gpu(spec, preload=(*virtual.PRELOAD, BIO, *FP8_KERNEL_MODULES)):
            for label, call in all_cases(Tensors("meta")):
                row: dict[str, Any] = {"gpu": spec.name, "arch": spec.arch_name, "case": label}
                try:
                    with capture_launches(spec) as launches:
                        call()
                    row["launches"] = _launch_rows(launches)
                    row["fits"] = all(x["fits"] for x in row["launches"])
                except Exception as exc:  # a launcher that cannot be dry-run is reported, not hidden
                    row["error"] = _error(exc)[:300]
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
    return {
        "mode": "oracle",
        "seconds": round(time.time() - t0, 1),
        "failed": sum(r["fits"] is False for r in rows),
        "errors": sum(r["fits"] is None for r in rows),
        "total": len(rows),
        "rows": rows,
    }


def sweep_guard() -> dict[str, Any]:
    """Every case through Triton's launch path with each GPU's limit emulated, safety net on."""
    from sglang_consumer_gpu.emulation.no_gpu import emulated_gpu
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.oracle import virtual
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu
    from sglang_consumer_gpu.patches import safety_net
    from sglang_consumer_gpu.patching.registry import unpatched

    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for gpu in GPUS:
        spec = find_gpu(gpu)
        with virtual_gpu(spec, preload=(*virtual.PRELOAD, BIO, *FP8_KERNEL_MODULES)), unpatched():
            safety_net.install()
            with emulated_gpu(spec):
                for label, call in all_cases(Tensors("meta")):
                    row = {"gpu": spec.name, "arch": spec.arch_name, **run_case(label, call)}
                    rows.append(row)
                    _print_row(row)
    return {"mode": "guard", **_summary(rows, t0), "rows": rows}


def sweep_device(groups: tuple[str, ...] = tuple(GROUPS)) -> dict[str, Any]:
    """Every case with real tensors on the live GPU (cap and safety net applied by the caller)."""
    import torch

    from sglang_consumer_gpu.patches import safety_net

    safety_net.install()
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for label, call in all_cases(Tensors("cuda"), groups):
        row = run_case(label, call, sync=torch.cuda.synchronize)
        rows.append(row)
        _print_row(row)
    return {"mode": "device", "gpu": torch.cuda.get_device_name(), **_summary(rows, t0), "rows": rows}


def _print_row(row: dict[str, Any]) -> None:
    if row["outcome"] in ("smem_failure", "error"):
        print(f"{row['outcome'].upper()} {row.get('arch', '')} {row['case']}: {row.get('error')}", flush=True)
    for iv in row["interventions"]:
        print(
            f"{iv['outcome']} {row.get('arch', '')} {row['case']}: {iv['kernel']} {iv['before']} -> {iv['after']}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("oracle", "guard", "device"), default="oracle")
    ap.add_argument(
        "--group", choices=tuple(GROUPS), action="append", help="device mode: only these case groups"
    )
    ap.add_argument("--out", type=Path, default=Path("results/cpu/longtail/longtail_sweep.json"))
    args = ap.parse_args()
    if args.mode == "device":
        result = sweep_device(tuple(args.group or GROUPS))
    else:
        result = {"oracle": sweep_oracle, "guard": sweep_guard}[args.mode]()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
